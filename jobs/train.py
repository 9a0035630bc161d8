"""k-fold cross-validated fine-tuning of a Chinese BERT comment classifier, with a paper-ready report.

    accelerate launch jobs/train.py --data comments.xlsx --model_name_or_path models/bert-base-chinese

Folds are spread over the processes (fold k runs on process k mod N): with a few thousand comments a whole fold
fits one device, so folds train side by side without gradient traffic, and the result does not depend on the
number of processes. Each fold starts from the same pretrained weights, picks its best epoch on a validation part
carved from its own training data, and is scored once on its test fold. A TF-IDF baseline is scored on the same
folds. Re-running with the same --output_dir resumes: finished folds are skipped, an interrupted fold continues
from its last finished epoch.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from weibolabel.data.datasets import input_sha256
from weibolabel.data.labeled import LabeledData, load_labeled
from weibolabel.data.labels import LabelSchema, load_label_schema
from weibolabel.data.tables import write_table
from weibolabel.run.config import TrainConfig, config_to_dict, parse_config, write_config
from weibolabel.run.device import check_device
from weibolabel.run.launch import (
    environment,
    exit_job,
    exit_with_launcher,
    limit_tokenizer_threads,
    make_accelerator,
    on_main_process,
    run_guarded,
    setup_logging,
)
from weibolabel.run.layout import (
    RunLayout,
    check_outputs,
    check_run_directory,
    check_shared_directory,
    claim_output_directory,
    claim_run_directory,
    ensure_writable,
)
from weibolabel.run.lock import RunLock, check_lock_free, training_lock_path
from weibolabel.run.preemption import StopSignal
from weibolabel.run.startup import JobLogger, refuse
from weibolabel.util.errors import UserError
from weibolabel.util.files import write_json

if TYPE_CHECKING:
    from accelerate import Accelerator

# torch, transformers and accelerate take seconds to import: make_accelerator() and the steps after the data check
# import them (with the modules that need them), so --help and bad data's message come quickly (bench/startup.py).
logger = JobLogger("train")


def main(argv: list[str] | None = None) -> int:
    config = parse_config(TrainConfig, argv, description=__doc__)
    exit_with_launcher()  # a worker whose launcher was killed stops, instead of training beside a new run
    limit_tokenizer_threads()  # every process tokenizes the data: share the node's CPUs, not all of them each
    setup_logging()
    # Step 1's data checks come before the heavy imports; every process reads the data, as each one trains on it.
    try:
        check_device(config.device)  # a GPU node whose GPUs torch cannot use stops here, not on its CPU
        schema, data, fold_of_row = check_data(config)
    except (UserError, OSError, KeyboardInterrupt) as error:
        return refuse(error, "train")
    accelerator = make_accelerator(config.collective_timeout_minutes, config.device)
    with RunLock() as lock:  # released on every way out; taken once the inputs are checked

        def work() -> None:
            cross_validate(config, schema, data, fold_of_row, accelerator, StopSignal(), lock)

        return run_guarded(work, accelerator, logger, "finished folds and epochs")


def preflight(argv: list[str]) -> None:
    """`python -m weibolabel.run.preflight jobs/train.py ARGS` (the launch scripts, before starting any process): the
    job's own checks of steps 1 and 2, in one process without accelerate; nothing is written."""
    config = parse_config(TrainConfig, argv, description=__doc__)
    check_device(config.device)
    schema, _, _ = check_data(config)
    config, _, _ = check_model(config)
    out = Path(config.output_dir)
    check_lock_free(training_lock_path(out), "training run")
    check_run_directory(out, run_identity(config, schema), "training run")


def cross_validate(
    config: TrainConfig,
    schema: LabelSchema,
    data: LabeledData,
    fold_of_row: np.ndarray,
    accelerator: Accelerator,
    stop: StopSignal,
    lock: RunLock,
) -> None:
    """Steps 1 (the model) to 5; `schema`, `data` and `fold_of_row` as check_data found them."""
    from weibolabel.model.inference import encode
    from weibolabel.model.loading import save_checkpoint
    from weibolabel.training.fold import Recipe, fit_and_score_fold
    from weibolabel.training.results import write_results

    out, layout = Path(config.output_dir), RunLayout(config.output_dir)

    # 1. Data and model are checked before any training: bad rows and data too small for the folds (main()) and
    # unreachable models fail here, before anything is written.
    config, tokenizer, lowered = check_model(config)
    if lowered:
        logger.warning(lowered)
    # Folds are written on every node and reported on the main one: all must see the same directory.
    check_shared_directory(accelerator, out, "--output_dir")
    rows, labels = data.rows, data.rows["label"].to_numpy()
    logger.info(f"{config.data}: {data.counts['rows_used']} rows used, classes {data.counts['class_counts']}")
    for key in ("empty_text_dropped", "duplicates_merged", "conflicting_duplicates_dropped"):
        if data.counts[key]:
            logger.warning(f"{key.replace('_', ' ')}: {data.counts[key]} (listed in {layout.data_issues})")

    # 2. One run at a time in a run directory (a second submission is refused, naming the first), and the
    # directory records what it holds, so a resume never mixes two different runs.
    lock.take(accelerator, training_lock_path(out), "training run")

    def claim_and_describe_run() -> bool:
        claim_output_directory(out, "train")
        if claim_run_directory(out, run_identity(config, schema), "training run") and layout.report.is_file():
            return True  # finished (the report is written last): nothing is rewritten, env.json stays the run's
        write_config(config, layout.config)
        write_json(
            layout.env, environment(accelerator.num_processes, accelerator.mixed_precision, accelerator.device.type)
        )
        write_table(data.issues, layout.data_issues)
        return False

    if on_main_process(accelerator, claim_and_describe_run):
        for fold in range(config.num_folds):
            logger.info(f"fold {fold}: already finished, skipped")
        logger.info(
            f"{out} holds a finished training run with these settings and data: nothing to do (report: "
            f"{layout.report}). Pass another --output_dir to train again."
        )
        return

    # 3. Folds: stratified, seeded, duplicates grouped (made by check_data); every row's fold is written down.
    if accelerator.is_main_process:
        write_table(rows.assign(fold=fold_of_row), layout.folds_csv)
    encoded = encode(tokenizer, rows["text"].tolist(), config.max_length)
    if encoded.truncated.any():
        logger.warning(f"{int(encoded.truncated.sum())} texts are longer than {config.max_length} tokens: truncated")

    # 4. Each process trains its share of the folds (fold k on process k mod N): a fresh model on every fold but
    # k, the best epoch picked on a validation part carved from it, fold k scored once with that epoch's model.
    for fold in range(accelerator.process_index, config.num_folds, accelerator.num_processes):
        if layout.fold_result(fold).is_file():
            logger.info(f"fold {fold}: already finished, skipped", main_process_only=False)
            continue
        test_index = np.flatnonzero(fold_of_row == fold)
        record, probs, model = fit_and_score_fold(
            recipe=Recipe.from_settings(config),
            accelerator=accelerator,
            stop=stop,
            schema=schema,
            pad_id=tokenizer.pad_token_id,
            input_ids=encoded.input_ids,
            labels=labels,
            groups=rows["group"].tolist(),
            train_index=np.flatnonzero(fold_of_row != fold),
            test_index=test_index,
            fold=fold,
            state_file=layout.resume_state(fold),
        )
        save_checkpoint(accelerator.unwrap_model(model), tokenizer, layout.fold_dir(fold), schema)
        pd.DataFrame({"index": test_index, "probs": list(probs)}).to_parquet(layout.test_predictions(fold))
        write_json(layout.fold_result(fold), record)  # the fold's mark of completion
        shutil.rmtree(layout.resume_dir(fold), ignore_errors=True)
        test = record["test"]
        logger.info(
            f"fold {fold}: test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}",
            main_process_only=False,
        )
        del model
        accelerator.free_memory()
    accelerator.wait_for_everyone()

    # 5. The main process gathers the folds, scores the baseline on the same folds and writes the report.
    def report() -> None:
        metrics = write_results(
            settings=config_to_dict(config),
            out=out,
            names=schema.names,
            data_counts=data.counts | {"truncated": int(encoded.truncated.sum())},
            rows=rows,
            fold_of_row=fold_of_row,
        )
        summary = metrics["summary"]
        logger.info(
            f"done: accuracy {summary['accuracy']['mean']:.4f} ± {summary['accuracy']['std']:.4f}, macro-F1 "
            f"{summary['macro_f1']['mean']:.4f} ± {summary['macro_f1']['std']:.4f}; report: {layout.report}"
        )

    on_main_process(accelerator, report)


def check_data(config: TrainConfig) -> tuple[LabelSchema, LabeledData, np.ndarray]:
    """The options, the output location, every row of the data and the folds it makes: (label schema, data, each
    row's test fold)."""
    if not config.data:
        raise UserError("--data is required: the labeled .xlsx, .csv or .parquet file.")
    # Every process: one that went on alone would wait for the others forever. Nothing is created yet: a run
    # refused by the checks below leaves no empty run directory (claim_run_directory makes it).
    ensure_writable(Path(config.output_dir), create=False)
    model = config.model_name_or_path if Path(config.model_name_or_path).exists() else None  # else a hub name
    reads = {"--data": config.data, "--labels": config.labels, "--model_name_or_path": model}
    check_outputs("train", reads=reads, output_dir=Path(config.output_dir))
    schema = load_label_schema(config.labels)
    data = load_labeled(
        config.data,
        schema,
        text_column=config.text_column,
        label_column=config.label_column,
        sheet=config.sheet,
        encoding=config.encoding,
        on_conflict=config.on_conflict,
        header_row=config.header_row,
        split=config.split,
    )
    return schema, data, make_checked_folds(config, schema, data)


def make_checked_folds(config: TrainConfig, schema: LabelSchema, data: LabeledData) -> np.ndarray:
    """Each row's test fold, once every fold's validation part is known to exist: data too small for the folds is
    refused before the run directory is written (a refused run's settings left there would block the rerun)."""
    from weibolabel.data.folds import make_folds, split_validation  # scikit-learn: after the data's own errors

    labels, groups = data.rows["label"].to_numpy(), data.rows["group"].tolist()
    fold_of_row = make_folds(labels, groups, config.num_folds, config.seed, schema.names)
    for fold in range(config.num_folds):  # the split fit_and_score_fold makes, tried now instead of in fold k
        train_index = np.flatnonzero(fold_of_row != fold)
        split_validation(train_index, labels, groups, config.validation_fraction, config.seed + fold)
    return fold_of_row


def check_model(config: TrainConfig) -> tuple:
    """The model's files, not its weights: (config with max_length fitted to the model, tokenizer, the warning
    when max_length was lowered)."""
    from weibolabel.model.loading import fit_max_length, load_model_config, load_tokenizer

    tokenizer = load_tokenizer(config.model_name_or_path)
    # Positions past the model's table would crash on GPU with a bare device-side assert.
    max_length, lowered = fit_max_length(
        config.max_length, load_model_config(config.model_name_or_path).max_position_embeddings
    )
    if lowered:
        config = dataclasses.replace(config, max_length=max_length)
    return config, tokenizer, lowered


def run_identity(config: TrainConfig, schema: LabelSchema) -> dict:
    """What a resume must match: the data's hash and every setting but where the run is, how long it waits at
    barriers and the device (a run started on the CPU may finish on a GPU: the recorded precision says which ran)."""
    identity = config_to_dict(config) | {"data_sha256": input_sha256(config.data, config.split), "labels": schema.names}
    for setting in ("output_dir", "collective_timeout_minutes", "device"):
        identity.pop(setting)
    return identity


if __name__ == "__main__":
    exit_job(main())
