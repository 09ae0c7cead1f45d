"""The composed BERT encoder layer on Amaranth's simulator: random float weights quantised
with ``quantize_layer`` at tiny dimensions; the RTL equals ``layer_bitexact`` bit for bit (a
tensor is one sentence of 1..seq rows, the keys past it masked; ``seq`` need not be a
multiple of ``lanes``), including several sentences of different lengths back to back
through one instance (the attention empties its cache after each), without stalls, with the
(1,1,1,0) pattern and with random stalls."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.config import ConfigError
from llmloom.hw.layers.layer import BertLayer
from llmloom.sim.blocks.layers import BertLayerHarness
from llmloom.sim.golden.layers import layer_bitexact
from llmloom.sim.quantize import quantize_input, quantize_layer
from llmloom.sim.runner import run_block

from .test_gpt2_block import HEADS, SEQ, STALLS, TINY, WIDE, D, float_weights, quantised, run_rtl


@pytest.mark.parametrize("par, stall", [(TINY, s) for s in STALLS] + [(WIDE, "random")],
                         ids=[f"tiny-{s}" for s in STALLS] + ["wide-random"])
def test_layer_equals_golden(par, stall, rng):
    cfg, w8, x, *_ = quantised(rng, "bert", par)
    got = run_rtl(cfg, w8, x, [SEQ], stall, int(rng.integers(1 << 30)), cls=BertLayer)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, layer_bitexact(cfg, w8, x, "prefill")[0])


# d 16, 2 heads, lanes 4: sentences shorter than seq 8, and seq 6 (no multiple of lanes)
S16 = dict(lanes=4, linear_rows=2, linear_cols=4, ffn_rows=2, ffn_cols=4, qk_rows=2,
           qk_cols=4, pv_rows=2, pv_cols=4)


def quantised16(rng, seq):
    fw = float_weights(rng, d=16, ff=32)
    x = rng.normal(0.0, 1.0, (seq, 16))
    cfg, w8, xs = quantize_layer(fw, x, "bert", 2, seq, **S16)
    return cfg, w8, quantize_input(x, xs).astype(np.int64)


@pytest.mark.parametrize("seq, n, stall", [(8, 3, "none"), (8, 5, "pattern"), (8, 8, "random"),
                                           (6, 5, "random"), (6, 2, "pattern")],
                         ids=lambda v: str(v))
def test_sentence_shorter_than_seq(seq, n, stall, rng):
    """n rows attend to their n keys: bit for bit the golden model, which equals a layer of
    ``seq = n`` (``tests/sim/test_layer_golden.py``)."""
    cfg, w8, x = quantised16(rng, seq)
    got = run_rtl(cfg, w8, x[:n], [n], stall, int(rng.integers(1 << 30)), cls=BertLayer)
    np.testing.assert_array_equal(got, layer_bitexact(cfg, w8, x[:n], "prefill")[0])


@pytest.mark.parametrize("seq", [8, 6])
def test_sentences_of_any_length_back_to_back(seq, rng):
    cfg, w8, x = quantised16(rng, seq)
    sentences = [x[:3], x, rng.integers(-128, 128, (1, 16)), x[::-1][:5]]
    sizes = [len(t) for t in sentences]
    got = run_rtl(cfg, w8, np.concatenate(sentences), sizes, "random",
                  int(rng.integers(1 << 30)), cls=BertLayer)
    want = np.concatenate([layer_bitexact(cfg, w8, t, "prefill")[0] for t in sentences])
    np.testing.assert_array_equal(got, want)


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
    # fewer rows than seq: the same design takes a shorter sentence
    short = run_block(h, cfg, {"x": x[:3]})
    golden = h.golden(cfg, h.prepare(cfg, {"x": x[:3]}))
    np.testing.assert_array_equal(short.outputs["y_int"], golden["y_int"])


def test_refuses_bad_configs(rng):
    cfg, w8, *_ = quantised(rng, "bert")
    with pytest.raises(ValueError, match="needs arch='bert'"):
        BertLayer(cfg.replace(arch="gpt2"), w8)
    with pytest.raises(ConfigError, match="decode needs a causal layer"):
        BertLayerHarness().options(weights={}, mode="decode")


def test_q8_0_groups_bert_layer_equals_golden(rng):
    """BERT's linear stages with W8 in groups (``weight_groups``, GGUF's Q8_0; measured on
    MiniLM in ``bench/embed.py``), the dynamic scheme: bit for bit under random stalls, a
    sentence shorter than ``seq``."""
    fw = float_weights(rng, d=32, ff=64)
    x = rng.normal(0.0, 1.0, (6, 32))
    cfg, w8, xs = quantize_layer(fw, x, "bert", 2, 6, scheme="dynamic", weight_groups=True,
                                 **S16)
    assert all(cfg.linear(name).weight_groups for name in cfg.linears)
    x = quantize_input(x, xs, cfg.width("x"))
    got = run_rtl(cfg, w8, x[:5], [5], "random", int(rng.integers(1 << 30)), cls=BertLayer)
    want = layer_bitexact(cfg, w8, x[:5], "prefill")[0]
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
