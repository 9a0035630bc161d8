"""The report's Methods paragraph and references, written from the run's own settings so that what a paper says
was done is what was done. A pure function: the resolved config and the report's data summary in, Markdown out."""

from __future__ import annotations

import re

# The references a paragraph may cite, in the form reviewers expect (APA-like, with DOI or proceedings).
REFERENCES = {
    "devlin2019": (
        "Devlin, J., Chang, M.-W., Lee, K., & Toutanova, K. (2019). BERT: Pre-training of deep bidirectional "
        "transformers for language understanding. In *Proceedings of the 2019 Conference of the North American "
        "Chapter of the Association for Computational Linguistics: Human Language Technologies* (pp. 4171–4186). "
        "https://doi.org/10.18653/v1/N19-1423"
    ),
    "cui2021": (
        "Cui, Y., Che, W., Liu, T., Qin, B., & Yang, Z. (2021). Pre-training with whole word masking for Chinese "
        "BERT. *IEEE/ACM Transactions on Audio, Speech, and Language Processing, 29*, 3504–3514. "
        "https://doi.org/10.1109/TASLP.2021.3124365"
    ),
    "kohavi1995": (
        "Kohavi, R. (1995). A study of cross-validation and bootstrap for accuracy estimation and model selection. "
        "In *Proceedings of the 14th International Joint Conference on Artificial Intelligence* (Vol. 2, "
        "pp. 1137–1143)."
    ),
    "loshchilov2019": (
        "Loshchilov, I., & Hutter, F. (2019). Decoupled weight decay regularization. In *International Conference "
        "on Learning Representations (ICLR)*."
    ),
    "bengio2004": (
        "Bengio, Y., & Grandvalet, Y. (2004). No unbiased estimator of the variance of K-fold cross-validation. "
        "*Journal of Machine Learning Research, 5*, 1089–1105."
    ),
    "guo2017": (
        "Guo, C., Pleiss, G., Sun, Y., & Weinberger, K. Q. (2017). On calibration of modern neural networks. In "
        "*Proceedings of the 34th International Conference on Machine Learning* (PMLR 70, pp. 1321–1330)."
    ),
    "pedregosa2011": (
        "Pedregosa, F., Varoquaux, G., Gramfort, A., et al. (2011). Scikit-learn: Machine learning in Python. "
        "*Journal of Machine Learning Research, 12*, 2825–2830."
    ),
    "nadeau2003": (
        "Nadeau, C., & Bengio, Y. (2003). Inference for the generalization error. *Machine Learning, 52*(3), "
        "239–281. https://doi.org/10.1023/A:1024068626366"
    ),
    "mcnemar1947": (
        "McNemar, Q. (1947). Note on the sampling error of the difference between correlated proportions or "
        "percentages. *Psychometrika, 12*(2), 153–157. https://doi.org/10.1007/BF02295996"
    ),
    "dietterich1998": (
        "Dietterich, T. G. (1998). Approximate statistical tests for comparing supervised classification learning "
        "algorithms. *Neural Computation, 10*(7), 1895–1923. https://doi.org/10.1162/089976698300017197"
    ),
    "paszke2019": (
        "Paszke, A., Gross, S., Massa, F., et al. (2019). PyTorch: An imperative style, high-performance deep "
        "learning library. In *Advances in Neural Information Processing Systems 32* (pp. 8024–8035)."
    ),
    "wolf2020": (
        "Wolf, T., Debut, L., Sanh, V., et al. (2020). Transformers: State-of-the-art natural language processing. "
        "In *Proceedings of the 2020 Conference on Empirical Methods in Natural Language Processing: System "
        "Demonstrations* (pp. 38–45). https://doi.org/10.18653/v1/2020.emnlp-demos.6"
    ),
}


def describe_encoder(model_name_or_path: str, demo_model: bool) -> tuple[str, list[str]]:
    """How the Methods names the encoder, and whom it cites for it (judged from the model's name or directory)."""
    name = model_name_or_path.rstrip("/").split("/")[-1]
    if demo_model:
        return (
            f"a small BERT encoder (Devlin et al., 2019) initialised at random, without pretraining (`{name}`, the "
            "project's demo model on the bert-base-chinese vocabulary; not a result to publish)",
            ["devlin2019"],
        )
    if re.search(r"macbert", name, re.IGNORECASE):
        return f"the pretrained Chinese MacBERT `{name}` (Cui et al., 2021)", ["devlin2019", "cui2021"]
    if re.search(r"wwm", name, re.IGNORECASE):
        return (
            f"the Chinese BERT pretrained with whole word masking `{name}` (Chinese-BERT-wwm; Cui et al., 2021)",
            ["devlin2019", "cui2021"],
        )
    if re.fullmatch(r"bert-base-chinese", name, re.IGNORECASE):
        return (
            "the pretrained bert-base-chinese model (BERT-base, 12 layers, hidden size 768, released with BERT by "
            "Devlin et al., 2019)",
            ["devlin2019"],
        )
    return f"the pretrained encoder `{name}`, a BERT-style model (Devlin et al., 2019)", ["devlin2019"]


def _paired_test_sentence(test: dict) -> str:
    """The encoder-baseline comparison as report.md gives it: corrected resampled t-test, exact McNemar test."""
    macro, mcnemar = test["metrics"]["macro_f1"], test["mcnemar"]
    return (
        "The BERT model was compared with the baseline on the same folds by the per-fold difference in each "
        "metric, with a 95% confidence interval and p-value from the corrected resampled t-test (Nadeau & Bengio, "
        "2003), which allows for the overlap of the folds' training sets, and by McNemar's exact test on the "
        "out-of-fold predictions (McNemar, 1947; Dietterich, 1998): the macro-F1 difference was "
        f"{macro['mean_difference']:+.3f} (95% CI {macro['ci_low']:+.3f} to {macro['ci_high']:+.3f}, "
        f"p = {macro['p_value']:.3g}); {mcnemar['only_a_correct']:,} comments were classified correctly only by the "
        f"BERT model and {mcnemar['only_b_correct']:,} only by the baseline (p = {mcnemar['p_value']:.3g})."
    )


def _number(value: float) -> str:
    """2e-05 as 2e-5, 0.01 as 0.01: how a paper writes a hyperparameter."""
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + m[1].replace("+", "") + m[2], f"{value:g}")


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


SOFTWARE = "Models were trained with PyTorch (Paszke et al., 2019) and Hugging Face Transformers (Wolf et al., 2020)."


def methods_section(setup: dict, data: dict, calibration: dict | None = None, baseline: dict | None = None) -> str:
    """The `## Methods` section: one paragraph from `setup` (the resolved TrainConfig and `demo_model`), `data` (the
    report's data summary) and metrics.json's `calibration` and `baseline` entries, and the references it cites."""
    encoder, cited = describe_encoder(setup["model_name_or_path"], bool(setup.get("demo_model")))
    parts = [
        (_data_sentences(setup, data, encoder), []),
        (_training_sentences(setup, data), ["kohavi1995", "loshchilov2019", "bengio2004"]),
        _baseline_sentences(setup, baseline),
        _calibration_sentences(calibration),
        ([SOFTWARE], ["paszke2019", "wolf2020"]),
    ]
    sentences = [sentence for part, _ in parts for sentence in part]
    cited += [key for _, keys in parts for key in keys]
    references = "\n".join(sorted(f"- {REFERENCES[key]}" for key in dict.fromkeys(cited)))
    return (
        "## Methods\n\nWritten from this run's settings and data summary; paste it, then adapt the wording.\n\n"
        f"{' '.join(sentences)}\n\n### References\n\n{references}\n"
    )


def _data_sentences(setup: dict, data: dict, encoder: str) -> list[str]:
    """The model and its task, and which rows of the labeled file were used, dropped and merged."""
    verb = "trained" if setup.get("demo_model") else "fine-tuned"  # a demo model starts from random weights
    class_counts = data["class_counts"]
    dropped = data["empty_text_dropped"] + data["conflicting_duplicates_dropped"]
    classes = ", ".join(f"{name} {count:,}" for name, count in class_counts.items())
    return [
        f"We {verb} {encoder} with a classification head on the [CLS] token (BERT's pooler and a linear "
        f"layer) to assign each comment one of {len(class_counts)} classes.",
        f"Of the {_count(data['rows_read'], 'row')} in the labeled file, {data['rows_used']:,} were used "
        f"(per class: {classes}); {_count(dropped, 'row')} {'was' if dropped == 1 else 'were'} dropped "
        f"({data['empty_text_dropped']:,} with empty text and {data['conflicting_duplicates_dropped']:,} exact "
        "duplicates with conflicting labels), and "
        f"{_count(data['duplicates_merged'], 'exact duplicate')} (after whitespace normalisation) "
        f"{'was' if data['duplicates_merged'] == 1 else 'were'} merged into the copy kept.",
    ]


def _training_sentences(setup: dict, data: dict) -> list[str]:
    """The cross-validation, the training within each fold, the choice of epoch, and what is reported."""
    num_folds = setup["num_folds"]
    loss = (
        "cross-entropy weighted by inverse class frequency"
        if setup["class_weighted_loss"]
        else "unweighted cross-entropy"
    )
    batch = setup["per_device_batch_size"] * setup["gradient_accumulation_steps"]
    accumulation = (
        f" ({setup['per_device_batch_size']} × {setup['gradient_accumulation_steps']} accumulation steps)"
        if setup["gradient_accumulation_steps"] > 1
        else ""
    )
    truncated = data.get("truncated", 0)
    return [
        f"Performance was estimated by {num_folds}-fold stratified cross-validation (Kohavi, 1995) with shuffling "
        f"(seed {setup['seed']}); duplicates and near-duplicates (texts identical up to case, character width, "
        "whitespace and punctuation) were kept in the same fold, so that no test comment had a copy in training.",
        "Every fold started from the same initial weights, including the classification head.",
        f"Within each fold, a stratified {setup['validation_fraction']:.0%} of the training part was held out for "
        f"validation; the model was trained for {_count(setup['num_epochs'], 'epoch')} with AdamW "
        f"(Loshchilov & Hutter, 2019; peak learning rate {_number(setup['learning_rate'])}, weight decay "
        f"{_number(setup['weight_decay'])}, linear warm-up over the first {setup['warmup_ratio']:.0%} of updates and "
        f"linear decay to zero, gradient-norm clipping at {_number(setup['max_grad_norm'])}), batch size {batch}"
        f"{accumulation}, {loss}, and inputs truncated to {setup['max_length']} tokens "
        f"({_count(truncated, 'text')} affected).",
        "After each epoch the model was scored on the validation part, the epoch with the highest validation "
        "macro-F1 was kept (the earliest on ties), and the held-out test fold was scored once, with that epoch's "
        "model.",
        f"We report accuracy, macro-F1 and weighted-F1 as the mean ± sample standard deviation over the {num_folds} "
        "test folds, per-class precision, recall and F1, and the confusion matrix summed over the test folds; the "
        "standard deviation describes the spread between folds and is not a confidence interval, because the folds "
        "share training data (Bengio & Grandvalet, 2004).",
    ]


def _baseline_sentences(setup: dict, baseline: dict | None) -> tuple[list[str], list[str]]:
    """The classical baseline and the paired test against it, when the run has them; the references they cite."""
    if not (setup.get("baseline") and baseline):
        return ["No classical baseline was scored."], []
    sentences = [
        f"As a baseline, {baseline['description']} (scikit-learn; Pedregosa et al., 2011) was trained and "
        "tested on the same folds."
    ]
    cited = ["pedregosa2011"]
    if baseline.get("paired_test"):
        sentences.append(_paired_test_sentence(baseline["paired_test"]))
        cited += ["nadeau2003", "mcnemar1947", "dietterich1998"]
    return sentences, cited


def _calibration_sentences(calibration: dict | None) -> tuple[list[str], list[str]]:
    """Temperature scaling, when the run was calibrated; the reference it cites."""
    if not calibration:
        return [], []
    return [
        "Predicted probabilities were calibrated by temperature scaling (Guo et al., 2017): one temperature, "
        f"T = {calibration['temperature']:.3f}, was fitted on the out-of-fold predictions of all "
        f"{calibration['num_rows']:,} rows; the expected calibration error over {calibration['num_bins']} "
        f"equal-width confidence bins was {calibration['ece_before']:.3f} before and "
        f"{calibration['ece_after']:.3f} after."
    ], ["guo2017"]
