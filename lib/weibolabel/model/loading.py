"""Tokenizer and model loading (hub name or local directory, with a fast clear offline error), checkpoints, the demo
model."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import torch
from huggingface_hub import save_torch_state_dict
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertModel,
    BertTokenizerFast,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from weibolabel.data.labels import LabelSchema
from weibolabel.model.forward import check_classify
from weibolabel.util.errors import UserError
from weibolabel.util.hub import hub_reachable

# bert-base-chinese's vocab.txt (md5 3b5b76c4aef48ecf8cb3abaafe960f09), byte-identical in PyPI's cn-clip 1.6.0: the
# demo and the tests use the real tokenizer offline.
BUNDLED_VOCAB = "bert-base-chinese-vocab.txt"
DEMO_MARKER = "weibolabel_demo_model"  # set in config.json of models built from scratch by build_demo_model


def bundled_vocab_path() -> Path:
    return Path(str(resources.files("weibolabel") / "resources" / BUNDLED_VOCAB))


def build_demo_model(
    output_dir: str | Path,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 512,
    seed: int = 0,
) -> Path:
    """A small BERT initialised from scratch (no pretraining) on the real bert-base-chinese tokenizer."""
    output_dir = Path(output_dir)  # save_pretrained creates it
    tokenizer = BertTokenizerFast(vocab=str(bundled_vocab_path()), do_lower_case=True, tokenize_chinese_chars=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=512,
    )
    setattr(config, DEMO_MARKER, True)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def is_demo_model(config) -> bool:
    return bool(getattr(config, DEMO_MARKER, False))


# What an offline cluster needs of a BERT checkpoint; the hub repo's TensorFlow and Flax weights are not read.
MODEL_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json")


def download_advice(hub_name: str, local_dir: str) -> str:
    """The commands that put a hub model where an offline machine can read it."""
    return (
        "on a machine with internet (`pip install huggingface_hub` gives the `hf` command) run\n"
        f"  hf download {hub_name} --local-dir {local_dir}\n"
        f"copy {local_dir} to the same place here and pass --model_name_or_path {local_dir}. The directory needs "
        f"{', '.join(MODEL_FILES)} (pytorch_model.bin may stand in for model.safetensors; an old download with only "
        "vocab.txt works too); to download only these, name them after the hub name."
    )


def resolve_model_source(name_or_path: str) -> tuple[str, bool]:
    """(what to pass to from_pretrained, local_files_only); fails at once when the model cannot be had."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path), True
    # A path, not a hub name (./ / ~, several '/', or an existing first folder): asking the hub would only confuse.
    first_folder = Path(name_or_path.split("/")[0]).expanduser()
    if (
        name_or_path.startswith((".", "/", "~"))
        or name_or_path.count("/") > 1
        or "\\" in name_or_path
        or ("/" in name_or_path and first_folder.is_dir())
    ):
        found = f"{path} exists but is a file, not a directory" if path.exists() else "no such directory"
        raise UserError(
            f"Model directory not found: {name_or_path} ({found}). To fill it from the Hugging Face Hub (with the "
            f"model's hub name in place of '{path.name}' if it is another), {download_advice(path.name, name_or_path)}"
        )
    try:  # already in the Hugging Face cache?
        AutoConfig.from_pretrained(name_or_path, local_files_only=True)
        return name_or_path, True
    except (OSError, ValueError):
        pass
    if not hub_reachable():
        local_dir = f"models/{name_or_path.split('/')[-1]}"
        raise UserError(
            f"'{name_or_path}' is not a local directory, and as a hub name it is not in the Hugging Face cache and "
            "the Hugging Face Hub cannot be reached from here (no network, or HF_HUB_OFFLINE=1). To use it, "
            + download_advice(name_or_path, local_dir)
        )
    return name_or_path, False


def load_model_config(name_or_path: str):
    source, local_only = resolve_model_source(name_or_path)
    return AutoConfig.from_pretrained(source, local_files_only=local_only)


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    source, local_only = resolve_model_source(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError, TypeError):
        # Old bert-base-chinese downloads hold only vocab.txt, which AutoTokenizer cannot read in transformers v5.
        vocab = Path(source) / "vocab.txt"
        if not vocab.is_file():
            raise UserError(f"No tokenizer files (tokenizer.json or vocab.txt) in {source}.") from None
        tokenizer = BertTokenizerFast(vocab=str(vocab))
    # Refuse a tokenizer that maps ordinary Chinese to [UNK] (a silent transformers v5 trap).
    ids = tokenizer("故宫的文物真好看", add_special_tokens=False)["input_ids"]
    if not ids or sum(i == tokenizer.unk_token_id for i in ids) > len(ids) // 2:
        raise UserError(f"The tokenizer in {source} maps Chinese text to [UNK]; its vocabulary is wrong or missing.")
    return tokenizer


def load_pretrained_classifier(name_or_path: str, schema: LabelSchema) -> PreTrainedModel:
    """A pretrained encoder with a freshly initialised classification head for `schema`."""
    source, local_only = resolve_model_source(name_or_path)
    model = AutoModelForSequenceClassification.from_pretrained(
        source,
        local_files_only=local_only,
        num_labels=len(schema),
        id2label=schema.id2label(),
        label2id={name: i for i, name in schema.id2label().items()},
        ignore_mismatched_sizes=True,  # a checkpoint fine-tuned on other classes can be a starting point
    )
    check_classify(model)
    return model


def save_checkpoint(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, directory: Path, schema) -> None:
    """Hugging Face format, label descriptions in config.json. Not `save_pretrained`: under torch.distributed
    transformers v5 silently writes weights on rank 0 only, and every rank saves its own folds."""
    directory.mkdir(parents=True, exist_ok=True)
    model.config.label_descriptions = {str(label.id): label.description for label in schema.labels}
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(directory)
    save_torch_state_dict(model.state_dict(), directory)
    tokenizer.save_pretrained(directory)


def load_checkpoint(directory: Path, dtype: torch.dtype | None = None) -> tuple[PreTrainedModel, LabelSchema]:
    """A fine-tuned classifier and its label schema, with clear errors for directories that are not one."""
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise UserError(f"{directory} is not a model checkpoint (no config.json).")
    config = json.loads(config_file.read_text())
    if not any(arch.endswith("ForSequenceClassification") for arch in config.get("architectures") or []):
        raise UserError(
            f"{directory} holds a {config.get('architectures')} model without a classification head; "
            "pass a fine-tuned checkpoint or a run directory of jobs/train.py."
        )
    model = AutoModelForSequenceClassification.from_pretrained(directory, local_files_only=True, dtype=dtype)
    schema = LabelSchema.from_id2label(model.config.id2label, getattr(model.config, "label_descriptions", None))
    check_classify(model)
    return model.eval(), schema


# ONNX Runtime's dynamic int8: PyTorch's own (torch.ao.quantization) is deprecated, and measured slower.
QUANTIZE_CHOICES = ("onnx-int8",)


def check_quantize(quantize: str | None, device_type: str, dtype: torch.dtype | None) -> None:
    """Refuse a --quantize the labeling cannot serve: int8 runs on CPUs, on fp32 weights, and needs `onnx`."""
    if quantize is None:
        return
    if quantize not in QUANTIZE_CHOICES:
        raise UserError(f"--quantize {quantize}: the choices are {', '.join(QUANTIZE_CHOICES)} (or leave it out).")
    if device_type != "cpu":
        raise UserError(
            f"--quantize {quantize} is for CPUs only (dynamic int8 linear layers run on CPU kernels); this process "
            f"labels on {device_type}. Leave --quantize out on GPUs: bf16 is their fast path."
        )
    if dtype not in (None, torch.float32):
        raise UserError(
            f"--quantize {quantize} quantizes fp32 weights; drop --mixed_precision "
            f"{ {torch.bfloat16: 'bf16', torch.float16: 'fp16'}.get(dtype, dtype) } (int8 replaces it on CPU)."
        )
    from weibolabel.model.onnx import check_onnxruntime

    check_onnxruntime()


def weights_digest(model) -> str:
    """A fingerprint of a model's weights: every fold must start from the same one."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()


def fit_max_length(max_length: int, max_position_embeddings: int | None) -> tuple[int, str | None]:
    """(max_length the model can take, a message if lowered): positions past its table crash (GPU: device assert)."""
    if max_position_embeddings is None or max_length <= max_position_embeddings:
        return max_length, None
    return max_position_embeddings, (
        f"--max_length {max_length} is more than the model's {max_position_embeddings} positions "
        f"(max_position_embeddings): using {max_position_embeddings}; longer texts are truncated there."
    )
