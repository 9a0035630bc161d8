"""The CPU batch floor (`weibolabel.inference.CPU_MIN_TOKENS`), per precision: how many padded tokens a labeling
batch should hold at least on a CPU, for fp32, bf16 (where the CPU has it natively) and `--quantize int8`.

The labeling path cuts length-sorted batches whose rows are within 10% of the batch's longest; on CPU a batch the
bound leaves under the floor takes the next rows, up to the floor, whatever padding that adds (`length_batches`).
The floor pays where each linear layer's call costs a fixed part whatever the batch (its weights read and packed
for the matmul); it costs where the padding it adds is computed (attention sees the padded grid). Which wins
depends on the kernels: this script measures it.

Every cell is (precision, floor): the project's own `label_encoded` (the code jobs/label_corpus.py runs) on the same
texts and random bert-base-shape weights, with `min_tokens=floor`. The cells are interleaved, --rounds rounds, the
order rotated each round; reported per precision: batches, padding share, median and min-max seconds, and per
round each floor's time over the current default's (>1: the floor is faster). Labels of every floor are compared
with the precision's first floor (int8 scales each batch's activations per call, so its labels can depend on the
batch; fp32 and bf16 should agree to rounding).

    python bench/batch_floor.py                              # 1,000 comments, floors 0 1024 4096 8192, 3 rounds
    python bench/batch_floor.py --num_texts 300 --floors 0 1024 2048 8192 --precisions int8
    python bench/batch_floor.py --quick                      # tiny model, 64 texts, 2 rounds: smoke test, no file
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import corpus as corpus_mod

from weibolabel.inference import (
    CPU_MIN_TOKENS,
    cpu_has_native_bf16,
    encode,
    label_encoded,
    length_batches,
    load_ensemble,
)
from weibolabel.labeled import clean_text
from weibolabel.markdown import markdown_table

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "int8": None}


@dataclass
class Cell:
    precision: str
    floor: int
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    labels: np.ndarray | None = None

    @property
    def key(self) -> str:
        return f"{self.precision}@{self.floor}"


def batch_shape(lengths: np.ndarray, floor: int, args) -> tuple[int, float]:
    """Batches and padding share (of all padded tokens) of the labeling path's batching at this floor."""
    batches = length_batches(lengths, args.batch_size, args.max_tokens, min_tokens=floor)
    padded = sum(len(b) * int(lengths[b].max()) for b in batches)
    return len(batches), 1 - int(lengths.sum()) / padded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_texts", type=int, default=None, help="Default: 1000 (64 with --quick).")
    parser.add_argument("--rounds", type=int, default=None, help="Interleaved rounds (default 3; 2 with --quick).")
    parser.add_argument("--floors", type=int, nargs="+", default=[0, 1024, 4096, 8192], help="min_tokens values tried.")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8"], choices=list(DTYPES))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="Intra-op threads.")
    parser.add_argument("--batch_size", type=int, default=256, help="Rows per batch at most (job default).")
    parser.add_argument("--max_tokens", type=int, default=16384, help="Padded tokens per batch at most (job default).")
    parser.add_argument("--max_length", type=int, default=128, help="Truncation.")
    parser.add_argument("--seed", type=int, default=0, help="Corpus seed.")
    parser.add_argument("--quick", action="store_true", help="Tiny model, 64 texts, 2 rounds; writes no results.")
    parser.add_argument("--no_results", action="store_true", help="Print only; do not append to bench/results/.")
    args = parser.parse_args()
    common.quiet_transformers()
    torch.set_num_threads(args.threads)
    rounds = args.rounds or (2 if args.quick else 3)
    num_texts = args.num_texts or (64 if args.quick else 1000)
    shape, tag = (common.TINY, "tiny") if args.quick else (common.BERT_BASE, "bert-base")
    model_dir = common.build_benchmark_model(common.WORK_DIR / f"model-{tag}-random", shape)
    precisions = [p for p in args.precisions if p != "bf16" or cpu_has_native_bf16()]
    if len(precisions) < len(args.precisions):
        print("skipped: bf16 (this CPU has no native bf16)", flush=True)

    texts = [clean_text(t) for t in corpus_mod.build_corpus(num_texts, args.seed)]
    corpus_text = corpus_mod.length_report(texts)
    print(corpus_text, flush=True)
    ensembles = {
        p: load_ensemble(model_dir, "cpu", DTYPES[p], calibrated=False, quantize="int8" if p == "int8" else None)
        for p in precisions
    }
    tokenizer = next(iter(ensembles.values())).tokenizer
    encoded = encode(tokenizer, texts, args.max_length)  # once: tokenisation is not what the floor changes
    lengths = np.array([len(ids) for ids in encoded.input_ids])
    cells = [Cell(p, floor) for p in precisions for floor in args.floors]

    def run(cell: Cell) -> None:
        with common.Timer() as timer:
            frame = label_encoded(
                ensembles[cell.precision],
                texts,
                encoded,
                batch_size=args.batch_size,
                max_tokens=args.max_tokens,
                min_tokens=cell.floor,
            )
        cell.seconds.append(timer.seconds)
        cell.cpu_seconds.append(timer.cpu_seconds)
        cell.labels = frame["label"].to_numpy(dtype=float, na_value=np.nan)

    for ensemble in ensembles.values():  # warm-up: the first call of each model pays one-off costs
        label_encoded(ensemble, texts[:32], encode(tokenizer, texts[:32], args.max_length))
    for index in range(rounds):
        shift = index % len(cells)
        order = cells[shift:] + cells[:shift]
        print(f"round {index + 1}/{rounds}", flush=True)
        for cell in order:
            run(cell)
            print(f"  {cell.key}: {cell.seconds[-1]:.2f} s (CPU {cell.cpu_seconds[-1]:.0f} s)", flush=True)

    rows = []
    for precision in precisions:
        group = [c for c in cells if c.precision == precision]
        reference = next((c for c in group if c.floor == CPU_MIN_TOKENS), None)
        for cell in group:
            batches, padding = batch_shape(lengths, cell.floor, args)
            same = np.mean(np.nan_to_num(cell.labels, nan=-1) == np.nan_to_num(group[0].labels, nan=-1))
            ratios = [f"{r / s:.2f}" for r, s in zip(reference.seconds, cell.seconds)] if reference is not None else []
            rows.append(
                [
                    precision,
                    f"{cell.floor:,}" + (" (default)" if cell.floor == CPU_MIN_TOKENS else ""),
                    batches,
                    f"{100 * padding:.1f}%",
                    f"{statistics.median(cell.seconds):.2f}",
                    f"{min(cell.seconds):.2f}-{max(cell.seconds):.2f}",
                    f"{statistics.median(cell.cpu_seconds):.1f}",
                    " ".join(ratios) or "-",
                    f"{100 * same:.2f}%",
                ]
            )
    table = markdown_table(
        [
            "precision",
            "floor (padded tokens)",
            "batches",
            "padding",
            "median s",
            "min-max s",
            "median CPU s",
            "default's s / this, per round",
            f"labels equal to floor {args.floors[0]:,}",
        ],
        rows,
    )
    body = "\n".join(
        [
            corpus_text,
            "",
            f"Model: {tag} shape ({shape}), random weights, 4 labels; {args.threads} threads; batch_size "
            f"{args.batch_size}, max_tokens {args.max_tokens}, max_length {args.max_length}; {rounds} interleaved "
            f"rounds of every (precision, floor) cell, order rotated; `label_encoded(..., min_tokens=floor)`, "
            "tokenisation outside the timing.",
            "",
            table,
        ]
    )
    print("\n" + body, flush=True)
    if args.quick or args.no_results:
        return
    path = common.append_section("cpu", "CPU batch floor per precision (bench/batch_floor.py)", body)
    print(f"appended to {path}", flush=True)


if __name__ == "__main__":
    main()
