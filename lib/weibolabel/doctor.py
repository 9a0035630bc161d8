"""What a job would use on this node, and why: the first thing to run on a cluster (docs/cluster.md, section 1).

    python -m weibolabel.doctor                                   # the node: GPUs, driver, precision, transport
    python -m weibolabel.doctor --model models/bert-base-chinese --output_dir runs/cv --batch_size 32
    python -m weibolabel.doctor jobs/train.py ARGS...             # what this job would use (slurm/launch.sh does this)

One line per check, `ok`, `warning` or `problem`, each problem with its fix; exit status 1 when there is a problem.
The GPU verdict is run/device.py's, the one every job stops on; the precision is run/precision.py's choice.
Nothing is written (the write check creates and removes one probe file).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from weibolabel.run.config import DEVICE_OPTION, LabelConfig, TrainConfig, parse_config
from weibolabel.run.cuda_builds import driver_runs
from weibolabel.run.device import NodeGpus, TorchGpus, gpu_problem, node_gpus, torch_gpus
from weibolabel.run.precision import choose_precision, device_capability
from weibolabel.util.errors import UserError

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "ceph", "panfs", "wekafs", "fuse")


@dataclass(frozen=True)
class Line:
    status: str  # ok, warning, problem
    topic: str
    text: str

    def __str__(self) -> str:
        return f"{self.status:<8} {self.topic:<11} {self.text}"


@dataclass(frozen=True)
class Settings:
    """What a job would run with: where it computes, its model, its output directory, its batch."""

    device: str = "auto"
    model: str | None = None
    output_dir: str | None = None
    batch_size: int = 32
    max_length: int = 128
    training: bool = True


def job_settings(script: str, args: list[str]) -> Settings:
    """The settings of `jobs/train.py ARGS` or `jobs/label_corpus.py ARGS`, read by the job's own option parser."""
    name = Path(script).name
    if name == "train.py":
        config = parse_config(TrainConfig, args)
        return Settings(
            device=config.device,
            model=config.model_name_or_path,
            output_dir=config.output_dir,
            batch_size=config.per_device_batch_size,
            max_length=config.max_length,
        )
    if name == "label_corpus.py":
        config = parse_config(LabelConfig, args)
        model = config.model
        if model:  # a run directory: its first fold's checkpoint is what each process loads, once per fold
            from weibolabel.run.layout import find_checkpoints

            with contextlib.suppress(UserError):  # the model check below says what is wrong with it
                model = str(find_checkpoints(Path(model))[0])
        output = str(Path(config.output).parent) if config.output else None
        return Settings(
            device=config.device, model=model, output_dir=output, batch_size=config.batch_size, training=False
        )
    return Settings()  # another job: the node's checks only


def check_gpus(settings: Settings, node: NodeGpus, torch_info: TorchGpus) -> list[Line]:
    """GPUs and driver: the verdict every job stops on (weibolabel.run.device.gpu_problem)."""
    lines = [Line("ok", "node", node.describe())]
    found = gpu_problem(node, torch_info)
    if settings.device == "cpu":
        idle = f"; {node.seen} GPU(s) stay idle" if node.seen else ""
        lines.append(Line("ok", "device", f"CPU, asked for (--device cpu / DEVICE=cpu){idle}"))
    elif found:
        problem, fix = found
        lines.append(Line("problem", "device", f"{problem}. Fix: {fix}."))
    elif torch_info.usable:
        text = f"{torch_info.usable} GPU(s) through {torch_info.describe()}"
        short = node.seen and torch_info.usable < node.seen
        lines.append(
            Line("warning" if short else "ok", "device", text + (f" of the {node.seen} seen" if short else ""))
        )
    else:
        lines.append(Line("ok", "device", f"CPU, the node has no GPU; {torch_info.describe()}"))
    needed = torch_info.needed_driver()
    if node.driver and needed:
        if not driver_runs(node.driver, torch_info.cuda):
            lines.append(Line("problem", "driver", f"{node.driver} < {needed}, what CUDA {torch_info.cuda} needs"))
        else:
            lines.append(Line("ok", "driver", f"{node.driver} runs CUDA {torch_info.cuda} (needs >= {needed})"))
    return lines


def check_precision_and_transport(settings: Settings, node: NodeGpus, torch_info: TorchGpus) -> list[Line]:
    """The precision the job chooses and how its processes meet."""
    on_gpu = settings.device != "cpu" and torch_info.usable > 0
    capability = device_capability() if on_gpu else None  # the lowest of the node's GPUs
    precision, _ = choose_precision(None, device_type="cuda" if on_gpu else "cpu", compute_capability=capability)
    if on_gpu:
        why = f"compute capability {capability[0]}.{capability[1]}: " + (
            "native bf16 (>= 8.0)" if precision == "bf16" else "no native bf16 (< 8.0), fp16"
        )
    else:
        shown = [gpu.compute_capability for gpu in node.gpus if gpu.compute_capability] if node.seen else []
        why = "CPU"
        if shown and settings.device != "cpu":
            would, _ = choose_precision(None, device_type="cuda", compute_capability=min(shown))
            why += f"; on these GPUs, compute capability {min(shown)[0]}.{min(shown)[1]}, it would be {would}"
    lines = [
        Line("ok", "precision", f"{'fp32' if precision == 'no' else precision} ({why}); MIXED_PRECISION overrides")
    ]
    processes = torch_info.usable if on_gpu else int(os.environ.get("NUM_PROCESSES", "2") or 2)
    if processes == 1:
        lines.append(Line("ok", "transport", "one process: no collectives"))
    elif on_gpu:
        p2p = os.environ.get("NCCL_P2P_DISABLE", "1 (set by the job)")
        lines.append(
            Line("ok", "transport", f"NCCL over {processes} GPUs, NCCL_P2P_DISABLE={p2p}: barriers and small objects")
        )
    else:
        lines.append(Line("ok", "transport", f"gloo over {processes} CPU processes"))
    return lines


def estimate_bytes(model_config, batch_size: int, max_length: int, training: bool) -> int:
    """A BERT's GPU memory at this batch: fp32 weights, gradients and AdamW's two moments (16 bytes a parameter)
    plus activations by Korthikanti et al. (2022), s*b*h*(34 + 5*a*s/h) bytes a layer in 16-bit; labeling keeps
    16-bit weights and one layer's activations. An estimate, rounded up by the CUDA context (~0.5 GiB)."""
    h, layers = model_config.hidden_size, model_config.num_hidden_layers
    heads, inner = model_config.num_attention_heads, model_config.intermediate_size
    embeddings = (model_config.vocab_size + model_config.max_position_embeddings + 2) * h
    parameters = embeddings + layers * (4 * h * h + 2 * h * inner + 9 * h + inner) + h * h
    activations = max_length * batch_size * h * (34 + 5 * heads * max_length / h)
    context = 512 * 2**20
    if training:
        return int(16 * parameters + layers * activations + context)
    return int(2 * parameters + activations + context)


def check_model_and_memory(settings: Settings, torch_info: TorchGpus, node: NodeGpus) -> list[Line]:
    if not settings.model:
        return [Line("warning", "model", "none given (--model DIR, or the job's own options): not checked")]
    from weibolabel.model.loading import load_model_config, load_tokenizer

    try:
        model_config = load_model_config(settings.model)
        load_tokenizer(settings.model)
    except (UserError, OSError, ValueError) as error:
        return [Line("problem", "model", f"{settings.model}: {error}".replace("\n", " "))]
    weights = [name for name in ("model.safetensors", "pytorch_model.bin") if (Path(settings.model) / name).is_file()]
    lines = [Line("ok", "model", f"{settings.model}: config, tokenizer{' and ' + weights[0] if weights else ''} load")]
    if Path(settings.model).is_dir() and not weights:
        lines = [Line("problem", "model", f"{settings.model} has no model.safetensors or pytorch_model.bin")]
    need = estimate_bytes(model_config, settings.batch_size, settings.max_length, settings.training)
    what = f"~{need / 2**30:.1f} GiB estimated ({'training' if settings.training else 'labeling'}, batch "
    what += f"{settings.batch_size} x {settings.max_length} tokens)"
    if settings.device != "cpu" and torch_info.usable:
        import torch

        free = min(torch.cuda.mem_get_info(i)[0] for i in range(torch_info.usable))
    elif settings.device != "cpu" and node.seen and node.gpus and node.gpus[0].free_mib is not None:
        free = min(gpu.free_mib for gpu in node.gpus) * 2**20
    else:
        import psutil

        free = psutil.virtual_memory().available
        return [*lines, Line("ok", "memory", f"{what}; {free / 2**30:.1f} GiB of RAM available (CPU run)")]
    fits = f"{what}; {free / 2**30:.1f} GiB free on the fullest GPU"
    if need > free:
        fix = "lower --per_device_batch_size (training) or --batch_size/--max_tokens (labeling), or free the GPU"
        return [*lines, Line("problem", "memory", f"{fits}. Fix: {fix}.")]
    return [*lines, Line("warning" if need > 0.8 * free else "ok", "memory", fits)]


def check_offline() -> Line:
    values = {name: os.environ.get(name) for name in OFFLINE_VARIABLES}
    shown = ", ".join(f"{name}={value if value is not None else '(unset)'}" for name, value in values.items())
    if all(value == "1" for value in values.values()):
        return Line("ok", "offline", shown)
    return Line(
        "warning",
        "offline",
        f"{shown}: a node without internet waits on the hub for a model that is not a local directory. "
        "scripts/launch.sh and slurm/launch.sh set them to 1; export them to run a job by hand.",
    )


def filesystem_of(path: Path) -> tuple[str, str]:
    """(mount point, filesystem type) holding `path`, from psutil's partitions; ('?', '?') where they cannot be read."""
    import psutil  # an accelerate dependency

    resolved = path.resolve()
    try:
        partitions = psutil.disk_partitions(all=True)
    except OSError:
        return ("?", "?")
    holding = [p for p in partitions if Path(p.mountpoint) == resolved or Path(p.mountpoint) in resolved.parents]
    best = max(holding, key=lambda p: len(p.mountpoint), default=None)
    return (best.mountpoint, best.fstype) if best else ("?", "?")


def check_output(settings: Settings) -> list[Line]:
    if not settings.output_dir:
        return [Line("warning", "output", "none given (--output_dir DIR, or the job's own options): not checked")]
    from weibolabel.run.layout import ensure_writable, nearest_existing

    output = Path(settings.output_dir)
    try:
        ensure_writable(output, "--output_dir", create=False)  # probes the nearest existing folder; creates nothing
    except (UserError, OSError) as error:
        return [Line("problem", "output", str(error))]
    point, kind = filesystem_of(nearest_existing(output))
    shared = kind.split(".")[0] in NETWORK_FILESYSTEMS
    nodes = int(os.environ.get("SLURM_JOB_NUM_NODES", os.environ.get("SLURM_NNODES", "1")) or 1)
    text = f"{output}: on {kind} ({point}), " + ("a network filesystem" if shared else "a local filesystem")
    if not shared and nodes > 1:
        fix = "put the output on a filesystem every node mounts (home, project or shared scratch)"
        lines = [Line("problem", "filesystem", f"{text}, but the job spans {nodes} nodes. Fix: {fix}.")]
    else:
        lines = [Line("ok", "filesystem", text + ("" if shared else ": fine for a job on one node"))]
    return [*lines, Line("ok", "output", f"{output}: writable")]


def guarded(topic: str, check) -> list[Line]:
    """A check's lines; an error it did not expect is a warning line, not a crash: the doctor opens every SLURM
    job's log, and the job's own checks still stop it on what matters."""
    try:
        return check()
    except Exception as error:
        return [Line("warning", topic, f"could not be checked: {type(error).__name__}: {error}")]


def diagnose(settings: Settings) -> list[Line]:
    node = node_gpus()
    torch_info = torch_gpus()
    return [
        *check_gpus(settings, node, torch_info),
        *guarded("precision", lambda: check_precision_and_transport(settings, node, torch_info)),
        *guarded("model", lambda: check_model_and_memory(settings, torch_info, node)),
        check_offline(),
        *guarded("output", lambda: check_output(settings)),
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].endswith(".py"):
        settings = job_settings(argv[0], argv[1:])
    else:
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--device", default="auto", **DEVICE_OPTION)
        parser.add_argument("--model", default=None, help="The model directory (or a run's fold) a job would load.")
        parser.add_argument("--output_dir", default=None, help="Where the job would write.")
        parser.add_argument("--batch_size", type=int, default=32, help="Per-device batch size.")
        parser.add_argument("--max_length", type=int, default=128, help="Tokens per comment.")
        parser.add_argument(
            "--labeling", dest="training", action="store_false", help="Estimate memory for labeling, not training."
        )
        settings = Settings(**vars(parser.parse_args(argv)))
    lines = diagnose(settings)
    print("weibolabel doctor: what a job would use on this node, and why")
    for line in lines:
        print(line)
    return 1 if any(line.status == "problem" for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
