"""Labeling throughput: this project's paths against the prototype's way and its peers at their best, on the same
texts, weights, thread count and machine, in one run; then every contender's label agreement with fp32 on a
trained checkpoint (the demo run's folds).

Contenders (all of them texts in, class probabilities out; tokenisation is inside every timing, model loading in
none):

  prototype          the prototype's way: each text tokenised on its own, padded to 100, no attention mask,
                     original order, batches of 256, fp32
  pipeline b1        `transformers.pipeline("text-classification")` at batch 1 (its documentation's advice on CPU),
                     original order, truncation at --max_length, fp32
  pipeline sorted    the same pipeline over the texts sorted by length, at the fastest of --peer_batch_sizes
  torch int8         `torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)` on the
                     transformers model, its own forward, one tokenizer call, texts sorted by length, fixed-size
                     padded batches at the fastest of --peer_batch_sizes
  ORT fp32           optimum's `ORTModelForSequenceClassification` (export=True) on ONNX Runtime's CPU provider,
                     intra-op threads = --threads, ORT_ENABLE_ALL; batching as torch int8
  ORT int8           the same on `ORTQuantizer` + `AutoQuantizationConfig.<avx512_vnni|avx512|avx2>(is_static=False)`
                     (dynamic int8), chosen by this CPU's flags
  weibolabel fp32    this project: `encode` + `label_encoded` (the code jobs/label_corpus.py runs): length-sorted
                     batches under a token budget, each row within 10% of its batch's longest, `classify` (on CPU
                     the [CLS]-only last layer and the linear layers on the packed real tokens)
  weibolabel fp32, model's own forward
                     the same batching with `classify` switched to the model's own forward (`forward_path` ->
                     "model"): whether the hand-written forward still pays
  weibolabel bf16    the opt-in `--mixed_precision bf16` (where the CPU has native bf16, and on GPUs)
  weibolabel int8    the opt-in `--quantize int8` (dynamic int8 linear layers, per-channel weights; CPU)
  weibolabel onnx-int8
                     the opt-in `--quantize onnx-int8`: each checkpoint exported to ONNX Runtime and its linear layers
                     quantized there (weibolabel.onnx_int8; the `onnx` extra), the project's batching

The ORT contenders run in a separate virtualenv (optimum pins transformers 4.x): `bash bench/peers/setup_optimum.sh`
makes bench/.venv-optimum, and bench/peers/ort_worker.py, started once, exports, quantizes and labels there; it
times itself from tokenizer to probabilities, as the others are timed here. Contenders whose packages are missing
are skipped with a line saying so.

Measurement: the contenders are interleaved, --rounds rounds (at least 3 for a result) of one pass each over the
same texts, the order rotated each round; reported are the median and the min-max of each, and per round the time
of each contender over the best project path's (how many times faster that path is, round by round). Peers' batch
sizes are chosen first by one timed pass over --calibration_texts other texts per candidate.

Agreement: for each fold k of --agreement_run (default runs/demo, trained with configs/demo.yaml when missing), its
held-out rows are labeled by fold k's checkpoint with every contender (texts cleaned as the project cleans them,
for all); reported against weibolabel fp32: share of equal labels, the largest probability difference, and the
expected calibration error over the out-of-fold rows with gold labels, raw and after the run's temperature.

    python bench/label_throughput.py                      # 1,000 comments on CPU, 3 rounds; appends to bench/results/
    python bench/label_throughput.py --rounds 5 --num_texts 2000
    python bench/label_throughput.py --quick              # tiny model, 64 texts, 2 rounds: smoke test, no file
    python bench/label_throughput.py --agreement_only     # the agreement part alone (prints)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from scipy.stats import binomtest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import corpus as corpus_mod

import weibolabel.forward as forward_module
import weibolabel.inference as inference
from weibolabel.calibration import expected_calibration_error, log_probs, softmax
from weibolabel.inference import cpu_has_native_bf16, encode, label_encoded, load_ensemble
from weibolabel.labeled import clean_text
from weibolabel.markdown import markdown_table
from weibolabel.onnx_int8 import CACHE_ENV
from weibolabel.runs import RunLayout

PROTOTYPE_LENGTH, PROTOTYPE_BATCH = 100, 256
PEERS_DIR = common.BENCH_DIR / "peers"
OPTIMUM_PYTHON = common.BENCH_DIR / ".venv-optimum" / "bin" / "python"
ONNX_DIR = common.WORK_DIR / "onnx"
DEFAULT_AGREEMENT_RUN = common.REPO_ROOT / "runs" / "demo"
# --quantize int8 may become the default only where its labels agree with fp32 on at least this share of the
# demo's out-of-fold rows and its expected calibration error (after the run's temperature) moves by at most this.
AGREEMENT_FLOOR, ECE_TOLERANCE = 0.995, 0.005


class Skip(Exception):
    """A contender that cannot run here (a package or the optimum virtualenv missing, a CPU-only path on GPU)."""


# ------------------------------------------------------------------------------------------------- helpers
def probs_from_frame(frame, num_classes: int) -> np.ndarray:
    """label_encoded's probabilities as [rows, classes], NaN where a row was not scored (empty, [UNK] only)."""
    probs = np.full((len(frame), num_classes), np.nan, dtype=np.float32)
    scored = np.flatnonzero(frame["status"].to_numpy() == inference.STATUS_OK)
    if len(scored):
        probs[scored] = np.stack([frame["probs"].iloc[i] for i in scored])
    return probs


def sorted_batch_probs(forward, tokenizer, texts: list[str], max_length: int, batch_size: int) -> np.ndarray:
    """The usual recipe for batched inference: one tokenizer call, texts sorted by token length, fixed-size batches
    each padded to its longest, with an attention mask; probabilities back in input order. (bench/peers/ort_worker.py
    does the same in the optimum virtualenv.)"""
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False)["input_ids"]
    lengths = np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(encoded))
    order = np.argsort(-lengths, kind="stable")
    probs = None
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        ids, mask = inference.pad_batch([encoded[i] for i in rows], tokenizer.pad_token_id)
        batch = torch.softmax(forward(ids, mask).float(), dim=-1).numpy()
        if probs is None:
            probs = np.zeros((len(texts), batch.shape[1]), dtype=np.float32)
        probs[rows] = batch
    return probs


def real_tokens(tokenizer, texts: list[str], max_length: int) -> int:
    ids = tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False)["input_ids"]
    return sum(len(row) for row in ids)


@contextlib.contextmanager
def own_forward():
    """`classify` runs the model's own forward (as on GPUs) instead of the hand-written CPU path."""
    real = forward_module.forward_path
    forward_module.forward_path = lambda device_type: "model"
    try:
        yield
    finally:
        forward_module.forward_path = real


def cpu_flags() -> set[str]:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def ort_quantization_target() -> str:
    """optimum's AutoQuantizationConfig preset for this CPU's best int8 instructions."""
    flags = cpu_flags()
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def load_hf_model(checkpoint: Path, device: torch.device, dtype=torch.float32):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, dtype=dtype, local_files_only=True)
    return model.to(device).eval()


def hf_tokenizer(checkpoint: Path):
    from weibolabel.modeling import load_tokenizer

    return load_tokenizer(str(checkpoint))


# ------------------------------------------------------------------------------------------------- ORT worker
class OrtWorker:
    """bench/peers/ort_worker.py in the optimum virtualenv, one JSON request and answer a line."""

    def __init__(self, python: Path, threads: int, log: Path):
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(threads)}
        env.pop("PYTHONPATH", None)
        self.log = log
        self.process = subprocess.Popen(
            [str(python), str(PEERS_DIR / "ort_worker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
            env=env,
            cwd=common.REPO_ROOT,
        )

    def call(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise Skip(f"the ONNX Runtime worker stopped (log {self.log}):\n{tail}")
        answer = json.loads(line)
        if not answer.pop("ok"):
            raise Skip(f"the ONNX Runtime worker failed on {request['op']}: {answer['error']}\n{answer['traceback']}")
        return answer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def export_onnx(worker: OrtWorker, checkpoint: Path) -> Path:
    """model.onnx and model_quantized.onnx of a checkpoint, exported once into bench/corpora/onnx/ (keyed by the
    checkpoint's path and weights file)."""
    weights = checkpoint / "model.safetensors"
    stat = weights.stat()
    key = hashlib.sha1(f"{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    out = ONNX_DIR / f"{checkpoint.resolve().parent.name}-{checkpoint.name}-{key}"
    files = ("model.onnx", "model_quantized.onnx", "model_optimized.onnx", "model_optimized_quantized.onnx")
    if not all((out / name).is_file() for name in files):
        target = ort_quantization_target()
        print(f"  exporting {checkpoint} to ONNX (optimum) and quantizing ({target}) ...", flush=True)
        answer = worker.call(op="export", checkpoint=str(checkpoint.resolve()), out=str(out), quantize=target)
        print(
            f"  exported in {answer['export_seconds']:.1f} s, optimized in {answer['optimize_seconds']:.1f} s, "
            f"quantized in {answer['quantize_seconds']:.1f} s",
            flush=True,
        )
    return out


# ------------------------------------------------------------------------------------------------- contenders
@dataclass
class Run:
    """One timed pass of a contender over the texts."""

    seconds: float
    cpu_seconds: float
    load: float  # highest 1-minute load average seen at its start and end


@dataclass
class Contender:
    key: str
    name: str
    group: str  # "project", "peer" or "prototype"
    args: argparse.Namespace
    device: torch.device
    batch_candidates: tuple[int, ...] = ()  # peers whose batch size is chosen by calibration
    batch_size: int = 32
    note: str = ""
    runs: list[Run] = field(default_factory=list)
    load_seconds: float | None = None
    calibration: dict = field(default_factory=dict)  # setting -> seconds
    probs: np.ndarray | None = None

    def load(self, checkpoint: Path, max_length: int) -> None:
        raise NotImplementedError

    def label(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def timed(self, texts: list[str]) -> tuple[Run, np.ndarray]:
        with common.Timer(self.device) as timer:
            probs = self.label(texts)
        return Run(timer.seconds, timer.cpu_seconds, timer.load), probs

    def warm_up(self, texts: list[str]) -> None:
        self.label(texts)

    def close(self) -> None:
        pass

    def settings(self) -> list:
        """What calibration tries (peers: batch sizes)."""
        return list(self.batch_candidates)

    def use(self, setting) -> None:
        self.batch_size = setting

    def chosen(self):
        return self.batch_size

    def setting(self) -> str:
        return self.note + (f", batch {self.batch_size}" if self.batch_candidates else "")

    @property
    def seconds(self) -> list[float]:
        return [run.seconds for run in self.runs]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


class Prototype(Contender):
    def load(self, checkpoint: Path, max_length: int) -> None:
        self.tokenizer, self.model = hf_tokenizer(checkpoint), load_hf_model(checkpoint, self.device)
        self.note = "fp32, pad to 100, no mask, batch 256, original order"

    @torch.inference_mode()
    def label(self, texts: list[str]) -> np.ndarray:
        ids = [
            self.tokenizer(t, padding="max_length", truncation=True, max_length=PROTOTYPE_LENGTH)["input_ids"]
            for t in texts
        ]
        out = []
        for start in range(0, len(ids), PROTOTYPE_BATCH):
            x = torch.tensor(ids[start : start + PROTOTYPE_BATCH], device=self.device)
            out.append(torch.softmax(self.model(input_ids=x).logits.float(), dim=-1).cpu())
        return torch.cat(out).numpy()

    def close(self) -> None:
        self.model = None


class Pipeline(Contender):
    """transformers' text-classification pipeline, at batch 1 in input order or batched over length-sorted texts."""

    def load(self, checkpoint: Path, max_length: int) -> None:
        from transformers import pipeline

        model, tokenizer = load_hf_model(checkpoint, self.device), hf_tokenizer(checkpoint)
        self.label2id = model.config.label2id
        self.pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=self.device)
        self.options = {"truncation": True, "max_length": max_length, "top_k": None}
        self.sort = bool(self.batch_candidates)
        if not self.sort:
            self.batch_size = 1
        self.note = "fp32, texts sorted by length" if self.sort else "fp32, batch 1, original order"

    def label(self, texts: list[str]) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable") if self.sort else np.arange(len(texts))
        outputs = self.pipe([texts[i] for i in order], batch_size=self.batch_size, **self.options)
        probs = np.zeros((len(texts), len(self.label2id)), dtype=np.float32)
        for row, scores in zip(order, outputs):
            for item in scores:
                probs[row, self.label2id[item["label"]]] = item["score"]
        return probs

    def close(self) -> None:
        self.pipe = None


class TorchInt8(Contender):
    """PyTorch's own dynamic int8 quantization of the linear layers, on the transformers model."""

    def load(self, checkpoint: Path, max_length: int) -> None:
        import warnings

        if self.device.type != "cpu":
            raise Skip("dynamic int8 quantization runs on CPU only")
        self.tokenizer, self.max_length = hf_tokenizer(checkpoint), max_length
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
            self.model = torch.ao.quantization.quantize_dynamic(
                load_hf_model(checkpoint, self.device), {torch.nn.Linear}, dtype=torch.qint8
            )
        self.note = "quantize_dynamic({nn.Linear}, qint8), model's own forward, texts sorted by length"

    @torch.inference_mode()
    def label(self, texts: list[str]) -> np.ndarray:
        def forward(ids, mask):
            return self.model(input_ids=ids, attention_mask=mask).logits

        return sorted_batch_probs(forward, self.tokenizer, texts, self.max_length, self.batch_size)

    def close(self) -> None:
        self.model = None


class Ort(Contender):
    """ONNX Runtime through optimum's ORTModelForSequenceClassification, in the optimum virtualenv's worker. Two
    graphs are tried by the calibration: optimum's export as is, and after ORTOptimizer (level 2)."""

    worker: OrtWorker | None = None
    files: tuple[str, ...] = ("model.onnx", "model_optimized.onnx")

    def load(self, checkpoint: Path, max_length: int) -> None:
        if self.worker is None:
            raise Skip(
                f"no optimum virtualenv at {self.args.optimum_python}: run `bash bench/peers/setup_optimum.sh` "
                "for the ONNX Runtime contenders"
            )
        if self.device.type != "cpu":
            raise Skip("the ONNX Runtime contenders run on the CPU execution provider only")
        directory = export_onnx(self.worker, checkpoint)
        self.max_length = max_length
        self.file_name = getattr(self, "file_name", self.files[0])
        self.loaded = []
        for name in self.files:
            answer = self.worker.call(
                op="load", key=f"{self.key}:{name}", model_dir=str(directory), file_name=name,
                threads=self.args.threads,
            )  # fmt: skip
            self.loaded.append(name)
            if name == self.file_name:
                self.load_seconds = answer["load_seconds"]
        quantized = "quantized" in self.files[0]
        self.note = (
            f"dynamic int8 ({ort_quantization_target()} preset: per-channel int8 weights, uint8 activations)"
            if quantized
            else "fp32"
        ) + f", {self.args.threads} intra-op threads, ORT_ENABLE_ALL, texts sorted by length"

    def settings(self) -> list:
        return [(name, size) for name in self.files for size in self.batch_candidates]

    def use(self, setting) -> None:
        self.file_name, self.batch_size = setting

    def chosen(self):
        return (self.file_name, self.batch_size)

    def setting(self) -> str:
        return f"{self.note}, {self.file_name}, batch {self.batch_size}"

    def _request(self, texts: list[str]) -> dict:
        with tempfile.TemporaryDirectory(dir=common.WORK_DIR) as tmp:
            texts_file, probs_file = Path(tmp) / "texts.json", Path(tmp) / "probs.npy"
            texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
            answer = self.worker.call(
                op="label", key=f"{self.key}:{self.file_name}", texts=str(texts_file), probs=str(probs_file),
                max_length=self.max_length, batch_size=self.batch_size,
            )  # fmt: skip
            answer["probs"] = np.load(probs_file)
        return answer

    def warm_up(self, texts: list[str]) -> None:
        for name in self.loaded:
            self.file_name, kept = name, self.file_name
            self._request(texts)
            self.file_name = kept

    def label(self, texts: list[str]) -> np.ndarray:
        return self._request(texts)["probs"]

    def timed(self, texts: list[str]) -> tuple[Run, np.ndarray]:
        load = os.getloadavg()[0]
        answer = self._request(texts)
        return Run(answer["seconds"], answer["cpu_seconds"], max(load, os.getloadavg()[0])), answer["probs"]

    def drop_others(self) -> None:
        """After calibration: only the chosen graph stays loaded."""
        for name in self.loaded:
            if name != self.file_name:
                self.worker.call(op="unload", key=f"{self.key}:{name}")
        self.loaded = [self.file_name]

    def close(self) -> None:
        if self.worker is not None:
            with contextlib.suppress(Skip):
                for name in getattr(self, "loaded", []):
                    self.worker.call(op="unload", key=f"{self.key}:{name}")


class OrtInt8(Ort):
    files = ("model_quantized.onnx", "model_optimized_quantized.onnx")


class Project(Contender):
    """This project's labeling path, as jobs/label_corpus.py runs it, in one of its modes."""

    mode: str = "fp32"  # fp32, own-forward, bf16, int8, onnx-int8

    def load(self, checkpoint: Path, max_length: int) -> None:
        dtype = torch.bfloat16 if self.mode == "bf16" else None
        quantize = self.mode if self.mode in ("int8", "onnx-int8") else None
        if quantize and self.device.type != "cpu":
            raise Skip(f"--quantize {quantize} is for CPUs")
        if quantize == "onnx-int8" and importlib.util.find_spec("onnxruntime") is None:
            raise Skip("onnxruntime is not installed: pip install -e '.[onnx]'")
        if quantize == "onnx-int8":
            self.load_onnx(checkpoint)
        else:
            self.ensemble = load_ensemble(checkpoint, self.device, dtype, calibrated=False, quantize=quantize)
        self.max_length = min(max_length, self.ensemble.max_length)
        self.note = {
            "fp32": "fp32, custom forward",
            "own-forward": "fp32, the model's own forward",
            "bf16": "--mixed_precision bf16 (bf16 weights)",
            "int8": "--quantize int8 (dynamic, per-channel weights), custom forward",
            "onnx-int8": "--quantize onnx-int8 (ONNX Runtime, dynamic, per-channel weights)",
        }[self.mode] + f"; batch {self.args.batch_size}, max_tokens {self.args.max_tokens}"
        if quantize == "onnx-int8":
            self.note += f"; model load {self.load_seconds:.1f} s exporting, {self.cached_load:.1f} s from the cache"

    def load_onnx(self, checkpoint: Path) -> None:
        """Twice, through an empty graph cache of its own: a first run's load (the export, `load_seconds`) and a
        later run's (the graph read back, `cached_load`). It labels with the second."""
        loads = []
        with (
            tempfile.TemporaryDirectory(prefix="bench-onnx-cache-") as cache,
            mock.patch.dict(os.environ, {CACHE_ENV: cache}),
        ):
            for origin in ("exported", "cache"):
                started = time.perf_counter()
                self.ensemble = load_ensemble(checkpoint, self.device, calibrated=False, quantize="onnx-int8")
                loads.append(time.perf_counter() - started)
                assert [m.origin for m in self.ensemble.models] == [origin] * len(self.ensemble.models)
        self.load_seconds, self.cached_load = loads

    def label(self, texts: list[str]) -> np.ndarray:
        cleaned = [clean_text(t) for t in texts]
        encoded = encode(self.ensemble.tokenizer, cleaned, self.max_length)
        with own_forward() if self.mode == "own-forward" else contextlib.nullcontext():
            frame = label_encoded(
                self.ensemble, cleaned, encoded, batch_size=self.args.batch_size, max_tokens=self.args.max_tokens
            )
        return probs_from_frame(frame, len(self.ensemble.schema))

    def close(self) -> None:
        self.ensemble = None


def make_contenders(args, device: torch.device, worker: OrtWorker | None) -> list[Contender]:
    peers = tuple(args.peer_batch_sizes)
    tuned = {"batch_candidates": peers}

    def project(mode: str, name: str) -> Project:
        contender = Project(key=f"project-{mode}", name=name, group="project", args=args, device=device)
        contender.mode = mode
        return contender

    common = {"args": args, "device": device}
    contenders = [
        Prototype("prototype", "prototype: pad to 100, no mask, batch 256", group="prototype", **common),
        Pipeline("pipeline-b1", "transformers pipeline, batch 1", group="peer", **common),
        Pipeline("pipeline-sorted", "transformers pipeline, sorted, batched", group="peer", **common, **tuned),
        TorchInt8("torch-int8", "PyTorch dynamic int8 (quantize_dynamic)", group="peer", **common, **tuned),
        Ort("ort-fp32", "ONNX Runtime (optimum), fp32", group="peer", **common, **tuned),
        OrtInt8("ort-int8", "ONNX Runtime (optimum), dynamic int8", group="peer", **common, **tuned),
        project("fp32", "weibolabel fp32"),
        project("own-forward", "weibolabel fp32, model's own forward"),
    ]
    if device.type == "cuda" or cpu_has_native_bf16():
        contenders.append(project("bf16", "weibolabel bf16 (--mixed_precision bf16)"))
    contenders.append(project("int8", "weibolabel int8 (--quantize int8)"))
    contenders.append(project("onnx-int8", "weibolabel onnx-int8 (--quantize onnx-int8)"))
    for contender in contenders:
        if isinstance(contender, Ort):
            contender.worker = worker
        if contender.batch_candidates:
            contender.batch_size = 32 if 32 in peers else peers[0]
    if args.contenders:
        unknown = set(args.contenders) - {c.key for c in contenders}
        if unknown:
            raise SystemExit(f"--contenders: unknown {sorted(unknown)}; known: {[c.key for c in contenders]}")
        contenders = [c for c in contenders if c.key in args.contenders or c.key == "project-fp32"]
    return contenders


def start_worker(args) -> OrtWorker | None:
    python = Path(args.optimum_python)
    if args.skip_ort or not python.is_file():
        return None
    common.WORK_DIR.mkdir(parents=True, exist_ok=True)
    worker = OrtWorker(python, args.threads, common.WORK_DIR / "ort_worker.log")
    try:
        versions = worker.call(op="versions")["versions"]
    except Skip as error:
        print(f"skipped: ONNX Runtime contenders ({error})", flush=True)
        worker.close()
        return None
    args.ort_versions = ", ".join(f"{k} {v}" for k, v in versions.items())
    return worker


# ------------------------------------------------------------------------------------------------- throughput
def throughput(contenders: list[Contender], model_dir: Path, texts: list[str], args) -> list[Contender]:
    """Load every contender, calibrate the peers' batch sizes, then --rounds interleaved, rotated passes."""
    ready = []
    for contender in contenders:
        started = time.perf_counter()
        try:
            contender.load(model_dir, args.max_length)
        except Skip as error:
            print(f"skipped: {contender.name}: {error}", flush=True)
            continue
        if contender.load_seconds is None:
            contender.load_seconds = time.perf_counter() - started
        contender.warm_up(texts[: args.warmup])
        ready.append(contender)
        print(f"loaded {contender.name} in {contender.load_seconds:.1f} s", flush=True)
    if not args.quick:
        sample = corpus_mod.build_corpus(args.calibration_texts, args.seed + 1)
        for contender in ready:
            if not contender.settings():
                continue
            for setting in contender.settings():
                contender.use(setting)
                contender.calibration[setting] = contender.timed(sample)[0].seconds
            contender.use(min(contender.calibration, key=contender.calibration.get))
            if isinstance(contender, Ort):
                contender.drop_others()
            print(f"calibrated {contender.name}: {describe_calibration(contender)}", flush=True)
    for round_index in range(args.rounds):
        shift = round_index % len(ready)
        order = ready[shift:] + ready[:shift]
        print(f"round {round_index + 1}/{args.rounds}: {' -> '.join(c.key for c in order)}", flush=True)
        for contender in order:
            run, probs = contender.timed(texts)
            contender.runs.append(run)
            contender.probs = probs
            print(f"  {contender.key}: {run.seconds:.2f} s (CPU {run.cpu_seconds:.0f} s, load {run.load:.1f})")
    return ready


def describe_calibration(contender: Contender) -> str:
    def name(setting) -> str:
        return " batch ".join(map(str, setting)) if isinstance(setting, tuple) else f"batch {setting}"

    tried = ", ".join(f"{name(k)} {v:.1f} s" for k, v in contender.calibration.items())
    return f"{tried} -> {name(contender.chosen())}"


def keeps_labels(key: str, args) -> bool:
    """fp32 paths always; bf16 and int8 where the trained folds showed them within the agreement bounds (unknown
    without the agreement part: then they do not count)."""
    return key in ("project-fp32", "project-own-forward") or args.eligible.get(key, False)


def best(contenders: list[Contender], group: str, eligible=lambda c: True) -> Contender | None:
    candidates = [c for c in contenders if c.group == group and eligible(c)]
    return min(candidates, key=lambda c: c.median) if candidates else None


def per_round(first: Contender, second: Contender) -> list[float]:
    """second's seconds / first's, round by round: how many times faster `first` was in each round."""
    return [b / a for a, b in zip(first.seconds, second.seconds)]


def spread(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def agreement_lower_bound(agree: int, rows: int, confidence: float = 0.95) -> float:
    """The exact (Clopper-Pearson) one-sided lower confidence bound of the agreement share that `agree` equal labels
    out of `rows` can vouch for (tests/test_bench_smoke.py checks its coverage)."""
    return float(binomtest(agree, rows, alternative="greater").proportion_ci(confidence_level=confidence).low)


def label_agreement(reference: np.ndarray, other: np.ndarray) -> tuple[float, int, int, float]:
    """(share of equal labels, rows compared, rows differing, largest probability difference) over rows both
    scored."""
    both = ~np.isnan(reference).any(axis=1) & ~np.isnan(other).any(axis=1)
    same = reference[both].argmax(axis=1) == other[both].argmax(axis=1)
    diff = float(np.abs(reference[both] - other[both]).max()) if both.any() else float("nan")
    return (float(same.mean()) if both.any() else float("nan")), int(both.sum()), int((~same).sum()), diff


def throughput_report(ready: list[Contender], texts: list[str], tokens: dict[str, int], args) -> tuple[str, dict]:
    reference = next(c for c in ready if c.key == "project-fp32")
    best_project = best(ready, "project", lambda c: keeps_labels(c.key, args))
    best_peer = best(ready, "peer")
    rows = []
    for c in ready:
        median = c.median
        same, _, differ, _ = label_agreement(reference.probs, c.probs)
        rows.append(
            [
                c.name,
                f"{median:.2f}",
                f"{min(c.seconds):.2f}-{max(c.seconds):.2f}",
                f"{len(texts) / median:.1f}",
                f"{tokens[c.key] / median:.0f}",
                f"{statistics.median(r.cpu_seconds for r in c.runs):.1f}",
                f"{max(r.load for r in c.runs):.1f}",
                f"{c.load_seconds:.1f}",
                f"{100 * same:.2f}% ({differ})",
                c.setting(),
            ]
        )
    header = ["contender", "median s", "min-max s", "comments/s", "real tokens/s", "CPU s", "load", "model load s"]
    header += ["labels = fp32 (differ)", "setting"]
    lines = [
        f"{args.rounds} rounds, interleaved, the order rotated each round; {len(texts)} comments per pass; "
        f"{args.threads} threads for every contender (torch and ONNX Runtime intra-op).",
        "",
        markdown_table(header, rows),
        "",
    ]
    if best_project:
        round_header = ["contender", *[f"round {r + 1}" for r in range(args.rounds)], "median"]
        round_rows = []
        for c in ready:
            ratios = per_round(best_project, c)
            round_rows.append([c.name, *[f"{x:.2f}" for x in ratios], f"{statistics.median(ratios):.2f}"])
        lines += [
            f"Per round, each contender's time over {best_project.name}'s (how many times faster that path was):",
            "",
            markdown_table(round_header, round_rows),
            "",
        ]
    summary = {}
    left_out = [c.name for c in ready if c.group == "project" and not keeps_labels(c.key, args)]
    if left_out:
        why = "outside the agreement bounds" if args.eligible else "agreement not measured (--skip_agreement)"
        lines.append(f"- not counted as a label-keeping project path ({why}): {', '.join(left_out)}")
    if best_project and best_peer:
        ratios = per_round(best_project, best_peer)
        summary["best_over_peer"] = statistics.median(ratios)
        verdict = (
            "met" if min(ratios) >= 1.5 else "met at the median" if statistics.median(ratios) >= 1.5 else "not met"
        )
        lines.append(
            f"- best project path ({best_project.name}) / best peer ({best_peer.name}): **{spread(ratios)}x** "
            f"median (min-max over rounds; target >= 1.5x: {verdict})"
        )
    prototype = next((c for c in ready if c.key == "prototype"), None)
    if best_project and prototype:
        ratios = per_round(best_project, prototype)
        summary["best_over_prototype"] = statistics.median(ratios)
        verdict = "met" if min(ratios) >= 4 else "met at the median" if statistics.median(ratios) >= 4 else "not met"
        lines.append(
            f"- best project path / prototype: **{spread(ratios)}x** (target >= 4x: {verdict}); "
            f"weibolabel fp32 / prototype: {spread(per_round(reference, prototype))}x"
        )
    own = next((c for c in ready if c.key == "project-own-forward"), None)
    if own:
        ratios = per_round(reference, own)
        gain = statistics.median(ratios) - 1
        summary["custom_forward_gain"] = gain
        lines.append(
            f"- custom forward / model's own forward (fp32, same batching): {spread(ratios, 3)}x, a "
            f"{100 * gain:+.1f}% gain: {'keep it' if gain >= 0.05 else 'under 5%: drop it for this use'}"
        )
    pipes = [c for c in ready if c.key.startswith("pipeline")]
    if len(pipes) == 2:
        winner = min(pipes, key=lambda c: c.median)
        lines.append(
            f"- pipeline at its best: {winner.name} ({winner.setting()}); batch 1 / sorted: "
            f"{spread(per_round(pipes[1], pipes[0]))}x the time"
        )
    calibrated = [c for c in ready if c.calibration]
    if calibrated:
        lines.append(
            f"- peers' batch sizes, one pass over {args.calibration_texts} other comments each: "
            + "; ".join(f"{c.name}: {describe_calibration(c)}" for c in calibrated)
        )
    lines += [
        "",
        "Seconds: texts in, probabilities out (tokenisation included, model load not); `CPU s`: CPU seconds of the "
        "process that labels (all its threads); `load`: the highest 1-minute load average at a pass's start and "
        f"end ({os.cpu_count()} cores: above that, other work shared the machine). Real tokens: with [CLS]/[SEP] "
        "after each contender's truncation, padding not counted. `labels = fp32`: label agreement with weibolabel "
        "fp32 on these comments (random weights: small margins, so the harshest case; the trained folds are "
        "below).",
    ]
    return "\n".join(lines), summary


# ------------------------------------------------------------------------------------------------- agreement
@dataclass
class Fold:
    checkpoint: Path
    texts: list[str]
    gold: np.ndarray | None
    recorded: np.ndarray | None  # the run's own out-of-fold probabilities, for a sanity check


def ensure_demo_run(run: Path) -> None:
    """Train the demo run (configs/demo.yaml: 5 folds of a small from-scratch BERT on the shipped sample), as
    scripts/demo.sh does, when it is not there."""
    if RunLayout(run).oof_predictions.is_file():
        return
    if run.resolve() != DEFAULT_AGREEMENT_RUN.resolve():
        raise SystemExit(f"--agreement_run {run}: no finished training run there (no oof_predictions.parquet).")
    print(f"training the demo run into {run} (configs/demo.yaml; a few minutes on 2 cores) ...", flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    demo_model = common.REPO_ROOT / "models" / "demo-bert"
    if not (demo_model / "config.json").is_file():
        subprocess.run(
            [sys.executable, "-m", "weibolabel.demo_model", str(demo_model)], check=True, cwd=common.REPO_ROOT, env=env
        )
    subprocess.run(
        ["bash", "scripts/launch.sh", "jobs/train.py", "--config", "configs/demo.yaml"],
        check=True,
        cwd=common.REPO_ROOT,
        env=env,
    )


def trained_folds(run: Path) -> tuple[list[Fold], float, int]:
    """Each fold's checkpoint with its held-out rows (texts cleaned as the project cleans them), the run's
    temperature and max_length."""
    import pandas as pd
    import yaml

    layout = RunLayout(run)
    oof = pd.read_parquet(layout.oof_predictions)
    prob_columns = [c for c in oof.columns if c.startswith("prob_")]
    temperature = json.loads(layout.calibration.read_text())["temperature"] if layout.calibration.is_file() else 1.0
    max_length = int(yaml.safe_load(layout.config.read_text())["max_length"])
    folds = []
    for k in sorted(oof["fold"].unique()):
        part = oof[oof["fold"] == k]
        folds.append(
            Fold(
                layout.fold_dir(int(k)),
                [clean_text(t) for t in part["text"]],
                part["gold"].to_numpy(dtype=np.int64),
                part[prob_columns].to_numpy(dtype=np.float32),
            )
        )
    return folds, float(temperature), max_length


def agreement(contenders: list[Contender], folds: list[Fold], max_length: int) -> dict[str, np.ndarray]:
    """Every contender's probabilities on every fold's held-out rows, by fold k's checkpoint."""
    found: dict[str, list[np.ndarray]] = {}
    skipped = set()
    for k, fold in enumerate(folds):
        for contender in contenders:
            if contender.key in skipped:
                continue
            try:
                contender.load(fold.checkpoint, max_length)
            except Skip as error:
                print(f"skipped on the trained folds: {contender.name}: {error}", flush=True)
                skipped.add(contender.key)
                continue
            if isinstance(contender, Ort):  # both graphs
                for name in contender.loaded:
                    contender.use((name, contender.batch_size))
                    found.setdefault(f"{contender.key}:{name}", []).append(contender.label(fold.texts))
            else:
                found.setdefault(contender.key, []).append(contender.label(fold.texts))
            contender.close()
        print(f"  fold {k}: {len(fold.texts)} held-out rows labeled by {len(contenders) - len(skipped)} contenders")
    return {key: np.concatenate(parts) for key, parts in found.items() if len(parts) == len(folds)}


def agreement_report(
    contenders: list[Contender],
    probs: dict[str, np.ndarray],
    folds: list[Fold],
    *,
    temperature: float,
    source: str,
    args,
) -> str:
    reference = probs["project-fp32"]
    gold = np.concatenate([f.gold for f in folds]) if folds[0].gold is not None else None
    names = {c.key: c.name for c in contenders}
    for c in contenders:
        for file_name in getattr(c, "files", ()):
            names[f"{c.key}:{file_name}"] = f"{c.name}, {file_name}"

    def ece(p: np.ndarray, scaled: bool) -> float:  # over the rows fp32 and the contender both scored
        ok = ~np.isnan(p).any(axis=1) & ~np.isnan(reference).any(axis=1)
        p = softmax(log_probs(p[ok]), temperature) if scaled else p[ok]
        return expected_calibration_error(p, gold[ok])

    rows = []
    ece_fp32 = ece(reference, True) if gold is not None else float("nan")
    for key, p in probs.items():
        same, compared, differ, diff = label_agreement(reference, p)
        scaled = ece(p, True) if gold is not None else float("nan")
        rows.append(
            [
                names[key],
                f"{compared}",
                f"{100 * same:.2f}%",
                f"{differ}",
                f"{diff:.1e}",
                f"{ece(p, False):.4f}" if gold is not None else "-",
                f"{scaled:.4f} ({scaled - ece_fp32:+.4f})" if gold is not None else "-",
            ]
        )
        if key in ("project-int8", "project-onnx-int8", "project-bf16"):
            args.eligible[key] = bool(same >= AGREEMENT_FLOOR and abs(scaled - ece_fp32) <= ECE_TOLERANCE)
        if key in ("project-int8", "project-onnx-int8"):
            args.int8_agreement[key] = (same, compared, differ, diff, ece_fp32, scaled)
    header = ["contender", "rows", "labels = fp32", "differ", "largest |Δprob|", "ECE raw", "ECE after T (vs fp32)"]
    lines = [source, "", markdown_table(header, rows), ""]
    recorded = np.concatenate([f.recorded for f in folds]) if folds[0].recorded is not None else None
    if recorded is not None:
        ok = ~np.isnan(reference).any(axis=1)
        lines.append(
            f"- weibolabel fp32 against the run's own out-of-fold probabilities (oof_predictions.parquet): largest "
            f"difference {float(np.abs(reference[ok] - recorded[ok]).max()):.1e} (a check that the folds are read "
            "right)"
        )
    for key, (same, compared, differ, diff, before, after) in args.int8_agreement.items():
        lower = agreement_lower_bound(compared - differ, compared)
        verdict = "within both bounds" if args.eligible[key] else "outside a bound"
        lines.append(
            f"- --quantize {key.removeprefix('project-')}: labels agree with fp32 on {100 * same:.2f}% ({differ} of "
            f"{compared} differ; floor {100 * AGREEMENT_FLOOR:.1f}%; one-sided 95% lower bound {100 * lower:.2f}%), "
            f"largest probability difference {diff:.1e}, ECE after T {before:.4f} -> {after:.4f} (tolerance "
            f"±{ECE_TOLERANCE}): {verdict} at the point estimates"
        )
    lines += [
        "",
        f"ECE: expected calibration error over the out-of-fold rows with gold labels (15 bins), of the raw "
        f"probabilities and after the run's temperature T = {temperature:.3f} (calibration.json; what the labeling "
        "job writes). Every contender labels the same cleaned texts with fold k's checkpoint; rows a contender "
        "did not score (empty, [UNK] only: the project skips them) are left out of its comparison.",
    ]
    return "\n".join(lines)


def smoke_folds(model_dir: Path, texts: list[str], seed: int) -> list[Fold]:
    """--quick without a trained run: the tiny random checkpoint over the corpus, random 'gold' labels (exercises
    the code, measures nothing)."""
    rng = np.random.default_rng(seed)
    return [Fold(model_dir, [clean_text(t) for t in texts], rng.integers(0, 4, size=len(texts)), None)]


# ------------------------------------------------------------------------------------------------- the job
def run_job(model_dir: Path, texts: list[str], args, device: torch.device) -> str:
    """`python jobs/label_corpus.py` end to end on a Parquet file of the same texts, once, after the rounds."""
    with tempfile.TemporaryDirectory(dir=common.WORK_DIR) as tmp:
        source = corpus_mod.write_corpus(texts, Path(tmp) / "texts.parquet")
        options = ["--max_length", str(args.max_length), "--batch_size", str(args.batch_size)]
        options += ["--max_tokens", str(args.max_tokens)]
        load = os.getloadavg()[0]
        run = common.run_label_job(model_dir, source, Path(tmp) / "labels.parquet", options, device.type)
        load = max(load, os.getloadavg()[0])
    inner = ""
    if run.job_seconds is not None:  # from the job's summary.json
        inner = f"; its own timer (summary.json): labeling {run.job_seconds:.1f} s"
        if run.summary.get("seconds_to_first_batch") is not None:
            inner += f", {run.summary['seconds_to_first_batch']:.1f} s from start to the first batch"
    return (
        f"- whole job, `python jobs/label_corpus.py` (fp32; one run after the rounds; start-up, model load, read, "
        f"label, write): {run.seconds:.1f} s, {len(texts) / run.seconds:.1f} comments/s, peak RSS "
        f"{common.mib(run.peak_rss)}, load {load:.1f}{inner}"
    )


# ------------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_texts", type=int, default=None, help="Default: 1000 (64 with --quick).")
    parser.add_argument("--rounds", type=int, default=None, help="Interleaved rounds (default 3; 2 with --quick).")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda (ORT and int8 contenders: CPU only).")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="Threads of every contender.")
    parser.add_argument("--batch_size", type=int, default=256, help="The project's rows per batch (job default).")
    parser.add_argument("--max_tokens", type=int, default=16384, help="The project's token budget per batch.")
    parser.add_argument("--max_length", type=int, default=128, help="Truncation, all but the prototype (100).")
    parser.add_argument(
        "--peer_batch_sizes", type=int, nargs="+", default=[1, 8, 32, 128], help="Batch sizes tried for the peers."
    )
    parser.add_argument("--calibration_texts", type=int, default=256, help="Comments of each setting's trial.")
    parser.add_argument("--model", default=None, help="A checkpoint to time instead of the random-weight one.")
    parser.add_argument(
        "--agreement_run",
        default=None,
        help="Trained run for the agreement part (default runs/demo, not with --quick).",
    )
    parser.add_argument("--skip_agreement", action="store_true", help="No agreement part on the trained folds.")
    parser.add_argument("--agreement_only", action="store_true", help="Only the agreement part; prints, writes none.")
    parser.add_argument("--contenders", nargs="+", default=None, help="Only these (keys; weibolabel fp32 always).")
    parser.add_argument("--optimum_python", default=str(OPTIMUM_PYTHON), help="Python of the optimum virtualenv.")
    parser.add_argument("--skip_ort", action="store_true", help="Leave out the ONNX Runtime contenders.")
    parser.add_argument("--seed", type=int, default=0, help="Corpus seed.")
    parser.add_argument("--warmup", type=int, default=32, help="Texts labeled once by each contender after load.")
    parser.add_argument(
        "--quick", action="store_true", help="Tiny model, 64 texts, 2 rounds, no calibration; writes no results."
    )
    parser.add_argument("--skip_job", action="store_true", help="Do not time jobs/label_corpus.py end to end.")
    parser.add_argument("--no_results", action="store_true", help="Print only; do not append to bench/results/.")
    args = parser.parse_args()
    common.quiet_transformers()
    torch.set_num_threads(args.threads)
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.eligible, args.int8_agreement, args.ort_versions = {}, {}, None
    device = torch.device(args.device)
    num_texts = args.num_texts or (64 if args.quick else 1000)
    if args.model:
        model_dir, model_name = Path(args.model), f"checkpoint {args.model}"
    else:
        shape = common.TINY if args.quick else common.BERT_BASE
        tag = "tiny" if args.quick else "bert-base"
        model_dir = common.build_benchmark_model(common.WORK_DIR / f"model-{tag}-random", shape)
        model_name = f"{tag} shape ({shape}), random weights, 4 labels, bundled bert-base-chinese tokenizer"
    texts = corpus_mod.build_corpus(num_texts, args.seed)
    corpus_text = corpus_mod.length_report(texts)
    print(corpus_text, flush=True)
    print(f"model: {model_name}; device {device}; threads {args.threads}; {args.rounds} rounds", flush=True)

    worker = start_worker(args)
    if worker is None and not args.skip_ort:
        print(
            f"skipped: ONNX Runtime contenders (no optimum virtualenv at {args.optimum_python}; "
            "`bash bench/peers/setup_optimum.sh` makes it)",
            flush=True,
        )
    try:
        # 1. Agreement on the trained folds first: it decides whether --quantize int8 counts as a label-keeping path.
        agreement_text = ""
        if not args.skip_agreement:
            if args.quick and args.agreement_run is None:
                print("agreement: smoke check on the tiny random model (--quick; --agreement_run for a real one)")
                folds, temperature, max_length = smoke_folds(model_dir, texts[:32], args.seed), 1.0, args.max_length
                source = "Smoke check only (--quick): random weights, random gold labels."
            else:
                run = Path(args.agreement_run or DEFAULT_AGREEMENT_RUN)
                ensure_demo_run(run)
                folds, temperature, max_length = trained_folds(run)
                rows = sum(len(f.texts) for f in folds)
                source = f"Trained checkpoints: the {len(folds)} folds of {run}, each on its {rows // len(folds)}-odd "
                source += f"held-out rows ({rows} out-of-fold rows with gold labels)."
            print("agreement on the trained folds ...", flush=True)
            contenders = make_contenders(args, device, worker)
            probs = agreement(contenders, folds, max_length)
            agreement_text = agreement_report(
                contenders, probs, folds, temperature=temperature, source=source, args=args
            )
            print("\n" + agreement_text + "\n", flush=True)

        if args.agreement_only:
            return
        # 2. Throughput, interleaved.
        contenders = make_contenders(args, device, worker)
        ready = throughput(contenders, model_dir, texts, args)
        tokenizer = hf_tokenizer(model_dir)
        tokens = {c.key: real_tokens(tokenizer, texts, args.max_length) for c in ready}
        tokens["prototype"] = real_tokens(tokenizer, texts, PROTOTYPE_LENGTH)
        throughput_text, _ = throughput_report(ready, texts, tokens, args)
        for contender in ready:
            contender.close()
        print("\n" + throughput_text, flush=True)
    finally:
        if worker is not None:
            worker.close()
    job_text = "" if args.skip_job else run_job(model_dir, texts, args, device)
    if job_text:
        print(job_text)
    body = [corpus_text, "", f"Model: {model_name}.", ""]
    if args.ort_versions:
        body += [f"ONNX Runtime contenders: bench/.venv-optimum with {args.ort_versions}.", ""]
    body += ["### Throughput", "", throughput_text, job_text]
    if agreement_text:
        body += ["", "### Label agreement with fp32 on trained checkpoints", "", agreement_text]
    if not (args.quick or args.no_results):
        path = common.append_section(str(device), f"Labeling throughput ({num_texts} comments)", "\n".join(body))
        print(f"\nappended to {path.relative_to(common.REPO_ROOT)}")


if __name__ == "__main__":
    main()
