"""Start-up latency of the jobs: `--help`, a bad input's message, and the labeling job's time to its first batch.

Each job runs as a user runs it, `python jobs/X.py ...` in a fresh process on the CPU, timed from start to exit:
`--help` (target under 1.5 s on a 2-core CPU); a missing input and, where the job reads a table, one without the
named column (target: the message under 3 s, exit status 2). The commands run interleaved, --repeats rounds; median
and min-max wall seconds and the median CPU seconds (user + system: what the job costs, whatever else runs). Then
the labeling job on a CSV with a tiny random-weight model, from its summary.json: process start to first labeled
batch, and to the summary. With --compare, another checkout's commands run in turn with these, every round.

    python bench/startup.py                              # 5 rounds, every job
    python bench/startup.py --jobs label_corpus train --repeats 3 --compare /tmp/old-checkout
    python bench/startup.py --quick                      # one round, two jobs; writes nothing
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from weibolabel.util.markdown import markdown_table

JOBS = ["label_corpus", "train", "predict", "analyze_labels", "apply_label_review", "compare_runs", "find_label_issues"]
JOBS += ["learning_curve", "merge_annotations", "select_for_annotation", "simulate_active_learning"]


def bad_inputs(job: str, work: Path, model: Path) -> list[tuple[str, list]]:
    """(case, arguments) of each bad invocation: a missing input, and a table without the named column."""
    missing, nope = work / "missing.csv", ["--text_column", "Nope"]
    if job == "label_corpus":
        rest = ["--model", model, "--output", work / "out" / "labels.parquet"]
        return [
            ("missing input", ["--input", missing, *rest]),
            ("wrong column", ["--input", work / "corpus.csv", *rest, *nope]),
        ]
    if job in ("train", "simulate_active_learning"):
        rest = ["--output_dir", work / "out" / job] + (["--model_name_or_path", model] if job == "train" else [])
        return [
            ("missing input", ["--data", missing, *rest]),
            ("wrong column", ["--data", work / "labeled.csv", *rest, *nope]),
        ]
    cases = {
        "predict": ["--model", work / "missing-run", "一条评论"],
        "analyze_labels": ["--input", work / "missing.parquet"],
        "select_for_annotation": ["--input", work / "missing.parquet", "--output", work / "out" / "a.xlsx"],
        "apply_label_review": ["--review", work / "missing.xlsx", "--data", work / "labeled.csv"],
        "merge_annotations": ["--annotations", work / "missing.xlsx", "--existing", work / "labeled.csv"],
        "compare_runs": [work / "missing-a", work / "missing-b", "--output_dir", work / "out" / "compare"],
        "find_label_issues": ["--run", work / "missing-run"],
        "learning_curve": ["--run", work / "missing-run"],
    }
    return [("missing input", cases[job])]


def timed(root: Path, job: str, args: list) -> tuple[float, float, int, str]:
    """Wall and CPU seconds, exit status and last line of `python <root>/jobs/<job>.py ARGS`."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    env["PYTHONPATH"] = str(root / "lib")
    usage, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    result = subprocess.run(
        [sys.executable, root / "jobs" / f"{job}.py", *map(str, args)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    return wall, cpu, result.returncode, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", nargs="+", default=JOBS, choices=JOBS)
    parser.add_argument("--repeats", type=int, default=5, help="Rounds of every command (interleaved).")
    parser.add_argument("--rows", type=int, default=2000, help="Rows of the labeling job's corpus.")
    parser.add_argument("--compare", type=Path, default=None, help="Another checkout, run in turn with this one.")
    parser.add_argument("--quick", action="store_true", help="Smoke test: one round, two jobs; writes nothing.")
    parser.add_argument("--no_results", action="store_true", help="Print only; do not append to bench/results/.")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.repeats, args.rows = ["label_corpus", "train"], 1, 200
    roots = [common.REPO_ROOT] + ([args.compare.resolve()] if args.compare else [])
    with tempfile.TemporaryDirectory(dir=common.WORK_DIR) as tmp:
        work = Path(tmp)
        (work / "out").mkdir()
        model = common.build_benchmark_model(work / "tiny-model", common.TINY)
        texts = [f"第{i}条评论：这一期节目{'真好看' if i % 2 else '文物太美了'}" for i in range(args.rows)]
        labeled = pd.DataFrame({"Sentence": texts[:200], "Label": [i % 4 for i in range(200)]})
        labeled.to_csv(work / "labeled.csv", index=False)
        pd.DataFrame({"Sentence": texts}).to_csv(work / "corpus.csv", index=False)
        commands = [(job, "--help", ["--help"], 0) for job in args.jobs]
        commands += [(job, case, job_args, 2) for job in args.jobs for case, job_args in bad_inputs(job, work, model)]
        found = {(root, i): [] for root in roots for i in range(len(commands))}
        load = os.getloadavg()[0]
        for round_index in range(args.repeats):
            for i, (job, _, job_args, _) in enumerate(commands):
                for root in roots:
                    found[root, i].append(timed(root, job, job_args))
            print(f"round {round_index + 1}/{args.repeats} done", file=sys.stderr)
        batches = {root: [] for root in roots}
        if "label_corpus" in args.jobs:
            for _ in range(max(1, args.repeats // 2)):
                for root in roots:
                    output = work / "out" / f"first-{len(batches[root])}-{roots.index(root)}.parquet"
                    batches[root].append(common.label_job(work / "corpus.csv", model, output, [], root=root))
        load = max(load, os.getloadavg()[0])
    rows = []
    for i, (job, case, _, expected) in enumerate(commands):
        for root in roots:
            runs = found[root, i]
            statuses = sorted({run[2] for run in runs})
            status = ",".join(map(str, statuses)) + ("" if statuses == [expected] else f" (expected {expected})")
            cpu = statistics.median(run[1] for run in runs)
            where = "" if root == common.REPO_ROOT else f" ({root.name})"
            message = runs[-1][3].replace(str(work), "<tmp>")[:100] if case != "--help" else ""
            rows.append([job + where, case, common.spread([run[0] for run in runs]), f"{cpu:.2f}", status, message])
    header = ["job", "command", "median s (min-max)", "median CPU s", "exit status", "last line of its output"]
    lines = [
        f"{args.repeats} interleaved round(s); highest 1-minute load average {load:.2f}.",
        "",
        markdown_table(header, rows),
    ]
    for root, runs in batches.items():
        if runs:
            first = common.spread([run["seconds_to_first_batch"] for run in runs])
            total = common.spread([run["seconds_total"] for run in runs])
            where = "" if root == common.REPO_ROOT else f" ({root.name})"
            lines.append(f"\nLabeling job{where}, {args.rows} rows (CSV), tiny model, {len(runs)} run(s), from its ")
            lines[-1] += f"summary.json: start to first labeled batch {first} s, to the summary {total} s."
    print("\n".join(lines))
    if not (args.quick or args.no_results):
        path = common.append_section(
            "cpu", "Job start-up: --help, a bad input's message, time to first batch", "\n".join(lines)
        )
        print(f"\nappended to {path.relative_to(common.REPO_ROOT)}")


if __name__ == "__main__":
    main()
