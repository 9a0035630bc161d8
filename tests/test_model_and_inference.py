"""Tokenizer and model loading (bundled vocab, offline failures), identical fold starts, checkpoint round trips,
and the scoring path: encoding flags, token-budget batching, padding that does not change results."""

from __future__ import annotations

import hashlib
import json
import shutil
import time

import numpy as np
import pytest
import torch
from accelerate.utils import set_seed
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from weibolabel.data.labels import LabelSchema
from weibolabel.model.forward import check_classify, classify
from weibolabel.model.inference import encode, length_batches, predict_probs
from weibolabel.model.loading import (
    bundled_vocab_path,
    load_checkpoint,
    load_pretrained_classifier,
    load_tokenizer,
)
from weibolabel.util.errors import UserError

from helpers.data import NAMES

CHINESE = ["故宫的文物真好看", "越王勾践剑好锋利", "中华文化博大精深"]


# --------------------------------------------------------------------------------------------- tokenizer
def test_bundled_vocab_is_bert_base_chinese():
    path = bundled_vocab_path()
    content = path.read_bytes()
    assert hashlib.md5(content).hexdigest() == "3b5b76c4aef48ecf8cb3abaafe960f09"
    # Count "\n" only: some vocabulary entries are characters that str.splitlines() treats as line breaks.
    assert content.count(b"\n") == 21128
    assert len(BertTokenizerFast(vocab=str(path)).vocab) == 21128


def test_load_tokenizer_gives_real_ids_for_chinese(tiny_base_model_dir):
    tokenizer = load_tokenizer(str(tiny_base_model_dir))
    reference = BertTokenizerFast(vocab=str(bundled_vocab_path()))
    for text in CHINESE:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert len(ids) == len(text) + 2  # one piece per character, plus [CLS] and [SEP]
        assert ids == reference(text)["input_ids"]


def test_directory_with_only_vocab_txt_loads(tmp_path):
    shutil.copy(bundled_vocab_path(), tmp_path / "vocab.txt")
    tokenizer = load_tokenizer(str(tmp_path))
    reference = BertTokenizerFast(vocab=str(bundled_vocab_path()))
    for text in CHINESE:
        assert tokenizer(text)["input_ids"] == reference(text)["input_ids"]


def test_unreachable_hub_name_fails_fast_with_a_local_path_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(UserError) as error:
        load_tokenizer("bert-base-chinese-not-cached")
    assert time.monotonic() - started < 5
    message = str(error.value)
    assert "--model_name_or_path" in message
    assert "local" in message
    assert "bert-base-chinese-not-cached" in message


def test_missing_local_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_tokenizer(str(tmp_path / "no-such-model"))


# --------------------------------------------------------------------------------------------- fold starts
def test_every_fold_starts_from_identical_weights(tiny_base_model_dir):
    schema = LabelSchema()
    set_seed(7)
    first = load_pretrained_classifier(str(tiny_base_model_dir), schema).state_dict()
    torch.rand(10)  # whatever ran in between (another fold's training) must not matter
    set_seed(7)
    second = load_pretrained_classifier(str(tiny_base_model_dir), schema).state_dict()
    assert first.keys() == second.keys()
    assert any("classifier" in key for key in first)
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0, msg=key)


def test_fold_results_record_the_same_initial_weights(tiny_run_dir):
    results = [json.loads(p.read_text()) for p in sorted(tiny_run_dir.glob("fold_*/fold_result.json"))]
    assert len(results) == 3
    digests = {r["initial_weights_sha256"] for r in results}
    assert len(digests) == 1
    assert len(digests.pop()) == 64


# --------------------------------------------------------------------------------------------- checkpoints
def test_fold_checkpoint_reloads_with_transformers_to_identical_logits(tiny_run_dir):
    directory = tiny_run_dir / "fold_0"
    plain = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    ours, schema = load_checkpoint(directory)
    assert schema.names == NAMES
    assert plain.config.id2label == dict(enumerate(NAMES))
    assert plain.config.label2id == {name: i for i, name in enumerate(NAMES)}
    tokenizer = load_tokenizer(str(directory))
    batch = tokenizer([*CHINESE, "转发微博"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = plain(**batch).logits
        got = ours(**batch).logits
    assert expected.shape == (4, 4)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_base_model_without_head_is_refused_as_checkpoint(tiny_base_model_dir):
    with pytest.raises(UserError, match="without a classification head"):
        load_checkpoint(tiny_base_model_dir)


# --------------------------------------------------------------------------------------------- forward
def padded_batch(vocab_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Six rows of different lengths, right-padded with id 0, and their attention mask."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab_size, (6, 13), generator=generator)
    mask = torch.ones_like(ids)
    for row, length in enumerate([13, 9, 4, 13, 2, 7]):
        ids[row, length:], mask[row, length:] = 0, 0
    return ids, mask


def tiny_bert(attention: str, dropout: float = 0.1) -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, num_labels=4,
    )  # fmt: skip
    torch.manual_seed(0)
    return BertForSequenceClassification._from_config(config, attn_implementation=attention)


@pytest.mark.parametrize("pack", [True, False])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_classify_gives_the_models_logits_with_less_work(attention, pack):
    model = tiny_bert(attention).eval()
    ids, mask = padded_batch(model.config.vocab_size)
    layers = model.bert.encoder.layer
    seen = []  # what enters the feed-forward of the first and the last layer
    for layer in (layers[0], layers[-1]):
        layer.intermediate.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape[:-1])))
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).logits
        seen.clear()
        got = classify(model, ids, mask, pack=pack)
        # Packed: the real tokens alone, else the padded grid; the last layer: one [CLS] per row.
        assert seen == [(int(mask.sum()) if pack else ids.numel(),), (6,)]
        # Rows without padding take the grid, whatever `pack` says.
        torch.testing.assert_close(classify(model, ids, torch.ones_like(ids), pack=pack), model(input_ids=ids).logits)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pack", [True, False])
def test_classify_gives_the_models_gradients_in_training(pack):
    model = tiny_bert("sdpa", dropout=0.0).train()  # no dropout, so both passes compute the same function
    ids, mask = padded_batch(model.config.vocab_size, seed=1)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])

    def gradients(logits):
        model.zero_grad()
        torch.nn.functional.cross_entropy(logits, labels).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    expected = gradients(model(input_ids=ids, attention_mask=mask).logits)
    got = gradients(classify(model, ids, mask, pack=pack))
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_classify_trains_with_dropout_reproducibly():
    model = tiny_bert("sdpa", dropout=0.1).train()
    ids, mask = padded_batch(model.config.vocab_size, seed=2)
    torch.manual_seed(3)
    first = classify(model, ids, mask)
    torch.manual_seed(3)
    torch.testing.assert_close(classify(model, ids, mask), first, rtol=0, atol=0)
    with torch.no_grad():
        assert not torch.allclose(first, model.eval()(input_ids=ids, attention_mask=mask).logits)  # dropout acted


def test_classify_runs_other_architectures_as_they_are():
    config = DistilBertConfig(vocab_size=64, dim=32, n_layers=2, n_heads=4, hidden_dim=48, num_labels=4)
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(config).eval()
    ids, mask = padded_batch(config.vocab_size)
    with torch.inference_mode():
        torch.testing.assert_close(classify(model, ids, mask), model(input_ids=ids, attention_mask=mask).logits)


def test_check_classify_passes_on_every_supported_bert_and_stops_when_the_internals_change(monkeypatch):
    for attention in ("sdpa", "eager"):
        check_classify(tiny_bert(attention).train())  # a training-mode model is checked in eval mode
    model = tiny_bert("sdpa").eval()
    # What a transformers release that changed BERT's internals looks like to classify: a module it reads computes
    # something else than the model's own forward uses (here: the first layer's feed-forward input is doubled).
    monkeypatch.setattr(
        "weibolabel.model.forward._feed_forward",
        lambda layer, states: layer.output(layer.intermediate(2 * states), states),
    )
    with pytest.raises(UserError, match=r"differs from the model's own .* under transformers"):
        check_classify(model)
    assert not model.training
    check_classify(DistilBertForSequenceClassification(DistilBertConfig(vocab_size=64, dim=32, n_layers=1, n_heads=4)))


# --------------------------------------------------------------------------------------------- scoring
def test_encode_flags_truncation_and_unknown_only(tiny_base_model_dir):
    tokenizer = load_tokenizer(str(tiny_base_model_dir))
    texts = ["故宫的文物真好看", "中华文化" * 100, "😭🙏🥺", "好看😭"]
    encoded = encode(tokenizer, texts, max_length=32)
    assert encoded.truncated.tolist() == [False, True, False, False]
    assert encoded.unk_only.tolist() == [False, False, True, False]
    assert encoded.lengths.tolist()[1] == 32
    assert encoded.lengths.tolist()[0] == 10
    assert encode(tokenizer, [], 32).input_ids == []


def test_length_batches_cover_every_index_once_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=500)
    batches = length_batches(lengths, batch_size=32, max_tokens=1024)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(500))
    for batch in batches:
        assert 1 <= len(batch) <= 32
        assert len(batch) * lengths[batch].max() <= 1024
    # A single row longer than the budget still gets its own batch.
    assert [b.tolist() for b in length_batches(np.array([5000, 3]), 8, 1024)] == [[0], [1]]


def test_length_batches_bound_the_padding_of_every_batch():
    # A Weibo-like mix: mostly short, a long tail. Unbounded, 1,000 rows in 256-row batches are ~20% padding.
    lengths = np.minimum(np.random.default_rng(1).lognormal(3.3, 0.8, size=1000).astype(int) + 3, 128)
    unbounded = length_batches(lengths, batch_size=256, max_tokens=16384, max_padding=1.0)
    bounded = length_batches(lengths, batch_size=256, max_tokens=16384, max_padding=0.1)
    assert sorted(np.concatenate(bounded).tolist()) == list(range(1000))

    def padding(batches):
        padded = sum(len(b) * lengths[b].max() for b in batches)
        return 1 - lengths.sum() / padded

    assert padding(unbounded) > 0.15
    assert padding(bounded) < 0.05
    for batch in bounded:
        assert lengths[batch].min() >= 0.9 * lengths[batch].max()
        assert len(batch) <= 256 and len(batch) * lengths[batch].max() <= 16384
    # With min_tokens (CPU), a batch the bound would leave small takes the next rows, up to the budget.
    floored = length_batches(lengths, batch_size=256, max_tokens=16384, min_tokens=4096)
    assert sorted(np.concatenate(floored).tolist()) == list(range(1000))
    assert len(floored) < len(bounded)
    for batch in floored[:-1]:  # the last holds what is left
        padded = len(batch) * lengths[batch].max()
        assert padded <= 16384 and len(batch) <= 256
        assert padded >= 4096 or lengths[batch].min() >= 0.9 * lengths[batch].max() or len(batch) == 256


def test_batched_scoring_equals_one_at_a_time(tiny_run_dir):
    model, _ = load_checkpoint(tiny_run_dir / "fold_0")
    tokenizer = load_tokenizer(str(tiny_run_dir / "fold_0"))
    texts = ["好", "故宫的文物真好看", "中华文化博大精深，传统文化需要传承" * 3, "转发微博", "兵马俑好震撼！！！"]
    input_ids = encode(tokenizer, texts, max_length=64).input_ids
    assert len({len(ids) for ids in input_ids}) == len(texts)  # all lengths differ, so batches carry padding
    batched = predict_probs([model], input_ids, tokenizer.pad_token_id, batch_size=8)
    single = np.concatenate([predict_probs([model], [ids], tokenizer.pad_token_id) for ids in input_ids])
    assert batched.shape == (len(texts), 4)
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(batched.sum(axis=1), 1.0, atol=1e-5)
    # An ensemble of the same model twice is that model.
    np.testing.assert_allclose(
        predict_probs([model, model], input_ids, tokenizer.pad_token_id, batch_size=2), batched, atol=1e-5
    )
    # The CPU floor (CPU_MIN_TOKENS) puts these five short texts in one batch; min_tokens=0 leaves the 10% padding
    # bound alone, which cuts four batches here. Same probabilities either way.
    sizes = {None: [], 0: []}
    for floor, seen in sizes.items():
        probs = predict_probs([model], input_ids, tokenizer.pad_token_id, min_tokens=floor, on_batch=seen.append)
        np.testing.assert_allclose(probs, batched, atol=1e-5)
    assert sizes == {None: [len(texts)], 0: [1, 2, 1, 1]}


def test_quantize_is_refused_where_it_cannot_serve(tiny_run_dir):
    from weibolabel.model.inference import load_ensemble

    for device, dtype, message in [
        ("cuda", None, "CPUs only"),
        ("cpu", torch.bfloat16, "drop --mixed_precision bf16"),
    ]:
        with pytest.raises(UserError, match=message):
            load_ensemble(tiny_run_dir, torch.device(device), dtype, quantize="onnx-int8")
    with pytest.raises(UserError, match="the choices are onnx-int8"):
        load_ensemble(tiny_run_dir, torch.device("cpu"), quantize="int8")


def test_quantize_onnx_int8_labels_close_to_fp32_and_refuses_a_wrong_export_or_a_missing_package(
    tiny_run_dir, monkeypatch, tmp_path
):
    import importlib.util

    import weibolabel.model.onnx as onnx_int8
    from weibolabel.model.inference import label_texts, load_ensemble

    monkeypatch.setenv("WEIBOLABEL_CACHE", str(tmp_path / "empty"))  # every load below exports
    texts = ["好", "故宫的文物真好看", "中华文化博大精深，传统文化需要传承" * 3, "转发微博", "兵马俑好震撼！！！", ""]
    fp32 = label_texts(load_ensemble(tiny_run_dir, torch.device("cpu")), texts, 64)
    quantized = load_ensemble(tiny_run_dir, torch.device("cpu"), quantize="onnx-int8")
    assert all(isinstance(m, onnx_int8.OnnxClassifier) for m in quantized.models) and len(quantized.models) == 3
    int8 = label_texts(quantized, texts, 64)
    assert int8["status"].tolist() == fp32["status"].tolist()
    ok = fp32["status"] == "ok"
    difference = np.abs(np.stack(int8["probs"][ok]) - np.stack(fp32["probs"][ok])).max()
    assert 0 < difference < 0.05  # int8 rounding, not another model (an unmasked or unexported input moves more)
    # A batch of one and a batch with padding give the same probabilities (the mask reaches the graph).
    one = label_texts(quantized, texts[2:3], 64)
    np.testing.assert_allclose(np.stack(one["probs"]), np.stack(int8["probs"][2:3]), atol=2e-3)
    # An export that computes something else stops the job instead of labeling with it.
    monkeypatch.setenv("WEIBOLABEL_CACHE", str(tmp_path / "another"))
    monkeypatch.setattr(onnx_int8, "PROBE_TOLERANCE", -1.0)
    with pytest.raises(UserError, match=r"fold_0: the ONNX export computes other logits than the PyTorch model"):
        load_ensemble(tiny_run_dir, torch.device("cpu"), quantize="onnx-int8")
    # A model the exporter cannot trace: a clear error naming the checkpoint and what to use instead.
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("unsupported op")))
    with pytest.raises(
        UserError,
        match=r"fold_0: torch .* could not export this BertForSequenceClassification to "
        r"ONNX \(RuntimeError: unsupported op\)\. Label without --quantize \(fp32\)\.",
    ):
        load_ensemble(tiny_run_dir, torch.device("cpu"), quantize="onnx-int8")
    # Without the onnx extra: refused before any model loads, with the install command.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a)
    )
    with pytest.raises(UserError, match=r"needs onnxruntime: pip install -e '\.\[onnx\]'"):
        load_ensemble(tiny_run_dir, torch.device("cpu"), quantize="onnx-int8")


def test_onnx_int8_graphs_are_cached_by_weights_and_releases_and_a_bad_cache_costs_only_time(
    tiny_run_dir, monkeypatch, tmp_path
):
    import weibolabel.model.onnx as onnx_int8
    from weibolabel.model.inference import label_texts, load_ensemble
    from weibolabel.model.loading import load_checkpoint

    monkeypatch.setenv("WEIBOLABEL_CACHE", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "onnx-int8"
    assert onnx_int8.cache_directory() == cache
    texts = ["好", "故宫的文物真好看", "中华文化博大精深，传统文化需要传承" * 3, "转发微博", "兵马俑好震撼！！！"]

    def load():
        ensemble = load_ensemble(tiny_run_dir, torch.device("cpu"), quantize="onnx-int8")
        return [m.origin for m in ensemble.models], np.stack(label_texts(ensemble, texts, 64)["probs"])

    origins, first = load()
    assert origins == ["exported"] * 3
    graphs = sorted(cache.iterdir())
    assert len(graphs) == 3 and all(g.suffix == ".onnx" and g.stat().st_size > 0 for g in graphs)  # nothing partial
    # The second load reads the three graphs back, exports nothing, and labels exactly as the first.
    real_export = torch.onnx.export
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: (_ for _ in ()).throw(AssertionError("exported")))
    origins, second = load()
    assert origins == ["cache"] * 3
    np.testing.assert_array_equal(second, first)
    # A damaged graph is made again and replaced; the others are still read.
    monkeypatch.setattr(torch.onnx, "export", real_export)
    graphs[0].write_bytes(b"not an onnx graph")
    origins, third = load()
    assert sorted(origins) == ["cache", "cache", "exported"]
    np.testing.assert_array_equal(third, first)
    assert sorted(cache.iterdir()) == graphs and graphs[0].stat().st_size > 1000
    # The key follows the weights and the releases: a retrained model or another onnxruntime is exported anew.
    model, _ = load_checkpoint(tiny_run_dir / "fold_0")
    key = onnx_int8.graph_key(model)
    assert onnx_int8.graph_key(load_checkpoint(tiny_run_dir / "fold_0")[0]) == key
    with torch.no_grad():
        model.classifier.bias[0] += 1e-3
    assert onnx_int8.graph_key(model) != key
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "__version__", "0.0.1")
    assert onnx_int8.graph_key(load_checkpoint(tiny_run_dir / "fold_0")[0]) != key
    monkeypatch.undo()
    # A cache that cannot be written (here a file where its folder should be): the export is used all the same.
    blocker = tmp_path / "blocked"
    blocker.write_text("")
    monkeypatch.setenv("WEIBOLABEL_CACHE", str(blocker))
    origins, fourth = load()
    assert all(o.startswith("exported, not cached: ") for o in origins)
    np.testing.assert_array_equal(fourth, first)
