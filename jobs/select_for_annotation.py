"""Pick the comments the model is least sure about and write them as a spreadsheet for the annotators.

    python jobs/select_for_annotation.py --input labels.parquet --k 200 --output to_annotate.xlsx \
        --exclude data/labeled.xlsx

The input is the labeling job's Parquet file; only rows with status 'ok' have probabilities and are candidates.
Uncertainty is the margin between the two most likely classes (default) or the entropy of the probabilities,
which are already temperature-calibrated when the labeling run was. With --method disagreement and --model RUN,
the most uncertain candidates by entropy are re-scored with each fold model of RUN separately and ranked by how
much the fold models disagree. A share of K is reserved for every predicted class, near-duplicates (same
normalised text) are picked once, and texts already in the --exclude training file are skipped. Sheet 1 has
`Sentence`, an empty `Label` and the model's guess for reference; sheet 2, `labels`, has the label schema.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from weibolabel.annotation import (
    METHODS,
    drop_known,
    fold_disagreement,
    read_labeled_parquet,
    score_by_fold,
    select_for_annotation,
    uncertainty,
    write_annotation_sheet,
)
from weibolabel.config import parse_config
from weibolabel.data import clean_text, group_key, read_table, require_column
from weibolabel.errors import UserError
from weibolabel.runs import setup_logging


@dataclass(frozen=True)
class SelectConfig:
    """Uncertainty sampling of a labeled corpus for the next round of annotation."""

    input: str | None = field(default=None, metadata={"help": "The labeling job's Parquet output (required)."})
    output: str | None = field(default=None, metadata={"help": "The .xlsx to write for the annotators (required)."})
    k: int = field(default=200, metadata={"help": "Number of comments to select."})
    method: str = field(
        default="margin",
        metadata={
            "help": "Uncertainty: top-1 minus top-2 'margin', 'entropy', or fold-model 'disagreement'.",
            "choices": list(METHODS),
        },
    )
    model: str | None = field(
        default=None, metadata={"help": "Training run whose fold models re-score candidates (--method disagreement)."}
    )
    pool_factor: int = field(
        default=5, metadata={"help": "With --method disagreement: re-score the pool_factor x K most uncertain rows."}
    )
    class_quota: float = field(
        default=0.5, metadata={"help": "Share of K split evenly over the predicted classes (at least one each)."}
    )
    exclude: str | None = field(
        default=None, metadata={"help": "A labeled training file; its texts (and near-copies) are not selected."}
    )
    exclude_text_column: str = field(default="Sentence", metadata={"help": "Text column of the --exclude file."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing --output."})


def main(argv: list[str] | None = None) -> int:
    config = parse_config(SelectConfig, argv, description=__doc__)
    setup_logging()  # quiets transformers' weight-loading bars when fold models are loaded
    try:
        select(config)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def select(config: SelectConfig) -> None:
    # 1. Inputs are checked before anything is scored.
    for option in ("input", "output"):
        if not getattr(config, option):
            raise UserError(f"--{option} is required (see --help).")
    output = Path(config.output)
    if output.suffix != ".xlsx":
        raise UserError(f"--output must end in .xlsx, got {output}.")
    if output.exists() and not config.overwrite:
        raise UserError(f"{output} already exists; pass --overwrite to replace it.")
    if config.method == "disagreement" and not config.model:
        raise UserError("--method disagreement needs --model RUN: the Parquet file holds only the ensemble's mean.")
    frame, probs, schema = read_labeled_parquet(config.input)
    num_ok = len(frame)
    if config.exclude:
        known = read_table(config.exclude)
        require_column(known, config.exclude_text_column, Path(config.exclude), "--exclude_text_column")
        frame, probs = drop_known(frame, probs, known[config.exclude_text_column].tolist())
    confidence_all = frame["confidence"].median()

    # 2. Uncertainty of every candidate. Disagreement needs each fold model's own probabilities, which the
    # Parquet file does not keep, so only a pool of the distinct rows most uncertain by entropy is re-scored.
    if config.method == "disagreement":
        entropy_rank = pd.Series(uncertainty(probs, "entropy")).sort_values(ascending=False, kind="stable")
        groups = pd.Series([group_key(clean_text(t)) for t in frame["text"]])
        pool = entropy_rank.index[~groups[entropy_rank.index].duplicated()][: config.pool_factor * config.k]
        frame, probs = frame.iloc[pool].reset_index(drop=True), probs[pool]
        scores = fold_disagreement(score_by_fold(config.model, frame["text"].tolist()))
    else:
        scores = uncertainty(probs, config.method)

    # 3. K rows: a quota per predicted class, then the most uncertain; one row per near-duplicate group.
    picked = select_for_annotation(frame, scores, config.k, config.class_quota)
    write_annotation_sheet(picked, schema, output)

    counts = picked.attrs["counts"]
    per_class = picked["label"].astype(int).value_counts()
    print(
        f"wrote {output}: {len(picked)} of {num_ok} labeled rows by {config.method} "
        f"({num_ok - len(frame) if config.method != 'disagreement' else num_ok - counts['candidates']} not considered"
        f" (already labeled{' or outside the re-scored pool' if config.method == 'disagreement' else ''}), "
        f"{counts['near_duplicates_skipped']} near-duplicates skipped); predicted classes: "
        + ", ".join(f"{name} {int(per_class.get(i, 0))}" for i, name in enumerate(schema.names))
        + f"; median confidence {picked['confidence'].median():.3f} (all candidates {confidence_all:.3f})"
    )


if __name__ == "__main__":
    sys.exit(main())
