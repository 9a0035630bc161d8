"""Start-up latency of the jobs: `--help`, a bad input's message, and the labeling job's time to its first batch.

Each job is run as a user runs it, `python jobs/X.py ...` in a fresh process, and timed from the moment the
process is started until it exits:

- `--help`: argument parsing and the imports before it (the target: under 1.5 s on a 2-core CPU);
- a missing input file, and where the job reads a table, an existing one without the named column (target: the
  message under 3 s); each must end with exit status 2 and the job's one-line message;
- the labeling job end to end on a small CSV with a tiny random-weight model: the time from process start to its
  first labeled batch and the whole run, as the job records them in `summary.json` beside its output.

The commands are run interleaved (one round of every command, then the next round), `--repeats` rounds, and
reported as median and min-max; the 1-minute load average before and after says whether other work shared the
machine. The section is appended to bench/results/<machine>-<date>.md.

    python bench/startup.py                    # 5 rounds, every job
    python bench/startup.py --jobs label_corpus train predict --repeats 3
    python bench/startup.py --root /tmp/old    # the same commands on another checkout (PYTHONPATH=<root>/lib)
    python bench/startup.py --quick            # smoke test: one round of a few commands, writes nothing
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from weibolabel.markdown import markdown_table

JOBS = [
    "label_corpus",
    "train",
    "predict",
    "analyze_labels",
    "apply_label_review",
    "compare_runs",
    "find_label_issues",
    "learning_curve",
    "merge_annotations",
    "select_for_annotation",
    "simulate_active_learning",
]
QUICK_JOBS = ["label_corpus", "train"]
CORPUS_ROWS = 2000


@dataclass
class Command:
    job: str
    case: str  # "--help", "missing input", "wrong column"
    args: list[str]
    expected_status: int
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # user + system, less sensitive to a busy machine
    statuses: set[int] = field(default_factory=set)
    last_line: str = ""


@dataclass
class Fixtures:
    directory: Path
    model: Path  # a tiny random-weight checkpoint
    labeled: Path  # Sentence, Label
    corpus: Path  # Sentence

    @property
    def missing(self) -> Path:
        return self.directory / "missing.csv"

    def out(self, name: str) -> Path:
        return self.directory / "out" / name


def make_fixtures(directory: Path, rows: int) -> Fixtures:
    import pandas as pd

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "out").mkdir(exist_ok=True)
    model = common.build_benchmark_model(directory / "tiny-model", common.TINY)
    texts = [f"第{i}条评论：这一期节目{'真好看' if i % 2 else '文物太美了'}{'！' * (i % 5)}" for i in range(rows)]
    labeled = directory / "labeled.csv"
    pd.DataFrame({"Sentence": texts[:200], "Label": [i % 4 for i in range(200)]}).to_csv(labeled, index=False)
    corpus = directory / "corpus.csv"
    pd.DataFrame({"Sentence": texts}).to_csv(corpus, index=False)
    return Fixtures(directory, model, labeled, corpus)


def bad_inputs(job: str, fx: Fixtures) -> list[tuple[str, list[str]]]:
    """(case, arguments) of each bad invocation of `job`: a missing input file, and where the job takes a table
    and a column name, an existing table without that column."""
    missing, nope = str(fx.missing), ["--text_column", "Nope"]
    if job == "label_corpus":
        args = ["--model", str(fx.model), "--output", str(fx.out("labels.parquet"))]
        return [
            ("missing input", ["--input", missing, *args]),
            ("wrong column", ["--input", str(fx.corpus), *args, *nope]),
        ]
    if job in ("train", "simulate_active_learning"):
        args = ["--output_dir", str(fx.out(job))]
        args += ["--model_name_or_path", str(fx.model)] if job == "train" else []
        return [
            ("missing input", ["--data", missing, *args]),
            ("wrong column", ["--data", str(fx.labeled), *args, *nope]),
        ]
    if job == "predict":
        return [("missing model", ["--model", str(fx.directory / "missing-run"), "一条评论"])]
    if job == "analyze_labels":
        return [("missing input", ["--input", str(fx.directory / "missing.parquet")])]
    if job == "select_for_annotation":
        return [
            ("missing input", ["--input", str(fx.directory / "missing.parquet"), "--output", str(fx.out("a.xlsx"))])
        ]
    if job == "apply_label_review":
        return [("missing input", ["--review", str(fx.directory / "missing.xlsx"), "--data", str(fx.labeled)])]
    if job == "merge_annotations":
        return [("missing input", ["--annotations", str(fx.directory / "missing.xlsx"), "--existing", str(fx.labeled)])]
    if job == "compare_runs":
        runs = [str(fx.directory / "missing-run-a"), str(fx.directory / "missing-run-b")]
        return [("missing run", [*runs, "--output_dir", str(fx.out("compare"))])]
    if job in ("find_label_issues", "learning_curve"):
        return [("missing run", ["--run", str(fx.directory / "missing-run")])]
    raise ValueError(job)


def job_environment(root: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}
    env["CUDA_VISIBLE_DEVICES"] = ""  # start-up on the CPU path: no CUDA initialisation in the numbers
    env["PYTHONPATH"] = os.pathsep.join([str(root / "lib"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(command: Command, root: Path, env: dict) -> None:
    cpu, started = children_cpu_seconds(), time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(root / "jobs" / f"{command.job}.py"), *command.args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    command.seconds.append(time.perf_counter() - started)
    command.cpu_seconds.append(children_cpu_seconds() - cpu)
    command.statuses.add(result.returncode)
    lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    command.last_line = lines[-1].strip() if lines else ""


def first_batch(fx: Fixtures, root: Path, env: dict, repeats: int) -> list[dict]:
    """The labeling job end to end on the corpus: wall seconds, and what its summary.json records."""
    runs = []
    output = fx.out("first-batch.parquet")
    summary_path = output.with_suffix(".summary.json")
    for _ in range(repeats):
        for path in (output, summary_path):  # a fresh run each time (an identical re-run would have nothing to do)
            path.unlink(missing_ok=True)
        shutil.rmtree(output.with_name(output.name + ".parts"), ignore_errors=True)
        command = [
            sys.executable, str(root / "jobs" / "label_corpus.py"), "--input", str(fx.corpus), "--model",
            str(fx.model), "--output", str(output),
        ]  # fmt: skip
        cpu, started = children_cpu_seconds(), time.perf_counter()
        result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=1200)
        wall, cpu = time.perf_counter() - started, children_cpu_seconds() - cpu
        if result.returncode != 0:
            raise SystemExit(f"jobs/label_corpus.py failed ({result.returncode}):\n{result.stderr[-4000:]}")
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        runs.append({"wall": wall, "cpu": cpu, **summary})
    return runs


def spread(values: list[float]) -> tuple[str, str]:
    if not values:
        return "-", "-"
    return f"{statistics.median(values):.2f}", f"{min(values):.2f}-{max(values):.2f}"


def command_rows(commands: list[Command], others: list[Command] | None) -> tuple[list[str], list[list[str]]]:
    """The table: per command, this checkout's median, min-max and CPU seconds (and the --compare checkout's),
    its exit status and the last line it printed."""
    header = ["job", "command", "median s", "min-max s", "median CPU s"]
    if others:
        header += ["compared: median s", "min-max s", "median CPU s"]
    header += ["exit status", "last line of its output"]
    rows = []
    for number, command in enumerate(commands):
        cells = [command.job, command.case, *spread(command.seconds), spread(command.cpu_seconds)[0]]
        if others:
            other = others[number]
            cells += [*spread(other.seconds), spread(other.cpu_seconds)[0]]
        statuses = ",".join(map(str, sorted(command.statuses)))
        ok = "" if command.statuses == {command.expected_status} else f" (expected {command.expected_status})"
        message = command.last_line if command.case != "--help" else ""
        rows.append([*cells, statuses + ok, message[:100]])
    return header, rows


def batch_rows(batches: list[dict]) -> list[list[str]]:
    def values(key: str) -> list[float]:
        return [run[key] for run in batches if run.get(key) is not None]

    return [
        ["process start to first labeled batch", *spread(values("seconds_to_first_batch"))],
        ["process start to summary (the job's own clock)", *spread(values("seconds_total"))],
        ["wall, as this script saw it", *spread(values("wall"))],
        ["CPU (user + system), as this script saw it", *spread(values("cpu"))],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", nargs="+", default=JOBS, choices=JOBS)
    parser.add_argument("--repeats", type=int, default=5, help="Rounds of every command (interleaved).")
    parser.add_argument("--first_batch_repeats", type=int, default=3, help="Runs of the labeling job end to end.")
    parser.add_argument("--rows", type=int, default=CORPUS_ROWS, help="Rows of the labeling job's corpus.")
    parser.add_argument("--root", type=Path, default=common.REPO_ROOT, help="Checkout whose jobs to run.")
    parser.add_argument(
        "--compare", type=Path, default=None, help="Another checkout (an older revision): its commands run in turn "
        "with these, in every round, and its times are shown beside them.",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="Smoke test: one round, a few commands, writes nothing.")
    parser.add_argument("--no_results", action="store_true", help="Print only; do not append to bench/results/.")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.repeats, args.first_batch_repeats, args.rows = QUICK_JOBS, 1, 1, 200
    checkouts = [args.root.resolve()] + ([args.compare.resolve()] if args.compare else [])

    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch) if args.quick else common.WORK_DIR / "startup"
        fx = make_fixtures(directory, args.rows)
        commands = {root: [] for root in checkouts}
        for root in checkouts:
            for job in args.jobs:
                commands[root].append(Command(job, "--help", ["--help"], 0))
                commands[root] += [Command(job, case, job_args, 2) for case, job_args in bad_inputs(job, fx)]
        load_before = os.getloadavg()[0]
        for round_number in range(args.repeats):
            for number in range(len(commands[checkouts[0]])):
                for root in checkouts:
                    run_once(commands[root][number], root, job_environment(root))
            print(f"round {round_number + 1}/{args.repeats} done", file=sys.stderr)
        batches = {root: [] for root in checkouts}
        if "label_corpus" in args.jobs:
            for _ in range(args.first_batch_repeats):
                for root in checkouts:
                    batches[root] += first_batch(fx, root, job_environment(root), 1)
        load_after = os.getloadavg()[0]

    def name(root: Path) -> str:
        return "this checkout" if root == common.REPO_ROOT else str(root)

    main_root, other_root = checkouts[0], (checkouts[1] if args.compare else None)
    header, rows = command_rows(commands[main_root], commands[other_root] if other_root else None)
    compared = f"; beside it, {name(other_root)}, run in turn with it" if other_root else ""
    lines = [
        f"`python jobs/<job>.py <command>`, {args.repeats} interleaved round(s), seconds from process start to exit: "
        f"{name(main_root)}{compared}. CPU s: user + system of the process, what the job costs whatever else runs. "
        f"1-minute load average {load_before:.2f} before, {load_after:.2f} after (above the core count: wall times "
        "inflated by other work).",
        "",
        markdown_table(header, rows),
    ]
    if batches[main_root]:
        lines += [
            "",
            f"Labeling job end to end on {args.rows} rows (CSV) with a tiny random-weight model "
            f"(hidden {common.TINY['hidden_size']}, {common.TINY['num_hidden_layers']} layers), "
            f"{len(batches[main_root])} run(s) each, from its summary.json (an older checkout writes none):",
            "",
        ]
        table_rows = batch_rows(batches[main_root])
        header = ["measure", "median s", "min-max s"]
        if other_root:
            header += ["compared: median s", "min-max s"]
            table_rows = [row + other[1:] for row, other in zip(table_rows, batch_rows(batches[other_root]))]
        lines.append(markdown_table(header, table_rows))
        first = batches[main_root][0]
        if first.get("rows_per_second"):
            lines += ["", f"({first['rows_labeled']} rows, {first['rows_per_second']:.0f} rows/s once labeling ran.)"]
    body = "\n".join(lines)
    print(body)
    if not args.quick and not args.no_results:
        path = common.append_section("cpu", "Job start-up: --help, a bad input's message, time to first batch", body)
        print(f"\nappended to {path}")


if __name__ == "__main__":
    main()
