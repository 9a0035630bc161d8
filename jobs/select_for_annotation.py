"""Pick comments for the annotators (the least certain, or a uniform random sample) and write their spreadsheet.

    python jobs/select_for_annotation.py --input labels.parquet --k 200 --output to_annotate.xlsx \
        --exclude data/labeled.xlsx

The input is the labeling job's Parquet file; only rows with status 'ok' have probabilities and are candidates.
Uncertainty is the margin between the two most likely classes (default) or the entropy of the probabilities,
which are already temperature-calibrated when the labeling run was. With --method disagreement and --model RUN,
the most uncertain candidates by entropy are re-scored with each fold model of RUN separately and ranked by how
much the fold models disagree. A share of K is reserved for every predicted class, near-duplicates (same
normalised text) are picked once, and texts already in the --exclude training file are skipped. Sheet 1 has
`Sentence`, an empty `Label`, the model's guess for reference and `selection` (how the row was chosen, which
the merge carries into the training file); sheet 2, `labels`, has the label schema.

    python jobs/select_for_annotation.py --input labels.parquet --strategy random --k 300 --seed 0 --output gold.xlsx

draws instead a uniform random sample of the ok rows (reproducible by --seed), the gold sample that
`analyze_labels.py --gold_sample` turns into prediction-powered shares. Its sheet has `Sentence`, an empty `Label`
`row_id` (to join back) and `selection` ('random'), without the model's guess, which could anchor the annotators.
"""

from __future__ import annotations

import sys
from pathlib import Path

from weibolabel.data.tables import read_table, require_column
from weibolabel.review.annotation import (
    disagreement_pool,
    drop_known,
    read_labeled_parquet,
    select_for_annotation,
    select_random,
    uncertainty,
    write_annotation_sheet,
)
from weibolabel.run.config import SelectConfig, parse_config
from weibolabel.run.launch import setup_logging
from weibolabel.run.layout import check_outputs
from weibolabel.util.errors import UserError, exit_status


def main(argv: list[str] | None = None) -> int:
    config = parse_config(SelectConfig, argv, description=__doc__)
    setup_logging()  # quiets transformers' weight-loading bars when fold models are loaded
    return exit_status(lambda: select(config))


def select(config: SelectConfig) -> None:
    # 1. Inputs are checked before anything is scored.
    for option in ("input", "output"):
        if not getattr(config, option):
            raise UserError(f"--{option} is required (see --help).")
    output = Path(config.output)
    if output.suffix != ".xlsx":
        raise UserError(f"--output must end in .xlsx, got {output}.")
    reads = {"--input": config.input, "--exclude": config.exclude, "--model": config.model}
    check_outputs("select_for_annotation", reads=reads, writes={"--output": output})
    if output.exists() and not config.overwrite:
        raise UserError(f"{output} already exists; pass --overwrite to replace it.")
    if config.strategy == "random":
        if config.exclude:
            raise UserError(
                "--strategy random draws uniformly from every labeled row; --exclude would make the sample non-uniform "
                "and bias the shares estimated from it. Leave --exclude out."
            )
        frame, _, schema = read_labeled_parquet(config.input)
        picked = select_random(frame, config.k, config.seed)
        write_annotation_sheet(picked, schema, output, show_predictions=False, selection="random")
        print(
            f"wrote {output}: {len(picked)} of {len(frame)} labeled rows drawn uniformly at random (seed "
            f"{config.seed}); the model's labels are left out of the sheet so they cannot anchor the annotators"
        )
        return
    if config.method == "disagreement" and not config.model:
        raise UserError("--method disagreement needs --model RUN: the Parquet file holds only the ensemble's mean.")
    frame, probs, schema = read_labeled_parquet(config.input)
    num_ok = len(frame)
    if config.exclude:
        where = {"sheet": config.sheet, "header_row": config.header_row}
        known = read_table(config.exclude, encoding=config.encoding, **where)
        require_column(known, config.exclude_text_column, Path(config.exclude), "--exclude_text_column", **where)
        frame, probs = drop_known(frame, probs, known[config.exclude_text_column].tolist())
    confidence_all = frame["confidence"].median()

    # 2. Uncertainty of every candidate. Disagreement needs each fold model's own probabilities, which the
    # Parquet file does not keep, so only a pool of the distinct rows most uncertain by entropy is re-scored.
    if config.method == "disagreement":
        frame, scores = disagreement_pool(frame, probs, config.model, config.pool_factor * config.k, config.device)
    else:
        scores = uncertainty(probs, config.method)

    # 3. K rows: a quota per predicted class, then the most uncertain; one row per near-duplicate group.
    picked = select_for_annotation(frame, scores, config.k, config.class_quota)
    write_annotation_sheet(picked, schema, output)

    per_class = picked["label"].astype(int).value_counts()
    print(
        f"wrote {output}: {len(picked)} of {num_ok} labeled rows by {config.method} ({num_ok - len(frame)} not "
        f"considered (already labeled{' or outside the re-scored pool' if config.method == 'disagreement' else ''}), "
        f"{picked.attrs['counts']['near_duplicates_skipped']} near-duplicates skipped); predicted classes: "
        + ", ".join(f"{name} {int(per_class.get(i, 0))}" for i, name in enumerate(schema.names))
        + f"; median confidence {picked['confidence'].median():.3f} (all candidates {confidence_all:.3f})"
    )


if __name__ == "__main__":
    sys.exit(main())
