"""Which device a job runs on: the GPUs the node shows (SLURM, CUDA_VISIBLE_DEVICES, nvidia-smi, the driver) against
the GPUs torch can use, and the one message when they disagree.

A CPU build of torch, or a CUDA build newer than the driver, sees no GPU: unchecked, a job on a GPU node would run
on its CPU with only a log line. Every GPU job calls `check_device` before any work, and the doctor prints the same
verdict; the CPU is used there only when asked for (--device cpu, DEVICE=cpu). Imports no torch.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from weibolabel.run.cuda_builds import driver_runs, required_driver, torch_for_driver
from weibolabel.util.errors import UserError

DEVICES = ("auto", "cpu")
CPU_CHOICE = "run on the CPU on purpose with DEVICE=cpu (scripts/launch.sh, slurm/*.sh) or --device cpu (a job)"
# One line per GPU: what a node's nvidia-smi says without torch (compute_cap needs driver 510 or newer).
NVIDIA_SMI_QUERY = "--query-gpu=name,driver_version,compute_cap,memory.free,memory.total"
NVIDIA_SMI_TIMEOUT_S = 20  # a hung driver must not hang the launch


@dataclass(frozen=True)
class Gpu:
    name: str
    compute_capability: tuple[int, int] | None
    free_mib: int | None
    total_mib: int | None


@dataclass(frozen=True)
class NodeGpus:
    """What the node shows, without torch: GPU counts by source, the GPUs nvidia-smi lists, the driver."""

    counts: dict[str, int] = field(default_factory=dict)  # "SLURM_GPUS_ON_NODE=4" -> 4, "nvidia-smi" -> 4, ...
    gpus: tuple[Gpu, ...] = ()
    driver: str | None = None
    hidden: str | None = None  # "CUDA_VISIBLE_DEVICES=''" when it hides every GPU (the user's choice)

    @property
    def seen(self) -> int:
        return 0 if self.hidden else max(self.counts.values(), default=0)

    def describe(self) -> str:
        if self.hidden:
            return f"no GPU (hidden by {self.hidden})"
        if not self.seen:
            return "no GPU (none in SLURM's variables, CUDA_VISIBLE_DEVICES, nvidia-smi or the NVIDIA driver)"
        names = sorted({gpu.name for gpu in self.gpus})
        sources = ", ".join(source if "=" in source else f"{source}: {count}" for source, count in self.counts.items())
        return (
            f"{self.seen} GPU(s)" + (f" ({', '.join(names)})" if names else "") + f" [{sources}] with NVIDIA driver "
            f"{self.driver or 'of unknown version (no nvidia-smi)'}"
        )


@dataclass(frozen=True)
class TorchGpus:
    """What torch makes of them."""

    version: str
    cuda: str | None  # torch.version.cuda; None for a CPU build
    usable: int  # GPUs torch can compute on (0 when torch.cuda.is_available() is False)
    error: str | None = None  # torch's own reason, when it gave one ("The NVIDIA driver on your system is too old")

    def needed_driver(self) -> str | None:
        """The lowest driver for torch's CUDA build; None for a CPU build or a CUDA the table does not know."""
        try:
            return required_driver(self.cuda) if self.cuda else None
        except ValueError:
            return None

    def describe(self) -> str:
        return f"torch {self.version}, " + (f"a CUDA {self.cuda} build" if self.cuda else "a CPU build")


def count_visible_devices(value: str) -> int:
    """CUDA_VISIBLE_DEVICES="0,1" -> 2: CUDA stops at the first entry that is not a device (an index or a GPU-/MIG-
    UUID); "" and "-1" hide every GPU (as slurm/launch.sh counts them)."""
    count = 0
    for entry in value.split(","):
        if not re.fullmatch(r"\s*(\d+|GPU-[\w-]+|MIG-[\w/-]+)\s*", entry):
            break
        count += 1
    return count


def node_gpus() -> NodeGpus:
    """The GPUs this node shows its processes, from SLURM's variables, CUDA_VISIBLE_DEVICES and nvidia-smi."""
    counts = {}
    for variable in ("SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS"):
        value = os.environ.get(variable, "").strip()
        if value:  # a count (SLURM_GPUS_ON_NODE) or a list of indices ("0,1,2,3")
            count = int(value) if variable == "SLURM_GPUS_ON_NODE" and value.isdigit() else len(value.split(","))
            counts[f"{variable}={value}"] = count
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hidden = None
    if visible is not None:
        counts[f"CUDA_VISIBLE_DEVICES={visible}"] = count_visible_devices(visible)
        if count_visible_devices(visible) == 0:
            hidden = f"CUDA_VISIBLE_DEVICES='{visible}'"
    gpus, driver = nvidia_smi()
    if gpus:
        counts["nvidia-smi"] = len(gpus)
    driver = driver or proc_driver_version()
    if driver and not gpus and Path("/proc/driver/nvidia/gpus").is_dir():
        counts["/proc/driver/nvidia"] = len(list(Path("/proc/driver/nvidia/gpus").iterdir()))
    return NodeGpus(counts=counts, gpus=tuple(gpus), driver=driver, hidden=hidden)


def nvidia_smi() -> tuple[list[Gpu], str | None]:
    """The GPUs nvidia-smi lists (every GPU of the node, whatever CUDA_VISIBLE_DEVICES hides) and the driver."""
    if shutil.which("nvidia-smi") is None:
        return [], None
    try:
        result = subprocess.run(
            ["nvidia-smi", NVIDIA_SMI_QUERY, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return [], None
    gpus, driver = [], None
    for line in result.stdout.splitlines() if result.returncode == 0 else []:
        fields = [part.strip() for part in line.split(",")]
        if len(fields) != 5:
            continue
        name, driver, capability, free, total = fields
        major, _, minor = capability.partition(".")
        capability = (int(major), int(minor)) if major.isdigit() and minor.isdigit() else None
        gpus.append(Gpu(name, capability, _number(free), _number(total)))
    return gpus, driver


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def proc_driver_version() -> str | None:
    """The loaded NVIDIA kernel module's version, for nodes without nvidia-smi on the PATH."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    found = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+\.\d+(?:\.\d+)?)", text)
    return found.group(1) if found else None


def torch_gpus() -> TorchGpus:
    """torch's version, CUDA build and the GPUs it can use (imports torch: seconds)."""
    import torch

    error = None
    with warnings.catch_warnings(record=True) as caught:  # "driver too old" comes as a warning: part of our message
        warnings.simplefilter("always")
        usable = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if caught and not usable:
        error = str(caught[0].message).strip().splitlines()[0]
    return TorchGpus(version=metadata.version("torch"), cuda=torch.version.cuda, usable=usable, error=error)


def gpu_problem(node: NodeGpus, torch_info: TorchGpus) -> tuple[str, str] | None:
    """(what is wrong, the fix) when the node shows GPUs that torch cannot use; None when they agree."""
    if not node.seen or torch_info.usable:
        return None
    needed = torch_info.needed_driver()
    too_old = bool(needed and node.driver) and not driver_runs(node.driver, torch_info.cuda)
    reason = f"CUDA {torch_info.cuda} needs driver >= {needed}" if too_old else torch_info.error
    problem = (
        f"This node shows {node.describe()}, but {torch_info.describe()}, cannot use them"
        + (f" ({reason})" if reason else "")
        + ": a job would run on the CPU"
    )
    if node.driver:
        advice = torch_for_driver(node.driver)  # "TORCH_VERSION=... or ...", or the driver to ask for
        fix = advice if advice.startswith("no torch build") else f"bash scripts/install.sh with {advice}"
    else:
        fix = "install a CUDA build of torch that this node's NVIDIA driver runs (docs/cluster.md has the table)"
    return problem, f"{fix}; or {CPU_CHOICE}"


def check_device(requested: str = "auto") -> None:
    """Stop (UserError) when the node shows GPUs that torch cannot use, unless the CPU is asked for. Imports torch
    only where GPUs are seen: free on a CPU machine."""
    if requested not in DEVICES:
        raise UserError(f"Unknown device '{requested}'; use one of {list(DEVICES)}.")
    if requested == "cpu":
        return
    node = node_gpus()
    if node.seen and (found := gpu_problem(node, torch_gpus())):
        problem, fix = found
        raise UserError(f"{problem}. Fix: {fix}.")


def job_device(requested: str = "auto") -> str:
    """'cuda' or 'cpu': the device a job computes on, after check_device."""
    check_device(requested)
    if requested == "cpu":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
