"""`--quantize onnx-int8`: a checkpoint's classifier run by ONNX Runtime, its linear layers dynamically quantized to
int8 (the `onnx` extra: `pip install -e '.[onnx]'`). Per checkpoint, unless the graph cache holds it (about 16 s for
a bert-base fold on 2 cores):
1. export with torch.onnx's TorchScript exporter and eager attention, the graph ONNX Runtime's BERT fusions recognise
   (the dynamo exporter's SDPA graph was not fused, and ran 1.1-1.2x slower);
2. check the fp32 graph against PyTorch on a padded probe batch: a release that exports another function stops;
3. quantize dynamically (int8 weights per output channel); 4. load on the CPU with all graph optimisations.
The cache names a graph by a hash of weights, configuration, releases and opset: re-runs, the job's other processes
and the next corpus read it back in under a second. Graphs are renamed into place whole; an unreadable one is
exported again, and a cache that cannot be written costs only the time.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from weibolabel.util.errors import UserError
from weibolabel.util.files import atomic_path

if TYPE_CHECKING:  # imported where used: the labeling job checks its options with this module before heavy imports
    import torch
    from transformers import PreTrainedModel

INSTALL_HINT = "pip install -e '.[onnx]' (onnxruntime and onnx)"
OPSET = 17
PROBE_TOLERANCE = 1e-3  # largest logit difference between the exported fp32 graph and PyTorch on the probe batch
CACHE_ENV = "WEIBOLABEL_CACHE"


def check_onnxruntime() -> None:
    """Refuse `--quantize onnx-int8` at once, before any model loads, where onnxruntime or onnx is missing."""
    missing = [name for name in ("onnxruntime", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"--quantize onnx-int8 needs {' and '.join(missing)}: {INSTALL_HINT}.")


def cache_directory() -> Path:
    """$WEIBOLABEL_CACHE, else $XDG_CACHE_HOME/weibolabel, else ~/.cache/weibolabel; `onnx-int8/` there."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "weibolabel"
    return Path(os.environ.get(CACHE_ENV) or default).expanduser() / "onnx-int8"


def graph_key(model: PreTrainedModel) -> str:
    """What `model`'s quantized graph depends on, hashed: weights, configuration, releases, opset."""
    import onnx
    import onnxruntime
    import torch
    import transformers

    digest = hashlib.sha256()
    releases = (torch.__version__, transformers.__version__, onnx.__version__, onnxruntime.__version__, OPSET)
    digest.update(repr(releases).encode())
    digest.update(model.config.to_json_string().encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().contiguous().numpy().data)  # about 0.3 s for bert-base's 440 MB
    return digest.hexdigest()[:32]


class OnnxClassifier:
    """An ONNX classifier that `predict_probs` calls as a transformers model (`.logits` out). `origin`: "cache",
    "exported", or "exported, not cached: <why>"."""

    def __init__(self, path: Path, config, origin: str):
        import onnxruntime as ort
        import torch

        self.device = torch.device("cpu")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: the fused-graph notices are not the user's business
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self.config = config
        self.origin = origin

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        import torch
        from transformers.modeling_outputs import SequenceClassifierOutput

        feed = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
        return SequenceClassifierOutput(logits=torch.from_numpy(self.session.run(["logits"], feed)[0]))


def quantize_onnx_int8(model: PreTrainedModel, name: str) -> OnnxClassifier:
    """`model` (on the CPU) exported, checked, quantized and loaded as above, through the graph cache; `name` (its
    checkpoint) names it in errors."""
    check_onnxruntime()
    model = model.float().eval()
    cached = cache_directory() / f"{graph_key(model)}.onnx"
    if cached.is_file():
        with contextlib.suppress(Exception):  # a truncated or damaged file: made again below, and replaced
            return OnnxClassifier(cached, model.config, origin="cache")
    with tempfile.TemporaryDirectory(prefix="weibolabel-onnx-") as tmp:
        int8 = export_and_quantize(model, name, Path(tmp))
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cached) as partial:
                shutil.copyfile(int8, partial)
        except OSError as error:  # a full or read-only cache: this run pays the export, and labels all the same
            return OnnxClassifier(int8, model.config, origin=f"exported, not cached: {error}")
        return OnnxClassifier(cached, model.config, origin="exported")


def export_and_quantize(model: PreTrainedModel, name: str, directory: Path) -> Path:
    """Steps 1-3 above: `model`'s int8 graph, written in `directory`."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model.set_attn_implementation("eager")
    ids = torch.tensor([[101, 2769, 4263, 872, 102, 0, 0], [101, 3300, 1690, 1071, 7231, 749, 102]])
    mask = (ids != 0).long()
    fp32, int8 = directory / "model.onnx", directory / "model-int8.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        reference = model(input_ids=ids, attention_mask=mask).logits.numpy()
        try:
            torch.onnx.export(
                model,
                (ids, mask),
                str(fp32),
                dynamo=False,
                input_names=["input_ids", "attention_mask"],
                output_names=["logits"],
                dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}},
                opset_version=OPSET,
            )
        except Exception as error:  # an architecture or a torch release the exporter cannot serve
            raise UserError(
                f"{name}: torch {torch.__version__} could not export this {type(model).__name__} to ONNX "
                f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). Label without "
                "--quantize (fp32)."
            ) from None
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    logits = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(["logits"], feed)[0]
    difference = float(np.abs(logits - reference).max())
    if not difference <= PROBE_TOLERANCE:
        raise UserError(
            f"{name}: the ONNX export computes other logits than the PyTorch model (largest difference "
            f"{difference:.2g} on a probe batch; torch {torch.__version__}, onnxruntime {ort.__version__}). "
            "Label without --quantize onnx-int8 (fp32)."
        )
    # onnxruntime.quantization logs 14 lines a layer on the root logger; the job's own loggers are named.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
    return int8
