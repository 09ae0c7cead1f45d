"""The LLaMA-class block with row exponents on its residual stream (``stream_exponent``) as
generated Verilog, through the ``llama-block`` harness (its ``i_e`` and ``o_e`` streams): on
Icarus and Verilator under random stalls, bit-exact with ``layer_bitexact`` (values and
exponents); stall-free on Verilator, the cycles of the pipeline model (``perf.cycles``)."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.perf.cycles import BLOCK_CYCLES, layer_timing
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

from ..hw.test_llama_row_exponents import row_exponent_case


# Verilator runs this by default; Icarus with --runslow: the row exponents' Verilog runs on
# Icarus under random stalls, bit-exact and in Verilator's cycles, in the W4 case of
# tests/sim/test_llama_block_hdl.py (the block generate --quant W4A8 builds, 4 rows), and the
# 8-bit GEMMs on Icarus in its static case.
@pytest.mark.parametrize("hdl_sim", [pytest.param("icarus", marks=pytest.mark.slow),
                                     "verilator"], indirect=True)
def test_llama_row_exponents_on_hdl_simulators(hdl_sim, rng):
    h, cfg, t = row_exponent_case(rng)
    result = run_block(h, cfg, t, sim=hdl_sim, stalls_in=Stalls("random", 11),
                       stalls_out=Stalls("random", 12))
    golden = h.golden(cfg, h.prepare(cfg, t))
    assert golden["y_e"].max() > 0
    for k in ("y", "y_int", "y_e"):
        np.testing.assert_array_equal(result.outputs[k], golden[k])


def test_llama_row_exponents_stall_free_cycles_are_predicted(verilator_sim, rng):
    h, cfg, t = row_exponent_case(rng)
    prep = h.prepare(cfg, t)
    result = run_block(h, cfg, t, sim=verilator_sim)
    golden = h.golden(cfg, prep)
    for k in ("y_int", "y_e"):
        np.testing.assert_array_equal(result.outputs[k], golden[k])
    sizes = h.shape_args(cfg, prep)[0]
    assert result.cycles == BLOCK_CYCLES["llama-block"](cfg, sizes)
    assert list(result.tensor_cycles) == layer_timing(cfg, sizes).tensor_cycles
