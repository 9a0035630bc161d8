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
    class, the headline share (from the random gold sample where there is one, else the adjusted share, else the
    naive count), the naive share, the ACC and PACC shares with bootstrap intervals (`adjustment` picks the
    adjusted one) and with a gold sample the PPI and gold-only shares. A group with fewer than `min_group_rows` rows
    (or gold rows, for PPI) gets a note instead. share_differences.csv: every pair of groups with numbers."""
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
    gold_label = np.full(len(predicted), -1)  # -1: not in the gold sample
    if gold is not None:
        gold_label[gold["position"].to_numpy()] = gold["gold"].to_numpy()

    records = []
    for i, (name, rows) in enumerate(groups):
        if i not in large:
            block = _shares_block(name, rows, names, note=f"too few rows (n = {len(rows)} < {min_group_rows})")
        else:
            block = _shares_block(name, rows, names, labels=predicted[rows])
            if estimates is not None:
                _add_adjusted_shares(block, estimates, large.index(i), adjustment)
        if gold is not None:
            block = _add_gold_shares(
                block, rows, probs=probs, gold_label=gold_label, large=i in large, min_rows=min_group_rows
            )
        records.append(block)
    table = pd.concat(records, ignore_index=True)
    gold_columns = ["ppi_share", "ppi_low", "ppi_high", "gold_n", "gold_share", "gold_low", "gold_high", "ppi_note"]
    ordered = [*SHARE_COLUMNS, *(c for c in gold_columns if c in table), *HEADLINE_COLUMNS]
    table = table[[*ordered, *(c for c in table.columns if c not in ordered)]]
    differences = share_differences(table, [groups[i][0] for i in compared], pairs, estimates)
    return table, differences


def _shares_block(
    name: str, rows: np.ndarray, names: list[str], *, labels: np.ndarray | None = None, note: str = ""
) -> pd.DataFrame:
    """A group's rows of shares.csv, a row per class, every estimate empty but the naive share of `labels`, which is
    also the headline; without `labels` (a group too small), none but the `note`."""
    block = pd.DataFrame({"group": name, "class": names, "n": len(rows)})
    estimates = [*SHARE_COLUMNS[3:], *(f"{m}_{s}" for m in METHODS for s in ("share", "low", "high"))]
    block = block.assign(**dict.fromkeys(estimates, np.nan), note=note)
    block = block.assign(**dict.fromkeys(HEADLINE_COLUMNS[:3], np.nan), share_method="")
    if labels is not None:
        block["naive_share"] = np.bincount(labels, minlength=len(block)) / len(labels)
        block["share"], block["share_method"] = block["naive_share"], "naive"
    return block


def _add_adjusted_shares(block: pd.DataFrame, estimates: dict[str, np.ndarray], index: int, adjustment: str) -> None:
    """The ACC and PACC shares of the `index`th group of `shares.adjusted_shares`; the `adjustment` one is also the
    adjusted share and the headline (until a gold sample replaces it)."""
    for method in METHODS:
        block[f"{method}_share"] = estimates[method][index]
        block[f"{method}_low"] = estimates[f"{method}_low"][index]
        block[f"{method}_high"] = estimates[f"{method}_high"][index]
    for suffix, headline in zip(("share", "low", "high"), HEADLINE_COLUMNS):
        block[f"adjusted_{suffix}"] = block[f"{adjustment}_{suffix}"]
        block[headline] = block[f"{adjustment}_{suffix}"]
    block["share_method"] = adjustment


def _add_gold_shares(
    block: pd.DataFrame, rows: np.ndarray, *, probs: np.ndarray, gold_label: np.ndarray, large: bool, min_rows: int
) -> pd.DataFrame:
    """The group's PPI, gold-only and headline shares (shares.headline_share) from its gold rows (the other rows are
    the unlabeled part); where the group or its gold rows are too few, a note, and the headline stays as it was."""
    in_gold = gold_label[rows] >= 0
    gold_rows, rest = rows[in_gold], rows[~in_gold]
    block = block.assign(ppi_note="", gold_n=len(gold_rows))
    if not (large and len(gold_rows) >= min_rows):
        return block.assign(ppi_note=f"too few gold rows (n = {len(gold_rows)} < {min_rows})")
    values = []
    for c in range(len(block)):
        truth = (gold_label[gold_rows] == c).astype(np.float64)
        ppi = ppi_finite_share(truth, probs[gold_rows, c], probs[rest, c])
        gold_only = wilson_finite_share(int(truth.sum()), len(gold_rows), len(rows))
        headline = headline_share(truth, probs[gold_rows, c], probs[rest, c])
        values.append([*ppi, *gold_only, headline["share"], headline["low"], headline["high"], headline["method"]])
    columns = ["ppi_share", "ppi_low", "ppi_high", "gold_share", "gold_low", "gold_high", *HEADLINE_COLUMNS]
    return block.drop(columns=HEADLINE_COLUMNS).join(pd.DataFrame(values, columns=columns))


DIFFERENCE_COLUMNS = ["group_a", "group_b", "class", "n_a", "n_b", "share_a", "share_b", "difference"]
DIFFERENCE_COLUMNS += ["difference_low", "difference_high", "difference_method", "naive_difference"]


def share_differences(
    table: pd.DataFrame, names: list[str], pairs: list[tuple[int, int]], estimates: dict | None
) -> pd.DataFrame:
    """share_differences.csv: per pair of groups and class, the headline shares' difference a - b with its 95%
    interval: from independent gold samples by MOVER, from the adjusted shares by the bootstrap whose replicates
    share one confusion matrix; none between different methods or naive counts. ACC and PACC differences beside it."""
    extra = [f"{m}_difference{s}" for m in METHODS for s in ("", "_low", "_high")] if estimates else []
    records = []
    for p, (a, b) in enumerate(pairs):
        first, second = (table[table["group"] == names[g]].to_dict("records") for g in (a, b))
        for c, (x, y) in enumerate(zip(first, second)):
            methods = {x["share_method"], y["share_method"]}
            low = high = np.nan
            if methods <= set(GOLD_METHODS):
                _, low, high = difference_interval(
                    x["share"], x["share_low"], x["share_high"], y["share"], y["share_low"], y["share_high"]
                )
                how = "mover"
            elif len(methods) == 1 and methods <= set(METHODS) and estimates is not None:
                how = f"{x['share_method']}_bootstrap"
                low = estimates[f"{x['share_method']}_difference_low"][p, c]
                high = estimates[f"{x['share_method']}_difference_high"][p, c]
            else:
                how = "none: " + " and ".join(sorted(methods))
            record = {
                "group_a": names[a],
                "group_b": names[b],
                "class": x["class"],
                "n_a": int(x["n"]),
                "n_b": int(y["n"]),
                "share_a": x["share"],
                "share_b": y["share"],
                "difference": x["share"] - y["share"],
                "difference_low": low,
                "difference_high": high,
                "difference_method": how,
                "naive_difference": x["naive_share"] - y["naive_share"],
            }
            records.append({**record, **{column: estimates[column][p, c] for column in extra}})
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
    gold_probs = probs[gold["position"].to_numpy()]
    check = label_shift_check(
        oof_gold=oof["gold"], oof_probs=oof["probs"], gold=gold["gold"].to_numpy(), gold_probs=gold_probs, seed=seed
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
        keys = ("confusion_rows", "rows_used", "rows_total", "left_out", "provenance")
        summary["confusion_rows"] = {k: oof[k] for k in keys}
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
