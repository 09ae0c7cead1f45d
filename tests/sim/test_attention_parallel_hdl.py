"""Attention on two head engines (four heads in two rounds), as generated Verilog on Icarus and
Verilator: bit-exact with ``attention_bitexact`` for a prefill under stalls (with the same
cycle count as Amaranth's simulator) and for a prefill chunk then a decode step."""

from __future__ import annotations

import numpy as np

from llmloom.hw.blocks.attention import Attention
from llmloom.hw.blocks.attention_config import AttentionConfig
from llmloom.hw.numeric import INT8
from llmloom.hw.stream import row_layout
from llmloom.sim.blocks.attention import AttentionHarness
from llmloom.sim.golden.attention import attention_bitexact
from llmloom.sim.harness import ControlStreams, Drive
from llmloom.sim.runner import run_block, simulate
from llmloom.sim.streams import Stalls, pack_rows, unpack_rows

H = AttentionHarness()
# One config, one Verilator build (the harness's wrapper and the bare-`simulate` run below
# use the same component, so the same Verilog).
CFG = AttentionConfig(d_model=16, heads=4, seq=8, lanes=2, qk_rows=2, qk_cols=4, pv_rows=2,
                      pv_cols=2, causal=True, score_scale=0.05, head_engines=2)


def test_parallel_heads_prefill_on_hdl_simulators(hdl_sim, rng):
    stall, rows = "random", 8
    t = {n: rng.integers(-128, 128, (rows, CFG.d_model), dtype=np.int8) for n in "qkv"}
    seed = int(rng.integers(1 << 30))
    result = run_block(H, CFG, t, sim=hdl_sim, stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    np.testing.assert_array_equal(result.outputs["y"],
                                  attention_bitexact(CFG, t["q"], t["k"], t["v"]))
    reference = run_block(H, CFG, t, stalls_in=Stalls(stall, seed),
                          stalls_out=Stalls(stall, seed + 1))
    assert result.cycles == reference.cycles


def test_parallel_heads_decode_after_prefill_on_hdl_simulators(hdl_sim, rng):
    l = 6
    t = {n: rng.integers(-128, 128, (l, CFG.d_model), dtype=np.int8) for n in "qkv"}
    beat = row_layout(INT8.shape, CFG.lanes)
    timed = {n: pack_rows(beat, t[n][:l - 1]) + pack_rows(beat, t[n][l - 1:]) for n in "qkv"}
    drive = Drive(preload={}, timed=timed, expect={"o": l * CFG.d_model // CFG.lanes})
    beats, *_ = simulate(ControlStreams(Attention(CFG)), drive, sim=hdl_sim,
                         stalls_in=Stalls("pattern"), stalls_out=Stalls("random", 7),
                         max_cycles=100_000)
    y, _, _ = unpack_rows(beat, beats["o"], CFG.d_model)
    np.testing.assert_array_equal(y, attention_bitexact(CFG, t["q"], t["k"], t["v"]))
