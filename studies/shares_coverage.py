"""Do the share intervals cover the truth when the project is used as people use it? A simulation of real use.

    python studies/shares_coverage.py            # the run recorded in docs/statistics.md
    python studies/shares_coverage.py --quick    # a smoke test (under a minute)
    python studies/shares_coverage.py --scenarios holds uncertainty --replicates 200 --bootstrap 200

Each replicate replays the workflow end to end on synthetic comments (a few features whose class signal varies
from row to row, so some rows are hard): a labeled set, partly chosen by the project's uncertainty selection
(`weibolabel.review.annotation.select_for_annotation` on the margin of a first round's ensemble); k-fold models on it
(stratified folds, a logistic regression per fold); a temperature fitted on their out-of-fold
predictions (`weibolabel.stats.calibration.calibrate`); the corpus scored by the fold ensemble as the labeling job
does it (mean of softmax(logits / T)); a gold sample drawn uniformly within each group of the corpus. Every human
label (the training set's and the gold sample's) is wrong with probability `gold_noise`; the target is the share
the annotators' codes have in the corpus (what labeling every comment would give). Per method and scenario: how
often the 95% interval holds the corpus's true share, with its Monte-Carlo standard error, and the mean width.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from weibolabel.review.annotation import select_for_annotation, uncertainty
from weibolabel.stats.calibration import calibrate, softmax
from weibolabel.stats.label_shift import label_shift_check
from weibolabel.stats.shares import adjusted_shares, difference_interval, headline_share, ppi_shares, wilson_interval

NAMES = ("production", "heritage", "culture", "irrelevant")
TRAIN_MIX = (0.30, 0.25, 0.25, 0.20)  # the shipped sample's labeled class mix
# Class means of the features: culture lies between heritage and production, irrelevant apart.
MEANS = np.array([[4.4, 0.0, 0.8, 0.0], [0.0, 4.4, 1.8, 0.0], [1.4, 2.6, 3.8, 0.0], [0.4, 0.4, 0.0, 4.0]])
METHODS = ("naive", "acc", "pacc", "acc_random", "pacc_random", "ppi", "headline", "gold")


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    # group name -> (rows in the corpus, class mix)
    groups: dict = field(
        default_factory=lambda: {"A": (3000, (0.15, 0.45, 0.10, 0.30)), "B": (3000, (0.30, 0.25, 0.30, 0.15))}
    )
    gold_per_group: int = 150
    labeled_random: int = 500
    labeled_selected: int = 0  # rows the uncertainty selection adds from the corpus
    corpus_clarity: tuple[float, float] = (0.35, 1.35)  # the class signal's scale per row: uniform on this range
    gold_noise: float = 0.07
    headline_holds: bool = True  # docs/statistics.md says the headline covers here; tests/test_shares_study.py checks


LABELED_CLARITY = (0.35, 1.35)
SMALL_GROUPS = {"A": (300, (0.03, 0.47, 0.20, 0.30)), "B": (300, (0.08, 0.40, 0.30, 0.22))}
SCENARIOS = {
    s.name: s
    for s in (
        Scenario("holds", "random labeled set, exact human labels; only the class mix shifts", gold_noise=0.0),
        Scenario("noise", "as holds, but 7% of human labels (training and gold) name another class"),
        Scenario(
            "uncertainty",
            "200 of 500 labeled rows picked from the corpus by uncertainty selection",
            labeled_random=300,
            labeled_selected=200,
            gold_noise=0.0,
        ),
        Scenario(
            "calibration",
            "random labeled set; the corpus's comments are harder than the labeled ones",
            corpus_clarity=(0.15, 1.15),
            gold_noise=0.0,
        ),
        Scenario(
            "real_use",
            "uncertainty selection, harder corpus and 7% label noise together",
            labeled_random=300,
            labeled_selected=200,
            corpus_clarity=(0.15, 1.15),
        ),
        Scenario(
            "small_30",
            "groups of 300 rows, 30 gold rows each, one class at 3% / 8%; 7% label noise",
            groups=SMALL_GROUPS,
            gold_per_group=30,
        ),
        Scenario(
            "small_100",
            "as small_30 with 100 gold rows per group (a third of the group)",
            groups=SMALL_GROUPS,
            gold_per_group=100,
        ),
    )
}


# ------------------------------------------------------------------------------------------------- the world
def draw_comments(
    num_rows: int, mix, clarity: tuple[float, float], noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Features of `num_rows` comments and the annotators' codes: the true class, or with probability `noise`
    another class (uniformly). The code is what a person would write in the Label column."""
    true_class = rng.choice(len(mix), size=num_rows, p=mix)
    scale = rng.uniform(*clarity, size=num_rows)[:, None]
    features = scale * MEANS[true_class] + rng.normal(0, 1, size=(num_rows, MEANS.shape[1]))
    wrong = rng.random(num_rows) < noise
    other = (true_class + rng.integers(1, len(mix), size=num_rows)) % len(mix)
    return features, np.where(wrong, other, true_class)


def fold_ensemble(
    features: np.ndarray, codes: np.ndarray, corpus_features: np.ndarray, *, num_folds: int, seed: int
) -> dict[str, np.ndarray]:
    """What jobs/train.py and jobs/label_corpus.py produce: out-of-fold probabilities, the fitted temperature, and
    the corpus scored by the fold ensemble (mean over fold models of softmax(logits / T))."""
    # The folds make_folds gives when no two comments are near-copies (its StratifiedGroupKFold with one group per
    # row makes the same kind of split, at ten times the cost over thousands of replicates).
    splitter = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    oof, corpus_logits = np.zeros((len(codes), len(NAMES))), []
    for train, test in splitter.split(features, codes):
        model = LogisticRegression(max_iter=500).fit(features[train], codes[train])
        oof[test] = model.predict_proba(features[test])
        corpus_logits.append(model.predict_log_proba(corpus_features))
    summary, oof_calibrated = calibrate(oof, codes)
    temperature = summary["temperature"]
    corpus = np.mean([softmax(logits, temperature) for logits in corpus_logits], axis=0)
    return {"oof": oof_calibrated, "corpus": corpus, "temperature": temperature}


def labeled_set(
    scenario: Scenario,
    corpus_features: np.ndarray,
    corpus_codes: np.ndarray,
    rng: np.random.Generator,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random labeled set from the training population, plus (if the scenario says so) the corpus rows the
    project's selection picks by the margin of a first round's ensemble (the annotation loop of the README).
    Returns features, codes, and which rows the selection chose."""
    features, codes = draw_comments(scenario.labeled_random, TRAIN_MIX, LABELED_CLARITY, scenario.gold_noise, rng)
    if not scenario.labeled_selected:
        return features, codes, np.zeros(len(codes), bool)
    first = fold_ensemble(features, codes, corpus_features, num_folds=5, seed=seed)
    probs = first["corpus"]
    row_ids = np.arange(len(probs))
    texts = [f"comment {i}" for i in row_ids]
    frame = pd.DataFrame(
        {"row_id": row_ids, "text": texts, "label": probs.argmax(axis=1), "confidence": probs.max(axis=1)}
    )
    picked = select_for_annotation(frame, uncertainty(probs, "margin"), scenario.labeled_selected, 0.5)
    rows = picked["row_id"].to_numpy(dtype=np.int64)
    selected = np.r_[np.zeros(len(codes), bool), np.ones(len(rows), bool)]
    return np.concatenate([features, corpus_features[rows]]), np.concatenate([codes, corpus_codes[rows]]), selected


# ------------------------------------------------------------------------------------------------- one replicate
def one_replicate(scenario: Scenario, *, seed: int, bootstrap: int) -> dict:
    """Per method: covered and width, [groups, classes] for the shares and [classes] for group A - group B; the
    label-shift check's verdict; the headline's method per share; mean own-class probabilities."""
    rng = np.random.default_rng(seed)
    parts = [
        draw_comments(size, mix, scenario.corpus_clarity, scenario.gold_noise, rng)
        for size, mix in scenario.groups.values()
    ]
    corpus_features, corpus_codes = (np.concatenate(column) for column in zip(*parts))
    bounds = np.cumsum([0] + [len(codes) for _, codes in parts])
    groups = [np.arange(bounds[g], bounds[g + 1]) for g in range(len(parts))]
    num_classes = len(NAMES)
    truth = np.stack([np.bincount(corpus_codes[rows], minlength=num_classes) / len(rows) for rows in groups])

    features, codes, selected = labeled_set(scenario, corpus_features, corpus_codes, rng, seed)
    run = fold_ensemble(features, codes, corpus_features, num_folds=5, seed=seed)
    corpus_probs, predicted, oof = run["corpus"], run["corpus"].argmax(axis=1), run["oof"]

    # Every estimate: (share, low, high) per group and class; difference (A - B, low, high) per class.
    estimate = {m: np.empty((3, *truth.shape)) for m in METHODS}
    for g, rows in enumerate(groups):
        counts = np.bincount(predicted[rows], minlength=num_classes)
        estimate["naive"][:, g] = [counts / len(rows), *wilson_interval(counts, len(rows))]
    difference = {}
    # ACC/PACC as before issue 28 (every labeled row measures the rates) and from the rows no model chose;
    # bootstrap=0 leaves them out (the test suite's quick run checks the headline only).
    for suffix, keep in (("", np.ones(len(codes), bool)), ("_random", ~selected)) if bootstrap else ():
        adjusted = adjusted_shares(
            corpus_predicted=predicted,
            corpus_probs=corpus_probs,
            oof_gold=codes[keep],
            oof_predicted=oof[keep].argmax(axis=1),
            oof_probs=oof[keep],
            groups=groups,
            replicates=bootstrap,
            seed=seed,
            pairs=[(0, 1)],
        )
        for method in ("acc", "pacc"):
            estimate[method + suffix] = np.stack([adjusted[f"{method}{k}"] for k in ("", "_low", "_high")])
            difference[method + suffix] = tuple(adjusted[f"{method}_difference{k}"][0] for k in ("", "_low", "_high"))
        if not selected.any():  # the same rows: no second run needed
            for method in ("acc", "pacc"):
                estimate[method + "_random"], difference[method + "_random"] = estimate[method], difference[method]
            break
    headline_methods = []
    gold_rows_all = []
    for g, rows in enumerate(groups):
        gold_rows = np.sort(rng.choice(rows, size=scenario.gold_per_group, replace=False))
        gold_rows_all.append(gold_rows)
        rest = np.setdiff1d(rows, gold_rows)
        table = ppi_shares(
            gold=corpus_codes[gold_rows], gold_probs=corpus_probs[gold_rows], unlabeled_probs=corpus_probs[rest]
        )
        for method in ("ppi", "gold"):
            estimate[method][:, g] = [table[f"{method}_{k}"] for k in ("share", "low", "high")]
        for c in range(num_classes):
            result = headline_share(corpus_codes[gold_rows] == c, corpus_probs[gold_rows, c], corpus_probs[rest, c])
            estimate["headline"][:, g, c] = [result[k] for k in ("share", "low", "high")]
            headline_methods.append(result["method"])
    for method in ("naive", "ppi", "gold", "headline"):  # independent groups: MOVER on the two intervals
        by_class = [
            difference_interval(*estimate[method][:, 0, c], *estimate[method][:, 1, c]) for c in range(num_classes)
        ]
        difference[method] = tuple(np.array(column) for column in zip(*by_class))
    true_difference = truth[0] - truth[1]
    gold_rows = np.concatenate(gold_rows_all)
    check = label_shift_check(
        oof_gold=codes,
        oof_probs=oof,
        gold=corpus_codes[gold_rows],
        gold_probs=corpus_probs[gold_rows],
        permutations=1000,
        seed=seed,
    )
    return {
        "shares": {
            m: ((low <= truth) & (truth <= high), high - low)
            for m, (_, low, high) in estimate.items()
            if m in difference
        },
        "differences": {
            m: ((low <= true_difference) & (true_difference <= high), high - low)
            for m, (_, low, high) in difference.items()
        },
        "truth": truth,
        "verdict": check["verdict"],
        "headline_methods": headline_methods,
        "own_class_corpus": corpus_probs[np.arange(len(corpus_codes)), corpus_codes].mean(),
        "own_class_oof": oof[np.arange(len(codes)), codes].mean(),
    }


# ------------------------------------------------------------------------------------------------- summary
def coverage_row(hits: np.ndarray, widths: np.ndarray) -> dict:
    """Coverage with its Monte-Carlo standard error (the replicates, axis 0, are the independent units)."""
    hits = hits.astype(float)
    per_replicate = hits.reshape(len(hits), -1).mean(axis=1)
    se = per_replicate.std(ddof=1) / np.sqrt(len(hits)) if len(hits) > 1 else float("nan")
    return {"coverage": float(per_replicate.mean()), "mc_se": float(se), "mean_width": float(widths.mean())}


def simulate(scenario: Scenario, *, replicates: int, bootstrap: int, seed: int) -> tuple[pd.DataFrame, dict]:
    """One row per method: coverage of the shares (all groups and classes) and of the rarest class of each group,
    coverage of the group difference A - B; and the scenario's facts (check's alarm rate, own-class probability)."""
    records = [one_replicate(scenario, seed=seed * 1_000_003 + r, bootstrap=bootstrap) for r in range(replicates)]
    rare = np.stack([r["truth"].argmin(axis=1) for r in records])  # [replicates, groups]
    rows = []
    for method in [m for m in METHODS if m in records[0]["shares"]]:
        hits = np.stack([r["shares"][method][0] for r in records])  # [replicates, groups, classes]
        widths = np.stack([r["shares"][method][1] for r in records])
        rare_hits = np.take_along_axis(hits, rare[:, :, None], axis=2)
        difference = coverage_row(*(np.stack([r["differences"][method][i] for r in records]) for i in (0, 1)))
        rows.append(
            {
                "scenario": scenario.name,
                "method": method,
                **coverage_row(hits, widths),
                "coverage_rarest": float(rare_hits.mean()),
                **{f"difference_{k}": v for k, v in difference.items()},
            }
        )
    verdicts = [r["verdict"] for r in records]
    methods = [m for r in records for m in r["headline_methods"]]
    facts = {
        "replicates": replicates,
        "violated": verdicts.count("violated") / len(verdicts),
        "not_tested": verdicts.count("not tested") / len(verdicts),
        "headline_fallback": 1 - methods.count("ppi") / len(methods),
        "own_class_oof": float(np.mean([r["own_class_oof"] for r in records])),
        "own_class_corpus": float(np.mean([r["own_class_corpus"] for r in records])),
    }
    return pd.DataFrame(rows), facts


def markdown(table: pd.DataFrame) -> str:
    """The tables of docs/statistics.md: per method (rows) and scenario (columns), coverage ± its MC standard error
    and the mean width in brackets: of the shares, of the difference between groups A and B, of the rarest class."""
    methods, scenarios = list(dict.fromkeys(table["method"])), list(dict.fromkeys(table["scenario"]))
    by_cell = table.set_index(["method", "scenario"])
    cell_formats = {
        "shares": "{coverage:.3f} ± {mc_se:.3f} ({mean_width:.3f})",
        "difference A - B": "{difference_coverage:.3f} ± {difference_mc_se:.3f} ({difference_mean_width:.3f})",
        "rarest class": "{coverage_rarest:.3f}",
    }
    blocks = []
    for title, cell in cell_formats.items():
        lines = [f"| {title} | " + " | ".join(scenarios) + " |", "|---" * (len(scenarios) + 1) + "|"]
        for method in methods:
            cells = [cell.format(**by_cell.loc[(method, scenario)].to_dict()) for scenario in scenarios]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--replicates", type=int, default=150, help="Simulated workflows per scenario.")
    parser.add_argument("--bootstrap", type=int, default=100, help="Bootstrap replicates of ACC/PACC per workflow.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="Smoke test: 8 replicates, 100 bootstrap draws.")
    args = parser.parse_args(argv)
    if args.quick:
        args.replicates, args.bootstrap = 8, 100
    started = time.perf_counter()
    tables = []
    with threadpool_limits(1):  # thousands of tiny fits: threads only add overhead
        for name in args.scenarios:
            table, facts = simulate(
                SCENARIOS[name], replicates=args.replicates, bootstrap=args.bootstrap, seed=args.seed
            )
            alarm, alarm_se = facts["violated"], np.sqrt(facts["violated"] * (1 - facts["violated"]) / args.replicates)
            print(
                f"{name}: {SCENARIOS[name].description}. Label-shift check: 'violated' in {alarm:.1%} "
                f"of replicates (MC se {alarm_se:.1%})"
                f", 'not tested' in {facts['not_tested']:.1%}; headline fell back to gold-only Wilson for "
                f"{facts['headline_fallback']:.1%} of shares; mean own-class probability {facts['own_class_oof']:.2f}"
                f" out of fold, {facts['own_class_corpus']:.2f} on the corpus",
                flush=True,
            )
            tables.append(table)
    print(markdown(pd.concat(tables, ignore_index=True)))
    print(
        f"{args.replicates} replicates per scenario, {args.bootstrap} bootstrap draws, seed {args.seed}; "
        f"{time.perf_counter() - started:.0f} s on {cpu_model()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
