"""Same seed, same data, same process count on CPU: the same metrics.json (timestamps and environment aside) and
bitwise identical fold checkpoints (helpers.outputs.assert_same_training_result, which test_faults.py also uses
for a killed and resumed run)."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from helpers.jobs import launch_job, train_args
from helpers.outputs import assert_same_training_result


def test_same_seed_same_data_gives_identical_metrics_and_checkpoints(
    tmp_path, tiny_run_dir, tiny_base_model_dir, labeled_xlsx
):
    again = tmp_path / "again"
    launch_job("train.py", train_args(labeled_xlsx, tiny_base_model_dir, again))
    assert_same_training_result(tiny_run_dir, again)
    # Training moved the weights (a run that learned nothing would be trivially reproducible).
    start = load_file(tiny_base_model_dir / "model.safetensors")
    trained = load_file(again / "fold_0" / "model.safetensors")
    shared = [name for name in start if "bert." + name in trained]
    assert shared and any(not torch.equal(start[n], trained["bert." + n]) for n in shared)
