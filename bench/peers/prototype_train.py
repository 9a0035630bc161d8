"""The prototype's cross-validation training loop, for bench/train_throughput.py: on the rows and folds of a
jobs/train.py run (its folds.csv), the sheet read with pandas, each text tokenised on its own and padded to
--max_length, no attention mask, fp32, a plain model (DataParallel's stand-in on CPU), torch's default AdamW with
linear warmup and clipping; a fresh model from the same weights for every fold (the prototype reused one: a bug, not
a speed-up), all of a fold's training rows trained on, the test fold scored once after the last epoch, the weights
saved. Writes <output_dir>/records.json: every epoch's training seconds and rows."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("data", "folds", "model_name_or_path", "output_dir", "device"):
        parser.add_argument(f"--{name}", required=True)
    for name in ("num_epochs", "max_length", "per_device_batch_size", "seed"):
        parser.add_argument(f"--{name}", type=int, required=True)
    for name in ("learning_rate", "weight_decay", "warmup_ratio", "max_grad_norm"):
        parser.add_argument(f"--{name}", type=float, required=True)
    args = parser.parse_args()
    device, out = torch.device(args.device), Path(args.output_dir)
    sheet = pd.read_excel(args.data) if args.data.endswith(".xlsx") else pd.read_csv(args.data)
    folds = pd.read_csv(args.folds)
    sheet_rows = folds["row"].str.removeprefix("row ").astype(int).to_numpy() - 2  # "row N": N counts the header
    texts = sheet["Sentence"].astype(str).to_numpy()[sheet_rows].tolist()
    labels, fold_of_row = torch.tensor(folds["label"].to_numpy()), folds["fold"].to_numpy()
    tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path)
    ids = torch.tensor(
        [tokenizer(t, padding="max_length", truncation=True, max_length=args.max_length)["input_ids"] for t in texts]
    )
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for fold in sorted(set(fold_of_row.tolist())):
        torch.manual_seed(args.seed)
        model = AutoModelForSequenceClassification.from_pretrained(args.model_name_or_path, num_labels=4).to(device)
        train_index = torch.from_numpy(np.flatnonzero(fold_of_row != fold))
        test_index = torch.from_numpy(np.flatnonzero(fold_of_row == fold))
        size = args.per_device_batch_size
        total = math.ceil(len(train_index) / size) * args.num_epochs
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
        scheduler = get_linear_schedule_with_warmup(optimizer, round(args.warmup_ratio * total), total)
        model.train()
        for epoch in range(args.num_epochs):
            started = time.perf_counter()
            shuffled = train_index[torch.randperm(len(train_index))]
            for start in range(0, len(shuffled), size):
                batch = shuffled[start : start + size]
                loss = F.cross_entropy(model(input_ids=ids[batch].to(device)).logits, labels[batch].to(device))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            loss.item()  # the last step has finished (GPU)
            records.append({"fold": fold, "epoch": epoch + 1, "rows": len(train_index)})
            records[-1]["train_seconds"] = time.perf_counter() - started
        model.eval()
        with torch.no_grad():
            scored = [
                model(input_ids=ids[test_index[i : i + 128]].to(device)).logits.argmax(-1).cpu()
                for i in range(0, len(test_index), 128)
            ]
        accuracy = float((torch.cat(scored) == labels[test_index]).float().mean())
        torch.save(model.state_dict(), out / f"fold_{fold}.pt")
        print(f"fold {fold}: test accuracy {accuracy:.4f}", flush=True)
    (out / "records.json").write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
