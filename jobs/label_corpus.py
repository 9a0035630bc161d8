"""Label an unlabeled corpus with a trained run (its fold models ensembled) and write one Parquet file.

    accelerate launch jobs/label_corpus.py --input comments.xlsx --model runs/cv --output labels.parquet

The input is cut into chunks of --chunk_size rows; chunk c is labeled by process c mod N, inside it texts are
sorted by length and batched under a token budget, and each finished chunk is written atomically as a part file.
A re-run with the same arguments skips finished chunks, so a killed or pre-empted job loses at most the chunk in
flight. The main process then merges the parts in input order into --output, verifies that every input row is
there exactly once, and removes the parts.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from weibolabel.data.datasets import input_identity
from weibolabel.labeling.corpus import is_among_inputs, resolve_inputs
from weibolabel.labeling.loop import (
    label_chunks,
    load_model,
    merge_and_summarise,
    open_corpus,
    read_corpus,
    summary_path,
)
from weibolabel.labeling.parts import PartStore, check_output_free, inputs_directory, is_complete, output_schema
from weibolabel.run.config import LabelConfig, config_to_dict, parse_config
from weibolabel.run.device import check_device
from weibolabel.run.launch import (
    exit_job,
    exit_with_launcher,
    limit_tokenizer_threads,
    make_accelerator,
    on_main_process,
    run_guarded,
    setup_logging,
)
from weibolabel.run.layout import check_outputs, check_shared_directory, ensure_writable, find_checkpoints
from weibolabel.run.lock import RunLock, check_lock_free, output_lock_path
from weibolabel.run.preemption import StopSignal
from weibolabel.run.startup import JobLogger, is_main_launch_process, refuse
from weibolabel.util.errors import UserError

if TYPE_CHECKING:
    from accelerate import Accelerator


# torch, transformers and accelerate take seconds to import: make_accelerator() and label_corpus() import them, after
# main() has checked the inputs, so --help and a bad input's message come in a second or two (bench/startup.py).
logger = JobLogger("label_corpus")


def main(argv: list[str] | None = None) -> int:
    config = parse_config(LabelConfig, argv, description=__doc__)
    # oneDNN keeps compiled kernels for every input shape (up to 1,024): over 1M rows of length-bucketed batches that
    # grew the job by 300+ MiB, and rebuilding them costs nothing measurable (bench/README.md). Read at first use.
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")
    exit_with_launcher()  # a worker whose launcher was killed stops, instead of labeling beside a new run
    limit_tokenizer_threads()
    setup_logging()
    # Step 1, before the heavy imports: every process checks the options, paths and model files; the main process
    # also reads every input's header and counts its rows, which it then need not redo.
    try:
        check_device(config.device)  # a GPU node whose GPUs torch cannot use stops here, not on its CPU
        output, files = check_inputs(config)
        row_counts = open_corpus(config, files).row_counts if is_main_launch_process() else None
    except (UserError, OSError, KeyboardInterrupt) as error:
        return refuse(error, "label_corpus")
    accelerator = make_accelerator(config.collective_timeout_minutes, config.device)
    with RunLock() as lock:  # released on every way out; taken once the inputs are checked

        def work() -> None:
            label_corpus(
                config=config,
                accelerator=accelerator,
                stop=StopSignal(),
                lock=lock,
                output=output,
                files=files,
                row_counts=row_counts,
            )

        return run_guarded(work, accelerator, logger, "finished chunks")


def preflight(argv: list[str]) -> None:
    """`python -m weibolabel.run.preflight jobs/label_corpus.py ARGS` (the launch scripts): step 1's checks in one
    process, without accelerate or model weights; nothing is written."""
    config = parse_config(LabelConfig, argv, description=__doc__)
    check_device(config.device)
    output, files = check_inputs(config)
    check_lock_free(output_lock_path(output), "labeling run")
    open_corpus(config, files)


def label_corpus(
    *,
    config: LabelConfig,
    accelerator: Accelerator,
    stop: StopSignal,
    lock: RunLock,
    output: Path,
    files: list[Path],
    row_counts: list[int] | None,
) -> None:
    """Steps 2 and 3 of the job; `output` and `files` as check_inputs found them, `row_counts` on the main process."""
    # Every node writes parts there and the main process merges them: all must see the same directory.
    check_shared_directory(accelerator, output.parent, "--output")
    # One run at a time on an output: a second submission is refused, naming the first.
    lock.take(accelerator, output_lock_path(output), "labeling run")
    model = load_model(config, accelerator)
    job = {
        **known_settings(config, files),
        "max_length": model.max_length,
        "members": model.ensemble.members,
        "temperature": model.ensemble.temperature,
        "precision": model.precision,
    }
    # A re-submitted finished job (an afterok chain run again, a copied sbatch line) has nothing to do.
    if on_main_process(accelerator, lambda: is_complete(output, job)):
        logger.info(
            f"{output} is complete and matches these arguments (an earlier run wrote and verified it): nothing to "
            "do. Pass --overwrite to label it again."
        )
        return
    corpus = read_corpus(config, files, accelerator, inputs_directory(output), row_counts)
    if corpus.files_without_gold:  # their rows have no gold label; the other files' still count
        names = ", ".join(str(path) for path in corpus.files_without_gold)
        logger.warning(
            f"{len(corpus.files_without_gold)} of {len(corpus.files)} input files have no gold column "
            f"'{corpus.gold_column}' ({names}): their rows have no gold label; the agreement is over the other files"
        )
    schema = output_schema(len(corpus.files) > 1, corpus.carry_types, corpus.gold_column is not None)
    store = PartStore(output, schema)
    if not on_main_process(accelerator, lambda: store.prepare(job, config.overwrite)):
        on_main_process(accelerator, lambda: shutil.rmtree(inputs_directory(output), ignore_errors=True))
        logger.info(f"{output} was already written and verified by an earlier run; removed its leftover parts")
        return
    logger.info(
        f"{corpus.num_rows} rows in {len(corpus.files)} file(s); model {config.model} "
        f"({len(model.ensemble.models)} checkpoint(s), {model.precision}); {accelerator.num_processes} process(es) "
        f"on {accelerator.device.type}"
    )
    # 2. Each process labels its own chunks; the next chunk is tokenised while the current one runs.
    tally = label_chunks(config=config, accelerator=accelerator, stop=stop, model=model, corpus=corpus, store=store)
    # 3. The main process merges the parts in input order, verifies the result, and summarises it.
    on_main_process(
        accelerator,
        lambda: merge_and_summarise(
            config=config, accelerator=accelerator, model=model, corpus=corpus, store=store, tally=tally
        ),
    )


def check_inputs(config: LabelConfig) -> tuple[Path, list[Path]]:
    """Step 1, by the job and by `preflight`: the options, inputs, output (an existing one made with other settings
    needs --overwrite) and the model's checkpoints. Writes nothing."""
    for option in ("input", "model", "output"):
        if not getattr(config, option):
            raise UserError(f"--{option} is required (see --help).")
    output = Path(config.output)
    if output.suffix != ".parquet":
        raise UserError(f"--output must end in .parquet, got {output}.")
    files = resolve_inputs(config.input)
    writes = {"--output": [output, summary_path(output)]}
    check_outputs("label_corpus", reads={"--input": files, "--model": config.model}, writes=writes)
    if is_among_inputs(config.input, output):
        raise UserError(
            f"--output {output} is where --input {config.input} finds the files to label: a later run would label the "
            "output too. Put --output outside it."
        )
    ensure_writable(output.parent, "--output", create=False)  # a refused run leaves no new directory behind
    check_output_free(output, config.overwrite, known_settings(config, files))
    find_checkpoints(Path(config.model))
    if config.quantize == "onnx-int8":
        from weibolabel.model.onnx import check_onnxruntime  # imports nothing heavy

        check_onnxruntime()
    return output, files


def known_settings(config: LabelConfig, files: list[Path]) -> dict:
    """What decides the labels and is known before the model loads: options and inputs. Batch sizes only move float
    rounding (a re-run after running out of memory keeps finished chunks); max_length is recorded as resolved; a
    moved output is still recognised as complete."""
    ignored = {"output", "overwrite", "low_confidence", "batch_size", "max_tokens", "collective_timeout_minutes"}
    ignored |= {"device", "max_length"}
    settings = {k: v for k, v in config_to_dict(config).items() if k not in ignored}
    if settings.get("quantize") is None:  # as recorded before --quantize existed: those runs still resume
        settings.pop("quantize", None)
    return {**settings, "inputs": [input_identity(p, config.split) for p in files]}


if __name__ == "__main__":
    exit_job(main())
