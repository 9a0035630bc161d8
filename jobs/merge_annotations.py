"""Check a filled-in annotation sheet and merge it into the training data as a new file.

    python jobs/merge_annotations.py --annotations to_annotate.xlsx --existing data/labeled.xlsx \
        --output data/labeled_round2.xlsx

The sheet is validated like training data (every bad label is named by file, row and column); rows still without
a label are listed and skipped. Annotated texts already in the training file (same text after normalisation) are
skipped when the labels agree; when they disagree the pair goes to `<output>_conflicts.csv` and the new label is
left out, unless --prefer new, which relabels the existing copies instead. The original training file is never
written to unless --output names it. Next to the output: `<output>_merge_issues.csv` (every annotation row not
added, and why) and `<output>_merge_summary.json`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from weibolabel.annotation import existing_label_ids, merge_annotations, read_annotations, schema_from_sheet
from weibolabel.config import parse_config
from weibolabel.data import load_labeled, read_table
from weibolabel.errors import UserError
from weibolabel.labels import load_label_schema


@dataclass(frozen=True)
class MergeConfig:
    """Merge a filled-in annotation sheet into a labeled training file."""

    annotations: str | None = field(default=None, metadata={"help": "The filled-in .xlsx (required)."})
    existing: str | None = field(default=None, metadata={"help": "The current labeled training file (required)."})
    output: str | None = field(
        default=None, metadata={"help": "The combined .xlsx to write (default: <existing>_merged.xlsx beside it)."}
    )
    text_column: str = field(default="Sentence", metadata={"help": "Text column of the existing file."})
    label_column: str = field(default="Label", metadata={"help": "Label column of the existing file."})
    labels: str | None = field(
        default=None,
        metadata={"help": "YAML/JSON label schema (default: the annotation file's 'labels' sheet, else the four)."},
    )
    prefer: str = field(
        default="existing",
        metadata={
            "help": "Label kept when an annotation contradicts the existing file.",
            "choices": ["existing", "new"],
        },
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output file."})


def main(argv: list[str] | None = None) -> int:
    config = parse_config(MergeConfig, argv, description=__doc__)
    try:
        merge(config)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def merge(config: MergeConfig) -> None:
    # 1. Where things go: a new file by default; the original only when --output names it.
    for option in ("annotations", "existing"):
        if not getattr(config, option):
            raise UserError(f"--{option} is required (see --help).")
    annotations, existing = Path(config.annotations), Path(config.existing)
    output = Path(config.output) if config.output else existing.with_name(f"{existing.stem}_merged.xlsx")
    if output.suffix != ".xlsx":
        raise UserError(f"--output must end in .xlsx, got {output}.")
    explicit_original = config.output is not None and output.resolve() == existing.resolve()
    if output.exists() and not (config.overwrite or explicit_original):
        raise UserError(f"{output} already exists; pass --overwrite to replace it.")
    if not annotations.is_file():
        raise UserError(f"Annotation file not found: {annotations}")

    # 2. Both files are validated the way training validates them; errors name file, row and column.
    schema = load_label_schema(config.labels) if config.labels else schema_from_sheet(annotations)
    schema = schema or load_label_schema(None)
    new_rows, issues = read_annotations(annotations, schema)
    load_labeled(existing, schema, config.text_column, config.label_column)
    existing_frame = read_table(existing)

    # 3. New texts are added; known ones skipped; contradictions reported (and resolved only by --prefer new).
    combined, conflicts, counts = merge_annotations(
        existing_frame,
        existing_label_ids(existing_frame, config.label_column, schema),
        new_rows,
        schema,
        config.text_column,
        config.label_column,
        config.prefer,
    )

    # 4. Written under a temporary name and checked with the training loader before it replaces anything.
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.tmp.xlsx")
    combined.to_excel(tmp, index=False)
    try:
        check = load_labeled(tmp, schema)
    except UserError as error:
        tmp.unlink(missing_ok=True)
        raise UserError(f"The merged file would not load for training: {error}") from None
    tmp.replace(output)
    stem = output.with_suffix("")
    conflicts.to_csv(f"{stem}_conflicts.csv", index=False)
    issues.to_csv(f"{stem}_merge_issues.csv", index=False)
    summary = {
        "annotations": str(annotations),
        "existing": str(existing),
        "output": str(output),
        "annotation_rows": len(read_table(annotations)),
        "annotated_valid": len(new_rows),
        "not_labeled_skipped": int((issues["issue"] == "no label given").sum()),
        "other_annotation_rows_dropped": int((issues["issue"] != "no label given").sum()),
        **counts,
        "prefer": config.prefer,
        "existing_rows": len(existing_frame),
        "output_rows": len(combined),
        "output_class_counts": check.counts["class_counts"],
    }
    Path(f"{stem}_merge_summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    resolution = "resolved in favour of the new label" if config.prefer == "new" else "left out"
    print(
        f"wrote {output}: {summary['existing_rows']} existing + {counts['added']} new rows "
        f"({summary['not_labeled_skipped']} without a label skipped, {counts['already_known']} already known, "
        f"{counts['conflicts']} conflicts {resolution} -> {stem}_conflicts.csv); "
        f"classes {check.counts['class_counts']}"
    )


if __name__ == "__main__":
    sys.exit(main())
