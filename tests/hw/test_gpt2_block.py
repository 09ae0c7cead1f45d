"""The composed GPT-2 block on Amaranth's simulator: random float weights quantised with
``quantize_layer`` at tiny dimensions, then the RTL's prefill equals ``layer_bitexact`` bit for
bit, and a decode row after a prefill of l−1 rows (same instance: the KV cache persists)
equals the last row of the prefill of l; every run without stalls, with the (1,1,1,0) pattern
and with random stalls."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.config import ConfigError
from llmloom.hw.layers.common import attention_bypass_depth, ffn_bypass_depth
from llmloom.hw.layers.layer import Gpt2Block
from llmloom.sim.blocks.layers import (
    Gpt2BlockHarness,
    layer_collect,
    layer_drive,
    layer_golden,
)
from llmloom.sim.golden.layers import layer_bitexact
from llmloom.sim.harness import ControlStreams
from llmloom.sim.quantize import quantize_input, quantize_layer
from llmloom.sim.runner import run_block, simulate
from llmloom.sim.streams import Stalls

STALLS = ["none", "pattern", "random"]
D, FF, HEADS, SEQ = 8, 16, 2, 4
TINY = dict(lanes=2, linear_rows=2, linear_cols=2, ffn_rows=2, ffn_cols=2, qk_rows=2,
            qk_cols=2, pv_rows=2, pv_cols=2)
# arrays wider than the lanes (the gearboxes narrow), token tiles of 3 rows (partial tiles)
WIDE = dict(lanes=2, linear_rows=3, linear_cols=4, ffn_rows=3, ffn_cols=8, qk_rows=3,
            qk_cols=4, pv_rows=2, pv_cols=4)


def float_weights(rng, d=D, ff=FF):
    def n(*shape, s=0.3):
        return rng.normal(0.0, s, shape)
    w = {name: n(d, d) for name in ("wq", "wk", "wv", "wo")}
    w.update({f"b{c}": n(d, s=0.1) for c in "qkvo"})
    w.update(w1=n(d, ff), b1=n(ff, s=0.1), w2=n(ff, d), b2=n(d, s=0.1))
    for ln in ("ln1", "ln2"):
        w[f"{ln}_g"], w[f"{ln}_b"] = 1 + n(d, s=0.1), n(d, s=0.1)
    return w


def quantised(rng, arch="gpt2", par=TINY):
    fw = float_weights(rng)
    x = rng.normal(0.0, 1.0, (SEQ, D))
    cfg, w8, xs = quantize_layer(fw, x, arch, HEADS, SEQ, **par)
    return cfg, w8, quantize_input(x, xs).astype(np.int64), fw, x


def run_rtl(cfg, w8, x_int, sizes, stall, seed, cls=Gpt2Block):
    comp = ControlStreams(cls(cfg, w8))
    beats, *_ = simulate(comp, layer_drive(cfg, x_int, sizes), stalls_in=Stalls(stall, seed),
                         stalls_out=Stalls(stall, seed + 1), max_cycles=100_000)
    return layer_collect(cfg, beats["o"], sizes)


@pytest.mark.parametrize("rows, par, stall",
                         [(SEQ, TINY, s) for s in STALLS]
                         + [(1, TINY, "none"), (3, TINY, "random"), (3, WIDE, "pattern")],
                         ids=[f"full-{s}" for s in STALLS] + ["l1-none", "l3-random",
                                                             "wide_l3-pattern"])
def test_prefill_equals_golden(rows, par, stall, rng):
    cfg, w8, x, *_ = quantised(rng, par=par)
    got = run_rtl(cfg, w8, x[:rows], [rows], stall, int(rng.integers(1 << 30)))
    want, _ = layer_bitexact(cfg, w8, x[:rows], "prefill")
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("stall", STALLS)
def test_decode_after_prefill_equals_last_prefill_row(stall, rng):
    cfg, w8, x, *_ = quantised(rng)
    l = SEQ
    got = run_rtl(cfg, w8, x[:l], [l - 1, 1], stall, int(rng.integers(1 << 30)))
    full, _ = layer_bitexact(cfg, w8, x[:l], "prefill")
    np.testing.assert_array_equal(got[-1], full[-1])
    np.testing.assert_array_equal(got[:-1], full[:-1])


def test_decode_steps_to_a_full_cache(rng):
    """One row at a time from an empty cache up to ``seq`` positions."""
    cfg, w8, x, *_ = quantised(rng, par=WIDE)
    sizes = [1] * SEQ
    got = run_rtl(cfg, w8, x, sizes, "random", int(rng.integers(1 << 30)))
    np.testing.assert_array_equal(got, layer_golden(cfg, w8, x, sizes))
    np.testing.assert_array_equal(got, layer_bitexact(cfg, w8, x, "prefill")[0])


def test_extreme_inputs(rng):
    """Rows of all −128, all 127, zeros and one-hot, in one prefill."""
    cfg, w8, *_ = quantised(rng)
    x = np.zeros((SEQ, D), np.int64)
    x[0], x[1], x[3, 2] = -128, 127, 127
    got = run_rtl(cfg, w8, x, [SEQ], "pattern", 5)
    np.testing.assert_array_equal(got, layer_bitexact(cfg, w8, x, "prefill")[0])


def test_harness_float_input_and_error_vs_float(rng):
    """Through the ``gpt2-block`` harness: float x in, dequantised y out, equal to the golden
    model, and close to the float64 layer."""
    fw = float_weights(rng)
    x = rng.normal(0.0, 1.0, (SEQ, D)).astype(np.float32)
    h = Gpt2BlockHarness().options(weights=fw, mode="decode", prefill=2)
    cfg = h.config({"heads": HEADS, "seq": SEQ, **TINY}, {"x": x})
    result = run_block(h, cfg, {"x": x})
    prepared = h.prepare(cfg, {"x": x})
    assert prepared["sizes"] == [2, 1, 1]
    golden = h.golden(cfg, prepared)
    for k in ("y", "y_int"):
        np.testing.assert_array_equal(result.outputs[k], golden[k])
    assert result.outputs["y"].dtype == np.float32
    metrics = h.float_metrics(cfg, prepared, result.outputs)
    assert metrics["cosine_vs_float"] > 0.95
    assert metrics["max_abs_error_vs_float"] < 0.5 * np.abs(golden["y"]).max()


def test_bypass_depths():
    cfg = quantised(np.random.default_rng(0))[0]
    assert attention_bypass_depth(cfg) == SEQ * D // 2
    assert ffn_bypass_depth(cfg) == (8 * 2 + 4) * D // 2


def test_refuses_bad_configs(rng):
    cfg, w8, *_ = quantised(rng)
    with pytest.raises(ConfigError, match="not calibrated"):
        Gpt2Block(cfg.replace(numbers=None), w8)
    with pytest.raises(ConfigError, match="cols=3 does not divide"):
        Gpt2Block(cfg.replace(linear_cols=3), w8)
    with pytest.raises(ValueError, match="needs arch='gpt2'"):
        Gpt2Block(cfg.replace(arch="bert"), w8)
