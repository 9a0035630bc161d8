"""analyze_labels leads with the share that needs no assumption, tests the assumption the others need, measures the
confusion rates only on rows chosen without a model, compares groups, and refuses a file another model labeled."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers.jobs import run_job
from helpers.outputs import write_fake_run, write_labeled_parquet

FOLDS = [f"fold_{k}" for k in range(5)]


def probs_of(predicted):
    probs = np.full((len(predicted), 4), 0.05)
    probs[np.arange(len(predicted)), predicted] = 0.85
    return probs


def mistaken(gold, rng, culture_as_heritage=0.4, any_error=0.0):
    """Culture (2) taken for heritage (1) at a rate; any class taken for another at a rate (the hard cases)."""
    predicted = gold.copy()
    predicted[(gold == 2) & (rng.random(len(gold)) < culture_as_heritage)] = 1
    wrong = rng.random(len(gold)) < any_error
    predicted[wrong] = (gold[wrong] + rng.integers(1, 4, wrong.sum())) % 4
    return predicted


@pytest.fixture()
def study(tmp_path):
    """A corpus of 1200 comments in two shows and a small third, labeled by a run whose training file holds 400 rows
    chosen without a model and 240 uncertainty-selected hard cases (wrong 70% of the time), with the 'selection'
    column merge_annotations writes; a filled-in random gold sample of 300 corpus rows, and one stratified by show
    (the small show labeled in full, 260 random rows of the rest)."""
    rng = np.random.default_rng(0)
    free_gold = np.arange(400) % 4
    hard_gold = np.arange(240) % 4
    oof_gold = np.concatenate([free_gold, hard_gold])
    oof_predicted = np.concatenate([mistaken(free_gold, rng), mistaken(hard_gold, rng, any_error=0.7)])
    run = write_fake_run(tmp_path / "run", gold=oof_gold, predicted=oof_predicted, probs=probs_of(oof_predicted))
    training = tmp_path / "train.csv"
    selection = ["original"] * 300 + ["random"] * 100 + ["uncertainty"] * 240
    texts = [f"评论{i}" for i in range(len(oof_gold))]
    pd.DataFrame({"Sentence": texts, "Label": oof_gold, "selection": selection}).to_csv(training, index=False)
    settings = {"data": str(training), "text_column": "Sentence", "label_column": "Label", "num_folds": 5}
    (run / "config.yaml").write_text(yaml.safe_dump(settings))

    truth = rng.choice(4, size=1200, p=[0.2, 0.2, 0.4, 0.2])
    corpus_texts = [f"第{i}条评论" for i in range(1200)]
    shows = ["国家宝藏" if i % 2 else "上新了故宫" for i in range(1200)]
    shows[:40] = ["只此青绿"] * 40  # a show labeled in full below
    corpus = write_labeled_parquet(
        tmp_path / "corpus.parquet",
        corpus_texts,
        probs_of(mistaken(truth, rng)),
        extra={"show": shows},
        model=str(run),
        members=FOLDS,
    )
    samples = {
        "gold": np.sort(rng.choice(1200, 300, replace=False)),  # uniform over the corpus
        "gold_by_show": np.sort(np.concatenate([np.arange(40), 40 + rng.choice(1160, 260, replace=False)])),
    }
    paths = {}
    for name, chosen in samples.items():
        paths[name] = tmp_path / f"{name}.xlsx"
        sheet = {"Sentence": [corpus_texts[i] for i in chosen], "Label": truth[chosen], "row_id": chosen}
        pd.DataFrame(sheet).to_excel(paths[name], index=False)
    return {"corpus": corpus, "run": run, "truth": truth, "shows": np.array(shows), **paths}


def analyze(study, tmp_path, capsys, name, *extra, expect=0):
    out = tmp_path / name
    args = ["--input", str(study["corpus"]), "--run", str(study["run"]), "--output_dir", str(out)]
    status, _, err = run_job("analyze_labels.py", [*args, "--bootstrap_replicates", "200", *extra], capsys)
    assert status == expect, err
    return out, err


def read_shares(out):
    return pd.read_csv(out / "shares.csv", keep_default_na=False, na_values=[""])


def test_gold_sample_headline_is_ppi_and_the_check_finds_model_chosen_rows(study, tmp_path, capsys):
    out, err = analyze(
        study, tmp_path, capsys, "all_rows", "--gold_sample", str(study["gold"]), "--confusion_rows", "all"
    )
    summary = json.loads((out / "shares.json").read_text())
    assert summary["headline"] == "ppi"
    check = summary["label_shift_check"]
    assert check["verdict"] == "violated" and check["p_value"] < 0.01 and check["oof_rows"] == 640
    assert "the label-shift check finds" in err
    assert summary["confusion_rows"]["rows_used"] == 640 and summary["confusion_rows"]["left_out"] == {}
    shares = read_shares(out)
    whole = shares[shares["group"].isna()]
    truth = np.bincount(study["truth"], minlength=4) / 1200
    assert set(whole["share_method"]) <= {"ppi", "gold_wilson"}
    assert ((whole["share_low"] <= truth) & (truth <= whole["share_high"])).all()
    ppi = whole["share_method"] == "ppi"
    assert whole.loc[ppi, "share"].to_numpy() == pytest.approx(whole.loc[ppi, "ppi_share"].to_numpy())
    # The hard cases make the adjusted shares miss the truth; the headline does not rest on them.
    assert np.abs(whole["adjusted_share"].to_numpy() - truth).max() > 0.05
    report = (out / "report.md").read_text()
    assert report.index("**The shares to publish (headline) rest on the 300 rows") < report.index("| PPI [95% CI] |")
    assert "**violated**" in report

    # Default: only rows chosen without a model; the same gold rows then find nothing wrong.
    out, _ = analyze(study, tmp_path, capsys, "model_free", "--gold_sample", str(study["gold"]))
    summary = json.loads((out / "shares.json").read_text())
    assert summary["confusion_rows"]["rows_used"] == 400
    assert summary["confusion_rows"]["left_out"] == {"uncertainty": 240}
    assert summary["label_shift_check"]["verdict"] == "consistent"
    whole = read_shares(out).query("group != group")  # NaN group: the whole corpus
    assert np.abs(whole["adjusted_share"].to_numpy() - truth).max() < 0.05
    assert "The rates come from 400 of the run's 640 out-of-fold rows" in (out / "report.md").read_text()


def test_group_labeled_in_full_is_exact_and_groups_are_compared(study, tmp_path, capsys):
    by_show = ["--gold_sample", str(study["gold_by_show"]), "--group_by", "show"]
    out, _ = analyze(study, tmp_path, capsys, "groups", *by_show)
    shares = read_shares(out)
    full = shares[shares["group"] == "只此青绿"]
    truth = np.bincount(study["truth"][study["shows"] == "只此青绿"], minlength=4) / 40
    assert (full["share_method"] == "exact").all()
    assert full["share"].to_numpy() == pytest.approx(truth)
    assert (full["share_low"] == full["share"]).all() and (full["share_high"] == full["share"]).all()
    differences = pd.read_csv(out / "share_differences.csv")
    assert len(differences) == 3 * 4  # three groups, every pair, every class
    first = differences[(differences["group_a"] == "上新了故宫") & (differences["group_b"] == "国家宝藏")]
    assert (first["difference_method"] == "mover").all()
    a, b = (shares[shares["group"] == g].set_index("class")["share"] for g in ("上新了故宫", "国家宝藏"))
    assert first.set_index("class")["difference"].to_numpy() == pytest.approx((a - b).to_numpy())
    assert ((first["difference_low"] <= first["difference"]) & (first["difference"] <= first["difference_high"])).all()
    assert "pacc_difference_low" in differences.columns
    assert (out / "share_differences.png").stat().st_size > 5000
    assert "### Differences between groups (show)" in (out / "report.md").read_text()


def test_without_a_gold_sample_the_headline_is_pacc_with_a_warning_and_the_rows_it_needs(study, tmp_path, capsys):
    out, err = analyze(study, tmp_path, capsys, "no_gold", "--group_by", "show")
    summary = json.loads((out / "shares.json").read_text())
    assert summary["headline"] == "pacc" and summary["label_shift_check"]["verdict"] == "not tested"
    needed = summary["gold_rows_needed"]
    assert needed["target_width"] == 0.05 and needed["rows"] == max(needed["per_class"].values()) > 100
    assert "not ready to publish" in err
    shares = read_shares(out)
    reported = shares[shares["adjusted_share"].notna()]
    assert (reported["share_method"] == "pacc").all()
    assert reported["share"].to_numpy() == pytest.approx(reported["adjusted_share"].to_numpy())
    differences = pd.read_csv(out / "share_differences.csv")
    assert (differences["difference_method"] == "pacc_bootstrap").all()
    report = (out / "report.md").read_text()
    warning = report.index("**Warning: the headline share is not ready to publish")
    assert warning < report.index("| class | share [95% CI] | method |")
    assert f"--strategy random --k {needed['rows']}" in report


def test_a_file_labeled_by_another_run_or_one_fold_is_refused(study, tmp_path, capsys):
    run = str(study["run"])
    cases = {
        "fold.parquet": (f"{run}/fold_2", ["."], "labeled by one fold model"),
        "other.parquet": (str(tmp_path / "other_run"), FOLDS, "not by the run"),
        "fewer.parquet": (run, FOLDS[:3], "not by the run"),
    }
    texts = [f"第{i}条评论" for i in range(100)]
    for name, (model, members, message) in cases.items():
        path = write_labeled_parquet(tmp_path / name, texts, probs_of(np.arange(100) % 4), model=model, members=members)
        args = ["--input", str(path), "--run", run, "--output_dir", str(tmp_path / f"out_{name}")]
        status, _, err = run_job("analyze_labels.py", args, capsys)
        assert status == 2 and message in err and name in err, (name, err)
    # A run moved since (same name and folds) is taken, with a warning.
    moved = write_labeled_parquet(
        tmp_path / "moved.parquet", texts, probs_of(np.arange(100) % 4), model="/elsewhere/run", members=FOLDS
    )
    args = ["--input", str(moved), "--run", run, "--output_dir", str(tmp_path / "out_moved")]
    status, _, err = run_job("analyze_labels.py", [*args, "--bootstrap_replicates", "100"], capsys)
    assert status == 0 and "taken to be the run" in err


def test_a_file_the_run_labeled_is_accepted_and_one_fold_of_it_refused(tmp_path, tiny_run_dir, unlabeled_xlsx, capsys):
    """The labeling job's own metadata: the run's directory and all its folds pass; one fold model is refused. The
    run's training file records no selection, which the analysis says."""
    from helpers.jobs import launch_job

    outputs = {}
    for name, model in (("ensemble", tiny_run_dir), ("one_fold", tiny_run_dir / "fold_0")):
        outputs[name] = tmp_path / f"{name}.parquet"
        launch_job(
            "label_corpus.py", ["--input", str(unlabeled_xlsx), "--model", str(model), "--output", str(outputs[name])]
        )
    args = ["--run", str(tiny_run_dir), "--bootstrap_replicates", "100"]
    out = tmp_path / "analysis"
    status, _, err = run_job(
        "analyze_labels.py", ["--input", str(outputs["ensemble"]), *args, "--output_dir", str(out)], capsys
    )
    assert status == 0 and "taken to be the run" not in err, err
    confusion = json.loads((out / "shares.json").read_text())["confusion_rows"]
    assert confusion["rows_used"] == confusion["rows_total"] > 0
    assert "has no 'selection' column" in confusion["provenance"]
    status, _, err = run_job(
        "analyze_labels.py", ["--input", str(outputs["one_fold"]), *args, "--output_dir", str(tmp_path / "b")], capsys
    )
    assert status == 2 and "labeled by one fold model" in err


def test_gold_rows_the_run_trained_on_are_counted_and_warned_about(tmp_path, capsys):
    rng = np.random.default_rng(5)
    gold_labels = np.arange(200) % 4
    run = write_fake_run(tmp_path / "run", gold=gold_labels, predicted=gold_labels, probs=probs_of(gold_labels))
    texts = [f"评论{i}" for i in range(300)]  # the first 200 are the run's training texts
    corpus = write_labeled_parquet(
        tmp_path / "corpus.parquet", texts, probs_of(np.arange(300) % 4), model=str(run), members=FOLDS
    )
    chosen = np.sort(rng.choice(300, 60, replace=False))
    gold = tmp_path / "gold.xlsx"
    pd.DataFrame({"Sentence": [texts[i] for i in chosen], "Label": chosen % 4, "row_id": chosen}).to_excel(
        gold, index=False
    )
    args = ["--input", str(corpus), "--run", str(run), "--gold_sample", str(gold), "--bootstrap_replicates", "100"]
    status, _, err = run_job("analyze_labels.py", [*args, "--output_dir", str(tmp_path / "a")], capsys)
    assert status == 0, err
    summary = json.loads((tmp_path / "a" / "shares.json").read_text())
    assert summary["gold_rows_in_training"] == int((chosen < 200).sum()) > 0
    report = (tmp_path / "a" / "report.md").read_text()
    assert f"**Warning: {summary['gold_rows_in_training']} gold rows are also in the run's training data**" in report
    status, _, err = run_job(
        "analyze_labels.py", [*args, "--target_width", "0", "--output_dir", str(tmp_path / "b")], capsys
    )
    assert status == 2 and "--target_width" in err
