"""Which CUDA each torch wheel is built for and which NVIDIA driver runs it: the torch to install for a driver."""

from __future__ import annotations

import re

# The CUDA of PyPI's default Linux x86_64 torch wheel, read from pip's own metadata: `pip install --dry-run
# --ignore-installed --report r.json torch==X` lists the nvidia-cuda-runtime-cu12 (12.x) or cuda-toolkit (13.x)
# the wheel depends on. The newest patch of each release from the project's torch floor (2.4) to 2.14; 2.2 and 2.3
# are CUDA 12.1 builds as well, 2.15.0 a CUDA 13.2 one.
PYPI_TORCH_CUDA = {
    "2.4.1": "12.1",
    "2.5.1": "12.4",
    "2.6.0": "12.4",
    "2.7.1": "12.6",
    "2.8.0": "12.8",
    "2.9.1": "12.8",
    "2.10.0": "12.8",
    "2.11.0": "13.0",
    "2.12.1": "13.0",
    "2.13.0": "13.0",
    "2.14.1": "13.0",
}

# Other builds of the same releases on PyTorch's own index (https://download.pytorch.org/whl/cuXYZ), as PyTorch's
# "previous versions" page lists them (that index was not reachable where this table was made, so unlike the one
# above it is not read from pip's metadata); up to 2.9, the ones an older driver can use instead.
INDEX_TORCH_CUDA = {
    "2.4.1": ("11.8", "12.1", "12.4"),
    "2.5.1": ("11.8", "12.1", "12.4"),
    "2.6.0": ("11.8", "12.4", "12.6"),
    "2.7.1": ("11.8", "12.6", "12.8"),
    "2.8.0": ("12.6", "12.8", "12.9"),
    "2.9.1": ("12.6", "12.8", "13.0"),
}

# The lowest Linux x86_64 driver of each CUDA toolkit release (NVIDIA's CUDA Toolkit Release Notes, "CUDA Toolkit
# and Corresponding Driver Versions"). An older driver of the same major family may start the build through minor
# version compatibility (12.x: 525.60.13, 13.x: 580), with a limited feature set: not what a first run should
# depend on, so the advice below asks for the toolkit's own driver.
CUDA_DRIVER = {
    "11.8": "520.61.05",
    "12.1": "530.30.02",
    "12.4": "550.54.14",
    "12.6": "560.28.03",
    "12.8": "570.26",
    "12.9": "575.51.03",
    "13.0": "580.65.06",
}

INDEX_URL = "https://download.pytorch.org/whl/cu{digits}"


def _version_key(version: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", version)
    if not numbers:
        raise ValueError(f"not a version number: {version!r}")
    return tuple(int(number) for number in numbers)


def required_driver(cuda_version: str) -> str:
    """The lowest NVIDIA driver (Linux) that runs a torch build for this CUDA version, e.g. '12.4' -> '550.54.14'."""
    major_minor = ".".join(cuda_version.split("+")[0].split(".")[:2])
    if major_minor not in CUDA_DRIVER:
        raise ValueError(f"no driver known for CUDA {cuda_version!r}; known: {', '.join(CUDA_DRIVER)}")
    return CUDA_DRIVER[major_minor]


def driver_runs(driver_version: str, cuda_version: str) -> bool:
    """Whether this driver runs a torch build for this CUDA version (at the toolkit's own driver)."""
    return _version_key(driver_version) >= _version_key(required_driver(cuda_version))


def torch_for_driver(driver_version: str) -> str:
    """What to install for this driver: the newest torch whose PyPI wheel it runs, and PyTorch's index alternative."""
    runnable = [torch for torch, cuda in PYPI_TORCH_CUDA.items() if driver_runs(driver_version, cuda)]
    default = max(runnable, key=_version_key) if runnable else None
    alternatives = [
        (torch, cuda)
        for torch, builds in INDEX_TORCH_CUDA.items()
        for cuda in builds
        if driver_runs(driver_version, cuda) and (default is None or _version_key(torch) > _version_key(default))
    ]
    advice = []
    if default:
        advice.append(f"TORCH_VERSION={default} (PyPI's build, CUDA {PYPI_TORCH_CUDA[default]})")
    if alternatives:
        # The newest release first, then its newest CUDA build the driver runs.
        torch, cuda = max(alternatives, key=lambda pair: (_version_key(pair[0]), _version_key(pair[1])))
        digits = cuda.replace(".", "")
        # The +cuXYZ label too: without it pip keeps PyPI's build of the same release if that is installed already.
        advice.append(f"TORCH_VERSION={torch}+cu{digits} TORCH_INDEX_URL={INDEX_URL.format(digits=digits)}")
    if not advice:
        oldest = min(CUDA_DRIVER.values(), key=_version_key)
        return f"no torch build from 2.4 on runs on driver {driver_version}: ask for an NVIDIA driver >= {oldest}"
    newest = max(PYPI_TORCH_CUDA, key=_version_key)
    upgrade = f"; or ask for driver >= {required_driver(PYPI_TORCH_CUDA[newest])} (for torch {newest})"
    return " or ".join(advice) + (upgrade if not driver_runs(driver_version, PYPI_TORCH_CUDA[newest]) else "")
