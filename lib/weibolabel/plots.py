"""PNG figures for the report: learning curves per fold and the confusion matrix summed over folds."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def plot_learning_curves(histories: dict[int, list[dict]], best_epochs: dict[int, int], path: Path) -> None:
    figure, (loss_axis, f1_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for fold, history in sorted(histories.items()):
        epochs = [record["epoch"] for record in history]
        line = loss_axis.plot(epochs, [record["train_loss"] for record in history], marker="o", label=f"fold {fold}")
        f1_axis.plot(epochs, [record["val_macro_f1"] for record in history], marker="o", color=line[0].get_color())
        best = best_epochs[fold]
        f1_axis.scatter([best + 1], [history[best]["val_macro_f1"]], s=120, facecolors="none", edgecolors="black")
    loss_axis.set(title="Training loss", xlabel="epoch", ylabel="cross-entropy")
    f1_axis.set(title="Validation macro-F1 (circle: epoch kept)", xlabel="epoch", ylabel="macro-F1", ylim=(0, 1))
    loss_axis.legend(fontsize=8)
    for axis in (loss_axis, f1_axis):
        axis.grid(alpha=0.3)
        axis.xaxis.get_major_locator().set_params(integer=True)
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


def plot_confusion_matrix(matrix: list[list[int]], names: list[str], path: Path, title: str) -> None:
    counts = np.asarray(matrix)
    row_share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(1.3 * len(names) + 2.5, 1.1 * len(names) + 2))
    image = axis.imshow(row_share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            color = "white" if row_share[i, j] > 0.6 else "black"
            axis.text(j, i, f"{counts[i, j]}\n{row_share[i, j]:.0%}", ha="center", va="center", color=color, fontsize=9)
    axis.set_xticks(range(len(names)), names, rotation=30, ha="right")
    axis.set_yticks(range(len(names)), names)
    axis.set(xlabel="predicted", ylabel="gold", title=title)
    figure.colorbar(image, ax=axis, label="share of gold row")
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)
