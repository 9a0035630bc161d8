"""Which CUDA each PyPI torch release is built for, and the oldest NVIDIA Linux driver that runs that CUDA: the
advice a GPU node with an old driver needs (docs/cluster.md has the table)."""

from __future__ import annotations

# PyPI's default Linux x86_64 wheel of each torch release: its CUDA build.
TORCH_CUDA = {
    "2.4.1": "12.1",
    "2.5.1": "12.4",
    "2.6.0": "12.4",
    "2.7.1": "12.6",
    "2.8.0": "12.8",
    "2.9.1": "12.8",
    "2.13.0": "13.0",
}

# The oldest Linux driver that runs a CUDA release (NVIDIA's CUDA toolkit release notes, table 3): CUDA 11.x and
# 12.0-12.6 through minor-version compatibility, 12.8 and 13.0 as their toolkit's own minimum.
MINIMUM_DRIVER = {
    "11.8": "450.80.02",
    "12.1": "525.60.13",
    "12.4": "525.60.13",
    "12.6": "525.60.13",
    "12.8": "570.26",
    "13.0": "580.65.06",
}


def version_tuple(version: str) -> tuple[int, ...]:
    """'535.129.03' -> (535, 129, 3); '2.13.0+cpu' -> (2, 13, 0)."""
    return tuple(int(part) for part in version.split("+")[0].split(".") if part.isdigit())


def minimum_driver(cuda: str) -> str | None:
    """The oldest driver for a CUDA build ('12.6', or torch.version.cuda's '12.6.3'); None when not in the table."""
    return MINIMUM_DRIVER.get(".".join(cuda.split(".")[:2]))


def newest_torch_for_driver(driver: str) -> tuple[str, str] | None:
    """(torch release, its CUDA) of the newest PyPI torch whose CUDA build `driver` runs; None when none does."""
    runs = [
        (torch, cuda)
        for torch, cuda in TORCH_CUDA.items()
        if version_tuple(driver) >= version_tuple(MINIMUM_DRIVER[cuda])
    ]
    return max(runs, key=lambda pair: version_tuple(pair[0]), default=None)
