"""Hand labels the cross-validated model finds implausible (confident learning, via cleanlab), the review sheet for
them, and applying the reviewers' decisions back to the labeled file.

Confident learning (Northcutt, Jiang and Chuang, JAIR 2021) compares each row's given label with its out-of-fold
probabilities, using per-class thresholds (the mean probability a class gets on rows labeled with it), so it needs
no calibrated probabilities and no hand-set cut-off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from weibolabel.data.labeled import MAX_LISTED, clean_text, label_cell_writer, parse_label
from weibolabel.data.labels import Label, LabelSchema, load_label_schema
from weibolabel.data.tables import row_name
from weibolabel.review.annotation import write_workbook
from weibolabel.run.layout import RunLayout, read_out_of_fold
from weibolabel.util.errors import UserError

ISSUE_COLUMNS = ["row_id", "text", "given_label", "suggested_label", "suggested_probability", "rank"]
DECISION_COLUMN = "Decision"
KEEP, SUGGESTED, DROP = "keep", "suggested", "drop"


# ------------------------------------------------------------------------------------------------- the run
def read_run_predictions(run: str | Path) -> tuple[pd.DataFrame, np.ndarray, LabelSchema, dict]:
    """A training run's out-of-fold rows (row_id, text, gold, fold), their probabilities [n, classes], the label
    schema and the run's resolved config."""
    oof, names = read_out_of_fold(run)
    config_path = RunLayout(Path(run)).config
    if not config_path.is_file():
        raise UserError(f"{run} is not a finished training run of jobs/train.py (no {config_path.name}).")
    config = yaml.safe_load(config_path.read_text()) or {}
    try:  # the schema file gives the descriptions for the review sheet; the run's own names are the truth
        schema = load_label_schema(config.get("labels"))
    except UserError:  # moved or deleted since training
        schema = None
    if schema is None or schema.names != names:
        schema = LabelSchema(tuple(Label(i, name) for i, name in enumerate(names)))
    rows = pd.DataFrame(
        {
            "row_id": oof["row_id"].to_numpy(dtype=np.int64),
            "text": oof["text"].astype(str).to_numpy(dtype=object),
            "gold": oof["gold"].to_numpy(dtype=np.int64),
            "fold": oof["fold"].to_numpy(dtype=np.int64),
        }
    )
    probs = oof[[f"prob_{name}" for name in names]].to_numpy(dtype=np.float64)
    return rows, probs, schema, config


# ------------------------------------------------------------------------------------------------- finding
def find_issues(
    rows: pd.DataFrame, probs: np.ndarray, schema: LabelSchema, filter_by: str = "prune_by_noise_rate"
) -> pd.DataFrame:
    """The rows cleanlab flags as likely mislabeled, most suspicious first (lowest probability of the given
    label): row_id, text, given and suggested label (names), the suggested label's probability, rank (1 = first)."""
    from cleanlab.filter import find_label_issues

    labels = rows["gold"].to_numpy(dtype=np.int64)
    # n_jobs=1: cleanlab would fork a multiprocessing pool from a process whose torch/OpenMP threads are running,
    # which can deadlock (seen with the lowest declared versions); for thousands of rows one process is enough.
    flagged = find_label_issues(
        labels, probs, filter_by=filter_by, return_indices_ranked_by="self_confidence", n_jobs=1
    )
    suggested = probs[flagged].argmax(axis=1)
    return pd.DataFrame(
        {
            "row_id": rows["row_id"].to_numpy()[flagged],
            "text": rows["text"].to_numpy()[flagged],
            "given_label": [schema.names[i] for i in labels[flagged]],
            "suggested_label": [schema.names[i] for i in suggested],
            "suggested_probability": probs[flagged, suggested].round(4),
            "rank": np.arange(1, len(flagged) + 1),
            "given_label_probability": probs[flagged, labels[flagged]].round(4),
            "fold": rows["fold"].to_numpy()[flagged],
        }
    )


def estimate_noise(rows: pd.DataFrame, probs: np.ndarray, schema: LabelSchema, issues: pd.DataFrame) -> pd.DataFrame:
    """Per given label: rows, the estimated share and count of wrong labels among them (from cleanlab's calibrated
    confident joint, an estimate of P(given label, true label)), and how many rows were flagged for review."""
    from cleanlab.count import estimate_joint

    labels = rows["gold"].to_numpy(dtype=np.int64)
    joint = estimate_joint(labels, probs)
    given = np.bincount(labels, minlength=len(schema))
    # Rows of the joint are given labels; the diagonal is the part whose true label is the given one.
    share = 1.0 - np.divide(np.diag(joint), joint.sum(axis=1), out=np.ones(len(schema)), where=joint.sum(axis=1) > 0)
    flagged = issues["given_label"].value_counts()
    return pd.DataFrame(
        {
            "label": schema.names,
            "rows": given,
            "estimated_error_share": share.round(4),
            "estimated_errors": np.rint(share * given).astype(int),
            "flagged_for_review": [int(flagged.get(name, 0)) for name in schema.names],
        }
    )


# ------------------------------------------------------------------------------------------------- the sheet
def write_review_sheet(issues: pd.DataFrame, schema: LabelSchema, path: Path) -> None:
    """The annotators' format: sheet 1 the flagged rows with the given and suggested label and an empty
    `Decision` column (a drop-down), sheet 2 the label schema."""
    sheet = issues[["rank", "row_id", "text", "given_label", "suggested_label", "suggested_probability"]].rename(
        columns={"text": "Sentence"}
    )
    sheet[DECISION_COLUMN] = None
    # The drop-down offers the keywords and the label names; a typed id is accepted too (see parse_decision).
    write_workbook(
        path=path,
        sheet=sheet,
        schema=schema,
        widths=dict(zip(sheet.columns, (6, 8, 60, 13, 15, 11, 12))),
        choices=[KEEP, SUGGESTED, DROP, *schema.names],
        choice_column=DECISION_COLUMN,
    )


# ------------------------------------------------------------------------------------------------- decisions
def parse_decision(value, suggested, schema: LabelSchema) -> tuple[str | None, int | None, str | None]:
    """One Decision cell -> (action, new label id, problem). Actions: None (blank: not reviewed), 'keep',
    'relabel' (to `suggested` or to a label id or name read by `parse_label`), 'drop'."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
        return None, None, None
    word = str(value).strip().lower() if isinstance(value, str) else None
    if word == KEEP:
        return "keep", None, None
    if word == DROP:
        return "drop", None, None
    if word == SUGGESTED:
        label, problem = parse_label(suggested, schema)
        if problem:
            return None, None, f"'suggested' but the row's suggested_label is unusable ({problem})"
        return "relabel", label, None
    label, problem = parse_label(value, schema)
    if problem:
        allowed = f"'{KEEP}', '{SUGGESTED}', '{DROP}', a label id 0..{len(schema) - 1} or a name {schema.names}"
        return None, None, f"{value!r} is not a decision; use {allowed}"
    return "relabel", label, None


def read_decisions(path: Path, schema: LabelSchema, sheet: str | None = None) -> pd.DataFrame:
    """The reviewed rows of a review sheet: sheet_row, row_id, text, given_label, action, new_label. Every bad
    cell is one error naming the sheet's row and column; blank decisions are left out (not reviewed)."""
    from weibolabel.data.tables import read_table, require_column

    frame = read_table(path, sheet=sheet)
    for column in ("row_id", "Sentence", "given_label", DECISION_COLUMN):
        require_column(frame, column, path, f"(the review sheet's '{column}' column)")
    suggested = frame["suggested_label"] if "suggested_label" in frame.columns else pd.Series([None] * len(frame))
    records, problems = [], []
    for i, (row_id, text, given, decision, proposal) in enumerate(
        zip(frame["row_id"], frame["Sentence"], frame["given_label"], frame[DECISION_COLUMN], suggested)
    ):
        action, label, problem = parse_decision(decision, proposal, schema)
        if problem:
            problems.append(f"  {path}, {row_name(path, i)}, column '{DECISION_COLUMN}': {problem}")
            continue
        if action is None:
            continue
        number = _as_row_id(row_id)
        if number is None:
            problems.append(f"  {path}, {row_name(path, i)}, column 'row_id': {row_id!r} is not a row number")
            continue
        records.append(
            {
                "sheet_row": row_name(path, i),
                "row_id": number,
                "text": clean_text(text),
                "given_label": parse_label(given, schema)[0],
                "action": action,
                "new_label": label,
            }
        )
    _raise_listed(problems, f"invalid decision(s) in {path}", "Fix these cells and run again; nothing was written.")
    # object columns: a label id stays an int (or None), never a float with NaN
    columns = ["sheet_row", "row_id", "text", "given_label", "action", "new_label"]
    return pd.DataFrame(records, columns=columns, dtype=object)


def _as_row_id(value) -> int | None:
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _raise_listed(problems: list[str], what: str, fix: str) -> None:
    if problems:
        listed = "\n".join(problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise UserError(f"{len(problems)} {what}:\n{listed}{more}\n{fix}")


def apply_decisions(
    frame: pd.DataFrame,
    decisions: pd.DataFrame,
    schema: LabelSchema,
    *,
    text_column: str,
    label_column: str,
    source: Path,
    header_row: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The labeled table with the decisions applied (every column kept, rows in order, dropped rows removed) and
    the log: one line per reviewed row, and per exact copy of its text that the decision also reaches.

    Training keeps one of several exact copies (same text after normalisation) and drops copies whose labels
    disagree, so a decision changes every copy: relabeling one alone would turn them into a conflict."""
    texts = [clean_text(t) for t in frame[text_column]]
    checked = _checked_decisions(
        decisions, texts=texts, labels=frame[label_column], schema=schema, source=source, header_row=header_row
    )
    copies: dict[str, list[int]] = {}
    for position, text in enumerate(texts):
        copies.setdefault(text, []).append(position)
    result, log, dropped = frame.copy(), [], set()
    as_cell = label_cell_writer(frame[label_column], schema)  # names stay names, ids stay ids
    for row_id, (action, new_label, sheet_row) in sorted(checked.items()):
        for position in copies[texts[row_id]]:
            old = parse_label(frame[label_column].iloc[position], schema)[0]
            entry = _log_entry(
                action,
                schema=schema,
                old=old,
                new_label=new_label,
                row_id=row_id,
                position=position,
                text=texts[position],
                row=row_name(source, position, header_row),
                sheet_row=sheet_row,
            )
            if entry["change"] == "row removed":
                dropped.add(position)
            elif entry["change"] == "relabeled":
                result.iloc[position, result.columns.get_loc(label_column)] = as_cell(new_label)
            log.append(entry)
    result = result.drop(index=result.index[sorted(dropped)]).reset_index(drop=True)
    columns = ["row_id", "row", "text", "old_label", "new_label", "decision", "change", "review_sheet_row", "note"]
    return result, pd.DataFrame(log, columns=columns)


def _checked_decisions(
    decisions: pd.DataFrame,
    *,
    texts: list[str],
    labels: pd.Series,
    schema: LabelSchema,
    source: Path,
    header_row: int,
) -> dict[int, tuple[str, int | None, str]]:
    """Each reviewed row_id's (action, new label, review sheet row), once every decision is checked against the
    file: one error lists every decision that does not fit it, and nothing is applied."""
    problems = []
    seen: dict[int, tuple[str, int | None, str]] = {}
    for record in decisions.itertuples(index=False):
        where = f"  review sheet {record.sheet_row}, row_id {record.row_id}"
        problem = _mismatch(record, texts=texts, labels=labels, schema=schema, source=source, header_row=header_row)
        decision = (record.action, record.new_label, record.sheet_row)
        if problem is None and record.row_id in seen and seen[record.row_id][:2] != decision[:2]:
            problem = f"contradicts the decision in review sheet {seen[record.row_id][2]}"
        if problem is not None:
            problems.append(f"{where}: {problem}")
            continue
        seen[record.row_id] = decision
    _raise_listed(problems, f"decision(s) that cannot be applied to {source}", "Nothing was written.")
    return seen


def _mismatch(
    record, *, texts: list[str], labels: pd.Series, schema: LabelSchema, source: Path, header_row: int
) -> str | None:
    """Why a decision no longer fits the file (its row is gone, or its text or given label changed), else None."""
    if not 0 <= record.row_id < len(texts):
        return f"not a row of {source} (it has rows 0..{len(texts) - 1})"
    if texts[record.row_id] != record.text:
        return (
            f"the text differs from {source}, {row_name(source, record.row_id, header_row)} "
            f"({texts[record.row_id][:30]!r} vs {record.text[:30]!r}); was the file changed since the review?"
        )
    current = parse_label(labels.iloc[record.row_id], schema)[0]
    if record.given_label is not None and current != record.given_label:
        return (
            f"{source}, {row_name(source, record.row_id, header_row)} now has label "
            f"{schema.names[current] if current is not None else 'none'}, not the reviewed "
            f"{schema.names[int(record.given_label)]}; was the file changed since the review?"
        )
    return None


def _log_entry(
    action: str,
    *,
    schema: LabelSchema,
    old: int | None,
    new_label: int | None,
    row_id: int,
    position: int,
    text: str,
    row: str,
    sheet_row: str,
) -> dict:
    """The log line of one decision on one copy of its row (`position` is the copy, `row_id` the reviewed row);
    its `change` says what applying it does: none, relabeled or row removed."""
    entry = {
        "row_id": position,
        "row": row,
        "text": text,
        "old_label": schema.names[old] if old is not None else None,
        "new_label": None,
        "decision": action,
        "change": "none",
        "review_sheet_row": sheet_row,
        "note": "" if position == row_id else f"exact copy of row_id {row_id}",
    }
    if action == "keep":
        entry["new_label"] = entry["old_label"]
    elif action == "drop":
        entry["change"] = "row removed"
    elif old != new_label:
        entry["new_label"], entry["change"] = schema.names[new_label], "relabeled"
    else:
        entry["new_label"] = schema.names[new_label]
    return entry
