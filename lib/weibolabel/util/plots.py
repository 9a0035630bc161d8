"""Every PNG figure the jobs write: training curves and confusion matrix (train), reliability diagram
(calibration), class shares and confidence (analyze_labels), data-size and active-learning curves.

Plots carry only ASCII (label names, group codes): a cluster's matplotlib often has no CJK font, so Chinese
n-grams and group names go into the Markdown and CSV tables only.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from weibolabel.util.files import atomic_path


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
    save(figure, path)


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
    save(figure, path)


def _finish(figure, axis, path: Path, grid: str, **legend) -> None:
    """The legend (`legend`: its options), a light grid along `grid` ("x", "y" or "both"), then `save`."""
    axis.legend(fontsize=8, **legend)
    axis.grid(axis=grid, alpha=0.3)
    save(figure, path)


def save(figure, path: Path) -> None:
    figure.tight_layout()
    with atomic_path(path) as tmp:  # the temporary name keeps the suffix that tells savefig the format
        figure.savefig(tmp, dpi=150)
    plt.close(figure)


# ------------------------------------------------------------------------------------------------- calibration
def plot_reliability(before: pd.DataFrame, after: pd.DataFrame, summary: dict, path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharey=True)
    titles = (
        f"Before (T = 1): ECE {summary['ece_before']:.3f}, NLL {summary['nll_before']:.3f}",
        f"After (T = {summary['temperature']:.2f}): ECE {summary['ece_after']:.3f}, NLL {summary['nll_after']:.3f}",
    )
    for axis, table, title in zip(axes, (before, after), titles):
        shown = table[table["count"] > 0]
        bins = {"x": shown["bin_lower"], "width": shown["bin_upper"] - shown["bin_lower"], "align": "edge"}
        axis.bar(
            height=shown["accuracy"],
            color="tab:blue",
            edgecolor="black",
            linewidth=0.5,
            label="accuracy in bin",
            **bins,
        )
        # From accuracy up (over-confident) or down (under-confident) to the bin's mean confidence.
        gap = shown["mean_confidence"] - shown["accuracy"]
        axis.bar(
            height=gap,
            bottom=shown["accuracy"],
            facecolor="none",
            hatch="///",
            edgecolor="tab:red",
            linewidth=0.8,
            label="gap to mean confidence",
            **bins,
        )
        axis.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
        share = table["count"] / max(int(table["count"].sum()), 1)
        edges = [*table["bin_lower"], table["bin_upper"].iloc[-1]]
        axis.stairs(share, edges, color="tab:orange", linewidth=2, label="share of rows in bin")
        axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-1 probability)", title=title)
        axis.title.set_fontsize(10)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=8, loc="upper left")
    figure.suptitle(f"Reliability of out-of-fold predictions ({summary['num_rows']} rows, {summary['num_bins']} bins)")
    save(figure, path)


# ------------------------------------------------------------------------------------------------- corpus analysis
def plot_shares(shares: pd.DataFrame, temperature: float, path: Path) -> None:
    """The whole corpus' class shares by every method available, with their 95% intervals."""
    whole = shares[shares["group"] == ""]
    names = whole["class"].tolist()
    series = [("naive (predicted labels; no interval)", "naive_share", None, None)]
    if whole["adjusted_share"].notna().any():
        series.append(("misclassification-adjusted", "adjusted_share", "adjusted_low", "adjusted_high"))
    if "ppi_share" in whole and whole["ppi_share"].notna().any():
        series.append(("prediction-powered (PPI)", "ppi_share", "ppi_low", "ppi_high"))
        series.append((f"gold sample only (n = {int(whole['gold_n'].iloc[0])})", "gold_share", "gold_low", "gold_high"))
    width = 0.8 / len(series)
    figure, axis = plt.subplots(figsize=(1.8 * len(names) + 3, 4.2))
    for s, (label, column, low, high) in enumerate(series):
        x = np.arange(len(names)) + (s - (len(series) - 1) / 2) * width
        values = whole[column].to_numpy(dtype=float)
        error = None if low is None else np.vstack([values - whole[low], whole[high] - values])
        axis.bar(x, values, width=width, yerr=error, capsize=3, label=label)
    axis.set_xticks(range(len(names)), names)
    axis.set(ylabel="share of comments", ylim=(0, 1))
    axis.set_title(_provenance_title("Class shares of the whole corpus", temperature), fontsize=9)
    _finish(figure, axis, path, grid="y")


def plot_group_shares(
    shares: pd.DataFrame, codes: dict[str, str], group_by: str, temperature: float, path: Path
) -> None:
    """Class shares per group, one bar per class with its 95% interval. A share of zero is marked '0' so it is not
    taken for missing data; a group with too few rows says so instead of showing bars."""
    part = shares[shares["group"] != ""]
    groups = list(dict.fromkeys(part["group"]))
    names = list(dict.fromkeys(part["class"]))
    adjusted = part["adjusted_share"].notna().any()
    headline = "share_low" in part and part["share_low"].notna().any()
    column, low, high = ("adjusted_share", "adjusted_low", "adjusted_high") if adjusted else ("naive_share",) * 3
    if headline:  # the published share, whichever method gave it (share_differences.csv names them)
        column, low, high = "share", "share_low", "share_high"
    elif not adjusted:  # Wilson intervals around the naive count (analysis.with_naive_intervals)
        low, high = "naive_low", "naive_high"
    width = 0.8 / len(names)
    figure, axis = plt.subplots(figsize=(max(7, 0.5 * len(groups) * len(names) + 3), 4.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for c, name in enumerate(names):
        rows = part[part["class"] == name].set_index("group").loc[groups]
        x = np.arange(len(groups)) + (c - (len(names) - 1) / 2) * width
        values = rows[column].to_numpy(dtype=float)
        shown = ~np.isnan(values)
        error = np.vstack([values - rows[low].to_numpy(float), rows[high].to_numpy(float) - values])
        axis.bar(
            x[shown], values[shown], width=width, yerr=error[:, shown], capsize=2, color=colours[c % 10], label=name
        )
        for xi, value, upper in zip(x[shown], values[shown], rows[high].to_numpy(float)[shown]):
            if value < 0.005:
                axis.text(xi, max(upper, 0) + 0.01, "0", ha="center", va="bottom", fontsize=7)
    for g, group in enumerate(groups):
        block = part[part["group"] == group]
        if block[column].isna().all():
            note = block["note"].iloc[0].replace(" (", "\n(")
            axis.text(g, 0.3, note, ha="center", va="center", fontsize=8, color="dimgray")
    sizes = part.drop_duplicates("group").set_index("group")["n"]
    axis.set_xticks(range(len(groups)), [f"{codes[g]}\n(n={int(sizes[g])})" for g in groups], fontsize=8)
    axis.set(ylabel="share of comments", ylim=(0, 1), xlim=(-0.5, len(groups) - 0.5))
    what = "adjusted for misclassification" if adjusted else "naive (predicted labels, Wilson intervals)"
    what = "headline (method per share in shares.csv)" if headline else what
    axis.set_title(_provenance_title(f"Class shares by {group_by}, {what}", temperature), fontsize=9)
    if any(codes[g] != g for g in groups):  # plots carry ASCII only: non-ASCII group names get a code
        key = "Key to the codes G1, G2 ...: the table under this plot in report.md (and shares.csv)."
        figure.text(0.01, 0.01, key, fontsize=7)
    _finish(figure, axis, path, grid="y", title="class", bbox_to_anchor=(1.01, 1), loc="upper left")


def plot_share_differences(differences: pd.DataFrame, codes: dict[str, str], group_by: str, path: Path) -> None:
    """Differences of the headline shares between pairs of groups (the rows given, in their order), one colour per
    class, with the 95% intervals share_differences.csv holds; a line at zero."""
    pairs = list(dict.fromkeys(zip(differences["group_a"], differences["group_b"])))
    names = list(dict.fromkeys(differences["class"]))
    figure, axis = plt.subplots(figsize=(7.5, 0.5 * len(pairs) * len(names) ** 0.5 + 2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    step = 0.8 / len(names)
    for c, name in enumerate(names):
        rows = differences[differences["class"] == name].set_index(["group_a", "group_b"]).loc[pairs]
        y = np.arange(len(pairs)) + (c - (len(names) - 1) / 2) * step
        values = rows["difference"].to_numpy(dtype=float)
        low, high = rows["difference_low"].to_numpy(dtype=float), rows["difference_high"].to_numpy(dtype=float)
        # Each interval drawn from its ends: a bootstrap's percentile interval need not hold its point estimate.
        axis.hlines(y, low, high, color=colours[c % 10], lw=1)
        axis.plot(values, y, "o", ms=4, color=colours[c % 10], label=name)
    axis.axvline(0, color="black", lw=0.8)
    axis.set_yticks(range(len(pairs)), [f"{codes.get(a, a)} - {codes.get(b, b)}" for a, b in pairs], fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("difference of shares (a - b)")
    axis.set_title(f"Differences of class shares between {group_by} groups, with 95% intervals", fontsize=9)
    _finish(figure, axis, path, grid="x", title="class", bbox_to_anchor=(1.01, 1), loc="upper left")


def _provenance_title(title: str, temperature: float) -> str:
    scaled = f"calibrated with temperature {temperature:.2f}" if temperature != 1 else "not recalibrated, T = 1"
    return f"{title}\nfrom model predictions (probabilities {scaled}); bars: share, whiskers: 95% interval"


def plot_class_shares(shares: pd.DataFrame, path: Path) -> None:
    subsets = list(dict.fromkeys(shares["subset"]))
    names = list(dict.fromkeys(shares["name"]))
    width = 0.8 / len(subsets)
    figure, axis = plt.subplots(figsize=(1.6 * len(names) + 2.5, 4))
    for s, subset in enumerate(subsets):
        part = shares[shares["subset"] == subset]
        x = np.arange(len(names)) + (s - (len(subsets) - 1) / 2) * width
        error = np.vstack([part["share"] - part["ci_low"], part["ci_high"] - part["share"]])
        total = int(part["total"].iloc[0])
        axis.bar(x, part["share"], width=width, yerr=error, capsize=3, label=f"{subset} (n = {total})")
    axis.set_xticks(range(len(names)), names)
    axis.set(ylabel="share of rows", title="Predicted class shares with 95% Wilson intervals")
    axis.set_ylim(0, min(1, float(shares["ci_high"].max()) * 1.25 + 0.02))
    _finish(figure, axis, path, grid="y")


def plot_confidence_histogram(table: pd.DataFrame, names: list[str], threshold: float, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(7, 4))
    bottom = np.zeros(len(table))
    width = table["bin_upper"] - table["bin_lower"]
    for name in names:
        axis.bar(table["bin_lower"], table[name], width=width, bottom=bottom, align="edge", label=name, linewidth=0)
        bottom += table[name].to_numpy()
    axis.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"--min_confidence {threshold}")
    axis.set(xlabel="confidence (top-1 probability)", ylabel="rows", title="Confidence by predicted class", xlim=(0, 1))
    axis.set_ylim(0, max(1, int(table["total"].max())) * 1.1)
    _finish(figure, axis, path, grid="y")


# ------------------------------------------------------------------------------------------------- more labels
def plot_data_size_curve(summary: pd.DataFrame, path: Path, title: str) -> None:
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    labels = {"encoder": "fine-tuned encoder", "baseline": "TF-IDF + logistic regression"}
    for model in [m for m in labels if m in set(summary["model"])]:
        part = summary[summary["model"] == model].sort_values("fraction")
        axis.errorbar(
            part["fraction"] * 100,
            part["macro_f1_mean"],
            yerr=part["macro_f1_std"],
            marker="o",
            capsize=4,
            label=labels[model],
        )
    ticks = sorted(summary["fraction"].unique())
    rows = summary.drop_duplicates("fraction").set_index("fraction")["num_train_mean"]
    axis.set_xticks([f * 100 for f in ticks], [f"{f:.0%}\n({rows[f]:.0f})" for f in ticks])
    axis.set(
        xlabel="share of each fold's training part (mean training rows)",
        ylabel="test macro-F1 (mean ± std over folds)",
        ylim=(0, 1),
        title=title,
    )
    _finish(figure, axis, path, grid="both", loc="lower right")


def plot_active_learning(summary: pd.DataFrame, full_score: float, tolerance: float, path: Path, title: str) -> None:
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for strategy in dict.fromkeys(summary["strategy"]):  # in the order the simulation ran them
        part = summary[summary["strategy"] == strategy].sort_values("round")
        line = axis.plot(part["num_labels"], part["macro_f1_mean"], marker="o", markersize=3, label=strategy)
        axis.fill_between(
            part["num_labels"],
            part["macro_f1_mean"] - part["macro_f1_std"],
            part["macro_f1_mean"] + part["macro_f1_std"],
            color=line[0].get_color(),
            alpha=0.15,
        )
    axis.axhline(full_score, color="black", linestyle="--", linewidth=1, label=f"all labels ({full_score:.3f})")
    axis.axhline(full_score - tolerance, color="grey", linestyle=":", linewidth=1, label=f"all labels - {tolerance:g}")
    axis.set(xlabel="labels (mean over folds)", ylabel="test macro-F1 (mean ± std over seeds)", title=title)
    _finish(figure, axis, path, grid="both", loc="lower right")
