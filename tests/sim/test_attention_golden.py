"""Multi-head attention's golden models: the bit-exact composition within its stated bound of
float64 attention, its contract (masking, padding, decode rows), and edge inputs."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.blocks.attention_config import AttentionConfig
from llmloom.hw.config import ConfigError
from llmloom.sim.golden import layers
from llmloom.sim.golden.attention import (
    attention_bitexact,
    attention_error_bound,
    attention_float,
    calibrate_attention,
)

# (d_model, heads, seq, lanes)
SHAPES = [(64, 4, 16, 4), (32, 2, 24, 8), (48, 3, 8, 4), (16, 1, 4, 4)]


def _ints(rng, shape, kind="normal"):
    if kind == "uniform":
        return rng.integers(-128, 128, shape)
    return np.clip(np.rint(rng.normal(scale=40, size=shape)), -128, 127).astype(np.int64)


def _cfg(d, h, seq, lanes, causal):
    return AttentionConfig(d_model=d, heads=h, seq=seq, causal=causal, lanes=lanes,
                           q_scale=2.5 / 127, k_scale=3.0 / 127, v_scale=1.5 / 127)


@pytest.mark.parametrize("kind", ["normal", "uniform"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidir"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "d{}h{}s{}l{}".format(*s))
def test_bitexact_within_bound_of_float(shape, causal, kind, rng):
    d, h, seq, lanes = shape
    ctx = seq if not causal else max(1, seq - 3)
    q, k, v = (_ints(rng, (ctx, d), kind) for _ in range(3))
    cfg = calibrate_attention(_cfg(d, h, seq, lanes, causal), q, k, v)
    y = attention_bitexact(cfg, q, k, v)
    assert y.dtype == np.int8 and y.shape == (ctx, d)
    err = np.abs(y * cfg.out_scale_value - attention_float(cfg, q, k, v))
    bound = attention_error_bound(cfg, v, ctx, ctx)
    assert np.all(err <= bound)
    # and in practice far inside it: a few output steps
    assert err.max() <= 4 * cfg.out_scale_value


@pytest.mark.parametrize("seq, lanes", [(8, 4), (6, 4), (16, 4)], ids=["s8l4", "s6l4", "s16l4"])
def test_bidirectional_sentence_equals_a_config_of_its_length(seq, lanes, rng):
    """The key padding mask: a sentence of n < seq tokens attends to its n keys only, bit for
    bit what a config of ``seq = n`` computes (keys n..seq−1 reach neither the softmax's max
    nor its sum), and the float golden likewise; masked keys are not zeros in disguise."""
    d = 16
    cfg = _cfg(d, 2, seq, lanes, False).replace(score_scale=0.05)
    for n in range(1, seq + 1):
        q, k, v = (_ints(rng, (n, d)) for _ in range(3))
        y = attention_bitexact(cfg, q, k, v)
        np.testing.assert_array_equal(y, attention_bitexact(cfg.replace(seq=n), q, k, v))
        np.testing.assert_array_equal(attention_float(cfg, q, k, v),
                                      attention_float(cfg.replace(seq=n), q, k, v))
        if n < seq:        # zero keys at n.. would have taken probability
            kz = np.vstack([k, np.zeros((seq - n, d), np.int64)])
            vz = np.vstack([v, np.zeros((seq - n, d), np.int64)])
            assert not np.array_equal(y, attention_bitexact(cfg, q, kz, vz)[:n])


def test_float_is_the_layers_attention(rng):
    cfg = _cfg(32, 2, 8, 4, True)
    q, k, v = (_ints(rng, (8, 32)) for _ in range(3))
    want = layers.attention(q * cfg.q_scale, k * cfg.k_scale, v * cfg.v_scale, 2, True)
    np.testing.assert_array_equal(attention_float(cfg, q, k, v), want)


def test_decode_rows_equal_prefill_rows(rng):
    """A query at position p against keys 0..p gives the same bits alone (q_offset=p) as
    inside a prefill: rows are independent and masked keys never count."""
    d, h, seq = 32, 2, 16
    cfg = calibrate_attention(_cfg(d, h, seq, 4, True),
                              *(_ints(rng, (seq, d)) for _ in range(3)))
    q, k, v = (_ints(rng, (seq, d)) for _ in range(3))
    full = attention_bitexact(cfg, q, k, v)
    for p in range(seq):
        one = attention_bitexact(cfg, q[p:p + 1], k[:p + 1], v[:p + 1], q_offset=p)
        np.testing.assert_array_equal(one[0], full[p])
    # a chunk of rows in the middle (a second prefill chunk against the cache)
    chunk = attention_bitexact(cfg, q[5:9], k[:9], v[:9], q_offset=5)
    np.testing.assert_array_equal(chunk, full[5:9])


def test_keys_beyond_the_causal_limit_do_not_matter(rng):
    d, seq = 16, 8
    cfg = _cfg(d, 2, seq, 4, True)
    q, k, v = (_ints(rng, (seq, d)) for _ in range(3))
    base = attention_bitexact(cfg, q[:3], k[:3], v[:3])
    k2, v2 = k.copy(), v.copy()
    k2[3:], v2[3:] = 127, -128
    np.testing.assert_array_equal(attention_bitexact(cfg, q[:3], k2, v2), base)


def test_heads_are_independent(rng):
    d, h, seq = 32, 4, 8
    cfg = _cfg(d, h, seq, 4, False)
    q, k, v = (_ints(rng, (seq, d)) for _ in range(3))
    base = attention_bitexact(cfg, q, k, v)
    q2 = q.copy()
    q2[:, :8] = _ints(rng, (seq, 8))          # change head 0 only
    other = attention_bitexact(cfg, q2, k, v)
    np.testing.assert_array_equal(other[:, 8:], base[:, 8:])


@pytest.mark.parametrize("fill", [-128, 127, 0])
def test_constant_inputs(fill):
    """Constant rows: every kept key scores the same, so each output is the (constant) value:
    exactly with one kept key (p = 1023), within the rounding of n equal 10-bit probabilities
    (their sum is 1023 ± n/2) with n."""
    d, seq = 16, 8
    cfg = _cfg(d, 2, seq, 4, True).replace(score_scale=0.05)
    t = np.full((seq, d), fill)
    y = attention_bitexact(cfg, t, t, t).astype(int)
    assert np.all(y[0] == fill)
    n = np.arange(1, seq + 1)[:, None]
    assert np.all(np.abs(y - fill) <= 0.5 + abs(fill) * n / 2046)


def test_one_hot_key_selects_its_value(rng):
    """One key far above the rest takes (almost) all the probability."""
    d, seq = 16, 8
    cfg = _cfg(d, 1, seq, 4, False).replace(q_scale=0.1, k_scale=0.1, score_scale=0.1)
    q = np.zeros((1, d), np.int64)
    q[0, 0] = 127
    k = np.zeros((seq, d), np.int64)
    k[5, 0] = 127
    v = _ints(rng, (seq, d))
    y = attention_bitexact(cfg, q, k, v)
    # the chosen key's score (40 real) saturates at 127 (12.7), the others are 0: the other
    # keys' probabilities, exp(-12.7) each, round to 0
    np.testing.assert_allclose(y[0] * cfg.out_scale_value, v[5] * cfg.v_scale,
                               atol=cfg.v_scale)


def test_default_scales():
    cfg = _cfg(64, 4, 16, 4, True)
    assert cfg.out_scale is None and cfg.out_scale_value == cfg.v_scale
    # the default score scale is the bound: d_head products of 128·128 accumulator units
    acc_max = cfg.d_head * 128 * 128
    assert cfg.score_scale_value * 127 == pytest.approx(acc_max * cfg.score_acc_scale)


def test_contract_violations(rng):
    d, seq = 16, 8
    t = _ints(rng, (seq, d))
    with pytest.raises(ConfigError, match="q_offset=2"):
        attention_bitexact(_cfg(d, 2, seq, 4, False), t[:6], t[:6], t[:6], q_offset=2)
    with pytest.raises(ConfigError, match="q_offset \\+ rows <= ctx"):
        attention_bitexact(_cfg(d, 2, seq, 4, True), t[:3], t[:4], t[:4], q_offset=2)
    with pytest.raises(ConfigError, match="ctx=9"):
        attention_bitexact(_cfg(d, 2, seq, 4, True), t[:1], np.zeros((9, d), int),
                           np.zeros((9, d), int))
    with pytest.raises(ValueError, match="int8"):
        attention_bitexact(_cfg(d, 2, seq, 4, True), t + 200, t, t)
    with pytest.raises(ValueError, match="expected rows×16"):
        attention_bitexact(_cfg(d, 2, seq, 4, True), t[:, :8], t, t)


def test_trailing_masked_beats_change_nothing(rng):
    """Beats whose lanes are all masked leave the softmax's running max and sum unchanged, so
    a decode step may stop streaming scores after its last kept key (at a beat boundary) —
    provided the softmax keeps the constants (exp_frac, prob_shift) of the full row length.
    Here lengths 16 and 8 share them."""
    from llmloom.hw.blocks.softmax import SoftmaxConfig
    from llmloom.sim.golden.softmax import softmax_bitexact

    full, short = (SoftmaxConfig(length=n, lanes=4, x_scale=0.05, causal=True) for n in (16, 8))
    assert full.exp_frac == short.exp_frac
    for p in range(8):
        x = rng.integers(-128, 128, (1, 16))
        a = softmax_bitexact(full.replace(causal_offset=p), x)
        b = softmax_bitexact(short.replace(causal_offset=p), x[:, :8])
        np.testing.assert_array_equal(a[:, :8], b)
        assert not a[:, 8:].any()


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidir"])
def test_int16_output_within_its_bound_and_finer_than_int8(causal, rng):
    """``out_width`` 16 (the dynamic scheme's LLaMA attention): the same P·V accumulators
    re-quantised onto int16, within the bound of a 16-bit output, and closer to float than
    the int8 output of the same inputs."""
    d, h, seq, lanes = SHAPES[0]
    q, k, v = (_ints(rng, (seq, d)) for _ in range(3))
    cfg8 = calibrate_attention(_cfg(d, h, seq, lanes, causal), q, k, v)
    cfg16 = calibrate_attention(_cfg(d, h, seq, lanes, causal).replace(out_width=16), q, k, v)
    assert cfg16.score_scale == cfg8.score_scale
    assert cfg16.out_scale == pytest.approx(cfg8.out_scale * 127 / 32767)
    ref = attention_float(cfg16, q, k, v)
    y16 = attention_bitexact(cfg16, q, k, v)
    assert y16.dtype == np.int16 and np.abs(y16).max() > 127
    err16 = np.abs(y16 * cfg16.out_scale_value - ref)
    assert np.all(err16 <= attention_error_bound(cfg16, v, seq, seq))
    err8 = np.abs(attention_bitexact(cfg8, q, k, v) * cfg8.out_scale_value - ref)
    assert np.sum(err16 ** 2) < np.sum(err8 ** 2)
    with pytest.raises(ConfigError, match="out_width"):
        _cfg(d, h, seq, lanes, causal).replace(out_width=12)
