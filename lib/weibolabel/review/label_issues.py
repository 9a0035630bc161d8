"""Hand labels the cross-validated model finds implausible (confident learning, via cleanlab), the review sheet for
them, and applying the reviewers' decisions back to the labeled file.

Confident learning (Northcutt, Jiang and Chuang, JAIR 2021) uses per-class thresholds on the out-of-fold
probabilities, so it needs no calibrated probabilities and no hand-set cut-off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from weibolabel.data.labeled import MAX_LISTED, clean_text, label_cell_writer, parse_label
from weibolabel.data.labels import Label, LabelSchema, load_label_schema
from weibolabel.data.tables import read_table, require_column, row_name
from weibolabel.labeling.summary import is_blank
from weibolabel.review.annotation import write_workbook
from weibolabel.run.layout import RunLayout, read_out_of_fold
from weibolabel.util.errors import UserError

ISSUE_COLUMNS = ["row_id", "text", "given_label", "suggested_label", "suggested_probability", "rank"]
DECISION_COLUMN = "Decision"
KEEP, SUGGESTED, DROP = "keep", "suggested", "drop"


# ------------------------------------------------------------------------------------------------- the run
def read_run_predictions(run: str | Path) -> tuple[pd.DataFrame, np.ndarray, LabelSchema, dict]:
    """A training run's out-of-fold rows (row_id, text, gold, fold), their probabilities, label schema and config."""
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
    rows = oof[["row_id", "text", "gold", "fold"]].astype({"row_id": np.int64, "gold": np.int64, "fold": np.int64})
    rows["text"] = oof["text"].astype(str).to_numpy(dtype=object)
    probs = oof[[f"prob_{name}" for name in names]].to_numpy(dtype=np.float64)
    return rows, probs, schema, config


# ------------------------------------------------------------------------------------------------- finding
def find_issues(
    rows: pd.DataFrame, probs: np.ndarray, schema: LabelSchema, filter_by: str = "prune_by_noise_rate"
) -> pd.DataFrame:
    """The rows cleanlab flags as likely mislabeled, most suspicious (lowest probability of the given label) first."""
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
    """Per given label: rows, the estimated share and count of wrong labels (cleanlab's calibrated confident joint,
    an estimate of P(given label, true label)) and the rows flagged for review."""
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
    """The annotators' format: the flagged rows with an empty `Decision` drop-down, then the label schema."""
    sheet = issues[["rank", "row_id", "text", "given_label", "suggested_label", "suggested_probability"]].rename(
        columns={"text": "Sentence"}
    )
    sheet[DECISION_COLUMN] = None
    # The drop-down offers the keywords and the label names; a typed id is accepted too (see parse_decision).
    widths = dict(zip(sheet.columns, (6, 8, 60, 13, 15, 11, 12)))
    write_workbook(path, sheet, schema, widths, [KEEP, SUGGESTED, DROP, *schema.names], DECISION_COLUMN)


# ------------------------------------------------------------------------------------------------- decisions
def parse_decision(value, suggested, schema: LabelSchema) -> tuple[str | None, int | None, str | None]:
    """One Decision cell -> (action, new label id, problem); action None (blank), keep, relabel or drop."""
    if is_blank(value):
        return None, None, None
    word = str(value).strip().lower() if isinstance(value, str) else None
    if word in (KEEP, DROP):
        return word, None, None
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


def read_decisions(path: Path, schema: LabelSchema) -> pd.DataFrame:
    """The reviewed rows (blank decisions left out); one error names every bad cell by the sheet's row and column."""
    frame = read_table(path)
    for column in ("row_id", "Sentence", "given_label", DECISION_COLUMN):
        require_column(frame, column, path, f"(the review sheet's '{column}' column)")
    suggested = frame.get("suggested_label", [None] * len(frame))
    records, problems = [], []
    cells = zip(frame["row_id"], frame["Sentence"], frame["given_label"], frame[DECISION_COLUMN], suggested)
    for i, (row_id, text, given, decision, proposal) in enumerate(cells):
        action, label, problem = parse_decision(decision, proposal, schema)
        number = _as_row_id(row_id)
        if problem:
            problems.append(f"  {path}, {row_name(path, i)}, column '{DECISION_COLUMN}': {problem}")
        elif action is not None and number is None:
            problems.append(f"  {path}, {row_name(path, i)}, column 'row_id': {row_id!r} is not a row number")
        elif action is not None:
            records.append((row_name(path, i), number, clean_text(text), parse_label(given, schema)[0], action, label))
    _raise_listed(problems, f"invalid decision(s) in {path}", "Fix these cells and run again; nothing was written.")
    # object columns: a label id stays an int (or None), never a float with NaN
    columns = ["sheet_row", "row_id", "text", "given_label", "action", "new_label"]
    return pd.DataFrame(records, columns=columns, dtype=object)


def _as_row_id(value) -> int | None:
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer) or (isinstance(value, float | np.floating) and float(value).is_integer()):
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
    """The labeled table with the decisions applied (dropped rows removed) and the log: a line per reviewed row and
    per exact copy of its text, since training merges copies and drops copies whose labels disagree."""
    texts = [clean_text(t) for t in frame[text_column]]
    labels = [parse_label(v, schema)[0] for v in frame[label_column]]
    checked = _checked_decisions(decisions, texts, labels, schema, source, header_row)
    copies: dict[str, list[int]] = {}
    for position, text in enumerate(texts):
        copies.setdefault(text, []).append(position)
    result, log, dropped = frame.copy(), [], set()
    as_cell = label_cell_writer(frame[label_column], schema)  # names stay names, ids stay ids
    for row_id, (action, new_label, sheet_row) in sorted(checked.items()):
        for position in copies[texts[row_id]]:
            old = schema.names[labels[position]] if labels[position] is not None else None
            new, change = old, "none"  # keep
            if action == "drop":
                new, change = None, "row removed"
                dropped.add(position)
            elif action == "relabel":
                new = schema.names[new_label]
                if labels[position] != new_label:
                    change = "relabeled"
                    result.iloc[position, result.columns.get_loc(label_column)] = as_cell(new_label)
            note = "" if position == row_id else f"exact copy of row_id {row_id}"
            row = row_name(source, position, header_row)
            log.append((position, row, texts[position], old, new, action, change, sheet_row, note))
    columns = ["row_id", "row", "text", "old_label", "new_label", "decision", "change", "review_sheet_row", "note"]
    return result.drop(index=result.index[sorted(dropped)]).reset_index(drop=True), pd.DataFrame(log, columns=columns)


def _checked_decisions(
    decisions: pd.DataFrame, texts: list[str], labels: list, schema: LabelSchema, source: Path, header_row: int
) -> dict[int, tuple[str, int | None, str]]:
    """Each reviewed row_id's (action, new label, review sheet row), once every decision is checked against the file:
    one error lists every decision that does not fit it (row gone, text or label changed), and nothing is applied."""
    problems, seen = [], {}
    for record in decisions.itertuples(index=False):
        row = row_name(source, record.row_id, header_row)
        if not 0 <= record.row_id < len(texts):
            problem = f"not a row of {source} (it has rows 0..{len(texts) - 1})"
        elif texts[record.row_id] != record.text:
            problem = (
                f"the text differs from {source}, {row} ({texts[record.row_id][:30]!r} vs {record.text[:30]!r}); "
                "was the file changed since the review?"
            )
        elif record.given_label is not None and labels[record.row_id] != record.given_label:
            current = labels[record.row_id]
            problem = (
                f"{source}, {row} now has label {schema.names[current] if current is not None else 'none'}, not the "
                f"reviewed {schema.names[int(record.given_label)]}; was the file changed since the review?"
            )
        elif record.row_id in seen and seen[record.row_id][:2] != (record.action, record.new_label):
            problem = f"contradicts the decision in review sheet {seen[record.row_id][2]}"
        else:
            seen[record.row_id] = (record.action, record.new_label, record.sheet_row)
            continue
        problems.append(f"  review sheet {record.sheet_row}, row_id {record.row_id}: {problem}")
    _raise_listed(problems, f"decision(s) that cannot be applied to {source}", "Nothing was written.")
    return seen
