"""report.md of the corpus analysis: the headline first, the label-shift check, every estimate side by side, the
predicted-label shares, confidence, characteristic n-grams and the groups."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from weibolabel.review.analysis import confident_subset
from weibolabel.review.share_tables import shown_differences
from weibolabel.stats.shares import MIN_CLASS_ROWS
from weibolabel.util.markdown import frame_table

if TYPE_CHECKING:
    from weibolabel.run.config import AnalyzeConfig

METHOD_NAMES = {
    "ppi": "PPI",
    "gold_wilson": "gold rows only (Wilson)",
    "exact": "labeled in full",
    "pacc": "PACC",
    "acc": "ACC",
    "naive": "naive count",
}


def render_report(
    config: AnalyzeConfig,
    *,
    source: Path,
    statuses: pd.Series,
    metadata: dict,
    confidence: np.ndarray,
    no_adjustment: str,
    shares: pd.DataFrame,
    differences: pd.DataFrame,
    summary: dict,
    class_shares: pd.DataFrame,
    ngrams: pd.DataFrame,
    names: list[str],
    codes: dict[str, str],
) -> str:
    """analyze_labels' report.md, from the tables it wrote (shares.json's `summary` says what the shares rest on): the
    corpus, its class shares, the predicted labels' shares, the characteristic n-grams, the groups and the files."""
    confident = confidence >= config.min_confidence
    with_gold = summary["headline"] == "ppi"  # a random gold sample was given
    report = [
        f"# Labeled corpus: {source.name}",
        "",
        f"{int(statuses.sum())} rows; {len(confidence)} labeled (status 'ok'); "
        + ", ".join(f"{k}: {v}" for k, v in statuses.items() if k != "ok")
        + f". Model `{metadata.get('model')}` ({len(metadata.get('members', []))} checkpoint(s)), temperature "
        f"{float(metadata.get('temperature', 1.0)):.3f}, labeled {metadata.get('time', '?')}.",
        "",
        "## Class shares",
        "",
        *_headline_lines(config, with_gold, summary),
        "",
        frame_table(_published_shares_table(shares)),
        "",
        *_label_shift_lines(summary["label_shift_check"]),
        *_every_estimate_lines(config, summary.get("confusion_rows"), no_adjustment, with_gold),
        "",
        frame_table(_every_estimate_table(shares)),
        "",
        "![class shares by method](shares.png)",
        "",
        "### Predicted labels among all and among confident rows",
        "",
        "95% Wilson intervals for a proportion: sampling noise only, not classification error.",
        "",
        frame_table(_predicted_shares_table(class_shares, confident_subset(config.min_confidence))),
        "",
        f"{int(confident.sum())} of {len(confidence)} rows ({np.mean(confident):.1%}) have confidence >= "
        f"{config.min_confidence}; median confidence {np.median(confidence):.3f}.",
        "",
        "![class shares](class_shares.png)",
        "",
        "![confidence histogram](confidence_histogram.png)",
        "",
        "## Characteristic character n-grams per predicted class",
        "",
        "Log-odds ratio of each class against all others with an informative Dirichlet prior (Monroe et al. 2008), "
        f"as a z-score; counts are comments containing the n-gram (at least {config.min_ngram_count}).",
        "",
        frame_table(_ngram_table(ngrams, names, config.top_ngrams)),
        "",
    ]
    if config.group_by:
        report += _group_section(config, with_gold=with_gold, shares=shares, differences=differences, codes=codes)
    report += [
        "## Files",
        "",
        "- `shares.csv`: per group (empty = whole corpus) and class: n, naive, adjusted (and PPI, gold-only) shares "
        "with 95% intervals, acc_* and pacc_* for both adjustments, and the headline `share`, `share_low`, "
        "`share_high`, `share_method` (`shares.png`)",
        "- `shares.json`: the headline method, the label-shift check, the out-of-fold rows behind the confusion "
        "rates" + ("" if with_gold else ", the gold rows a random sample needs"),
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


def _headline_lines(config: AnalyzeConfig, with_gold: bool, summary: dict) -> list[str]:
    """What the headline rests on, or the warning that it is not ready with the gold rows a random sample needs."""
    needed = summary.get("gold_rows_needed")
    if not with_gold and not needed:
        return [f"**Warning: {summary['warning']}**"]
    if not with_gold:
        return [
            f"**Warning: {summary['warning']}** For a 95% interval of full width {needed['target_width']:.0%} on "
            f"every class it needs about {needed['rows']} gold rows (per class: "
            + ", ".join(f"{k} {v}" for k, v in needed["per_class"].items())
            + "; from this run's out-of-fold rates): "
            f"`select_for_annotation.py --strategy random --k {needed['rows']}`, then `--gold_sample`."
        ]
    lines = [
        f"**The shares to publish (headline) rest on the {summary['gold_rows']} rows of the random gold sample "
        f"`{config.gold_sample}` and assume nothing about the classifier.** PPI: the gold rows measure the "
        "model's bias on this very corpus and remove it, the model's probabilities on every row narrow the "
        "interval (t interval, finite-population correction: the target is this corpus' own share). A class "
        f"with fewer than {MIN_CLASS_ROWS} gold rows in or out of it gets the gold rows' own Wilson "
        "interval instead, whose coverage holds there where PPI's does not. The adjusted shares below are a "
        "sensitivity check.",
    ]
    if summary.get("gold_rows_in_training"):
        lines.append(
            f"**Warning: {summary['gold_rows_in_training']} gold rows are also in the run's training data**; the "
            "fold models learned them, so the gold rows understate the model's errors. Keep the gold sample "
            "out of training (analyse with a run trained without it)."
        )
    return lines


def _every_estimate_lines(
    config: AnalyzeConfig, confusion: dict | None, no_adjustment: str, with_gold: bool
) -> list[str]:
    """What the naive, adjusted and PPI shares mean and what they assume; `confusion`: the out-of-fold rows used."""
    lines = [
        "### Every estimate",
        "",
        "Labels are model predictions, not gold. The naive share counts predicted "
        "labels; it is biased by the classifier's errors, which are not symmetric.",
    ]
    if confusion is not None:
        adjusted_by = {"pacc": "PACC, on calibrated probabilities", "acc": "ACC, on predicted labels"}
        left_out = ", ".join(f"{v} {k}" for k, v in confusion["left_out"].items())
        lines.append(
            f"The adjusted share ({adjusted_by[config.adjustment]}) corrects for them with the confusion rates "
            f"measured on the labeled data's out-of-fold predictions (run `{config.run}`); **it assumes those rates "
            "hold on this corpus** (the class mix may differ, the way each class is written may not). Its 95% "
            f"interval is a percentile bootstrap ({config.bootstrap_replicates} replicates) over both the corpus rows "
            f"and the out-of-fold rows. The rates come from {confusion['rows_used']} of the run's "
            f"{confusion['rows_total']} out-of-fold rows"
            + (f" (left out, chosen by a model or unknown: {left_out})" if left_out else "")
            + f"; how each was chosen: {confusion['provenance']}."
        )
    else:
        lines.append(f"**No adjusted shares: {no_adjustment}.**")
    if with_gold:
        lines.append(
            "PPI and gold sample only: the headline's two parts for every class (PPI with its t interval, the gold "
            "rows alone with the Wilson interval), both with the finite-population correction."
        )
    return lines


def _label_shift_lines(check: dict) -> list[str]:
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
    table = pd.DataFrame(
        {
            "true class": [str(c["name"]) for c in check["per_class"]],
            "gold rows": [c["gold_rows"] for c in check["per_class"]],
            "out-of-fold rows": [c["oof_rows"] for c in check["per_class"]],
            "own-class rate (gold)": [_number(c, "gold_rate", ".3f") for c in check["per_class"]],
            "own-class rate (out of fold)": [_number(c, "oof_rate", ".3f") for c in check["per_class"]],
            "p": [_number(c, "p_value", ".3g") for c in check["per_class"]],
        }
    )
    return [*lines, "", frame_table(table), ""]


def _number(entry: dict, key: str, spec: str) -> str:
    return format(entry[key], spec) if key in entry else "–"


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
        frame_table(_group_shares_table(shares, codes)),
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
            "difference [95% CI]": _intervals(part, "difference", "difference_low", "difference_high"),
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


def format_share(share: float, low: float | None = None, high: float | None = None) -> str:
    if share is None or pd.isna(share):
        return "–"
    if low is None or pd.isna(low):
        return f"{share:.1%}"
    return f"{share:.1%} [{low:.1%}, {high:.1%}]"


def _intervals(table: pd.DataFrame, share: str, low: str, high: str) -> list[str]:
    """`share [low, high]` of each row, from the three columns named."""
    return [format_share(*values) for values in zip(table[share], table[low], table[high])]


def _published_shares_table(shares: pd.DataFrame) -> pd.DataFrame:
    """The whole corpus' published shares: one row per class, the headline share, its interval and its method."""
    whole = shares[shares["group"] == ""]
    return pd.DataFrame(
        {
            "class": whole["class"].to_numpy(),
            "share [95% CI]": _intervals(whole, "share", "share_low", "share_high"),
            "method": [METHOD_NAMES.get(m, m) for m in whole["share_method"]],
        }
    )


def _every_estimate_table(shares: pd.DataFrame) -> pd.DataFrame:
    """The whole corpus: one row per class, naive and adjusted (and PPI, gold-only) side by side."""
    whole = shares[shares["group"] == ""]
    table = pd.DataFrame(
        {
            "class": whole["class"].to_numpy(),
            "rows predicted": (whole["naive_share"] * whole["n"]).round().astype(int).to_numpy(),
            "naive share": [format_share(v) for v in whole["naive_share"]],
            "adjusted [95% CI]": _intervals(whole, "adjusted_share", "adjusted_low", "adjusted_high"),
        }
    )
    if "ppi_share" in whole:
        table["PPI [95% CI]"] = _intervals(whole, "ppi_share", "ppi_low", "ppi_high")
        table["gold sample only [95% CI]"] = _intervals(whole, "gold_share", "gold_low", "gold_high")
    return table


def _group_shares_table(shares: pd.DataFrame, codes: dict[str, str]) -> pd.DataFrame:
    """Groups as rows, classes as columns; each cell the headline share [95% CI] and its method, then the
    adjusted (naive) and PPI shares beside it, or the reason there is none."""
    rows = []
    for group, block in shares[shares["group"] != ""].groupby("group", sort=False):
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


def _predicted_shares_table(class_shares: pd.DataFrame, confident_name: str) -> pd.DataFrame:
    """One row per class: count and share (95% CI) among all rows and among confident rows."""
    everything = class_shares[class_shares["subset"] == "all"]
    confident = class_shares[class_shares["subset"] == confident_name]
    return pd.DataFrame(
        {
            "class": everything["name"].to_numpy(),
            "rows": everything["count"].to_numpy(),
            "share [95% CI]": _intervals(everything, "share", "ci_low", "ci_high"),
            f"rows ({confident_name})": confident["count"].to_numpy(),
            f"share ({confident_name}) [95% CI]": _intervals(confident, "share", "ci_low", "ci_high"),
        }
    )


def _ngram_table(ngrams: pd.DataFrame, names: list[str], top: int) -> pd.DataFrame:
    """Classes as columns, rank as rows: `n-gram (z)` cells."""
    table = pd.DataFrame({"rank": range(1, top + 1)})
    for name in names:
        part = ngrams[ngrams["name"] == name].set_index("rank")
        table[name] = [
            f"{part.at[r, 'ngram']} ({part.at[r, 'z']:.1f})" if r in part.index else "" for r in table["rank"]
        ]
    return table
