"""Labeling throughput: the project's labeling job against the prototype's way and its peers at their best, on the
same texts, weights, threads and machine, in interleaved rounds (the order rotated); then each one's label agreement
with fp32 on the demo run's trained folds. bench/README.md says how each contender runs and what is reported.

Peers: bench/peers/labeling.py, one function each (the prototype's way, transformers.pipeline at batch 1 and sorted,
PyTorch dynamic int8, ONNX Runtime fp32 and int8 through optimum in bench/.venv-optimum); a tuned peer's batch size
is chosen first on --calibration_texts other comments. The project: `python jobs/label_corpus.py` (fp32; bf16 where
the CPU has native bf16; --quantize onnx-int8) on a Parquet copy of the texts, timed by its
summary.json's `seconds_labeling` (model load excluded, as for the peers), its whole run's wall time beside it.

    python bench/label_throughput.py                   # 1,000 comments, 3 rounds; appends to bench/results/
    python bench/label_throughput.py --num_texts 200 --rounds 2 --no_results
    python bench/label_throughput.py --quick           # tiny model, 64 comments, 1 round; writes nothing
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import binomtest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import corpus
from peers import labeling as peers

from weibolabel.data.labeled import clean_text
from weibolabel.run.layout import RunLayout
from weibolabel.stats.calibration import expected_calibration_error, log_probs, softmax
from weibolabel.util.markdown import markdown_table

DEMO_RUN = common.REPO_ROOT / "runs" / "demo"
# bf16 or int8 may become a default only where its labels agree with fp32 on at least this share of the demo's
# out-of-fold rows and its ECE after temperature moves by at most this.
AGREEMENT_FLOOR, ECE_TOLERANCE = 0.995, 0.005
PROJECT = {  # key: (name, the job's options, its environment)
    "project-fp32": ("weibolabel fp32", [], {}),
    "project-bf16": ("weibolabel bf16", [], {"ACCELERATE_MIXED_PRECISION": "bf16"}),
    "project-onnx-int8": ("weibolabel --quantize onnx-int8", ["--quantize", "onnx-int8"], {}),
}


@dataclass
class Contender:
    key: str
    name: str
    group: str  # "prototype", "peer" or "project"
    make: object  # (checkpoint, max_length) -> label(texts, batch_size) -> (probabilities, seconds)
    batch_sizes: tuple[int, ...] = (0,)  # tried by the calibration (0: the contender's own batching)
    batch_size: int = 0
    seconds: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    jobs: list[dict] = field(default_factory=list)  # the project's: each job's summary.json and wall time
    timed_jobs: list[dict] = field(default_factory=list)  # those of the rounds
    probs: np.ndarray | None = None
    label: object = None  # loaded, at its batch size: texts -> (probabilities, seconds)

    def load(self, checkpoint: Path, max_length: int) -> tuple:
        """(texts -> (probabilities, seconds), the loaded labeler, to close)."""
        loaded = self.make(checkpoint, max_length)
        return partial(loaded, batch_size=self.batch_size or (32 if 32 in self.batch_sizes else 0)), loaded


def close(label) -> None:
    getattr(label, "close", lambda: None)()  # the ONNX Runtime peers unload their graph from the worker


def job_loader(key: str, args, jobs: list[dict]):
    """A project path as a loader: each call of its `label` is one run of the labeling job."""
    _, options, env = PROJECT[key]
    env = env | {"WEIBOLABEL_CACHE": str(args.work / "onnx-cache")}  # empty at first: the first run exports

    def load(checkpoint: Path, max_length: int):
        if "--quantize" in options and args.device != "cpu":
            raise peers.Skip("--quantize is for CPUs")

        def label(texts: list[str], batch_size: int) -> tuple[np.ndarray, float]:
            with tempfile.TemporaryDirectory(dir=args.work) as tmp:
                source, output = corpus.write_corpus(texts, Path(tmp) / "in.parquet"), Path(tmp) / "out.parquet"
                run = {"device": args.device, "threads": args.threads, "env": env}
                found = common.label_job(
                    source, checkpoint, output, [*options, "--max_length", max_length, "--no_calibration"], **run
                )
                frame = pd.read_parquet(output, columns=["probs", "status"])
            if found["threads"] != args.threads:
                raise SystemExit(f"{key}: the job ran {found['threads']} threads, not {args.threads}")
            ok = (frame["status"] == "ok").to_numpy()
            probs = np.full((len(frame), len(frame["probs"][ok].iloc[0])), np.nan, dtype=np.float32)
            probs[ok] = np.stack(frame["probs"][ok].to_numpy())
            jobs.append(found)
            return probs, found["seconds_labeling"]

        return label

    return load


def make_contenders(args, worker) -> list[Contender]:
    def peer(function, **options):
        return lambda checkpoint, max_length: function(checkpoint, args.device, max_length, **options)

    tuned = tuple(args.peer_batch_sizes)
    found = [
        Contender("prototype", "prototype: pad to 100, no mask, batch 256", "prototype", peer(peers.prototype)),
        Contender("pipeline-b1", "transformers pipeline, batch 1", "peer", peer(peers.pipeline, sort=False)),
        Contender("pipeline-sorted", "transformers pipeline, sorted", "peer", peer(peers.pipeline, sort=True), tuned),
        Contender("torch-int8", "PyTorch dynamic int8", "peer", peer(peers.torch_int8), tuned),
        Contender("ort-fp32", "ONNX Runtime fp32 (optimum)", "peer", partial(peers.ort, worker, int8=False), tuned),
        Contender("ort-int8", "ONNX Runtime int8 (optimum)", "peer", partial(peers.ort, worker, int8=True), tuned),
    ]
    from weibolabel.model.inference import cpu_has_native_bf16

    for key, (name, _, _) in PROJECT.items():
        if key != "project-bf16" or args.device == "cuda" or cpu_has_native_bf16():
            found.append(Contender(key, name, "project", None))
            found[-1].make = job_loader(key, args, found[-1].jobs)
    return [c for c in found if not args.contenders or c.key in args.contenders or c.key == "project-fp32"]


def throughput(contenders: list[Contender], model: Path, texts: list[str], args) -> list[Contender]:
    """Each contender loaded and warmed up, a tuned peer's batch size chosen on other texts; then the rounds."""
    sample, ready = corpus.build_corpus(args.calibration_texts, args.seed + 1), []
    for contender in contenders:
        try:
            contender.label, _ = contender.load(model, args.max_length)
        except peers.Skip as error:
            print(f"skipped: {contender.name}: {error}", flush=True)
            continue
        ready.append(contender)
        if contender.group != "project" or not args.quick:  # the job's first run exports onnx-int8's graph
            contender.label(sample[:32])
        if len(contender.batch_sizes) > 1 and not args.quick:
            times = {size: contender.label.func(sample, size)[1] for size in contender.batch_sizes}
            contender.batch_size = min(times, key=times.get)
            contender.label = partial(contender.label.func, batch_size=contender.batch_size)
            print(f"  {contender.key}: " + ", ".join(f"batch {b} {t:.2f} s" for b, t in times.items()), flush=True)
    for round_index in range(args.rounds):
        order = common.rotated(ready, round_index)
        print(f"round {round_index + 1}/{args.rounds}: {' -> '.join(c.key for c in order)}", flush=True)
        for contender in order:
            load = os.getloadavg()[0]
            contender.probs, seconds = contender.label(texts)
            contender.seconds.append(seconds)
            contender.loads.append(max(load, os.getloadavg()[0]))
            contender.timed_jobs += contender.jobs[-1:]
            print(f"  {contender.key}: {seconds:.2f} s", flush=True)
    return ready


def agreement_lower_bound(agree: int, rows: int, confidence: float = 0.95) -> float:
    """The exact (Clopper-Pearson) one-sided lower confidence bound of the agreement share that `agree` equal labels
    out of `rows` vouch for (tests/test_bench_smoke.py checks its coverage)."""
    return float(binomtest(agree, rows, alternative="greater").proportion_ci(confidence_level=confidence).low)


def label_agreement(reference: np.ndarray, other: np.ndarray) -> tuple[float, int, int, float]:
    """(share of equal labels, rows compared, rows differing, largest probability difference) over rows both
    scored."""
    both = ~np.isnan(reference).any(axis=1) & ~np.isnan(other).any(axis=1)
    same = reference[both].argmax(axis=1) == other[both].argmax(axis=1)
    diff = float(np.abs(reference[both] - other[both]).max()) if both.any() else float("nan")
    return (float(same.mean()) if both.any() else float("nan")), int(both.sum()), int((~same).sum()), diff


def per_round(first: Contender, second: Contender) -> list[float]:
    """second's seconds / first's, round by round: how many times faster `first` was in each round."""
    return [b / a for a, b in zip(first.seconds, second.seconds)]


def throughput_report(ready: list[Contender], texts: list[str], eligible: dict, args) -> str:
    fp32 = next(c for c in ready if c.key == "project-fp32")

    def median(contender: Contender) -> float:
        return statistics.median(contender.seconds)

    best = min((c for c in ready if c.group == "project" and eligible.get(c.key, c is fp32)), key=median)
    rows, jobs = [], []
    for c in ready:
        same, _, differ, _ = label_agreement(fp32.probs, c.probs)
        setting = f"batch {c.label.keywords['batch_size']}" if len(c.batch_sizes) > 1 else "-"
        cells = [common.spread(c.seconds), f"{len(texts) / median(c):.1f}", f"{100 * same:.2f}% ({differ})"]
        rows.append([c.name, *cells, f"{max(c.loads):.1f}", setting])
        if c.timed_jobs:
            load = f"{c.timed_jobs[-1]['seconds_model_load']:.1f} (first run {c.jobs[0]['seconds_model_load']:.1f})"
            cells = [common.spread([j[k] for j in c.timed_jobs], 1) for k in ("wall", "seconds_to_first_batch")]
            jobs.append([c.name, *cells, load])
    ratios = [[c.name, *[f"{x:.2f}" for x in per_round(best, c)]] for c in ready]
    lines = [
        f"{len(texts)} comments a pass, {args.threads} threads for every contender, {args.rounds} rounds interleaved. "
        "Seconds: texts in, probabilities out, model load excluded (the project: the job's `seconds_labeling`); "
        f"median (min-max). `load`: the highest 1-minute load average seen ({os.cpu_count()} cores).",
        "",
        markdown_table(["contender", "seconds", "comments/s", "labels = fp32 (differ)", "load", "setting"], rows),
        "",
        "The project's jobs whole (`python jobs/label_corpus.py`), median (min-max) s:",
        "",
        markdown_table(["path", "job wall s", "start to first batch s", "model load s"], jobs),
        "",
        f"Per round, each contender's time over {best.name}'s:",
        "",
        markdown_table(["contender", *[f"round {r + 1}" for r in range(args.rounds)]], ratios),
        "",
    ]
    left_out = [c.name for c in ready if c.group == "project" and c is not fp32 and not eligible.get(c.key)]
    if left_out:
        lines.append(f"- not label-keeping (outside the agreement bounds, or not measured): {', '.join(left_out)}")
    for group, target in (("peer", 1.5), ("prototype", 4)):
        if others := [c for c in ready if c.group == group]:
            other = min(others, key=median)
            found = per_round(best, other)
            lines.append(f"- best project path ({best.name}) / {other.name}: **{common.spread(found)}x** ")
            lines[-1] += f"(target >= {target}x: {common.verdict(found, target)})"
    return "\n".join(lines)


@dataclass
class Fold:
    checkpoint: Path
    texts: list[str]  # cleaned as the project cleans them, for every contender
    gold: np.ndarray
    recorded: np.ndarray | None  # the run's own out-of-fold probabilities: a check that the folds are read right


def trained_folds(run: Path) -> tuple[list[Fold], float, int]:
    """Each fold's checkpoint with its held-out rows, the run's temperature and max_length; the demo run is trained
    first (as scripts/demo.sh does) when it is the one asked for and missing."""
    import yaml

    layout = RunLayout(run)
    if not layout.oof_predictions.is_file():
        if run.resolve() != DEMO_RUN.resolve():
            raise SystemExit(f"--agreement_run {run}: no finished training run there.")
        print(f"training the demo run into {run} (configs/demo.yaml) ...", flush=True)
        model = common.REPO_ROOT / "models" / "demo-bert"
        if not (model / "config.json").is_file():
            subprocess.run([sys.executable, "-m", "weibolabel.model.demo", model], check=True, cwd=common.REPO_ROOT)
        common.run_job("train", ["--config", "configs/demo.yaml", "--output_dir", run])
    oof = pd.read_parquet(layout.oof_predictions)
    probs = [c for c in oof.columns if c.startswith("prob_")]
    temperature = json.loads(layout.calibration.read_text())["temperature"] if layout.calibration.is_file() else 1.0
    folds = []
    for k, part in oof.groupby("fold", sort=True):
        texts, gold = [clean_text(t) for t in part["text"]], part["gold"].to_numpy(dtype=np.int64)
        folds.append(Fold(layout.fold_dir(int(k)), texts, gold, part[probs].to_numpy(dtype=np.float32)))
    return folds, float(temperature), int(yaml.safe_load(layout.config.read_text())["max_length"])


def agreement(contenders: list[Contender], folds: list[Fold], max_length: int) -> dict[str, np.ndarray]:
    """Every contender's probabilities on every fold's held-out rows, by fold k's checkpoint."""
    found: dict[str, list[np.ndarray]] = {}
    for k, fold in enumerate(folds):
        for contender in contenders:
            try:
                label, loaded = contender.load(fold.checkpoint, max_length)
            except peers.Skip as error:
                print(f"skipped on fold {k}: {contender.name}: {error}", flush=True)
                continue
            found.setdefault(contender.key, []).append(label(fold.texts)[0])
            close(loaded)
        print(f"  fold {k}: {len(fold.texts)} held-out rows labeled", flush=True)
    return {key: np.concatenate(parts) for key, parts in found.items() if len(parts) == len(folds)}


def agreement_report(contenders: list, folds: list[Fold], temperature: float, max_length: int, eligible: dict) -> str:
    print("agreement on the trained folds ...", flush=True)
    probs, names = agreement(contenders, folds, max_length), {c.key: c.name for c in contenders}
    reference, gold = probs["project-fp32"], np.concatenate([f.gold for f in folds])

    def ece(p: np.ndarray, scaled: bool) -> float:  # over the rows fp32 and the contender both scored
        ok = ~np.isnan(p).any(axis=1) & ~np.isnan(reference).any(axis=1)
        return expected_calibration_error(softmax(log_probs(p[ok]), temperature) if scaled else p[ok], gold[ok])

    rows, notes, ece_fp32 = [], [], ece(reference, True)
    for key, p in probs.items():
        same, compared, differ, diff = label_agreement(reference, p)
        lower, scaled = agreement_lower_bound(compared - differ, compared), ece(p, True)
        rows.append([names[key], compared, f"{100 * same:.2f}% (>= {100 * lower:.2f}%)", differ, f"{diff:.1e}"])
        rows[-1] += [f"{ece(p, False):.4f}", f"{scaled:.4f} ({scaled - ece_fp32:+.4f})"]
        if key in ("project-bf16", "project-onnx-int8"):
            eligible[key] = bool(same >= AGREEMENT_FLOOR and abs(scaled - ece_fp32) <= ECE_TOLERANCE)
            notes.append(f"- {names[key]}: {'within both bounds' if eligible[key] else 'outside a bound'}")
    header = ["contender", "rows", "labels = fp32 (95% lower bound)", "differ", "largest |Δprob|", "ECE raw"]
    lines = [markdown_table([*header, "ECE after T"], rows), ""]
    if folds[0].recorded is not None:
        recorded, ok = np.concatenate([f.recorded for f in folds]), ~np.isnan(reference).any(axis=1)
        largest = float(np.abs(reference[ok] - recorded[ok]).max())
        lines.append(f"- weibolabel fp32 against the run's own out-of-fold probabilities: largest |Δ| {largest:.1e}")
    lines += notes
    lines.append(f"- bounds: labels equal on >= {100 * AGREEMENT_FLOOR:.1f}%, ECE after T within ±{ECE_TOLERANCE}, ")
    lines[-1] += f"at the point estimates; ECE: 15 bins, raw and after the run's temperature T = {temperature:.3f}."
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_texts", type=int, default=None, help="Default 1000 (64 with --quick).")
    parser.add_argument("--rounds", type=int, default=None, help="Interleaved rounds (default 3; 1 with --quick).")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="int8 and ONNX Runtime: CPU only.")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="Threads of every contender.")
    parser.add_argument("--max_length", type=int, default=128, help="Truncation of all but the prototype (100).")
    parser.add_argument("--peer_batch_sizes", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--calibration_texts", type=int, default=256, help="Comments of each peer setting's trial.")
    parser.add_argument("--model", type=Path, default=None, help="A checkpoint instead of random bert-base weights.")
    parser.add_argument("--agreement_run", type=Path, default=None, help="Trained run (default runs/demo).")
    parser.add_argument("--parts", nargs="+", default=["throughput", "agreement"], choices=["throughput", "agreement"])
    parser.add_argument("--contenders", nargs="+", default=None, help="Only these keys (project-fp32 always).")
    parser.add_argument("--optimum_python", type=Path, default=common.BENCH_DIR / ".venv-optimum" / "bin" / "python")
    parser.add_argument("--seed", type=int, default=0, help="Corpus seed.")
    parser.add_argument("--quick", action="store_true", help="Tiny model, 64 texts, 1 round; writes no results.")
    parser.add_argument("--no_results", action="store_true", help="Print only; do not append to bench/results/.")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # killed: the running job goes too, scratch folders go
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.num_texts = args.num_texts or (64 if args.quick else 1000)
    torch.set_num_threads(args.threads)
    shape = "tiny" if args.quick else "bert-base"
    model = args.model or common.build_benchmark_model(
        common.WORK_DIR / f"model-{shape}-random", common.TINY if args.quick else common.BERT_BASE
    )
    texts = corpus.build_corpus(args.num_texts, args.seed)
    body = [corpus.length_report(texts), "", f"Model: {args.model or f'{shape} shape, random weights'}."]
    print("\n".join(body), flush=True)
    worker = None
    if args.optimum_python.is_file():
        worker = peers.OrtWorker(args.optimum_python, args.threads, common.WORK_DIR)
        body.append(f"ONNX Runtime peers: bench/.venv-optimum with {worker.versions}.")
    with tempfile.TemporaryDirectory(dir=common.WORK_DIR) as work:
        args.work, eligible, sections = Path(work), {}, []
        contenders = make_contenders(args, worker)
        ready = throughput(contenders, model, texts, args) if "throughput" in args.parts else []
        if "agreement" in args.parts:
            if args.quick and args.agreement_run is None:  # exercises the code, measures nothing
                gold = np.random.default_rng(args.seed).integers(0, 4, size=32)
                folds, temperature = [Fold(model, [clean_text(t) for t in texts[:32]], gold, None)], 1.0
                max_length, source = args.max_length, "Smoke check only (--quick): random weights, random gold labels."
            else:
                folds, temperature, max_length = trained_folds(args.agreement_run or DEMO_RUN)
                rows = sum(len(f.texts) for f in folds)
                source = f"The {len(folds)} folds of {args.agreement_run or 'runs/demo'}: {rows} out-of-fold rows."
            report = agreement_report(contenders, folds, temperature, max_length, eligible)
            sections = ["### Label agreement with fp32 on trained checkpoints", "", source, "", report]
        if worker:
            worker.close()
    if ready:
        sections = ["### Throughput", "", throughput_report(ready, texts, eligible, args), "", *sections]
    print("\n" + "\n".join(sections))
    if not (args.quick or args.no_results):
        title = f"Labeling throughput ({len(texts)} comments)"
        path = common.append_section(args.device, title, "\n".join([*body, "", *sections]))
        print(f"\nappended to {path.relative_to(common.REPO_ROOT)}")


if __name__ == "__main__":
    main()
