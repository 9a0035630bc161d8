"""What a labeled corpus says: class shares with confidence intervals, confidence, characteristic n-grams per
class and shares per group. Every plot is drawn from a table that is also written as CSV.

Plots carry only ASCII (label names, group codes): a cluster's matplotlib often has no CJK font, so Chinese
n-grams and group names go into the Markdown and CSV tables only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import CountVectorizer

from weibolabel.data.labeled import clean_text, parse_label
from weibolabel.data.tables import read_table, require_column
from weibolabel.run.layout import RunLayout, read_out_of_fold
from weibolabel.stats.shares import (
    METHODS,
    MIN_CLASS_ROWS,
    calibrated,
    difference_interval,
    gold_rows_needed,
    headline_share,
    ppi_finite_share,
    wilson_finite_share,
    wilson_interval,
)
from weibolabel.util.errors import UserError
from weibolabel.util.markdown import frame_table

if TYPE_CHECKING:
    from weibolabel.run.config import AnalyzeConfig

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


def confident_subset(min_confidence: float) -> str:
    """The confident rows' subset, as class_shares.csv and the report name it."""
    return f"confidence >= {min_confidence}"


def shares_by_confidence(
    labels: np.ndarray, confidence: np.ndarray, names: list[str], min_confidence: float
) -> pd.DataFrame:
    """class_shares.csv: the predicted-label shares with Wilson intervals, over all rows and over confident rows."""
    return pd.concat(
        [
            class_shares(labels, names, "all"),
            class_shares(labels[confidence >= min_confidence], names, confident_subset(min_confidence)),
        ],
        ignore_index=True,
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
def group_names(values: pd.Series) -> pd.Series:
    """Each row's group as text, '(missing)' where it has none. As objects first: a typed column (Int64, boolean,
    dates) cannot hold that word, and an integer reads '3', never '3.0'."""
    return values.astype(object).where(values.notna(), "(missing)").astype(str).reset_index(drop=True)


def group_shares(groups: pd.Series, labels: np.ndarray, names: list[str], max_groups: int = 20) -> pd.DataFrame:
    """Class shares within each group (the largest `max_groups`; the rest pooled as 'other'), with a short ASCII
    code per group for the plot."""
    groups = group_names(groups)
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
# ------------------------------------------------------------------------------------------------- report
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


# ------------------------------------------------------------------------------------------------- corrected shares
def check_labeled_by_run(metadata: dict, run: str | Path, source: Path) -> str:
    """Refuse a labeled file whose metadata says another model labeled it: the run's out-of-fold rates describe
    its own fold ensemble, not another run or one fold model alone. Returns a warning ('' if none) when only the
    path differs (a run moved or named relatively) but the name and the fold members agree."""
    run = Path(run)
    model, members = metadata.get("model"), list(metadata.get("members") or [])
    expected = [f"fold_{k}" for k in range(_num_folds(run))]
    if model is None:
        return f"{source} does not say which model labeled it; taken to be the run {run}"
    labeled_by = Path(str(model))
    inside = labeled_by.resolve().parent == run.resolve() or members == ["."]
    if inside or (members != expected and labeled_by.name.startswith("fold_")):
        raise UserError(
            f"{source} was labeled by one fold model ({model}), not by the fold ensemble of {run}: the run's "
            "out-of-fold rates describe the ensemble's probabilities. Label the corpus with the run directory "
            f"(jobs/label_corpus.py --model {run}), or analyse it without --run."
        )
    if labeled_by.resolve() == run.resolve() and members == expected:
        return ""
    if labeled_by.name == run.name and members == expected:
        return f"{source} was labeled by {model}, taken to be the run {run} (same name and folds; it was moved?)"
    raise UserError(
        f"{source} was labeled by {model} (checkpoints {members}), not by the run {run} (folds {expected}): another "
        "run's confusion rates do not describe this file's labels. Pass the run that labeled it as --run, or label "
        f"the corpus with this one (jobs/label_corpus.py --model {run})."
    )


def _num_folds(run: Path) -> int:
    layout = RunLayout(run)
    if layout.metrics.is_file():
        folds = json.loads(layout.metrics.read_text()).get("folds")
        if folds:
            return len(folds)
    if layout.config.is_file():
        import yaml

        return int((yaml.safe_load(layout.config.read_text()) or {}).get("num_folds", 0))
    return 0


def training_selection(run: Path, oof: pd.DataFrame) -> tuple[np.ndarray | None, str]:
    """How each out-of-fold row was chosen (the training file's `selection` column, written by merge_annotations),
    read from the training file the run's config.yaml names; (None, why) when it cannot be known."""
    import yaml

    from weibolabel.review.annotation import SELECTION_COLUMN

    layout = RunLayout(run)
    settings = (yaml.safe_load(layout.config.read_text()) or {}) if layout.config.is_file() else {}
    data = settings.get("data")
    if not data:
        return None, f"{layout.config} does not name the training file"
    where = {k: settings.get(k) for k in ("sheet", "encoding", "split")}
    try:
        table = read_table(data, header_row=int(settings.get("header_row") or 1), **where)
    except UserError as error:
        return None, f"the training file could not be read ({error})"
    if SELECTION_COLUMN not in table.columns:
        return None, f"the training file {data} has no '{SELECTION_COLUMN}' column (written by merge_annotations.py)"
    row_ids = oof["row_id"].to_numpy(dtype=np.int64) if "row_id" in oof.columns else None
    text_column = settings.get("text_column", "Sentence")
    if row_ids is None or row_ids.max(initial=-1) >= len(table) or text_column not in table.columns:
        return None, f"the training file {data} no longer matches the run's rows"
    texts = table[text_column].astype(str).to_numpy()[row_ids]
    if any(clean_text(a) != clean_text(str(b)) for a, b in zip(texts, oof["text"])):
        return None, f"the training file {data} has changed since the run (its texts differ at the run's rows)"
    values = table[SELECTION_COLUMN].to_numpy(dtype=object)[row_ids]
    return np.array(["original" if pd.isna(v) or not str(v).strip() else str(v).strip() for v in values]), ""


def read_run_predictions(
    run: str | Path, names: list[str], temperature: float, confusion_rows: str = "model_free"
) -> tuple[dict | None, str]:
    """The training run's out-of-fold gold labels, predictions and probabilities, the probabilities recalibrated
    with `temperature` (the one the labeling job applied to the corpus, so both sides are scored alike). With
    `confusion_rows` 'model_free', only rows whose selection did not depend on a model (original, random) are kept;
    the dict says how many were used and left out (`rows_used`, `rows_total`, `left_out`, `provenance`).

    Returns (None, why) when the run cannot adjust this file's shares (another label schema, a class without rows),
    so the caller reports naive shares and says why; a missing run or file is a UserError."""
    from weibolabel.review.annotation import MODEL_FREE_SELECTIONS

    oof, run_names = read_out_of_fold(run)
    if run_names != list(names):
        return None, (
            f"the run {run} was trained on the classes {run_names}, the file is labeled with {list(names)}: its "
            "confusion rates do not apply, so only naive shares are reported"
        )
    selection, unknown = training_selection(run, oof)
    if selection is None:
        provenance = f"how the rows were chosen is not recorded ({unknown}): all are taken as chosen without a model"
        selection = np.full(len(oof), "original", dtype=object)
    else:
        provenance = "from the training file's 'selection' column"
    keep = np.isin(selection, MODEL_FREE_SELECTIONS) if confusion_rows == "model_free" else np.ones(len(oof), bool)
    left_out = dict(pd.Series(selection[~keep]).value_counts().astype(int)) if (~keep).any() else {}
    oof = oof[keep].reset_index(drop=True)
    absent = [n for i, n in enumerate(names) if not (oof["gold"] == i).any()]
    if absent:
        return (
            None,
            f"the run {run} has no labeled row of {absent} among the rows used, so their error rates are unknown",
        )
    probs = oof[[f"prob_{n}" for n in names]].to_numpy(dtype=np.float64)
    gold = oof["gold"].to_numpy(dtype=np.int64)
    return {
        "gold": gold,
        "predicted": probs.argmax(axis=1),
        "probs": calibrated(probs, temperature),
        "texts": oof["text"].astype(str).tolist(),
        "rows_used": int(keep.sum()),
        "rows_total": len(keep),
        "left_out": {str(k): int(v) for k, v in left_out.items()},
        "provenance": provenance,
        "confusion_rows": confusion_rows,
    }, ""


def read_gold_sample(path: str | Path, frame: pd.DataFrame, schema) -> pd.DataFrame:
    """A filled-in random sample (select_for_annotation --strategy random): per gold row its position in `frame`
    (the ok rows) and its gold label. Every problem is a UserError naming the spreadsheet rows: labels outside the
    schema or missing (a sample with holes is no longer uniform), repeated row ids, row ids not in the file or
    whose text differs from the file's."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Gold sample not found: {path}")
    table = read_table(path)
    for column in ("row_id", "Label", "Sentence"):
        require_column(table, column, path, "(the sheet written by select_for_annotation.py --strategy random)")

    def rows(mask) -> str:
        numbers = [f"row {i + 2}" for i in np.flatnonzero(np.asarray(mask))]
        return ", ".join(numbers[:20]) + (f" and {len(numbers) - 20} more" if len(numbers) > 20 else "")

    parsed = [parse_label(v, schema) for v in table["Label"]]
    bad = [error is not None for _, error in parsed]
    if any(bad):
        first = next(f"{e}" for _, e in parsed if e is not None)
        raise UserError(
            f"{path}, column 'Label': {rows(bad)} have no valid label (e.g. {first}); a gold sample must be labeled "
            f"in full with ids 0..{len(schema) - 1} or the names {schema.names}, or its shares are biased."
        )
    row_ids = pd.to_numeric(table["row_id"], errors="coerce")
    not_int = row_ids.isna() | (row_ids != row_ids.round())
    if not_int.any():
        raise UserError(f"{path}, column 'row_id': {rows(not_int)} hold no whole-number row id.")
    row_ids = row_ids.astype(np.int64)
    repeated = row_ids.duplicated(keep=False)
    if repeated.any():
        raise UserError(f"{path}, column 'row_id': {rows(repeated)} repeat a row id; each comment may appear once.")
    position = pd.Series(np.arange(len(frame)), index=frame["row_id"].astype(np.int64).to_numpy())
    unknown = ~row_ids.isin(position.index)
    if unknown.any():
        raise UserError(
            f"{path}, column 'row_id': {rows(unknown)} name row ids with no labeled (status 'ok') row in the corpus "
            "file; was the sample drawn from this file?"
        )
    where = position.loc[row_ids.to_numpy()].to_numpy()
    texts = frame["text"].astype(str).to_numpy()[where]
    differs = np.array([clean_text(str(a)) != clean_text(str(b)) for a, b in zip(table["Sentence"], texts)])
    if differs.any():
        raise UserError(
            f"{path}, column 'Sentence': {rows(differs)} differ from the corpus file's text at their row_id; was the "
            "sample drawn from this file?"
        )
    return pd.DataFrame({"position": where, "gold": [label for label, _ in parsed], "text": texts})


def group_members(values: pd.Series, max_groups: int) -> tuple[list[str], list[np.ndarray], list[str]]:
    """Group names (largest first; beyond `max_groups`, pooled as '(other)'), each group's row positions, and a
    short ASCII code per group for plots (the name itself when it is short ASCII, else G1, G2 ...)."""
    values = group_names(values)
    sizes = values.value_counts()
    if len(sizes) > max_groups:
        values = values.where(values.isin(sizes.index[: max_groups - 1]), "(other)")
        sizes = values.value_counts()
    names = [str(g) for g in sizes.index]
    members = [np.flatnonzero(values.to_numpy() == g) for g in names]
    return names, members, [_plot_label(g, i) for i, g in enumerate(names, start=1)]


def month_of(values: pd.Series, source: Path, column: str, row_ids: pd.Series) -> pd.Series:
    """Calendar month (YYYY-MM) of a date column; a cell that is not a date is a UserError naming its row."""
    dates = pd.to_datetime(values, errors="coerce", format="mixed")
    bad = dates.isna() & values.notna()
    if bad.any():
        listed = ", ".join(f"row_id {r} ({v!r})" for r, v in zip(row_ids[bad][:10], values[bad][:10]))
        raise UserError(f"{source}, column '{column}': not a date in {int(bad.sum())} row(s): {listed}.")
    return dates.dt.strftime("%Y-%m").where(dates.notna(), None)


def corpus_groups(
    frame: pd.DataFrame, *, group_by: str | None, by_month: bool, max_groups: int, source: Path
) -> tuple[list[tuple[str, np.ndarray]], dict[str, str], pd.Series | None]:
    """The groups shares are reported for: the whole corpus first (named ''), then each value of the `group_by`
    column (its calendar month with `by_month`), largest first; each group's plot code; each row's group value
    (None without `group_by`)."""
    groups, codes, values = [("", np.arange(len(frame)))], {}, None
    if group_by:
        values = frame[group_by]
        if by_month:
            values = month_of(values, source, group_by, frame["row_id"])
        group_names, members, plot_labels = group_members(values, max_groups)
        groups += list(zip(group_names, members))
        codes = dict(zip(group_names, plot_labels))
    return groups, codes, values


SHARE_COLUMNS = ["group", "class", "n", "naive_share", "adjusted_share", "adjusted_low", "adjusted_high"]
HEADLINE_COLUMNS = ["share", "share_low", "share_high", "share_method"]
DIFFERENCES_SHOWN = 6  # pairs of groups in the report and the plot; share_differences.csv has all
GOLD_METHODS = ("ppi", "gold_wilson", "exact")  # headline methods that rest on the random gold sample alone


def format_share(share: float, low: float | None = None, high: float | None = None) -> str:
    if share is None or pd.isna(share):
        return "–"
    if low is None or pd.isna(low):
        return f"{share:.1%}"
    return f"{share:.1%} [{low:.1%}, {high:.1%}]"


METHOD_NAMES = {
    "ppi": "PPI",
    "gold_wilson": "gold rows only (Wilson)",
    "exact": "labeled in full",
    "pacc": "PACC",
    "acc": "ACC",
    "naive": "naive count",
}


def published_shares_table(shares: pd.DataFrame) -> pd.DataFrame:
    """The whole corpus' published shares: one row per class, the headline share, its interval and its method."""
    whole = shares[shares["group"] == ""]
    return pd.DataFrame(
        {
            "class": whole["class"],
            "share [95% CI]": [format_share(r.share, r.share_low, r.share_high) for r in whole.itertuples()],
            "method": [METHOD_NAMES.get(m, m) for m in whole["share_method"]],
        }
    ).reset_index(drop=True)


def headline_shares_table(shares: pd.DataFrame) -> pd.DataFrame:
    """The whole corpus: one row per class, naive and adjusted (and PPI, gold-only) side by side."""
    whole = shares[shares["group"] == ""]
    table = pd.DataFrame({"class": whole["class"], "rows predicted": (whole["naive_share"] * whole["n"]).round()})
    table["rows predicted"] = table["rows predicted"].astype(int)
    table["naive share"] = [format_share(v) for v in whole["naive_share"]]
    table["adjusted [95% CI]"] = [
        format_share(r.adjusted_share, r.adjusted_low, r.adjusted_high) for r in whole.itertuples()
    ]
    if "ppi_share" in whole:
        table["PPI [95% CI]"] = [format_share(r.ppi_share, r.ppi_low, r.ppi_high) for r in whole.itertuples()]
        table["gold sample only [95% CI]"] = [
            format_share(r.gold_share, r.gold_low, r.gold_high) for r in whole.itertuples()
        ]
    return table.reset_index(drop=True)


def group_shares_report_table(shares: pd.DataFrame, codes: dict[str, str]) -> pd.DataFrame:
    """Groups as rows, classes as columns; each cell the headline share [95% CI] and its method, then the
    adjusted (naive) and PPI shares beside it, or the reason there is none."""
    part = shares[shares["group"] != ""]
    rows = []
    for group, block in part.groupby("group", sort=False):
        row = {"code": codes.get(group, ""), "group": group, "rows": int(block["n"].iloc[0])}
        for r in block.to_dict("records"):
            if pd.isna(r["naive_share"]):
                row[r["class"]] = r["note"]
                continue
            cell = f"**{format_share(r['share'], r['share_low'], r['share_high'])}** {r['share_method']}"
            if not pd.isna(r["adjusted_share"]):
                cell += f"; adjusted {format_share(r['adjusted_share'], r['adjusted_low'], r['adjusted_high'])}"
            cell += f" (naive {r['naive_share']:.1%})"
            if not pd.isna(r.get("ppi_share", np.nan)):
                cell += f"; PPI {format_share(r['ppi_share'], r['ppi_low'], r['ppi_high'])}"
            elif r.get("ppi_note"):
                cell += f"; PPI: {r['ppi_note']}"
            row[r["class"]] = cell
        rows.append(row)
    return pd.DataFrame(rows)


def difference_pairs(names: list[str], by_month: bool) -> list[tuple[int, int]]:
    """Every pair (a, b) of groups (indices into `names`), in the order plotted first: with months, later minus
    earlier, each month against the month before it first; otherwise each group against the largest first."""
    if by_month:
        order = sorted(range(len(names)), key=lambda i: names[i])
        pairs = [(order[j], order[i]) for i in range(len(order)) for j in range(i + 1, len(order))]
        return sorted(pairs, key=lambda pair: order.index(pair[0]) - order.index(pair[1]) > 1)
    return [(a, b) for a in range(len(names)) for b in range(a + 1, len(names))]


def shares_table(
    *,
    predicted: np.ndarray,
    probs: np.ndarray,
    names: list[str],
    groups: list[tuple[str, np.ndarray]],
    oof: dict | None,
    gold: pd.DataFrame | None,
    adjustment: str = "pacc",
    replicates: int = 1000,
    seed: int = 0,
    min_group_rows: int = 30,
    by_month: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """shares.csv and share_differences.csv. shares.csv: per group (the first, named '', is the whole corpus) and
    class, the headline share (`share`, `share_low`, `share_high`, `share_method`: from the random gold sample where
    there is one, else the adjusted share, else the naive count), the naive share, the adjusted share and its
    bootstrap interval (`adjustment` picks ACC or PACC; both are kept as acc_* and pacc_*), and with a gold sample
    the PPI and gold-only shares with their intervals. A group with fewer than `min_group_rows` rows (or gold rows,
    for PPI) gets no number, only a note saying so. share_differences.csv: every pair of groups with numbers."""
    from weibolabel.stats import shares

    large = [i for i, (name, rows) in enumerate(groups) if name == "" or len(rows) >= min_group_rows]
    compared = [i for i in large if groups[i][0] != ""]
    pairs = difference_pairs([groups[i][0] for i in compared], by_month)
    estimates = None
    if oof is not None and large:
        estimates = shares.adjusted_shares(
            corpus_predicted=predicted,
            corpus_probs=probs,
            oof_gold=oof["gold"],
            oof_predicted=oof["predicted"],
            oof_probs=oof["probs"],
            groups=[groups[i][1] for i in large],
            replicates=replicates,
            seed=seed,
            pairs=[(large.index(compared[a]), large.index(compared[b])) for a, b in pairs],
        )
    is_gold = np.zeros(len(predicted), dtype=bool)
    gold_label = np.full(len(predicted), -1)
    if gold is not None:
        is_gold[gold["position"].to_numpy()] = True
        gold_label[gold["position"].to_numpy()] = gold["gold"].to_numpy()

    records = []
    for i, (name, rows) in enumerate(groups):
        own = None
        if estimates is not None and i in large:
            own = {k: v[large.index(i)] for k, v in estimates.items() if "difference" not in k}
        too_few = None if i in large else f"too few rows (n = {len(rows)} < {min_group_rows})"
        block = _group_shares_block(
            name, rows, names=names, predicted=predicted, estimates=own, adjustment=adjustment, too_few=too_few
        )
        if gold is not None:
            _add_ppi_shares(
                block,
                rows,
                probs=probs,
                is_gold=is_gold,
                gold_label=gold_label,
                large=i in large,
                min_rows=min_group_rows,
            )
        records.append(block)
    table = pd.concat(records, ignore_index=True)
    ppi_columns = ["ppi_share", "ppi_low", "ppi_high", "gold_n", "gold_share", "gold_low", "gold_high", "ppi_note"]
    ordered = [*SHARE_COLUMNS, *(c for c in ppi_columns if c in table), *HEADLINE_COLUMNS]
    table = table[[*ordered, *(c for c in table.columns if c not in ordered)]]
    differences = share_differences(table, [groups[i][0] for i in compared], pairs, estimates)
    return table, differences


def _group_shares_block(
    name: str,
    rows: np.ndarray,
    *,
    names: list[str],
    predicted: np.ndarray,
    estimates: dict[str, np.ndarray] | None,
    adjustment: str,
    too_few: str | None,
) -> pd.DataFrame:
    """One group's rows of shares.csv, a row per class: the naive share and, with `estimates` (the group's part of
    `shares.adjusted_shares`), the ACC and PACC shares and intervals; a group with `too_few` rows gets that note.
    The headline is the adjusted share where there is one, else the naive count (a gold sample replaces it)."""
    block = pd.DataFrame({"group": name, "class": names, "n": len(rows)})
    for column in [*SHARE_COLUMNS[3:], *(f"{m}_{s}" for m in METHODS for s in ("share", "low", "high"))]:
        block[column] = np.nan
    block["note"] = ""
    for column in HEADLINE_COLUMNS[:3]:
        block[column] = np.nan
    block["share_method"] = ""
    if too_few is not None:
        block["note"] = too_few
        return block
    block["naive_share"] = np.bincount(predicted[rows], minlength=len(names)) / len(rows)
    block["share"], block["share_method"] = block["naive_share"], "naive"
    if estimates is not None:
        for method in METHODS:
            block[f"{method}_share"] = estimates[method]
            block[f"{method}_low"] = estimates[f"{method}_low"]
            block[f"{method}_high"] = estimates[f"{method}_high"]
        block["adjusted_share"] = block[f"{adjustment}_share"]
        block["adjusted_low"] = block[f"{adjustment}_low"]
        block["adjusted_high"] = block[f"{adjustment}_high"]
        block["share"], block["share_low"], block["share_high"] = (
            block[f"{adjustment}_{s}"] for s in ("share", "low", "high")
        )
        block["share_method"] = adjustment
    return block


def _add_ppi_shares(
    block: pd.DataFrame,
    rows: np.ndarray,
    *,
    probs: np.ndarray,
    is_gold: np.ndarray,
    gold_label: np.ndarray,
    large: bool,
    min_rows: int,
) -> None:
    """The group's PPI, gold-only and headline shares (shares.headline_share: PPI, or the gold rows' Wilson
    interval for a class with few gold rows, or the exact share of a group labeled in full), added to its `block`,
    from the gold rows inside it (the other rows are the unlabeled part); a note instead where the group or its gold
    rows are too few, and the headline stays the adjusted share."""
    in_group = np.zeros(len(is_gold), dtype=bool)
    in_group[rows] = True
    gold_rows, rest = np.flatnonzero(in_group & is_gold), np.flatnonzero(in_group & ~is_gold)
    block["ppi_note"] = ""
    block["gold_n"] = len(gold_rows)
    if not (large and len(gold_rows) >= min_rows):
        block["ppi_note"] = f"too few gold rows (n = {len(gold_rows)} < {min_rows})"
        return
    for c in range(len(block)):
        truth = (gold_label[gold_rows] == c).astype(np.float64)
        ppi = ppi_finite_share(truth, probs[gold_rows, c], probs[rest, c])
        gold_only = wilson_finite_share(int(truth.sum()), len(gold_rows), len(rows))
        headline = headline_share(truth, probs[gold_rows, c], probs[rest, c])
        for prefix, values in (("ppi", ppi), ("gold", gold_only)):
            for suffix, value in zip(("share", "low", "high"), values):
                block.loc[c, f"{prefix}_{suffix}"] = value
        block.loc[c, HEADLINE_COLUMNS] = [headline["share"], headline["low"], headline["high"], headline["method"]]


DIFFERENCE_COLUMNS = ["group_a", "group_b", "class", "n_a", "n_b", "share_a", "share_b", "difference"]
DIFFERENCE_COLUMNS += ["difference_low", "difference_high", "difference_method", "naive_difference"]


def share_differences(
    table: pd.DataFrame, names: list[str], pairs: list[tuple[int, int]], estimates: dict | None
) -> pd.DataFrame:
    """share_differences.csv: per pair of groups and class, the headline shares' difference a - b with its 95%
    interval: from independent gold samples (disjoint rows) by MOVER; from the adjusted shares by the bootstrap
    whose replicates share one confusion matrix (shares.adjusted_shares); none between shares of different methods
    or naive counts. ACC and PACC differences beside it as the sensitivity check."""
    records = []
    for p, (a, b) in enumerate(pairs):
        first = table[table["group"] == names[a]].reset_index(drop=True)
        second = table[table["group"] == names[b]].reset_index(drop=True)
        for c in range(len(first)):
            x, y = first.loc[c], second.loc[c]
            record = {
                "group_a": names[a],
                "group_b": names[b],
                "class": x["class"],
                "n_a": int(x["n"]),
                "n_b": int(y["n"]),
                "share_a": x["share"],
                "share_b": y["share"],
                "difference": x["share"] - y["share"],
                "difference_low": np.nan,
                "difference_high": np.nan,
                "difference_method": "",
                "naive_difference": x["naive_share"] - y["naive_share"],
            }
            methods = {x["share_method"], y["share_method"]}
            if methods <= set(GOLD_METHODS):
                _, low, high = difference_interval(
                    x["share"], x["share_low"], x["share_high"], y["share"], y["share_low"], y["share_high"]
                )
                record.update(difference_low=low, difference_high=high, difference_method="mover")
            elif len(methods) == 1 and methods <= set(METHODS) and estimates is not None:
                method = methods.pop()
                record["difference_low"] = estimates[f"{method}_difference_low"][p, c]
                record["difference_high"] = estimates[f"{method}_difference_high"][p, c]
                record["difference_method"] = f"{method}_bootstrap"
            else:
                record["difference_method"] = "none: " + " and ".join(sorted(methods))
            if estimates is not None:
                for method in METHODS:
                    for suffix in ("", "_low", "_high"):
                        record[f"{method}_difference{suffix}"] = estimates[f"{method}_difference{suffix}"][p, c]
            records.append(record)
    extra = [f"{m}_difference{s}" for m in ("acc", "pacc") for s in ("", "_low", "_high")] if estimates else []
    return pd.DataFrame(records, columns=[*DIFFERENCE_COLUMNS, *extra])


def check_label_shift(
    *, oof: dict | None, gold: pd.DataFrame | None, probs: np.ndarray, names: list[str], seed: int = 0
) -> dict:
    """label_shift.label_shift_check on the random gold rows (their labels, the corpus' probabilities) against the
    out-of-fold rows the confusion rates use; 'not tested', with why, when either is missing."""
    from weibolabel.stats.label_shift import label_shift_check

    if oof is None or gold is None:
        why = "no random gold sample (--gold_sample)" if gold is None else "no out-of-fold rates (--run)"
        return {"statistic": None, "p_value": None, "verdict": "not tested", "why": why}
    positions = gold["position"].to_numpy()
    check = label_shift_check(
        oof_gold=oof["gold"],
        oof_probs=oof["probs"],
        gold=gold["gold"].to_numpy(),
        gold_probs=probs[positions],
        seed=seed,
    )
    for entry in check["per_class"]:
        entry["name"] = names[entry["class"]]
    return check


def shares_summary(
    *,
    shares: pd.DataFrame,
    names: list[str],
    oof: dict | None,
    gold: pd.DataFrame | None,
    check: dict,
    adjustment: str,
    target_width: float,
) -> dict:
    """shares.json: the headline method (per class too), the label-shift check, the out-of-fold rows the confusion
    rates come from, and without a gold sample a warning with the gold rows a `target_width` interval needs."""
    whole = shares[shares["group"] == ""]
    headline = "ppi" if gold is not None else adjustment if oof is not None else "naive"
    summary = {
        "headline": headline,
        "headline_by_class": dict(zip(whole["class"], whole["share_method"])),
        "label_shift_check": check,
        "gold_rows": 0 if gold is None else len(gold),
    }
    if oof is not None:
        summary["confusion_rows"] = {k: oof[k] for k in ("confusion_rows", "rows_used", "rows_total", "left_out")}
        summary["confusion_rows"]["provenance"] = oof["provenance"]
        if gold is not None:
            known = {clean_text(t) for t in oof["texts"]}
            summary["gold_rows_in_training"] = int(sum(clean_text(t) in known for t in gold["text"]))
    if gold is None:
        summary["warning"] = (
            "the headline share is not ready to publish: "
            + (
                f"{adjustment.upper()} assumes the run's confusion rates hold on this corpus, and only a random "
                "gold sample can check it"
                if oof is not None
                else "the naive count is biased by the classifier's errors"
            )
            + "; draw one with select_for_annotation.py --strategy random."
        )
        if oof is not None:
            needed = gold_rows_needed(
                oof_gold=oof["gold"],
                oof_probs=oof["probs"],
                shares=whole["adjusted_share"].to_numpy(dtype=np.float64),
                width=target_width,
            )
            summary["gold_rows_needed"] = {
                "target_width": target_width,
                "per_class": dict(zip(names, needed.tolist())),
                "rows": int(needed.max()),
            }
    return summary


# ------------------------------------------------------------------------------------------------- report.md
def render_report(
    config: AnalyzeConfig,
    *,
    source: Path,
    statuses: pd.Series,
    metadata: dict,
    confidence: np.ndarray,
    oof: dict | None,
    no_adjustment: str,
    gold: pd.DataFrame | None,
    shares: pd.DataFrame,
    differences: pd.DataFrame,
    summary: dict,
    class_shares: pd.DataFrame,
    ngrams: pd.DataFrame,
    names: list[str],
    codes: dict[str, str],
) -> str:
    """analyze_labels' report.md, from the tables it wrote: the corpus, its class shares (naive, adjusted, PPI;
    predicted labels among all and confident rows), the characteristic n-grams, the shares per group and the files."""
    report = [
        f"# Labeled corpus: {source.name}",
        "",
        f"{int(statuses.sum())} rows; {len(confidence)} labeled (status 'ok'); "
        + ", ".join(f"{k}: {v}" for k, v in statuses.items() if k != "ok")
        + f". Model `{metadata.get('model')}` ({len(metadata.get('members', []))} checkpoint(s)), temperature "
        f"{float(metadata.get('temperature', 1.0)):.3f}, labeled {metadata.get('time', '?')}.",
        "",
        *_class_shares_section(
            config,
            oof=oof,
            no_adjustment=no_adjustment,
            gold=gold,
            shares=shares,
            class_shares=class_shares,
            summary=summary,
        ),
        *_confidence_section(config, confidence),
        "## Characteristic character n-grams per predicted class",
        "",
        "Log-odds ratio of each class against all others with an informative Dirichlet prior (Monroe et al. 2008), "
        f"as a z-score; counts are comments containing the n-gram (at least {config.min_ngram_count}).",
        "",
        frame_table(ngram_table(ngrams, names, config.top_ngrams)),
        "",
    ]
    if config.group_by:
        report += _group_section(
            config, with_gold=gold is not None, shares=shares, differences=differences, codes=codes
        )
    report += [
        "## Files",
        "",
        "- `shares.csv`: per group (empty = whole corpus) and class: n, naive, adjusted (and PPI, gold-only) shares "
        "with 95% intervals, acc_* and pacc_* for both adjustments, and the headline `share`, `share_low`, "
        "`share_high`, `share_method` (`shares.png`)",
        "- `shares.json`: the headline method, the label-shift check, the out-of-fold rows behind the confusion "
        "rates" + ("" if gold is not None else ", the gold rows a random sample needs"),
        "- `class_shares.csv`: count, share and Wilson interval per class and subset (`class_shares.png`)",
        "- `confidence_histogram.csv`: rows per confidence bin and predicted class (`confidence_histogram.png`)",
        "- `characteristic_ngrams.csv`: the n-grams above with their counts and z-scores",
    ]
    if config.group_by:
        report.append("- `group_shares.csv`: rows and predicted-label counts per group (`group_shares.png`)")
        report.append(
            "- `share_differences.csv`: every pair of groups and class: the headline difference with its 95% "
            "interval and method, the naive, ACC and PACC differences (`share_differences.png`)"
        )
    return "\n".join(report) + "\n"


def _class_shares_section(
    config: AnalyzeConfig,
    *,
    oof: dict | None,
    no_adjustment: str,
    gold: pd.DataFrame | None,
    shares: pd.DataFrame,
    class_shares: pd.DataFrame,
    summary: dict,
) -> list[str]:
    """The headline first (what it rests on, or the warning that it is not ready), the label-shift check, then
    every estimate side by side and the predicted-label shares."""
    adjusted_by = {"pacc": "PACC, on calibrated probabilities", "acc": "ACC, on predicted labels"}[config.adjustment]
    lines = ["## Class shares", ""]
    if gold is not None:
        lines += [
            f"**The shares to publish (headline) rest on the {len(gold)} rows of the random gold sample "
            f"`{config.gold_sample}` and assume nothing about the classifier.** PPI: the gold rows measure the "
            "model's bias on this very corpus and remove it, the model's probabilities on every row narrow the "
            "interval (t interval, finite-population correction: the target is this corpus' own share). A class "
            f"with fewer than {MIN_CLASS_ROWS} gold rows in or out of it gets the gold rows' own Wilson "
            "interval instead, whose coverage holds there where PPI's does not. The adjusted shares below are a "
            "sensitivity check.",
        ]
        if summary.get("gold_rows_in_training"):
            lines += [
                f"**Warning: {summary['gold_rows_in_training']} gold rows are also in the run's training data**; the "
                "fold models learned them, so the gold rows understate the model's errors. Keep the gold sample "
                "out of training (analyse with a run trained without it)."
            ]
    else:
        needed = summary.get("gold_rows_needed")
        lines += [
            f"**Warning: {summary['warning']}**"
            + (
                f" For a 95% interval of full width {needed['target_width']:.0%} on every class it needs about "
                f"{needed['rows']} gold rows (per class: "
                + ", ".join(f"{k} {v}" for k, v in needed["per_class"].items())
                + "; from this run's out-of-fold rates): "
                f"`select_for_annotation.py --strategy random --k {needed['rows']}`, then `--gold_sample`."
                if needed
                else ""
            ),
        ]
    lines += ["", frame_table(published_shares_table(shares)), ""]
    lines += _label_shift_lines(summary["label_shift_check"], oof is not None)
    lines += [
        "### Every estimate",
        "",
        "Labels are model predictions, not gold. The naive share counts predicted "
        "labels; it is biased by the classifier's errors, which are not symmetric.",
    ]
    if oof is not None:
        left_out = ", ".join(f"{v} {k}" for k, v in oof["left_out"].items())
        lines += [
            f"The adjusted share ({adjusted_by}) corrects for them with the confusion rates measured on the labeled "
            f"data's out-of-fold predictions (run `{config.run}`); **it assumes those rates hold on this corpus** "
            "(the class mix may differ, the way each class is written may not). Its 95% interval is a percentile "
            f"bootstrap ({config.bootstrap_replicates} replicates) over both the corpus rows and the out-of-fold rows. "
            f"The rates come from {oof['rows_used']} of the run's {oof['rows_total']} out-of-fold rows"
            + (f" (left out, chosen by a model or unknown: {left_out})" if left_out else "")
            + f"; how each was chosen: {oof['provenance']}.",
        ]
    else:
        lines += [f"**No adjusted shares: {no_adjustment}.**"]
    if gold is not None:
        lines += [
            "PPI and gold sample only: the headline's two parts for every class (PPI with its t interval, the gold "
            "rows alone with the Wilson interval), both with the finite-population correction."
        ]
    return [
        *lines,
        "",
        frame_table(headline_shares_table(shares)),
        "",
        "![class shares by method](shares.png)",
        "",
        "### Predicted labels among all and among confident rows",
        "",
        "95% Wilson intervals for a proportion: sampling noise only, not classification error.",
        "",
        frame_table(headline_table(class_shares, confident_subset(config.min_confidence))),
        "",
    ]


def _label_shift_lines(check: dict, adjusted: bool) -> list[str]:
    """What the label-shift check found and what it means for the adjusted shares."""
    lines = ["### Label-shift check", ""]
    if check["verdict"] == "not tested":
        return [*lines, f"Not tested: {check['why']}.", ""]
    lines.append(
        f"Do the confusion rates measured out of fold hold on this corpus? The random gold rows' mean probabilities "
        f"per true class against the out-of-fold rows' (permutation test, {check['permutations']} permutations): "
        f"statistic {check['statistic']:.2f}, p = {check['p_value']:.3g}: **{check['verdict']}**. "
        + (
            "The rates differ: the adjusted shares (ACC/PACC) rest on an assumption this corpus breaks, so they are "
            "biased and their intervals too narrow; use the headline."
            if check["verdict"] == "violated"
            else "No evidence that they differ, with "
            f"{check['gold_rows']} gold rows (a small sample finds only large differences); the adjusted shares "
            "may serve as a sensitivity check."
        )
    )
    rows = [
        [str(c["name"]), c["gold_rows"], c["oof_rows"], _rate(c, "gold_rate"), _rate(c, "oof_rate"), _rate(c, "p")]
        for c in check["per_class"]
    ]
    table = pd.DataFrame(
        rows,
        columns=[
            "true class",
            "gold rows",
            "out-of-fold rows",
            "own-class rate (gold)",
            "own-class rate (out of fold)",
            "p",
        ],
    )
    return [*lines, "", frame_table(table), ""]


def _rate(entry: dict, key: str) -> str:
    if key == "p":
        return f"{entry['p_value']:.3g}" if "p_value" in entry else "–"
    return f"{entry[key]:.3f}" if key in entry else "–"


def _confidence_section(config: AnalyzeConfig, confidence: np.ndarray) -> list[str]:
    confident = confidence >= config.min_confidence
    return [
        f"{int(confident.sum())} of {len(confidence)} rows ({np.mean(confident):.1%}) have confidence >= "
        f"{config.min_confidence}; median confidence {np.median(confidence):.3f}.",
        "",
        "![class shares](class_shares.png)",
        "",
        "![confidence histogram](confidence_histogram.png)",
        "",
    ]


def shown_differences(differences: pd.DataFrame) -> pd.DataFrame:
    """The rows of the first DIFFERENCES_SHOWN pairs of groups: those the report and the plot show."""
    shown = differences.drop_duplicates(["group_a", "group_b"]).head(DIFFERENCES_SHOWN)[["group_a", "group_b"]]
    return differences.merge(shown, on=["group_a", "group_b"])


def _group_section(
    config: AnalyzeConfig, *, with_gold: bool, shares: pd.DataFrame, differences: pd.DataFrame, codes: dict[str, str]
) -> list[str]:
    by = f"{config.group_by} (by month)" if config.group_by_month else config.group_by
    lines = [
        f"## Class shares by {by}",
        "",
        "Each cell: **the headline share [95% CI]** and its method"
        + (" (from the group's own gold rows where it has enough)" if with_gold else "")
        + ", then the adjusted share where there is one (naive share)"
        + (", then the PPI share" if with_gold else "")
        + f". Groups with fewer than {config.min_group_rows} labeled rows get no share. `code` is the group's "
        "label in the plot.",
        "",
        frame_table(group_shares_report_table(shares, codes)),
        "",
        "![shares by group](group_shares.png)",
        "",
    ]
    if differences.empty:
        return lines
    part = shown_differences(differences)
    table = pd.DataFrame(
        {
            "a − b": [f"{codes.get(a, a)} − {codes.get(b, b)}" for a, b in zip(part["group_a"], part["group_b"])],
            "class": part["class"],
            "difference [95% CI]": [
                format_share(r.difference, r.difference_low, r.difference_high) for r in part.itertuples()
            ],
            "method": part["difference_method"],
            "naive difference": [format_share(v) for v in part["naive_difference"]],
        }
    )
    return [
        *lines,
        f"### Differences between groups ({by})",
        "",
        "The headline shares' difference with its 95% interval: from the groups' own gold rows (independent "
        "samples) by MOVER (Newcombe's method for Wilson intervals); from the adjusted shares by the bootstrap, "
        "whose replicates share one confusion matrix, so its error, common to both groups, does not widen the "
        "difference. An interval that excludes 0 is a difference the data support. "
        f"The first {part[['group_a', 'group_b']].drop_duplicates().shape[0]} pairs; every pair in "
        "`share_differences.csv`.",
        "",
        frame_table(table),
        "",
        "![differences between groups](share_differences.png)",
        "",
    ]
