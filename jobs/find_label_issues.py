"""Rank the hand labels that a cross-validated training run finds least plausible, for people to review.

    python jobs/find_label_issues.py --run runs/cv --output_dir review/

Every labeled row has out-of-fold probabilities from the one fold model that did not train on it
(<run>/oof_predictions.parquet). Confident learning (Northcutt et al., JAIR 2021; cleanlab's
`filter.find_label_issues`) flags rows whose given label is implausible under those probabilities, with per-class
thresholds instead of a hand-set cut-off; they are ranked by the probability of their given label, lowest first.
Writes into --output_dir: label_issues.csv (row_id, text, given_label, suggested_label, suggested_probability,
rank; row_id is the 0-based row of the training file, as in the labeling job's output), label_issues.xlsx (the
same rows for review, with an empty Decision column; apply it with jobs/apply_label_review.py),
noise_estimate.csv (the estimated share of wrong labels per class) and label_issues.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from weibolabel.data.tables import write_table
from weibolabel.review import label_issues
from weibolabel.run.config import LabelIssuesConfig, parse_config, write_config
from weibolabel.run.layout import RunLayout, check_outputs, claim_output_directory
from weibolabel.util.errors import UserError, exit_status
from weibolabel.util.files import write_text
from weibolabel.util.markdown import frame_table


def main(argv: list[str] | None = None) -> int:
    config = parse_config(LabelIssuesConfig, argv, description=__doc__)
    return exit_status(lambda: find(config))


def find(config: LabelIssuesConfig) -> None:
    # 1. The run's out-of-fold probabilities: each row scored by a model that never saw it.
    if not config.run:
        raise UserError("--run is required: a finished training run directory of jobs/train.py.")
    run = Path(config.run)
    out = Path(config.output_dir) if config.output_dir else run / "review"
    check_outputs("find_label_issues", reads={"--run": run}, output_dir=out)
    rows, probs, schema, train_config = label_issues.read_run_predictions(run)
    claim_output_directory(out, "find_label_issues")

    # 2. Confident learning flags and ranks the suspicious rows; its confident joint estimates the noise per class.
    issues = label_issues.find_issues(rows, probs, schema, config.filter_by)
    noise = label_issues.estimate_noise(rows, probs, schema, issues)

    # 3. The ranked list, the review sheet in the annotators' format, the per-class estimate and a short report.
    write_table(issues, out / "label_issues.csv")
    label_issues.write_review_sheet(issues, schema, out / "label_issues.xlsx")
    write_table(noise, out / "noise_estimate.csv")
    write_config(config, out / "config.yaml")
    page = render(issues, noise, known_conflicts(run), run, train_config.get("data"), config.filter_by, len(rows))
    write_text(out / "label_issues.md", page)
    total = int(noise["estimated_errors"].sum())
    print(
        f"{len(issues)} of {len(rows)} labeled rows flagged for review -> {out / 'label_issues.xlsx'}; "
        f"estimated wrong labels: {total} ({total / len(rows):.1%}; an estimate, see {out / 'label_issues.md'})"
    )


def known_conflicts(run: Path) -> pd.DataFrame:
    """Rows training dropped because copies of one text carry different labels: not scored, but surely one wrong."""
    path = RunLayout(run).data_issues
    if not path.is_file():
        return pd.DataFrame(columns=["row", "issue"])
    issues = pd.read_csv(path, keep_default_na=False)
    return issues[issues["issue"].str.contains("conflicting labels")][["row", "issue"]]


def render(issues, noise, known, run, data, filter_by, num_rows) -> str:
    shown = issues.head(30).assign(text=issues["text"].head(30).str.slice(0, 40))
    lines = [
        f"# Likely label errors: {run}",
        "",
        f"{len(issues)} of the run's {num_rows} labeled rows are flagged by confident learning "
        f"(cleanlab `filter.find_label_issues`, `filter_by={filter_by}`) on the out-of-fold probabilities, ranked by "
        f"the probability of their given label, lowest first. `row_id` is the 0-based row of "
        f"`{data}` (header excluded). The model can be the one that is wrong: a flag asks for a "
        "second look, it is not a verdict.",
        "",
        "## Estimated share of wrong labels per class",
        "",
        "An **estimate**, not a count: cleanlab's calibrated confident joint, built from the same out-of-fold "
        "probabilities, so it is only as good as the model, and it assumes errors depend on the true class, not on "
        "the comment. With a weak model (few labels, a model trained from scratch) it overstates the noise.",
        "",
        frame_table(noise),
        "",
        "## Most suspicious rows",
        "",
        frame_table(shown[["rank", "row_id", "text", "given_label", "suggested_label", "suggested_probability"]]),
        "",
    ]
    if len(known):
        lines += [
            "## Known conflicts (not scored)",
            "",
            "Training dropped these rows because copies of one text carry different labels (`data_issues.csv`); "
            "they have no out-of-fold prediction, but one label of each pair is wrong.",
            "",
            frame_table(known),
            "",
        ]
    lines += [
        "## Files",
        "",
        "- `label_issues.csv`: every flagged row (also `given_label_probability` and the row's `fold`)",
        "- `label_issues.xlsx`: the same for review; fill in `Decision`, then run `jobs/apply_label_review.py`",
        "- `noise_estimate.csv`: the table above",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
