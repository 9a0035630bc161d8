"""Learning curves under a training run's own folds: nested, stratified subsamples of each fold's training part,
scored on the untouched test fold, for the encoder and the TF-IDF baseline."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from weibolabel.data.labels import Label, LabelSchema
from weibolabel.run.config import TrainConfig
from weibolabel.run.layout import RunLayout
from weibolabel.stats.metrics import classification_metrics
from weibolabel.training.baseline import tfidf_logreg_probs
from weibolabel.training.fold import Recipe
from weibolabel.util.errors import UserError
from weibolabel.util.markdown import markdown_table


def read_run(run: Path) -> tuple[TrainConfig, LabelSchema, pd.DataFrame]:
    """A training run's settings (the TrainConfig it ran with), its label schema and its folds.csv: the rows and
    folds exactly as it used them (jobs/learning_curve.py has checked that the files are there)."""
    layout = RunLayout(run)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    train_config = TrainConfig(**{k: v for k, v in yaml.safe_load(layout.config.read_text()).items() if k in known})
    names = json.loads(layout.identity.read_text())["labels"]
    schema = LabelSchema(tuple(Label(i, name) for i, name in enumerate(names)))
    return train_config, schema, pd.read_csv(layout.folds_csv, keep_default_na=False)


def subsample(train_index: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A stratified share of `train_index`, the same seeded order for every fraction, so smaller samples are
    subsets of larger ones (the curve then shows more data, not other data) and 1.0 gives all of it, sorted."""
    if not 0 < fraction <= 1:
        raise UserError(f"Fractions must lie in (0, 1], got {fraction}.")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels[train_index]):
        members = rng.permutation(train_index[labels[train_index] == label])
        chosen.append(members[: max(2, math.ceil(fraction * len(members)))])  # two per class keep a validation split
    return np.sort(np.concatenate(chosen))


def baseline_cells(
    *, recipe: Recipe, texts: list[str], labels: np.ndarray, fold_of_row: np.ndarray, grid: list[tuple], names
) -> list[dict]:
    """The TF-IDF baseline's cell for every (fold, fraction) of `grid`."""
    cells = []
    for fold, fraction in grid:
        train_index = subsample(np.flatnonzero(fold_of_row != fold), labels, fraction, recipe.seed + fold)
        test_index = np.flatnonzero(fold_of_row == fold)
        probs = tfidf_logreg_probs(
            [texts[i] for i in train_index],
            labels[train_index],
            [texts[i] for i in test_index],
            len(names),
            recipe.class_weighted_loss,
        )
        metrics = classification_metrics(labels[test_index], probs.argmax(axis=1), names)
        cells.append(cell_record("baseline", fraction, {"fold": fold, "num_train": len(train_index), "test": metrics}))
    return cells


def cell_record(model: str, fraction: float, record: dict, source: str = "trained") -> dict:
    """One row of learning_curve.csv, from a fold's record (fold_result.json's keys). An encoder's training rows
    include the validation part carved from them; source "run" marks the run's own fold result, used at 100%."""
    return {
        "model": model,
        "fraction": fraction,
        "fold": record["fold"],
        "num_train": record["num_train"] + record.get("num_validation", 0),
        **{key: record["test"][key] for key in ("accuracy", "macro_f1", "weighted_f1")},
        "best_epoch": record.get("best_epoch"),
        "source": source,
    }


def summarize(cells: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample standard deviation over folds per model and fraction."""
    summary = cells.groupby(["model", "fraction"], sort=True).agg(
        folds=("fold", "count"),
        num_train_mean=("num_train", "mean"),
        accuracy_mean=("accuracy", "mean"),
        accuracy_std=("accuracy", "std"),
        macro_f1_mean=("macro_f1", "mean"),
        macro_f1_std=("macro_f1", "std"),
    )
    return summary.fillna({"accuracy_std": 0.0, "macro_f1_std": 0.0}).reset_index()


def render_markdown(summary: pd.DataFrame, recipe: Recipe, num_folds: int, run: Path, reused_full: bool) -> str:
    lines = [
        f"# Learning curve: {run}",
        "",
        f"Macro-F1 on each test fold of the run's {num_folds} folds when training on a stratified, seeded "
        "share of that fold's training part (smaller shares are subsets of larger ones; the validation part that "
        f"picks the best epoch is carved from the share, {recipe.validation_fraction:.0%} of it, more of a share too "
        "small to split that finely). The encoder uses "
        f"the run's settings (`{recipe.model_name_or_path}`, {recipe.num_epochs} epochs, learning rate "
        f"{recipe.learning_rate}); the baseline is the run's TF-IDF + logistic regression. ± is the sample "
        "standard deviation over folds. The number of epochs is fixed, so a smaller share also gets fewer "
        "optimisation steps; a slow learner (a model trained from scratch, say) is held back at small shares by both.",
        "",
    ]
    if reused_full:
        lines += [
            "At 100% the encoder's scores are the run's own fold results (`fold_k/fold_result.json`): the training "
            "rows, validation split and seed are exactly those of the run, so retraining would repeat it.",
            "",
        ]
    rows = [
        [
            row.model,
            f"{row.fraction:.0%}",
            f"{row.num_train_mean:.0f}",
            f"{row.accuracy_mean:.3f} ± {row.accuracy_std:.3f}",
            f"{row.macro_f1_mean:.3f} ± {row.macro_f1_std:.3f}",
        ]
        for row in summary.itertuples(index=False)
    ]
    lines.append(markdown_table(["Model", "Share", "Mean training rows", "Accuracy", "Macro-F1"], rows))
    lines += ["", "![learning curve](learning_curve.png)", "", "Per fold: `learning_curve.csv`.", ""]
    return "\n".join(lines)
