"""Describe a labeled corpus: class shares with confidence intervals, confidence, typical n-grams, groups.

    python jobs/analyze_labels.py --input labels.parquet --output_dir analysis/ --group_by show

The input is the labeling job's Parquet file; only rows with status 'ok' carry a label. Class shares come with
95% Wilson intervals, once over all labeled rows and once over rows with confidence >= --min_confidence (a
robustness check: if the two disagree, the uncertain rows lean towards some classes). The n-grams are the
character 2-3-grams most typical of each predicted class (log-odds ratio with an informative Dirichlet prior);
n-grams of only punctuation or emoji are left out. With --group_by COLUMN (e.g. source_file, or a column
carried by the labeling job such as show) the shares are also given per group. The output directory holds
report.md, the PNG plots and one CSV table behind every plot.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from weibolabel import analysis
from weibolabel.annotation import read_labeled_parquet
from weibolabel.config import parse_config
from weibolabel.errors import UserError
from weibolabel.parquet_io import read_metadata


@dataclass(frozen=True)
class AnalyzeConfig:
    """Corpus statistics of a labeled Parquet file, as a Markdown report with plots and CSV tables."""

    input: str | None = field(default=None, metadata={"help": "The labeling job's Parquet output (required)."})
    output_dir: str | None = field(default=None, metadata={"help": "Directory to write (default: <input>_analysis)."})
    min_confidence: float = field(default=0.8, metadata={"help": "Threshold of the 'confident rows' shares."})
    group_by: str | None = field(default=None, metadata={"help": "Column to split the shares by (e.g. source_file)."})
    max_groups: int = field(default=20, metadata={"help": "Largest groups shown; the rest are pooled as '(other)'."})
    top_ngrams: int = field(default=15, metadata={"help": "Characteristic n-grams listed per class."})
    min_ngram_count: int = field(default=3, metadata={"help": "Fewest comments an n-gram must occur in."})


def main(argv: list[str] | None = None) -> int:
    config = parse_config(AnalyzeConfig, argv, description=__doc__)
    try:
        analyze(config)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def analyze(config: AnalyzeConfig) -> None:
    # 1. The labeled rows, their predicted class and confidence.
    if not config.input:
        raise UserError("--input is required (see --help).")
    if not 0 <= config.min_confidence <= 1:
        raise UserError("--min_confidence must be between 0 and 1.")
    source = Path(config.input)
    frame, _, schema = read_labeled_parquet(source)
    if frame.empty:
        raise UserError(f"{source}: no row has status 'ok', so there is nothing to analyse.")
    if config.group_by and config.group_by not in frame.columns:
        raise UserError(f"{source}: no column '{config.group_by}' to group by; the columns are {list(frame.columns)}.")
    out = Path(config.output_dir) if config.output_dir else source.with_name(f"{source.stem}_analysis")
    out.mkdir(parents=True, exist_ok=True)
    names, labels = schema.names, frame["label"].astype(int).to_numpy()
    confidence = frame["confidence"].astype(float).to_numpy()
    statuses = pd.read_parquet(source, columns=["status"])["status"].value_counts()

    # 2. Class shares with Wilson intervals, over all rows and over confident rows only.
    confident_name = f"confidence >= {config.min_confidence}"
    shares = pd.concat(
        [
            analysis.class_shares(labels, names, "all"),
            analysis.class_shares(labels[confidence >= config.min_confidence], names, confident_name),
        ],
        ignore_index=True,
    )
    shares.to_csv(out / "class_shares.csv", index=False)
    analysis.plot_class_shares(shares, out / "class_shares.png")

    # 3. Confidence by predicted class.
    histogram = analysis.confidence_histogram(confidence, labels, names)
    histogram.to_csv(out / "confidence_histogram.csv", index=False)
    analysis.plot_confidence_histogram(histogram, names, config.min_confidence, out / "confidence_histogram.png")

    # 4. The character n-grams that set each predicted class apart (tables only: plots have no CJK font).
    ngrams = analysis.characteristic_ngrams(
        frame["text"].tolist(), labels, names, config.top_ngrams, config.min_ngram_count
    )
    ngrams.to_csv(out / "characteristic_ngrams.csv", index=False)

    # 5. Shares per group.
    groups = None
    if config.group_by:
        groups = analysis.group_shares(frame[config.group_by], labels, names, config.max_groups)
        groups.to_csv(out / "group_shares.csv", index=False)
        analysis.plot_group_shares(groups, names, config.group_by, out / "group_shares.png")

    # 6. report.md, from the tables above.
    metadata = read_metadata(source)
    report = [
        f"# Labeled corpus: {source.name}",
        "",
        f"{int(statuses.sum())} rows; {len(frame)} labeled (status 'ok'); "
        + ", ".join(f"{k}: {v}" for k, v in statuses.items() if k != "ok")
        + f". Model `{metadata.get('model')}` ({len(metadata.get('members', []))} checkpoint(s)), temperature "
        f"{metadata.get('temperature', 1.0):.3f}, labeled {metadata.get('time', '?')}.",
        "",
        "Labels are model predictions, not gold: shares describe what the model assigns. Intervals are 95% Wilson "
        "intervals for a proportion; they cover sampling noise only, not classification error.",
        "",
        "## Class shares",
        "",
        analysis.markdown_table(analysis.headline_table(shares, confident_name)),
        "",
        f"{int((confidence >= config.min_confidence).sum())} of {len(frame)} rows "
        f"({np.mean(confidence >= config.min_confidence):.1%}) have confidence >= {config.min_confidence}; "
        f"median confidence {np.median(confidence):.3f}.",
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
        analysis.markdown_table(analysis.ngram_table(ngrams, names, config.top_ngrams)),
        "",
    ]
    if groups is not None:
        shown = groups[["group", "plot_label", "rows", *(f"share_{n}" for n in names)]].copy()
        for n in names:
            shown[f"share_{n}"] = shown[f"share_{n}"].map(lambda v: f"{v:.1%}")
        report += [f"## Class shares by {config.group_by}", "", analysis.markdown_table(shown), ""]
        report += ["![shares by group](group_shares.png)", ""]
    report += [
        "## Files",
        "",
        "- `class_shares.csv`: count, share and Wilson interval per class and subset (`class_shares.png`)",
        "- `confidence_histogram.csv`: rows per confidence bin and predicted class (`confidence_histogram.png`)",
        "- `characteristic_ngrams.csv`: the n-grams above with their counts and z-scores",
    ]
    if groups is not None:
        report.append("- `group_shares.csv`: rows and class shares per group (`group_shares.png`)")
    (out / "report.md").write_text("\n".join(report) + "\n")
    print(f"wrote {out / 'report.md'} and {len(list(out.glob('*.csv')))} tables, {len(list(out.glob('*.png')))} plots")


if __name__ == "__main__":
    sys.exit(main())
