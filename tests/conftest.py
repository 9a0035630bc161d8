"""Shared fixtures: a tiny from-scratch BERT on the real bert-base-chinese tokenizer, small labeled and unlabeled
tables made on the fly, a trained tiny run directory, and a helper that launches the real jobs."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

# The suite is the CPU suite: GPUs are hidden from the test process and from every job it launches (they inherit
# this environment), before anything initialises CUDA: pytest imports this file before the test modules, and it
# imports torch only inside fixtures. On a GPU machine the jobs would otherwise switch to bf16 and put two ranks on
# one GPU. tests/gpu_smoke.sh is the GPU check.
os.environ["CUDA_VISIBLE_DEVICES"] = ""

REPO = Path(__file__).resolve().parents[1]

# Keyword pools: the tiny model can learn them in a few epochs, and the rows look like the group's data.
POOLS = {
    0: ["主持人讲得真好", "节目制作太用心了", "这一期画面好美", "导演拍得好", "嘉宾表演很精彩", "下一季快点播"],
    1: ["越王勾践剑好锋利", "千里江山图太美了", "青铜器纹饰精美", "这件文物两千年了", "兵马俑好震撼", "苏轼太有才"],
    2: ["中华文化博大精深", "为祖国感到骄傲", "传统文化需要传承", "中国人的浪漫", "民族精神永存", "文化自信"],
    3: ["转发微博", "早上好呀", "抽奖抽奖", "今天天气不错", "有人一起吃饭吗", "明天考试保佑我"],
}
ENDINGS = ["", "！", "😭", "哈哈哈", "～", "#国家宝藏#", "👍👍", "。"]


def make_labeled_rows(num_rows: int, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(num_rows):
        label = i % 4
        text = rng.choice(POOLS[label]) + rng.choice(ENDINGS) + rng.choice(POOLS[label])[:2] + str(i)
        rows.append({"Sentence": text, "Label": label})
    return pd.DataFrame(rows)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_job(script: str, args: list[str], num_processes: int = 1, timeout: int = 600, check: bool = True):
    """Run jobs/<script> as a user would: `accelerate launch` with N processes (gloo on CPU), or plain python."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    if num_processes > 1:
        command = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(num_processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(free_port()),
        ]
    else:
        command = [sys.executable]
    result = subprocess.run(
        [*command, str(REPO / "jobs" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=REPO,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{script} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


@pytest.fixture(scope="session")
def tiny_base_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT initialised from scratch, saved with the real bert-base-chinese tokenizer."""
    from weibolabel.modeling import build_demo_model

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


TINY_TRAIN_ARGS = [
    "--num_folds",
    "3",
    "--num_epochs",
    "2",
    "--learning_rate",
    "1e-3",
    "--per_device_batch_size",
    "16",
    "--max_length",
    "64",
    "--seed",
    "7",
]


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory, tiny_base_model_dir, labeled_xlsx) -> Path:
    """A finished 3-fold training run of the tiny model (one process)."""
    out = tmp_path_factory.mktemp("runs") / "tiny-cv"
    launch_job(
        "train.py",
        [
            "--data",
            str(labeled_xlsx),
            "--model_name_or_path",
            str(tiny_base_model_dir),
            "--output_dir",
            str(out),
            *TINY_TRAIN_ARGS,
        ],
    )
    return out
