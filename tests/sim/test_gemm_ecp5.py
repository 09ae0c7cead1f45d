"""The GEMM as elaborated for ECP5 (MULT18X18D with its own registers) on Icarus and Verilator,
with the multiplier's model from ``sim.vendor``: bit-exact with the golden model, and the same
cycles as the portable RTL."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from llmloom.hw.blocks.gemm import Gemm, GemmConfig
from llmloom.hw.emit import FamilyHint, emit_verilog
from llmloom.sim.blocks.gemm import GemmHarness
from llmloom.sim.golden.gemm import gemm_bitexact
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls
from llmloom.sim.tools import tool_env
from llmloom.sim.vendor import family_sources

H = GemmHarness()
CFG = GemmConfig(rows=3, cols=4, k=12, n=9, lanes=4)


def test_ecp5_elaboration_uses_the_registered_multiplier():
    ecp5 = emit_verilog(Gemm(CFG), platform=FamilyHint("ecp5"))
    assert ecp5.count("MULT18X18D #(") == CFG.rows * CFG.cols
    for reg in ("INPUTA", "INPUTB", "OUTPUT"):
        assert f'.REG_{reg}_CLK("CLK0")' in ecp5
    assert '.REG_PIPELINE_CLK("NONE")' in ecp5
    # B from the B pins: a documented SOURCEB_MODE (B_INPUT, once here, cannot be packed)
    assert ecp5.count('.SOURCEB_MODE("B_SHIFT")') == CFG.rows * CFG.cols
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


@pytest.mark.parametrize("params, message", [
    ('.SOURCEB_MODE("B_SHIFT"), .REG_INPUTB_CLK("CLK0")', None),
    ('.SOURCEB_MODE("B_INPUT")', "B_INPUT is not a documented SOURCEB_MODE (one of B_SHIFT, "
                                 "C_SHIFT, B_C_DYNAMIC, HIGHSPEED)"),
    ('.SOURCEB_MODE("C_SHIFT")', "SOURCEB_MODE=C_SHIFT is not modelled (only B_SHIFT)"),
    ('.REG_OUTPUT_CE("CE2")', "REG_OUTPUT_CE=CE2 is not modelled (only CE0)"),
])
def test_the_multiplier_model_stops_on_a_mode_it_does_not_simulate(params, message, tmp_path):
    """The model refuses what the ECP5 does not document or the model does not implement,
    rather than simulating it as something else (Icarus alone: the check is in the model)."""
    if not shutil.which("iverilog", path=tool_env()["PATH"]):
        pytest.skip("iverilog is not installed")
    (tmp_path / "model.v").write_text(family_sources("ecp5")["ecp5_mult18x18d.v"])
    (tmp_path / "tb.v").write_text(
        "module tb; reg clk = 0;\n"
        f"  MULT18X18D #({params}) m (.CLK0(clk), .CE0(1'b1), .RST0(1'b0),\n"
        "    .SOURCEA(1'b0), .SOURCEB(1'b0), .SIGNEDA(1'b1), .SIGNEDB(1'b1));\n"
        "  initial begin #1 clk = 1; #1 $display(\"ran\"); $finish; end\n"
        "endmodule\n")
    env = tool_env()
    subprocess.run(["iverilog", "-g2012", "-o", "tb.vvp", "tb.v", "model.v"], cwd=tmp_path,
                   env=env, check=True, capture_output=True)
    run = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, check=False)
    if message is None:
        assert "ran" in run.stdout and "FATAL" not in run.stdout
    else:
        assert message in run.stdout and "ran" not in run.stdout


def test_grouped_w4_on_ecp5_multiplies_codes(rng):
    """``weight_groups``: the PEs multiply codes, one MULT18X18D each with its own registers
    (the groups' scales and minima are applied after the array, where Yosys infers their
    multipliers); bit-exact on Icarus with the multiplier's model, in the portable RTL's
    cycles."""
    cfg = GemmConfig(rows=2, cols=3, k=32, n=4, lanes=4, w_width=4, weight_groups=True)
    ecp5 = emit_verilog(Gemm(cfg), platform=FamilyHint("ecp5"))
    assert ecp5.count("MULT18X18D #(") == cfg.rows * cfg.cols
    lo, hi = -(1 << 15), (1 << 15) - 1
    t = {"a": rng.integers(-128, 128, (5, 32), dtype=np.int8),
         "w": rng.integers(0, 16, (32, 4), dtype=np.int8),
         "group_scale": np.array([[lo, hi, lo, 1234]], dtype=np.int16),
         "group_min": np.array([[lo, hi, hi, -4321]], dtype=np.int16)}
    t["a"][0], t["a"][1], t["w"][:, :2] = -128, 127, 15      # the extremes of W' = D·q + M
    kw = dict(stalls_in=Stalls("random", 5), stalls_out=Stalls("random", 6))
    result = run_block(H, cfg, t, sim="icarus", family="ecp5", **kw)
    np.testing.assert_array_equal(result.outputs["c"], H.golden(cfg, H.prepare(cfg, t))["c"])
    assert result.cycles == run_block(H, cfg, t, sim="amaranth", **kw).cycles
