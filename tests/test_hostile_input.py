"""Hostile and odd input: every case ends in a clear UserError (file, spreadsheet row, column, what to do) or a
kept row, never a traceback. Training (`load_labeled`) refuses bad labels; labeling (`Corpus`) keeps odd rows."""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest

from weibolabel.data.labeled import clean_text, load_labeled, parse_label
from weibolabel.data.labels import load_label_schema
from weibolabel.labeling.corpus import Corpus
from weibolabel.util.errors import UserError

from helpers.jobs import load_job

SCHEMA = load_label_schema(None)

# Rows that are odd but legitimate comments: each must come out of labeling as a row with a status.
ODD_TEXTS = {
    "nan": None,
    "whitespace": "   \t  ",
    "zero_width": "\u200b\u200d\ufeff",
    "emoji_only": "😭🙏🥺",
    "html": "故宫&amp;国宝 &lt;3 &quot;好看&quot;",
    "url_mention": "@央视新闻 https://weibo.com/123?a=1&b=2 国家宝藏太好看了",
    "long": "中华文化博大精深" * 1250,  # 10,000 characters
    "number": "12345",
    "na_word": "NA",
}


def write_sheet(path: Path, rows: list[list], title: str = "Sheet", extra_sheets: dict | None = None) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    for name, other_rows in (extra_sheets or {}).items():
        other = workbook.create_sheet(name)
        for row in other_rows:
            other.append(row)
    workbook.save(path)
    return path


def labeled_rows(n: int = 8) -> list[list]:
    return [[f"评论{i} 国家宝藏", i % 4] for i in range(n)]


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(UserError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


# ---------------------------------------------------------------------------------------------------- header row
def test_header_on_a_lower_row_is_found_and_header_row_reads_it(tmp_path):
    path = write_sheet(tmp_path / "title.xlsx", [["国家宝藏评论导出 2024"], [], ["Sentence", "Label"], *labeled_rows()])
    message = error_of(load_labeled, path, SCHEMA)
    assert "'Sentence' appears in row 3" in message and "--header_row 3" in message

    data = load_labeled(path, SCHEMA, header_row=3)
    assert data.counts["rows_used"] == 8
    assert data.rows["row"].iloc[0] == "row 4"  # what Excel shows next to the first data row

    # A bad cell is named by the row Excel shows, not by pandas' index.
    rows = [["title"], [], ["Sentence", "Label"], *labeled_rows(), ["坏标签", 9]]
    message = error_of(load_labeled, write_sheet(tmp_path / "bad.xlsx", rows), SCHEMA, header_row=3)
    assert "row 12, column 'Label': 9 is outside the label schema" in message


def test_header_row_in_csv_and_in_corpus(tmp_path):
    path = tmp_path / "title.csv"
    path.write_text("导出时间,2024-05-01\n\nSentence,Label\n好看,0\n文物,1\n", encoding="utf-8")
    assert error_of(load_labeled, path, SCHEMA).count("--header_row 3") == 1
    assert load_labeled(path, SCHEMA, header_row=3).rows["row"].tolist() == ["row 4", "row 5"]
    corpus = Corpus([path], "Sentence", [], "Label", header_row=3)
    assert corpus.num_rows == 2 and corpus.gold_column == "Label"
    assert "--header_row must be" in error_of(load_labeled, path, SCHEMA, header_row=0)
    assert "fewer than 40 rows" in error_of(
        load_labeled, write_sheet(tmp_path / "s.xlsx", labeled_rows()), SCHEMA, header_row=40
    )


# ---------------------------------------------------------------------------------------------------- xlsx oddities
def test_merged_label_cells_are_named_with_their_range(tmp_path):
    path = write_sheet(tmp_path / "merged.xlsx", [["Sentence", "Label"], *labeled_rows(6)])
    workbook = openpyxl.load_workbook(path)
    workbook.active.merge_cells("B3:B5")  # one label typed once for three rows
    workbook.save(path)
    message = error_of(load_labeled, path, SCHEMA)
    assert f"{path}, row 4, column 'Label': the cell is inside the merged cells B3:B5" in message
    assert "row 5, column 'Label'" in message and "unmerge them" in message
    # Labeling keeps every row; the merged-away cells simply read as empty.
    corpus = Corpus([path], "Sentence", [], "Label")
    assert corpus.num_rows == 6


def test_several_sheets(tmp_path):
    path = write_sheet(
        tmp_path / "sheets.xlsx",
        [["说明：第二页是标注"]],
        title="README",
        extra_sheets={"标注": [["Sentence", "Label"], *labeled_rows()]},
    )
    message = error_of(load_labeled, path, SCHEMA)
    assert "Sheet '标注' has it: pass --sheet 标注" in message
    assert load_labeled(path, SCHEMA, sheet="标注").counts["rows_used"] == 8
    assert "the sheets are ['README', '标注']" in error_of(load_labeled, path, SCHEMA, sheet="Sheet1")
    assert Corpus([path], "Sentence", [], "Label", sheet="标注").num_rows == 8
    assert "--sheet 标注" in error_of(Corpus, [path], "Sentence", [], "Label")


def _with_cached_formula_values(path: Path, values: dict[str, str]) -> None:
    """openpyxl writes formulas without the value Excel would cache; add it, as a file saved by Excel has."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    xml = members["xl/worksheets/sheet1.xml"].decode()
    for cell, value in values.items():
        xml = re.sub(rf'(<c r="{cell}"[^>]*><f>[^<]*</f>)<v\s*/>', rf"\g<1><v>{value}</v>", xml)
    members["xl/worksheets/sheet1.xml"] = xml.encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_formulas_read_their_cached_values_and_uncomputed_ones_are_explained(tmp_path):
    rows = [["Sentence", "Label"], ["好看", "=1+0"], ["文物", "=0+2"], ['=CONCAT("国","宝")', 3]]
    path = write_sheet(tmp_path / "formulas.xlsx", rows)
    message = error_of(load_labeled, path, SCHEMA)  # never opened in Excel: no cached values
    assert "row 2, column 'Label': the formula =1+0 has no saved value" in message and "save it" in message

    _with_cached_formula_values(path, {"B2": "1", "B3": "2", "A4": "国宝"})
    xml = zipfile.ZipFile(path).read("xl/worksheets/sheet1.xml").decode()
    xml = xml.replace('<c r="A4"><f>', '<c r="A4" t="str"><f>')  # a text result is typed as such by Excel
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    members["xl/worksheets/sheet1.xml"] = xml.encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    data = load_labeled(path, SCHEMA)
    assert data.rows["label"].tolist() == [1, 2, 3]
    assert data.rows["text"].tolist() == ["好看", "文物", "国宝"]


# ---------------------------------------------------------------------------------------------------- labels
def test_labels_as_floats_strings_and_names_are_read():
    for value, expected in [(1, 1), (1.0, 1), (np.int64(2), 2), ("3", 3), ("1.0", 1), ("heritage", 1), ("２", 2)]:
        assert parse_label(value, SCHEMA) == (expected, None), value


def test_bad_labels_are_listed_by_row_and_column(tmp_path):
    rows = [["Sentence", "Label"], ["a", 4], ["b", -1], ["c", 1.5], ["d", "abc"], ["e", None], ["f", " 1"], ["g", True]]
    path = write_sheet(tmp_path / "labels.xlsx", rows)
    message = error_of(load_labeled, path, SCHEMA)
    assert message.startswith(f"7 invalid label(s) in {path}")
    for expected in [
        "row 2, column 'Label': 4 is outside the label schema",
        "row 3, column 'Label': -1 is outside",
        "row 4, column 'Label': '1.5' is not a whole number",
        "row 5, column 'Label': 'abc' is neither a label id",
        "row 6, column 'Label': missing label",
        "row 7, column 'Label': ' 1' has spaces around it",
        "row 8, column 'Label': 'True' is not a label id",
    ]:
        assert expected in message, expected
    assert "Fix these cells" in message


# ---------------------------------------------------------------------------------------------------- texts
def test_odd_texts_in_training_data(tmp_path):
    rows = [["Sentence", "Label"]] + [[text, i % 4] for i, text in enumerate(ODD_TEXTS.values())]
    rows += [[123456, 0], [7.0, 1], [None, None], ["正常评论", 2]]  # numbers as text, a blank spacer row
    data = load_labeled(write_sheet(tmp_path / "odd.xlsx", rows), SCHEMA)
    used = dict(zip(data.rows["row"], data.rows["text"]))
    assert used["row 5"] == "😭🙏🥺"  # emoji-only is a comment; the tokenizer decides what it can see
    assert used["row 6"] == '故宫&国宝 <3 "好看"'
    assert used["row 7"].startswith("@央视新闻 https://weibo.com/123?a=1&b=2")
    assert len(used["row 8"]) == 10_000
    assert used["row 11"] == "123456" and used["row 12"] == "7"
    issues = dict(zip(data.issues["row"], data.issues["issue"]))
    assert issues == {"row 2": "empty text", "row 3": "empty text", "row 4": "empty text", "row 13": "empty row"}
    assert data.counts["empty_text_dropped"] == 4 and data.counts["empty_rows_dropped"] == 1
    assert clean_text("a\u00adb\u2060c") == "abc"


def test_odd_texts_are_kept_by_the_corpus(tmp_path):
    frame = pd.DataFrame({"Sentence": [*ODD_TEXTS.values(), None], "show": [*range(len(ODD_TEXTS)), None]})
    path = tmp_path / "odd.csv"
    frame.to_csv(path, index=False)
    corpus = Corpus([path], "Sentence", ["show"], "Label")
    chunks = list(corpus.iter_chunks(4))
    rows = pd.concat([c.rows for c in chunks], ignore_index=True)
    assert corpus.num_rows == len(rows) == len(ODD_TEXTS) + 1
    assert rows["row_id"].tolist() == list(range(len(rows)))
    texts = dict(zip(ODD_TEXTS, rows["text"]))
    assert texts["na_word"] == "NA"  # not turned into a missing value
    assert texts["long"] == ODD_TEXTS["long"] and texts["emoji_only"] == ODD_TEXTS["emoji_only"]
    assert corpus.gold_column is None  # no Label column: no agreement report, no error


# ---------------------------------------------------------------------------------------------------- encodings
@pytest.mark.parametrize("encoding", ["utf-8-sig", "gb18030", "gbk", "utf-8"])
def test_csv_encodings_are_detected(tmp_path, encoding):
    path = tmp_path / f"{encoding}.csv"
    frame = pd.DataFrame({"Sentence": ["故宫的文物真好看", "《国家宝藏》第三季"], "Label": [1, 0]})
    frame.to_csv(path, index=False, encoding=encoding)
    assert load_labeled(path, SCHEMA).rows["text"].tolist() == frame["Sentence"].tolist()
    assert Corpus([path], "Sentence", [], "Label").num_rows == 2
    assert load_labeled(path, SCHEMA, encoding=encoding).counts["rows_used"] == 2


def test_wrong_encoding_override_is_a_clear_error(tmp_path):
    path = tmp_path / "gbk.csv"
    pd.DataFrame({"Sentence": ["故宫的文物真好看"] * 3, "Label": [1] * 3}).to_csv(path, index=False, encoding="gbk")
    for call in (
        lambda: load_labeled(path, SCHEMA, encoding="utf-8"),
        lambda: Corpus([path], "Sentence", [], None, encoding="utf-8"),
    ):
        message = error_of(call)
        assert f"{path} is not valid utf-8 text" in message and "--encoding" in message


# ---------------------------------------------------------------------------------------------------- empty, columns
def test_empty_and_header_only_files(tmp_path):
    empty_csv = tmp_path / "empty.csv"
    empty_csv.write_bytes(b"")
    assert "the file is empty" in error_of(load_labeled, empty_csv, SCHEMA)
    assert "the file is empty" in error_of(Corpus, [empty_csv], "Sentence", [], None)

    empty_xlsx = write_sheet(tmp_path / "empty.xlsx", [])
    assert "sheet 'Sheet' is empty" in error_of(load_labeled, empty_xlsx, SCHEMA)

    header_csv = tmp_path / "header.csv"
    header_csv.write_text("Sentence,Label\n")
    header_xlsx = write_sheet(tmp_path / "header.xlsx", [["Sentence", "Label"]])
    for path in (header_csv, header_xlsx):
        assert "has a header (row 1) but no rows below it" in error_of(load_labeled, path, SCHEMA)
        assert "Nothing to label" in error_of(Corpus, [path], "Sentence", [], None)
    # One empty file among others is fine: the corpus has rows.
    good = tmp_path / "good.csv"
    good.write_text("Sentence\n好看\n")
    assert Corpus([header_csv, good], "Sentence", [], None).num_rows == 1


def test_duplicate_and_misnamed_columns(tmp_path):
    duplicate = write_sheet(tmp_path / "dup.xlsx", [["Sentence", "Sentence", "Label"], ["a", "b", 1]])
    assert "duplicate column names ['Sentence']" in error_of(load_labeled, duplicate, SCHEMA)
    duplicate_csv = tmp_path / "dup.csv"
    duplicate_csv.write_text("Sentence,Sentence\na,b\n")
    assert "duplicate column names ['Sentence']" in error_of(Corpus, [duplicate_csv], "Sentence", [], None)

    misnamed = write_sheet(tmp_path / "misnamed.xlsx", [["sentence", "Lable"], ["a", 1]])
    message = error_of(load_labeled, misnamed, SCHEMA)
    assert "no column 'Sentence'" in message and "Did you mean 'sentence'? Pass --text_column sentence." in message
    message = error_of(load_labeled, misnamed, SCHEMA, text_column="sentence")
    assert "Did you mean 'Lable'? Pass --label_column Lable." in message
    assert "Pass --carry_columns" in error_of(Corpus, [misnamed], "sentence", ["date"], None)


def test_ragged_csv_is_a_clear_error(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("Sentence,Label\n好看,1\n故宫,文物,真好看,2\n")
    for call in (lambda: load_labeled(path, SCHEMA), lambda: Corpus([path], "Sentence", [], None)):
        message = error_of(call)
        assert str(path) in message and "double quotes" in message


# ---------------------------------------------------------------------------------------------------- corrupt files
@pytest.mark.parametrize("suffix", [".xlsx", ".parquet", ".csv"])
def test_corrupt_files_are_a_clear_error(tmp_path, suffix):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for call in (lambda: load_labeled(path, SCHEMA), lambda: Corpus([path], "Sentence", [], None)):
        message = error_of(call)
        assert str(path) in message
        if suffix == ".xlsx":
            assert "not a readable Excel workbook" in message and "save it as" in message
        if suffix == ".parquet":
            assert "not a readable Parquet file" in message


def test_truncated_parquet_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.parquet"
    pd.DataFrame({"Sentence": ["好看"] * 100, "Label": [1] * 100}).to_parquet(path)
    path.write_bytes(path.read_bytes()[:-40])  # an interrupted copy
    assert "not a readable Parquet file" in error_of(Corpus, [path], "Sentence", [], None)
    assert "not a readable Parquet file" in error_of(load_labeled, path, SCHEMA)


# ---------------------------------------------------------------------------------------------------- end to end
def test_labeling_keeps_every_odd_row_with_a_status(tmp_path, tiny_run_dir):
    source = tmp_path / "odd.xlsx"
    rows = [["微博评论导出"], ["Sentence", "Label"]]
    rows += [[text, label] for text, label in zip(ODD_TEXTS.values(), [1, "2", 3.0, "abc", None, 9, 0, 1, 2])]
    rows += [[None, None], [42, 1]]
    write_sheet(source, rows)
    output = tmp_path / "odd.parquet"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    code = load_job("label_corpus").main(
        ["--input", str(source), "--model", str(tiny_run_dir), "--output", str(output), "--header_row", "2"]
    )
    assert code == 0
    table = pq.read_table(output).to_pandas()
    assert len(table) == len(ODD_TEXTS) + 2 and table["row_id"].tolist() == list(range(len(table)))
    status = dict(zip([*ODD_TEXTS, "blank", "number_cell"], table["status"]))
    assert status == {
        "nan": "empty",
        "whitespace": "empty",
        "zero_width": "empty",
        "emoji_only": "unknown_tokens_only",
        "html": "ok",
        "url_mention": "ok",
        "long": "ok",
        "number": "ok",
        "na_word": "ok",
        "blank": "empty",
        "number_cell": "ok",
    }
    assert table["truncated"].tolist()[list(ODD_TEXTS).index("long")]
    assert table["label"].isna().tolist() == [s != "ok" for s in status.values()]
    # Unreadable gold labels are kept as missing, not fatal: the labels to produce are the point here.
    gold = [None if pd.isna(v) else int(v) for v in table["gold_label"]]
    assert gold == [1, 2, 3, None, None, None, 0, 1, 2, None, 1]
