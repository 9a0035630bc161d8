"""The labeling job's steps: load the fold ensemble, label this process's chunks into part files, merge them and
write the summary (jobs/label_corpus.py runs them in order)."""

from __future__ import annotations

import math
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from weibolabel.data.labeled import clean_text
from weibolabel.data.tables import row_name
from weibolabel.labeling.corpus import Corpus, copy_spreadsheets
from weibolabel.labeling.parts import PartStore, carried_column, inputs_directory
from weibolabel.labeling.summary import corpus_summary, format_summary, gold_check, gold_record, parse_gold
from weibolabel.run.config import LabelConfig
from weibolabel.run.launch import git_revision, now_utc, on_main_process, versions
from weibolabel.run.preemption import StopSignal
from weibolabel.run.startup import JobLogger, process_start
from weibolabel.util.errors import UserError
from weibolabel.util.files import write_json

if TYPE_CHECKING:
    from accelerate import Accelerator

    from weibolabel.model.inference import Ensemble

logger = JobLogger("label_corpus")


@dataclass
class Model:
    """The loaded ensemble and what it was loaded as: recorded in the output and its summary."""

    ensemble: Ensemble
    precision: str  # "float32", "bfloat16", "float16" or "int8-dynamic-onnxruntime"
    max_length: int
    load_seconds: float  # this process's, ONNX export included (bench/ compares runs without it)


@dataclass
class Tally:
    """What this run labeled, over all processes (chunks skipped on resume are not counted)."""

    rows: int
    tokens: int
    started: float  # time.perf_counter() when labeling started, on this process
    first_batch: float | None  # seconds from the process's start to the job's first scored batch
    finished_on: dict[int, str]  # chunk -> the node that wrote it: the merge waits for late network files


def load_model(config: LabelConfig, accelerator: Accelerator) -> Model:
    """The run's checkpoints, ensembled, on this process's device in the job's precision."""
    import torch

    from weibolabel.model.inference import cpu_has_native_bf16, inference_dtype, load_ensemble
    from weibolabel.model.loading import fit_max_length

    started = time.perf_counter()
    device = accelerator.device
    dtype = inference_dtype(device, accelerator.mixed_precision)
    if dtype == torch.bfloat16 and device.type == "cpu" and not cpu_has_native_bf16():
        logger.warning("--mixed_precision bf16: this CPU has no native bf16 (AVX512-BF16/AMX), expect it to be slow")
    precision = "int8-dynamic-onnxruntime" if config.quantize else str(dtype or torch.float32).removeprefix("torch.")

    def load() -> Ensemble:
        return load_ensemble(config.model, device, dtype, calibrated=config.calibration, quantize=config.quantize)

    if config.quantize == "onnx-int8" and accelerator.num_processes > 1:
        # The main process exports the folds into the graph cache first; the others then read them from there.
        first: list[Ensemble] = []
        on_main_process(accelerator, lambda: first.append(load()))
        ensemble = first[0] if first else load()
    else:
        ensemble = load()
    if config.quantize == "onnx-int8":
        log_onnx_origins(ensemble, accelerator)
    max_positions = ensemble.models[0].config.max_position_embeddings
    max_length, lowered = fit_max_length(config.max_length or ensemble.max_length, max_positions)
    if lowered:
        logger.warning(lowered)  # positions past the model's table would crash on GPU with a device-side assert
    load_seconds = time.perf_counter() - started
    return Model(ensemble=ensemble, precision=precision, max_length=max_length, load_seconds=load_seconds)


def log_onnx_origins(ensemble: Ensemble, accelerator: Accelerator) -> None:
    """Per process: how many ONNX graphs it read from the cache and how many it exported, and why one was not kept."""
    from weibolabel.model.onnx import CACHE_ENV, cache_directory

    origins = [model.origin for model in ensemble.models]
    read = origins.count("cache")
    logger.info(
        f"--quantize onnx-int8, process {accelerator.process_index}: {read} graph(s) read from the cache "
        f"{cache_directory()}, {len(origins) - read} exported",
        main_process_only=False,
    )
    for member, origin in zip(ensemble.members, origins):
        if origin.startswith("exported, not cached"):
            logger.warning(f"{member}: {origin} (set {CACHE_ENV} to a writable folder to keep it)")


def label_chunks(
    *, config: LabelConfig, accelerator: Accelerator, stop: StopSignal, model: Model, corpus: Corpus, store: PartStore
) -> Tally:
    """This process's unfinished chunks (c mod N == rank), each written as a part; the tally of every process."""
    import torch
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    from weibolabel.model.inference import encode, prefetched

    ensemble, device = model.ensemble, accelerator.device
    num_chunks = math.ceil(corpus.num_rows / config.chunk_size)
    rank, world = accelerator.process_index, accelerator.num_processes

    def prepare(chunk):
        texts = [clean_text(t) for t in chunk.rows["text"]]
        return chunk, texts, encode(ensemble.tokenizer, texts, model.max_length)

    # Each process reads only its own unfinished chunks, not the whole corpus.
    todo = corpus.iter_chunks(config.chunk_size, wanted=lambda c: c % world == rank and not store.is_done(c))
    labeling_started, labeled_rows, labeled_tokens = time.perf_counter(), 0, 0
    started, first_batch = process_start(), None  # the process's start; seconds from it to its first scored batch

    def time_first_batch(rows: int) -> None:
        nonlocal first_batch
        if first_batch is None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # the batch is scored, not just queued
            first_batch = time.time() - started

    progress = tqdm(total=corpus.num_rows, unit="rows", disable=not accelerator.is_main_process, desc="labeling")
    progress.update(sum(r["rows"] for r in store.done_records()))
    for chunk, texts, encoded in prefetched(todo, prepare):
        rows, record = score_chunk(config, model, corpus, chunk, texts, encoded, on_batch=time_first_batch)
        store.write(chunk.index, rows, {"rank": rank} | record)
        labeled_rows, labeled_tokens = labeled_rows + len(rows), labeled_tokens + record["tokens"]
        progress.update(min(len(rows) * world, progress.total - progress.n))
        stop.check(f"after chunk {chunk.index}")
    progress.close()
    # What each process labeled in this run, and which chunks are finished on its node (the merge waits for them).
    finished = [chunk for chunk in range(rank, num_chunks, world) if store.is_done(chunk)]
    reports = gather_object([(labeled_rows, labeled_tokens, socket.gethostname(), finished, first_batch)])
    first_batches = [report[4] for report in reports if report[4] is not None]
    return Tally(
        rows=sum(report[0] for report in reports),
        tokens=sum(report[1] for report in reports),
        started=labeling_started,
        first_batch=min(first_batches) if first_batches else None,  # the job's first, whichever process scored it
        finished_on={chunk: host for _, _, host, chunks, _ in reports for chunk in chunks},
    )


def score_chunk(config: LabelConfig, model: Model, corpus: Corpus, chunk, texts, encoded, on_batch) -> tuple:
    """One chunk's output rows, and its record: tokens, seconds and its gold cells (valid, empty, invalid)."""
    import torch

    from weibolabel.model.inference import label_encoded

    started = time.perf_counter()
    try:
        labels = label_encoded(
            model.ensemble,
            texts,
            encoded,
            batch_size=config.batch_size,
            max_tokens=config.max_tokens,
            on_batch=on_batch,
        )
    except torch.cuda.OutOfMemoryError:
        raise UserError(
            f"Out of GPU memory labeling chunk {chunk.index} with --batch_size {config.batch_size} and "
            f"--max_tokens {config.max_tokens}: lower --max_tokens (e.g. to {config.max_tokens // 2}; it caps "
            "long batches) or --batch_size and re-run: finished chunks are kept."
        ) from None
    rows, gold = assemble_rows(chunk.rows, labels, corpus, model.ensemble.schema, config.header_row)
    return rows, {"tokens": int(encoded.lengths.sum()), "seconds": time.perf_counter() - started, **gold}


def merge_and_summarise(
    *, config: LabelConfig, accelerator: Accelerator, model: Model, corpus: Corpus, store: PartStore, tally: Tally
) -> None:
    """On the main process: the parts merged in input order into --output (verified), the parts removed, the summary
    logged and written beside the output for programs."""
    import torch

    ensemble, output = model.ensemble, store.output
    metadata = {
        "labels": ensemble.schema.to_list(),
        "model": ensemble.source,
        "members": ensemble.members,
        "temperature": ensemble.temperature,
        "precision": model.precision,
        "max_length": model.max_length,
        "inputs": [str(p) for p in corpus.files],
        "text_column": config.text_column,
        "code_revision": git_revision(),
        "versions": versions(),
        "time": now_utc(),
    }
    # Gold cells that are not labels count as missing in the agreement: the summary and the file say how many.
    gold = gold_check(store.done_records(), corpus.gold_column) if corpus.gold_column else None
    if gold:
        gold["files_without_column"] = [str(path) for path in corpus.files_without_gold]
        metadata["gold_labels"] = gold
    num_chunks = math.ceil(corpus.num_rows / config.chunk_size)
    store.merge(num_chunks, corpus.num_rows, metadata, tally.finished_on)
    shutil.rmtree(inputs_directory(output), ignore_errors=True)
    summary = corpus_summary(output, ensemble.schema.names, config.low_confidence) | {"gold_labels": gold}
    logger.info(f"wrote {output}: {format_summary(summary, config.low_confidence)}")
    seconds = time.perf_counter() - tally.started  # labeling and merging
    to_first = f"{tally.first_batch:.1f}s" if tally.first_batch is not None else "-"
    logger.info(
        f"this run labeled {tally.rows} rows ({tally.tokens} tokens) in {seconds:.1f}s: "
        f"{tally.rows / seconds:.0f} rows/s, {tally.tokens / seconds:.0f} tokens/s, "
        f"{accelerator.num_processes} process(es); {to_first} from start to the first labeled batch"
    )
    # The same figures for programs (bench/, tests/): read this file, not the log line.
    write_json(
        summary_path(output),
        {
            "output": str(output),
            **summary,  # the counts, and gold_labels
            "low_confidence_threshold": config.low_confidence,
            "gold_agreement": summary.get("gold_agreement"),
            "rows_labeled": tally.rows,
            "tokens_labeled": tally.tokens,
            "seconds_labeling": seconds,
            "rows_per_second": tally.rows / seconds,
            "tokens_per_second": tally.tokens / seconds,
            "seconds_to_first_batch": tally.first_batch,
            "seconds_total": time.time() - process_start(),
            "seconds_model_load": model.load_seconds,
            "processes": accelerator.num_processes,
            "threads": torch.get_num_threads(),
            "device": accelerator.device.type,
            **{key: metadata[key] for key in ("precision", "model", "members", "max_length", "temperature")},
            "batch_size": config.batch_size,
            "max_tokens": config.max_tokens,
            "chunk_size": config.chunk_size,
            "chunks": num_chunks,
            **{key: metadata[key] for key in ("inputs", "code_revision", "time")},
        },
    )


def summary_path(output: Path) -> Path:
    """`labels.summary.json` beside `labels.parquet`: the run's figures for programs (README, "Labeling")."""
    return output.with_suffix(".summary.json")


def open_corpus(
    config: LabelConfig, files: list[Path], copies: dict | None = None, row_counts: list[int] | None = None
) -> Corpus:
    """The inputs as one stream of rows; opening it checks every file's header (and counts its rows, unless
    `row_counts` are given)."""
    options = {name: getattr(config, name) for name in ("sheet", "encoding", "header_row", "split")}
    columns = (config.text_column, config.carry_columns, config.gold_column)
    return Corpus(files, *columns, copies=copies, row_counts=row_counts, **options)


def read_corpus(
    config: LabelConfig, files: list[Path], accelerator: Accelerator, copies: Path, row_counts: list[int] | None
) -> Corpus:
    """The inputs, with spreadsheets parsed into Parquet copies and rows counted (unless `row_counts` are given) once,
    by the main process; the other processes then read only their own chunks."""

    def parse_once() -> tuple[dict, list[int]]:
        try:
            spreadsheet_copies = copy_spreadsheets(files, copies, config.sheet, config.header_row, config.chunk_size)
            return spreadsheet_copies, row_counts or open_corpus(config, files, spreadsheet_copies).row_counts
        except UserError:
            shutil.rmtree(copies, ignore_errors=True)  # a bad input leaves nothing behind
            raise

    spreadsheet_copies, counts = on_main_process(accelerator, parse_once)
    return open_corpus(config, files, spreadsheet_copies, counts)


def assemble_rows(source: pd.DataFrame, labels: pd.DataFrame, corpus: Corpus, schema, header_row: int) -> tuple:
    """Input position, the text as given, the predictions and the carried columns; and the chunk's gold record
    (counts, and the first invalid cells named by file and row as the user numbers them)."""
    rows = pd.DataFrame({"row_id": source["row_id"].to_numpy(), "text": [_as_text(t) for t in source["text"]]})
    rows = pd.concat([rows, labels.reset_index(drop=True)], axis=1)
    if len(corpus.files) > 1:
        rows["source_file"], rows["source_row"] = source["source_file"].to_numpy(), source["source_row"].to_numpy()
    for column, kind in corpus.carry_types.items():
        rows[column] = carried_column(source[column].tolist(), kind)
    if not corpus.gold_column:
        return rows, {}
    values = source["gold"].tolist()
    ids, invalid = parse_gold(values, schema)
    rows["gold_label"] = pd.array(ids, dtype="Int64")
    files, source_rows = source["source_file"].tolist(), source["source_row"].tolist()

    def where(position: int) -> tuple[str, str]:
        path = Path(files[position] or corpus.files[0])  # one input file: source_file is left empty
        return str(path), row_name(path, int(source_rows[position]), header_row)

    return rows, gold_record(values, invalid, where)


def _as_text(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    return str(value)
