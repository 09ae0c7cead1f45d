"""The GEMV's Verilog on Icarus and Verilator: bit-exact under stalls, same cycles."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.blocks.gemv import GemvConfig
from llmloom.perf.cycles import gemv_cycles
from llmloom.sim.blocks.gemv import GemvHarness
from llmloom.sim.golden.gemm import gemm_bitexact
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

CONFIGS = {
    "k10_l2": GemvConfig(rows=4, cols=3, k=10, n=7, lanes=2),
    # lanes=4 does not divide k=13: the last beat of each row is padded
    "k13_l4": GemvConfig(rows=4, cols=3, k=13, n=7, lanes=4),
}


@pytest.mark.parametrize("stall", ["none", "pattern", "random"])
@pytest.mark.parametrize("m", [1, 4])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_gemv_on_hdl_simulators(hdl_sim, name, m, stall, rng):
    cfg = CONFIGS[name]
    a = rng.integers(-128, 128, (m, cfg.k), dtype=np.int8)
    w = rng.integers(-128, 128, (cfg.k, cfg.n), dtype=np.int8)
    result = run_block(GemvHarness(), cfg, {"a": a, "w": w}, sim=hdl_sim,
                       stalls_in=Stalls(stall, 5), stalls_out=Stalls(stall, 6))
    np.testing.assert_array_equal(result.outputs["c"], gemm_bitexact(cfg, a, w))
    if stall == "none":
        assert result.cycles == gemv_cycles(cfg, m)
