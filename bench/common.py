"""Shared pieces of the benchmarks: the machine, interleaved rounds, a job run in a subprocess, the results file."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import psutil

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = BENCH_DIR / "corpora"  # git-ignored: corpora, random-weight checkpoints, job outputs
WORK_DIR.mkdir(exist_ok=True)

# bert-base-chinese's architecture (random weights: speed does not depend on them), and a tiny one for --quick.
BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256}
VERSIONS = ("torch", "transformers", "tokenizers", "accelerate", "onnxruntime", "pandas", "pyarrow", "numpy")


# ------------------------------------------------------------------------------------------------- machine
def cpuinfo(field: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    return ""


def vector_instructions() -> str:
    """AVX512 with or without native bf16, or AVX2: same-sized CPUs differ up to threefold in bert-base speed."""
    flags = set(cpuinfo("flags").split())
    if "avx512f" in flags:
        return "avx512-bf16" if {"avx512_bf16", "amx_bf16"} & flags else "avx512"
    return "avx2" if "avx2" in flags else "novec"


def machine_tag(device: str) -> str:
    """The results file's name: the GPU's, or the CPU's cores and vector instructions (as in the earlier files)."""
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0).lower().replace(" ", "-")
    return f"cpu-{os.cpu_count()}core-{vector_instructions().removesuffix('-bf16')}"


def machine_lines(device: str) -> list[str]:
    found = []
    for name in VERSIONS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name} {metadata.version(name)}")
    return [
        f"- CPU: {cpuinfo('model name') or platform.processor()}, {os.cpu_count()} cores, {vector_instructions()}; "
        f"RAM {psutil.virtual_memory().total / 2**30:.1f} GiB; device {device}",
        f"- Python {platform.python_version()}; " + ", ".join(found),
    ]


def append_section(device: str, title: str, body: str) -> Path:
    """Append a section (command, code revision, date, machine, then `body`) to bench/results/<machine>-<date>.md."""
    from weibolabel.run.launch import git_revision

    now = dt.datetime.now().astimezone()
    path = RESULTS_DIR / f"{machine_tag(device)}-{now.date().isoformat()}.md"
    command = " ".join(
        ["python", str(Path(sys.argv[0]).resolve().relative_to(REPO_ROOT)), *map(shlex.quote, sys.argv[1:])]
    )
    header = "" if path.exists() else f"# Benchmark results: {machine_tag(device)}, {now.date().isoformat()}\n\n"
    lines = [f"## {title}", "", f"Command: `{command}`", "", f"- Code: {git_revision()}"]
    lines += [f"- Date: {now.isoformat(timespec='seconds')}", *machine_lines(device), "", body.rstrip(), "", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(header + "\n".join(lines))
    return path


# ------------------------------------------------------------------------------------------------- rounds
def rotated(items: list, round_index: int) -> list:
    """Round `round_index`'s order: rotated by one place a round, so that no contender always follows another."""
    shift = round_index % len(items)
    return items[shift:] + items[:shift]


def spread(values: list[float], digits: int = 2) -> str:
    """`median (min-max)`."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def verdict(ratios: list[float], target: float) -> str:
    """Whether per-round ratios meet a target: in every round, at the median only, or not."""
    return "met" if min(ratios) >= target else "met at the median" if statistics.median(ratios) >= target else "not met"


# ------------------------------------------------------------------------------------------------- jobs
def peak_rss(process: subprocess.Popen, interval: float = 0.05) -> int:
    """Wait for `process`, sampling the resident memory of its process tree; the peak in bytes."""
    peak, root = 0, psutil.Process(process.pid)
    while process.poll() is None:
        with contextlib.suppress(psutil.Error):
            total = root.memory_info().rss
            for child in root.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
            peak = max(peak, total)
        time.sleep(interval)
    return peak


def run_job(
    job: str | Path, args: list, *, device="cpu", threads=None, env: dict | None = None, root=REPO_ROOT
) -> dict:
    """`python jobs/<job>.py ARGS` (or another script) as a user runs it, in this checkout or `root`: wall seconds from
    start to exit, the peak RSS of its process tree, the load average seen, and its log; a failure stops the
    benchmark with the log's tail."""
    script = root / "jobs" / f"{job}.py" if isinstance(job, str) else job
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1", **(env or {})}
    if root != REPO_ROOT:
        env["PYTHONPATH"] = str(root / "lib")  # ahead of this checkout's editable install
    if device != "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ""
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    load, started = os.getloadavg()[0], time.perf_counter()
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a full pipe would stall the job
        process = subprocess.Popen(
            [sys.executable, str(script), *map(str, args)], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            rss = peak_rss(process)
        except BaseException:  # interrupted: the job goes too
            process.kill()
            raise
        seconds = time.perf_counter() - started
        log.seek(0)
        text = log.read().decode(errors="replace")
    if process.returncode != 0:
        raise SystemExit(f"{script.name} {' '.join(map(str, args))} failed ({process.returncode}):\n{text[-4000:]}")
    return {"wall": seconds, "peak_rss": rss, "load": max(load, os.getloadavg()[0]), "log": text}


def label_job(source: Path, model: Path, output: Path, options: list, **run) -> dict:
    """The labeling job on `source`: run_job's figures and the job's own `<output>.summary.json` (README,
    "Labeling"), from which every timing of the labeling phase is read."""
    found = run_job("label_corpus", ["--input", source, "--model", model, "--output", output, *options], **run)
    return found | json.loads(output.with_suffix(".summary.json").read_text())


# ------------------------------------------------------------------------------------------------- models
def build_benchmark_model(directory: Path, shape: dict, seed: int = 0) -> Path:
    """A `BertForSequenceClassification` checkpoint with the project's four labels and the bundled bert-base-chinese
    tokenizer, random weights; reused when already there."""
    if (directory / "model.safetensors").is_file():
        return directory
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from weibolabel.data.labels import LabelSchema
    from weibolabel.model.loading import bundled_vocab_path, save_checkpoint

    schema = LabelSchema()
    tokenizer = BertTokenizerFast(vocab=str(bundled_vocab_path()), do_lower_case=True, tokenize_chinese_chars=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        max_position_embeddings=512,
        num_labels=len(schema),
        id2label=schema.id2label(),
        label2id={name: i for i, name in schema.id2label().items()},
        **shape,
    )
    torch.manual_seed(seed)
    save_checkpoint(BertForSequenceClassification(config).eval(), tokenizer, directory, schema)
    return directory
