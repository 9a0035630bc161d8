"""What is annotating more worth, and does choosing uncertain comments beat choosing at random? A simulation on
labels we already have.

    python jobs/simulate_active_learning.py --run runs/cv --output_dir runs/cv/active_learning
    python jobs/simulate_active_learning.py --data data/labeled.xlsx --seed_size 40 --batch_size 20 --seeds 0 1 2

For every fold (a run's own folds.csv with --run, or stratified grouped folds of --data), the fold's test part is
held out and its training part becomes the pool: labels hidden, revealed only when a strategy picks a row. From a
stratified seed set of --seed_size labels, each round trains the learner on the labels revealed so far, scores it
on the test part, and reveals --batch_size more, chosen by `random`, `margin`, `entropy` or `disagreement` through
the annotation loop's own selection (class quota, near-duplicates picked once). Repeated for each of --seeds (the
seed set, random choices and committee splits change with it).

The learner is the TF-IDF + logistic-regression baseline (seconds per round on CPU), not the encoder: retraining
BERT every round is far too slow without GPUs, and the ranking of strategies can differ between learners.

Writes into --output_dir: simulation.csv (every strategy, seed, fold and round), simulation_summary.csv (mean, std
and range over seeds of the mean over folds), active_learning.png, active_learning.md (labels each strategy needs
to come within --tolerance of the full-data macro-F1) and config.yaml.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from weibolabel.data.labeled import load_labeled
from weibolabel.data.labels import Label, LabelSchema, load_label_schema
from weibolabel.data.tables import write_table
from weibolabel.run.config import SimulateActiveLearningConfig, parse_config, write_config
from weibolabel.run.layout import RunLayout, check_outputs, claim_output_directory
from weibolabel.util.errors import UserError, exit_status
from weibolabel.util.files import write_text
from weibolabel.util.markdown import frame_table


def main(argv: list[str] | None = None) -> int:
    config = parse_config(SimulateActiveLearningConfig, argv, description=__doc__)
    return exit_status(lambda: simulate(config))


def load_rows(config: SimulateActiveLearningConfig) -> tuple[list[str], np.ndarray, np.ndarray, list[str], str]:
    """Texts, labels, the fold of each row, the label names, and where they came from."""
    if config.run:
        run, layout = Path(config.run), RunLayout(config.run)
        if not layout.folds_csv.is_file() or not layout.identity.is_file():
            raise UserError(f"{run} is not a training run directory of jobs/train.py (no folds.csv).")
        folds = pd.read_csv(layout.folds_csv, keep_default_na=False)
        names = json.loads(layout.identity.read_text())["labels"]
        labels = folds["label"].to_numpy(dtype=np.int64)
        return folds["text"].astype(str).tolist(), labels, folds["fold"].to_numpy(dtype=np.int64), names, str(run)
    if not config.data:
        raise UserError("Pass --data (a labeled file) or --run (a training run directory); see --help.")
    schema = load_label_schema(config.labels)
    where = {key: getattr(config, key) for key in ("text_column", "label_column", "sheet", "encoding", "header_row")}
    data = load_labeled(config.data, schema, **where)
    from weibolabel.data.folds import make_folds  # scikit-learn (see simulate()): not on --help's path

    labels = data.rows["label"].to_numpy(dtype=np.int64)
    fold_of_row = make_folds(labels, data.rows["group"].tolist(), config.num_folds, config.fold_seed, schema.names)
    return data.rows["text"].tolist(), labels, fold_of_row, schema.names, config.data


def simulate(config: SimulateActiveLearningConfig) -> None:
    # 1. The labeled rows and their folds; the options checked before any fitting. scikit-learn and matplotlib
    # take seconds to import: after the options' and the data's errors.
    from weibolabel.review import active_learning as al

    unknown = sorted(set(config.strategies) - set(al.STRATEGIES))
    if unknown or not config.strategies:
        raise UserError(f"--strategies {unknown or '(none)'}: choose from {list(al.STRATEGIES)}.")
    for option in ("seed_size", "batch_size", "committee_size"):
        if getattr(config, option) < (2 if option == "committee_size" else 1):
            raise UserError(f"--{option} is too small ({getattr(config, option)}).")
    if not config.seeds:
        raise UserError("--seeds needs at least one seed.")
    out = Path(config.output_dir)
    reads = {"--data": config.data, "--run": config.run, "--labels": config.labels}
    check_outputs("simulate_active_learning", reads=reads, output_dir=out)
    texts, labels, fold_of_row, names, source = load_rows(config)
    from weibolabel.training.baseline import DESCRIPTION as LEARNER
    from weibolabel.util import plots

    LabelSchema(tuple(Label(i, name) for i, name in enumerate(names)))  # names valid and unique
    claim_output_directory(out, "simulate_active_learning")
    write_config(config, out / "config.yaml")

    # 2. The target: the learner on every fold's whole training part.
    full_score = al.full_data_score(texts, labels, fold_of_row, names)
    target = full_score - config.tolerance

    # 3. Every strategy, seed and fold: seed set, then rounds of train -> score -> reveal a batch.
    options = ("seed_size", "batch_size", "max_labels", "class_quota", "committee_size")
    common = {"texts": texts, "labels": labels, "names": names, **{key: getattr(config, key) for key in options}}
    started, records, folds = time.monotonic(), [], np.unique(fold_of_row)
    for strategy in config.strategies:
        for seed in config.seeds:
            for fold in folds:
                train, test = np.flatnonzero(fold_of_row != fold), np.flatnonzero(fold_of_row == fold)
                rounds = al.simulate_fold(
                    strategy=strategy, train_index=train, test_index=test, seed=seed * 1000 + int(fold), **common
                )
                records += [{**record, "seed": seed, "fold": int(fold)} for record in rounds]
        print(f"{strategy}: {len(config.seeds)} seed(s) x {len(folds)} folds done")

    # 4. Tables, the plot and the summary page.
    table = pd.DataFrame(records)
    write_table(table, out / "simulation.csv")
    summary = al.summarize(table)
    write_table(summary, out / "simulation_summary.csv")
    needed = al.labels_needed(summary, target)
    title = f"Simulated annotation loop ({LEARNER.split(' (')[0]} learner)"
    plots.plot_active_learning(summary, full_score, config.tolerance, out / "active_learning.png", title)
    page = render(config, source, len(texts), full_score=full_score, target=target, summary=summary, needed=needed)
    write_text(out / "active_learning.md", page)
    for strategy, count in needed.items():
        reached = f"{count:.0f} labels" if count is not None else "not reached"
        print(f"{strategy}: macro-F1 >= {target:.3f} (full data {full_score:.3f} - {config.tolerance:g}): {reached}")
    print(f"wrote {out / 'active_learning.md'} ({time.monotonic() - started:.0f} s)")


def render(config, source, num_rows, *, full_score, target, summary, needed) -> str:
    from weibolabel.training.baseline import DESCRIPTION as LEARNER

    most = summary["num_labels"].max()
    final = summary.sort_values("round").groupby("strategy").tail(1).set_index("strategy")
    rows = pd.DataFrame(
        {
            "strategy": list(needed),
            f"labels to reach {target:.3f}": [f"{n:.0f}" if n is not None else "not reached" for n in needed.values()],
            "macro-F1 at the last round": [
                f"{final.loc[s, 'macro_f1_mean']:.3f} ± {final.loc[s, 'macro_f1_std']:.3f}" for s in needed
            ],
        }
    )
    checkpoints = sorted({*summary["round"].quantile([0, 0.25, 0.5, 0.75]).round().astype(int)})
    grid = summary[summary["round"].isin(checkpoints)].assign(
        cell=lambda f: f["macro_f1_mean"].map("{:.3f}".format) + " ± " + f["macro_f1_std"].map("{:.3f}".format)
    )
    curve = grid.pivot(index="round", columns="strategy", values="cell")[list(needed)].reset_index()
    curve.insert(1, "labels", grid.groupby("round")["num_labels"].mean().round().astype(int).to_numpy())
    lines = [
        f"# Simulated annotation loop: {source}",
        "",
        f"**Learner: {LEARNER}** (the project's baseline), not the fine-tuned encoder, which is far too slow to "
        "retrain every round on CPU. How much a strategy helps can differ for the encoder.",
        "",
        f"{num_rows} labeled rows. For each fold, the test part is held out and the training part is the pool; "
        f"from a stratified seed set of {config.seed_size} labels, each round trains the learner, scores it on the "
        f"test part and reveals {config.batch_size} more rows chosen by the strategy (class quota "
        f"{config.class_quota}, near-duplicates once, as jobs/select_for_annotation.py), up to "
        f"{config.max_labels or 'the whole training part'} (at most {most:.0f} labels). `disagreement` trains "
        f"{config.committee_size} models on k-fold parts of the labels revealed so far (as a run's fold models). "
        f"Curves: mean over folds per seed, then mean ± std over {len(config.seeds)} seed(s).",
        "",
        f"With all labels of each fold's training part the learner reaches macro-F1 **{full_score:.3f}** "
        f"(mean over folds); the target is {target:.3f} (minus {config.tolerance:g}).",
        "",
        frame_table(rows),
        "",
        "![active learning](active_learning.png)",
        "",
        "Macro-F1 (mean ± std over seeds) at some rounds:",
        "",
        frame_table(curve),
        "",
        "Every round of every fold and seed: `simulation.csv`; the curves: `simulation_summary.csv`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
