"""Tokenizer and model loading (hub name or local directory, with a fast clear offline error), the demo model, and
the classifier's forward pass."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from huggingface_hub import save_torch_state_dict
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    BertTokenizerFast,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.masking_utils import create_bidirectional_mask

from weibolabel.errors import UserError
from weibolabel.labels import LabelSchema

# bert-base-chinese's vocab.txt (21,128 entries, md5 3b5b76c4aef48ecf8cb3abaafe960f09), as shipped byte-identical
# in PyPI's cn-clip 1.6.0 (cn_clip/clip/vocab.txt). It lets the demo and the tests use the real tokenizer offline.
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
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
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


def resolve_model_source(name_or_path: str) -> tuple[str, bool]:
    """(what to pass to from_pretrained, local_files_only); fails at once when the model cannot be had."""
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser()), True
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise UserError(f"Model directory not found: {name_or_path}")
    try:  # already in the Hugging Face cache?
        AutoConfig.from_pretrained(name_or_path, local_files_only=True)
        return name_or_path, True
    except (OSError, ValueError):
        pass
    if not _hub_reachable():
        raise UserError(
            f"'{name_or_path}' is not a local directory and the Hugging Face Hub cannot be reached from here "
            "(no network, or HF_HUB_OFFLINE=1). On a machine with internet run\n"
            f"  huggingface-cli download {name_or_path} --local-dir models/{name_or_path.split('/')[-1]}\n"
            f"copy that directory here and pass --model_name_or_path models/{name_or_path.split('/')[-1]}"
        )
    return name_or_path, False


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


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
    check_tokenizer(tokenizer, source)
    return tokenizer


def check_tokenizer(tokenizer: PreTrainedTokenizerBase, source: str) -> None:
    """Refuse a tokenizer that maps ordinary Chinese to [UNK] (a silent transformers v5 trap)."""
    ids = tokenizer("故宫的文物真好看", add_special_tokens=False)["input_ids"]
    if not ids or sum(i == tokenizer.unk_token_id for i in ids) > len(ids) // 2:
        raise UserError(f"The tokenizer in {source} maps Chinese text to [UNK]; its vocabulary is wrong or missing.")


def load_pretrained_classifier(name_or_path: str, schema: LabelSchema) -> PreTrainedModel:
    """A pretrained encoder with a freshly initialised classification head for `schema`."""
    source, local_only = resolve_model_source(name_or_path)
    return AutoModelForSequenceClassification.from_pretrained(
        source,
        local_files_only=local_only,
        num_labels=len(schema),
        id2label=schema.id2label(),
        label2id={name: i for i, name in schema.id2label().items()},
        ignore_mismatched_sizes=True,  # a checkpoint fine-tuned on other classes can be a starting point
    )


def save_checkpoint(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, directory: Path, schema) -> None:
    """Hugging Face format, loadable by AutoModelForSequenceClassification; label descriptions in config.json.

    Written with huggingface_hub rather than `model.save_pretrained`: once torch.distributed is initialised,
    transformers v5 silently writes weights on global rank 0 only, and here every rank saves its own folds."""
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
    return model.eval(), schema


def weights_digest(model) -> str:
    """A fingerprint of a model's weights: every fold must start from the same one."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------- forward
def classify(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The classifier's logits. For BERT the last encoder layer runs for [CLS] alone, the one position its
    classification head reads: keys and values still come from every token, but the query, attention output and
    feed-forward of the other positions, 10/12 of that layer's matmuls (7% of a 12-layer model's), are skipped.
    The logits equal the model's own forward to float rounding (tested); other architectures run that forward."""
    if not _cls_only_last_layer_applies(model):
        return model(input_ids=input_ids, attention_mask=attention_mask).logits
    bert = model.bert
    hidden = bert.embeddings(input_ids=input_ids)
    mask = create_bidirectional_mask(config=bert.config, inputs_embeds=hidden, attention_mask=attention_mask)
    *layers, last = bert.encoder.layer
    for layer in layers:
        hidden = layer(hidden, mask)
    attention = last.attention.self
    batch = hidden.shape[0]
    heads, head_size = attention.num_attention_heads, attention.attention_head_size

    def split_heads(states: torch.Tensor) -> torch.Tensor:  # [batch, positions, hidden] -> [batch, heads, ...]
        return states.view(batch, -1, heads, head_size).transpose(1, 2)

    cls = hidden[:, :1]
    context = F.scaled_dot_product_attention(
        split_heads(attention.query(cls)),
        split_heads(attention.key(hidden)),
        split_heads(attention.value(hidden)),
        attn_mask=None if mask is None else mask[:, :, :1],  # the [CLS] query's row of the mask
        dropout_p=attention.dropout.p if model.training else 0.0,
        scale=attention.scaling,
    )
    cls = last.attention.output(context.transpose(1, 2).reshape(batch, 1, heads * head_size), cls)
    cls = last.output(last.intermediate(cls), cls)
    return model.classifier(model.dropout(bert.pooler(cls)))


def _cls_only_last_layer_applies(model: PreTrainedModel) -> bool:
    config = model.config
    return (
        isinstance(model, BertForSequenceClassification)
        and model.bert.pooler is not None
        and not config.is_decoder
        and not config.add_cross_attention
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
        and config._attn_implementation in ("sdpa", "eager")  # masks the SDPA call above reads as they are
    )
