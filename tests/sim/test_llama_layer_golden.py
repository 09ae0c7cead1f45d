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


# ---- the residual stream's row exponents (stream_exponent) -----------------------------------

def _residual_cfg(rng):
    from llmloom.hw.blocks.residual import ResidualConfig
    return ResidualConfig(length=24, lanes=4, x_scale=0.02 * (1 + rng.random()),
                          r_scale=0.003 * (1 + rng.random()), out_scale=0.004, x_width=16,
                          r_width=16, out_width=16)


def test_residual_rows_hold_their_error_bound(rng):
    """``y·2**e`` is the real sum within half a step of the base scale plus half a step of the
    row's own, beyond the multipliers' error; ``e`` is the smallest that fits the row."""
    from llmloom.sim.golden.residual import residual_rows_bitexact
    rng = np.random.default_rng(rng)
    cfg = _residual_cfg(rng)
    rows = 40
    x = rng.integers(-2 ** 15, 2 ** 15, (rows, 24)) >> rng.integers(0, 12, (rows, 1))
    r = rng.integers(-2 ** 15, 2 ** 15, (rows, 24)) >> rng.integers(0, 12, (rows, 1))
    r_e = rng.integers(0, 9, rows)
    y, e = residual_rows_bitexact(cfg, x, r, r_e, 15)
    real = (x * cfg.x_scale + r * cfg.r_scale * 2.0 ** r_e[:, None]) / cfg.out_scale
    mx, mr, s = cfg.multipliers
    delta = (np.abs(x) * abs(mx * 2.0 ** -s - cfg.x_scale / cfg.out_scale)
             + np.abs(r) * 2.0 ** r_e[:, None] * abs(mr * 2.0 ** -s - cfg.r_scale / cfg.out_scale))
    err = np.abs(y * 2.0 ** e[:, None] - real)
    assert np.all(err <= 0.5 + 2.0 ** (e[:, None] - 1) + delta + 1e-9)
    amax = np.abs(y).max(axis=1)
    assert np.all(amax <= 32767) and np.all(amax[e > 0] >= 16384)
    assert e.max() >= 3 and e.min() == 0
    # a skip with every exponent 0 is the plain residual (no row exponents), where it fits
    from llmloom.sim.golden.residual import residual_bitexact
    small = np.abs(residual_rows_bitexact(cfg, x, r, 0 * r_e, 15)[1]) == 0
    np.testing.assert_array_equal(residual_rows_bitexact(cfg, x, r, 0 * r_e, 15)[0][small],
                                  residual_bitexact(cfg, x, r)[small])


def test_norm_takes_the_row_exponent_for_its_epsilon_only(rng):
    """RMSNorm is scale invariant: rows at ``2**e`` normalise as the rows shifted left by
    ``e`` do (exactly, with eps 0; within a step with eps)."""
    from llmloom.hw.blocks.norm import RMSNormConfig
    from llmloom.sim.golden.norm import norm_bitexact
    rng = np.random.default_rng(rng)
    x = rng.integers(-200, 200, (6, 32))
    e = np.array([0, 1, 3, 5, 7, 6])
    for eps in (0.0, 1e-5):
        cfg = RMSNormConfig(length=32, lanes=4, eps=eps, x_scale=0.01, out_scale=0.02,
                            in_width=16, out_width=16, gamma=tuple(1 + 0.1 * rng.random(32)))
        got = norm_bitexact(cfg, x, e)
        want = np.concatenate([norm_bitexact(cfg, x[i:i + 1] << int(e[i])) for i in range(6)])
        assert np.abs(got.astype(int) - want).max() <= (0 if eps == 0 else 1)


def _massive(rng, rows=12, factor=3000.0):
    """Rows like a LLaMA residual stream: the first thousands of times the others."""
    x = rng.normal(size=(rows, D))
    x[0] *= factor
    return x


def test_row_exponents_keep_ordinary_rows_beside_a_massive_one(rng):
    """With a first row 3000× the others, one static scale leaves the others a few steps;
    row exponents keep them whole (what the layer adds to them, against float64)."""
    from llmloom.sim.golden.layers import RowScaled
    rng = np.random.default_rng(rng)
    w = _weights(rng)
    x = _massive(rng)
    ref = layer_float_trace(x, w, "llama", H, kv_heads=KV, rope_base=BASE)["y"]
    got = {}
    for E in (0, 15):
        cfg = LayerConfig(arch="llama", d_model=D, heads=H, kv_heads=KV, d_ff=F, seq=16,
                          rope_base=BASE, scheme="dynamic", stream_exponent=E)
        layer = calibrate(cfg, w, _massive(np.random.default_rng(1)))
        c = layer.config
        xq = quantize_input(x, c.x_scale, c.width("x"), E)
        assert isinstance(xq, RowScaled) == bool(E)
        y, _ = layer_bitexact(c, layer.weights, xq)
        assert isinstance(y, RowScaled) == bool(E)
        if E:
            assert y.e[0] >= 8 and y.e[1:].max() <= 2
        got[E] = cosine(dequantize(y, c.y_scale)[1:] - x[1:], ref[1:] - x[1:])
    assert got[15] > 0.99 and got[15] > got[0] + 0.05


def test_row_exponent_decode_after_prefill_is_prefill(rng):
    rng = np.random.default_rng(rng)
    w = _weights(rng)
    x = _massive(rng, 9)
    cfg = LayerConfig(arch="llama", d_model=D, heads=H, kv_heads=KV, d_ff=F, seq=12,
                      rope_base=BASE, stream_exponent=15)
    layer = calibrate(cfg, w, x)
    cfg, weights = layer.config, layer.weights
    xq = quantize_input(x, cfg.x_scale, cfg.width("x"), 15)
    full, _ = layer_bitexact(cfg, weights, xq)
    _, cache = layer_bitexact(cfg, weights, xq[:6])
    y, _ = layer_bitexact(cfg, weights, xq[6:7], mode="decode", cache=cache)
    np.testing.assert_array_equal(y.values[0], full.values[6])
    assert y.e[0] == full.e[6]


def test_row_exponents_are_llama_only(rng):
    """GPT-2 and BERT have no row exponents, one line; a LLaMA layer with them passes the
    RTL's checks (its RTL: ``tests/hw/test_llama_row_exponents.py``)."""
    from llmloom.hw.config import ConfigError
    from llmloom.hw.layers.common import check_layer_rtl
    for arch in ("gpt2", "bert"):
        with pytest.raises(ConfigError, match="stream_exponent=3 is not allowed"):
            LayerConfig(arch=arch, stream_exponent=3)
    cfg = LayerConfig(arch="llama", d_model=D, heads=H, kv_heads=KV, d_ff=F, seq=8,
                      stream_exponent=15)
    layer = quantize_placeholder(cfg)
    check_layer_rtl(layer.config, layer.weights)
    with pytest.raises(ValueError, match="x_int has row exponents"):
        off = quantize_placeholder(cfg.replace(stream_exponent=0))
        layer_bitexact(off.config, off.weights,
                       quantize_input(np.ones((2, D)), off.config.x_scale, 8, 4))


# ---- smoothing (SmoothQuant) of LLaMA's float weights before quantisation --------------------

def test_smoothing_is_the_same_layer_in_float_and_tames_outlier_channels(rng):
    """The smoothed weights compute the same layer in float64 (their gains, up columns and
    the readers' rows rescaled); a few input channels 50× the others then no longer take
    the range of the per-token int8 of n1, n2 and p from the others."""
    from llmloom.hw.layers.llama import LLAMA
    from llmloom.sim import quantize
    rng = np.random.default_rng(rng)
    w = _weights(rng)
    # outlier channels of n1, n2 and p, their readers' weight rows small (as trained layers
    # have them: a channel 200× the others that carries no more than they do; at 50× the
    # per-token int10 inputs hold it unsmoothed)
    for g, cols, mats in (("ln1_g", [3, 17], ("wq", "wk", "wv")), ("ln2_g", [5], ("w_gate",
                                                                                 "w_up"))):
        w[g][cols] *= 200.0
        for m in mats:
            w[m][cols] /= 200.0
    w["w_up"][:, [7, 30]] *= 200.0
    w["w_down"][[7, 30]] /= 200.0
    x = rng.normal(size=(12, D))
    trace = layer_float_trace(x, w, "llama", H, kv_heads=KV, rope_base=BASE)
    sw = quantize.smooth_weights(LLAMA, w, trace, 0.5)
    t2 = layer_float_trace(x, sw, "llama", H, kv_heads=KV, rope_base=BASE)
    np.testing.assert_allclose(t2["y"], trace["y"], rtol=1e-9, atol=1e-9)
    assert np.abs(t2["n1"]).max(axis=0).max() < np.abs(trace["n1"]).max(axis=0).max() / 4
    assert set(sw) == set(w) and not np.array_equal(sw["w_down"], w["w_down"])
    cfg = LayerConfig(arch="llama", d_model=D, heads=H, kv_heads=KV, d_ff=F, seq=16,
                      rope_base=BASE, scheme="dynamic")
    got = {}
    for alpha in (None, 0.5):
        saved = dict(quantize.SMOOTHING)
        try:
            quantize.SMOOTHING["llama"] = alpha
            if alpha is None:
                del quantize.SMOOTHING["llama"]
            layer = calibrate(cfg, w, x)
        finally:
            quantize.SMOOTHING.clear()
            quantize.SMOOTHING.update(saved)
        assert layer.float_weights is w            # the reference, as given
        c = layer.config
        y, _ = layer_bitexact(c, layer.weights, quantize_input(x, c.x_scale, c.width("x")))
        got[alpha] = cosine(dequantize(y, c.y_scale) - x, trace["y"] - x)
    assert got[0.5] > 0.999 and got[None] < 0.98


def test_queries_and_keys_are_balanced_pair_by_pair_and_head_group_by_group(rng):
    """Smoothing balances q against k: the same scores (and layer) in float, and a channel
    pair large in every query head of a KV group but small in its keys (and one the other
    way) takes the same range in both; one factor a rotated pair, one a KV head's channel
    for all the query heads reading it."""
    from llmloom.hw.layers.llama import LLAMA
    from llmloom.sim import quantize
    rng = np.random.default_rng(rng)
    w = _weights(rng)
    dh, group = D // H, H // KV
    w["wq"][:, [2, 3]] *= 40.0                      # query pair 1 of head 0 ...
    w["wk"][:, [dh + 4, dh + 5]] *= 40.0            # ... key pair 2 of KV head 1
    x = rng.normal(size=(12, D))
    trace = layer_float_trace(x, w, "llama", H, kv_heads=KV, rope_base=BASE)
    factors = {}
    sw = quantize.smooth_weights(LLAMA, w, trace, 0.5, factors=factors)
    t2 = layer_float_trace(x, sw, "llama", H, kv_heads=KV, rope_base=BASE)
    np.testing.assert_allclose(t2["scores"], trace["scores"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(t2["y"], trace["y"], rtol=1e-9, atol=1e-9)
    _, gq = factors["wq"]
    _, gk = factors["wk"]
    kv_col = np.arange(D) // dh // group * dh + np.arange(D) % dh   # query column's KV column
    np.testing.assert_allclose(gq * gk[kv_col], 1.0)   # q / g and k · g: the same q·k
    assert np.all(gk[0::2] == gk[1::2])                # one factor a rotated pair

    def level(t):                                      # q's largest over the group, k's
        a = np.abs(t["qr"]).max(axis=0)
        aq = np.zeros(KV * dh)
        np.maximum.at(aq, kv_col, a)
        ak = np.abs(t["kr"]).max(axis=0)
        pair = lambda v: v.reshape(-1, 2).max(axis=1)   # noqa: E731
        return pair(aq) / pair(ak)

    before, after = level(trace), level(t2)
    assert before[1] > 10 and before[dh // 2 + 2] < 0.1   # the two planted pairs
    np.testing.assert_allclose(after, 1.0, rtol=1e-9)


def test_the_llama_harness_drives_row_exponents(rng):
    """``llmloom run llama-block`` with row exponents: the input rows' exponents go to the
    layer's ``i_e`` (one beat a row), as many are expected on ``o_e``."""
    from llmloom.sim.blocks.layers import LlamaBlockHarness
    rng = np.random.default_rng(rng)
    h = LlamaBlockHarness().options(weights=_weights(rng))
    x = rng.normal(size=(4, D)).astype(np.float32)
    x[0] *= 1000
    cfg = h.config({"d_model": D, "heads": H, "kv_heads": KV, "d_ff": F, "seq": 8,
                    "stream_exponent": 15}, {"x": x})
    prep = h.prepare(cfg, {"x": x})
    drive = h.drive(cfg, prep)
    assert len(drive.timed["i_e"]) == 4 and drive.expect["o_e"] == 4
    assert prep["x_e"][0] == prep["x_e"].max() > 0


def test_wide_tensors_keep_their_headroom(rng):
    """p and f (int24, hw/layers/llama.py) are calibrated with WIDE_HEADROOM: the calibration's
    largest value sits at 1/16 of int24 (held-out text takes p up to 3.4× the calibration's on
    SmolLM2), and the layer still holds to float."""
    from llmloom.sim.quantize import WIDE_HEADROOM

    rng = np.random.default_rng(rng)
    w = _weights(rng)
    x = rng.normal(size=(12, D))
    cfg = LayerConfig(arch="llama", d_model=D, heads=H, kv_heads=KV, d_ff=F, seq=16,
                      rope_base=BASE, scheme="dynamic")
    layer = calibrate(cfg, w, x)
    cfg = layer.config
    t, _ = layer_bitexact_trace(cfg, layer.weights, quantize_input(x, cfg.x_scale,
                                                                   cfg.width("x")))
    top = (1 << 23) // WIDE_HEADROOM
    for name in ("p", "f"):
        assert cfg.width(name) == 24 and t[name].dtype == np.int32
        assert 0.9 * top < np.abs(t[name]).max() <= 1.1 * top, name
    ref = layer_float_trace(x, w, "llama", H, kv_heads=KV, rope_base=BASE)
    assert cosine(dequantize(t["r2"], cfg.y_scale), ref["y"]) > 0.995
