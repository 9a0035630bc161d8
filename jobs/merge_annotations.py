"""Check a filled-in annotation sheet and merge it into the training data as a new file.

    python jobs/merge_annotations.py --annotations to_annotate.xlsx --existing data/labeled.xlsx \
        --output data/labeled_round2.xlsx

The sheet is validated like training data (every bad label is named by file, row and column); rows still without
a label are listed and skipped. Annotated texts already in the training file (same text after normalisation) are
skipped when the labels agree; when they disagree the pair goes to `<output>_conflicts.csv` and the new label is
left out, unless --prefer new, which relabels the existing copies instead. The output keeps every column of the
existing file in place (show, annotator, dates, a custom --text_column); new rows fill the text, the label and
the columns the sheet shares with it. Every row records how it was chosen in the column `selection`: 'original'
(in the training file before), 'random' or 'uncertainty' (from the sheet's own `selection` column, or from its
make-up for older sheets), 'unknown' for a sheet made by hand; analyze_labels measures the confusion rates only on
original and random rows. The original training file is replaced only when --output names it and
--overwrite is given, and then a timestamped backup copy is written first. Next to the output:
`<output>_merge_issues.csv` (every annotation row not added, and why) and `<output>_merge_summary.json`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from weibolabel.data.labeled import load_labeled
from weibolabel.data.tables import read_table, write_table
from weibolabel.review.annotation import (
    check_destination,
    merge_annotations,
    read_annotations,
    sheet_schema,
    workbook_sheets,
)
from weibolabel.run.config import option, parse_config
from weibolabel.util.errors import UserError, exit_status
from weibolabel.util.files import atomic_path, backup_copy, write_json

WRITABLE = (".xlsx", ".csv", ".parquet")


@dataclass(frozen=True)
class MergeConfig:
    """Merge a filled-in annotation sheet into a labeled training file."""

    annotations: str | None = option(None, "The filled-in .xlsx (required).")
    existing: str | None = option(None, "The current labeled training file (required).")
    output: str | None = option(
        None, "The combined .xlsx, .csv or .parquet (default: <existing>_merged beside it, same format)."
    )
    text_column: str = option("Sentence", "Text column of the existing file.")
    label_column: str = option("Label", "Label column of the existing file.")
    sheet: str | None = option(None, "Sheet of an .xlsx existing file (default: the first).")
    header_row: int = option(1, "Spreadsheet row (1 = first) of the column names in the existing file.")
    encoding: str | None = option(None, "Encoding of .csv inputs (default: detect).")
    labels: str | None = option(
        None, "YAML/JSON label schema (default: the annotation file's 'labels' sheet, else the four)."
    )
    prefer: str = option(
        "existing", "Label kept when an annotation contradicts the existing file.", choices=["existing", "new"]
    )
    overwrite: bool = option(
        False, "Replace an existing output file; when --output is --existing, a backup is written first."
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_config(MergeConfig, argv, description=__doc__)
    return exit_status(lambda: merge(config))


def merge(config: MergeConfig) -> None:
    # 1. Where things go: a new file by default; the original only when asked twice (--output and --overwrite).
    for name in ("annotations", "existing"):
        if not getattr(config, name):
            raise UserError(f"--{name} is required (see --help).")
    annotations, existing = Path(config.annotations), Path(config.existing)
    same_format = existing.suffix.lower() if existing.suffix.lower() in WRITABLE else ".xlsx"
    output = Path(config.output) if config.output else existing.with_name(f"{existing.stem}_merged{same_format}")
    if output.suffix.lower() not in WRITABLE:
        raise UserError(f"--output must end in {', '.join(WRITABLE)}, got {output}.")
    stem = output.with_suffix("")
    beside = ["conflicts.csv", "merge_issues.csv", "merge_summary.json"]
    reads = {"--annotations": annotations, "--existing": existing, "--labels": config.labels}
    replaces_original = check_destination("merge_annotations", output, beside, reads, "--existing", config.overwrite)
    if not annotations.is_file():
        raise UserError(f"Annotation file not found: {annotations}")

    # 2. Both files are validated the way training validates them; errors name file, row and column.
    schema = sheet_schema(annotations, config.labels)
    new_rows, issues = read_annotations(annotations, schema, encoding=config.encoding)
    where = {"sheet": config.sheet, "encoding": config.encoding, "header_row": config.header_row}
    columns = {"text_column": config.text_column, "label_column": config.label_column}
    load_labeled(existing, schema, **columns, **where)
    existing_frame = read_table(existing, **where)
    # The output holds the rows read: say what of the existing file is not carried over.
    sheets = workbook_sheets(existing)
    other_sheets = [name for name in sheets if name != (config.sheet or sheets[0])] if sheets else []

    # 3. New texts are added; known ones skipped; contradictions reported (and resolved only by --prefer new).
    combined, conflicts, counts = merge_annotations(existing_frame, new_rows, schema, **columns, prefer=config.prefer)

    # 4. Written under a temporary name and checked with the training loader before it replaces anything; the
    # original, if it is the one replaced, is copied aside first.
    output.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    with atomic_path(output) as tmp:
        write_table(combined, tmp, name=output)
        try:
            check = load_labeled(tmp, schema, **columns)
        except UserError as error:  # it names the temporary file, which the user never sees: name the output
            raise UserError(
                f"The merged file would not load for training: {str(error).replace(str(tmp), str(output))}"
            ) from None
        if replaces_original:
            backup = backup_copy(existing)
    write_table(conflicts, f"{stem}_conflicts.csv")
    write_table(issues, f"{stem}_merge_issues.csv")
    summary = {
        "annotations": str(annotations),
        "existing": str(existing),
        "output": str(output),
        "backup_of_existing": str(backup) if backup else None,
        "annotation_rows": len(read_table(annotations, encoding=config.encoding)),
        "annotated_valid": len(new_rows),
        "not_labeled_skipped": int((issues["issue"] == "no label given").sum()),
        "other_annotation_rows_dropped": int((issues["issue"] != "no label given").sum()),
        **counts,
        "prefer": config.prefer,
        "existing_rows": len(existing_frame),
        "output_rows": len(combined),
        "output_columns": [str(c) for c in combined.columns],
        "output_class_counts": check.counts["class_counts"],
    }
    write_json(Path(f"{stem}_merge_summary.json"), summary)
    resolution = "resolved in favour of the new label" if config.prefer == "new" else "left out"
    # Every sheet row is counted once: added, no label, already known, conflict, or dropped within the sheet.
    print(
        f"wrote {output}: {summary['existing_rows']} existing + {counts['added']} new rows (of the sheet's "
        f"{summary['annotation_rows']} rows: {summary['not_labeled_skipped']} without a label skipped, "
        f"{counts['already_known']} already known, {counts['conflicts']} conflicts {resolution} -> "
        f"{stem}_conflicts.csv, {summary['other_annotation_rows_dropped']} dropped for empty texts, duplicates or "
        f"conflicting labels within the sheet; the skipped and dropped rows, and why: {stem}_merge_issues.csv); "
        f"classes {check.counts['class_counts']}"
    )
    chosen = ", ".join(f"{how} {count}" for how, count in counts["added_by_selection"].items())
    print(f"rows added by how they were chosen: {chosen}")
    if counts["columns_added"]:
        print(f"columns only the annotation sheet had, added at the end: {counts['columns_added']}")
    if other_sheets:
        print(f"note: only one sheet of {existing} was merged; its other sheets {other_sheets} are not in {output}")
    if config.header_row > 1:
        print(f"note: the rows of {existing} above its header (row {config.header_row}) are not in {output}")
    if backup:
        print(f"backup of the original: {backup}")


if __name__ == "__main__":
    sys.exit(main())
