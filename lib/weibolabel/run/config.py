"""One frozen dataclass per job; a YAML file overlays the defaults and command-line flags overlay that.

Imported before anything heavy (torch, transformers, pandas): `--help` and a bad option answer in well under a
second."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from weibolabel.util.errors import UserError
from weibolabel.util.files import write_text

# --device: where a job computes. "auto" uses the GPUs torch can use, and stops where the node shows GPUs that torch
# cannot use (weibolabel.run.device); "cpu" runs on the CPU on purpose, GPUs or not. Not part of a run's identity.
DEVICE_OPTION = {
    "help": "auto: the GPUs (stops on a GPU node where torch cannot use them); cpu: the CPU on purpose.",
    "choices": ["auto", "cpu"],
}


def option(default, help: str, choices: list[str] | None = None):
    """A config field with its `--help` text (and choices); a list default is copied for each config."""
    metadata = {"help": help, **({"choices": choices} if choices else {})}
    if isinstance(default, list):
        return field(default_factory=default.copy, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class TrainConfig:
    """k-fold cross-validated fine-tuning of a sequence classifier."""

    data: str | None = option(
        None,
        "Labeled comments (required): .xlsx, .csv, .parquet, .json/.jsonl, a dataset directory "
        "(save_to_disk, or data files with a dataset card) or a hub dataset id in the datasets cache.",
    )
    # None, not "train": a run made before this option existed resumes (its recorded settings have no split).
    split: str | None = option(None, "Split of a dataset directory or hub dataset id (default: train).")
    sheet: str | None = option(None, "Sheet name of an .xlsx (default: the first sheet).")
    encoding: str | None = option(None, "Encoding of a .csv (default: detect UTF-8, UTF-8 with BOM or GB18030).")
    header_row: int = option(
        1, "Spreadsheet row (1 = first) of the column names in an .xlsx or .csv (titles above it)."
    )
    text_column: str = option("Sentence", "Column holding the comment text.")
    label_column: str = option("Label", "Column holding the label id (or label name).")
    labels: str | None = option(
        None, "YAML/JSON label schema: a list of {id, name, description} (default: the four classes)."
    )
    model_name_or_path: str = option(
        "bert-base-chinese", "Pretrained encoder: a Hugging Face hub name or a local directory (offline clusters)."
    )
    output_dir: str = option("runs/cv", "Run directory; re-running resumes it.")
    num_folds: int = option(5, "Number of stratified cross-validation folds.")
    # 4, as in every documented recipe (configs/bert-base-chinese.yaml): BERT's authors fine-tune for 2-4 epochs and
    # the best epoch is chosen on validation data, so the last of too many costs time, not accuracy.
    num_epochs: int = option(4, "Training epochs per fold; the best epoch is kept.")
    seed: int = option(42, "Seed for folds, initialisation and data order.")
    max_length: int = option(128, "Longest input in tokens; longer texts are truncated.")
    learning_rate: float = option(2e-5, "Peak AdamW learning rate.")
    per_device_batch_size: int = option(32, "Training examples per step on each device.")
    gradient_accumulation_steps: int = option(1, "Steps to accumulate before an update.")
    eval_batch_size: int = option(128, "Examples per batch when scoring.")
    weight_decay: float = option(0.01, "AdamW weight decay (not on biases or LayerNorm).")
    warmup_ratio: float = option(0.1, "Fraction of steps of linear learning-rate warmup.")
    max_grad_norm: float = option(1.0, "Gradient clipping norm.")
    validation_fraction: float = option(0.1, "Share of each fold's training part held out to pick the best epoch.")
    class_weighted_loss: bool = option(False, "Weight the loss by inverse class frequency (for imbalanced labels).")
    on_conflict: str = option(
        "drop",
        "Duplicates with conflicting labels: 'drop' them (listed in data_issues.csv) or 'error'.",
        choices=["drop", "error"],
    )
    baseline: bool = option(
        True, "Also score a TF-IDF + logistic-regression baseline on the same folds (--no_baseline: skip)."
    )
    collective_timeout_minutes: float | None = option(
        None,
        "How long processes wait for one another at a barrier before the job fails, in minutes "
        "(default: 120 on GPUs, 1440 on CPUs). A process with fewer folds waits a whole fold: keep it above "
        "one fold's training time.",
    )
    device: str = field(default="auto", metadata=DEVICE_OPTION)

    def __post_init__(self) -> None:
        # At parse time, before the run directory is written: a refused value must not leave settings behind that
        # the corrected command is then refused against. The wording is make_folds' and split_validation's.
        check_at_least(self.num_folds, 2, "--num_folds")
        if not 0 < self.validation_fraction < 0.5:
            raise UserError(f"--validation_fraction must be between 0 and 0.5, got {self.validation_fraction}.")
        check_positive_fields(
            self,
            "num_epochs max_length learning_rate per_device_batch_size gradient_accumulation_steps eval_batch_size "
            "max_grad_norm collective_timeout_minutes",
        )
        check_at_least(self.weight_decay, 0, "--weight_decay")
        if not 0 <= self.warmup_ratio <= 1:
            raise UserError(f"--warmup_ratio must be between 0 and 1, got {self.warmup_ratio}.")


@dataclass(frozen=True)
class LabelConfig:
    """Sharded batch labeling of an unlabeled corpus with a trained run or checkpoint."""

    input: str | None = option(
        None,
        "Comments to label: .xlsx, .csv, .parquet, .txt (one a line) or .json/.jsonl, a directory or a "
        "glob of them, a dataset directory (save_to_disk, or data files with a dataset card) or a hub dataset id.",
    )
    # None, not "train": a run made before this option existed resumes (its recorded settings have no split).
    split: str | None = option(None, "Split of a dataset directory or hub dataset id (default: train).")
    model: str | None = option(
        None, "A training run directory (its fold models are ensembled) or one checkpoint directory."
    )
    output: str | None = option(None, "The Parquet file to write.")
    text_column: str = option("Sentence", "Column holding the comment text.")
    sheet: str | None = option(None, "Sheet name of .xlsx inputs (default: the first).")
    encoding: str | None = option(None, "Encoding of .csv/.txt inputs (default: detect).")
    header_row: int = option(
        1, "Spreadsheet row (1 = first) of the column names in .xlsx/.csv inputs (titles above it)."
    )
    carry_columns: list[str] = option([], "Input columns copied into the output (e.g. show date user_id).")
    gold_column: str = option("Label", "If the input has this column, report agreement with it.")
    max_length: int | None = option(None, "Longest input in tokens (default: the training run's max_length).")
    batch_size: int = option(256, "Most comments per forward pass.")
    max_tokens: int = option(16384, "Token budget per batch (padded length x rows); caps long batches.")
    chunk_size: int = option(4096, "Rows per output part; a kill loses at most one chunk per process.")
    calibration: bool = option(
        True, "Apply the run's fitted temperature (calibration.json); --no_calibration for raw probabilities."
    )
    quantize: str | None = option(
        None,
        "CPU only, off by default: onnx-int8 exports the models to ONNX Runtime and quantizes their linear layers "
        "to int8 there (needs pip install -e '.[onnx]'). Labels and probabilities move a little, and depend slightly "
        "on the batch: bench/README.md gives its speed and agreement with fp32 on the demo run.",
        choices=["onnx-int8"],
    )
    low_confidence: float = option(0.5, "Rows with confidence below this are counted in the summary.")
    overwrite: bool = option(False, "Replace an existing output and discard unfinished parts of another run.")
    collective_timeout_minutes: float | None = option(
        None,
        "How long processes wait for one another at a barrier before the job fails, in minutes "
        "(default: 120 on GPUs, 1440 on CPUs); keep it above the merge's time for very large corpora.",
    )
    device: str = field(default="auto", metadata=DEVICE_OPTION)

    def __post_init__(self) -> None:
        check_positive_fields(self, "max_length batch_size max_tokens chunk_size collective_timeout_minutes")


@dataclass(frozen=True)
class LabelIssuesConfig:
    """Rank the hand labels a cross-validated run finds least plausible (confident learning, cleanlab)."""

    run: str | None = option(None, "A finished training run of jobs/train.py (required).")
    output_dir: str | None = option(None, "Directory to write (default: <run>/review).")
    filter_by: str = option(
        "prune_by_noise_rate",
        "cleanlab's rule for which rows to flag (cleanlab.filter.find_label_issues).",
        choices=["prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given"],
    )


@dataclass(frozen=True)
class ApplyReviewConfig:
    """Apply reviewed label decisions to a labeled file, as a new file with a log of every change."""

    review: str | None = option(None, "The reviewed label_issues.xlsx (required).")
    data: str | None = option(None, "The labeled file the review refers to (required).")
    output: str | None = option(None, "The file to write (default: <data>_reviewed beside it, same format).")
    text_column: str = option("Sentence", "Text column of the labeled file.")
    label_column: str = option("Label", "Label column of the labeled file.")
    sheet: str | None = option(None, "Sheet of an .xlsx labeled file (default: the first).")
    header_row: int = option(1, "Spreadsheet row (1 = first) of the column names in an .xlsx/.csv labeled file.")
    encoding: str | None = option(None, "Encoding of a .csv labeled file (default: detect).")
    labels: str | None = option(None, "YAML/JSON label schema (default: the review file's 'labels' sheet).")
    overwrite: bool = option(
        False, "Replace an existing --output file; when --output is --data, a backup is written first."
    )


@dataclass(frozen=True)
class SimulateActiveLearningConfig:
    """Replay the annotation loop on a labeled file: uncertainty selection against random selection."""

    data: str | None = option(None, "A labeled file (required unless --run is given).")
    run: str | None = option(None, "A training run whose rows and folds (folds.csv) to use instead of --data.")
    output_dir: str = option("runs/active_learning", "Directory to write.")
    text_column: str = option("Sentence", "Text column of --data.")
    label_column: str = option("Label", "Label column of --data.")
    sheet: str | None = option(None, "Sheet of an .xlsx --data file (default: the first).")
    header_row: int = option(1, "Spreadsheet row (1 = first) of the column names in an .xlsx/.csv --data file.")
    encoding: str | None = option(None, "Encoding of a .csv --data file (default: detect).")
    labels: str | None = option(None, "YAML/JSON label schema (default: the four).")
    num_folds: int = option(5, "Folds for --data (a --run keeps its own).")
    fold_seed: int = option(42, "Seed of the folds for --data.")
    strategies: list[str] = option(
        ["random", "margin", "entropy", "disagreement"],
        "Selection strategies to compare (random, margin, entropy, disagreement).",
    )
    seed_size: int = option(40, "Labels to start from (stratified, random).")
    batch_size: int = option(20, "Labels added per round.")
    max_labels: int | None = option(None, "Stop at this many labels (default: the whole training part of each fold).")
    seeds: list[int] = option([0, 1, 2], "Repetitions (seed set, random).")
    class_quota: float = option(0.5, "Share of each batch reserved per predicted class, as select_for_annotation.")
    committee_size: int = option(3, "Models (k-fold parts of the labeled set) whose disagreement is measured.")
    tolerance: float = option(0.01, "Labels needed = first point within this of the full-data macro-F1.")

    def __post_init__(self) -> None:
        check_at_least(self.num_folds, 2, "--num_folds")  # make_folds' rule, said before the data is read
        check_at_least(self.committee_size, 2, "--committee_size")  # k-fold parts: two at least
        check_positive_fields(self, "batch_size max_labels")  # a batch of 0 labels would never reach max_labels


@dataclass(frozen=True)
class AnalyzeConfig:
    """Corpus statistics of a labeled Parquet file, as a Markdown report with plots and CSV tables."""

    input: str | None = option(None, "The labeling job's Parquet output (required).")
    output_dir: str | None = option(None, "Directory to write (default: <input>_analysis).")
    run: str | None = option(
        None, "The training run that labeled the file: its out-of-fold predictions adjust the shares."
    )
    gold_sample: str | None = option(
        None, "A filled-in random sample (select_for_annotation --strategy random): adds PPI shares."
    )
    gold_encoding: str | None = option(None, "Encoding of a .csv --gold_sample (default: detect).")
    adjustment: str = option(
        "pacc",
        "Method behind adjusted_share: 'pacc' (on calibrated probabilities) or 'acc' (on labels).",
        choices=["pacc", "acc"],
    )
    confusion_rows: str = option(
        "model_free",
        "Out-of-fold rows the confusion rates are measured on: 'model_free' (rows chosen without a model: "
        "original and random, by the training file's 'selection' column) or 'all'.",
        choices=["model_free", "all"],
    )
    target_width: float = option(
        0.05, "Full width of a 95%% interval the gold rows advised without a gold sample aim at."
    )
    bootstrap_replicates: int = option(1000, "Bootstrap replicates of the adjusted shares.")
    seed: int = option(0, "Seed of the bootstrap.")
    min_confidence: float = option(0.8, "Threshold of the 'confident rows' shares.")
    group_by: str | None = option(None, "Column to split the shares by (e.g. source_file).")
    group_by_month: bool = option(False, "--group_by names a date column: group by calendar month (YYYY-MM).")
    max_groups: int = option(20, "Largest groups shown; the rest are pooled as '(other)'.")
    min_group_rows: int = option(30, "Groups with fewer labeled rows (or gold rows, for PPI) get no share.")
    top_ngrams: int = option(15, "Characteristic n-grams listed per class.")
    min_ngram_count: int = option(3, "Fewest comments an n-gram must occur in.")

    def __post_init__(self) -> None:
        # 0 would name all groups but the smallest. --target_width and --bootstrap_replicates: the job's own rules.
        check_at_least(self.max_groups, 1, "--max_groups")


@dataclass(frozen=True)
class SelectConfig:
    """Comments for the next round of annotation: the most uncertain, or a uniform random sample for PPI."""

    input: str | None = option(None, "The labeling job's Parquet output (required).")
    output: str | None = option(None, "The .xlsx to write for the annotators (required).")
    strategy: str = option(
        "uncertainty",
        "'uncertainty' (by --method) or 'random': uniform over ok rows, the gold sample of "
        "analyze_labels --gold_sample.",
        choices=["uncertainty", "random"],
    )
    k: int = option(200, "Number of comments to select.")
    seed: int = option(0, "Seed of --strategy random (the same seed draws the same rows).")
    method: str = option(
        "margin",
        "Uncertainty: top-1 minus top-2 'margin', 'entropy', or fold-model 'disagreement'.",
        choices=["margin", "entropy", "disagreement"],
    )
    model: str | None = option(None, "Training run whose fold models re-score candidates (--method disagreement).")
    pool_factor: int = option(5, "With --method disagreement: re-score the pool_factor x K most uncertain rows.")
    class_quota: float = option(0.5, "Share of K split evenly over the predicted classes (at least one each).")
    exclude: str | None = option(None, "A labeled training file; its texts (and near-copies) are not selected.")
    exclude_text_column: str = option("Sentence", "Text column of the --exclude file.")
    sheet: str | None = option(None, "Sheet of an .xlsx --exclude file (default: the first).")
    header_row: int = option(1, "Spreadsheet row (1 = first) of the column names in an .xlsx/.csv --exclude file.")
    encoding: str | None = option(None, "Encoding of a .csv --exclude (default: detect).")
    overwrite: bool = option(False, "Replace an existing --output.")
    device: str = field(default="auto", metadata=DEVICE_OPTION)

    def __post_init__(self) -> None:
        # Said before --method disagreement loads and runs the fold models; the wording is select_for_annotation's.
        check_at_least(self.k, 1, "--k")
        check_at_least(self.pool_factor, 1, "--pool_factor")


@dataclass(frozen=True)
class CompareConfig:
    """Paired comparison of training runs made on the same folds."""

    runs: list[str] = option([], "Two or more run directories (also accepted as leading arguments).")
    output_dir: str | None = option(None, "Directory for comparison.md/.json (required).")


def check_positive(value: float | None, flag: str) -> None:
    if value is not None and not 0 < value < math.inf:  # `not`: nan compares false with everything
        raise UserError(f"{flag} must be positive, got {value}.")


def check_positive_fields(config, names: str) -> None:
    """check_positive on each of a config's fields named (space-separated), as the flag a user gives."""
    for name in names.split():
        check_positive(getattr(config, name), f"--{name}")


def check_at_least(value: float, minimum: float, flag: str) -> None:
    if not value >= minimum:
        raise UserError(f"{flag} must be at least {minimum}, got {value}.")


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
        """argparse's, naming the nearest option to a mistyped one (`--learning_rte`: did you mean ...?)."""
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
    """One option per field, spelled as transformers.HfArgumentParser did (argparse alone keeps `--help` free of its
    import time): `--name` and `--name-with-dashes`; a bool is `--X [true|false]` (bare `--X` is true), plus `--no_X`
    when on by default; a list takes one or more values. Defaults: `defaults` (a --config file's), else the field's."""
    parser = _ConfigParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(config_class)
    for spec in dataclasses.fields(config_class):
        kind = _unwrap_optional(hints[spec.name])
        dashed = spec.name.replace("_", "-")
        names = [f"--{spec.name}"] + ([f"--{dashed}"] if dashed != spec.name else [])
        kwargs = {key: spec.metadata[key] for key in ("help", "choices") if key in spec.metadata}
        default = spec.default if spec.default_factory is dataclasses.MISSING else spec.default_factory()
        kwargs["default"] = (defaults or {}).get(spec.name, default)
        if kind is bool:
            kwargs.update(type=_string_to_bool, nargs="?", const=True)
        elif typing.get_origin(kind) is list:
            kwargs.update(type=typing.get_args(kind)[0], nargs="+")
        else:
            kwargs["type"] = kind
        parser.add_argument(*names, **kwargs)
        if kind is bool and spec.default is True:
            parser.add_argument(
                f"--no_{spec.name}",
                f"--no-{dashed}",
                action="store_false",
                dest=spec.name,
                help=NEGATION_HELP.get(spec.name, f"Turn --{spec.name} off."),
                default=argparse.SUPPRESS,  # the value comes from --X's action; no "(default: ...)" in the help
            )
    parser.add_argument("--config", default=None, help="YAML file of options; flags given here override it.")
    return parser


def _unwrap_optional(hint):
    """X for `X | None`, else `hint` itself."""
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return args[0] if is_union and len(args) == 1 else hint


_BOOLEANS = dict.fromkeys(("yes", "true", "t", "y", "1"), True) | dict.fromkeys(("no", "false", "f", "n", "0"), False)


def _string_to_bool(value: str) -> bool:
    if value.lower() not in _BOOLEANS:
        raise argparse.ArgumentTypeError(f"expected true or false (also yes/no, 1/0), got {value!r}")
    return _BOOLEANS[value.lower()]


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
        described = [
            f"'{key}'" + "".join(f" (did you mean '{close}'?)" for close in difflib.get_close_matches(key, known, n=1))
            for key in unknown
        ]
        raise UserError(
            f"{path}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(described)}; "
            f"valid options are {', '.join(sorted(known))}."
        )
    # argparse checks neither the type nor the choices of a default, and the file's values become the defaults.
    hints = typing.get_type_hints(config_class)
    return {
        spec.name: _yaml_value(path, spec.name, options[spec.name], hints[spec.name], spec.metadata.get("choices"))
        for spec in dataclasses.fields(config_class)
        if spec.name in options
    }


_EXPECTED = {str: "a text", int: "a whole number", float: "a number", bool: "true or false"}


def _yaml_value(path: Path, name: str, value, hint, choices: list[str] | None):
    """A --config file's value of option `name` as its field's type `hint` has it, or a UserError saying why not."""
    kind = _unwrap_optional(hint)
    if value is None and kind is not hint:
        return None
    if typing.get_origin(kind) is list:
        # `carry_columns: show` is one column, as `--carry_columns show` is (not the letters s, h, o, w).
        items = value if isinstance(value, list) else [value]
        return [_yaml_scalar(path, name, item, typing.get_args(kind)[0], choices, in_list=True) for item in items]
    return _yaml_scalar(path, name, value, kind, choices)


def _yaml_scalar(path: Path, name: str, value, kind: type, choices: list[str] | None, in_list: bool = False):
    if kind is float and isinstance(value, str):
        with contextlib.suppress(ValueError):  # YAML 1.1 reads `2e-5` (no dot) as text; it means the number
            value = float(value)
    if kind is float and type(value) is int:
        value = float(value)
    if type(value) is not kind:  # `type`, not isinstance: true is an int to Python, not a number of folds
        expected = _EXPECTED[kind] + (" or a list of them" if in_list else "")
        got = "null (leave the line out for the default)" if value is None else repr(value)
        quote = f" (quote it: {name}: '{value}')" if kind is str and type(value) in (int, float) else ""
        raise UserError(f"{path}: option '{name}' must be {expected}, got {got}{quote}.")
    if choices and value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserError(f"{path}: option '{name}' must be one of {', '.join(choices)}, got {value!r}{hint}.")
    return value


def config_to_dict(config) -> dict:
    return dataclasses.asdict(config)


def write_config(config, path: Path) -> None:
    write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True))
