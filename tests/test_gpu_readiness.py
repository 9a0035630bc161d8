"""Ready for GPUs without one: the decisions a GPU run depends on (precision, forward path, loss-scaler state,
out-of-memory errors, position limits, barrier timeout, version floors) as functions of the device's capabilities,
tested on CPU. tests/gpu_smoke.sh runs the same paths on a real GPU."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import types
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from transformers.models.bert.modeling_bert import BertEmbeddings

import weibolabel
import weibolabel.model.inference as inference
from weibolabel.data.labels import load_label_schema
from weibolabel.labeling.parts import read_metadata
from weibolabel.model.forward import classify, forward_path
from weibolabel.model.inference import encode, inference_dtype, load_ensemble, predict_probs
from weibolabel.model.loading import (
    fit_max_length,
    load_pretrained_classifier,
    load_tokenizer,
    save_checkpoint,
)
from weibolabel.review.annotation import score_by_fold
from weibolabel.run.config import TrainConfig
from weibolabel.run.cuda_builds import torch_for_driver
from weibolabel.run.device import Gpu, NodeGpus, TorchGpus, check_device, gpu_problem, node_gpus
from weibolabel.run.launch import collective_timeout, make_accelerator
from weibolabel.run.precision import choose_precision, is_out_of_memory
from weibolabel.training.fold import Recipe, Split, non_finite_loss_message, reset_loss_scaler, train_fold
from weibolabel.util.errors import UserError

from helpers import REPO
from helpers.data import make_labeled_rows
from helpers.gpus import DRIVER, GPU_NAME, fake_gpu_node
from helpers.jobs import job_env, label_args, last_line, launch_job, load_job, log_of, train_args

SCHEMA = load_label_schema(None)
NEVER_STOP = types.SimpleNamespace(check=lambda where: None)


def fold_settings(config: TrainConfig, accelerator, state_file: Path) -> dict:
    """train_fold's keyword arguments for fold 0 of a tiny model (pad id 0)."""
    recipe = Recipe.from_settings(config)
    return dict(recipe=recipe, accelerator=accelerator, fold=0, pad_id=0, state_file=state_file, stop=NEVER_STOP)


# The GPUs the group and the school clusters have, by compute capability.
GENERATIONS = {"V100": (7, 0), "T4 / RTX 6000": (7, 5), "A100": (8, 0), "H100": (9, 0)}


@pytest.fixture(scope="module")
def checkpoint(tiny_base_model_dir, tmp_path_factory) -> Path:
    """One fine-tuning-shaped checkpoint (fresh head, no training): enough for scoring paths."""
    directory = tmp_path_factory.mktemp("checkpoint") / "fold_0"
    torch.manual_seed(0)
    model = load_pretrained_classifier(str(tiny_base_model_dir), SCHEMA)
    save_checkpoint(model, load_tokenizer(str(tiny_base_model_dir)), directory, SCHEMA)
    return directory


# ------------------------------------------------------------------------------------------------- 1. precision
@pytest.mark.parametrize(
    ("gpu", "expected"), [("V100", "fp16"), ("T4 / RTX 6000", "fp16"), ("A100", "bf16"), ("H100", "bf16")]
)
def test_precision_is_bf16_only_where_native(gpu, expected):
    assert choose_precision(None, device_type="cuda", compute_capability=GENERATIONS[gpu]) == (expected, None)


def test_precision_on_cpu_and_explicit_choices():
    assert choose_precision(None, device_type="cpu") == ("no", None)
    assert choose_precision("bf16", device_type="cpu") == ("bf16", None)  # opt-in, about 1.9x on AMX CPUs
    assert choose_precision("no", device_type="cuda", compute_capability=(9, 0)) == ("no", None)
    assert choose_precision("fp16", device_type="cuda", compute_capability=(9, 0)) == ("fp16", None)
    # Kept when asked for, but said to be emulated.
    precision, warning = choose_precision("bf16", device_type="cuda", compute_capability=(7, 5))
    assert precision == "bf16" and "compute capability 7.5, which has no native bf16" in warning
    assert "--mixed_precision fp16" in warning
    # CPUs have no fp16 autocast: fp32, and said so, rather than a run that calls itself fp16.
    precision, warning = choose_precision("fp16", device_type="cpu")
    assert precision == "no" and "fp16 needs a GPU" in warning
    with pytest.raises(UserError, match="Unknown precision 'fp32'"):
        choose_precision("fp32", device_type="cpu")


def test_scoring_dtype_follows_the_precision_on_every_device():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert inference_dtype(cuda, "bf16") == torch.bfloat16
    assert inference_dtype(cuda, "fp16") == torch.float16
    assert inference_dtype(cuda, "no") is None  # an explicit fp32 on GPU is honoured (it was bf16 whatever asked)
    assert inference_dtype(cpu, "bf16") == torch.bfloat16
    assert inference_dtype(cpu, "fp16") is None
    assert inference_dtype(cpu, "no") is None


def test_precision_helper_for_the_launch_scripts():
    def helper(*args):
        return subprocess.run(
            [sys.executable, "-m", "weibolabel.run.precision", *args], capture_output=True, text=True, timeout=120
        )

    result = helper()
    assert (result.returncode, result.stdout) == (0, "no\n")  # the suite hides every GPU
    assert helper("bf16").stdout == "bf16\n"
    result = helper("fp32")
    assert result.returncode == 2 and "Unknown precision 'fp32'" in result.stderr and not result.stdout


def fake_tools(tmp_path: Path, precision: str) -> dict[str, str]:
    """A PATH whose `python` reports 2 GPUs and `precision` from weibolabel.run.precision, and whose `accelerate`
    prints its arguments: the launch scripts' GPU branch, without a GPU."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(
        f'#!/bin/bash\ncase "$*" in *weibolabel.run.precision*) echo {precision} ;; *) echo 2 ;; esac\n'
    )
    (bin_dir / "accelerate").write_text('#!/bin/bash\necho "$@"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/tmp")}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_launch_script_passes_the_precision_chosen_for_the_gpus(tmp_path, precision):
    env = fake_tools(tmp_path, precision)
    launch = ["bash", str(REPO / "scripts" / "launch.sh"), "jobs/train.py", "--x"]
    command = subprocess.run(launch, capture_output=True, text=True, env=env, check=True).stdout.split()
    assert command[command.index("--mixed_precision") + 1] == precision
    assert command[command.index("--num_processes") + 1] == "2"
    command = subprocess.run(
        launch, capture_output=True, text=True, env={**env, "MIXED_PRECISION": "no"}, check=True
    ).stdout.split()
    assert command[command.index("--mixed_precision") + 1] == "no"  # an explicit choice wins


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_slurm_launch_passes_the_precision_chosen_on_the_node(tmp_path, precision):
    env = {
        **fake_tools(tmp_path, precision),
        "SLURM_JOB_ID": "5",
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_GPUS_ON_NODE": "1",
    }
    node = ["bash", str(REPO / "slurm" / "launch.sh"), "node", "--print-command", "jobs/train.py"]
    command = subprocess.run(node, capture_output=True, text=True, env=env, check=True).stdout.split()
    assert command[command.index("--mixed_precision") + 1] == precision
    command = subprocess.run(
        node, capture_output=True, text=True, env={**env, "MIXED_PRECISION": "fp16"}, check=True
    ).stdout.split()
    assert command[command.index("--mixed_precision") + 1] == "fp16"


def test_accelerator_turns_fp16_on_cpu_into_fp32_and_says_so(monkeypatch, caplog):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")  # what `accelerate launch --mixed_precision fp16` sets
    with caplog.at_level(logging.WARNING):
        accelerator = make_accelerator()
    assert accelerator.mixed_precision == "no"  # what env.json and the metrics record
    assert "fp16 needs a GPU: running in fp32" in caplog.text


def test_predict_scores_in_the_chosen_precision_and_says_which(checkpoint, capsys):
    predict = load_job("predict")
    assert predict.main(["--model", str(checkpoint), "好看"]) == 0
    assert "precision float32" in capsys.readouterr().err  # the label job's choice on a CPU
    assert predict.main(["--model", str(checkpoint), "--precision", "bf16", "好看"]) == 0
    assert "precision bfloat16" in capsys.readouterr().err


def test_annotation_scoring_uses_the_label_jobs_precision(checkpoint, monkeypatch):
    loaded = []
    real = inference.load_ensemble

    def spy(path, device, dtype=None, calibrated=True):
        loaded.append(dtype)
        return real(path, device, dtype, calibrated)

    monkeypatch.setattr(inference, "load_ensemble", spy)
    default = score_by_fold(checkpoint, ["好看", "转发微博"])
    bf16 = score_by_fold(checkpoint, ["好看", "转发微博"], precision="bf16")
    assert loaded == [None, torch.bfloat16]  # by default fp32 weights on a CPU, as the label job loads them
    assert default.shape == bf16.shape == (1, 2, len(SCHEMA))
    assert 0 < np.abs(default - bf16).max() < 0.05  # rounded differently, the same model


# ------------------------------------------------------------------------------------------------- 5. fp16 scaler
def test_loss_scaler_reset_gives_a_new_scalers_state():
    scaler = torch.amp.GradScaler("cpu", growth_interval=100)
    previous_fold = {**scaler.state_dict(), "scale": 8.0, "_growth_tracker": 37}
    scaler.load_state_dict(previous_fold)
    reset_loss_scaler(scaler)
    assert scaler.state_dict() == torch.amp.GradScaler("cpu", growth_interval=100).state_dict()


# The schedule counts the optimizer's real steps: fp16's step swapping must not hide them from it (torch warns then).
@pytest.mark.filterwarnings("error:Seems like `optimizer.step\\(\\)` has been overridden:UserWarning")
def test_each_fold_starts_with_a_fresh_loss_scale(tiny_base_model_dir, tmp_path, monkeypatch):
    """fp16's scaler runs on CPU too: train a fold with a scaler a previous fold left at scale 8 and growth count 37,
    and look at the scaler at the fold's first backward pass."""
    tokenizer = load_tokenizer(str(tiny_base_model_dir))
    rows = make_labeled_rows(12)
    ids = encode(tokenizer, rows["Sentence"].tolist(), 32).input_ids
    labels = rows["Label"].to_numpy().copy()
    accelerator = make_accelerator()
    accelerator.scaler = torch.amp.GradScaler("cpu")
    accelerator.scaler.load_state_dict({**accelerator.scaler.state_dict(), "scale": 8.0, "_growth_tracker": 37})
    seen = []
    backward = accelerator.backward

    def spy(loss, **kwargs):
        seen.append(accelerator.scaler.state_dict())
        return backward(loss, **kwargs)

    monkeypatch.setattr(accelerator, "backward", spy)
    model = load_pretrained_classifier(str(tiny_base_model_dir), SCHEMA)
    config = TrainConfig(num_epochs=1, per_device_batch_size=4, eval_batch_size=8, max_length=32)
    train, validation = Split(ids[:8], labels[:8]), Split(ids[8:], labels[8:])
    train_fold(model, train, validation, **fold_settings(config, accelerator, tmp_path / "state.pt"))
    assert seen[0] == torch.amp.GradScaler("cpu").state_dict()
    assert seen[1]["_growth_tracker"] == 1  # the scaler did run: a finite step counts towards growth


def test_fp16_overflow_message_suggests_bf16_or_fp32():
    message = non_finite_loss_message(float("inf"), "fold 1, epoch 2, step 3", "fp16")
    assert message.startswith("Non-finite loss (inf) in fold 1, epoch 2, step 3. In fp16")
    assert "--mixed_precision bf16" in message and "--mixed_precision no" in message
    assert "--learning_rate" in message
    message = non_finite_loss_message(float("nan"), "fold 0, epoch 1, step 1", "no")
    assert "Lower --learning_rate" in message and "fp16" not in message


# ------------------------------------------------------------------------------------------------- 6. memory
@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
        RuntimeError("cuDNN error: CUDNN_STATUS_NOT_ENOUGH_WORKSPACE"),
        RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported"),
        RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
        RuntimeError("HIP out of memory. Tried to allocate 20.00 MiB"),
    ],
    ids=lambda error: str(error)[:30],
)
def test_out_of_memory_in_all_its_forms(error):
    assert is_out_of_memory(error)
    try:
        raise UserError("wrapped") from error
    except UserError as wrapper:
        assert is_out_of_memory(wrapper)  # the cause counts


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("CUDA error: an illegal memory access was encountered"),
        RuntimeError("mat1 and mat2 shapes cannot be multiplied"),
        ValueError("out of memory"),  # not raised by torch: someone else's problem
        KeyError("x"),
    ],
)
def test_other_errors_are_not_out_of_memory(error):
    assert not is_out_of_memory(error)


def _cublas_out_of_memory(*args, **kwargs):
    raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")


def _shape_error(*args, **kwargs):
    raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")


def test_cublas_out_of_memory_is_caught_like_torchs_own(tiny_base_model_dir, checkpoint, tmp_path, monkeypatch, capsys):
    model = load_pretrained_classifier(str(tiny_base_model_dir), SCHEMA)
    monkeypatch.setattr(BertEmbeddings, "forward", _cublas_out_of_memory)
    # Scoring (validation, labeling, predict): one type for every caller.
    with pytest.raises(torch.cuda.OutOfMemoryError, match="CUBLAS_STATUS_ALLOC_FAILED"):
        predict_probs([model], [[101, 102]], 0)
    # Training steps.
    accelerator = make_accelerator()
    config = TrainConfig(num_epochs=1, per_device_batch_size=4, max_length=32)
    split = Split([[101, 2000, 102]] * 4, np.array([0, 1, 2, 3]))
    with pytest.raises(UserError, match=r"^Out of GPU memory in fold 0, epoch 1, step 1 "):
        train_fold(model, split, split, **fold_settings(config, accelerator, tmp_path / "s.pt"))
    # The quick look (loading checks the forward on a probe batch, which would meet the failure first).
    monkeypatch.setattr("weibolabel.model.loading.check_classify", lambda model: None)
    assert load_job("predict").main(["--model", str(checkpoint), "好看"]) == 2
    assert "error: Out of GPU memory scoring these comments" in capsys.readouterr().err
    # Other errors are not swallowed.
    monkeypatch.setattr(BertEmbeddings, "forward", _shape_error)
    with pytest.raises(RuntimeError, match=r"^mat1 and mat2 shapes cannot be multiplied$"):
        predict_probs([model], [[101, 102]], 0)


def test_out_of_memory_loading_the_ensemble_is_a_clear_error(tmp_path, monkeypatch):
    run = tmp_path / "run"
    for fold in range(3):
        (run / f"fold_{fold}").mkdir(parents=True)
        (run / f"fold_{fold}" / "fold_result.json").write_text("{}")
    (run / "config.yaml").write_text("num_folds: 3\nmax_length: 64\n")
    calls = []

    def load(directory, dtype=None):
        calls.append(directory)
        if len(calls) == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 400.00 MiB")
        return torch.nn.Linear(1, 1), SCHEMA

    monkeypatch.setattr(inference, "load_checkpoint", load)
    with pytest.raises(UserError) as caught:
        load_ensemble(run, torch.device("cpu"))
    message = str(caught.value)
    assert message.startswith(f"Out of GPU memory loading checkpoint 2 of 3 from {run} onto cpu")
    assert str(run / "fold_0") in message


def test_version_floors_are_the_tested_versions_and_checked_at_import():
    pyproject = (REPO / "pyproject.toml").read_text()
    floors = dict(re.findall(r'^\s*"(torch|transformers|accelerate)>=([\d.]+)",$', pyproject, re.M))
    assert len(floors) == 3
    for package, minimum in weibolabel.MINIMUM_VERSIONS.items():
        assert floors[package] == minimum, f"pyproject.toml and weibolabel.MINIMUM_VERSIONS disagree on {package}"
    assert weibolabel.too_old(weibolabel._installed_versions()) == {}  # this environment is what was tested
    assert weibolabel.too_old({"torch": "2.3.1+cu121", "transformers": "5.0.0", "accelerate": "1.1.1"}) == {
        "torch": "2.3.1+cu121",
        "accelerate": "1.1.1",
    }
    assert weibolabel.too_old({"torch": "2.4.0+cu121", "transformers": "4.57.1", "accelerate": "1.2.0"}) == {
        "transformers": "4.57.1"
    }
    # A `pip install --no-deps` next to an old torch: the first import says what to do.
    fake_old_torch = (
        "import importlib.metadata as m; real = m.version; "
        "m.version = lambda p: '2.3.1' if p == 'torch' else real(p); import weibolabel"
    )
    result = subprocess.run([sys.executable, "-c", fake_old_torch], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "ImportError: weibolabel needs torch>=2.4 (found 2.3.1): upgrade with pip install 'torch>=2.4'" in (
        result.stderr
    )


# ------------------------------------------------------------------------------------------------- 7. GPUs
def test_the_suite_hides_gpus_from_itself_and_its_jobs():
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    assert torch.cuda.device_count() == 0
    seen = subprocess.run(
        [sys.executable, "-c", "import os; print(repr(os.environ['CUDA_VISIBLE_DEVICES']))"],
        capture_output=True,
        text=True,
        env=os.environ,
    ).stdout
    assert seen == "''\n"


@pytest.mark.parametrize(("device_type", "path"), [("cpu", "custom"), ("cuda", "model"), ("mps", "model")])
def test_forward_path_by_device(device_type, path):
    assert forward_path(device_type) == path


def test_classify_runs_the_models_own_forward_where_the_path_says_so(tiny_base_model_dir, monkeypatch):
    model = load_pretrained_classifier(str(tiny_base_model_dir), SCHEMA).eval()
    ids = torch.tensor([[101, 2000, 2001, 102], [101, 2000, 102, 0]])
    mask = (ids != 0).long()
    calls = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    expected = forward(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(classify(model, ids, mask), expected)
    assert calls == []  # CPU: the custom path
    torch.testing.assert_close(classify(model, ids, mask, path="model"), expected)
    assert calls == [1]
    monkeypatch.setattr("weibolabel.model.forward.forward_path", lambda device_type: "model")  # what a GPU gets
    torch.testing.assert_close(classify(model, ids, mask), expected)
    assert calls == [1, 1]
    torch.testing.assert_close(classify(model, ids, mask, path="custom"), expected)  # measurable on demand
    assert calls == [1, 1]


# ------------------------------------------------------------------------------------------------- 8. small
def test_max_length_is_clamped_to_the_models_positions():
    assert fit_max_length(128, 512) == (128, None)
    assert fit_max_length(512, 512) == (512, None)
    assert fit_max_length(1000, None) == (1000, None)
    length, message = fit_max_length(1000, 512)
    assert length == 512
    assert message == (
        "--max_length 1000 is more than the model's 512 positions (max_position_embeddings): using 512; "
        "longer texts are truncated there."
    )


def test_jobs_clamp_a_too_long_max_length(tiny_base_model_dir, checkpoint, tmp_path, caplog, capsys):
    long_text = "中华文化" * 300  # 1,200 tokens: positions past 512 crash the model without the clamp
    assert load_job("predict").main(["--model", str(checkpoint), "--max_length", "1000", long_text]) == 0
    streams = capsys.readouterr()
    assert "--max_length 1000 is more than the model's 512 positions" in streams.err
    assert "max_length 512)" in streams.err and " ok" in streams.out

    corpus, labels = tmp_path / "corpus.csv", tmp_path / "labels.parquet"
    pd.DataFrame({"Sentence": [long_text, "好看"]}).to_csv(corpus, index=False)
    label_args = ["--input", str(corpus), "--model", str(checkpoint), "--output", str(labels), "--max_length", "1000"]
    with caplog.at_level(logging.WARNING):
        assert load_job("label_corpus").main(label_args) == 0, caplog.text
    assert "--max_length 1000 is more than the model's 512 positions" in caplog.text
    assert read_metadata(labels)["max_length"] == 512
    assert pd.read_parquet(labels)["status"].tolist() == ["ok", "ok"]

    rows = make_labeled_rows(80)
    rows.loc[0, "Sentence"] = long_text
    data = tmp_path / "labeled.csv"
    rows.to_csv(data, index=False)
    out = tmp_path / "run"
    args = ["--data", str(data), "--model_name_or_path", str(tiny_base_model_dir), "--output_dir", str(out)]
    args += ["--num_folds", "2", "--num_epochs", "1", "--max_length", "1000", "--per_device_batch_size", "16"]
    args += ["--no_baseline"]
    with caplog.at_level(logging.WARNING):
        assert load_job("train").main(args) == 0, caplog.text
    assert "--max_length 1000 is more than the model's 512 positions" in caplog.text
    assert "max_length: 512" in (out / "config.yaml").read_text()
    # A re-run that waits longer at barriers is the same run: it resumes (here: finds every fold done).
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert load_job("train").main([*args, "--collective_timeout_minutes", "30"]) == 0, caplog.text
    assert "fold 0: already finished, skipped" in caplog.text


def test_collective_timeout_is_sized_and_configurable():
    assert collective_timeout(None, on_gpu=True) == timedelta(hours=2)
    assert collective_timeout(None, on_gpu=False) == timedelta(hours=24)
    assert collective_timeout(30, on_gpu=True) == timedelta(minutes=30)
    with pytest.raises(UserError, match="--collective_timeout_minutes must be positive"):
        collective_timeout(0, on_gpu=True)
    assert make_accelerator(45).init_handler.timeout == timedelta(minutes=45)


@pytest.mark.parametrize("job", ["train", "label_corpus"])
def test_a_bad_collective_timeout_is_a_message_not_a_traceback(job, capsys):
    with pytest.raises(SystemExit) as exited:
        load_job(job).main(["--collective_timeout_minutes", "0"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert "--collective_timeout_minutes must be positive" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------------- 8. no silent CPU
# This machine's torch: the CPU build here, a CUDA build in scripts/test_floors.sh's environment (PyPI's default wheel,
# which cannot use the fake node's GPUs either: there is no driver behind the fake nvidia-smi).
THIS_BUILD = "a CPU build" if torch.version.cuda is None else f"a CUDA {torch.version.cuda} build"
TURING_NODE = NodeGpus(
    counts={"SLURM_GPUS_ON_NODE=4": 4, "nvidia-smi": 4},
    gpus=tuple(Gpu(GPU_NAME, (7, 5), 24020, 24576) for _ in range(4)),
    driver=DRIVER,
)


def test_gpus_torch_cannot_use_are_a_problem_with_the_torch_to_install():
    cpu_build = TorchGpus(version="2.13.0+cpu", cuda=None, usable=0)
    problem, fix = gpu_problem(TURING_NODE, cpu_build)
    for said in ("4 GPU(s)", GPU_NAME, f"driver {DRIVER}", "torch 2.13.0+cpu, a CPU build", "run on the CPU"):
        assert said in problem, said
    # What a 535 driver runs (cuda_builds' table): PyPI's torch 2.4.1 (CUDA 12.1), or 2.7.1's CUDA 11.8 build.
    advice = torch_for_driver(DRIVER)
    assert "TORCH_VERSION=2.4.1" in advice and "TORCH_INDEX_URL=https://download.pytorch.org/whl/cu118" in advice
    assert f"Fix: bash scripts/install.sh with {advice}; or run on the CPU" in f"Fix: {fix}"
    assert "DEVICE=cpu" in fix and "--device cpu" in fix
    # A CUDA 13.0 wheel (PyPI's torch 2.13) on the same driver: the driver it needs, and the torch that fits.
    cuda13 = TorchGpus(version="2.13.0", cuda="13.0", usable=0, error="The NVIDIA driver on your system is too old")
    problem, fix = gpu_problem(TURING_NODE, cuda13)
    assert "a CUDA 13.0 build" in problem and "CUDA 13.0 needs driver >= 580.65.06" in problem
    assert "TORCH_VERSION=2.4.1" in fix and "ask for driver >= 580.65.06" in fix
    # A driver older than every build in the table: only a newer driver helps.
    ancient = NodeGpus(counts={"nvidia-smi": 1}, driver="418.67")
    assert "ask for an NVIDIA driver >= 520.61.05" in gpu_problem(ancient, cpu_build)[1]
    # Agreement: torch uses the GPUs, or there are none to use.
    assert gpu_problem(TURING_NODE, TorchGpus(version="2.7.1", cuda="12.6", usable=4)) is None
    assert gpu_problem(NodeGpus(), cpu_build) is None
    assert gpu_problem(NodeGpus(counts={"CUDA_VISIBLE_DEVICES=": 0, "nvidia-smi": 4}, hidden="x"), cpu_build) is None


def test_the_node_is_read_from_slurm_cuda_visible_devices_and_nvidia_smi(tmp_path, monkeypatch):
    for variable in ("SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(variable, raising=False)
    env = fake_gpu_node(tmp_path, dict(os.environ))
    monkeypatch.setenv("PATH", env["PATH"])
    node = node_gpus()
    assert (node.seen, node.driver, {gpu.name for gpu in node.gpus}) == (4, DRIVER, {GPU_NAME})
    assert node.gpus[0].compute_capability == (7, 5) and node.gpus[0].free_mib == 24020
    monkeypatch.setenv("SLURM_JOB_GPUS", "0,1")
    assert node_gpus().counts["SLURM_JOB_GPUS=0,1"] == 2
    for hidden in ("", "-1", "NoDevFiles"):  # the user (or the test suite) hid every GPU: the CPU is their choice
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert node_gpus().seen == 0
        check_device("auto")  # no problem, and no torch question
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(UserError, match=f"{THIS_BUILD}, cannot use them"):
        check_device("auto")
    check_device("cpu")  # asked for
    with pytest.raises(UserError, match="Unknown device 'gpu'"):
        check_device("gpu")


def fake_node_env(tmp_path: Path) -> dict[str, str]:
    return fake_gpu_node(tmp_path, job_env())


def assert_refused_without_traceback(result: subprocess.CompletedProcess, written: Path) -> None:
    log = log_of(result)
    assert result.returncode != 0, log
    assert f"{THIS_BUILD}, cannot use them" in log and f"driver {DRIVER}" in log and "TORCH_VERSION=" in log, log
    assert log.count("cannot use them") == 1, log
    assert "Traceback" not in log and "ChildFailedError" not in log, log
    assert not written.exists() or not any(written.iterdir()), sorted(written.iterdir())


# Each GPU job, by each way to start it; the launcher's exit status (accelerate launch -q exits 1 for any failure).
LAUNCHES = {
    "scripts/launch.sh": lambda job: ["bash", "scripts/launch.sh", f"jobs/{job}"],
    "accelerate launch -q": lambda job: [sys.executable, "-m", "accelerate.commands.launch", "-q", f"jobs/{job}"],
    "python": lambda job: [sys.executable, f"jobs/{job}"],
}


def job_arguments(job: str, tiny_run_dir: Path, labeled_xlsx: Path, tiny_base_model_dir: Path, out: Path):
    if job == "train.py":
        return train_args(labeled_xlsx, tiny_base_model_dir, out / "run")
    if job == "label_corpus.py":
        return ["--input", str(labeled_xlsx), "--model", str(tiny_run_dir), "--output", str(out / "labels.parquet")]
    return ["--run", str(tiny_run_dir), "--output_dir", str(out / "curve"), "--fractions", "0.5"]


def test_a_gpu_node_torch_cannot_use_stops_the_launch_script(tmp_path, tiny_base_model_dir, labeled_xlsx):
    out = tmp_path / "out"
    out.mkdir()
    args = LAUNCHES["scripts/launch.sh"]("train.py") + train_args(labeled_xlsx, tiny_base_model_dir, out / "run")
    result = subprocess.run(args, capture_output=True, text=True, env=fake_node_env(tmp_path), cwd=REPO, timeout=300)
    assert_refused_without_traceback(result, out)
    assert result.returncode == 2


@pytest.mark.slow
@pytest.mark.parametrize("job", ["train.py", "label_corpus.py", "learning_curve.py"])
@pytest.mark.parametrize("launch", list(LAUNCHES))
def test_every_job_on_a_gpu_node_torch_cannot_use_stops_before_any_work(
    job, launch, tmp_path, tiny_run_dir, labeled_xlsx, tiny_base_model_dir
):
    out = tmp_path / "out"
    out.mkdir()
    args = LAUNCHES[launch](job) + job_arguments(job, tiny_run_dir, labeled_xlsx, tiny_base_model_dir, out)
    before = sorted(p.name for p in tiny_run_dir.iterdir())
    result = subprocess.run(args, capture_output=True, text=True, env=fake_node_env(tmp_path), cwd=REPO, timeout=300)
    assert_refused_without_traceback(result, out)
    assert sorted(p.name for p in tiny_run_dir.iterdir()) == before  # the learning curve writes into the run
    assert result.returncode == (1 if launch.startswith("accelerate") else 2)


@pytest.mark.slow
def test_on_a_gpu_node_the_cpu_runs_when_asked_for(tmp_path, tiny_run_dir, labeled_xlsx, tiny_base_model_dir):
    env = fake_node_env(tmp_path)
    labels = tmp_path / "labels.parquet"
    label = ["bash", "scripts/launch.sh", "jobs/label_corpus.py", "--input", str(labeled_xlsx)]
    label += ["--model", str(tiny_run_dir), "--output", str(labels)]
    result = subprocess.run(label, capture_output=True, text=True, env={**env, "DEVICE": "cpu"}, cwd=REPO, timeout=600)
    assert result.returncode == 0, log_of(result)
    assert len(pd.read_parquet(labels)) == 120
    assert json.loads(labels.with_suffix(".summary.json").read_text())["processes"] == 2
    train = [sys.executable, "-m", "accelerate.commands.launch", "-q", "--cpu", "jobs/train.py", "--device", "cpu"]
    train += train_args(labeled_xlsx, tiny_base_model_dir, tmp_path / "run")
    result = subprocess.run(train, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert result.returncode == 0, log_of(result)
    assert (tmp_path / "run" / "report.md").is_file()
    bad_device = {**env, "DEVICE": "gpu"}
    bad = subprocess.run([*label, "--overwrite"], capture_output=True, text=True, env=bad_device, cwd=REPO)
    assert bad.returncode == 2 and last_line(bad.stderr).startswith("error: DEVICE=gpu: use DEVICE=cpu")


def test_slurm_batch_prints_the_doctors_lines_and_stops_before_srun(tmp_path, tiny_base_model_dir, labeled_xlsx):
    env = {**fake_node_env(tmp_path), "SLURM_JOB_ID": "7", "SLURM_GPUS_ON_NODE": "4", "REPO_DIR": str(REPO)}
    if (Path(sys.prefix) / "bin" / "activate").is_file():  # the job runs with this torch, not the checkout's .venv
        env["VENV"] = sys.prefix
    out = tmp_path / "out"
    out.mkdir()
    batch = ["bash", "slurm/launch.sh", "batch", "jobs/train.py", *train_args(labeled_xlsx, tiny_base_model_dir, out)]
    result = subprocess.run(batch, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    log = log_of(result)
    assert result.returncode == 2, log
    assert re.search(r"^problem\s+device\s+This node shows 4 GPU\(s\) \(Quadro RTX 6000\)", result.stdout, re.M), log
    assert re.search(r"^ok\s+precision\s+fp32 .*compute capability 7\.5, it would be fp16", result.stdout, re.M), log
    assert f"{THIS_BUILD}, cannot use them" in last_line(result.stderr) and "Traceback" not in log
    assert not any(out.iterdir())


# ------------------------------------------------------------------------------------------------- 9. the doctor
def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "weibolabel.doctor", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def line_of(result: subprocess.CompletedProcess, topic: str) -> str:
    return next(line for line in result.stdout.splitlines() if line.split()[1:2] == [topic])


def test_doctor_on_this_machine_and_on_a_gpu_node_torch_cannot_use(tmp_path, tiny_base_model_dir):
    plain = {k: v for k, v in job_env(HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1").items()}
    plain.pop("CUDA_VISIBLE_DEVICES")
    args = ["--model", str(tiny_base_model_dir), "--output_dir", str(tmp_path / "run")]
    here = doctor(plain, *args)
    assert here.returncode == 0, log_of(here)
    assert line_of(here, "device").startswith("ok") and "CPU" in line_of(here, "device")
    assert re.match(r"ok\s+precision\s+fp32 \(CPU\)", line_of(here, "precision"))
    for topic in ("model", "memory", "offline", "filesystem", "output"):
        assert line_of(here, topic).startswith("ok"), line_of(here, topic)
    assert not (tmp_path / "run").exists()  # nothing written

    node = doctor(fake_gpu_node(tmp_path, plain), *args)
    assert node.returncode == 1, log_of(node)
    assert line_of(node, "device").startswith("problem") and "TORCH_VERSION=" in line_of(node, "device")
    assert "23.5 GiB free on the fullest GPU" in line_of(node, "memory")  # nvidia-smi's free memory, torch or not
    asked = doctor(fake_gpu_node(tmp_path, plain), *args, "--device", "cpu")
    assert asked.returncode == 0 and "4 GPU(s) stay idle" in line_of(asked, "device")
    # What a job's own options say: the missing model and an unwritable output are problems with their fix.
    broken = doctor(plain, "jobs/train.py", "--model_name_or_path", str(tmp_path / "nope"), "--output_dir", "/proc/x")
    assert broken.returncode == 1
    assert line_of(broken, "model").startswith("problem") and "Model directory not found" in line_of(broken, "model")
    assert line_of(broken, "output").startswith("problem") and "Cannot write to /proc/x" in line_of(broken, "output")


# ------------------------------------------------------------------------------------------------- 10. transport
def test_the_accelerate_config_pins_no_precision():
    """The precision depends on the GPU: the launch passes weibolabel.run.precision's choice, never a file's bf16."""
    assert "mixed_precision" not in yaml.safe_load((REPO / "accelerate_config.yaml").read_text())


def exchanged(directory: Path) -> dict[str, dict[str, int]]:
    """Per collective, its calls, bytes and largest tensor, summed over the processes' records."""
    total: dict[str, dict[str, int]] = {}
    for record in sorted(directory.glob("rank-*.json")):
        for name, counts in json.loads(record.read_text()).items():
            into = total.setdefault(name, {"calls": 0, "bytes": 0, "largest_tensor": 0})
            into["calls"] += counts["calls"]
            into["bytes"] += counts["bytes"]
            into["largest_tensor"] = max(into["largest_tensor"], counts["largest_tensor"])
    return total


@pytest.mark.slow
def test_ranks_exchange_only_barriers_and_small_objects(tmp_path, tiny_base_model_dir, labeled_xlsx):
    """What docs/cluster.md's transport decision rests on: a 2-rank training (3 folds) and labeling exchange a few
    dozen barriers and objects of some hundred bytes, no gradients (folds train side by side). Printed with -s."""
    wrapper = str(REPO / "tests" / "helpers" / "scripts" / "collectives_wrapper.py")
    run, labels = tmp_path / "run", tmp_path / "labels.parquet"
    jobs = {
        "train": [str(REPO / "jobs" / "train.py"), *train_args(labeled_xlsx, tiny_base_model_dir, run)],
        "label_corpus": [str(REPO / "jobs" / "label_corpus.py"), *label_args(labeled_xlsx, run, labels)],
    }
    for job, args in jobs.items():
        counted = tmp_path / f"collectives-{job}"
        launch_job(wrapper, args, num_processes=2, env={"WEIBOLABEL_TEST_COLLECTIVES": str(counted)})
        total = exchanged(counted)
        assert len(list(counted.glob("rank-*.json"))) == 2 and total, job
        for name, counts in sorted(total.items()):
            print(
                f"{job}: {name} {counts['calls']} calls, {counts['bytes']} bytes, largest tensor "
                f"{counts['largest_tensor']} bytes (both ranks)"
            )
        # The tiny model has ~0.7 M parameters (2.8 MB of fp32 gradients): any gradient exchange would be larger.
        assert max(counts["largest_tensor"] for counts in total.values()) <= 64 * 1024, total
        assert sum(counts["bytes"] for counts in total.values()) <= 1024 * 1024, total
        assert not {"all_reduce", "reduce_scatter"} & {name for name, counts in total.items() if counts["calls"]}


# ------------------------------------------------------------------------------------------------- 11. the smoke test
@pytest.mark.slow
def test_the_gpu_smoke_test_runs_its_steps_on_the_cpu(tmp_path):
    """tests/gpu_smoke.sh --cpu (CI runs it too): the GPU checks' own code, on a tiny model, so that an import error
    or a renamed function fails here and not first on the cluster."""
    result = subprocess.run(
        ["bash", str(REPO / "tests" / "gpu_smoke.sh"), "--cpu", str(tmp_path)],
        capture_output=True,
        text=True,
        env=job_env(),
        cwd=REPO,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    for check in ("demo-no", "resume", "forward"):
        assert re.search(rf"^  PASS  {check} \(", result.stdout, re.M), result.stdout
    assert "FAIL" not in result.stdout
