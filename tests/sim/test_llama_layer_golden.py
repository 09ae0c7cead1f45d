"""The LLaMA-class layer's golden models (`sim/golden/layers.py` walking `hw/layers/llama.py`)
and its quantisation (`sim/quantize.py`): the float trace is the float reference's block, the
bit-exact layer holds to it, and decode with the KV cache is prefill's last row, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.layers.config import LayerConfig
from llmloom.sim.checkpoint import LlamaSpec
from llmloom.sim.golden.layers import (
    cosine,
    dequantize,
    layer_bitexact,
    layer_bitexact_trace,
    layer_float_trace,
)
from llmloom.sim.golden.llama import KVCache, LlamaFloat
from llmloom.sim.quantize import calibrate, quantize_input, quantize_layer, quantize_placeholder

D, H, KV, F, BASE = 32, 4, 2, 48, 500.0


def _weights(rng, d=D, kv=KV, f=F):
    dkv = kv * d // H
    return {"ln1_g": 1 + 0.1 * rng.normal(size=d), "ln2_g": 1 + 0.1 * rng.normal(size=d),
            "wq": rng.normal(0, d ** -0.5, (d, d)), "wk": rng.normal(0, d ** -0.5, (d, dkv)),
            "wv": rng.normal(0, d ** -0.5, (d, dkv)), "wo": rng.normal(0, d ** -0.5, (d, d)),
            "w_gate": rng.normal(0, d ** -0.5, (d, f)), "w_up": rng.normal(0, d ** -0.5, (d, f)),
            "w_down": rng.normal(0, f ** -0.5, (f, d))}


def _reference(w):
    """The float reference's block 0 with weights ``w`` (LlamaFloat without a file)."""
    ref = object.__new__(LlamaFloat)
    ref.spec = LlamaSpec(layers=1, d_model=D, heads=H, kv_heads=KV, d_ff=F, vocab=2,
                         context=64, rope_base=BASE, rms_eps=1e-5)
    ref.dtype, ref.num_layers, ref.layers = np.dtype(np.float64), 1, [w]
    return ref


def test_float_trace_is_the_float_reference(rng):
    rng = np.random.default_rng(rng)
    w = _weights(rng)
    x = rng.normal(size=(7, D))
    ref = _reference(w)
    want = ref.layer(0, x, 0, KVCache(1))
    t = layer_float_trace(x, w, "llama", H, kv_heads=KV, rope_base=BASE)
    np.testing.assert_allclose(t["y"], want, rtol=0, atol=1e-9)
    assert t["kr"].shape == (7, KV * D // H) and t["p"].shape == (7, F)
    # positions from pos: rows 3.. of a prefill are the float reference's second call
    cache = KVCache(1)
    ref.layer(0, x[:3], 0, cache)
    later = ref.layer(0, x[3:], 3, cache)
    qr = layer_float_trace(x[3:], w, "llama", H, kv_heads=KV, rope_base=BASE, pos=3)["qr"]
    np.testing.assert_allclose(qr, layer_float_trace(x, w, "llama", H, kv_heads=KV,
                                                     rope_base=BASE)["qr"][3:], atol=1e-12)
    assert later.shape == (4, D)


@pytest.mark.parametrize("scheme", ["static", "dynamic"])
def test_bitexact_holds_to_float(rng, scheme):
    rng = np.random.default_rng(rng)
    w = _weights(rng)
    x = rng.normal(size=(12, D))
    cfg = LayerConfig(arch="llama", d_model=D, heads=H, kv_heads=KV, d_ff=F, seq=16,
                      rope_base=BASE, scheme=scheme)
    layer = calibrate(cfg, w, x)
    cfg = layer.config
    assert cfg.numbers.q.bias == (0,) * D and cfg.numbers.ln1.beta is None
    t, cache = layer_bitexact_trace(cfg, layer.weights, quantize_input(x, cfg.x_scale,
                                                                       cfg.width("x")))
    assert cache.k.shape == (12, KV * D // H)
    y = dequantize(t["r2"], cfg.y_scale)
    ref = layer_float_trace(x, w, "llama", H, kv_heads=KV, rope_base=BASE)["y"]
    assert cosine(y, ref) > 0.995
    # the same through quantize_layer, from the weights' own dimensions
    cfg2, weights2, _ = quantize_layer(w, x, "llama", H, seq=16, kv_heads=KV, rope_base=BASE,
                                       scheme=scheme)
    assert cfg2 == cfg and weights2.matrix("down").shape == (F, D)


@pytest.mark.parametrize("scheme", ["static", "dynamic"])
def test_decode_after_prefill_is_prefill(rng, scheme):
    """Decode of row l−1 after a prefill of l−1 rows is, bit for bit, the last row of a prefill
    of l rows (RoPE at the row's position, the rotated keys cached)."""
    rng = np.random.default_rng(rng)
    w = _weights(rng)
    x = rng.normal(size=(9, D))
    cfg = LayerConfig(arch="llama", d_model=D, heads=H, kv_heads=KV, d_ff=F, seq=12,
                      rope_base=BASE, scheme=scheme)
    layer = calibrate(cfg, w, x)
    cfg, weights = layer.config, layer.weights
    xq = quantize_input(x, cfg.x_scale, cfg.width("x"))
    full, full_cache = layer_bitexact(cfg, weights, xq)
    for l in (1, 5, 9):
        _, cache = layer_bitexact(cfg, weights, xq[:l - 1]) if l > 1 else (None, None)
        y, cache = layer_bitexact(cfg, weights, xq[l - 1:l], mode="decode", cache=cache)
        np.testing.assert_array_equal(y[0], full[l - 1])
    np.testing.assert_array_equal(cache.k, full_cache.k)
    np.testing.assert_array_equal(cache.v, full_cache.v)
    with pytest.raises(ValueError, match="KV cache overflow"):
        for _ in range(4):
            _, cache = layer_bitexact(cfg, weights, xq[:1], mode="decode", cache=cache)


def test_placeholder_llama_layer():
    cfg = LayerConfig(arch="llama", d_model=D, heads=H, kv_heads=KV, d_ff=F, seq=8)
    layer = quantize_placeholder(cfg)
    assert layer.config.calibrated and set(layer.weights.to_dict()) == {
        "wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"}
