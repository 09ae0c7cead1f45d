"""The GEMM's generated Verilog on Icarus and Verilator through cocotb: bit-exact with the
golden model under stalls, and the same cycle count as Amaranth's simulator."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.blocks.gemm import GemmConfig
from llmloom.perf.cycles import gemm_cycles
from llmloom.sim.blocks.gemm import GemmHarness
from llmloom.sim.golden.gemm import gemm_bitexact
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

H = GemmHarness()
# Two configs keep the Verilator builds (one per config, cached) few; shapes vary per case.
CONFIGS = {
    "2x3": GemmConfig(rows=2, cols=3, k=6, n=7, lanes=3),
    "4x4": GemmConfig(rows=4, cols=4, k=20, n=9, lanes=4),
    "3x4_packed": GemmConfig(rows=3, cols=4, k=12, n=7, lanes=4, dsp_packing=True),
    # lanes=4 does not divide k=33: the last beat of each row is padded
    "4x4_k33": GemmConfig(rows=4, cols=4, k=33, n=7, lanes=4),
}
CASES = [("2x3", 5), ("2x3", 1), ("4x4", 13), ("4x4", 4), ("3x4_packed", 8), ("4x4_k33", 5),
         ("4x4_k33", 9)]


@pytest.mark.parametrize("stall", ["none", "pattern", "random"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}_M{c[1]}")
def test_gemm_on_hdl_simulators(hdl_sim, case, stall, rng):
    cfg = CONFIGS[case[0]]
    m = case[1]
    a = rng.integers(-128, 128, (m, cfg.k), dtype=np.int8)
    w = rng.integers(-128, 128, (cfg.k, cfg.n), dtype=np.int8)
    seed = int(rng.integers(1 << 30))
    result = run_block(H, cfg, {"a": a, "w": w}, sim=hdl_sim, stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    np.testing.assert_array_equal(result.outputs["c"], gemm_bitexact(cfg, a, w))
    reference = run_block(H, cfg, {"a": a, "w": w}, sim="amaranth",
                          stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    assert result.cycles == reference.cycles
    if stall == "none":
        assert result.cycles == gemm_cycles(cfg, m)


@pytest.mark.parametrize("name", ["4x4", "3x4_packed"])
def test_extremes_on_hdl_simulators(hdl_sim, name):
    cfg = CONFIGS[name]
    a = np.full((6, cfg.k), -128, dtype=np.int8)
    w = np.full((cfg.k, cfg.n), -128, dtype=np.int8)
    w[::2] = 127
    result = run_block(H, cfg, {"a": a, "w": w}, sim=hdl_sim,
                       stalls_in=Stalls("pattern"), stalls_out=Stalls("random", 9))
    np.testing.assert_array_equal(result.outputs["c"], gemm_bitexact(cfg, a, w))


@pytest.mark.slow
def test_gpt2_projection_on_verilator(rng):
    """The demo's shape: 64 tokens × 768 → 64 on 8×8 (about 50k cycles)."""
    cfg = GemmConfig(rows=8, cols=8, k=768, n=64, lanes=8)
    a = rng.integers(-128, 128, (64, 768), dtype=np.int8)
    w = rng.integers(-128, 128, (768, 64), dtype=np.int8)
    result = run_block(H, cfg, {"a": a, "w": w}, sim="verilator",
                       stalls_in=Stalls("random", 5), stalls_out=Stalls("random", 6))
    np.testing.assert_array_equal(result.outputs["c"], gemm_bitexact(cfg, a, w))


@pytest.mark.parametrize("k, cols, packing", [(32, 3, False), (96, 2, True)],
                         ids=["one_group", "three_groups_packed"])
def test_grouped_w4_on_hdl_simulators(hdl_sim, k, cols, packing, rng):
    """Grouped 4-bit weights (``weight_groups``): the codes and the group tables loaded through
    their streams, bit-exact and in the cycles of Amaranth's simulator; with several groups
    (each group's partial sums scaled after the array) and two codes per multiplier."""
    cfg = GemmConfig(rows=2, cols=cols, k=k, n=4, lanes=4, w_width=4, weight_groups=True,
                     dsp_packing=packing)
    lo, hi = -(1 << 15), (1 << 15) - 1
    g = cfg.groups
    t = {"a": rng.integers(-128, 128, (3, k), dtype=np.int8),
         "w": rng.integers(0, 16, (k, 4), dtype=np.int8),
         "group_scale": np.tile(np.array([[lo, hi, 7, -300]], dtype=np.int16), (g, 1)),
         "group_min": np.tile(np.array([[lo, hi, -5, 1234]], dtype=np.int16), (g, 1))}
    t["group_scale"][1:] = rng.integers(lo, hi + 1, (g - 1, 4), dtype=np.int16)
    t["a"][0] = -128
    t["w"][:, 0] = 15
    stalls = dict(stalls_in=Stalls("random", 7), stalls_out=Stalls("random", 8))
    result = run_block(H, cfg, t, sim=hdl_sim, **stalls)
    np.testing.assert_array_equal(result.outputs["c"], H.golden(cfg, H.prepare(cfg, t))["c"])
    assert result.cycles == run_block(H, cfg, t, sim="amaranth", **stalls).cycles


@pytest.mark.parametrize("a_width", [8, 10])
def test_grouped_w8_on_hdl_simulators(hdl_sim, a_width, rng):
    """Grouped int8 codes (``weight_groups`` at ``w_width`` 8, GGUF's Q8_0): the extreme codes
    and scales through the generated Verilog, bit-exact and in Amaranth's cycles, two columns
    a multiplier; also on a quant stage's int10 rows (LLaMA's), whose low products reach
    2**16."""
    cfg = GemmConfig(rows=2, cols=2, k=64, n=4, lanes=4, w_width=8, weight_groups=True,
                     dsp_packing=True, a_width=a_width)
    lo, hi = -(1 << 15), (1 << 15) - 1
    half = 1 << (a_width - 1)
    t = {"a": rng.integers(-half, half, (3, 64)).astype(np.int16 if a_width > 8 else np.int8),
         "w": rng.integers(-128, 128, (64, 4), dtype=np.int8),
         "group_scale": np.array([[lo, hi, 7, -300], [hi, lo, 1, 0]], dtype=np.int16)}
    t["a"][0] = -half
    t["w"][:, 0] = -128
    t["w"][:, 1] = 127
    stalls = dict(stalls_in=Stalls("random", 7), stalls_out=Stalls("random", 8))
    result = run_block(H, cfg, t, sim=hdl_sim, **stalls)
    np.testing.assert_array_equal(result.outputs["c"], H.golden(cfg, H.prepare(cfg, t))["c"])
    assert result.cycles == run_block(H, cfg, t, sim="amaranth", **stalls).cycles
