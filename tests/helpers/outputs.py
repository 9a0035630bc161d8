"""Files shaped like the jobs' outputs, written without running a job (a labeling job's Parquet file, the files of
a finished training run), and the comparison of two real training runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file

from weibolabel.labels import LabelSchema
from weibolabel.metrics import classification_metrics
from weibolabel.parquet_io import METADATA_KEY

from helpers.data import NAMES


def write_labeled_parquet(path, texts, probs, extra=None, model="test", members=("fold_0",)):
    """A file shaped like the labeling job's output, with its label schema and the model that labeled it in the
    metadata."""
    probs = np.asarray(probs, dtype=np.float32)
    ok = [t != "" for t in texts]
    frame = pd.DataFrame(
        {
            "row_id": np.arange(len(texts), dtype=np.int64),
            "text": texts,
            "label": pd.array([int(p.argmax()) if k else None for p, k in zip(probs, ok)], dtype="Int64"),
            "label_name": [NAMES[int(p.argmax())] if k else None for p, k in zip(probs, ok)],
            "confidence": np.where(ok, probs.max(axis=1), np.nan).astype(np.float32),
            "probs": [list(p) if k else None for p, k in zip(probs, ok)],
            "status": ["ok" if k else "empty" for k in ok],
            "truncated": False,
            **(extra or {}),
        }
    )
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {"labels": LabelSchema().to_list(), "model": model, "members": list(members), "temperature": 1.0}
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata).encode()}), path)
    return path


def write_fake_run(path, *, gold, predicted, probs=None, folds=None, names=NAMES, row_column="row_id", history=None):
    """The files of a finished training run that analysis and comparison read: oof_predictions.parquet,
    folds.csv and metrics.json (per-fold test metrics computed from the predictions)."""
    path.mkdir(parents=True, exist_ok=True)
    gold, predicted = np.asarray(gold), np.asarray(predicted)
    n = len(gold)
    folds = np.arange(n) % 5 if folds is None else np.asarray(folds)
    if probs is None:
        probs = np.full((n, len(names)), 0.1 / (len(names) - 1))
        probs[np.arange(n), predicted] = 0.9
    rows = np.arange(n) if row_column == "row_id" else [f"row {i + 2}" for i in range(n)]
    oof = pd.DataFrame(
        {
            row_column: rows,
            "text": [f"评论{i}" for i in range(n)],
            "gold": gold,
            "predicted": predicted,
            "fold": folds,
            **{f"prob_{name}": probs[:, i].astype(np.float32) for i, name in enumerate(names)},
        }
    )
    oof.to_parquet(path / "oof_predictions.parquet", index=False)
    oof[["text", "fold"]].assign(label=gold).to_csv(path / "folds.csv", index=False)
    fold_results = []
    for k in range(int(folds.max()) + 1):
        test = folds == k
        fold_results.append(
            {
                "fold": k,
                "num_test": int(test.sum()),
                "num_train": int((~test).sum()),
                "best_epoch": 2,
                "history": history or [{"epoch": 1, "val_macro_f1": 0.5}, {"epoch": 2, "val_macro_f1": 0.6}],
                "test": classification_metrics(gold[test], predicted[test], names),
            }
        )
    metrics = {"label_names": list(names), "folds": fold_results}
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


def comparable_metrics(run: Path) -> dict:
    """metrics.json without what differs between two identical runs: times, the environment, the directory."""
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.pop("env")
    metrics.pop("finished")
    metrics["setup"].pop("output_dir")
    for fold in metrics["folds"]:
        for epoch in fold["history"]:
            epoch.pop("seconds")
            epoch.pop("train_seconds")
    return metrics


def assert_same_training_result(expected: Path, actual: Path) -> None:
    """The same metrics.json (times, environment and directory aside), bitwise identical fold checkpoints and the
    same predictions; no resume state left behind."""
    want, got = comparable_metrics(expected), comparable_metrics(actual)
    # Per-fold test metrics and the summary first, for a readable failure; then everything else that remains.
    assert [f["test"] for f in got["folds"]] == [f["test"] for f in want["folds"]]
    assert got["summary"] == want["summary"]
    assert got == want
    for fold in range(want["setup"]["num_folds"]):
        want_tensors = load_file(expected / f"fold_{fold}" / "model.safetensors")
        got_tensors = load_file(actual / f"fold_{fold}" / "model.safetensors")
        assert want_tensors.keys() == got_tensors.keys()
        for name, tensor in want_tensors.items():
            assert tensor.dtype == got_tensors[name].dtype and torch.equal(tensor, got_tensors[name]), (fold, name)
        want_probs = pd.read_parquet(expected / f"fold_{fold}" / "test_predictions.parquet")
        got_probs = pd.read_parquet(actual / f"fold_{fold}" / "test_predictions.parquet")
        pd.testing.assert_frame_equal(want_probs, got_probs, check_exact=True)
        assert not (actual / f"fold_{fold}" / "resume").exists()
    pd.testing.assert_frame_equal(
        pd.read_parquet(expected / "oof_predictions.parquet"),
        pd.read_parquet(actual / "oof_predictions.parquet"),
        check_exact=True,
    )
