"""Whole-layer golden models: the bit-exact GPT-2 block and BERT layer against float64
(cosine >= 0.99, the issue's bar; max error stated), decode == prefill bit for bit, the KV
cache contract, and the float trace against the float references."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.sim.golden.layers import (
    KVCache,
    bert_layer_float,
    cosine,
    dequantize,
    gpt2_block_float,
    layer_bitexact,
    layer_float_trace,
)
from llmloom.sim.quantize import quantize_input, quantize_layer, run_layer_float_and_int

ARCHS = ["gpt2", "bert"]
D, HEADS, D_FF, SEQ = 64, 4, 256, 16


def random_weights(rng, d=D, f=D_FF):
    """A layer with the usual initialisation scale (std 1/sqrt(fan_in)), biases and norm
    parameters around their identity values."""
    w = {n: rng.normal(scale=d ** -0.5, size=(d, d)) for n in ("wq", "wk", "wv", "wo")}
    w |= {n: rng.normal(scale=0.1, size=d) for n in ("bq", "bk", "bv", "bo", "b2", "ln1_b",
                                                     "ln2_b")}
    w |= {"ln1_g": 1 + rng.normal(scale=0.1, size=d), "ln2_g": 1 + rng.normal(scale=0.1, size=d),
          "w1": rng.normal(scale=d ** -0.5, size=(d, f)), "b1": rng.normal(scale=0.1, size=f),
          "w2": rng.normal(scale=f ** -0.5, size=(f, d))}
    return w


def test_float_trace_is_the_float_layer(rng):
    w = random_weights(rng)
    x = rng.normal(size=(SEQ, D))
    np.testing.assert_allclose(layer_float_trace(x, w, "gpt2", HEADS)["y"],
                               gpt2_block_float(x, w, HEADS), rtol=0, atol=1e-12)
    np.testing.assert_allclose(layer_float_trace(x, w, "bert", HEADS)["y"],
                               bert_layer_float(x, w, HEADS), rtol=0, atol=1e-12)


# Measured over seeds (see the final report of the layer numerics): cosine 0.9997, max abs
# error ~0.15 (GPT-2, |y| up to ~5) and ~0.10 (BERT, |y| up to ~4): 2–3 % of the output range.
# Asserted: the cosine bar, and a max error of 6 % of the output's range.
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dims", [(64, 4, 256, 16, 4), (32, 2, 128, 8, 8)],
                         ids=lambda s: "d{}h{}f{}s{}l{}".format(*s))
def test_bitexact_close_to_float(arch, dims, rng):
    d, heads, f, seq, lanes = dims
    for _ in range(3):
        w = random_weights(rng, d, f)
        x = rng.normal(size=(seq, d))
        r = run_layer_float_and_int(w, x, arch, heads, lanes=lanes)
        assert r["y_int"].dtype == np.int8 and r["y_int"].shape == (seq, d)
        assert r["cosine"] >= 0.99
        assert r["rel_max_error"] <= 0.06


def test_gpt2_branch_close_to_float(rng):
    """GPT-2's output is x plus the block's branches; the branches alone (y − x), which the
    residual does not dominate, also reach the bar."""
    w = random_weights(rng)
    x = rng.normal(size=(SEQ, D))
    r = run_layer_float_and_int(w, x, "gpt2", HEADS)
    x_deq = dequantize(quantize_input(x, r["config"].x_scale), r["config"].x_scale)
    assert cosine(r["y_dequant"] - x_deq, r["y_float"] - x) >= 0.99


def test_uncalibrated_data_still_close(rng):
    """Calibrated on one input, run on another of the same distribution (some saturation)."""
    w = random_weights(rng)
    for arch in ARCHS:
        r = run_layer_float_and_int(w, rng.normal(size=(SEQ, D)), arch, HEADS,
                                    x_calib=rng.normal(size=(SEQ, D)))
        assert r["cosine"] >= 0.99


@pytest.fixture(scope="module")
def gpt2_layer():
    rng = np.random.default_rng(12345)
    w = random_weights(rng)
    x = rng.normal(size=(SEQ, D))
    cfg, weights, s = quantize_layer(w, x, "gpt2", HEADS, seq=SEQ)
    return cfg, weights, quantize_input(x, s)


@pytest.mark.parametrize("l", [1, 2, 3, 7, 8, 15, 16])
def test_decode_equals_prefill_last_row(gpt2_layer, l):
    cfg, w, x = gpt2_layer
    want, cache_l = layer_bitexact(cfg, w, x[:l])
    cache = None
    if l > 1:
        before, cache = layer_bitexact(cfg, w, x[:l - 1])
        np.testing.assert_array_equal(before, want[:l - 1])
    y_last, cache = layer_bitexact(cfg, w, x[l - 1:l], mode="decode", cache=cache)
    np.testing.assert_array_equal(y_last[0], want[-1])
    np.testing.assert_array_equal(cache.k, cache_l.k)
    np.testing.assert_array_equal(cache.v, cache_l.v)


def test_decode_chain_equals_prefill(gpt2_layer):
    """Prefill 5 tokens, then decode the rest one by one: every row as in one prefill."""
    cfg, w, x = gpt2_layer
    want, _ = layer_bitexact(cfg, w, x)
    rows, cache = layer_bitexact(cfg, w, x[:5])
    rows = list(rows)
    for p in range(5, SEQ):
        y, cache = layer_bitexact(cfg, w, x[p:p + 1], mode="decode", cache=cache)
        rows.append(y[0])
    np.testing.assert_array_equal(np.array(rows), want)
    assert len(cache) == SEQ and cache.k.dtype == np.int8


def test_cache_overflow_and_mode_errors(gpt2_layer, rng):
    cfg, w, x = gpt2_layer
    _, full = layer_bitexact(cfg, w, x)
    with pytest.raises(ValueError, match="KV cache overflow: 17 positions"):
        layer_bitexact(cfg, w, x[:1], mode="decode", cache=full)
    with pytest.raises(ValueError, match="overflow"):
        layer_bitexact(cfg, w, np.concatenate([x, x[:1]]))
    with pytest.raises(ValueError, match="cache must be None"):
        layer_bitexact(cfg, w, x[:2], cache=KVCache.empty(D))
    with pytest.raises(ValueError, match="one row"):
        layer_bitexact(cfg, w, x[:2], mode="decode")
    with pytest.raises(ValueError, match="mode='train'"):
        layer_bitexact(cfg, w, x[:2], mode="train")
    with pytest.raises(ValueError, match="int8"):
        layer_bitexact(cfg, w, x.astype(np.int64) * 3)


def test_bert_contract(rng):
    w = random_weights(rng)
    x = rng.normal(size=(SEQ, D))
    cfg, weights, s = quantize_layer(w, x, "bert", HEADS)
    xi = quantize_input(x, s)
    y, cache = layer_bitexact(cfg, weights, xi)
    assert y.shape == (SEQ, D) and len(cache) == SEQ
    with pytest.raises(ValueError, match="bidirectional"):
        layer_bitexact(cfg, weights, xi[:1], mode="decode", cache=cache)
    with pytest.raises(ValueError, match="overflow"):
        layer_bitexact(cfg, weights, np.concatenate([xi, xi[:1]]))
    # a sentence shorter than seq: what a layer of seq = its length computes, bit for bit
    for n in (1, 5, SEQ - 1):
        y_n, cache_n = layer_bitexact(cfg, weights, xi[:n])
        assert len(cache_n) == n
        np.testing.assert_array_equal(y_n, layer_bitexact(cfg.replace(seq=n), weights,
                                                          xi[:n])[0])


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("fill", [-128, 127, 0])
def test_edge_inputs(arch, fill, rng):
    """Constant inputs (saturating ones included) go through every stage without overflow
    (the block goldens assert their internal ranges) and give int8 rows."""
    w = random_weights(rng)
    cfg, weights, _ = quantize_layer(w, rng.normal(size=(SEQ, D)), arch, HEADS)
    y, _ = layer_bitexact(cfg, weights, np.full((SEQ, D), fill))
    assert y.dtype == np.int8 and y.shape == (SEQ, D)


def test_dequantize():
    np.testing.assert_array_equal(dequantize(np.array([[-2, 4]], np.int8), 0.5), [[-1.0, 2.0]])
    np.testing.assert_array_equal(dequantize(np.array([[1, 1]]), [0.5, 2.0]), [[0.5, 2.0]])
