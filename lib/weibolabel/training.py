"""Training one fold: AdamW with linear warmup, clipping, mixed precision through accelerate, validation every
epoch, best epoch by macro-F1, and an end-of-epoch state on disk so a killed fold resumes where it was."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from transformers import get_linear_schedule_with_warmup

from weibolabel.config import TrainConfig
from weibolabel.errors import UserError
from weibolabel.inference import length_grouped_batches, pad_batch, predict_probs
from weibolabel.metrics import classification_metrics
from weibolabel.preemption import StopSignal

logger = get_logger(__name__)


class NonFiniteLoss(UserError):
    """The loss became NaN or inf; the message names fold, epoch and step."""


@dataclass
class Split:
    """Token ids and labels of one part of a fold."""

    input_ids: list[list[int]]
    labels: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))


@dataclass
class FoldTraining:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[dict] = field(default_factory=list)


def class_weights(labels: np.ndarray, num_labels: int) -> torch.Tensor:
    """Inverse-frequency weights, normalised so a balanced set gets weight 1 for every class."""
    counts = np.bincount(labels, minlength=num_labels).astype(np.float64)
    return torch.tensor(len(labels) / (num_labels * np.maximum(counts, 1)), dtype=torch.float32)


def build_optimizer(model: torch.nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW without weight decay on biases and LayerNorm weights (the BERT recipe)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate)


def evaluate(model, split: Split, pad_id: int, accelerator: Accelerator, batch_size: int) -> tuple[np.ndarray, dict]:
    model.eval()
    probs = predict_probs([model], split.input_ids, pad_id, batch_size=batch_size, autocast=accelerator.autocast)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return probs, classification_metrics(split.labels, probs.argmax(axis=1), names)


def train_fold(
    model: torch.nn.Module,
    train: Split,
    validation: Split,
    config: TrainConfig,
    accelerator: Accelerator,
    fold: int,
    pad_id: int,
    state_file: Path,
    stop: StopSignal,
) -> FoldTraining:
    device = accelerator.device
    model.to(device)
    optimizer = accelerator.prepare_optimizer(
        build_optimizer(model, config.learning_rate, config.weight_decay), device_placement=True
    )
    batches_per_epoch = math.ceil(len(train.input_ids) / config.per_device_batch_size)
    updates_per_epoch = math.ceil(batches_per_epoch / config.gradient_accumulation_steps)
    total_updates = updates_per_epoch * config.num_epochs
    scheduler = get_linear_schedule_with_warmup(
        optimizer.optimizer, round(config.warmup_ratio * total_updates), total_updates
    )
    weight = class_weights(train.labels, model.config.num_labels).to(device) if config.class_weighted_loss else None
    labels = torch.from_numpy(train.labels)

    result = FoldTraining(best_state={}, best_epoch=-1)
    best_f1, first_epoch = -1.0, 0
    if state_file.is_file():
        state = torch.load(state_file, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        result = FoldTraining(state["best_state"], state["best_epoch"], state["history"])
        best_f1, first_epoch = state["best_f1"], state["epoch"] + 1
        logger.info(
            f"fold {fold}: resuming after epoch {state['epoch'] + 1} (best so far epoch {result.best_epoch + 1})"
        )

    for epoch in range(first_epoch, config.num_epochs):
        started, model_losses = time.perf_counter(), []
        model.train()
        batches = length_grouped_batches(
            train.lengths, config.per_device_batch_size, seed=_epoch_seed(config, fold, epoch)
        )
        for step, batch in enumerate(batches):
            ids, mask = pad_batch([train.input_ids[i] for i in batch], pad_id, 8 if device.type == "cuda" else 1)
            with accelerator.autocast():
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            loss = F.cross_entropy(logits.float(), labels[batch].to(device), weight=weight)
            if not torch.isfinite(loss):
                raise NonFiniteLoss(
                    f"Non-finite loss ({loss.item()}) in fold {fold}, epoch {epoch + 1}, step {step + 1}. "
                    "Lower --learning_rate, or check the data and the model."
                )
            accelerator.backward(loss / config.gradient_accumulation_steps)
            if (step + 1) % config.gradient_accumulation_steps == 0 or step + 1 == len(batches):
                accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            model_losses.append(loss.detach())
            stop.check(f"in fold {fold}, epoch {epoch + 1}, step {step + 1}")

        _, val = evaluate(model, validation, pad_id, accelerator, config.eval_batch_size)
        record = {
            "epoch": epoch + 1,
            "train_loss": float(torch.stack(model_losses).mean()),
            "val_accuracy": val["accuracy"],
            "val_macro_f1": val["macro_f1"],
            "learning_rate": scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - started,
        }
        result.history.append(record)
        if val["macro_f1"] > best_f1:
            best_f1, result.best_epoch = val["macro_f1"], epoch
            result.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        logger.info(
            f"fold {fold} epoch {epoch + 1}/{config.num_epochs}: loss {record['train_loss']:.4f}  "
            f"val acc {val['accuracy']:.4f}  val macro-F1 {val['macro_f1']:.4f}  ({record['seconds']:.1f}s)"
            + ("  *best*" if result.best_epoch == epoch else ""),
            main_process_only=False,
        )
        _save_state(state_file, model, optimizer, scheduler, epoch, best_f1, result)
    return result


def _epoch_seed(config: TrainConfig, fold: int, epoch: int) -> int:
    return config.seed * 1_000_003 + fold * 1_009 + epoch


def _save_state(path: Path, model, optimizer, scheduler, epoch: int, best_f1: float, result: FoldTraining) -> None:
    """Everything needed to continue after `epoch`, written under a temporary name and renamed (atomic)."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "epoch": epoch,
        "best_f1": best_f1,
        "best_epoch": result.best_epoch,
        "best_state": result.best_state,
        "history": result.history,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
