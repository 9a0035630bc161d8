"""One frozen dataclass per job; a YAML file overlays the defaults and command-line flags overlay that."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml
from transformers import HfArgumentParser

from weibolabel.errors import UserError


@dataclass(frozen=True)
class TrainConfig:
    """k-fold cross-validated fine-tuning of a sequence classifier."""

    data: str | None = field(default=None, metadata={"help": "Labeled comments: .xlsx, .csv or .parquet (required)."})
    sheet: str | None = field(default=None, metadata={"help": "Sheet name of an .xlsx (default: the first sheet)."})
    encoding: str | None = field(
        default=None, metadata={"help": "Encoding of a .csv (default: detect UTF-8, UTF-8 with BOM or GB18030)."}
    )
    header_row: int = field(
        default=1,
        metadata={"help": "Spreadsheet row (1 = first) of the column names in an .xlsx or .csv (titles above it)."},
    )
    text_column: str = field(default="Sentence", metadata={"help": "Column holding the comment text."})
    label_column: str = field(default="Label", metadata={"help": "Column holding the label id (or label name)."})
    labels: str | None = field(
        default=None,
        metadata={"help": "YAML/JSON label schema: a list of {id, name, description} (default: the four classes)."},
    )
    model_name_or_path: str = field(
        default="bert-base-chinese",
        metadata={"help": "Pretrained encoder: a Hugging Face hub name or a local directory (offline clusters)."},
    )
    output_dir: str = field(default="runs/cv", metadata={"help": "Run directory; re-running resumes it."})
    num_folds: int = field(default=5, metadata={"help": "Number of stratified cross-validation folds."})
    num_epochs: int = field(default=3, metadata={"help": "Training epochs per fold; the best epoch is kept."})
    seed: int = field(default=42, metadata={"help": "Seed for folds, initialisation and data order."})
    max_length: int = field(default=128, metadata={"help": "Longest input in tokens; longer texts are truncated."})
    learning_rate: float = field(default=2e-5, metadata={"help": "Peak AdamW learning rate."})
    per_device_batch_size: int = field(default=32, metadata={"help": "Training examples per step on each device."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Steps to accumulate before an update."})
    eval_batch_size: int = field(default=128, metadata={"help": "Examples per batch when scoring."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases or LayerNorm)."})
    warmup_ratio: float = field(default=0.1, metadata={"help": "Fraction of steps of linear learning-rate warmup."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    validation_fraction: float = field(
        default=0.1, metadata={"help": "Share of each fold's training part held out to pick the best epoch."}
    )
    class_weighted_loss: bool = field(
        default=False, metadata={"help": "Weight the loss by inverse class frequency (for imbalanced labels)."}
    )
    on_conflict: str = field(
        default="drop",
        metadata={
            "help": "Duplicates with conflicting labels: 'drop' them (listed in data_issues.csv) or 'error'.",
            "choices": ["drop", "error"],
        },
    )
    baseline: bool = field(
        default=True, metadata={"help": "Also score a TF-IDF + logistic-regression baseline on the same folds."}
    )


@dataclass(frozen=True)
class LabelConfig:
    """Sharded batch labeling of an unlabeled corpus with a trained run or checkpoint."""

    input: str | None = field(
        default=None,
        metadata={"help": "Comments to label: .xlsx, .csv, .parquet or .txt (one a line), a directory or a glob."},
    )
    model: str | None = field(
        default=None,
        metadata={"help": "A training run directory (its fold models are ensembled) or one checkpoint directory."},
    )
    output: str | None = field(default=None, metadata={"help": "The Parquet file to write."})
    text_column: str = field(default="Sentence", metadata={"help": "Column holding the comment text."})
    sheet: str | None = field(default=None, metadata={"help": "Sheet name of .xlsx inputs (default: the first)."})
    encoding: str | None = field(default=None, metadata={"help": "Encoding of .csv/.txt inputs (default: detect)."})
    header_row: int = field(
        default=1,
        metadata={"help": "Spreadsheet row (1 = first) of the column names in .xlsx/.csv inputs (titles above it)."},
    )
    carry_columns: list[str] = field(
        default_factory=list, metadata={"help": "Input columns copied into the output (e.g. show date user_id)."}
    )
    gold_column: str = field(
        default="Label", metadata={"help": "If the input has this column, report agreement with it."}
    )
    max_length: int | None = field(
        default=None, metadata={"help": "Longest input in tokens (default: the training run's max_length)."}
    )
    batch_size: int = field(default=256, metadata={"help": "Most comments per forward pass."})
    max_tokens: int = field(
        default=16384, metadata={"help": "Token budget per batch (padded length x rows); caps long batches."}
    )
    chunk_size: int = field(
        default=4096, metadata={"help": "Rows per output part; a kill loses at most one chunk per process."}
    )
    calibration: bool = field(
        default=True,
        metadata={
            "help": "Apply the run's fitted temperature (calibration.json); --no_calibration for raw probabilities."
        },
    )
    low_confidence: float = field(
        default=0.5, metadata={"help": "Rows with confidence below this are counted in the summary."}
    )
    overwrite: bool = field(
        default=False, metadata={"help": "Replace an existing output and discard unfinished parts of another run."}
    )


ConfigT = TypeVar("ConfigT")


def parse_config(config_class: type[ConfigT], argv: list[str] | None = None, description: str = "") -> ConfigT:
    """Defaults < `--config FILE.yaml` < command-line flags."""
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)

    parser = HfArgumentParser(
        config_class, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--config", default=None, help="YAML file of options; flags given here override it.")
    if known.config:
        parser.set_defaults(**_read_yaml_options(Path(known.config), config_class))
    namespace = parser.parse_args(argv)
    values = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(config_class)}
    return config_class(**values)


def _read_yaml_options(path: Path, config_class: type) -> dict:
    if not path.is_file():
        raise UserError(f"Config file not found: {path}")
    options = yaml.safe_load(path.read_text()) or {}
    if not isinstance(options, dict):
        raise UserError(f"{path}: expected a mapping of option names to values.")
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"{path}: unknown option(s) {unknown}; valid options are {sorted(known)}.")
    return options


def config_to_dict(config) -> dict:
    return dataclasses.asdict(config)


def write_config(config, path: Path) -> None:
    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True))
