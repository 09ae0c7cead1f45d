"""The dynamic numerics scheme (int16 residual stream, per-token int8 inputs of the linear
stages) composed in RTL: GPT-2 and BERT layers bit-exact with ``layer_bitexact`` under stalls,
with the cycles the pipeline model predicts, on Amaranth's simulator, Icarus and Verilator."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.flows.verify import verify
from llmloom.hw.layers.common import exponent_depth
from llmloom.sim.blocks.layers import BertLayerHarness, Gpt2BlockHarness
from llmloom.sim.streams import Stalls
from llmloom.sim.weights import random_layer_weights

D, FF, HEADS = 16, 32, 2
PAR = dict(lanes=2, linear_rows=2, linear_cols=2, ffn_rows=2, ffn_cols=2, qk_rows=2,
           qk_cols=2, pv_rows=2, pv_cols=2, scheme="dynamic")


def _run(harness, rng, rows, seq, sim, stalls="none", **fields):
    w = random_layer_weights(D, FF, rng)
    x = rng.normal(0.0, 1.0, (rows, D)).astype(np.float32)
    h = harness.options(weights=w, mode=harness.mode)
    cfg = h.config({"heads": HEADS, "seq": seq, **PAR, **fields}, {"x": x})
    return cfg, verify(h, cfg, {"x": x}, sim=sim, stalls_in=Stalls(stalls, 3),
                       stalls_out=Stalls(stalls, 4))


@pytest.mark.parametrize("harness, rows, seq", [
    (Gpt2BlockHarness().options(mode="decode"), 6, 8),
    (BertLayerHarness(), 5, 6),             # a sentence shorter than seq
], ids=["gpt2-prefill+decode", "bert-5-of-6"])
@pytest.mark.parametrize("stalls", ["none", "random"])
def test_dynamic_layer_on_amaranth(harness, rows, seq, stalls, rng):
    if stalls == "random" and harness.arch == "gpt2":
        pytest.skip("GPT-2 under random stalls runs on Icarus and Verilator below")
    cfg, v = _run(harness, rng, rows, seq, "amaranth", stalls)
    assert cfg.description.of_kind("quant")
    assert v.exact
    assert v.outputs["y_int"].dtype == np.int16            # the wide residual stream
    assert v.float_metrics["cosine_vs_float"] > 0.9999
    if stalls == "none":
        assert v.predicted_cycles == v.cycles
        assert v.timing["tensor_cycles"] == v.result.tensor_cycles


def test_dynamic_layer_on_the_gemv_engine(rng):
    cfg, v = _run(Gpt2BlockHarness().options(mode="decode"), rng, 4, 8, "amaranth", "random",
                  engine="gemv")
    assert v.exact
    # the GEMV holds 4 rows whatever its size: the exponent queue follows the engine
    assert exponent_depth(cfg, cfg.description["q"]) == 4 + 4


@pytest.mark.parametrize("harness, rows, seq", [
    (Gpt2BlockHarness().options(mode="decode"), 6, 8),
    (BertLayerHarness(), 5, 6),
], ids=["gpt2-prefill+decode", "bert-5-of-6"])
def test_dynamic_layer_on_hdl_simulators(hdl_sim, harness, rows, seq, rng):
    if harness.arch == "bert":
        pytest.skip("BERT under random stalls runs on Amaranth's simulator above")
    _, v = _run(harness, rng, rows, seq, hdl_sim, "random")
    assert v.exact


@pytest.mark.parametrize("hdl_sim", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)],
                         indirect=True)
def test_dynamic_bert_int9_linear_inputs_on_hdl_simulators(hdl_sim, rng):
    """BERT's dynamic layer reads its linear stages' per-token inputs as int9 (the
    description's ``narrow``): the int9 quantisers, engines and re-quantisers in Verilog
    equal the bit-exact model (a sentence shorter than seq, no stalls). Icarus runs it by
    default; Verilator (with --runslow) runs the same Verilog without stalls, but a model
    built for this one test cost over two minutes of a loaded CI machine."""
    cfg, v = _run(BertLayerHarness(), rng, 5, 6, hdl_sim)
    assert cfg.linear("q").a_width == 9 and cfg.quant("quant_g").out_width == 9
    assert v.exact


def test_dynamic_bert_int9_linear_inputs_on_the_gemv_engine(rng):
    cfg, v = _run(BertLayerHarness(), rng, 5, 6, "amaranth", "random", engine="gemv")
    assert cfg.linear("f2").a_width == 9 and cfg.engine == "gemv"
    assert v.exact
