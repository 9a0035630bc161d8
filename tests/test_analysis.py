"""Corpus analysis of a labeled Parquet file: tables, plots, intervals, n-grams and per-group shares."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from weibolabel.review.analysis import characteristic_ngrams, corpus_groups, month_of
from weibolabel.review.annotation import select_random
from weibolabel.stats.shares import wilson_interval
from weibolabel.util.errors import UserError
from weibolabel.util.plots import plot_share_differences

from helpers.data import NAMES, POOLS, make_labeled_rows
from helpers.jobs import run_job
from helpers.outputs import write_fake_run, write_labeled_parquet


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


# ------------------------------------------------------------------------------------------------- corrected shares
SHARE_HEADER = ["group", "class", "n", "naive_share", "adjusted_share", "adjusted_low", "adjusted_high"]


def biased_corpus(tmp_path, num_rows=400, seed=0, extra=None):
    """A corpus and a training run sharing one known confusion: culture (2) is taken for heritage (1) 40% of the
    time, so the predicted heritage share is inflated. Returns (corpus path, run dir, true labels)."""
    rng = np.random.default_rng(seed)

    def predict(gold):
        predicted = gold.copy()
        predicted[(gold == 2) & (rng.random(len(gold)) < 0.4)] = 1
        return predicted

    def probs_of(predicted):
        probs = np.full((len(predicted), 4), 0.05)
        probs[np.arange(len(predicted)), predicted] = 0.85
        return probs

    oof_gold = np.arange(400) % 4
    oof_predicted = predict(oof_gold)
    run = write_fake_run(tmp_path / "run", gold=oof_gold, predicted=oof_predicted, probs=probs_of(oof_predicted))
    truth = rng.choice(4, size=num_rows, p=[0.2, 0.2, 0.4, 0.2])
    texts = [f"第{i}条评论" for i in range(num_rows)]
    shows = ["国家宝藏" if i % 2 else "上新了故宫" for i in range(num_rows)]
    shows[:10] = ["只此青绿"] * 10  # a group too small to report
    corpus = write_labeled_parquet(
        tmp_path / "corpus.parquet",
        texts,
        probs_of(predict(truth)),
        extra={"show": shows, **(extra or {})},
        model=str(run),
        members=[f"fold_{k}" for k in range(5)],
    )
    return corpus, run, truth


def test_analyze_adjusts_shares_with_the_runs_confusion(tmp_path, capsys):
    corpus, run, truth = biased_corpus(tmp_path)
    out = tmp_path / "analysis"
    args = ["--input", str(corpus), "--run", str(run), "--output_dir", str(out), "--group_by", "show"]
    status, _, err = run_job("analyze_labels.py", [*args, "--bootstrap_replicates", "200"], capsys)
    assert status == 0, err
    shares = pd.read_csv(out / "shares.csv", keep_default_na=False, na_values=[""])
    assert shares.columns[:7].tolist() == SHARE_HEADER
    whole = shares[shares["group"].isna()].set_index("class")  # the whole corpus: empty group
    true_share = np.bincount(truth, minlength=4) / len(truth)
    naive_error = np.abs(whole["naive_share"].to_numpy() - true_share)
    adjusted_error = np.abs(whole["adjusted_share"].to_numpy() - true_share)
    assert naive_error[1] > 0.1 and adjusted_error.max() < 0.06  # heritage inflated by ~16 points, then undone
    assert ((whole["adjusted_low"] <= true_share) & (true_share <= whole["adjusted_high"])).all()
    assert whole["adjusted_share"].to_numpy() == pytest.approx(whole["pacc_share"].to_numpy())
    small = shares[shares["group"] == "只此青绿"]
    assert small["naive_share"].isna().all() and small["adjusted_share"].isna().all()
    assert (small["note"] == "too few rows (n = 10 < 30)").all()
    large = shares[shares["group"] == "国家宝藏"]
    assert large["adjusted_share"].notna().all() and large["note"].isna().all()
    report = (out / "report.md").read_text()
    assert "it assumes those rates hold on this corpus" in report
    assert "| class | rows predicted | naive share | adjusted [95% CI] |" in report
    assert "too few rows (n = 10 < 30)" in report and "| code | group | rows |" in report
    for name in ("shares.png", "group_shares.png"):
        assert (out / name).stat().st_size > 5000


def test_analyze_without_a_run_or_with_another_schema_reports_naive_shares_only(tmp_path, capsys):
    corpus, _, _ = biased_corpus(tmp_path, num_rows=120)
    status, _, err = run_job("analyze_labels.py", ["--input", str(corpus), "--output_dir", str(tmp_path / "a")], capsys)
    assert status == 0, err
    shares = pd.read_csv(tmp_path / "a" / "shares.csv")
    assert shares["naive_share"].notna().all() and shares["adjusted_share"].isna().all()
    assert "No adjusted shares: no --run was given" in (tmp_path / "a" / "report.md").read_text()

    other = write_fake_run(
        tmp_path / "other", gold=np.arange(40) % 3, predicted=np.arange(40) % 3, names=["pos", "neg", "neutral"]
    )
    args = ["--input", str(corpus), "--run", str(other), "--output_dir", str(tmp_path / "b")]
    status, _, err = run_job("analyze_labels.py", args, capsys)
    assert status == 0 and "trained on the classes ['pos', 'neg', 'neutral']" in err
    assert pd.read_csv(tmp_path / "b" / "shares.csv")["adjusted_share"].isna().all()
    assert "only naive shares are reported" in (tmp_path / "b" / "report.md").read_text()
    status, _, err = run_job("analyze_labels.py", ["--input", str(corpus), "--run", str(tmp_path / "nope")], capsys)
    assert status == 2 and "oof_predictions.parquet not found" in err


def draw_gold(tmp_path, corpus, truth, capsys, k=150, seed=0, name="gold.xlsx"):
    path = tmp_path / name
    args = ["--input", str(corpus), "--strategy", "random", "--k", str(k), "--seed", str(seed), "--output", str(path)]
    status, _, err = run_job("select_for_annotation.py", args, capsys)
    assert status == 0, err
    sheet = pd.read_excel(path)
    filled = sheet.assign(Label=truth[sheet["row_id"].to_numpy()])
    return sheet, filled


def test_random_selection_is_uniform_reproducible_and_hides_the_models_guess(tmp_path, capsys):
    corpus, _, truth = biased_corpus(tmp_path)
    first, _ = draw_gold(tmp_path, corpus, truth, capsys, k=100, name="a.xlsx")
    again, _ = draw_gold(tmp_path, corpus, truth, capsys, k=100, name="b.xlsx")
    other, _ = draw_gold(tmp_path, corpus, truth, capsys, k=100, seed=1, name="c.xlsx")
    assert first["row_id"].tolist() == again["row_id"].tolist() != other["row_id"].tolist()
    assert first["row_id"].is_unique and first.columns.tolist() == ["Sentence", "Label", "row_id", "selection"]
    assert (first["selection"] == "random").all()  # how the rows were chosen travels into the training file
    assert first["Label"].isna().all()
    # uniform: over 400 seeds, each of 400 rows is drawn about 100 times (k = 100 of 400); a chi-square test
    frame = pd.DataFrame({"row_id": np.arange(400), "text": "x"})
    counts = np.zeros(400)
    for seed in range(400):
        counts[select_random(frame, 100, seed)["row_id"].to_numpy()] += 1
    assert stats.chisquare(counts).pvalue > 0.001
    status, _, err = run_job(
        "select_for_annotation.py",
        ["--input", str(corpus), "--strategy", "random", "--k", "500", "--output", str(tmp_path / "d.xlsx")],
        capsys,
    )
    assert status == 2 and "larger than the 400" in err
    args = [
        "--input",
        str(corpus),
        "--strategy",
        "random",
        "--exclude",
        str(corpus),
        "--output",
        str(tmp_path / "e.xlsx"),
    ]
    status, _, err = run_job("select_for_annotation.py", args, capsys)
    assert status == 2 and "non-uniform" in err


def test_gold_sample_adds_ppi_shares_and_is_validated(tmp_path, capsys):
    corpus, run, truth = biased_corpus(tmp_path)
    _, filled = draw_gold(tmp_path, corpus, truth, capsys, k=200)
    good = tmp_path / "filled.xlsx"
    filled.to_excel(good, index=False)
    out = tmp_path / "analysis"
    base = ["--input", str(corpus), "--run", str(run), "--group_by", "show", "--bootstrap_replicates", "200"]
    status, _, err = run_job("analyze_labels.py", [*base, "--gold_sample", str(good), "--output_dir", str(out)], capsys)
    assert status == 0, err
    shares = pd.read_csv(out / "shares.csv", keep_default_na=False, na_values=[""])
    ppi_header = ["ppi_share", "ppi_low", "ppi_high", "gold_n", "gold_share", "gold_low", "gold_high"]
    assert shares.columns[:14].tolist() == [*SHARE_HEADER, *ppi_header]
    whole = shares[shares["group"].isna()]
    true_share = np.bincount(truth, minlength=4) / len(truth)
    assert ((whole["ppi_low"] <= true_share) & (true_share <= whole["ppi_high"])).all()
    assert whole["gold_n"].eq(200).all()
    gold_share = np.bincount(filled["Label"], minlength=4) / 200
    assert whole["gold_share"].to_numpy() == pytest.approx(gold_share)
    small = shares[shares["group"] == "只此青绿"]
    assert small["ppi_share"].isna().all() and small["ppi_note"].str.startswith("too few gold rows").all()
    report = (out / "report.md").read_text()
    assert "| PPI [95% CI] | gold sample only [95% CI] |" in report

    def refused(sheet, *expected):
        path = tmp_path / "bad.xlsx"
        sheet.to_excel(path, index=False)
        status, _, err = run_job("analyze_labels.py", [*base, "--gold_sample", str(path)], capsys)
        assert status == 2, err
        for text in expected:
            assert text in err, (text, err)

    bad = filled.copy()
    bad.loc[1, "Label"] = 7
    refused(bad, "bad.xlsx, column 'Label'", "row 3", "7 is outside the label schema")
    bad = filled.copy()
    bad.loc[[0, 4], "Label"] = None
    refused(bad, "row 2, row 6", "labeled in full")
    bad = filled.copy()
    bad.loc[5, ["row_id", "Sentence"]] = bad.loc[2, ["row_id", "Sentence"]].to_numpy()
    refused(bad, "column 'row_id'", "row 4, row 7", "repeat a row id")
    bad = filled.copy()
    bad.loc[3, "row_id"] = 9999
    refused(bad, "row 5", "no labeled (status 'ok') row")
    bad = filled.copy()
    bad.loc[8, "Sentence"] = "另一条评论"
    refused(bad, "column 'Sentence'", "row 10 reads '另一条评论' where the corpus has")
    bad = filled.copy()
    bad.loc[[1, 2], "Label"] = None
    refused(bad, "row 3, row 4 have no valid label")
    bad.loc[2, "Label"] = 1
    refused(bad, "row 3 has no valid label")
    # Excel's "CSV" on a Chinese Windows writes '?' for what GBK lacks (emoji): said, with the save that keeps them.
    lossy = tmp_path / "lossy.csv"
    filled.assign(Sentence=filled["Sentence"].where(filled.index != 8, "第?条评论")).to_csv(lossy, index=False)
    status, _, err = run_job("analyze_labels.py", [*base, "--gold_sample", str(lossy)], capsys)
    assert status == 2 and "row 10 reads '第?条评论'" in err and "save the sheet as .xlsx or as 'CSV UTF-8'" in err
    # Saved as CSV by Excel on a Chinese Windows (GBK): these bytes read as Big5 too, so the job asks, naming its flag.
    gbk = tmp_path / "filled_gbk.csv"
    gbk.write_bytes(filled.to_csv(index=False).encode("gb18030"))
    status, _, err = run_job("analyze_labels.py", [*base, "--gold_sample", str(gbk)], capsys)
    assert status == 2 and "--gold_encoding gb18030 or --gold_encoding big5" in err, err
    args = [*base, "--gold_sample", str(gbk), "--gold_encoding", "gb18030", "--output_dir", str(tmp_path / "gbk")]
    status, _, err = run_job("analyze_labels.py", args, capsys)
    assert status == 0, err
    gbk_shares = pd.read_csv(tmp_path / "gbk" / "shares.csv", keep_default_na=False, na_values=[""])
    assert gbk_shares.equals(shares)  # the same gold rows as the .xlsx gave


def test_group_by_month_and_bad_dates(tmp_path, capsys):
    dates = [f"2024-0{1 + i % 3}-15" for i in range(400)]
    corpus, run, _ = biased_corpus(tmp_path, extra={"date": dates})
    out = tmp_path / "a"
    args = ["--input", str(corpus), "--group_by", "date", "--group_by_month", "--output_dir", str(out)]
    status, _, err = run_job("analyze_labels.py", args, capsys)
    assert status == 0, err
    shares = pd.read_csv(out / "shares.csv", dtype={"group": str})
    assert set(shares["group"].dropna()) == {"2024-01", "2024-02", "2024-03"}
    # With the run: months compared later minus earlier, each against the one before first, on the shared bootstrap.
    status, _, err = run_job("analyze_labels.py", [*args[:-1], str(tmp_path / "b"), "--run", str(run)], capsys)
    assert status == 0, err
    differences = pd.read_csv(tmp_path / "b" / "share_differences.csv", dtype={"group_a": str, "group_b": str})
    pairs = list(dict.fromkeys(zip(differences["group_a"], differences["group_b"])))
    assert pairs == [("2024-02", "2024-01"), ("2024-03", "2024-02"), ("2024-03", "2024-01")]
    assert (differences["difference_method"] == "pacc_bootstrap").all()
    assert (
        (differences["difference_low"] <= differences["difference"])
        & (differences["difference"] <= differences["difference_high"])
    ).all()
    dates[7] = "soon"
    corpus, _, _ = biased_corpus(tmp_path, extra={"date": dates})
    status, _, err = run_job("analyze_labels.py", args, capsys)
    assert status == 2 and "column 'date'" in err and "row_id 7 ('soon')" in err


def test_blank_group_cells_are_missing_not_a_second_whole_corpus(tmp_path):
    # A CSV's empty cell is carried as ''; '' also names the whole corpus, whose rows it must not join.
    frame = pd.DataFrame({"row_id": range(6), "show": ["国家宝藏", "", "  ", None, "国家宝藏", "故宫"]})
    groups, _, _ = corpus_groups(frame, group_by="show", by_month=False, max_groups=20, source=tmp_path / "x.parquet")
    named = {name: rows.tolist() for name, rows in groups}
    assert [name for name, _ in groups].count("") == 1 and named[""] == list(range(6))
    assert named["(missing)"] == [1, 2, 3] and named["国家宝藏"] == [0, 4] and named["故宫"] == [5]


def test_months_of_weibo_dates_in_their_own_time_zone_and_excel_serials_are_explained(tmp_path):
    values = pd.Series(["2024/1/5", "Mon Jan 05 12:00:00 +0800 2024", "Sat Feb 01 00:30:00 +0800 2025", "", None])
    months = month_of(values, tmp_path / "x.parquet", "date", pd.Series(range(5)))
    assert months[:3].tolist() == ["2024-01", "2024-01", "2025-02"] and months[3:].isna().all()
    with pytest.raises(UserError, match=r"row_id 1 \('45303'\)\. Numbers such as 45303 are Excel date serials"):
        month_of(pd.Series(["2024/1/5", "45303"]), tmp_path / "x.parquet", "date", pd.Series(range(2)))


def test_share_difference_plot_draws_an_interval_that_misses_its_estimate(tmp_path):
    # A bootstrap's percentile interval need not hold the point estimate (a weak model's PACC): drawn, not a crash.
    differences = pd.DataFrame(
        {
            "group_a": ["a", "a"],
            "group_b": ["b", "b"],
            "class": ["production", "culture"],
            "difference": [-0.26, 0.1],
            "difference_low": [-0.18, np.nan],
            "difference_high": [0.19, np.nan],
        }
    )
    plot_share_differences(differences, {}, "show", tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 0
