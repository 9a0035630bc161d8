"""What a labeled corpus says: class shares with intervals, confidence, characteristic n-grams per class, shares
per group. Plots carry only ASCII (a cluster's matplotlib often has no CJK font): Chinese goes into the tables."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import CountVectorizer

from weibolabel.data.labeled import clean_text
from weibolabel.labeling.summary import is_blank
from weibolabel.stats.shares import wilson_interval
from weibolabel.util.errors import UserError

_HAS_WORD = re.compile(r"[^\W_]")  # a letter, digit or CJK character: n-grams without one are punctuation or emoji


# ------------------------------------------------------------------------------------------------- shares


def with_naive_intervals(shares: pd.DataFrame) -> pd.DataFrame:
    """shares.csv with `naive_low`/`naive_high`: the Wilson interval of each naive count (sampling noise only), for
    the group plot when no run gave adjusted shares."""
    shares = shares.copy()
    counts = np.rint(shares["naive_share"].to_numpy(dtype=float) * shares["n"].to_numpy(dtype=float))
    bounds = [wilson_interval(np.array([c]), int(n)) for c, n in zip(counts, shares["n"])]
    shares["naive_low"], shares["naive_high"] = [low[0] for low, _ in bounds], [high[0] for _, high in bounds]
    return shares


def confident_subset(min_confidence: float) -> str:
    """The confident rows' subset, as class_shares.csv and the report name it."""
    return f"confidence >= {min_confidence}"


def shares_by_confidence(
    labels: np.ndarray, confidence: np.ndarray, names: list[str], min_confidence: float
) -> pd.DataFrame:
    """class_shares.csv: the predicted-label shares with Wilson intervals, over all rows and over confident rows."""
    parts = []
    for subset, chosen in (("all", labels), (confident_subset(min_confidence), labels[confidence >= min_confidence])):
        counts = np.bincount(np.asarray(chosen, dtype=np.int64), minlength=len(names))
        total = int(counts.sum())
        low, high = wilson_interval(counts, total)
        parts.append(
            pd.DataFrame(
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
        )
    return pd.concat(parts, ignore_index=True)


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
    """Character 2-3-grams most typical of each predicted class against all others: the z-scored log-odds ratio with
    an informative Dirichlet prior (Monroe, Colaresi & Quinn 2008), which shrinks rare n-grams towards no difference.
    Counts are comments containing the n-gram, so one comment repeating 哈哈哈 twenty times counts once."""
    columns = ["label", "name", "rank", "ngram", "in_class", "elsewhere", "z"]
    vectorizer = CountVectorizer(analyzer="char", ngram_range=(2, 3), binary=True, min_df=min_count, lowercase=True)
    try:
        matrix = vectorizer.fit_transform([clean_text(t) for t in texts]).tocsc()
    except ValueError:  # no n-gram reaches min_count (a tiny corpus)
        return pd.DataFrame(columns=columns)
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
        best = [j for j in np.argsort(-z)[:top] if z[j] > 0]
        rows += [
            [i, name, rank, vocabulary[j], int(y_in[j]), int(y_out[j]), round(float(z[j]), 3)]
            for rank, j in enumerate(best, start=1)
        ]
    return pd.DataFrame(rows, columns=columns)


# ------------------------------------------------------------------------------------------------- groups


def pooled_groups(values: pd.Series, max_groups: int) -> pd.Series:
    """Each row's group name, '(missing)' where it has none; beyond the largest `max_groups - 1` groups, '(other)'.
    As objects first: a typed column (Int64, boolean, dates) cannot hold a word, and an integer reads '3', not '3.0'."""
    values = blank_as_missing(values).where(lambda v: v.notna(), "(missing)").astype(str).reset_index(drop=True)
    sizes = values.value_counts()
    if len(sizes) <= max_groups:
        return values
    return values.where(values.isin(sizes.index[: max_groups - 1]), "(other)")


def group_shares(groups: pd.Series, labels: np.ndarray, names: list[str], max_groups: int = 20) -> pd.DataFrame:
    """Class shares within each group (the largest `max_groups`; the rest pooled as 'other'), with a short ASCII
    code per group for the plot."""
    groups = pooled_groups(groups, max_groups)
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


# ------------------------------------------------------------------------------------------------- corrected shares


def blank_as_missing(values: pd.Series) -> pd.Series:
    """As objects, with blank text ('' or spaces: a CSV's empty cell, carried as written) missing like a null."""
    values = values.astype(object)
    return values.where(~values.map(is_blank).astype(bool), None)


def month_of(values: pd.Series, source: Path, column: str, row_ids: pd.Series) -> pd.Series:
    """Calendar month (YYYY-MM) of a date column, in each date's own time zone (Weibo's 'Mon Jan 05 12:00:00 +0800
    2024' is a January date in Beijing); blank cells are missing; a cell that is not a date is a UserError."""
    values = blank_as_missing(values)
    try:
        dates = pd.to_datetime(values, errors="coerce", format="mixed")
    except (ValueError, TypeError):  # time zones mixed (pandas 2.1 raises TypeError): each date's local time
        local = [pd.to_datetime(v, errors="coerce", format="mixed") for v in values]
        dates = pd.Series([d.tz_localize(None) if not pd.isna(d) and d.tzinfo else d for d in local], dtype=object)
        dates = pd.to_datetime(dates.set_axis(values.index))
    bad = dates.isna() & values.notna()
    if bad.any():
        listed = ", ".join(f"row_id {r} ({v!r})" for r, v in zip(row_ids[bad][:10], values[bad][:10]))
        serials = pd.to_numeric(values[bad], errors="coerce").between(1, 2958465).any()  # Excel's days 1900-9999
        hint = (
            " Numbers such as 45303 are Excel date serials: format the column as dates in Excel first."
            if serials
            else ""
        )
        raise UserError(f"{source}, column '{column}': not a date in {int(bad.sum())} row(s): {listed}.{hint}")
    return dates.dt.strftime("%Y-%m").where(dates.notna(), None)


def corpus_groups(
    frame: pd.DataFrame, *, group_by: str | None, by_month: bool, max_groups: int, source: Path
) -> tuple[list[tuple[str, np.ndarray]], dict[str, str], pd.Series | None]:
    """The groups shares are reported for: the whole corpus first (named ''), then each value of the `group_by`
    column (its calendar month with `by_month`), largest first, beyond `max_groups` pooled as '(other)'; each group's
    short ASCII plot code; each row's group value (None without `group_by`)."""
    groups, codes, values = [("", np.arange(len(frame)))], {}, None
    if group_by:
        values = frame[group_by]
        if by_month:
            values = month_of(values, source, group_by, frame["row_id"])
        pooled = pooled_groups(values, max_groups)
        for number, name in enumerate(pooled.value_counts().index.astype(str), start=1):
            groups.append((name, np.flatnonzero(pooled.to_numpy() == name)))
            codes[name] = _plot_label(name, number)
    return groups, codes, values
