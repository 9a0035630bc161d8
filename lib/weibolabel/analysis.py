"""What a labeled corpus says: class shares with confidence intervals, confidence, characteristic n-grams per
class and shares per group. Every plot is drawn from a table that is also written as CSV.

Plots carry only ASCII (label names, group codes): a cluster's matplotlib often has no CJK font, so Chinese
n-grams and group names go into the Markdown and CSV tables only.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import CountVectorizer

from weibolabel.data import clean_text

Z_95 = 1.959963984540054
_HAS_WORD = re.compile(r"[^\W_]")  # a letter, digit or CJK character: n-grams without one are punctuation or emoji


# ------------------------------------------------------------------------------------------------- shares
def wilson_interval(count: np.ndarray, total: int, z: float = Z_95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion: stays inside [0, 1] and behaves for small counts."""
    count = np.asarray(count, dtype=np.float64)
    if total == 0:
        return np.full(count.shape, np.nan), np.full(count.shape, np.nan)
    share = count / total
    denominator = 1 + z**2 / total
    centre = (share + z**2 / (2 * total)) / denominator
    half = z * np.sqrt(share * (1 - share) / total + z**2 / (4 * total**2)) / denominator
    low, high = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    # exact at the ends (rounding would leave 1e-18 above a share of 0)
    return np.where(count == 0, 0.0, low), np.where(count == total, 1.0, high)


def class_shares(labels: np.ndarray, names: list[str], subset: str) -> pd.DataFrame:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(names))
    total = int(counts.sum())
    low, high = wilson_interval(counts, total)
    return pd.DataFrame(
        {
            "subset": subset,
            "label": range(len(names)),
            "name": names,
            "count": counts,
            "total": total,
            "share": counts / total if total else np.nan,
            "ci_low": low,
            "ci_high": high,
        }
    )


def confidence_histogram(confidence: np.ndarray, labels: np.ndarray, names: list[str], bins: int = 20) -> pd.DataFrame:
    """Rows per confidence bin, split by predicted class."""
    edges = np.linspace(0, 1, bins + 1)
    table = pd.DataFrame({"bin_lower": edges[:-1], "bin_upper": edges[1:]})
    for i, name in enumerate(names):
        table[name] = np.histogram(confidence[labels == i], bins=edges)[0]
    table["total"] = table[names].sum(axis=1)
    return table


# ------------------------------------------------------------------------------------------------- n-grams
def characteristic_ngrams(
    texts: list[str], labels: np.ndarray, names: list[str], top: int = 15, min_count: int = 3
) -> pd.DataFrame:
    """Character 2-3-grams most typical of each predicted class against all others: the log-odds ratio with an
    informative Dirichlet prior (Monroe, Colaresi & Quinn 2008, the corpus counts as prior), as a z-score, so rare
    n-grams are shrunk towards no difference instead of topping the list. Counts are comments containing the
    n-gram (presence, not frequency), so one comment repeating 哈哈哈 twenty times counts once."""
    vectorizer = CountVectorizer(analyzer="char", ngram_range=(2, 3), binary=True, min_df=min_count, lowercase=True)
    try:
        matrix = vectorizer.fit_transform([clean_text(t) for t in texts]).tocsc()
    except ValueError:  # no n-gram reaches min_count (a tiny corpus)
        return pd.DataFrame(columns=["label", "name", "rank", "ngram", "in_class", "elsewhere", "z"])
    vocabulary = vectorizer.get_feature_names_out()
    keep = np.array([bool(_HAS_WORD.search(g)) and not g.isspace() and " " not in g for g in vocabulary])
    matrix, vocabulary = matrix[:, keep], vocabulary[keep]
    labels = np.asarray(labels)
    prior = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float64)
    prior_total = prior.sum()
    rows = []
    for i, name in enumerate(names):
        inside = labels == i
        if not inside.any() or inside.all():
            continue
        y_in = np.asarray(matrix[inside].sum(axis=0)).ravel().astype(np.float64)
        y_out = prior - y_in
        n_in, n_out = y_in.sum(), y_out.sum()
        delta = np.log((y_in + prior) / (n_in + prior_total - y_in - prior)) - np.log(
            (y_out + prior) / (n_out + prior_total - y_out - prior)
        )
        z = delta / np.sqrt(1 / (y_in + prior) + 1 / (y_out + prior))
        for rank, j in enumerate(np.argsort(-z)[:top], start=1):
            if z[j] <= 0:
                break
            rows.append(
                {
                    "label": i,
                    "name": name,
                    "rank": rank,
                    "ngram": vocabulary[j],
                    "in_class": int(y_in[j]),
                    "elsewhere": int(y_out[j]),
                    "z": round(float(z[j]), 3),
                }
            )
    return pd.DataFrame(rows, columns=["label", "name", "rank", "ngram", "in_class", "elsewhere", "z"])


# ------------------------------------------------------------------------------------------------- groups
def group_shares(groups: pd.Series, labels: np.ndarray, names: list[str], max_groups: int = 20) -> pd.DataFrame:
    """Class shares within each group (the largest `max_groups`; the rest pooled as 'other'), with a short ASCII
    code per group for the plot."""
    groups = groups.fillna("(missing)").astype(str).reset_index(drop=True)
    sizes = groups.value_counts()
    if len(sizes) > max_groups:
        groups = groups.where(groups.isin(sizes.index[: max_groups - 1]), "(other)")
    table = pd.crosstab(groups, pd.Categorical(np.asarray(labels), categories=range(len(names))), dropna=False)
    table.columns = names
    table = table.loc[table.sum(axis=1).sort_values(ascending=False).index]
    table.insert(0, "rows", table[names].sum(axis=1))
    for name in names:
        table[f"share_{name}"] = table[name] / table["rows"]
    table.index.name = "group"
    table = table.reset_index()
    table.insert(1, "plot_label", [_plot_label(g, i) for i, g in enumerate(table["group"], start=1)])
    return table


def _plot_label(group: str, number: int) -> str:
    short = Path(group).name if ("/" in group or "\\" in group) else group
    return short if short.isascii() and len(short) <= 24 else f"G{number}"


# ------------------------------------------------------------------------------------------------- plots
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
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    _save(figure, path)


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
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    _save(figure, path)


def plot_group_shares(table: pd.DataFrame, names: list[str], group_by: str, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(max(6, 0.55 * len(table) + 3), 4.5))
    bottom = np.zeros(len(table))
    x = np.arange(len(table))
    for name in names:
        share = table[f"share_{name}"].to_numpy()
        axis.bar(x, share, bottom=bottom, label=name)
        bottom += share
    axis.set_xticks(x, [f"{label}\n(n={n})" for label, n in zip(table["plot_label"], table["rows"])], fontsize=8)
    if len(table) > 6:
        plt.setp(axis.get_xticklabels(), rotation=45, ha="right")
    axis.set(ylabel="share of rows", ylim=(0, 1), title=f"Predicted class shares by {group_by}")
    axis.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    _save(figure, path)


def _save(figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


# ------------------------------------------------------------------------------------------------- report
def markdown_table(frame: pd.DataFrame) -> str:
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in frame.itertuples(index=False):
        cells = [str(v).replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def share_cell(row) -> str:
    return f"{row['share']:.1%} [{row['ci_low']:.1%}, {row['ci_high']:.1%}]" if row["total"] else "–"


def headline_table(shares: pd.DataFrame, confident_name: str) -> pd.DataFrame:
    """One row per class: count and share (95% CI) among all rows and among confident rows."""
    everything = shares[shares["subset"] == "all"].reset_index(drop=True)
    confident = shares[shares["subset"] == confident_name].reset_index(drop=True)
    return pd.DataFrame(
        {
            "class": everything["name"],
            "rows": everything["count"],
            "share [95% CI]": [share_cell(r) for _, r in everything.iterrows()],
            f"rows ({confident_name})": confident["count"],
            f"share ({confident_name}) [95% CI]": [share_cell(r) for _, r in confident.iterrows()],
        }
    )


def ngram_table(ngrams: pd.DataFrame, names: list[str], top: int) -> pd.DataFrame:
    """Classes as columns, rank as rows: `n-gram (z)` cells."""
    table = pd.DataFrame({"rank": range(1, top + 1)})
    for name in names:
        part = ngrams[ngrams["name"] == name].set_index("rank")
        table[name] = [
            f"{part.at[r, 'ngram']} ({part.at[r, 'z']:.1f})" if r in part.index else "" for r in table["rank"]
        ]
    return table
