"""The composed BERT encoder layer on Amaranth's simulator: random float weights quantised
with ``quantize_layer`` at tiny dimensions; the RTL equals ``layer_bitexact`` bit for bit (a
tensor is exactly ``seq`` rows), including several tensors back to back through one instance
(the layer empties its cache after each), without stalls, with the (1,1,1,0) pattern and with
random stalls."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.config import ConfigError
from llmloom.hw.layers.layer import BertLayer
from llmloom.sim.blocks.layers import BertLayerHarness
from llmloom.sim.golden.layers import layer_bitexact
from llmloom.sim.quantize import quantize_input
from llmloom.sim.runner import run_block

from .test_gpt2_block import HEADS, SEQ, STALLS, TINY, WIDE, D, float_weights, quantised, run_rtl


@pytest.mark.parametrize("par, stall", [(TINY, s) for s in STALLS] + [(WIDE, "random")],
                         ids=[f"tiny-{s}" for s in STALLS] + ["wide-random"])
def test_layer_equals_golden(par, stall, rng):
    cfg, w8, x, *_ = quantised(rng, "bert", par)
    got = run_rtl(cfg, w8, x, [SEQ], stall, int(rng.integers(1 << 30)), cls=BertLayer)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, layer_bitexact(cfg, w8, x, "prefill")[0])


def test_tensors_back_to_back(rng):
    """Three sequences (the last of extreme rows) through one instance: each a fresh prefill."""
    cfg, w8, x0, *_ = quantised(rng, "bert")
    x1 = rng.integers(-128, 128, (SEQ, D))
    x2 = np.zeros((SEQ, D), np.int64)
    x2[0], x2[1], x2[3, 2] = -128, 127, 127
    xs = np.concatenate([x0, x1, x2])
    got = run_rtl(cfg, w8, xs, [SEQ] * 3, "random", int(rng.integers(1 << 30)), cls=BertLayer)
    want = np.concatenate([layer_bitexact(cfg, w8, x, "prefill")[0] for x in (x0, x1, x2)])
    np.testing.assert_array_equal(got, want)


def test_harness_float_input(rng):
    fw = float_weights(rng)
    x = rng.normal(0.0, 1.0, (SEQ, D)).astype(np.float32)
    h = BertLayerHarness().options(weights=fw)
    cfg = h.config({"heads": HEADS, "seq": SEQ, **TINY}, {"x": x})
    result = run_block(h, cfg, {"x": x})
    prepared = h.prepare(cfg, {"x": x})
    np.testing.assert_array_equal(prepared["x_int"], quantize_input(x, cfg.x_scale))
    golden = h.golden(cfg, prepared)
    for k in ("y", "y_int"):
        np.testing.assert_array_equal(result.outputs[k], golden[k])
    assert h.float_metrics(cfg, prepared, result.outputs)["cosine_vs_float"] > 0.95


def test_refuses_bad_configs(rng):
    cfg, w8, *_ = quantised(rng, "bert")
    with pytest.raises(ValueError, match="needs arch='bert'"):
        BertLayer(cfg.replace(arch="gpt2"), w8)
    with pytest.raises(ConfigError, match="decode needs a causal layer"):
        BertLayerHarness().options(weights={}, mode="decode")
