"""The active-learning simulation: seed sets, batch selection by the annotation loop's rules, the job end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd

from weibolabel.review import active_learning as al
from weibolabel.review.annotation import margin

from helpers.data import NAMES, make_labeled_rows
from helpers.jobs import run_job


def test_seed_set_is_stratified_and_exact():
    labels = np.repeat([0, 1, 2, 3], [40, 20, 20, 20])
    index = np.arange(len(labels))
    chosen = al.seed_set(index, labels, 20, seed=3)
    assert len(chosen) == 20 and np.bincount(labels[chosen]).tolist() == [8, 4, 4, 4]
    assert al.seed_set(index, labels, 20, seed=3).tolist() == chosen.tolist()


def test_margin_batch_takes_the_least_certain_rows_and_random_stays_in_the_pool():
    texts = [f"文本{i}号" for i in range(30)]
    pool = np.arange(10, 30)
    rng = np.random.default_rng(0)
    # One predicted class, so the class quota (at least one row per predicted class) cannot reorder the choice.
    probs = -np.sort(-rng.dirichlet(np.ones(4), size=len(pool)), axis=1)
    args = dict(texts=texts, labels=np.zeros(30, dtype=int), labeled=np.arange(10), pool=pool, pool_probs=probs)
    batch = al.choose_batch("margin", **args, batch_size=5, class_quota=0.0, committee_size=3, rng=rng)
    assert sorted(batch) == sorted(pool[np.argsort(margin(probs))[:5]])
    picked = al.choose_batch("random", **args, batch_size=5, class_quota=0.0, committee_size=3, rng=rng)
    assert len(set(picked)) == 5 and set(picked) <= set(pool)
    assert sorted(al.choose_batch("entropy", **args, batch_size=50, class_quota=0.5, committee_size=3, rng=rng)) == (
        pool.tolist()
    )  # fewer left than a batch: all of them


def test_simulated_fold_reveals_the_whole_pool_in_batches():
    frame = make_labeled_rows(60, seed=2)
    texts, labels = frame["Sentence"].tolist(), frame["Label"].to_numpy()
    train, test = np.arange(0, 60, 2)[:-5], np.arange(1, 60, 2)
    records = al.simulate_fold(
        strategy="disagreement",
        texts=texts,
        labels=labels,
        train_index=train,
        test_index=test,
        names=NAMES,
        seed_size=8,
        batch_size=6,
        max_labels=None,
        class_quota=0.5,
        committee_size=3,
        seed=1,
    )
    assert [r["num_labels"] for r in records] == [8, 14, 20, 25]  # the last batch is what is left of the pool
    assert all(0 <= r["macro_f1"] <= 1 for r in records)


def test_labels_needed_is_the_first_round_at_the_target():
    summary = pd.DataFrame(
        {
            "strategy": ["random"] * 3 + ["margin"] * 3,
            "round": [0, 1, 2] * 2,
            "num_labels": [10, 20, 30] * 2,
            "macro_f1_mean": [0.5, 0.7, 0.8, 0.5, 0.85, 0.9],
        }
    )
    assert al.labels_needed(summary, 0.82) == {"random": None, "margin": 20.0}


def test_simulation_job_in_seconds(tmp_path, capsys):
    data = tmp_path / "labeled.xlsx"
    make_labeled_rows(64, seed=4).to_excel(data, index=False)
    out = tmp_path / "al"
    args = ["--data", str(data), "--output_dir", str(out), "--num_folds", "2", "--seeds", "0", "1"]
    args += ["--seed_size", "8", "--batch_size", "8", "--max_labels", "24"]
    status, stdout, err = run_job("simulate_active_learning.py", args, capsys)
    assert status == 0, err
    table = pd.read_csv(out / "simulation.csv")
    assert set(table["strategy"]) == set(al.STRATEGIES)
    assert len(table) == 4 * 2 * 2 * 3  # strategies x seeds x folds x rounds (8, 16, 24 labels)
    assert sorted(table["num_labels"].unique()) == [8, 16, 24]
    summary = pd.read_csv(out / "simulation_summary.csv")
    assert (summary["seeds"] == 2).all()
    assert (out / "active_learning.png").stat().st_size > 10_000
    page = (out / "active_learning.md").read_text()
    assert "Learner: char 1-3-gram TF-IDF" in page and "labels to reach" in page
    assert "random:" in stdout


def test_unknown_strategy_is_a_clear_error(tmp_path, capsys):
    status, _, err = run_job("simulate_active_learning.py", ["--data", "x.xlsx", "--strategies", "bald"], capsys)
    assert status == 2 and "--strategies ['bald']" in err


def test_data_the_folds_refuse_is_named_by_class_name(tmp_path, capsys):
    data = tmp_path / "labeled.xlsx"
    make_labeled_rows(12, seed=4).assign(Label=2).to_excel(data, index=False)
    args = ["--data", str(data), "--output_dir", str(tmp_path / "al")]
    status, _, err = run_job("simulate_active_learning.py", args, capsys)
    assert status == 2 and "Only one class has rows ({'culture': 12})" in err, err
