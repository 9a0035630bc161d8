"""Option values are checked before a job does anything: a `--config` file's values against their field's type and
choices (argparse checks neither for defaults, and the file's values are the defaults), and counts, sizes and rates
against their range. Each refusal is one line naming the file or flag, exit status 2, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from weibolabel.run.config import CompareConfig, LabelConfig, TrainConfig, parse_config

from helpers.jobs import run_job, train_args


def refusal(job: str, args: list[str], capsys) -> str:
    """The one-line message of a job that refuses its options at parse time (exit status 2, no traceback)."""
    with pytest.raises(SystemExit) as exited:
        run_job(job, args, capsys)
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    return err.strip()


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "options.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ================================================================================ 1. a --config file's values
@pytest.mark.parametrize(
    "job, line, expected",
    [
        # A wrong choice ran the default instead: the uncertainty strategy, not the random gold sample.
        (
            "select_for_annotation",
            "strategy: Random",
            "option 'strategy' must be one of uncertainty, random, got 'Random' (did you mean 'random'?)",
        ),
        ("label_corpus", "device: gpu", "option 'device' must be one of auto, cpu, got 'gpu'"),
        ("merge_annotations", "prefer: New", "option 'prefer' must be one of existing, new, got 'New'"),
        # Wrong types were tracebacks, later in the job.
        ("train", "num_folds: 2.5", "option 'num_folds' must be a whole number, got 2.5."),
        ("train", "seed: 1.5", "option 'seed' must be a whole number, got 1.5."),
        ("train", "num_epochs: true", "option 'num_epochs' must be a whole number, got True."),
        ("train", "baseline: 'no'", "option 'baseline' must be true or false, got 'no'."),
        ("train", "learning_rate: fast", "option 'learning_rate' must be a number, got 'fast'."),
        ("select_for_annotation", "k: [1, 2]", "option 'k' must be a whole number, got [1, 2]."),
        ("label_corpus", "output: 2024", "option 'output' must be a text, got 2024 (quote it: output: '2024')."),
        (
            "select_for_annotation",
            "class_quota: null",
            "option 'class_quota' must be a number, got null (leave the line out for the default).",
        ),
        ("label_corpus", "carry_columns: [show, 3]", "option 'carry_columns' must be a text or a list of them, got 3"),
    ],
)
def test_config_file_values_are_checked_against_type_and_choices(tmp_path, capsys, job, line, expected):
    path = write_config(tmp_path, f"{line}\n")
    message = refusal(job, ["--config", str(path)], capsys)
    assert message.startswith(f"error: {path}: ") and expected in message, message


def test_a_single_value_for_a_list_option_is_one_item(tmp_path):
    # `carry_columns: mid` became the columns 'm', 'i', 'd'; `runs: run` the runs 'r', 'u', 'n'.
    config = parse_config(LabelConfig, ["--config", str(write_config(tmp_path, "carry_columns: mid\n"))])
    assert config.carry_columns == ["mid"]
    config = parse_config(LabelConfig, ["--config", str(write_config(tmp_path, "carry_columns: [show, date]\n"))])
    assert config.carry_columns == ["show", "date"]
    config = parse_config(CompareConfig, ["--config", str(write_config(tmp_path, "runs: run\n"))])
    assert config.runs == ["run"]


def test_config_file_values_of_the_right_type_are_kept(tmp_path):
    # YAML 1.1 reads 2e-5 (no dot) as text: it is the number, as it was before the checks; an int is a float.
    text = "learning_rate: 2e-5\nmax_grad_norm: 1\nencoding: null\nbaseline: no\nnum_folds: 3\ndevice: cpu\n"
    config = parse_config(TrainConfig, ["--config", str(write_config(tmp_path, text))])
    assert config.learning_rate == 2e-5 and config.max_grad_norm == 1.0 and isinstance(config.max_grad_norm, float)
    assert config.encoding is None and config.baseline is False and config.num_folds == 3 and config.device == "cpu"
    # A flag still overrides the file, and is checked by argparse as before.
    config = parse_config(TrainConfig, ["--config", str(write_config(tmp_path, text)), "--num_folds", "4"])
    assert config.num_folds == 4


# ================================================================================= 2. numbers out of range
@pytest.mark.parametrize(
    "job, args, expected",
    [
        ("train", ["--max_length", "-5"], "--max_length must be positive, got -5."),
        ("train", ["--num_epochs", "0"], "--num_epochs must be positive, got 0."),
        ("train", ["--learning_rate", "-1"], "--learning_rate must be positive, got -1.0."),
        ("train", ["--learning_rate", "nan"], "--learning_rate must be positive, got nan."),
        ("train", ["--per_device_batch_size", "0"], "--per_device_batch_size must be positive, got 0."),
        ("train", ["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps must be positive, got 0."),
        ("train", ["--eval_batch_size", "0"], "--eval_batch_size must be positive, got 0."),
        ("train", ["--weight_decay", "-0.1"], "--weight_decay must be at least 0, got -0.1."),
        ("train", ["--warmup_ratio", "1.5"], "--warmup_ratio must be between 0 and 1, got 1.5."),
        ("label_corpus", ["--max_length", "-5"], "--max_length must be positive, got -5."),
        ("label_corpus", ["--chunk_size", "0"], "--chunk_size must be positive, got 0."),
        ("label_corpus", ["--batch_size", "0"], "--batch_size must be positive, got 0."),
        ("label_corpus", ["--max_tokens", "0"], "--max_tokens must be positive, got 0."),
        ("select_for_annotation", ["--k", "0"], "--k must be at least 1, got 0."),
        ("select_for_annotation", ["--pool_factor", "0"], "--pool_factor must be at least 1, got 0."),
        ("analyze_labels", ["--max_groups", "0"], "--max_groups must be at least 1, got 0."),
        ("simulate_active_learning", ["--num_folds", "1"], "--num_folds must be at least 2, got 1."),
        ("simulate_active_learning", ["--committee_size", "1"], "--committee_size must be at least 2, got 1."),
        ("simulate_active_learning", ["--batch_size", "0"], "--batch_size must be positive, got 0."),
    ],
)
def test_counts_sizes_and_rates_out_of_range_are_refused(capsys, job, args, expected):
    assert refusal(job, args, capsys) == f"error: {expected}"


def test_out_of_range_values_in_a_config_file_are_refused_too(tmp_path, capsys):
    path = write_config(tmp_path, "chunk_size: 0\n")
    assert refusal("label_corpus", ["--config", str(path)], capsys) == "error: --chunk_size must be positive, got 0."


def test_defaults_and_legitimate_edges_pass():
    for config_class in (TrainConfig, LabelConfig):
        parse_config(config_class, [])
    config = parse_config(TrainConfig, ["--weight_decay", "0", "--warmup_ratio", "0", "--seed", "-1"])
    assert config.weight_decay == 0 and config.warmup_ratio == 0 and config.seed == -1


@pytest.mark.parametrize("value", ["0", "-5"])
def test_predict_refuses_a_max_length_that_is_not_positive(tmp_path, capsys, value):
    # 0 silently meant the run's max_length; -5 was a tokenizer traceback.
    status, out, err = run_job("predict", ["--model", str(tmp_path / "run"), "--max_length", value, "好看"], capsys)
    assert status == 2 and out == "" and err == f"error: --max_length must be positive, got {value}.\n"


# ================================================================== 3. refused before the run directory is written
@pytest.mark.parametrize(
    "args, expected",
    [
        (["--validation_fraction", "1.5"], "--validation_fraction must be between 0 and 0.5, got 1.5."),
        (["--validation_fraction", "0"], "--validation_fraction must be between 0 and 0.5, got 0.0."),
        (["--num_folds", "1"], "--num_folds must be at least 2, got 1."),
    ],
)
def test_train_refuses_folds_and_validation_share_before_writing_the_run(
    tmp_path, capsys, labeled_xlsx, tiny_base_model_dir, args, expected
):
    # Refused after config.yaml, run_identity.json and folds.csv were written, the corrected command was then
    # refused as a run "with different settings".
    out = tmp_path / "run"
    assert refusal("train", train_args(labeled_xlsx, tiny_base_model_dir, out, *args), capsys) == f"error: {expected}"
    assert not out.exists()
