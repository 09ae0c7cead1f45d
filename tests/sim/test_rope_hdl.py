"""The RoPE block's generated Verilog on Icarus and Verilator through cocotb: bit-exact with
the golden model under stalls (the position driven on the ``pos`` port), and the same cycle
count as Amaranth's simulator and the config's closed form. One config per simulator keeps the
Verilator builds to one."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.blocks.rope import RopeConfig
from llmloom.sim.harness import get_harness
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

CFG = RopeConfig(length=24, d_head=8, lanes=4, positions=48, base=100000.0, x_scale=0.05,
                 out_scale=0.04)


@pytest.mark.parametrize("stall", ["none", "pattern", "random"])
def test_rope_on_hdl_simulators(hdl_sim, stall, rng):
    h = get_harness("rope")
    rows = 7
    x = rng.integers(-128, 128, (rows, CFG.length))
    x[0], x[1], x[2] = -128, 127, 0                   # edge rows
    tensors = {"x": x.astype(np.int8), "pos": 40}
    seed = int(rng.integers(1 << 30))
    stalls = dict(stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    result = run_block(h, CFG, tensors, sim=hdl_sim, **stalls)
    golden = h.golden(CFG, h.prepare(CFG, tensors))
    for key in golden:
        assert np.array_equal(result.outputs[key], golden[key]), key
    reference = run_block(h, CFG, tensors, sim="amaranth", **stalls)
    assert result.cycles == reference.cycles
    if stall == "none":
        assert result.cycles == CFG.cycles(rows)
