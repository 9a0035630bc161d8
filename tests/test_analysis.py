"""Corpus analysis of a labeled Parquet file: tables, plots, intervals, n-grams and per-group shares."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import POOLS, make_labeled_rows
from test_annotation import NAMES, run_job, write_labeled_parquet

from weibolabel.analysis import characteristic_ngrams, wilson_interval


@pytest.fixture()
def labeled_parquet(tmp_path):
    """200 rows whose predicted class is the keyword pool they come from, with varied confidence and a 'show'."""
    rows = make_labeled_rows(200, seed=3)
    rng = np.random.default_rng(0)
    probs = []
    for label in rows["Label"]:
        top = rng.uniform(0.4, 0.99)
        p = np.full(4, (1 - top) / 3)
        p[label] = top
        probs.append(p)
    texts = [*rows["Sentence"], ""]
    probs.append(np.full(4, 0.25))
    shows = ["国家宝藏" if i % 3 else "典籍里的中国" for i in range(len(texts))]
    return write_labeled_parquet(tmp_path / "labels.parquet", texts, probs, extra={"show": shows}), rows


def test_wilson_interval_contains_the_share_and_stays_in_bounds():
    low, high = wilson_interval(np.array([0, 3, 50, 100]), 100)
    share = np.array([0, 3, 50, 100]) / 100
    assert ((low <= share) & (share <= high)).all()
    assert low[0] == 0 and high[-1] == 1 and 0 < high[0] < 0.05
    assert low[2] == pytest.approx(0.4038, abs=1e-3) and high[2] == pytest.approx(0.5962, abs=1e-3)


def test_ngrams_find_the_class_keywords_and_skip_punctuation():
    rows = make_labeled_rows(200, seed=3)
    table = characteristic_ngrams(rows["Sentence"].tolist(), rows["Label"].to_numpy(), NAMES, top=10, min_count=3)
    assert set(table["name"]) == set(NAMES)
    for label, pool in POOLS.items():
        top = table.loc[table["label"] == label, "ngram"].tolist()
        assert any(gram in "".join(pool) for gram in top[:3]), (label, top)
    assert all(any(ch.isalnum() for ch in gram) for gram in table["ngram"])  # no 👍👍 or ！～ n-grams


def test_analyze_job_writes_report_tables_and_plots(tmp_path, labeled_parquet, capsys):
    source, rows = labeled_parquet
    out = tmp_path / "analysis"
    status, _, err = run_job(
        "analyze_labels.py", ["--input", str(source), "--output_dir", str(out), "--group_by", "show"], capsys
    )
    assert status == 0, err
    for name in ("report.md", "class_shares.png", "confidence_histogram.png", "group_shares.png"):
        assert (out / name).stat().st_size > 500, name
    shares = pd.read_csv(out / "class_shares.csv")
    for _, part in shares.groupby("subset"):
        assert part["share"].sum() == pytest.approx(1.0)
        assert ((part["ci_low"] <= part["share"]) & (part["share"] <= part["ci_high"])).all()
    everything = shares[shares["subset"] == "all"]
    assert everything["count"].tolist() == np.bincount(rows["Label"], minlength=4).tolist()  # the empty row is out
    confident = shares[shares["subset"] == "confidence >= 0.8"]
    assert confident["total"].iloc[0] < everything["total"].iloc[0]
    histogram = pd.read_csv(out / "confidence_histogram.csv")
    assert histogram["total"].sum() == 200 and histogram[NAMES].sum().sum() == 200
    ngrams = pd.read_csv(out / "characteristic_ngrams.csv")
    assert set(ngrams["name"]) == set(NAMES)
    groups = pd.read_csv(out / "group_shares.csv")
    assert sorted(groups["group"]) == ["典籍里的中国", "国家宝藏"]
    assert groups["rows"].sum() == 200
    assert np.allclose(groups[[f"share_{n}" for n in NAMES]].sum(axis=1), 1.0)
    assert groups["plot_label"].str.fullmatch(r"G\d+").all()  # Chinese group names never reach a plot
    report = (out / "report.md").read_text()
    assert "## Class shares" in report and "## Class shares by show" in report and "国家宝藏" in report


def test_analyze_job_without_groups_and_with_a_wrong_column(tmp_path, labeled_parquet, capsys):
    source, _ = labeled_parquet
    status, _, _ = run_job("analyze_labels.py", ["--input", str(source), "--output_dir", str(tmp_path / "a")], capsys)
    assert status == 0 and not (tmp_path / "a" / "group_shares.csv").exists()
    status, _, err = run_job("analyze_labels.py", ["--input", str(source), "--group_by", "channel"], capsys)
    assert status == 2 and "channel" in err
