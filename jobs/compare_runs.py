"""Is model A better than model B? Paired tests of training runs made on the same folds.

    python jobs/compare_runs.py runs/a runs/b [runs/c ...] --output_dir comparisons/ab

Runs whose folds differ (folds.csv: same rows, same fold each) are refused: a paired test needs both models scored
on the very same held-out rows. For every pair of runs, comparison.md and comparison.json give, per metric, the
mean over folds of the difference A - B with the corrected resampled t-test (Nadeau & Bengio 2003) and its 95%
interval, and McNemar's exact test on the out-of-fold predictions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from weibolabel.run.config import CompareConfig, parse_config
from weibolabel.run.layout import RunLayout, check_outputs, claim_output_directory, read_out_of_fold
from weibolabel.util.errors import UserError, exit_status
from weibolabel.util.files import write_json, write_text


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Leading arguments that are not options are the runs (the config parser has no positional arguments).
    if argv and not argv[0].startswith("-"):
        argv = ["--runs", *argv]
    config = parse_config(CompareConfig, argv, description=__doc__)
    return exit_status(lambda: compare(config))


def compare(config: CompareConfig) -> None:
    # 1. Two or more finished runs and somewhere to write.
    if len(config.runs) < 2:
        raise UserError("Give at least two run directories: compare_runs.py runs/a runs/b --output_dir DIR.")
    if not config.output_dir:
        raise UserError("--output_dir is required (see --help).")
    out = Path(config.output_dir)
    check_outputs("compare_runs", reads={"--runs": config.runs}, output_dir=out)
    for run in config.runs:
        RunLayout(run).require_finished()
    # scipy takes seconds to import: only once the options and runs are known good (their errors come at once).
    import pandas as pd

    from weibolabel.stats.comparison import compare_runs, comparison_markdown

    runs = []
    for run in map(Path, config.runs):
        layout = RunLayout(run)
        metrics, folds = json.loads(layout.metrics.read_text()), pd.read_csv(layout.folds_csv)
        runs.append({"path": run, "metrics": metrics, "folds": folds, "oof": read_out_of_fold(run)[0]})

    # 2. Same folds, then the paired tests for every pair.
    pairs = compare_runs(runs)

    # 3. comparison.json and comparison.md.
    claim_output_directory(out, "compare_runs")
    write_json(out / "comparison.json", {"runs": [str(r) for r in config.runs], "pairs": pairs})
    write_text(out / "comparison.md", comparison_markdown(pairs))
    print(f"wrote {out / 'comparison.md'} and comparison.json: {len(pairs)} pair(s) of runs")


if __name__ == "__main__":
    sys.exit(main())
