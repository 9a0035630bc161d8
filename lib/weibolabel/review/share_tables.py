"""shares.csv, share_differences.csv and shares.json: per group and class the headline share and every other
estimate with its interval, the differences between groups, and the label-shift check (stats/ computes, this
module arranges)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from weibolabel.data.labeled import clean_text
from weibolabel.stats.shares import (
    METHODS,
    difference_interval,
    gold_rows_needed,
    headline_share,
    ppi_finite_share,
    wilson_finite_share,
)

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


def shown_differences(differences: pd.DataFrame) -> pd.DataFrame:
    """The rows of the first DIFFERENCES_SHOWN pairs of groups: those the report and the plot show."""
    shown = differences.drop_duplicates(["group_a", "group_b"]).head(DIFFERENCES_SHOWN)[["group_a", "group_b"]]
    return differences.merge(shown, on=["group_a", "group_b"])
