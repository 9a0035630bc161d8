"""Training one fold: AdamW with linear warmup, clipping, mixed precision through accelerate, validation every
epoch, best epoch by macro-F1, and an end-of-epoch state on disk so a killed fold resumes where it was."""

from __future__ import annotations

import json
import math
import pickle
import random
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from transformers import get_linear_schedule_with_warmup

from weibolabel.data.folds import split_validation
from weibolabel.model.forward import classify
from weibolabel.model.inference import length_grouped_batches, pad_batch, predict_probs
from weibolabel.model.loading import load_pretrained_classifier, weights_digest
from weibolabel.run.precision import is_out_of_memory
from weibolabel.run.preemption import StopSignal
from weibolabel.stats.metrics import classification_metrics
from weibolabel.util.errors import UserError, storage_error_message
from weibolabel.util.files import atomic_path

logger = get_logger(__name__)


@dataclass(frozen=True)
class Recipe:
    """What training one fold needs of a job's settings, so the library reads no job config."""

    model_name_or_path: str
    seed: int
    num_epochs: int
    learning_rate: float
    weight_decay: float
    warmup_ratio: float
    per_device_batch_size: int
    eval_batch_size: int
    gradient_accumulation_steps: int
    max_grad_norm: float
    max_length: int
    validation_fraction: float
    class_weighted_loss: bool

    @classmethod
    def from_settings(cls, settings) -> Recipe:
        """The recipe part of any object with these attributes (a job's TrainConfig)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})


@dataclass
class Split:
    """Token ids and labels of one part of a fold."""

    input_ids: list[list[int]]
    labels: np.ndarray


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
    """AdamW without weight decay on biases and LayerNorm weights (the BERT recipe), fused on CPU and CUDA (a
    bert-base step on 2 CPU cores: 0.06 s against 0.25 s unfused)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    return torch.optim.AdamW(groups, lr=learning_rate, fused=fused)


def evaluate(model, split: Split, pad_id: int, accelerator: Accelerator, batch_size: int) -> tuple[np.ndarray, dict]:
    model.eval()
    try:
        probs = predict_probs([model], split.input_ids, pad_id, batch_size=batch_size, autocast=accelerator.autocast)
    except torch.cuda.OutOfMemoryError:  # predict_probs raises this type for cuBLAS/cuDNN exhaustion too
        raise UserError(
            f"Out of GPU memory while scoring {len(split.input_ids)} texts with --eval_batch_size {batch_size}: "
            f"lower --eval_batch_size (e.g. to {max(1, batch_size // 2)}) and run again with a new --output_dir."
        ) from None
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return probs, classification_metrics(split.labels, probs.argmax(axis=1), names)


def train_fold(
    model: torch.nn.Module,
    train: Split,
    validation: Split,
    *,
    recipe: Recipe,
    accelerator: Accelerator,
    fold: int,
    pad_id: int,
    state_file: Path,
    stop: StopSignal,
) -> FoldTraining:
    """Train `model` on `train` for `recipe.num_epochs` epochs, validating on `validation` after each; the best
    epoch's weights are returned. A non-finite loss or running out of GPU memory stops with fold, epoch and step."""
    device = accelerator.device
    model.to(device)
    optimizer = build_optimizer(model, recipe.learning_rate, recipe.weight_decay)
    # Linear warmup, then decay to zero over all of the fold's updates.
    updates_per_epoch = math.ceil(
        math.ceil(len(train.input_ids) / recipe.per_device_batch_size) / recipe.gradient_accumulation_steps
    )
    total_updates = updates_per_epoch * recipe.num_epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, round(recipe.warmup_ratio * total_updates), total_updates)
    # Prepared after the schedule exists: with fp16, accelerate swaps optimizer.step in and out around each step and
    # puts back the method it saw when prepared, which must be the one the schedule counts its steps with.
    optimizer = accelerator.prepare_optimizer(optimizer, device_placement=True)
    weight = class_weights(train.labels, model.config.num_labels).to(device) if recipe.class_weighted_loss else None
    labels, lengths = torch.from_numpy(train.labels), np.array([len(ids) for ids in train.input_ids], dtype=np.int64)

    result, best_f1, first_epoch = FoldTraining(best_state={}, best_epoch=-1), -1.0, 0
    if accelerator.scaler is not None:
        reset_loss_scaler(accelerator.scaler)  # fp16: the fold before this one on this process must not leak in
    if state_file.is_file():
        result, best_f1, first_epoch = _resume(state_file, model, optimizer, scheduler, accelerator, fold)

    for epoch in range(first_epoch, recipe.num_epochs):
        started = time.perf_counter()
        model.train()
        losses = []
        # Length-grouped batches seeded by fold and epoch: a resumed epoch replays exactly.
        seed = recipe.seed * 1_000_003 + fold * 1_009 + epoch
        batches = length_grouped_batches(lengths, recipe.per_device_batch_size, seed=seed)
        for step, batch in enumerate(batches):
            where = f"fold {fold}, epoch {epoch + 1}, step {step + 1}"
            ids, mask = pad_batch([train.input_ids[i] for i in batch], pad_id, 8 if device.type == "cuda" else 1)
            try:
                with accelerator.autocast():
                    logits = classify(model, ids.to(device), mask.to(device))
                loss = F.cross_entropy(logits.float(), labels[batch].to(device), weight=weight)
                if not torch.isfinite(loss):
                    raise UserError(non_finite_loss_message(loss.item(), where, accelerator.mixed_precision))
                accelerator.backward(loss / recipe.gradient_accumulation_steps)
                # An optimizer step every gradient_accumulation_steps batches and after the last.
                if (step + 1) % recipe.gradient_accumulation_steps == 0 or step + 1 == len(batches):
                    accelerator.clip_grad_norm_(model.parameters(), recipe.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
            except RuntimeError as error:  # torch.cuda.OutOfMemoryError, or cuBLAS/cuDNN out of memory
                if not is_out_of_memory(error):
                    raise
                raise UserError(_out_of_memory_message(recipe, where, ids.shape)) from None
            losses.append(loss.detach())
            stop.check(f"in {where}")
        train_seconds = time.perf_counter() - started
        _, val = evaluate(model, validation, pad_id, accelerator, recipe.eval_batch_size)
        record = {
            "epoch": epoch + 1,
            "train_loss": float(torch.stack(losses).mean()),
            "val_accuracy": val["accuracy"],
            "val_macro_f1": val["macro_f1"],
            "learning_rate": scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - started,
            "train_seconds": train_seconds,  # the steps alone: bench/train_throughput.py compares epochs by them
        }
        result.history.append(record)
        if val["macro_f1"] > best_f1:
            best_f1, result.best_epoch = val["macro_f1"], epoch
            result.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        logger.info(
            f"fold {fold} epoch {epoch + 1}/{recipe.num_epochs}: loss {record['train_loss']:.4f}  "
            f"val acc {val['accuracy']:.4f}  val macro-F1 {val['macro_f1']:.4f}  ({record['seconds']:.1f}s)"
            + ("  *best*" if result.best_epoch == epoch else ""),
            main_process_only=False,
        )
        _save_state(
            state_file,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            accelerator=accelerator,
            epoch=epoch,
            best_f1=best_f1,
            result=result,
        )
    return result


def _out_of_memory_message(recipe: Recipe, where: str, shape: tuple[int, int]) -> str:
    batch_size, accumulation = recipe.per_device_batch_size, recipe.gradient_accumulation_steps
    return (
        f"Out of GPU memory in {where} (a batch of {shape[0]} texts x {shape[1]} tokens) with "
        f"--per_device_batch_size {batch_size}. Lower --per_device_batch_size (e.g. to "
        f"{max(1, batch_size // 2)}) and raise --gradient_accumulation_steps (e.g. to {accumulation * 2}) "
        f"to keep the same effective batch, or lower --max_length (now {recipe.max_length}), and run "
        "again with a new --output_dir (these settings change the result, so this run cannot be resumed "
        "with them)."
    )


def _resume(state_file: Path, model, optimizer, scheduler, accelerator: Accelerator, fold: int):
    """Load a killed fold's end-of-epoch state into model, optimizer, schedule, loss scaler and random generators;
    returns the training so far, its best validation macro-F1 and the epoch to continue with."""
    state = _load_state(state_file)
    model.load_state_dict(state["model"])
    optimizer.optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if accelerator.scaler is not None and state.get("scaler") is not None:
        accelerator.scaler.load_state_dict(state["scaler"])
    _restore_rng(state, accelerator.device)
    result = FoldTraining(state["best_state"], state["best_epoch"], state["history"])
    logger.info(f"fold {fold}: resuming after epoch {state['epoch'] + 1} (best so far epoch {result.best_epoch + 1})")
    return result, state["best_f1"], state["epoch"] + 1


def reset_loss_scaler(scaler: torch.amp.GradScaler) -> None:
    """Give fp16's loss scaler a new one's state: accelerate keeps one scaler per job, so a fold would otherwise
    start with the scale the previous fold on this process left (torch's default initial scale is accelerate's)."""
    fresh = torch.amp.GradScaler(
        "cpu",  # the state is plain numbers, whatever the device; a CPU scaler needs no GPU to build
        growth_factor=scaler.get_growth_factor(),
        backoff_factor=scaler.get_backoff_factor(),
        growth_interval=scaler.get_growth_interval(),
    )
    scaler.load_state_dict(fresh.state_dict())


def non_finite_loss_message(value: float, where: str, mixed_precision: str) -> str:
    """What to do about a NaN or inf loss; under fp16 the likelier cause is its narrow range (largest 65504)."""
    fix = (
        "Lower --learning_rate (or raise --warmup_ratio), or check the data and the model"
        if mixed_precision != "fp16"
        else "In fp16 this is most often an overflow of fp16's narrow range (largest value 65504): run in bf16 "
        "(--mixed_precision bf16, on GPUs of compute capability 8.0 or newer) or fp32 (--mixed_precision no), "
        "or lower --learning_rate (or raise --warmup_ratio)"
    )
    return (
        f"Non-finite loss ({value}) in {where}. {fix}, and run again with a new --output_dir (a run cannot be "
        "resumed with changed settings)."
    )


# The layout of a fold's resume file; a file without it (or of an older layout) is refused, not guessed at.
RESUME_FORMAT = "weibolabel-resume-2"
# The parts of numpy's and Python's generator states, named as the resume record stores them.
NUMPY_STATE = ("bit_generator", "key", "pos", "has_gauss", "cached_gaussian")
PYTHON_STATE = ("version", "internal", "gauss_next")


def _rng_state(device: torch.device) -> dict:
    """Every random generator training may draw from (CUDA's for the current device only, so a fold can resume on
    another GPU). torch's states are tensors; numpy's and Python's are kept JSON-ready, so none needs pickle."""
    numpy_state = dict(zip(NUMPY_STATE, np.random.get_state()))
    state = {
        "torch": torch.get_rng_state(),
        "numpy": numpy_state | {"key": numpy_state["key"].tolist()},
        "python": dict(zip(PYTHON_STATE, random.getstate())),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: dict, device: torch.device) -> None:
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    numpy_state = rng["numpy"] | {"key": np.asarray(rng["numpy"]["key"], dtype=np.uint32)}
    np.random.set_state(tuple(numpy_state[name] for name in NUMPY_STATE))
    python_state = rng["python"] | {"internal": tuple(rng["python"]["internal"])}
    random.setstate(tuple(python_state[name] for name in PYTHON_STATE))
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], device)


def _load_state(path: Path) -> dict:
    """The resume state, read as data only (torch.load(weights_only=True) refuses any object but tensors and plain
    containers), so a file someone else put in the run directory cannot run code; another layout is refused."""
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if not (isinstance(stored, dict) and isinstance(stored.get("json"), torch.Tensor)):
            raise ValueError("no resume record in it")
        record = json.loads(stored["json"].numpy().tobytes().decode("utf-8"))
        tensors = stored.get("tensors")
        if not (isinstance(record, dict) and record.get("format") == RESUME_FORMAT and isinstance(tensors, dict)):
            raise ValueError(f"its record is not of format {RESUME_FORMAT}")
        state = {key: tensors[key] for key in ("model", "optimizer", "scheduler", "scaler", "best_state")}
        state |= {key: record[key] for key in ("epoch", "best_f1", "best_epoch", "history")}
        state["rng"] = {**record["rng"], **tensors["rng"]}
        return state
    except Exception as error:  # a damaged disk, a copy cut short, or a file that is not ours (never executed)
        if isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in str(error):
            # torch's own text goes on to explain how to load it anyway: the one thing not to do with this file
            reason = "cut short, or holding Python objects other than tensors and plain data, which could run code"
        else:
            reason = f"{type(error).__name__}: {next(iter(str(error).strip().splitlines()), '')}"
        raise UserError(
            f"{path} is damaged and cannot be resumed from (it is not a resume state written by this program: "
            f"{reason[:300]}). It was read as data only; nothing in it was run. Delete the directory "
            f"{path.parent} to restart this fold from its first epoch; finished folds are kept."
        ) from None


def _save_state(
    path: Path,
    *,
    model,
    optimizer,
    scheduler,
    accelerator: Accelerator,
    epoch: int,
    best_f1: float,
    result: FoldTraining,
) -> None:
    """Everything needed to continue after `epoch`, written atomically: tensors as tensors, the rest as one JSON
    record (UTF-8 bytes in a uint8 tensor), so `_load_state` never unpickles an object."""
    rng = _rng_state(accelerator.device)
    tensors = {
        "model": model.state_dict(),
        "optimizer": optimizer.optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
        "best_state": result.best_state,
        "rng": {name: value for name, value in rng.items() if isinstance(value, torch.Tensor)},
    }
    record = {
        "format": RESUME_FORMAT,
        "epoch": epoch,
        "best_f1": best_f1,
        "best_epoch": result.best_epoch,
        "history": result.history,
        "rng": {name: value for name, value in rng.items() if not isinstance(value, torch.Tensor)},
    }
    encoded = torch.frombuffer(bytearray(json.dumps(record).encode("utf-8")), dtype=torch.uint8)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save({"tensors": tensors, "json": encoded}, tmp)
    except OSError as error:
        message = storage_error_message(error, "the fold resumes from its last saved epoch", path)
        if message is None:
            raise
        raise UserError(message) from None


def fit_and_score_fold(
    *,
    recipe: Recipe,
    accelerator: Accelerator,
    stop: StopSignal,
    schema,
    pad_id: int,
    input_ids: list[list[int]],
    labels: np.ndarray,
    groups: list[str],
    train_index: np.ndarray,
    test_index: np.ndarray,
    fold: int,
    state_file: Path,
) -> tuple[dict, np.ndarray, torch.nn.Module]:
    """Carve the validation part out of `train_index`, train a fresh model from the pretrained weights, keep the
    best epoch, score `test_index` once. Returns the fold's record, the test probabilities and the best model."""
    fit_index, val_index = split_validation(train_index, labels, groups, recipe.validation_fraction, recipe.seed + fold)

    def split(index):
        return Split([input_ids[i] for i in index], labels[index])

    # The same pretrained weights and head initialisation for every fold and fraction, whichever process runs it.
    set_seed(recipe.seed)
    model = load_pretrained_classifier(recipe.model_name_or_path, schema)
    initial = weights_digest(model)
    logger.info(
        f"fold {fold}: train {len(fit_index)}, validation {len(val_index)}, test {len(test_index)}",
        main_process_only=False,
    )
    training = train_fold(
        model,
        split(fit_index),
        split(val_index),
        recipe=recipe,
        accelerator=accelerator,
        fold=fold,
        pad_id=pad_id,
        state_file=state_file,
        stop=stop,
    )
    model.load_state_dict(training.best_state)
    probs, metrics = evaluate(model, split(test_index), pad_id, accelerator, recipe.eval_batch_size)
    record = {
        "fold": fold,
        "num_train": len(fit_index),
        "num_validation": len(val_index),
        "num_test": len(test_index),
        "best_epoch": training.best_epoch + 1,
        "history": training.history,
        "test": metrics,
        "initial_weights_sha256": initial,
    }
    return record, probs, model
