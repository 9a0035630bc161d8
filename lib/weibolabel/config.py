"""One frozen dataclass per job; a YAML file overlays the defaults and command-line flags overlay that.

Imported before anything heavy (torch, transformers, pandas): `--help` and a bad option answer in well under a
second."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from weibolabel.errors import UserError
from weibolabel.files import write_text


@dataclass(frozen=True)
class TrainConfig:
    """k-fold cross-validated fine-tuning of a sequence classifier."""

    data: str | None = field(
        default=None,
        metadata={
            "help": "Labeled comments (required): .xlsx, .csv, .parquet, .json/.jsonl, a dataset directory "
            "(save_to_disk, or data files with a dataset card) or a hub dataset id in the datasets cache."
        },
    )
    # None, not "train": a run made before this option existed resumes (its recorded settings have no split).
    split: str | None = field(
        default=None, metadata={"help": "Split of a dataset directory or hub dataset id (default: train)."}
    )
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
    # 4, as in every documented recipe (configs/bert-base-chinese.yaml): BERT's authors fine-tune for 2-4 epochs and
    # the best epoch is chosen on validation data, so the last of too many costs time, not accuracy.
    num_epochs: int = field(default=4, metadata={"help": "Training epochs per fold; the best epoch is kept."})
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
        default=True,
        metadata={
            "help": "Also score a TF-IDF + logistic-regression baseline on the same folds (--no_baseline: skip)."
        },
    )
    collective_timeout_minutes: float | None = field(
        default=None,
        metadata={
            "help": "How long processes wait for one another at a barrier before the job fails, in minutes "
            "(default: 120 on GPUs, 1440 on CPUs). A process with fewer folds waits a whole fold: keep it above "
            "one fold's training time."
        },
    )

    def __post_init__(self) -> None:
        check_positive(self.collective_timeout_minutes, "--collective_timeout_minutes")


@dataclass(frozen=True)
class LabelConfig:
    """Sharded batch labeling of an unlabeled corpus with a trained run or checkpoint."""

    input: str | None = field(
        default=None,
        metadata={
            "help": "Comments to label: .xlsx, .csv, .parquet, .txt (one a line) or .json/.jsonl, a directory or a "
            "glob of them, a dataset directory (save_to_disk, or data files with a dataset card) or a hub dataset id."
        },
    )
    # None, not "train": a run made before this option existed resumes (its recorded settings have no split).
    split: str | None = field(
        default=None, metadata={"help": "Split of a dataset directory or hub dataset id (default: train)."}
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
    quantize: str | None = field(
        default=None,
        metadata={
            "help": "CPU only, off by default: int8 dynamically quantizes the models' linear layers with PyTorch, "
            "onnx-int8 exports them to ONNX Runtime and quantizes them there (the faster, measured; needs "
            "pip install -e '.[onnx]'). Labels and probabilities move a little, and depend slightly on the batch: "
            "bench/README.md gives both's speed and agreement with fp32 on the demo run.",
            "choices": ["int8", "onnx-int8"],
        },
    )
    low_confidence: float = field(
        default=0.5, metadata={"help": "Rows with confidence below this are counted in the summary."}
    )
    overwrite: bool = field(
        default=False, metadata={"help": "Replace an existing output and discard unfinished parts of another run."}
    )
    collective_timeout_minutes: float | None = field(
        default=None,
        metadata={
            "help": "How long processes wait for one another at a barrier before the job fails, in minutes "
            "(default: 120 on GPUs, 1440 on CPUs); keep it above the merge's time for very large corpora."
        },
    )

    def __post_init__(self) -> None:
        check_positive(self.collective_timeout_minutes, "--collective_timeout_minutes")


@dataclass(frozen=True)
class LabelIssuesConfig:
    """Rank the hand labels a cross-validated run finds least plausible (confident learning, cleanlab)."""

    run: str | None = field(default=None, metadata={"help": "A finished training run of jobs/train.py (required)."})
    output_dir: str | None = field(default=None, metadata={"help": "Directory to write (default: <run>/review)."})
    filter_by: str = field(
        default="prune_by_noise_rate",
        metadata={
            "help": "cleanlab's rule for which rows to flag (cleanlab.filter.find_label_issues).",
            "choices": ["prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given"],
        },
    )


@dataclass(frozen=True)
class ApplyReviewConfig:
    """Apply reviewed label decisions to a labeled file, as a new file with a log of every change."""

    review: str | None = field(default=None, metadata={"help": "The reviewed label_issues.xlsx (required)."})
    data: str | None = field(default=None, metadata={"help": "The labeled file the review refers to (required)."})
    output: str | None = field(
        default=None, metadata={"help": "The file to write (default: <data>_reviewed beside it, same format)."}
    )
    text_column: str = field(default="Sentence", metadata={"help": "Text column of the labeled file."})
    label_column: str = field(default="Label", metadata={"help": "Label column of the labeled file."})
    sheet: str | None = field(default=None, metadata={"help": "Sheet of an .xlsx labeled file (default: the first)."})
    header_row: int = field(
        default=1, metadata={"help": "Spreadsheet row (1 = first) of the column names in an .xlsx/.csv labeled file."}
    )
    encoding: str | None = field(default=None, metadata={"help": "Encoding of a .csv labeled file (default: detect)."})
    labels: str | None = field(
        default=None, metadata={"help": "YAML/JSON label schema (default: the review file's 'labels' sheet)."}
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "Replace an existing --output file; when --output is --data, a backup is written first."},
    )


@dataclass(frozen=True)
class SimulateActiveLearningConfig:
    """Replay the annotation loop on a labeled file: uncertainty selection against random selection."""

    data: str | None = field(default=None, metadata={"help": "A labeled file (required unless --run is given)."})
    run: str | None = field(
        default=None, metadata={"help": "A training run whose rows and folds (folds.csv) to use instead of --data."}
    )
    output_dir: str = field(default="runs/active_learning", metadata={"help": "Directory to write."})
    text_column: str = field(default="Sentence", metadata={"help": "Text column of --data."})
    label_column: str = field(default="Label", metadata={"help": "Label column of --data."})
    sheet: str | None = field(default=None, metadata={"help": "Sheet of an .xlsx --data file (default: the first)."})
    header_row: int = field(
        default=1, metadata={"help": "Spreadsheet row (1 = first) of the column names in an .xlsx/.csv --data file."}
    )
    encoding: str | None = field(default=None, metadata={"help": "Encoding of a .csv --data file (default: detect)."})
    labels: str | None = field(default=None, metadata={"help": "YAML/JSON label schema (default: the four)."})
    num_folds: int = field(default=5, metadata={"help": "Folds for --data (a --run keeps its own)."})
    fold_seed: int = field(default=42, metadata={"help": "Seed of the folds for --data."})
    strategies: list[str] = field(
        default_factory=lambda: ["random", "margin", "entropy", "disagreement"],
        metadata={"help": "Selection strategies to compare (random, margin, entropy, disagreement)."},
    )
    seed_size: int = field(default=40, metadata={"help": "Labels to start from (stratified, random)."})
    batch_size: int = field(default=20, metadata={"help": "Labels added per round."})
    max_labels: int | None = field(
        default=None, metadata={"help": "Stop at this many labels (default: the whole training part of each fold)."}
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Repetitions (seed set, random)."})
    class_quota: float = field(
        default=0.5, metadata={"help": "Share of each batch reserved per predicted class, as select_for_annotation."}
    )
    committee_size: int = field(
        default=3, metadata={"help": "Models (k-fold parts of the labeled set) whose disagreement is measured."}
    )
    tolerance: float = field(
        default=0.01, metadata={"help": "Labels needed = first point within this of the full-data macro-F1."}
    )


@dataclass(frozen=True)
class AnalyzeConfig:
    """Corpus statistics of a labeled Parquet file, as a Markdown report with plots and CSV tables."""

    input: str | None = field(default=None, metadata={"help": "The labeling job's Parquet output (required)."})
    output_dir: str | None = field(default=None, metadata={"help": "Directory to write (default: <input>_analysis)."})
    run: str | None = field(
        default=None,
        metadata={"help": "The training run that labeled the file: its out-of-fold predictions adjust the shares."},
    )
    gold_sample: str | None = field(
        default=None,
        metadata={"help": "A filled-in random sample (select_for_annotation --strategy random): adds PPI shares."},
    )
    adjustment: str = field(
        default="pacc",
        metadata={
            "help": "Method behind adjusted_share: 'pacc' (on calibrated probabilities) or 'acc' (on labels).",
            "choices": ["pacc", "acc"],
        },
    )
    confusion_rows: str = field(
        default="model_free",
        metadata={
            "help": "Out-of-fold rows the confusion rates are measured on: 'model_free' (rows chosen without a model: "
            "original and random, by the training file's 'selection' column) or 'all'.",
            "choices": ["model_free", "all"],
        },
    )
    target_width: float = field(
        default=0.05,
        metadata={"help": "Full width of a 95% interval the gold rows advised without a gold sample aim at."},
    )
    bootstrap_replicates: int = field(default=1000, metadata={"help": "Bootstrap replicates of the adjusted shares."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap."})
    min_confidence: float = field(default=0.8, metadata={"help": "Threshold of the 'confident rows' shares."})
    group_by: str | None = field(default=None, metadata={"help": "Column to split the shares by (e.g. source_file)."})
    group_by_month: bool = field(
        default=False, metadata={"help": "--group_by names a date column: group by calendar month (YYYY-MM)."}
    )
    max_groups: int = field(default=20, metadata={"help": "Largest groups shown; the rest are pooled as '(other)'."})
    min_group_rows: int = field(
        default=30, metadata={"help": "Groups with fewer labeled rows (or gold rows, for PPI) get no share."}
    )
    top_ngrams: int = field(default=15, metadata={"help": "Characteristic n-grams listed per class."})
    min_ngram_count: int = field(default=3, metadata={"help": "Fewest comments an n-gram must occur in."})


@dataclass(frozen=True)
class SelectConfig:
    """Comments for the next round of annotation: the most uncertain, or a uniform random sample for PPI."""

    input: str | None = field(default=None, metadata={"help": "The labeling job's Parquet output (required)."})
    output: str | None = field(default=None, metadata={"help": "The .xlsx to write for the annotators (required)."})
    strategy: str = field(
        default="uncertainty",
        metadata={
            "help": "'uncertainty' (by --method) or 'random': uniform over ok rows, the gold sample of "
            "analyze_labels --gold_sample.",
            "choices": ["uncertainty", "random"],
        },
    )
    k: int = field(default=200, metadata={"help": "Number of comments to select."})
    seed: int = field(default=0, metadata={"help": "Seed of --strategy random (the same seed draws the same rows)."})
    method: str = field(
        default="margin",
        metadata={
            "help": "Uncertainty: top-1 minus top-2 'margin', 'entropy', or fold-model 'disagreement'.",
            "choices": ["margin", "entropy", "disagreement"],
        },
    )
    model: str | None = field(
        default=None, metadata={"help": "Training run whose fold models re-score candidates (--method disagreement)."}
    )
    pool_factor: int = field(
        default=5, metadata={"help": "With --method disagreement: re-score the pool_factor x K most uncertain rows."}
    )
    class_quota: float = field(
        default=0.5, metadata={"help": "Share of K split evenly over the predicted classes (at least one each)."}
    )
    exclude: str | None = field(
        default=None, metadata={"help": "A labeled training file; its texts (and near-copies) are not selected."}
    )
    exclude_text_column: str = field(default="Sentence", metadata={"help": "Text column of the --exclude file."})
    sheet: str | None = field(default=None, metadata={"help": "Sheet of an .xlsx --exclude file (default: the first)."})
    header_row: int = field(
        default=1, metadata={"help": "Spreadsheet row (1 = first) of the column names in an .xlsx/.csv --exclude file."}
    )
    encoding: str | None = field(default=None, metadata={"help": "Encoding of a .csv --exclude (default: detect)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing --output."})


@dataclass(frozen=True)
class CompareConfig:
    """Paired comparison of training runs made on the same folds."""

    runs: list[str] = field(
        default_factory=list, metadata={"help": "Two or more run directories (also accepted as leading arguments)."}
    )
    output_dir: str | None = field(default=None, metadata={"help": "Directory for comparison.md/.json (required)."})


def check_positive(value: float | None, option: str) -> None:
    if value is not None and value <= 0:
        raise UserError(f"{option} must be positive, got {value}.")


ConfigT = typing.TypeVar("ConfigT")


def parse_config(config_class: type[ConfigT], argv: list[str] | None = None, description: str = "") -> ConfigT:
    """Defaults < `--config FILE.yaml` < command-line flags."""
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)

    options = {}
    if known.config:
        try:
            options = _read_yaml_options(Path(known.config), config_class)
        except UserError as error:  # parsing happens before a job's own error handling: same message, same status
            config_parser(config_class, description).exit(2, f"error: {error}\n")
    parser = config_parser(config_class, description, options)
    namespace = parser.parse_args(argv)
    values = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(config_class)}
    try:
        return config_class(**values)
    except UserError as error:  # a config's own checks (__post_init__): the same one-line message and status
        parser.exit(2, f"error: {error}\n")


# What `--no_X` does, for the flags that switch an on-by-default option off.
NEGATION_HELP = {
    "baseline": "Skip the TF-IDF baseline: the report then has no baseline column.",
    "calibration": "Write raw probabilities: do not apply the run's calibration.json temperature.",
}


class _ConfigParser(argparse.ArgumentParser):
    def parse_args(self, args=None, namespace=None):
        """argparse's, plus the nearest option for a mistyped one (`--learning_rte`: did you mean
        `--learning_rate`?)."""
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            options = [option for action in self._actions for option in action.option_strings]
            guesses = [
                f"{extra.split('=', 1)[0]} -> {close[0]}"
                for extra in extras
                if extra.startswith("--") and (close := difflib.get_close_matches(extra.split("=", 1)[0], options, n=1))
            ]
            hint = f" (did you mean: {', '.join(guesses)}?)" if guesses else ""
            self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return namespace


def config_parser(config_class: type, description: str = "", defaults: dict | None = None) -> argparse.ArgumentParser:
    """One option per field of `config_class`, as transformers.HfArgumentParser spells them (which the jobs used
    before; argparse alone keeps `--help` and a bad option's message free of transformers' import time):
    `--name` and `--name-with-dashes`; a bool is `--X [true|false]` (bare `--X` is true) and, when on by default,
    `--no_X` turns it off; a list takes one or more values; help and choices from the field, defaults from
    `defaults` (a --config file's) or else the field."""
    parser = _ConfigParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(config_class)
    for option in dataclasses.fields(config_class):
        kind, optional = _unwrap_optional(hints[option.name])
        names = [f"--{option.name}"] + ([f"--{option.name.replace('_', '-')}"] if "_" in option.name else [])
        kwargs = {key: option.metadata[key] for key in ("help", "choices") if key in option.metadata}
        if defaults and option.name in defaults:
            kwargs["default"] = defaults[option.name]
        elif option.default is not dataclasses.MISSING:
            kwargs["default"] = option.default
        elif option.default_factory is not dataclasses.MISSING:
            kwargs["default"] = option.default_factory()
        else:
            kwargs["required"] = True
        if kind is bool:
            kwargs.update(type=_string_to_bool, nargs="?", const=True)
        elif typing.get_origin(kind) is list:
            kwargs.update(type=typing.get_args(kind)[0], nargs="+")
        elif kind in (str, int, float):
            kwargs["type"] = kind
        else:
            raise TypeError(f"{config_class.__name__}.{option.name}: no command-line form for {hints[option.name]}")
        parser.add_argument(*names, **kwargs)
        if kind is bool and option.default is True and not optional:
            parser.add_argument(
                f"--no_{option.name}",
                f"--no-{option.name.replace('_', '-')}",
                action="store_false",
                dest=option.name,
                help=NEGATION_HELP.get(option.name, f"Turn --{option.name} off."),
                default=argparse.SUPPRESS,  # the value comes from --X's action; no "(default: ...)" in the help
            )
    parser.add_argument("--config", default=None, help="YAML file of options; flags given here override it.")
    return parser


def _unwrap_optional(hint) -> tuple[object, bool]:
    """(X, True) for `X | None`, (hint, False) otherwise."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return hint, False


def _string_to_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    if value.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if value.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false (also yes/no, 1/0), got {value!r}")


def _read_yaml_options(path: Path, config_class: type) -> dict:
    if not path.is_file():
        raise UserError(f"Config file not found: {path} (--config).")
    try:
        options = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(options, dict):
        raise UserError(f"{path}: expected a mapping of option names to values (`num_folds: 5`, one a line).")
    known = [f.name for f in dataclasses.fields(config_class)]
    unknown = [str(key) for key in options if key not in known]
    if unknown:
        described = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            described.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise UserError(
            f"{path}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(described)}; "
            f"valid options are {', '.join(sorted(known))}."
        )
    return options


def config_to_dict(config) -> dict:
    return dataclasses.asdict(config)


def write_config(config, path: Path) -> None:
    write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True))
