"""Loading one layer's float weights under Hugging Face names."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

from llmloom.sim.weights import WeightsError, load_layer_weights

D, F = 8, 32


def gpt2_tensors(rng, prefix="h.0."):
    t = {
        "ln_1.weight": rng.normal(size=D), "ln_1.bias": rng.normal(size=D),
        "attn.c_attn.weight": rng.normal(size=(D, 3 * D)),
        "attn.c_attn.bias": rng.normal(size=3 * D),
        "attn.c_proj.weight": rng.normal(size=(D, D)), "attn.c_proj.bias": rng.normal(size=D),
        "ln_2.weight": rng.normal(size=D), "ln_2.bias": rng.normal(size=D),
        "mlp.c_fc.weight": rng.normal(size=(D, F)), "mlp.c_fc.bias": rng.normal(size=F),
        "mlp.c_proj.weight": rng.normal(size=(F, D)), "mlp.c_proj.bias": rng.normal(size=D),
    }
    return {prefix + k: v.astype(np.float32) for k, v in t.items()}


def bert_tensors(rng, prefix="encoder.layer.0."):
    t = {}
    for name in ("query", "key", "value"):
        t[f"attention.self.{name}.weight"] = rng.normal(size=(D, D))
        t[f"attention.self.{name}.bias"] = rng.normal(size=D)
    t["attention.output.dense.weight"] = rng.normal(size=(D, D))
    t["attention.output.dense.bias"] = rng.normal(size=D)
    t["attention.output.LayerNorm.weight"] = rng.normal(size=D)
    t["attention.output.LayerNorm.bias"] = rng.normal(size=D)
    t["intermediate.dense.weight"] = rng.normal(size=(F, D))     # nn.Linear: out × in
    t["intermediate.dense.bias"] = rng.normal(size=F)
    t["output.dense.weight"] = rng.normal(size=(D, F))
    t["output.dense.bias"] = rng.normal(size=D)
    t["output.LayerNorm.weight"] = rng.normal(size=D)
    t["output.LayerNorm.bias"] = rng.normal(size=D)
    return {prefix + k: v.astype(np.float32) for k, v in t.items()}


@pytest.mark.parametrize("prefix", ["", "h.0.", "transformer.h.3."])
@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
def test_gpt2_names(tmp_path, rng, prefix, fmt):
    t = gpt2_tensors(rng, prefix)
    path = tmp_path / f"w.{fmt}"
    save_file(t, str(path)) if fmt == "safetensors" else np.savez(path, **t)
    w = load_layer_weights(path, "gpt2")
    qkv = t[prefix + "attn.c_attn.weight"]
    np.testing.assert_array_equal(w["wq"], qkv[:, :D])
    np.testing.assert_array_equal(w["wv"], qkv[:, 2 * D:])
    np.testing.assert_array_equal(w["bk"], t[prefix + "attn.c_attn.bias"][D:2 * D])
    assert w["w1"].shape == (D, F) and w["w2"].shape == (F, D)


def test_bert_names_are_transposed_to_in_by_out(tmp_path, rng):
    t = bert_tensors(rng)
    save_file(t, str(tmp_path / "w.safetensors"))
    w = load_layer_weights(tmp_path / "w.safetensors", "bert")
    np.testing.assert_array_equal(w["wq"], t["encoder.layer.0.attention.self.query.weight"].T)
    assert w["w1"].shape == (D, F)
    np.testing.assert_array_equal(w["w2"], t["encoder.layer.0.output.dense.weight"].T)


def test_errors_are_one_line(tmp_path, rng):
    with pytest.raises(WeightsError, match="does not exist"):
        load_layer_weights(tmp_path / "none.safetensors", "gpt2")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(WeightsError, match="is not readable"):
        load_layer_weights(tmp_path / "bad.safetensors", "gpt2")
    t = gpt2_tensors(rng)
    del t["h.0.mlp.c_fc.bias"]
    np.savez(tmp_path / "w.npz", **t)
    with pytest.raises(WeightsError, match="lack tensor 'h.0.mlp.c_fc.bias'"):
        load_layer_weights(tmp_path / "w.npz", "gpt2")
    t = gpt2_tensors(rng)
    t["h.0.mlp.c_proj.weight"] = t["h.0.mlp.c_proj.weight"][:, :5]
    np.savez(tmp_path / "w2.npz", **t)
    with pytest.raises(WeightsError, match="w2 .* has shape 32×5; expected 32×8"):
        load_layer_weights(tmp_path / "w2.npz", "gpt2")
    both = {**gpt2_tensors(rng, "h.0."), **gpt2_tensors(rng, "h.1.")}
    np.savez(tmp_path / "two.npz", **both)
    with pytest.raises(WeightsError, match="several layers"):
        load_layer_weights(tmp_path / "two.npz", "gpt2")
    assert load_layer_weights(tmp_path / "two.npz", "gpt2", prefix="h.1.")["wq"].shape == (D, D)
    with pytest.raises(WeightsError, match="unknown architecture 'llama'"):
        load_layer_weights(tmp_path / "two.npz", "llama")
    with pytest.raises(WeightsError, match="no tensor named like"):
        load_layer_weights(tmp_path / "two.npz", "bert")


def test_non_float_tensors_the_layer_does_not_take_are_ignored(tmp_path, rng):
    # a Hugging Face BERT file holds int64 position ids beside the float weights
    t = {**bert_tensors(rng), "embeddings.position_ids": np.arange(16, dtype=np.int64)[None]}
    save_file(t, str(tmp_path / "w.safetensors"))
    w = load_layer_weights(tmp_path / "w.safetensors", "bert")
    assert w["wq"].dtype == np.float64
    t["encoder.layer.0.output.dense.bias"] = np.arange(D, dtype=np.int32)
    save_file(t, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsError, match="'encoder.layer.0.output.dense.bias' has dtype "
                                           "int32; expected a float type"):
        load_layer_weights(tmp_path / "bad.safetensors", "bert")
