"""Peak memory of the labeling job against corpus size: 1,000, 100,000 and 1,000,000 rows, from Parquet and CSV.

The real job, `python jobs/label_corpus.py`, on a corpus from bench/corpus.py with a tiny random-weight classifier
(hidden 32, one layer), so that what is measured is the job's own data handling (reading a chunk at a time,
tokenising, writing parts, the merge); the peak RSS of its process tree is sampled every 50 ms. Target: the peak at
1M rows within 20% of the peak at 100k. A 1M-row run whose time, estimated from the 100k-row run of the same format,
is over --max_seconds is skipped and said so (nothing is extrapolated). RSS counts resident pages of shared
libraries too: compare sizes within one run and environment.

    python bench/memory.py                               # 1k, 100k, 1M rows x parquet, csv
    python bench/memory.py --rows 1000 100000 --formats parquet
    python bench/memory.py --quick                       # 1,000 rows, both formats: a smoke test, writes nothing
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import corpus

from weibolabel.util.markdown import markdown_table

MEMORY_MODEL = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 100_000, 1_000_000])
    parser.add_argument("--formats", nargs="+", default=["parquet", "csv"], choices=["parquet", "csv"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_seconds", type=float, default=600, help="Skip a run estimated to take longer.")
    parser.add_argument("--no_results", action="store_true", help="Print only; do not append to bench/results/.")
    parser.add_argument("--quick", action="store_true", help="Smoke test: 1,000 rows only; writes no results.")
    args = parser.parse_args()
    args.rows = [1000] if args.quick else sorted(args.rows)
    model = common.build_benchmark_model(common.WORK_DIR / "model-memory-tiny-random", MEMORY_MODEL)
    table, peaks = [], {}
    for fmt in args.formats:
        seconds_per_row = 0.0
        for rows in args.rows:
            if seconds_per_row * rows > args.max_seconds:
                table.append([fmt, f"{rows:,}", f"skipped: estimated {seconds_per_row * rows:.0f} s", "-", "-"])
                continue
            source = corpus.ensure_corpus(rows, args.seed, f".{fmt}")
            with tempfile.TemporaryDirectory(dir=common.WORK_DIR) as tmp:
                found = common.label_job(source, model, Path(tmp) / "labels.parquet", ["--max_length", 128])
            seconds_per_row = found["wall"] / rows if rows >= 10_000 else 0.0
            peaks[fmt, rows] = found["peak_rss"]
            cells = [f"{found['wall']:.1f}", f"{found['rows_per_second']:.0f}", f"{found['peak_rss'] / 2**20:.0f}"]
            table.append([fmt, f"{rows:,}", *cells])
            print(f"{fmt} {rows} rows: {found['wall']:.1f} s, peak RSS {cells[-1]} MiB", flush=True)
    header = ["input", "rows", "job wall s", "rows/s labeling (summary.json)", "peak RSS MiB (job + children)"]
    lines = [markdown_table(header, table), ""]
    for fmt in args.formats:
        if (fmt, 100_000) in peaks and (fmt, 1_000_000) in peaks:
            ratio = peaks[fmt, 1_000_000] / peaks[fmt, 100_000]
            verdict = "met" if ratio <= 1.2 else "NOT met"
            lines.append(f"- {fmt}: peak RSS at 1M / at 100k **{ratio:.2f}** (target <= 1.20: {verdict})")
    lines.append(f"\nModel: tiny random-weight classifier {MEMORY_MODEL}; the job's defaults, --max_length 128.")
    print("\n" + "\n".join(lines))
    if not (args.quick or args.no_results):
        path = common.append_section("cpu", "Labeling job memory against corpus size", "\n".join(lines))
        print(f"\nappended to {path.relative_to(common.REPO_ROOT)}")


if __name__ == "__main__":
    main()
