"""The shipped sample in data/: the generator rebuilds it from its phrase pools, data/README.md describes it, and the
unlabeled sample's true classes fill a gold sample the way the README's analysis section shows."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd

from weibolabel.data.labels import load_label_schema
from weibolabel.review.annotation import write_annotation_sheet
from weibolabel.review.share_inputs import read_gold_sample

from helpers import REPO

DATA = REPO / "data"
TRUTH = "unlabeled_sample_truth.csv"


def test_generator_rebuilds_the_shipped_samples_from_the_phrase_file(tmp_path):
    subprocess.run([sys.executable, str(DATA / "make_sample.py"), "--out-dir", str(tmp_path)], check=True, timeout=120)
    for name in ("labeled_sample.xlsx", "unlabeled_sample.xlsx"):
        pd.testing.assert_frame_equal(pd.read_excel(tmp_path / name), pd.read_excel(DATA / name), obj=name)
    assert (tmp_path / TRUTH).read_bytes() == (DATA / TRUTH).read_bytes()
    assert pd.read_excel(DATA / "unlabeled_sample.xlsx").columns.tolist() == ["Sentence"]  # no labels to find


def test_data_readme_gives_the_shipped_samples_counts_and_rows():
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    labeled = pd.read_excel(DATA / "labeled_sample.xlsx")
    counts = labeled["Label"].value_counts().sort_index()
    names = ["production", "heritage", "culture", "irrelevant"]
    shares = ", ".join(f"{n} {c} ({c / len(labeled):.0%})" for n, c in zip(names, counts, strict=True))
    assert " ".join(f"(all {len(labeled)} rows): {shares}.".split()) in " ".join(readme.split())
    unlabeled = pd.read_excel(DATA / "unlabeled_sample.xlsx")["Sentence"]
    for name, texts in (("labeled", labeled["Sentence"]), ("unlabeled (non-empty)", unlabeled.dropna())):
        lengths = texts.str.len()
        quantiles = [f"{q:.0f}" for q in lengths.quantile([0.1, 0.5, 0.9])] + [str(lengths.max())]
        bins = pd.cut(lengths, [0, 4, 40, 120, lengths.max()]).value_counts(sort=False).tolist()
        assert f"| {name} | {' | '.join(quantiles)} | {' | '.join(map(str, bins))} (" in readme, name
    empty = ", ".join(str(i + 2) for i in np.flatnonzero(unlabeled.isna()))
    assert f"3 empty cells (rows {empty})" in readme
    essay = int(unlabeled.str.len().idxmax())
    assert f"comment of {len(unlabeled[essay]):,} characters (row {essay + 2})" in readme


def test_truth_file_fills_a_random_gold_sample_with_the_readme_step(tmp_path):
    """Every non-empty unlabeled row has its generated class; the README's pandas step copies it into a gold sample
    sheet by row_id, and the analysis reads the result as a complete gold sample with those classes."""
    truth = pd.read_csv(DATA / TRUTH)
    texts = pd.read_excel(DATA / "unlabeled_sample.xlsx")["Sentence"]
    assert truth.columns.tolist() == ["row_id", "Label"]
    assert truth["row_id"].tolist() == np.flatnonzero(texts.notna()).tolist()
    by_text = pd.DataFrame({"text": texts[truth["row_id"]].to_numpy(), "label": truth["Label"].to_numpy()})
    assert by_text.groupby("text")["label"].nunique().eq(1).all()  # copies of a comment share its class
    # data/README.md: 88 / 73 / 73 / 59 generated, plus the essay (heritage) and the emoji-only comment (irrelevant).
    assert np.bincount(by_text.drop_duplicates("text")["label"], minlength=4).tolist() == [88, 74, 73, 60]

    schema = load_label_schema(None)
    corpus = pd.DataFrame({"row_id": truth["row_id"], "text": texts[truth["row_id"]].to_numpy()})
    picked = corpus.iloc[[0, 5, 17, 60, 200, 296]].assign(label=0, confidence=0.5)
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / TRUTH).write_bytes((DATA / TRUTH).read_bytes())
    write_annotation_sheet(picked, schema, tmp_path / "runs" / "demo" / "gold_sample.xlsx", show_predictions=False)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    step = re.search(r'^python -c "import pandas as pd\n.*?unlabeled_sample_truth\.csv.*?"$', readme, re.M | re.S)
    subprocess.run(["bash", "-c", step.group(0)], cwd=tmp_path, check=True, timeout=120)
    gold = read_gold_sample(tmp_path / "runs" / "demo" / "gold_filled.xlsx", corpus, schema)
    assert gold["position"].tolist() == [0, 5, 17, 60, 200, 296]
    assert gold["gold"].tolist() == truth["Label"].iloc[[0, 5, 17, 60, 200, 296]].tolist()
