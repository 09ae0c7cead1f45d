"""The LLaMA-class block with row exponents on its residual stream (``stream_exponent``: the
layer's ``i_e`` and ``o_e``, each residual's row quantiser, the norms' per-row epsilon) on
Amaranth's simulator through the ``llama-block`` harness: a prefill then decode steps, with a
row a thousand times the others (whose exponents are then > 0), bit-exact with
``layer_bitexact`` (values and exponents) under stalls (stall-free, the cycles of the pipeline
model, per tensor, run on Verilator: ``tests/sim/test_llama_row_exponents_hdl.py``, the same
RTL, built once, seconds)."""

from __future__ import annotations

import numpy as np

from llmloom.sim.blocks.layers import LlamaBlockHarness
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

from .test_llama_block import PAR, D, llama_weights

E = 15


def row_exponent_case(rng, rows=6, prefill=4, e_max=E, weight_bits=8):
    """``(harness, cfg, tensors)``: the first row 1000× the others'; ``weight_bits`` 4: W4A8,
    as ``generate --quant W4A8`` quantises its layers."""
    h = LlamaBlockHarness().options(weights=llama_weights(rng), mode="decode", prefill=prefill)
    x = rng.normal(0.0, 1.0, (rows, D))
    x[0] *= 1000.0
    x = x.astype(np.float32)
    cfg = h.config({**PAR, "scheme": "dynamic", "stream_exponent": e_max,
                    "weight_bits": weight_bits}, {"x": x})
    return h, cfg, {"x": x}


def test_llama_block_with_row_exponents(rng):
    h, cfg, t = row_exponent_case(rng)
    prep = h.prepare(cfg, t)
    assert prep["x_e"].max() > 0
    seed = int(rng.integers(1 << 30))
    result = run_block(h, cfg, t, stalls_in=Stalls("random", seed),
                       stalls_out=Stalls("random", seed + 1))
    golden = h.golden(cfg, prep)
    assert golden["y_e"].max() > 0
    for k in ("y", "y_int", "y_e"):
        np.testing.assert_array_equal(result.outputs[k], golden[k])
