"""cuda_builds: the driver a torch wheel needs, and the torch to install for a driver."""

from __future__ import annotations

import pytest

from weibolabel.run.cuda_builds import CUDA_DRIVER, INDEX_TORCH_CUDA, PYPI_TORCH_CUDA, required_driver, torch_for_driver


def test_required_driver_reads_a_cuda_version_in_any_spelling():
    assert required_driver("12.4") == "550.54.14"
    assert required_driver("12.4.127") == "550.54.14"  # torch.version.cuda or the runtime wheel's version
    assert required_driver("13.0") == "580.65.06"
    with pytest.raises(ValueError, match=r"no driver known for CUDA '10\.2'"):
        required_driver("10.2")


def test_every_build_in_the_tables_has_a_known_driver():
    for cuda in [*PYPI_TORCH_CUDA.values(), *(c for builds in INDEX_TORCH_CUDA.values() for c in builds)]:
        assert cuda in CUDA_DRIVER


@pytest.mark.parametrize(
    ("driver", "default", "alternative"),
    [
        # The group's server: 535 runs PyPI's CUDA 12.1 build (torch 2.4), and a cu118 build of a newer torch.
        (
            "535.183.01",
            "TORCH_VERSION=2.4.1 ",
            "TORCH_VERSION=2.7.1+cu118 TORCH_INDEX_URL=https://download.pytorch.org/whl/cu118",
        ),
        (
            "550.54.15",
            "TORCH_VERSION=2.6.0 ",
            "TORCH_VERSION=2.7.1+cu118 TORCH_INDEX_URL=https://download.pytorch.org/whl/cu118",
        ),
        (
            "560.35.05",
            "TORCH_VERSION=2.7.1 ",
            "TORCH_VERSION=2.9.1+cu126 TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126",
        ),
        ("570.86.10", "TORCH_VERSION=2.10.0 ", None),
        ("525.147.05", None, "TORCH_VERSION=2.7.1+cu118 TORCH_INDEX_URL=https://download.pytorch.org/whl/cu118"),
    ],
)
def test_an_older_driver_gets_the_newest_torch_it_runs_and_the_driver_for_the_newest(driver, default, alternative):
    advice = torch_for_driver(driver)
    assert (default in advice) if default else "PyPI's build" not in advice
    assert (alternative in advice) if alternative else "TORCH_INDEX_URL" not in advice
    assert advice.endswith("or ask for driver >= 580.65.06 (for torch 2.14.1)")


def test_a_new_driver_gets_the_newest_torch_and_a_too_old_one_is_told_the_driver_to_ask_for():
    assert torch_for_driver("580.95.05") == "TORCH_VERSION=2.14.1 (PyPI's build, CUDA 13.0)"
    assert torch_for_driver("470.82.01") == (
        "no torch build from 2.4 on runs on driver 470.82.01: ask for an NVIDIA driver >= 520.61.05"
    )
    # Compared as numbers, not as text: "99" sorts after "535" as a string.
    assert "ask for an NVIDIA driver" in torch_for_driver("99.1")
