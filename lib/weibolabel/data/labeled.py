"""Labeled data: the text a model sees (clean_text), label cells, and the validation of a labeled table (bad labels
are errors; empty texts and duplicates are dropped and reported), each problem named by file, row and column."""

from __future__ import annotations

import html
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from weibolabel.data.formats import SPREADSHEET_SUFFIXES
from weibolabel.data.labels import LabelSchema
from weibolabel.data.tables import blank_cell_reasons, read_table, require_column, row_name
from weibolabel.util.errors import UserError

MAX_LISTED = 20  # problems listed in one error message; the rest are counted

_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_WHITESPACE = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[\W_]+")


# ---------------------------------------------------------------------------------------------------------- text
def clean_text(value) -> str:
    """The text a model sees: HTML entities decoded, zero-width characters dropped, whitespace collapsed."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a number typed into a text cell: 123.0 -> "123"
    text = html.unescape(str(value))
    text = _ZERO_WIDTH.sub("", text)
    return _WHITESPACE.sub(" ", text).strip()


def group_key(text: str) -> str:
    """Near-duplicate key: case, width, whitespace and punctuation folded, so such copies share a fold."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return _NOT_WORD.sub("", folded) or folded


# ---------------------------------------------------------------------------------------------------------- labels
def parse_label(value, schema: LabelSchema) -> tuple[int | None, str | None]:
    """(label id, None) or (None, what is wrong with the cell), by one rule whatever the cell's type (4, "4", "4.0"):
    a name matches first, then a whole number is an id; with whole-number names (a 1-5 scale) it is only a name."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None, "missing label"
    if isinstance(value, bool | np.bool_):
        return None, f"'{value}' is not a label id"
    if schema.number_names:
        return _parse_number_name(value, schema)
    text = str(value)
    if not isinstance(value, int | float | np.number) and text in schema.names:
        return schema.names.index(text), None
    # Excel stores 1 as 1.0 once a column holds an empty cell; a CSV written by a program that saw floats has "1.0".
    number = _whole_number(value)
    if number is None:
        if isinstance(value, float | np.floating) or re.fullmatch(r"\d+\.\d*", text):
            return None, f"'{text}' is not a whole number"
        if text.strip() != text and parse_label(text.strip(), schema)[1] is None:
            return None, f"{shown(text)} has spaces around it; type {text.strip()!r} without them"
        guess = schema.closest_name(text)
        hint = f"; did you mean '{guess}'?" if guess else ""
        names = f"a label name {schema.names}{hint}"
        return None, f"{shown(text)} is neither a label id (0..{len(schema) - 1}) nor {names}"
    if not 0 <= number < len(schema):
        return None, f"{number} is outside the label schema (ids 0..{len(schema) - 1})"
    return number, None


def _parse_number_name(value, schema: LabelSchema) -> tuple[int | None, str | None]:
    """parse_label for a schema with whole-number names: a whole number (any cell type) is a name."""
    number = _whole_number(value)
    if number is not None and number in schema.number_names:
        return schema.number_names[number], None
    text = str(value)
    if number is None and text in schema.names:
        return schema.names.index(text), None
    rule = f"this schema's names {schema.names} include numbers, so a number is read as a name, never as an id"
    if number is not None:
        return None, f"{number} is not a label name ({rule})"
    if _whole_number(text.strip()) in schema.number_names or text.strip() in schema.names:
        return None, f"{shown(text)} has spaces around it; type {text.strip()!r} without them"
    return None, f"{shown(text)} is not a label name ({rule})"


def _whole_number(value) -> int | None:
    """The whole number a cell holds: 4, 4.0, "4", "4.0"; None for anything else."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, float | np.floating):
        return int(value) if float(value).is_integer() else None
    text = str(value)
    if re.fullmatch(r"\d+(\.0*)?", text):
        return int(text.split(".")[0])
    return None


def shown(text: str) -> str:
    """A cell's text for a message: quoted, with what would print as nothing (a zero-width space, a BOM) named."""
    hidden = sorted({c for c in text if unicodedata.category(c) in ("Cf", "Cc", "Zs", "Zl", "Zp") and c != " "})
    named = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'CONTROL CHARACTER')}" for c in hidden)
    return repr(text) + (f" (with the hidden character(s) {named})" if hidden else "")


def label_cell_writer(column: pd.Series, schema: LabelSchema):
    """Label id -> the cell to write into a file's label `column`: names if it holds names, ids otherwise; with
    whole-number names always the name (an id there would read as another class), a number in a number column."""
    filled = column.dropna()
    if schema.number_names:
        numbers = len(filled) > 0 and all(isinstance(v, int | float | np.number) for v in filled)

        def name(label: int):
            text = schema.names[label]
            return int(text) if numbers and text.isdigit() else text

        return name
    holds_names = any(isinstance(v, str) and v.strip() in schema.names for v in filled)
    return (lambda label: schema.names[label]) if holds_names else (lambda label: label)


# ---------------------------------------------------------------------------------------------------------- labeled
@dataclass
class LabeledData:
    """Validated training rows and what validation dropped or merged."""

    rows: pd.DataFrame  # row_id (0-based, below the header), row (as the user numbers it), text, label, group
    issues: pd.DataFrame  # row, column, issue, action
    counts: dict = field(default_factory=dict)


def load_labeled(
    path: str | Path,
    schema: LabelSchema,
    *,
    text_column: str = "Sentence",
    label_column: str = "Label",
    sheet: str | None = None,
    encoding: str | None = None,
    on_conflict: str = "drop",
    header_row: int = 1,
    split: str | None = None,
) -> LabeledData:
    """Read and validate a labeled table; bad labels are errors, empty texts and duplicates are reported."""
    path = Path(path)
    frame = read_table(path, sheet=sheet, encoding=encoding, header_row=header_row, split=split)
    options = {"sheet": sheet, "on_conflict": on_conflict, "header_row": header_row}
    return validate_labeled(frame, path, schema, text_column=text_column, label_column=label_column, **options)


def validate_labeled(
    frame: pd.DataFrame,
    path: Path,
    schema: LabelSchema,
    *,
    text_column: str,
    label_column: str,
    sheet: str | None = None,
    on_conflict: str = "drop",
    header_row: int = 1,
) -> LabeledData:
    """`load_labeled` of a table already read from `path` (the file every message names)."""
    require_column(frame, text_column, path, "--text_column", header_row=header_row, sheet=sheet)
    require_column(frame, label_column, path, "--label_column", header_row=header_row, sheet=sheet)
    if frame.empty:
        raise UserError(f"{path}: the table has a header (row {header_row}) but no rows below it.")

    rows = [row_name(path, i, header_row) for i in range(len(frame))]
    texts = [clean_text(v) for v in frame[text_column].tolist()]
    labels = _parse_labels(frame, path, schema, label_column, texts, rows, sheet, header_row)
    # row_id: 0-based position below the header, the convention of every output; row: the name a user looks up.
    row_ids = np.arange(len(frame), dtype=np.int64)
    table = pd.DataFrame({"row_id": row_ids, "row": rows, "text": texts, "label": labels})
    empty = table["text"] == ""
    blank_row = empty & table["label"].isna()
    reasons = {}
    if (empty & ~blank_row).any():  # only then is the workbook loaded again, for why a text is empty
        reasons = _blank_reasons(frame, path, text_column, sheet, header_row, np.flatnonzero(empty))
    issues = []
    for i in np.flatnonzero(empty):
        why = "empty row" if blank_row[i] else "empty text"
        why += f" ({reasons[i]})" if i in reasons else ""
        issues.append({"row": rows[i], "column": text_column, "issue": why, "action": "dropped"})
    # A blank row's missing label made the column float (2.0): every row left has a label, and ids are integers.
    table = table[~empty].astype({"label": np.int64})

    conflict_rows, merged_rows = _duplicates(table, schema)
    if conflict_rows and on_conflict == "error":
        listed = "\n".join(f"  {path}, {r}, column '{label_column}': {why}" for r, why in conflict_rows[:MAX_LISTED])
        raise UserError(
            f"{len(conflict_rows)} rows share a text but not a label:\n{listed}\n"
            "Decide on one label for each text, or run with --on_conflict drop to leave them out."
        )
    issues += [{"row": r, "column": label_column, "issue": why, "action": "dropped"} for r, why in conflict_rows]
    issues += [{"row": r, "column": text_column, "issue": why, "action": "merged"} for r, why in merged_rows]
    dropped = {r for r, _ in conflict_rows} | {r for r, _ in merged_rows}
    table = table[~table["row"].isin(dropped)].reset_index(drop=True)
    if table.empty:
        raise UserError(f"{path}: no usable rows remain after validation (see the issues above).")
    table["group"] = [group_key(t) for t in table["text"]]

    counts = {
        "rows_read": len(frame),
        "empty_text_dropped": int(empty.sum()),
        "empty_rows_dropped": int(blank_row.sum()),  # of those, rows with no label either
        "conflicting_duplicates_dropped": len(conflict_rows),
        "duplicates_merged": len(merged_rows),
        "rows_used": len(table),
        "class_counts": {schema.names[i]: int((table["label"] == i).sum()) for i in range(len(schema))},
    }
    return LabeledData(
        rows=table, issues=pd.DataFrame(issues, columns=["row", "column", "issue", "action"]), counts=counts
    )


def _parse_labels(
    frame: pd.DataFrame,
    path: Path,
    schema: LabelSchema,
    column: str,
    texts: list[str],
    rows: list[str],
    sheet: str | None,
    header_row: int,
) -> list[int | None]:
    """Each row's label id (None for a blank spacer row); any invalid label stops with every bad cell listed."""
    labels, bad_labels = [], []
    for i, value in enumerate(frame[column].tolist()):
        label, problem = parse_label(value, schema)
        labels.append(label)
        # A row with neither text nor label is a blank spacer row (common in hand-made sheets), not a mistake.
        if problem and not (texts[i] == "" and problem == "missing label"):
            bad_labels.append((i, problem))
    if bad_labels:
        blank = [i for i, problem in bad_labels if problem == "missing label"]
        reasons = _blank_reasons(frame, path, column, sheet, header_row, blank)
        bad_labels = [(i, reasons.get(i, problem)) for i, problem in bad_labels]
        listed = "\n".join(
            f"  {path}, {rows[i]}, column '{column}': {problem}" for i, problem in bad_labels[:MAX_LISTED]
        )
        more = f"\n  ... and {len(bad_labels) - MAX_LISTED} more" if len(bad_labels) > MAX_LISTED else ""
        raise UserError(
            f"{len(bad_labels)} invalid label(s) in {path}:\n{listed}{more}\n"
            f"Each label must be an id {list(range(len(schema)))} or a name {schema.names}. "
            "Fix these cells, or delete the rows, and run again."
        )
    return labels


def _blank_reasons(
    frame: pd.DataFrame, path: Path, column: str, sheet: str | None, header_row: int, positions
) -> dict[int, str]:
    """Why the cells of `column` at these row positions are empty, when a workbook says (blank_cell_reasons)."""
    if path.suffix.lower() not in SPREADSHEET_SUFFIXES:
        return {}
    column_number = list(frame.columns).index(column) + 1  # pandas keeps empty leading columns: A = 1
    reasons = blank_cell_reasons(path, sheet, column_number, [i + header_row + 1 for i in positions])
    return {i: reasons[i + header_row + 1] for i in positions if i + header_row + 1 in reasons}


def _duplicates(table: pd.DataFrame, schema: LabelSchema) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Exact duplicates after normalisation: (row, why) of copies that disagree on the label (all are dropped), and
    of the copies merged into the first one of an agreeing group."""
    conflict_rows, merged_rows = [], []
    for _, copies in table.groupby("text", sort=False):
        if len(copies) == 1:
            continue
        if copies["label"].nunique() > 1:
            detail = ", ".join(f"{r} = {schema.names[lab]}" for r, lab in zip(copies["row"], copies["label"]))
            conflict_rows += [(r, f"same text, conflicting labels ({detail})") for r in copies["row"]]
        else:
            merged_rows += [(r, f"duplicate of {copies['row'].iloc[0]}") for r in copies["row"].iloc[1:]]
    return conflict_rows, merged_rows
