"""The KV cache's generated Verilog on Icarus and Verilator: readouts bit-exact with the
golden model under stalls, and the same cycle count as Amaranth's simulator."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.blocks.kvcache import KvCacheConfig
from llmloom.perf.cycles import kvcache_cycles
from llmloom.sim.blocks.kvcache import KvCacheHarness
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

H = KvCacheHarness()
# One config (one Verilator build): V beats cut at tile and head boundaries, a partial
# position tile.
CFG = KvCacheConfig(d_model=16, heads=4, seq=9, lanes=4, qk_cols=2, pv_cols=3)


@pytest.mark.parametrize("stall, n", [("none", 9), ("pattern", 4), ("random", 7)])
def test_kvcache_on_hdl_simulators(hdl_sim, stall, n, rng):
    k = rng.integers(-128, 128, (n, CFG.d_model), dtype=np.int8)
    v = rng.integers(-128, 128, (n, CFG.d_model), dtype=np.int8)
    tensors = {"k": k, "v": v, "heads": np.array([2, 0, 3, 1, 2])}
    seed = int(rng.integers(1 << 30))
    result = run_block(H, CFG, tensors, sim=hdl_sim, stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    want = H.golden(CFG, H.prepare(CFG, tensors))
    for name in ("kt", "vh"):
        np.testing.assert_array_equal(result.outputs[name], want[name])
    reference = run_block(H, CFG, tensors, stalls_in=Stalls(stall, seed),
                          stalls_out=Stalls(stall, seed + 1))
    assert result.cycles == reference.cycles
    if stall == "none":
        assert result.cycles == kvcache_cycles(CFG, 5)
