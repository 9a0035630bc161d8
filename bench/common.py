"""Shared pieces of the benchmarks: machine description, peak-RSS sampling, the benchmark model, results file."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import psutil
import torch

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = BENCH_DIR / "corpora"  # git-ignored: corpora, random-weight checkpoints, job outputs

# bert-base-chinese's architecture; about 85e6 non-embedding parameters, hence 2 x 85e6 FLOPs per token forward.
BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256}
FLOPS_PER_TOKEN = 2 * 85e6
H100_BF16_PEAK = 989e12  # dense bf16 tensor-core peak of an H100 SXM


# ------------------------------------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def gpu_name() -> str | None:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def cpu_capability() -> str:
    """The vector instructions torch's CPU kernels use here (`AVX2`, `AVX512`, ...) and whether bf16 is native."""
    from weibolabel.inference import cpu_has_native_bf16

    bf16 = "native bf16 (AVX512-BF16/AMX)" if cpu_has_native_bf16() else "no native bf16"
    return f"{torch.backends.cpu.get_cpu_capability()}, {bf16}"


def machine_tag(device: str) -> str:
    """`cpu-2core-avx2` on a CPU run (same-sized CPUs of other generations differ twofold), the GPU's name as a
    slug (`nvidia-h100-80gb-hbm3`) on a GPU run."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return re.sub(r"[^a-z0-9]+", "-", gpu_name().lower()).strip("-")
    return f"cpu-{os.cpu_count()}core-{torch.backends.cpu.get_cpu_capability().lower()}"


def machine_lines(device: str) -> list[str]:
    memory = psutil.virtual_memory().total / 2**30
    lines = [
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}; "
        f"{cpu_capability()}",
        f"- RAM: {memory:.1f} GiB",
        f"- GPU: {gpu_name() or 'none'}; device used: {device}",
    ]
    names = ("torch", "transformers", "tokenizers", "accelerate", "pandas", "pyarrow", "numpy", "snownlp")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} -")
    lines.append(f"- Python {platform.python_version()}; " + ", ".join(found))
    return lines


def quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def resolve_device(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mfu(real_tokens: int, seconds: float, device: torch.device) -> str:
    """Model FLOPs utilisation of a forward pass against the H100's dense bf16 peak (GPU only)."""
    if device.type != "cuda" or seconds <= 0:
        return "-"
    return f"{100 * FLOPS_PER_TOKEN * real_tokens / seconds / H100_BF16_PEAK:.1f}%"


# ------------------------------------------------------------------------------------------------- memory
class PeakRSS:
    """Samples the resident set size of a process (and, optionally, its children) in a thread; `peak` in bytes.

    `with PeakRSS() as rss: ...` measures this process; `PeakRSS(pid, children=True)` another one."""

    def __init__(self, pid: int | None = None, children: bool = False, interval: float = 0.02):
        self.process = psutil.Process(pid or os.getpid())
        self.children, self.interval = children, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        try:
            total = self.process.memory_info().rss
            if self.children:
                for child in self.process.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        total += child.memory_info().rss
            return total
        except psutil.Error:
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def gib(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:.2f} GiB"


def mib(num_bytes: float) -> str:
    return f"{num_bytes / 2**20:.0f} MiB"


# ------------------------------------------------------------------------------------------------- model
def build_benchmark_model(directory: Path, shape: dict, seed: int = 0) -> Path:
    """A `BertForSequenceClassification` checkpoint with the project's four labels on the bundled bert-base-chinese
    tokenizer, initialised at random (speed does not depend on the weights). Reused when already there."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from weibolabel.labels import LabelSchema
    from weibolabel.modeling import bundled_vocab_path, save_checkpoint

    if (directory / "config.json").is_file() and (directory / "model.safetensors").is_file():
        return directory
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
    model = BertForSequenceClassification(config).eval()
    directory.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, tokenizer, directory, schema)
    return directory


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(all parameters, parameters outside the embeddings)."""
    total = sum(p.numel() for p in model.parameters())
    embeddings = sum(p.numel() for n, p in model.named_parameters() if ".embeddings." in f".{n}")
    return total, total - embeddings


# ------------------------------------------------------------------------------------------------- results
def command_line() -> str:
    script = Path(sys.argv[0]).resolve().relative_to(REPO_ROOT)
    return " ".join(["python", str(script), *map(shlex.quote, sys.argv[1:])])


def results_file(device: str, when: dt.date | None = None) -> Path:
    when = when or dt.date.today()
    return RESULTS_DIR / f"{machine_tag(device)}-{when.isoformat()}.md"


def append_section(device: str, title: str, body: str) -> Path:
    """Append one benchmark's section (command, code revision, date, machine, then `body`) to today's results
    file."""
    from weibolabel.runs import git_revision

    path = results_file(device)
    path.parent.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now().astimezone()
    header = "" if path.exists() else f"# Benchmark results: {machine_tag(device)}, {now.date().isoformat()}\n\n"
    section = "\n".join(
        [
            f"## {title}",
            "",
            f"Command: `{command_line()}`",
            "",
            f"- Code: {git_revision()}",
            f"- Date: {now.isoformat(timespec='seconds')}",
            *machine_lines(device),
            "",
            body.rstrip(),
            "",
            "",
        ]
    )
    with path.open("a", encoding="utf-8") as handle:
        handle.write(header + section)
    return path


def cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


class Timer:
    """Wall seconds, CPU seconds of this process (all its threads) and the highest 1-minute load average seen
    at start and end: on a shared machine a load above the core count means the wall times are inflated."""

    def __init__(self, device: torch.device | None = None):
        self.device = device
        self.seconds = self.cpu_seconds = self.load = 0.0

    def __enter__(self) -> Timer:
        if self.device is not None:
            synchronize(self.device)
        self._started, self._cpu = time.perf_counter(), cpu_seconds()
        self.load = os.getloadavg()[0]
        return self

    def __exit__(self, *exc) -> None:
        if self.device is not None:
            synchronize(self.device)
        self.seconds = time.perf_counter() - self._started
        self.cpu_seconds = cpu_seconds() - self._cpu
        self.load = max(self.load, os.getloadavg()[0])


@dataclass
class JobRun:
    seconds: float  # wall time of the whole job: interpreter start-up, model load, labeling, merge
    peak_rss: int  # of the job's process tree
    job_seconds: float | None  # the job's own timer, from the start of labeling to its summary (seconds_labeling)
    summary: dict = field(default_factory=dict)  # the job's <output stem>.summary.json (README, "Labeling")


def run_label_job(model_dir: Path, source: Path, output: Path, options: list[str], device: str) -> JobRun:
    """`python jobs/label_corpus.py` end to end in a subprocess, sampling the peak RSS of its process tree."""
    command = [
        sys.executable, str(REPO_ROOT / "jobs" / "label_corpus.py"),
        "--input", str(source), "--model", str(model_dir), "--output", str(output), *options,
    ]  # fmt: skip
    env = {**os.environ, "TQDM_DISABLE": "1"}
    if device != "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with PeakRSS(process.pid, children=True, interval=0.05) as rss:
        log, _ = process.communicate()
    seconds = time.perf_counter() - started
    log = log.decode(errors="replace")
    if process.returncode != 0:
        raise SystemExit(f"jobs/label_corpus.py failed ({process.returncode}) on {source}:\n{log[-4000:]}")
    summary_path = output.with_suffix(".summary.json")
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}  # none: nothing was labeled
    return JobRun(seconds, rss.peak, summary.get("seconds_labeling"), summary)
