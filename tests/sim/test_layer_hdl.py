"""The composed layers' generated Verilog on Icarus and Verilator, through the ``gpt2-block``
and ``bert-layer`` harnesses (float x in, as the CLI runs them): a GPT-2 prefill then a decode
step in one run, and a BERT tensor (also sentences shorter than seq, and seq 6 with lanes 4, on
Icarus), bit-exact with ``layer_bitexact`` and with the same cycle count as Amaranth's
simulator."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.sim.blocks.layers import BertLayerHarness, Gpt2BlockHarness
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

D, FF, HEADS, SEQ = 8, 16, 2, 4
PAR = dict(lanes=2, linear_rows=2, linear_cols=2, ffn_rows=2, ffn_cols=2, qk_rows=2,
           qk_cols=2, pv_rows=2, pv_cols=2)


def _float_weights(rng, d=D, ff=FF):
    def n(*shape, s=0.3):
        return rng.normal(0.0, s, shape)
    w = {name: n(d, d) for name in ("wq", "wk", "wv", "wo")}
    w.update({f"b{c}": n(d, s=0.1) for c in "qkvo"})
    w.update(w1=n(d, ff), b1=n(ff, s=0.1), w2=n(ff, d), b2=n(d, s=0.1))
    for ln in ("ln1", "ln2"):
        w[f"{ln}_g"], w[f"{ln}_b"] = 1 + n(d, s=0.1), n(d, s=0.1)
    return w


@pytest.mark.parametrize("harness", [
    Gpt2BlockHarness().options(mode="decode"),
    # a second Verilator build of a whole layer (~70 s cold): the RTL tests cover BERT
    pytest.param(BertLayerHarness(), marks=pytest.mark.slow),
], ids=["gpt2-prefill+decode", "bert"])
def test_layer_on_hdl_simulators(hdl_sim, harness, rng):
    h = harness.options(weights=_float_weights(rng), mode=harness.mode)
    x = rng.normal(0.0, 1.0, (SEQ, D)).astype(np.float32)
    cfg = h.config({"heads": HEADS, "seq": SEQ, **PAR}, {"x": x})
    stalls = dict(stalls_in=Stalls("pattern"), stalls_out=Stalls("random", 7))
    result = run_block(h, cfg, {"x": x}, sim=hdl_sim, **stalls)
    golden = h.golden(cfg, h.prepare(cfg, {"x": x}))
    for k in ("y", "y_int"):
        np.testing.assert_array_equal(result.outputs[k], golden[k])
    assert result.cycles == run_block(h, cfg, {"x": x}, **stalls).cycles


@pytest.mark.parametrize("seq, rows, stall", [(8, 3, "random"), (6, 5, "pattern")],
                         ids=["s8n3", "s6n5"])
def test_bert_sentence_shorter_than_seq_on_icarus(seq, rows, stall, rng):
    from .test_attention_hdl import require_simulator

    d = 16
    h = BertLayerHarness().options(weights=_float_weights(rng, 16, 32))
    x = rng.normal(0.0, 1.0, (seq, d)).astype(np.float32)
    par = dict(lanes=4, linear_rows=2, linear_cols=4, ffn_rows=2, ffn_cols=4, qk_rows=2,
               qk_cols=4, pv_rows=2, pv_cols=4)
    cfg = h.config({"heads": 2, "seq": seq, **par}, {"x": x})     # calibrated on seq rows
    stalls = dict(stalls_in=Stalls(stall, 5), stalls_out=Stalls(stall, 6))
    result = run_block(h, cfg, {"x": x[:rows]}, sim=require_simulator("icarus"), **stalls)
    golden = h.golden(cfg, h.prepare(cfg, {"x": x[:rows]}))
    np.testing.assert_array_equal(result.outputs["y_int"], golden["y_int"])
    assert result.cycles == run_block(h, cfg, {"x": x[:rows]}, **stalls).cycles
