"""Apply reviewed label decisions (a filled-in label_issues.xlsx) to the labeled training file, as a new file.

    python jobs/apply_label_review.py --review review/label_issues.xlsx --data data/labeled.xlsx \
        --output data/labeled_reviewed.xlsx

A Decision cell holds one of: empty (not reviewed: nothing changes), `keep` (the given label is right), `suggested`
(take the row's suggested_label), a label id or name (that label; read like training reads labels), or `drop`
(remove the row from the new file: for a comment no label fits). Keywords ignore case and surrounding spaces.
Decisions name rows by row_id, the 0-based row of the labeled file; a row_id outside the file, a text or given
label that no longer matches the file (it changed since the review), two different decisions for one row, or a
cell that is none of the above stops the job with every such row listed, and nothing is written. A decision
applies to every exact copy of the row's text (training merges copies and drops copies whose labels disagree).

The output keeps every column and row of the labeled file, in order (dropped rows aside), in the format its
suffix names; --data itself is replaced only when --output names it and --overwrite is given, and then after a
timestamped backup copy. Next to the
output: `<output>_review_log.csv` (every reviewed row and copy: old and new label, decision, change),
`<output>_review_dropped.csv` (dropped rows with all their columns, when any) and `<output>_review_summary.json`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from weibolabel.data.labeled import load_labeled
from weibolabel.data.tables import read_table, require_column, write_table
from weibolabel.review.annotation import check_destination, sheet_schema, workbook_sheets
from weibolabel.review.label_issues import apply_decisions, read_decisions
from weibolabel.run.config import ApplyReviewConfig, parse_config
from weibolabel.run.launch import now_utc
from weibolabel.util.errors import UserError, exit_status
from weibolabel.util.files import backup_copy, write_json


def main(argv: list[str] | None = None) -> int:
    config = parse_config(ApplyReviewConfig, argv, description=__doc__)
    return exit_status(lambda: apply_review(config))


def apply_review(config: ApplyReviewConfig) -> None:
    # 1. Both files exist; where the result goes (a new file by default, --data only with --overwrite) is settled
    # before anything is read.
    for option in ("review", "data"):
        if not getattr(config, option):
            raise UserError(f"--{option} is required (see --help).")
    review, data = Path(config.review), Path(config.data)
    if not review.is_file():
        raise UserError(f"Review file not found: {review}")
    if review.suffix.lower() not in (".xlsx", ".xlsm"):
        raise UserError(f"--review must be the reviewed .xlsx sheet of jobs/find_label_issues.py, got {review}.")
    output = Path(config.output) if config.output else data.with_name(f"{data.stem}_reviewed{data.suffix}")
    stem = output.with_suffix("")
    beside = ["review_log.csv", "review_dropped.csv", "review_summary.json"]
    reads = {"--review": config.review, "--data": data, "--labels": config.labels}
    replaces_data = check_destination("apply_label_review", output, beside, reads, "--data", config.overwrite)

    # 2. The schema (the review sheet's own, by default) and the labeled file, validated as training validates it.
    schema = sheet_schema(review, config.labels)
    where = {"sheet": config.sheet, "encoding": config.encoding, "header_row": config.header_row}
    frame = read_table(data, **where)
    for column, option in ((config.text_column, "--text_column"), (config.label_column, "--label_column")):
        require_column(frame, column, data, option, header_row=config.header_row, sheet=config.sheet)
    columns = {"text_column": config.text_column, "label_column": config.label_column}
    load_labeled(data, schema, **columns, **where)
    sheets = workbook_sheets(data)
    others = [name for name in sheets if name != (config.sheet or sheets[0])] if sheets else []
    if (others or config.header_row > 1) and replaces_data:
        lost = f"other sheets {others}" if others else f"rows above its header (row {config.header_row})"
        raise UserError(f"{data} has {lost} that a rewritten file would not keep; write a new file with --output.")

    # 3. Every decision is checked against the file before any is applied: all or nothing.
    decisions = read_decisions(review, schema)
    if decisions.empty:
        raise UserError(f"{review}: no row has a Decision yet; fill in the 'Decision' column first.")
    result, log = apply_decisions(frame, decisions, schema, **columns, source=data, header_row=config.header_row)
    dropped_ids = log.loc[log["change"] == "row removed", "row_id"].tolist()

    # 4. The backup (when --data itself is replaced), the new file, the log, the dropped rows in full and a summary.
    backup = backup_copy(data) if replaces_data else None
    write_table(result, output)
    write_table(log, f"{stem}_review_log.csv")
    if dropped_ids:
        write_table(frame.iloc[dropped_ids].assign(review_row_id=dropped_ids), f"{stem}_review_dropped.csv")
    changes = log["change"].value_counts()
    summary = {
        "review": str(review),
        "data": str(data),
        "output": str(output),
        "backup": str(backup) if backup else None,
        "decisions": len(decisions),
        "decisions_by_kind": {str(k): int(v) for k, v in decisions["action"].value_counts().items()},
        "rows_relabeled": int(changes.get("relabeled", 0)),
        "rows_removed": int(changes.get("row removed", 0)),
        "rows_in": len(frame),
        "rows_out": len(result),
        "time": now_utc(),
    }
    write_json(Path(f"{stem}_review_summary.json"), summary)
    backed_up = f" (backup: {backup})" if backup else ""
    if others:
        print(f"note: {output} holds the labeled sheet only, not the other sheets {others} of {data}")
    if config.header_row > 1:
        print(f"note: the rows of {data} above its header (row {config.header_row}) are not in {output}")
    print(
        f"wrote {output}{backed_up}: {summary['decisions']} decisions, {summary['rows_relabeled']} rows "
        f"relabeled, {summary['rows_removed']} removed, {len(frame)} -> {len(result)} rows; log: {stem}_review_log.csv"
    )


if __name__ == "__main__":
    sys.exit(main())
