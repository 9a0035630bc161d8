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
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from accelerate import Accelerator
from accelerate.logging import get_logger

from weibolabel.config import TrainConfig, config_to_dict, parse_config, write_config
from weibolabel.data import load_labeled
from weibolabel.errors import UserError
from weibolabel.folds import make_folds
from weibolabel.inference import encode
from weibolabel.labels import load_label_schema
from weibolabel.modeling import fit_max_length, load_model_config, load_tokenizer, save_checkpoint
from weibolabel.preemption import StopSignal
from weibolabel.results import write_results
from weibolabel.runs import (
    check_shared_directory,
    claim_run_directory,
    ensure_writable,
    environment,
    file_sha256,
    limit_tokenizer_threads,
    make_accelerator,
    on_main_process,
    run_guarded,
    setup_logging,
    write_json,
)
from weibolabel.training import fit_and_score_fold

logger = get_logger("train")


def main(argv: list[str] | None = None) -> int:
    config = parse_config(TrainConfig, argv, description=__doc__)
    limit_tokenizer_threads()  # every process tokenizes the data: share the node's CPUs, not all of them each
    setup_logging()
    accelerator = make_accelerator(config.collective_timeout_minutes)
    return run_guarded(
        lambda: cross_validate(config, accelerator, StopSignal()), accelerator, logger, "finished folds and epochs"
    )


def cross_validate(config: TrainConfig, accelerator: Accelerator, stop: StopSignal) -> None:
    out = Path(config.output_dir)

    # 1. Data and model are checked before any training: bad rows and unreachable models fail here.
    if not config.data:
        raise UserError("--data is required: the labeled .xlsx, .csv or .parquet file.")
    # Every process: one that went on alone would wait for the others forever. Nothing is created yet: a run
    # refused by the checks below leaves no empty run directory (claim_run_directory makes it).
    ensure_writable(out, create=False)
    # Folds are written on every node and reported on the main one: all must see the same directory.
    check_shared_directory(accelerator, out, "--output_dir")
    schema = load_label_schema(config.labels)
    data = load_labeled(
        config.data,
        schema,
        config.text_column,
        config.label_column,
        config.sheet,
        config.encoding,
        config.on_conflict,
        header_row=config.header_row,
    )
    rows, texts, labels = data.rows, data.rows["text"].tolist(), data.rows["label"].to_numpy()
    tokenizer = load_tokenizer(config.model_name_or_path)
    # Positions past the model's table would crash on GPU with a bare device-side assert.
    max_length, lowered = fit_max_length(
        config.max_length, load_model_config(config.model_name_or_path).max_position_embeddings
    )
    if lowered:
        logger.warning(lowered)
        config = dataclasses.replace(config, max_length=max_length)
    logger.info(f"{config.data}: {data.counts['rows_used']} rows used, classes {data.counts['class_counts']}")
    for key in ("empty_text_dropped", "duplicates_merged", "conflicting_duplicates_dropped"):
        if data.counts[key]:
            logger.warning(f"{key.replace('_', ' ')}: {data.counts[key]} (listed in {out / 'data_issues.csv'})")

    # 2. The run directory records what it holds, so a resume never mixes two different runs.
    def claim_and_describe_run() -> None:
        identity = {**config_to_dict(config), "data_sha256": file_sha256(Path(config.data)), "labels": schema.names}
        identity.pop("output_dir")
        identity.pop("collective_timeout_minutes")  # a re-run may wait longer without changing the result
        claim_run_directory(out, identity, "training run")
        write_config(config, out / "config.yaml")
        write_json(out / "env.json", environment(accelerator.num_processes, accelerator.mixed_precision))
        data.issues.to_csv(out / "data_issues.csv", index=False)

    on_main_process(accelerator, claim_and_describe_run)

    # 3. Folds: stratified, seeded, duplicates grouped; every row's fold is written down.
    fold_of_row = make_folds(labels, rows["group"].tolist(), config.num_folds, config.seed)
    if accelerator.is_main_process:
        rows.assign(fold=fold_of_row).to_csv(out / "folds.csv", index=False)
    encoded = encode(tokenizer, texts, config.max_length)
    if encoded.truncated.any():
        logger.warning(f"{int(encoded.truncated.sum())} texts are longer than {config.max_length} tokens: truncated")

    # 4. Each process trains its share of the folds.
    for fold in range(config.num_folds):
        if fold % accelerator.num_processes != accelerator.process_index:
            continue
        if (out / f"fold_{fold}" / "fold_result.json").is_file():
            logger.info(f"fold {fold}: already finished, skipped", main_process_only=False)
            continue
        run_fold(fold, config, accelerator, stop, tokenizer, schema, encoded.input_ids, labels, rows, fold_of_row, out)
    accelerator.wait_for_everyone()

    # 5. The main process gathers the folds, scores the baseline on the same folds and writes the report.
    def report() -> None:
        data_counts = data.counts | {"truncated": int(encoded.truncated.sum())}
        metrics = write_results(config, out, schema.names, data_counts, texts, labels, rows, fold_of_row)
        summary = metrics["summary"]
        logger.info(
            f"done: accuracy {summary['accuracy']['mean']:.4f} ± {summary['accuracy']['std']:.4f}, macro-F1 "
            f"{summary['macro_f1']['mean']:.4f} ± {summary['macro_f1']['std']:.4f}; report: {out / 'report.md'}"
        )

    on_main_process(accelerator, report)


def run_fold(fold, config, accelerator, stop, tokenizer, schema, input_ids, labels, rows, fold_of_row, out) -> None:
    """Train on every fold but `fold` (a validation part carved out picks the best epoch), score `fold` once with
    that epoch's model, and save the checkpoint, the test predictions and the fold's record."""
    fold_dir = out / f"fold_{fold}"
    test_index = np.flatnonzero(fold_of_row == fold)
    score, model = fit_and_score_fold(
        config, accelerator, stop, schema, tokenizer.pad_token_id, input_ids, labels, rows["group"].tolist(),
        np.flatnonzero(fold_of_row != fold), test_index, fold, fold_dir / "resume" / "state.pt",
    )  # fmt: skip
    save_checkpoint(accelerator.unwrap_model(model), tokenizer, fold_dir, schema)
    pd.DataFrame({"index": test_index, "probs": list(score.probs)}).to_parquet(fold_dir / "test_predictions.parquet")
    write_json(
        fold_dir / "fold_result.json",
        {
            "fold": fold,
            "num_train": score.num_fit,
            "num_validation": score.num_validation,
            "num_test": len(test_index),
            "best_epoch": score.training.best_epoch + 1,
            "history": score.training.history,
            "test": score.metrics,
            "initial_weights_sha256": score.initial_weights_sha256,
        },
    )
    shutil.rmtree(fold_dir / "resume", ignore_errors=True)
    logger.info(
        f"fold {fold}: test accuracy {score.metrics['accuracy']:.4f}, macro-F1 {score.metrics['macro_f1']:.4f}",
        main_process_only=False,
    )
    del model
    accelerator.free_memory()


if __name__ == "__main__":
    sys.exit(main())
