"""report.md of the corpus analysis: the headline first, the label-shift check, every estimate side by side, the
predicted-label shares, confidence, characteristic n-grams and the groups."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from weibolabel.review.analysis import confident_subset, headline_table, ngram_table
from weibolabel.review.share_tables import (
    format_share,
    group_shares_report_table,
    headline_shares_table,
    published_shares_table,
    shown_differences,
)
from weibolabel.stats.shares import MIN_CLASS_ROWS
from weibolabel.util.markdown import frame_table

if TYPE_CHECKING:
    from weibolabel.run.config import AnalyzeConfig


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
