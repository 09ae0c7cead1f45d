"""The RoPE block's generated Verilog on Icarus and Verilator through cocotb: bit-exact with
the golden model under stalls (the position driven on the ``pos`` port), and the same cycle
count as Amaranth's simulator and the config's closed form, with int8 and with int16 input.
One config per input width keeps the Verilator builds to two."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.blocks.rope import RopeConfig
from llmloom.sim.harness import get_harness
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

CFG = RopeConfig(length=24, d_head=8, lanes=4, positions=48, base=100000.0, x_scale=0.05,
                 out_scale=0.04)
#: int16 in (q and k of LLaMA's dynamic scheme): 33-bit sums of 16 × 16-bit products.
CFG16 = RopeConfig(length=24, d_head=8, lanes=4, positions=48, base=100000.0, x_scale=2e-4,
                   out_scale=0.04, in_width=16)


@pytest.mark.parametrize("cfg", [CFG, CFG16], ids=["int8", "int16"])
@pytest.mark.parametrize("stall", ["none", "pattern", "random"])
def test_rope_on_hdl_simulators(hdl_sim, stall, cfg, rng):
    h = get_harness("rope")
    rows = 7
    lo, hi = cfg.IN.min, cfg.IN.max
    x = rng.integers(lo, hi + 1, (rows, cfg.length))
    x[0], x[1], x[2] = lo, hi, 0                      # edge rows
    tensors = {"x": x.astype(cfg.IN.dtype), "pos": 40}
    seed = int(rng.integers(1 << 30))
    stalls = dict(stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    result = run_block(h, cfg, tensors, sim=hdl_sim, **stalls)
    golden = h.golden(cfg, h.prepare(cfg, tensors))
    for key in golden:
        assert np.array_equal(result.outputs[key], golden[key]), key
    reference = run_block(h, cfg, tensors, sim="amaranth", **stalls)
    assert result.cycles == reference.cycles
    if stall == "none":
        assert result.cycles == cfg.cycles(rows)
