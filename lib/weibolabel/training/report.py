"""report.md: the tables a paper needs, built only from metrics.json's content."""

from __future__ import annotations

from weibolabel.stats.metrics import HEADLINE
from weibolabel.training.checks import checks_section
from weibolabel.training.methods import methods_section
from weibolabel.util.markdown import markdown_table

TITLES = {"accuracy": "Accuracy", "macro_f1": "Macro-F1", "weighted_f1": "Weighted-F1"}


def _pm(stat: dict) -> str:
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def render_report(metrics: dict) -> str:
    """report.md: the run's setup, headline scores (and the paired test against the baseline), the checks, per-fold,
    per-class and confusion tables, calibration, data, provenance and the Methods section."""
    setup, data, baseline = metrics["setup"], metrics["data"], metrics.get("baseline")
    calibration = metrics.get("calibration")
    out = [
        *_setup_lines(setup),
        *_headline_lines(metrics["summary"], baseline),
        *checks_section(metrics),
        *_per_fold_lines(metrics["folds"], metrics["summary"], baseline),
        *_per_class_lines(metrics["folds"], metrics["summary"], metrics["label_names"], baseline),
        *_confusion_lines(metrics["summary"], metrics["label_names"]),
        *_calibration_lines(calibration),
        *_data_lines(data, setup),
        *_provenance_lines(metrics),
        methods_section(setup, data, calibration, baseline),
    ]
    return "\n".join(out)


def _setup_lines(setup: dict) -> list[str]:
    """The title, a warning for a demo model, and how the cross-validation was run."""
    out = [f"# Cross-validated classification report: {setup['data']}", ""]
    if setup.get("demo_model"):
        out += [
            "> **Demo model.** The encoder was built from scratch (random initialisation, no pretraining) on the "
            "bert-base-chinese tokenizer, so these numbers show the pipeline working, not what a pretrained Chinese "
            "BERT achieves. Pass `--model_name_or_path` a real checkpoint for a result worth reporting.",
            "",
        ]
    return [
        *out,
        f"{setup['num_folds']}-fold stratified cross-validation (grouped so duplicate comments never straddle a "
        f"split), seed {setup['seed']}. Model `{setup['model_name_or_path']}`, {setup['num_epochs']} epochs per fold, "
        f"learning rate {setup['learning_rate']}, batch {setup['per_device_batch_size']} x "
        f"{setup['gradient_accumulation_steps']} accumulation, max length {setup['max_length']} tokens, "
        f"class-weighted loss: {'yes' if setup['class_weighted_loss'] else 'no'}. Within each fold, "
        f"{setup['validation_fraction']:.0%} of the training part is held out to pick the best epoch by macro-F1; the "
        "test fold is scored once, with that epoch's model. ± is the sample standard deviation over folds.",
        "",
    ]


def _headline_lines(summary: dict, baseline: dict | None) -> list[str]:
    """Mean ± std of the headline metrics, the baseline's beside them, and the paired test when there is one."""
    header = ["Model", *(TITLES[k] for k in HEADLINE)]
    rows = [["Fine-tuned encoder", *(_pm(summary[k]) for k in HEADLINE)]]
    if baseline:
        rows.append([f"Baseline: {baseline['description']}", *(_pm(baseline["summary"][k]) for k in HEADLINE)])
    out = ["## Headline", "", markdown_table(header, rows), ""]
    if baseline and baseline.get("paired_test"):
        out += paired_test_lines(baseline["paired_test"])
    return out


def _per_fold_lines(folds: list[dict], summary: dict, baseline: dict | None) -> list[str]:
    compared = {"accuracy": "Baseline accuracy", "macro_f1": "Baseline macro-F1"} if baseline else {}
    header = ["Fold", "Test rows", "Best epoch", *(TITLES[k] for k in HEADLINE), *compared.values()]
    rows = [
        [k, fold["num_test"], fold["best_epoch"], *(f"{fold['test'][m]:.3f}" for m in HEADLINE)]
        + [f"{baseline['folds'][k][m]:.3f}" for m in compared]
        for k, fold in enumerate(folds)
    ]
    mean_row = ["mean ± std", sum(f["num_test"] for f in folds), "", *(_pm(summary[m]) for m in HEADLINE)]
    mean_row += [_pm(baseline["summary"][m]) for m in compared]
    return ["## Per fold", "", markdown_table(header, [*rows, mean_row]), ""]


def _per_class_lines(folds: list[dict], summary: dict, names: list[str], baseline: dict | None) -> list[str]:
    header = ["Class", "Precision (mean)", "Recall (mean)", "F1", "Support"] + (["Baseline F1"] if baseline else [])
    rows = []
    for name in names:
        per_fold = [fold["test"]["per_class"][name] for fold in folds]
        precision, recall = (f"{sum(p[key] for p in per_fold) / len(per_fold):.3f}" for key in ("precision", "recall"))
        row = [name, precision, recall, _pm(summary["per_class_f1"][name]), sum(p["support"] for p in per_fold)]
        if baseline:
            row.append(_pm(baseline["summary"]["per_class_f1"][name]))
        rows.append(row)
    return ["## Per class (mean ± std over folds)", "", markdown_table(header, rows), ""]


def _confusion_lines(summary: dict, names: list[str]) -> list[str]:
    matrix = summary["confusion_matrix"]
    return [
        "## Confusion matrix (summed over test folds; rows gold, columns predicted)",
        "",
        markdown_table(["gold \\ predicted", *names], [[names[i], *matrix[i]] for i in range(len(names))]),
        "",
        "![confusion matrix](plots/confusion_matrix.png)",
        "",
        "![learning curves](plots/learning_curves.png)",
        "",
    ]


def _calibration_lines(calibration: dict | None) -> list[str]:
    """Temperature scaling's before and after (nothing for runs made before calibration existed)."""
    if not calibration:
        return []
    temperature = f"{calibration['temperature']:.3f}"
    before = ["Before", "1", f"{calibration['ece_before']:.4f}", f"{calibration['nll_before']:.4f}"]
    after = ["After", temperature, f"{calibration['ece_after']:.4f}", f"{calibration['nll_after']:.4f}"]
    return [
        "## Calibration",
        "",
        f"Temperature scaling fitted on the {calibration['fitted_on']} ({calibration.get('num_rows', '')} rows; "
        "each row scored by the fold model that did not train on it, so no test fold is reused). The labeling "
        "job divides every fold model's logits by T before the softmax. ECE: expected calibration error over "
        f"{calibration.get('num_bins', 15)} equal-width confidence bins; NLL: mean negative log-likelihood.",
        "",
        markdown_table(["", "T", "ECE", "NLL"], [before, after]),
        "",
        "![reliability diagram](plots/reliability.png)",
        "",
    ]


def _data_lines(data: dict, setup: dict) -> list[str]:
    return [
        "## Data",
        "",
        f"- rows read: {data['rows_read']}; used: {data['rows_used']}",
        f"- empty texts dropped: {data['empty_text_dropped']}",
        f"- exact duplicates merged (one copy kept): {data['duplicates_merged']}",
        f"- duplicates with conflicting labels dropped: {data['conflicting_duplicates_dropped']}",
        "- class counts: " + ", ".join(f"{name} {count}" for name, count in data["class_counts"].items()),
        f"- texts truncated at {setup['max_length']} tokens: {data.get('truncated', 0)}",
        "",
        "Every dropped or merged row is listed in `data_issues.csv`; the fold of every row in `folds.csv`; "
        "out-of-fold predictions in `oof_predictions.parquet`.",
        "",
    ]


def _provenance_lines(metrics: dict) -> list[str]:
    env = metrics["env"]
    return [
        "## Provenance",
        "",
        f"- code revision `{env['git_revision']}`, {env['hardware']['num_processes']} "
        f"process(es), mixed precision `{env['hardware']['mixed_precision']}`",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        f"- finished {metrics['finished']}",
        "",
    ]


def paired_test_lines(test: dict) -> list[str]:
    """The encoder against the baseline on the same folds: corrected resampled t-test per metric, McNemar."""
    rows = [
        [TITLES[m], f"{r['mean_difference']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]", f"{r['p_value']:.3g}"]
        for m, r in test["metrics"].items()
    ]
    mcnemar = test["mcnemar"]
    return [
        "Encoder minus baseline, mean over folds, with the corrected resampled t-test (Nadeau & Bengio 2003: the "
        "folds' training sets overlap, so the plain paired t-test would be too confident):",
        "",
        markdown_table(["Metric", "Difference [95% CI]", "p"], rows),
        "",
        f"McNemar's exact test on the out-of-fold predictions: {mcnemar['only_a_correct']} rows only the encoder gets "
        f"right, {mcnemar['only_b_correct']} only the baseline, p = {mcnemar['p_value']:.3g}.",
        "",
    ]
