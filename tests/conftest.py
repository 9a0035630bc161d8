"""Shared fixtures: a tiny from-scratch BERT on the real bert-base-chinese tokenizer, small labeled and unlabeled
tables made on the fly, and a trained tiny run directory. What tests share besides fixtures is in tests/helpers
(`from helpers.jobs import launch_job`); no test imports this file."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from helpers.data import make_labeled_rows
from helpers.jobs import launch_job, train_args

# The suite is the CPU suite: GPUs are hidden from the test process and from every job it launches (they inherit
# this environment), before anything initialises CUDA: pytest imports this file before the test modules, and it
# imports torch only inside fixtures. On a GPU machine the jobs would otherwise switch to bf16 and put two ranks on
# one GPU. tests/gpu_smoke.sh is the GPU check.
os.environ["CUDA_VISIBLE_DEVICES"] = ""


@pytest.fixture(scope="session", autouse=True)
def graph_cache(tmp_path_factory) -> None:
    """`--quantize onnx-int8`'s graph cache, for this session and the jobs it launches: not the user's."""
    os.environ["WEIBOLABEL_CACHE"] = str(tmp_path_factory.mktemp("weibolabel-cache"))


@pytest.fixture(scope="session")
def tiny_base_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT initialised from scratch, saved with the real bert-base-chinese tokenizer."""
    from weibolabel.model.loading import build_demo_model

    return build_demo_model(
        tmp_path_factory.mktemp("tiny-bert"), hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64
    )


@pytest.fixture(scope="session")
def labeled_xlsx(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "labeled.xlsx"
    make_labeled_rows(120).to_excel(path, index=False)
    return path


@pytest.fixture(scope="session")
def unlabeled_xlsx(tmp_path_factory) -> Path:
    """Odd rows on purpose: empty, NaN, emoji-only, a 2,000-character comment, duplicates."""
    texts = [*make_labeled_rows(40, seed=7)["Sentence"], "", None, "😭🙏🥺", "中华文化" * 500, "转发微博", "转发微博"]
    path = tmp_path_factory.mktemp("data") / "unlabeled.xlsx"
    pd.DataFrame({"Sentence": texts}).to_excel(path, index=False)
    return path


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory, tiny_base_model_dir, labeled_xlsx) -> Path:
    """A finished 3-fold training run of the tiny model (one process)."""
    out = tmp_path_factory.mktemp("runs") / "tiny-cv"
    launch_job("train.py", train_args(labeled_xlsx, tiny_base_model_dir, out))
    return out
