"""Cross-validated fine-tuning and sharded batch labeling of Chinese social-media comments."""

from __future__ import annotations

import contextlib
import re
from importlib import metadata

__version__ = "0.1.0"

# The oldest versions the test suite has run on; pyproject.toml's dependency floors say the same (tested). pip
# refuses older ones at install time; this check catches an environment that has them anyway (`pip install
# --no-deps`, a cluster's preinstalled torch) at the first import, before a job has done any work.
MINIMUM_VERSIONS = {"torch": "2.4", "transformers": "5.0", "accelerate": "1.2"}


def too_old(installed: dict[str, str], minimum: dict[str, str] = MINIMUM_VERSIONS) -> dict[str, str]:
    """{package: found version} for each installed version older than its minimum (compared as major.minor)."""

    def major_minor(version: str) -> tuple[int, ...]:
        found = re.match(r"(\d+)\.(\d+)", version)
        return tuple(int(part) for part in found.groups()) if found else ()

    return {
        package: installed[package]
        for package, floor in minimum.items()
        if major_minor(installed.get(package, "")) and major_minor(installed[package]) < major_minor(floor)
    }


def _installed_versions() -> dict[str, str]:
    found = {}
    for package in MINIMUM_VERSIONS:
        with contextlib.suppress(metadata.PackageNotFoundError):  # a missing one fails at its import, clearly
            found[package] = metadata.version(package)
    return found


if _old := too_old(_installed_versions()):
    raise ImportError(
        "weibolabel needs "
        + ", ".join(f"{package}>={MINIMUM_VERSIONS[package]} (found {version})" for package, version in _old.items())
        + ": upgrade with pip install "
        + " ".join(f"'{package}>={MINIMUM_VERSIONS[package]}'" for package in _old)
        + " (for torch on a GPU machine, the CUDA build: see scripts/install.sh)."
    )
