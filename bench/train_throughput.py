"""Training throughput: the whole job, `python jobs/train.py` (fp32; bf16 where the CPU has native bf16), against
the prototype's loop (bench/peers/prototype_train.py) on the job's rows, folds and settings, each timed from process
start to exit, in interleaved rounds (the order rotated); the per-epoch rates from each run's own records (the
job's metrics.json: `num_train` and every epoch's `train_seconds`; the prototype's records.json).

Setups: `demo` (configs/demo.yaml on the shipped sample: the demo BERT, 5 folds x 10 epochs, max_length 100 for
both) and `bert-base` (bert-base-chinese's shape, random weights, --rows corpus comments with random labels, 2 folds
x 1 epoch, batch 32; the job cuts at 128 tokens, the prototype at 100).

    python bench/train_throughput.py                      # both setups, 3 rounds; appends to bench/results/
    python bench/train_throughput.py --setups demo --rounds 5 --no_results
    python bench/train_throughput.py --quick              # tiny models, 2 folds x 1 epoch, 1 round; writes nothing
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import corpus

from weibolabel.run.layout import RunLayout
from weibolabel.util.markdown import markdown_table

PROTOTYPE = common.BENCH_DIR / "peers" / "prototype_train.py"
BERT_BASE = ["--hidden_size", "768", "--num_layers", "12", "--num_heads", "12", "--intermediate_size", "3072"]
TINY = ["--hidden_size", "32", "--num_layers", "1", "--num_heads", "2", "--intermediate_size", "64"]


def setup(name: str, args) -> list:
    """The job's options for a setup: its data and encoder (built once into bench/corpora) and its settings; paths
    relative to the repository, where the jobs run."""
    encoder = Path("bench/corpora") / f"encoder-{'tiny' if args.quick else name}"
    if not (common.REPO_ROOT / encoder / "config.json").is_file():
        sizes = TINY if args.quick else [] if name == "demo" else BERT_BASE
        command = [sys.executable, "-m", "weibolabel.model.demo", encoder, *sizes]
        subprocess.run(command, check=True, capture_output=True, cwd=common.REPO_ROOT)
    folds, epochs = (2, 1) if args.quick else (5, 10) if name == "demo" else (2, 1)
    options = ["--model_name_or_path", encoder, "--num_folds", folds, "--num_epochs", epochs]
    if name == "demo":
        return ["--config", "configs/demo.yaml", "--max_length", 100, *options]
    rows = 64 if args.quick else args.rows
    data = Path("bench/corpora") / f"labeled-{rows}-s{args.seed}.csv"  # corpus comments, random labels
    texts, rng = corpus.build_corpus(rows, args.seed), np.random.default_rng(args.seed)
    labels = rng.integers(0, 4, size=rows)  # speed does not depend on them
    pd.DataFrame({corpus.TEXT_COLUMN: texts, "Label": labels}).to_csv(common.REPO_ROOT / data, index=False)
    return ["--data", data, "--per_device_batch_size", 32, "--max_length", 128, *options]


def run_job(options: list, out: Path, env: dict, args) -> dict:
    found = common.run_job("train", [*options, "--output_dir", out], threads=args.threads, env=env)
    folds = json.loads(RunLayout(out).metrics.read_text())["folds"]
    rows = sum(f["num_train"] * len(f["history"]) for f in folds)
    return found | {"rate": rows / sum(h["train_seconds"] for f in folds for h in f["history"])}


def run_prototype(reference: Path, out: Path, args) -> dict:
    """The prototype's loop on the rows, folds and settings of the job's run in `reference`."""
    config = yaml.safe_load(RunLayout(reference).config.read_text())
    options = ["--folds", RunLayout(reference).folds_csv, "--output_dir", out, "--device", "cpu", "--max_length", 100]
    for name in ("data", "model_name_or_path", "num_epochs", "per_device_batch_size", "seed", "learning_rate"):
        options += [f"--{name}", config[name]]
    for name in ("weight_decay", "warmup_ratio", "max_grad_norm"):
        options += [f"--{name}", config[name]]
    found = common.run_job(PROTOTYPE, options, threads=args.threads)
    records = json.loads((out / "records.json").read_text())
    return found | {"rate": sum(r["rows"] for r in records) / sum(r["train_seconds"] for r in records)}


def measure(name: str, args) -> str:
    from weibolabel.model.inference import cpu_has_native_bf16

    with tempfile.TemporaryDirectory(dir=common.WORK_DIR) as tmp:
        work = Path(tmp)
        options = setup(name, args)
        contenders = {"job fp32": lambda out: run_job(options, out, {}, args)}
        if cpu_has_native_bf16():
            bf16 = {"ACCELERATE_MIXED_PRECISION": "bf16"}
            contenders["job bf16"] = lambda out: run_job(options, out, bf16, args)
        contenders["prototype"] = lambda out: run_prototype(work / "reference", out, args)
        runs: dict[str, list[dict]] = {key: [] for key in contenders}
        for round_index in range(args.rounds):
            for key in common.rotated(list(contenders), round_index):
                runs[key].append(contenders[key](work / "out"))
                if not (work / "reference").exists():  # round 1 starts with the job: its folds and settings
                    shutil.copytree(work / "out", work / "reference", ignore=shutil.ignore_patterns("fold_*"))
                shutil.rmtree(work / "out")
                print(f"  round {round_index + 1}, {key}: {runs[key][-1]['wall']:.1f} s", flush=True)
    rows = []
    for key, found in runs.items():
        wall, rate = [r["wall"] for r in found], [r["rate"] for r in found]
        peak, load = max(r["peak_rss"] for r in found) / 2**20, max(r["load"] for r in found)
        rows.append([key, common.spread(wall, 1), common.spread(rate), f"{peak:.0f}", f"{load:.1f}"])
    lines = [
        f"Setup {name}: `python jobs/train.py {' '.join(map(str, options))}` against the prototype's loop, "
        f"{args.rounds} round(s), {args.threads} threads; median (min-max).",
        "",
        markdown_table(["contender", "whole run s", "rows/s per epoch", "peak RSS MiB", "load"], rows),
        "",
    ]
    prototype = runs["prototype"]
    for key in contenders:
        if key != "prototype":
            whole = [p["wall"] / j["wall"] for p, j in zip(prototype, runs[key])]
            epoch = [j["rate"] / p["rate"] for p, j in zip(prototype, runs[key])]
            lines.append(f"- {key} / prototype: whole run **{common.spread(whole)}x**; per epoch ")
            lines[-1] += f"**{common.spread(epoch)}x** (target >= 2x per epoch: {common.verdict(epoch, 2)})"
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setups", nargs="+", default=["demo", "bert-base"], choices=["demo", "bert-base"])
    parser.add_argument("--rounds", type=int, default=None, help="Interleaved rounds (default 3; 1 with --quick).")
    parser.add_argument("--rows", type=int, default=400, help="bert-base setup: comments (2 folds).")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="Threads of every contender.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="Tiny models, 2 folds x 1 epoch, 1 round; writes nothing.")
    parser.add_argument("--no_results", action="store_true", help="Print only; do not append to bench/results/.")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # killed: the running job goes too, scratch folders go
    args.rounds = args.rounds or (1 if args.quick else 3)
    for name in args.setups:
        text = measure(name, args)
        print("\n" + text + "\n", flush=True)
        if not (args.quick or args.no_results):
            path = common.append_section("cpu", f"Training throughput, setup {name}", text)
            print(f"appended to {path.relative_to(common.REPO_ROOT)}")


if __name__ == "__main__":
    main()
