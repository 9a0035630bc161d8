"""The paper kit: the generated Methods paragraph (as a pure function and in a real run's report.md), CITATION.cff,
help texts and defaults that agree with the documented recipes, and the README's run directory against a real run."""

from __future__ import annotations

import dataclasses
import re

import pandas as pd
import pytest
import yaml

from weibolabel.run.config import LabelConfig, TrainConfig, parse_config
from weibolabel.training.methods import REFERENCES, methods_section

from helpers import REPO

DATA = {
    "rows_read": 1234,
    "rows_used": 1187,
    "empty_text_dropped": 11,
    "empty_rows_dropped": 2,
    "conflicting_duplicates_dropped": 6,
    "duplicates_merged": 30,
    "class_counts": {"production": 400, "heritage": 350, "culture": 300, "irrelevant": 137},
    "truncated": 9,
}
CALIBRATION = {
    "temperature": 1.4321,
    "ece_before": 0.0876,
    "ece_after": 0.0234,
    "nll_before": 0.7,
    "nll_after": 0.6,
    "fitted_on": "out-of-fold predictions",
    "num_rows": 1187,
    "num_bins": 15,
}
DESCRIPTION = "char 1-3-gram TF-IDF (sublinear tf) + logistic regression (C=10)"
PAIRED_TEST = {  # weibolabel.stats.comparison.compare_pair's result, as metrics.json's baseline entry holds it
    "metrics": {
        "macro_f1": {"mean_difference": 0.1234, "ci_low": 0.0812, "ci_high": 0.1656, "p_value": 0.000321},
    },
    "mcnemar": {"only_a_correct": 87, "only_b_correct": 21, "p_value": 1.5e-10},
}
BASELINE = {"description": DESCRIPTION, "paired_test": PAIRED_TEST}


def setup_of(**changes) -> dict:
    """metrics.json's `setup`: the resolved TrainConfig plus whether the model is the demo one."""
    config = TrainConfig(data="comments.xlsx", **changes)
    return {**dataclasses.asdict(config), "demo_model": False}


def paragraph(methods: str) -> str:
    return methods.split("\n\n")[2]


def cited_in_text(text: str) -> set[str]:
    """First-author surnames of every (Author et al., YEAR) or (Author & Author, YEAR) citation."""
    return set(re.findall(r"([A-Z][A-Za-z]+)(?: et al\.| & [A-Z][A-Za-z]+)?,? (?:19|20)\d\d\b", text))


# ------------------------------------------------------------------------------------------ Methods, pure function
def test_methods_names_every_setting_and_count():
    setup = setup_of(
        model_name_or_path="models/bert-base-chinese",
        num_folds=7,
        num_epochs=6,
        seed=1234,
        learning_rate=3e-5,
        per_device_batch_size=24,
        gradient_accumulation_steps=2,
        max_length=160,
        validation_fraction=0.15,
        warmup_ratio=0.06,
        weight_decay=0.02,
        max_grad_norm=0.5,
        class_weighted_loss=True,
    )
    methods = methods_section(setup, DATA, CALIBRATION, BASELINE)
    text = paragraph(methods)
    for expected in [
        "bert-base-chinese",
        "7-fold stratified cross-validation",
        "seed 1234",
        "near-duplicates",  # grouping of duplicates
        "trained for 6 epochs",
        "highest validation macro-F1",  # the selection rule
        "15%",  # validation part
        "peak learning rate 3e-5",
        "weight decay 0.02",
        "first 6% of updates",
        "clipping at 0.5",
        "batch size 48 (24 × 2 accumulation steps)",
        "truncated to 160 tokens (9 texts affected)",
        "weighted by inverse class frequency",
        "1,234 rows in the labeled file, 1,187 were used",
        "production 400, heritage 350, culture 300, irrelevant 137",
        "17 rows were dropped (11 with empty text and 6",
        "30 exact duplicates",
        DESCRIPTION,
        "macro-F1 difference was +0.123 (95% CI +0.081 to +0.166, p = 0.000321)",
        "87 comments were classified correctly only by the BERT model and 21 only by the baseline",
        "T = 1.432",
        "0.088 before and 0.023 after",
        "mean ± sample standard deviation over the 7 test folds",
    ]:
        assert expected in text, expected
    assert not re.search(r"None|nan|\{|\}|\[\]", methods), methods  # no unfilled placeholder leaks


def test_every_citation_has_a_reference_and_every_reference_is_cited():
    methods = methods_section(setup_of(), DATA, CALIBRATION, BASELINE)
    text, references = paragraph(methods), methods.split("### References")[1]
    listed = set(re.findall(r"^- ([A-Z][A-Za-z]+),", references, re.MULTILINE))
    assert cited_in_text(text) == listed
    assert {"Devlin", "Kohavi", "Guo", "Bengio", "Nadeau", "McNemar"} <= listed
    assert "Cui" not in listed  # bert-base-chinese is Google's, not Cui et al.'s


@pytest.mark.parametrize(
    ("model", "cites_cui", "says"),
    [
        ("hfl/chinese-bert-wwm-ext", True, "whole word masking"),
        ("models/chinese-macbert-base", True, "MacBERT"),
        ("google-bert/bert-base-chinese", False, "bert-base-chinese model"),
        ("models/my-encoder", False, "`my-encoder`"),
    ],
)
def test_the_encoder_and_its_reference_follow_the_model_name(model, cites_cui, says):
    methods = methods_section(setup_of(model_name_or_path=model), DATA, CALIBRATION, BASELINE)
    assert says in paragraph(methods)
    assert ("Cui et al., 2021" in methods) is cites_cui
    assert ("Cui, Y." in methods) is cites_cui


def test_methods_says_what_was_not_done():
    setup = {**setup_of(baseline=False), "demo_model": True}
    methods = methods_section(setup, DATA, calibration=None, baseline=None)
    text = paragraph(methods)
    assert "No classical baseline was scored." in text and "Pedregosa" not in methods
    assert "temperature" not in text and "Guo" not in methods
    assert "without pretraining" in text and "not a result to publish" in text
    assert "unweighted cross-entropy" in text and "accumulation" not in text


def test_paired_test_is_described_only_when_the_run_has_one():
    methods = methods_section(setup_of(), DATA, CALIBRATION, {"description": DESCRIPTION})
    assert DESCRIPTION in methods and "Pedregosa" in methods
    assert "McNemar" not in methods and "Nadeau" not in methods


def test_reference_list_has_no_duplicates_and_is_alphabetical():
    methods = methods_section(setup_of(model_name_or_path="hfl/chinese-macbert-large"), DATA, CALIBRATION, BASELINE)
    entries = [line[2:] for line in methods.split("### References")[1].splitlines() if line.startswith("- ")]
    assert entries == sorted(set(entries))
    assert set(entries) <= set(REFERENCES.values())


# ------------------------------------------------------------------------------------------- Methods, a real run
def test_report_of_a_real_run_ends_with_its_methods(tiny_run_dir, labeled_xlsx):
    report = (tiny_run_dir / "report.md").read_text()
    methods = report[report.index("## Methods") :]
    assert report.rstrip().endswith(methods.rstrip())  # the last section
    text = paragraph(methods)
    # helpers.jobs.TINY_TRAIN_ARGS and conftest's 120-row sheet
    for expected in [
        "3-fold",
        "seed 7",
        "trained for 2 epochs",
        "learning rate 0.001",
        "batch size 16",
        "truncated to 64 tokens",
        "120 rows in the labeled file, 120 were used",
        "without pretraining",  # conftest's model is built from scratch
        "char 1-3-gram TF-IDF",
        "temperature scaling (Guo et al., 2017): one temperature, T = ",
    ]:
        assert expected in text, expected
    assert "None" not in methods and "{" not in methods


def test_oof_row_ids_follow_the_labels_parquet_convention(tiny_run_dir):
    oof = pd.read_parquet(tiny_run_dir / "oof_predictions.parquet")
    assert "row" not in oof.columns
    assert oof["row_id"].dtype == "int64" and sorted(oof["row_id"]) == list(range(120))
    folds = pd.read_csv(tiny_run_dir / "folds.csv")
    named = dict(zip(folds["row_id"], folds["row"]))  # "row 2": the name errors and data_issues.csv use
    assert all(named[r] == f"row {s}" for r, s in zip(oof["row_id"], oof["spreadsheet_row"]))


# ---------------------------------------------------------------------------------------------------- CITATION.cff
def test_citation_cff_has_the_required_keys_and_the_package_version():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert {"cff-version", "message", "title", "authors"} <= citation.keys()
    assert all("name" in a or "family-names" in a for a in citation["authors"])
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'version = "{citation["version"]}"' in pyproject
    assert f'license = "{citation["license"]}"' in pyproject


# ------------------------------------------------------------------------------------------- help and defaults
@pytest.mark.parametrize("config_class", [TrainConfig, LabelConfig])
def test_no_flags_say_what_they_do(config_class, capsys):
    with pytest.raises(SystemExit):
        parse_config(config_class, ["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    negations = re.findall(r"--no_(\w+), --no-[\w-]+ (.*?)(?= --|$)", help_text)
    assert negations
    for name, says in negations:
        positive = re.search(rf"--{name} \[\w+\] (.*?)(?= --|$)", help_text).group(1)
        assert says != positive and "(default" not in says, (name, says)
    assert parse_config(config_class, [f"--no_{negations[0][0]}"]).__getattribute__(negations[0][0]) is False
    assert parse_config(config_class, []).__getattribute__(negations[0][0]) is True


def test_default_epochs_match_the_documented_recipe():
    recipe = yaml.safe_load((REPO / "configs" / "bert-base-chinese.yaml").read_text())
    assert TrainConfig().num_epochs == recipe["num_epochs"] == 4
    assert "--num_epochs 4" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("config_file", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_parse(config_file):
    config = parse_config(TrainConfig, ["--config", str(config_file)])
    for key, value in yaml.safe_load(config_file.read_text()).items():
        assert getattr(config, key) == value


# ------------------------------------------------------------------------------------------------- the README
def docs_section(page: str, title: str) -> str:
    text = (REPO / "docs" / page).read_text()
    start = text.index(title)
    end = text.find("\n#", start + len(title))
    return text[start : end if end >= 0 else len(text)]


def test_readme_run_directory_lists_every_file_a_run_writes(tiny_run_dir):
    section = docs_section("training.md", "## The run directory")
    documented = set(re.findall(r"`([^`]+)`", section))
    written = {p.name for p in tiny_run_dir.iterdir()} | {p.name for p in (tiny_run_dir / "fold_0").iterdir()}
    written |= {p.name for p in (tiny_run_dir / "plots").iterdir()}
    written = {re.sub(r"^fold_\d+$", "fold_k", name) for name in written}
    # A Hugging Face checkpoint's own files: the table names the checkpoint, not each file save_pretrained writes.
    checkpoint_files = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
    checkpoint_files |= {"special_tokens_map.json", "vocab.txt"}
    undocumented = {name for name in written - checkpoint_files if f"{name}/" not in documented} - documented
    assert not undocumented
    oof = pd.read_parquet(tiny_run_dir / "oof_predictions.parquet")
    for column in ("row_id", "spreadsheet_row"):
        assert f"`{column}`" in section and column in oof.columns


def test_readme_links_the_paper_kit_documents():
    readme = (REPO / "README.md").read_text()
    assert "(docs/reading_the_report.md)" in readme and (REPO / "docs" / "reading_the_report.md").is_file()
    assert "(docs/cluster.md#how-long-a-run-takes)" in readme
    assert "## How long a run takes" in (REPO / "docs" / "cluster.md").read_text()
