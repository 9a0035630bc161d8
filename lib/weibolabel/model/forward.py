"""The classifier's forward pass for training, validation and labeling: the model's own logits (and gradients) to float
rounding; for BERT on CPU with less work. `check_classify` compares both passes whenever a model loads and stops with
a message if a transformers release changed the modules it reads, instead of silently returning other numbers."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import transformers
from transformers import BertForSequenceClassification, PreTrainedModel

from weibolabel.util.errors import UserError


def forward_path(device_type: str) -> str:
    """Which pass `classify` runs: "custom" (the BERT shortcut) or "model" (its own). The shortcut measured faster on
    CPUs only (bench/README.md); GPUs keep the model's own until a measurement (tests/gpu_smoke.sh) says otherwise."""
    return "custom" if device_type == "cpu" else "model"


def classify(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    pack: bool | None = None,
    path: str | None = None,
) -> torch.Tensor:
    """`model(input_ids, attention_mask).logits`, for BERT on the "custom" `path` with less work: the last layer runs
    for [CLS] alone (7% of a 12-layer model's matmuls skipped) and, with `pack` (CPU default), the linear layers see
    only the real tokens; only attention sees the padded grid."""
    path = path or forward_path(input_ids.device.type)
    if not is_bert_classifier(model) or path != "custom":
        return model(input_ids=input_ids, attention_mask=attention_mask).logits
    bert = model.bert
    keep = attention_mask.bool()
    on_cpu = input_ids.device.type == "cpu"
    has_padding = not bool(keep.all()) if on_cpu else True  # a check on a GPU tensor would wait for the GPU
    pack = (on_cpu if pack is None else pack) and has_padding
    layout = _Layout.of(keep, pack)
    key_mask = keep[:, None, None, :] if has_padding else None

    hidden = layout.from_grid(bert.embeddings(input_ids=input_ids))
    *layers, last = bert.encoder.layer
    for layer in layers:
        attended = layer.attention.output(_attend(layer.attention.self, hidden, layout, key_mask), hidden)
        hidden = _feed_forward(layer, attended)
    cls = layout.cls(hidden)
    cls = last.attention.output(_attend(last.attention.self, hidden, layout, key_mask, cls_only=True), cls)
    cls = _feed_forward(last, cls)
    return model.classifier(model.dropout(bert.pooler(cls[:, None])))


@dataclass
class _Layout:
    """Where a batch's tokens are: rows of a [batch * length, hidden] grid, or packed at `tokens` of that grid."""

    batch: int
    length: int
    tokens: torch.Tensor | None  # positions of the real tokens in the flattened grid; None: the grid itself
    cls_rows: torch.Tensor  # where each row's first token ([CLS]) is among the tokens

    @classmethod
    def of(cls, keep: torch.Tensor, pack: bool) -> _Layout:  # keep: [batch, length], the real tokens
        batch, length = keep.shape
        starts = torch.arange(batch, device=keep.device) * length
        if not pack:
            return cls(batch, length, None, starts)
        tokens = keep.flatten().nonzero().squeeze(1)
        return cls(batch, length, tokens, torch.searchsorted(tokens, starts))  # each row's first real token

    def from_grid(self, states: torch.Tensor) -> torch.Tensor:  # [batch, length, hidden] -> [tokens, hidden]
        states = states.reshape(self.batch * self.length, states.shape[-1])
        return states if self.tokens is None else states.index_select(0, self.tokens)

    def to_grid(self, states: torch.Tensor) -> torch.Tensor:  # [tokens, hidden] -> [batch, length, hidden]
        if self.tokens is not None:
            grid = states.new_zeros(self.batch * self.length, states.shape[-1])
            states = grid.index_copy(0, self.tokens, states)
        return states.view(self.batch, self.length, -1)

    def cls(self, states: torch.Tensor) -> torch.Tensor:  # [tokens, hidden] -> [batch, hidden]
        return states.index_select(0, self.cls_rows)


def _attend(attention, hidden: torch.Tensor, layout: _Layout, key_mask, cls_only: bool = False) -> torch.Tensor:
    """BertSelfAttention over each row's real tokens, for every token ([tokens, hidden] out) or, with `cls_only`,
    each [CLS] ([batch, hidden] out)."""
    heads, head_size = attention.num_attention_heads, attention.attention_head_size

    def split_heads(states: torch.Tensor) -> torch.Tensor:  # [batch, positions, hidden] -> [batch, heads, ...]
        return states.unflatten(-1, (heads, head_size)).transpose(1, 2)

    queries = attention.query(layout.cls(hidden))[:, None] if cls_only else layout.to_grid(attention.query(hidden))
    context = F.scaled_dot_product_attention(
        split_heads(queries),
        split_heads(layout.to_grid(attention.key(hidden))),
        split_heads(layout.to_grid(attention.value(hidden))),
        attn_mask=key_mask,
        dropout_p=attention.dropout.p if attention.training else 0.0,
    )  # SDPA's default scale, 1/sqrt(head size), is BERT's
    context = context.transpose(1, 2).flatten(2)  # [batch, positions, hidden]
    return context[:, 0] if cls_only else layout.from_grid(context)


def _feed_forward(layer, states: torch.Tensor) -> torch.Tensor:
    return layer.output(layer.intermediate(states), states)


def is_bert_classifier(model: PreTrainedModel) -> bool:
    """A BertForSequenceClassification whose encoder `classify` reproduces (bidirectional, absolute positions)."""
    config = model.config
    return (
        isinstance(model, BertForSequenceClassification)
        and model.bert.pooler is not None
        and not config.is_decoder
        and not config.add_cross_attention
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
        and config._attn_implementation in ("sdpa", "eager")  # both compute what the SDPA call above does
    )


def check_classify(model: PreTrainedModel) -> None:
    """Stop, with what to do, if `classify`'s BERT shortcut no longer gives the model's own logits."""
    if not is_bert_classifier(model):
        return
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, model.config.vocab_size, (2, 7), generator=generator).to(device)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0  # one row with padding, so packing is exercised
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(input_ids=ids, attention_mask=mask).logits.float()
            got = classify(model, ids, mask, path="custom").float()
    finally:
        model.train(was_training)
    # Relative to the logits' size: float32 rounding stays far below 1e-4 of it, bf16/fp16 below 5e-2.
    tolerance = 1e-4 if next(model.parameters()).dtype == torch.float32 else 5e-2
    difference = float((got - expected).abs().max())
    if not difference <= tolerance * float(expected.abs().max()) + 1e-7:
        raise UserError(
            f"weibolabel's BERT forward differs from the model's own by {difference:.3g} under transformers "
            f"{transformers.__version__}: this release changed the BERT modules it reads. Install a transformers "
            "version the project tests (pyproject.toml) and report the version that broke it."
        )
