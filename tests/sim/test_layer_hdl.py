"""The composed layers' generated Verilog on Icarus and Verilator, through the ``gpt2-block``
and ``bert-layer`` harnesses (float x in, as the CLI runs them): a GPT-2 prefill then a decode
step in one run, and a BERT tensor, bit-exact with ``layer_bitexact`` and with the same cycle
count as Amaranth's simulator."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.sim.blocks.layers import BertLayerHarness, Gpt2BlockHarness
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

D, FF, HEADS, SEQ = 8, 16, 2, 4
PAR = dict(lanes=2, linear_rows=2, linear_cols=2, ffn_rows=2, ffn_cols=2, qk_rows=2,
           qk_cols=2, pv_rows=2, pv_cols=2)


def _float_weights(rng):
    def n(*shape, s=0.3):
        return rng.normal(0.0, s, shape)
    w = {name: n(D, D) for name in ("wq", "wk", "wv", "wo")}
    w.update({f"b{c}": n(D, s=0.1) for c in "qkvo"})
    w.update(w1=n(D, FF), b1=n(FF, s=0.1), w2=n(FF, D), b2=n(D, s=0.1))
    for ln in ("ln1", "ln2"):
        w[f"{ln}_g"], w[f"{ln}_b"] = 1 + n(D, s=0.1), n(D, s=0.1)
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
