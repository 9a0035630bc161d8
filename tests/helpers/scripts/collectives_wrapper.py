"""Run a job and count what its processes exchange: `python collectives_wrapper.py jobs/<job>.py ARGS...` runs the
job as `python jobs/<job>.py ARGS...` would, with torch.distributed's public collectives wrapped (no test hooks in
the production code). Each process writes, at exit, $WEIBOLABEL_TEST_COLLECTIVES/rank-<rank>.json: per collective,
its calls and the bytes this process sent into it (tensor bytes; pickled bytes for the *_object calls), and the
largest single tensor. What docs/cluster.md's transport decision rests on: barriers and small objects only."""

from __future__ import annotations

import atexit
import json
import os
import pickle
import runpy
import sys
from collections import defaultdict
from pathlib import Path

import torch
import torch.distributed as dist

counts: dict[str, dict[str, int]] = defaultdict(lambda: {"calls": 0, "bytes": 0, "largest_tensor": 0})


def payload_bytes(value) -> tuple[int, int]:
    """(bytes, largest tensor's bytes) of a collective's argument: tensors, lists of tensors, or objects."""
    if isinstance(value, torch.Tensor):
        size = value.numel() * value.element_size()
        return size, size
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
        sizes = [v.numel() * v.element_size() for v in value]
        return sum(sizes), max(sizes)
    try:
        return len(pickle.dumps(value)), 0
    except Exception:  # an unpicklable argument (a group, a device): not payload
        return 0, 0


def wrap(name: str) -> None:
    original = getattr(dist, name)

    def counted(*args, **kwargs):
        record = counts[name]
        record["calls"] += 1
        if args and name not in ("barrier", "monitored_barrier"):
            # all_gather(output_list, tensor) and all_gather_object(output, obj): what this process sends is last.
            sent = args[1] if name in ("all_gather", "all_gather_object", "all_gather_into_tensor") else args[0]
            size, largest = payload_bytes(sent)
            record["bytes"] += size
            record["largest_tensor"] = max(record["largest_tensor"], largest)
        return original(*args, **kwargs)

    setattr(dist, name, counted)


for collective in (
    "barrier",
    "monitored_barrier",
    "broadcast",
    "all_reduce",
    "reduce",
    "all_gather",
    "all_gather_into_tensor",
    "gather",
    "scatter",
    "reduce_scatter",
    "all_to_all",
    "broadcast_object_list",
    "all_gather_object",
    "gather_object",
    "scatter_object_list",
):
    if hasattr(dist, collective):
        wrap(collective)


def write_counts() -> None:
    directory = Path(os.environ["WEIBOLABEL_TEST_COLLECTIVES"])
    directory.mkdir(parents=True, exist_ok=True)
    rank = os.environ.get("RANK", "0")
    (directory / f"rank-{rank}.json").write_text(json.dumps(dict(counts), indent=1))


atexit.register(write_counts)
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path[0] = str(Path(script).resolve().parent)  # as `python jobs/<job>.py` sets it, not this file's folder
runpy.run_path(script, run_name="__main__")
