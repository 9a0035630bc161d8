"""Describe a labeled corpus: class shares a paper can defend, confidence, typical n-grams, shares per group.

    python jobs/analyze_labels.py --input labels.parquet --run runs/cv --gold_sample gold_filled.xlsx --group_by show

The input is the labeling job's Parquet file; only rows with status 'ok' carry a label. The headline share (the
`share` columns of shares.csv) is the one to publish: with --gold_sample (a uniform random sample drawn by
`select_for_annotation.py --strategy random` and labeled by people) it is the prediction-powered (PPI) share, which
assumes nothing about the classifier; without one it is the misclassification-adjusted share (PACC, or ACC with
--adjustment acc) of --run (the training run whose fold ensemble labeled the file; a file labeled by another
model is refused), which assumes the run's out-of-fold confusion rates hold on the corpus, and the report says how
many gold rows would make it publishable. With both, a label-shift check tests that assumption (shares.json). The
confusion rates use only training rows chosen without a model (--confusion_rows). Every estimate is in shares.csv
(ACC and PACC beside the headline as a sensitivity check), per group too with --group_by (a column carried by the
labeling job such as show, source_file, or a date column with --group_by_month), and the differences between
groups in share_differences.csv. The rest as before: Wilson intervals of the predicted shares over all and over
confident rows, the confidence histogram, the character 2-3-grams most typical of each predicted class. The output
directory holds report.md, the PNG plots and one CSV table behind every plot. docs/statistics.md explains the
methods and their assumptions.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from weibolabel.data.tables import write_table
from weibolabel.labeling.parts import read_metadata
from weibolabel.review.annotation import read_labeled_parquet
from weibolabel.run.config import AnalyzeConfig, parse_config
from weibolabel.run.layout import check_outputs, claim_output_directory
from weibolabel.util.errors import UserError, exit_status
from weibolabel.util.files import write_json, write_text


def main(argv: list[str] | None = None) -> int:
    config = parse_config(AnalyzeConfig, argv, description=__doc__)
    return exit_status(lambda: analyze(config))


def analyze(config: AnalyzeConfig) -> None:
    source, out = _check_options(config)
    frame, probs, schema = read_labeled_parquet(source)
    # scipy, scikit-learn and matplotlib take seconds to import: only once the input has been read.
    from weibolabel.review import analysis, analysis_report, share_inputs, share_tables
    from weibolabel.util import plots

    if frame.empty:
        raise UserError(f"{source}: no row has status 'ok', so there is nothing to analyse.")
    if config.group_by and config.group_by not in frame.columns:
        raise UserError(f"{source}: no column '{config.group_by}' to group by; the columns are {list(frame.columns)}.")
    if config.group_by_month and not config.group_by:
        raise UserError("--group_by_month needs --group_by DATE_COLUMN.")
    claim_output_directory(out, "analyze_labels")
    names, labels = schema.names, frame["label"].astype(int).to_numpy()
    confidence = frame["confidence"].astype(float).to_numpy()
    metadata = read_metadata(source)
    temperature = float(metadata.get("temperature", 1.0))

    # What the shares can be corrected with: the run's out-of-fold confusion and a gold sample drawn from the corpus.
    oof, no_adjustment = _run_predictions(config, metadata, names, temperature, source)
    gold = None
    if config.gold_sample:
        gold = share_inputs.read_gold_sample(config.gold_sample, frame, schema, encoding=config.gold_encoding)
    # The whole corpus first (named ''), then each group, largest first.
    groups, codes, values = analysis.corpus_groups(
        frame, group_by=config.group_by, by_month=config.group_by_month, max_groups=config.max_groups, source=source
    )
    shares, differences, summary = _write_shares(
        config, out, labels=labels, probs=probs, names=names, groups=groups, oof=oof, gold=gold, temperature=temperature
    )

    class_shares = analysis.shares_by_confidence(labels, confidence, names, config.min_confidence)
    write_table(class_shares, out / "class_shares.csv")
    plots.plot_class_shares(class_shares, out / "class_shares.png")
    histogram = analysis.confidence_histogram(confidence, labels, names)
    write_table(histogram, out / "confidence_histogram.csv")
    plots.plot_confidence_histogram(histogram, names, config.min_confidence, out / "confidence_histogram.png")
    # Tables only: plots have no CJK font.
    ngrams = analysis.characteristic_ngrams(
        frame["text"].tolist(), labels, names, config.top_ngrams, config.min_ngram_count
    )
    write_table(ngrams, out / "characteristic_ngrams.csv")
    if config.group_by:  # counts in group_shares.csv, estimates in shares.csv
        write_table(analysis.group_shares(values, labels, names, config.max_groups), out / "group_shares.csv")
        plots.plot_group_shares(
            analysis.with_naive_intervals(shares), codes, config.group_by, temperature, out / "group_shares.png"
        )
        write_table(differences, out / "share_differences.csv")
        if not differences.empty:
            shown = share_tables.shown_differences(differences)
            plots.plot_share_differences(shown, codes, config.group_by, out / "share_differences.png")

    report = analysis_report.render_report(
        config,
        source=source,
        statuses=pd.read_parquet(source, columns=["status"])["status"].value_counts(),
        metadata=metadata,
        confidence=confidence,
        no_adjustment=no_adjustment,
        shares=shares,
        differences=differences,
        summary=summary,
        class_shares=class_shares,
        ngrams=ngrams,
        names=names,
        codes=codes,
    )
    write_text(out / "report.md", report)
    print(f"wrote {out / 'report.md'} and {len(list(out.glob('*.csv')))} tables, {len(list(out.glob('*.png')))} plots")


def _check_options(config: AnalyzeConfig) -> tuple[Path, Path]:
    """The input and output paths, once every option is valid and no other job holds them."""
    if not config.input:
        raise UserError("--input is required (see --help).")
    if not 0 <= config.min_confidence <= 1:
        raise UserError("--min_confidence must be between 0 and 1.")
    if not 0 < config.target_width < 1:
        raise UserError("--target_width must be between 0 and 1 (e.g. 0.05 for an interval 5 points wide).")
    if config.bootstrap_replicates < 100:
        raise UserError("--bootstrap_replicates must be at least 100 for a 95% percentile interval.")
    source = Path(config.input)
    out = Path(config.output_dir) if config.output_dir else source.with_name(f"{source.stem}_analysis")
    reads = {"--input": source, "--run": config.run, "--gold_sample": config.gold_sample}
    check_outputs("analyze_labels", reads=reads, output_dir=out)
    return source, out


def _run_predictions(
    config: AnalyzeConfig, metadata: dict, names: list[str], temperature: float, source: Path
) -> tuple[dict | None, str]:
    """The run's out-of-fold predictions, scored with the temperature the labeling job applied to this file, once the
    file is known to be labeled by that run; (None, why not) without them."""
    from weibolabel.review import share_inputs

    if not config.run:
        return None, "no --run was given, so only naive shares are reported"
    oof, no_adjustment = share_inputs.read_run_predictions(config.run, names, temperature, config.confusion_rows)
    if oof is None:
        print(f"warning: {no_adjustment}.", file=sys.stderr)
        return None, no_adjustment
    moved = share_inputs.check_labeled_by_run(metadata, config.run, source)  # its rates describe only its own labels
    if moved:
        print(f"warning: {moved}.", file=sys.stderr)
    return oof, no_adjustment


def _write_shares(
    config: AnalyzeConfig, out: Path, *, labels, probs, names, groups, oof, gold, temperature: float
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The headline share and every other estimate per group, the differences between groups and the label-shift
    check: shares.csv, shares.png and shares.json (share_differences.csv is written with the groups)."""
    from weibolabel.review import share_tables
    from weibolabel.util import plots

    shares, differences = share_tables.shares_table(
        predicted=labels,
        probs=probs,
        names=names,
        groups=groups,
        oof=oof,
        gold=gold,
        adjustment=config.adjustment,
        replicates=config.bootstrap_replicates,
        seed=config.seed,
        min_group_rows=config.min_group_rows,
        by_month=config.group_by_month,
    )
    write_table(shares, out / "shares.csv")
    plots.plot_shares(shares, temperature, out / "shares.png")
    check = share_tables.check_label_shift(oof=oof, gold=gold, probs=probs, names=names, seed=config.seed)
    summary = share_tables.shares_summary(
        shares=shares,
        names=names,
        oof=oof,
        gold=gold,
        check=check,
        adjustment=config.adjustment,
        target_width=config.target_width,
    )
    write_json(out / "shares.json", summary)
    if gold is None:
        print(f"warning: {summary['warning']}", file=sys.stderr)
    elif check["verdict"] == "violated":
        print(
            f"warning: the label-shift check finds the run's confusion rates do not hold on this corpus "
            f"(p = {check['p_value']:.3g}): the adjusted shares are biased; the headline (PPI) does not use them.",
            file=sys.stderr,
        )
    return shares, differences, summary


if __name__ == "__main__":
    sys.exit(main())
