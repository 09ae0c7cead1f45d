"""The GEMM as elaborated for ECP5 (MULT18X18D with its own registers) on Icarus and Verilator,
with the multiplier's model from ``sim.vendor``: bit-exact with the golden model, and the same
cycles as the portable RTL."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.blocks.gemm import Gemm, GemmConfig
from llmloom.hw.emit import FamilyHint, emit_verilog
from llmloom.sim.blocks.gemm import GemmHarness
from llmloom.sim.golden.gemm import gemm_bitexact
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls
from llmloom.sim.vendor import family_sources

H = GemmHarness()
CFG = GemmConfig(rows=3, cols=4, k=12, n=9, lanes=4)


def test_ecp5_elaboration_uses_the_registered_multiplier():
    ecp5 = emit_verilog(Gemm(CFG), platform=FamilyHint("ecp5"))
    assert ecp5.count("MULT18X18D #(") == CFG.rows * CFG.cols
    for reg in ("INPUTA", "INPUTB", "OUTPUT"):
        assert f'.REG_{reg}_CLK("CLK0")' in ecp5
    assert '.REG_PIPELINE_CLK("NONE")' in ecp5
    # elsewhere (and in simulation) the portable multiplier
    assert "MULT18X18D" not in emit_verilog(Gemm(CFG))
    assert "MULT18X18D" not in emit_verilog(Gemm(CFG), platform=FamilyHint("ice40"))
    # packed PEs need a 27-bit operand: portable on ECP5 too
    packed = CFG.replace(dsp_packing=True)
    assert "MULT18X18D" not in emit_verilog(Gemm(packed), platform=FamilyHint("ecp5"))


@pytest.mark.parametrize("stall", ["none", "pattern", "random"])
def test_ecp5_gemm_on_hdl_simulators(hdl_sim, stall, rng):
    m = 7
    a = rng.integers(-128, 128, (m, CFG.k), dtype=np.int8)
    w = rng.integers(-128, 128, (CFG.k, CFG.n), dtype=np.int8)
    a[0], w[:, 0] = -128, -128                          # the largest product, both signs
    a[1], w[:, 1] = 127, -128
    seed = int(rng.integers(1 << 30))
    kw = dict(stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    result = run_block(H, CFG, {"a": a, "w": w}, sim=hdl_sim, family="ecp5", **kw)
    np.testing.assert_array_equal(result.outputs["c"], gemm_bitexact(CFG, a, w))
    portable = run_block(H, CFG, {"a": a, "w": w}, sim="amaranth", **kw)
    assert result.cycles == portable.cycles


def test_nine_bit_activations_on_ecp5(rng):
    cfg = GemmConfig(rows=2, cols=3, k=8, n=5, lanes=4, a_width=9)
    p = rng.integers(0, 256, (5, 8)).astype(np.uint8)
    v = rng.integers(-128, 128, (8, 5), dtype=np.int8)
    result = run_block(H, cfg, {"a": p, "w": v}, sim="icarus", family="ecp5",
                       stalls_in=Stalls("random", 3), stalls_out=Stalls("random", 4))
    np.testing.assert_array_equal(result.outputs["c"], gemm_bitexact(cfg, p, v))


def test_family_errors():
    with pytest.raises(ValueError, match="Amaranth's simulator cannot run; allowed simulators: "
                                         "icarus, verilator"):
        run_block(H, CFG, {"a": np.zeros((1, CFG.k), np.int8),
                           "w": np.zeros((CFG.k, CFG.n), np.int8)}, family="ecp5")
    with pytest.raises(ValueError, match="no simulation models for family 'gowin'; families "
                                         "with models: ecp5"):
        family_sources("gowin")
