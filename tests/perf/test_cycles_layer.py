"""The cycle prediction of the composed layers (``perf.cycles.gpt2_block_cycles``,
``bert_layer_cycles``: the pipeline model of ``perf/pipeline.py``) against the cycles their RTL
takes on Amaranth's simulator, stall-free, through the layer harnesses: GPT-2 prefill chunks
below and above one token tile, decode steps after a prefill (gated on the previous tensor's
output, each tensor timed on its own), BERT sentences of seq rows and fewer (seq 6 with lanes
4 too), and parallelism that makes the gearboxes
narrow and widen, the V cache take several cycles per beat and the GEMMs input- or
compute-bound; and layers whose linear stages run on the decode GEMV.

The issue's bar is 5 %, its aim 2 %; the tests hold the aim. Every case measured so far is
exact (0.00 %, totals and every tensor); the error is printed (``pytest -s``)."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.flows.verify import verify
from llmloom.hw.layers.config import LayerConfig
from llmloom.perf.cycles import BLOCK_CYCLES, BLOCK_TIMING, layer_timing
from llmloom.sim.blocks.layers import BertLayerHarness, Gpt2BlockHarness

TOLERANCE = 0.02

#: every array 2×2, lanes 2: token tiles of two rows
TILE2 = dict(lanes=2, linear_rows=2, linear_cols=2, ffn_rows=2, ffn_cols=2, qk_rows=2,
             qk_cols=2, pv_rows=2, pv_cols=2)
#: arrays wider than the lanes (narrowing gearboxes), token tiles of 3 rows
WIDE = dict(lanes=2, linear_rows=3, linear_cols=4, ffn_rows=3, ffn_cols=8, qk_rows=3,
            qk_cols=4, pv_rows=2, pv_cols=4)
#: lanes 4: the linear and Q·Kᵀ gearboxes narrow 8 → 4, P·V's widens 2 → 4 (and its 2
#: columns make every V beat two cache writes); one-row Q·Kᵀ and FFN token tiles
MIXED = dict(lanes=4, linear_rows=4, linear_cols=8, ffn_rows=1, ffn_cols=4, qk_rows=1,
             qk_cols=8, pv_rows=4, pv_cols=2)
#: one lane: input-bound arrays (k beats per row), tall thin linear arrays
THIN = dict(lanes=1, linear_rows=4, linear_cols=1, ffn_rows=1, ffn_cols=8, qk_rows=4,
            qk_cols=1, pv_rows=1, pv_cols=4)


def float_weights(rng, d, ff):
    def n(*shape, s=0.3):
        return rng.normal(0.0, s, shape)
    w = {name: n(d, d) for name in ("wq", "wk", "wv", "wo")}
    w.update({f"b{c}": n(d, s=0.1) for c in "qkvo"})
    w.update(w1=n(d, ff), b1=n(ff, s=0.1), w2=n(ff, d), b2=n(d, s=0.1))
    for ln in ("ln1", "ln2"):
        w[f"{ln}_g"], w[f"{ln}_b"] = 1 + n(d, s=0.1), n(d, s=0.1)
    return w


def measure_and_predict(rng, arch, par, rows, *, d=8, ff=16, heads=2, seq=8, prefill=None):
    """``(sizes, measured RunResult, timing document)`` of one run (the verification
    service's: ``LayerTiming.as_dict()``); prints the comparison."""
    harness = Gpt2BlockHarness() if arch == "gpt2" else BertLayerHarness()
    mode = "decode" if prefill is not None else "prefill"
    h = harness.options(weights=float_weights(rng, d, ff), mode=mode, prefill=prefill)
    x = rng.normal(0.0, 1.0, (rows, d)).astype(np.float32)
    cfg = h.config({"heads": heads, "seq": seq, "d_ff": ff, **par}, {"x": x})
    v = verify(h, cfg, {"x": x})
    assert v.mismatches["y_int"] == 0
    result, timing = v.result, v.timing
    (sizes,) = h.shape_args(cfg, v.prepared)
    assert BLOCK_CYCLES[h.name](cfg, sizes) == timing["cycles"] == v.predicted_cycles
    err = (timing["cycles"] - result.cycles) / result.cycles
    print(f"\n{h.name} d={d} ff={ff} heads={heads} seq={seq} {par} sizes={sizes}: measured "
          f"{result.cycles} {result.tensor_cycles}, predicted {timing['cycles']} "
          f"{timing['tensor_cycles']} ({100 * err:+.2f} %), bottleneck {timing['bottleneck']}")
    return sizes, result, timing


def check(sizes, result, timing):
    assert len(result.tensor_cycles) == len(timing["tensor_cycles"]) == len(sizes)
    # gated tensors meet an empty pipeline: the run is the sum of its tensors
    assert sum(result.tensor_cycles) == result.cycles
    assert abs(timing["cycles"] - result.cycles) <= TOLERANCE * result.cycles
    for got, want in zip(timing["tensor_cycles"], result.tensor_cycles, strict=True):
        assert abs(got - want) <= TOLERANCE * want


@pytest.mark.parametrize("par, rows", [
    (TILE2, 1),          # one row: every stage sees a partial token tile
    (TILE2, 5),          # three token tiles in every array
    (MIXED, 3),          # below the linear tile (4), above the Q·Kᵀ/FFN tile (1)
], ids=["tile2-l1", "tile2-l5", "mixed-l3"])
def test_gpt2_prefill(par, rows, rng):
    check(*measure_and_predict(rng, "gpt2", par, rows))


def test_gpt2_decode_after_prefill(rng):
    sizes, result, timing = measure_and_predict(rng, "gpt2", WIDE, 7, prefill=5)
    assert sizes == (5, 1, 1)
    check(sizes, result, timing)
    # every decode step takes the same time, whatever its position
    assert result.tensor_cycles[1] == result.tensor_cycles[2]


@pytest.mark.parametrize("par", [TILE2, WIDE], ids=["tile2", "wide"])
def test_bert_layer(par, rng):
    check(*measure_and_predict(rng, "bert", par, 8))


#: lanes 4 at d 16: with seq 6, score rows of two beats, the last padded
LANES4 = dict(lanes=4, linear_rows=2, linear_cols=4, ffn_rows=2, ffn_cols=4, qk_rows=2,
              qk_cols=4, pv_rows=2, pv_cols=4)


@pytest.mark.parametrize("par, rows, dims", [
    (TILE2, 3, {}),
    (LANES4, 5, dict(d=16, ff=32, seq=8)),
    (LANES4, 5, dict(d=16, ff=32, seq=6)),
], ids=["tile2-n3-seq8", "lanes4-n5-seq8", "lanes4-n5-seq6"])
def test_bert_sentence_shorter_than_seq(par, rows, dims, rng):
    """A sentence of fewer rows than seq (its keys past it masked): predicted exactly."""
    sizes, result, timing = measure_and_predict(rng, "bert", par, rows, **dims)
    assert sizes == (rows,)
    check(sizes, result, timing)
    assert timing["cycles"] == result.cycles


#: the decode engine on every linear stage; lanes 1 with 8 columns: the gearbox takes 8 cycles
#: per result, longer than FFN1's 4 steps, so the GEMV stalls on its output
GEMV = dict(engine="gemv", lanes=1, linear_rows=2, linear_cols=8, ffn_rows=2, ffn_cols=8,
            qk_rows=2, qk_cols=2, pv_rows=2, pv_cols=2)
needs_gemv = pytest.mark.skipif(not hasattr(LayerConfig, "linear"),
                                reason="LayerConfig has no engine choice yet")


@needs_gemv
def test_gpt2_gemv_decode_after_prefill(rng):
    sizes, result, timing = measure_and_predict(rng, "gpt2", GEMV, 4, prefill=3)
    assert sizes == (3, 1)
    check(sizes, result, timing)


@pytest.mark.slow
@needs_gemv
@pytest.mark.parametrize("arch, par, rows, prefill", [
    ("gpt2", dict(GEMV, lanes=2, linear_rows=2, linear_cols=2, ffn_rows=4, ffn_cols=4), 5,
     None),
    ("gpt2", dict(GEMV, lanes=2, linear_cols=8, ffn_rows=8, ffn_cols=1), 6, 4),
    ("bert", dict(GEMV, lanes=2, linear_rows=4, linear_cols=4, ffn_rows=4), 8, None),
], ids=["gpt2-l5", "gpt2-decode", "bert"])
def test_gemv_layer_sweep(arch, par, rows, prefill, rng):
    check(*measure_and_predict(rng, arch, par, rows, prefill=prefill))


@pytest.mark.parametrize("arch, engines, rows, prefill", [
    ("gpt2", 2, 7, 5),           # a prefill then two decode steps, heads in parallel
    ("bert", 2, 8, None),
], ids=["gpt2-decode", "bert"])
def test_layer_heads_in_parallel(arch, engines, rows, prefill, rng):
    """``head_engines``: the attention's heads in rounds of engines in lock step."""
    check(*measure_and_predict(rng, arch, dict(WIDE, head_engines=engines), rows,
                               prefill=prefill))


@pytest.mark.slow
@pytest.mark.parametrize("arch, par, rows, prefill, dims", [
    ("gpt2", THIN, 8, None, dict(seq=8)),
    ("bert", THIN, 8, None, dict(seq=8)),
    ("gpt2", MIXED, 8, 6, dict(seq=8)),
    ("gpt2", dict(lanes=4, linear_rows=4, linear_cols=8, ffn_rows=2, ffn_cols=16, qk_rows=4,
                  qk_cols=8, pv_rows=4, pv_cols=2), 16, None, dict(d=16, ff=64, seq=16)),
    ("gpt2", dict(lanes=1, linear_rows=4, linear_cols=8, ffn_rows=4, ffn_cols=4, qk_rows=2,
                  qk_cols=4, pv_rows=4, pv_cols=4), 12, None,
     dict(d=16, ff=32, heads=4, seq=16)),
    ("gpt2", dict(lanes=2, linear_rows=8, linear_cols=1, ffn_rows=1, ffn_cols=8, qk_rows=8,
                  qk_cols=2, pv_rows=3, pv_cols=8), 16, 13, dict(d=16, ff=64, seq=16)),
    ("gpt2", dict(lanes=1, linear_rows=4, linear_cols=4, ffn_rows=4, ffn_cols=16, qk_rows=4,
                  qk_cols=4, pv_rows=4, pv_cols=2), 16, None, dict(d=16, ff=64, seq=16)),
    ("bert", dict(lanes=4, linear_rows=4, linear_cols=16, ffn_rows=4, ffn_cols=16,
                  qk_rows=4, qk_cols=16, pv_rows=4, pv_cols=8), 16, None,
     dict(d=16, ff=64, seq=16)),
    ("bert", dict(lanes=1, linear_rows=2, linear_cols=2, ffn_rows=8, ffn_cols=8, qk_rows=4,
                  qk_cols=1, pv_rows=1, pv_cols=4), 16, None,
     dict(d=16, ff=32, heads=4, seq=16)),
], ids=["gpt2-thin", "bert-thin", "gpt2-mixed-decode", "gpt2-d16-vslow", "gpt2-d16-lanes1",
        "gpt2-d16-decode", "gpt2-d16-balanced", "bert-d16-wide", "bert-d16-lanes1"])
def test_layer_sweep(arch, par, rows, prefill, dims, rng):
    check(*measure_and_predict(rng, arch, par, rows, prefill=prefill, **dims))


def test_layers_registered():
    from llmloom.perf.cycles import bert_layer_cycles, gpt2_block_cycles
    assert BLOCK_CYCLES["gpt2-block"] is gpt2_block_cycles
    assert BLOCK_CYCLES["bert-layer"] is bert_layer_cycles
    assert BLOCK_TIMING["gpt2-block"] is BLOCK_TIMING["bert-layer"] is layer_timing
