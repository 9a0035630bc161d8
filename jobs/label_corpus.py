"""Label an unlabeled corpus with a trained run (its fold models ensembled) and write one Parquet file.

    accelerate launch jobs/label_corpus.py --input comments.xlsx --model runs/cv --output labels.parquet

The input is cut into chunks of --chunk_size rows; chunk c is labeled by process c mod N, inside it texts are
sorted by length and batched under a token budget, and each finished chunk is written atomically as a part file.
A re-run with the same arguments skips finished chunks, so a killed or pre-empted job loses at most the chunk in
flight. The main process then merges the parts in input order into --output, verifies that every input row is
there exactly once, and removes the parts.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from weibolabel.config import LabelConfig, config_to_dict, parse_config
from weibolabel.data import Corpus, clean_text, parse_label, resolve_inputs
from weibolabel.errors import UserError
from weibolabel.inference import (
    cpu_has_native_bf16,
    encode,
    inference_dtype,
    label_encoded,
    load_ensemble,
    prefetched,
)
from weibolabel.labeling import corpus_summary, format_summary
from weibolabel.parquet_io import PartStore, check_output_free, output_schema
from weibolabel.preemption import StopSignal
from weibolabel.runs import (
    ensure_writable,
    git_revision,
    make_accelerator,
    now_utc,
    on_main_process,
    run_guarded,
    setup_logging,
    versions,
)

logger = get_logger("label_corpus")


def main(argv: list[str] | None = None) -> int:
    config = parse_config(LabelConfig, argv, description=__doc__)
    # oneDNN keeps compiled kernels for every input shape it meets (up to 1,024 of them). Length-bucketed batches
    # have many shapes, and over 1M rows that cache alone grew the job by 300+ MiB; rebuilding the kernels costs
    # nothing measurable (bench/README.md). Read at first use, so setting it here is in time.
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")
    setup_logging()
    accelerator = make_accelerator()
    return run_guarded(lambda: label_corpus(config, accelerator, StopSignal()), accelerator, logger, "finished chunks")


def label_corpus(config: LabelConfig, accelerator: Accelerator, stop: StopSignal) -> None:
    # 1. Everything that can be checked is checked before any labeling: inputs, output location, model.
    for option in ("input", "model", "output"):
        if not getattr(config, option):
            raise UserError(f"--{option} is required (see --help).")
    output = Path(config.output)
    if output.suffix != ".parquet":
        raise UserError(f"--output must end in .parquet, got {output}.")
    corpus = Corpus(
        resolve_inputs(config.input),
        config.text_column,
        config.carry_columns,
        config.gold_column,
        config.sheet,
        config.encoding,
        config.header_row,
    )
    ensure_writable(output.parent, "--output")
    check_output_free(output, config.overwrite)
    device = accelerator.device
    dtype = inference_dtype(device, accelerator.mixed_precision)
    if dtype == torch.bfloat16 and device.type == "cpu" and not cpu_has_native_bf16():
        logger.warning("--mixed_precision bf16: this CPU has no native bf16 (AVX512-BF16/AMX), expect it to be slow")
    precision = str(dtype or torch.float32).removeprefix("torch.")
    ensemble = load_ensemble(config.model, device, dtype, calibrated=config.calibration)
    max_length = config.max_length or ensemble.max_length
    multi_file = len(corpus.files) > 1
    store = PartStore(
        output, output_schema(len(ensemble.schema), multi_file, corpus.carry_columns, corpus.gold_column is not None)
    )
    # What decides the labels identifies the run; batch sizes only move float rounding, so after an out-of-memory
    # error a re-run with a smaller budget keeps the finished chunks.
    ignored = ("overwrite", "low_confidence", "batch_size", "max_tokens")
    settings = {k: v for k, v in config_to_dict(config).items() if k not in ignored}
    job = {
        **settings,
        "max_length": max_length,
        "inputs": [_file_identity(p) for p in corpus.files],
        "members": ensemble.members,
        "temperature": ensemble.temperature,
        "precision": precision,
    }
    if not on_main_process(accelerator, lambda: store.prepare(job, config.overwrite)):
        logger.info(f"{output} was already written and verified by an earlier run; removed its leftover parts")
        return
    logger.info(
        f"{corpus.num_rows} rows in {len(corpus.files)} file(s); model {config.model} "
        f"({len(ensemble.models)} checkpoint(s), {precision}); {accelerator.num_processes} process(es) on {device.type}"
    )

    # 2. Each process labels its own chunks; the next chunk is tokenised while the current one runs.
    num_chunks = math.ceil(corpus.num_rows / config.chunk_size)
    rank, world = accelerator.process_index, accelerator.num_processes

    def prepare(chunk):
        texts = [clean_text(t) for t in chunk.rows["text"]]
        return chunk, texts, encode(ensemble.tokenizer, texts, max_length)

    todo = (c for c in corpus.iter_chunks(config.chunk_size) if c.index % world == rank and not store.is_done(c.index))
    started, labeled_rows, labeled_tokens = time.perf_counter(), 0, 0
    progress = tqdm(total=corpus.num_rows, unit="rows", disable=not accelerator.is_main_process, desc="labeling")
    progress.update(sum(r["rows"] for r in store.done_records()))
    for chunk, texts, encoded in prefetched(todo, prepare):
        chunk_started = time.perf_counter()
        try:
            labels = label_encoded(ensemble, texts, encoded, config.batch_size, config.max_tokens)
        except torch.OutOfMemoryError:
            raise UserError(
                f"Out of GPU memory labeling chunk {chunk.index} with --batch_size {config.batch_size} and "
                f"--max_tokens {config.max_tokens}: lower --max_tokens (e.g. to {config.max_tokens // 2}; it caps "
                "long batches) or --batch_size and re-run: finished chunks are kept."
            ) from None
        rows = assemble_rows(chunk.rows, labels, corpus, ensemble.schema, multi_file)
        tokens = int(encoded.lengths.sum())
        store.write(chunk.index, rows, {"rank": rank, "tokens": tokens, "seconds": time.perf_counter() - chunk_started})
        labeled_rows, labeled_tokens = labeled_rows + len(rows), labeled_tokens + tokens
        progress.update(min(len(rows) * world, progress.total - progress.n))
        stop.check(f"after chunk {chunk.index}")
    progress.close()
    # Every process reports what it labeled in this run (finished chunks skipped on resume are not counted).
    labeled_rows, labeled_tokens = np.sum(gather_object([(labeled_rows, labeled_tokens)]), axis=0).tolist()

    # 3. The main process merges the parts in input order, verifies the result, and summarises it.
    def merge_and_summarise() -> None:
        metadata = {
            "labels": ensemble.schema.to_list(),
            "model": ensemble.source,
            "members": ensemble.members,
            "temperature": ensemble.temperature,
            "precision": precision,
            "max_length": max_length,
            "inputs": [str(p) for p in corpus.files],
            "text_column": config.text_column,
            "code_revision": git_revision(),
            "versions": versions(),
            "time": now_utc(),
        }
        store.merge(num_chunks, corpus.num_rows, metadata)
        seconds = time.perf_counter() - started
        summary = corpus_summary(output, ensemble.schema.names, config.low_confidence)
        logger.info(f"wrote {output}: {format_summary(summary, config.low_confidence)}")
        logger.info(
            f"this run labeled {labeled_rows} rows ({labeled_tokens} tokens) in {seconds:.1f}s: "
            f"{labeled_rows / seconds:.0f} rows/s, {labeled_tokens / seconds:.0f} tokens/s, "
            f"{accelerator.num_processes} process(es)"
        )

    on_main_process(accelerator, merge_and_summarise)


def assemble_rows(source: pd.DataFrame, labels: pd.DataFrame, corpus: Corpus, schema, multi_file: bool) -> pd.DataFrame:
    """Input position, the text as given, the predictions, and the columns the user asked to carry."""
    rows = pd.DataFrame({"row_id": source["row_id"].to_numpy(), "text": [_as_text(t) for t in source["text"]]})
    rows = pd.concat([rows, labels.reset_index(drop=True)], axis=1)
    if multi_file:
        rows["source_file"], rows["source_row"] = source["source_file"].to_numpy(), source["source_row"].to_numpy()
    for column in corpus.carry_columns:
        rows[column] = [_as_text(v) for v in source[column]]
    if corpus.gold_column:
        rows["gold_label"] = pd.array([parse_label(v, schema)[0] for v in source["gold"]], dtype="Int64")
    return rows


def _as_text(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    return str(value)


def _file_identity(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path.resolve()), "bytes": stat.st_size, "modified": stat.st_mtime_ns}


if __name__ == "__main__":
    sys.exit(main())
