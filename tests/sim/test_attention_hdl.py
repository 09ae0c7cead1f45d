"""Attention's generated Verilog on Icarus and Verilator: bit-exact with ``attention_bitexact``
(a prefill; a prefill then a decode step in one run; bidirectional sentences shorter than seq,
seq 6 with lanes 4, and sentences of several lengths back to back) under stalls, and the same
cycle count as Amaranth's simulator."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from llmloom.hw.blocks.attention import Attention
from llmloom.hw.blocks.attention_config import AttentionConfig
from llmloom.hw.numeric import INT8
from llmloom.hw.stream import row_layout
from llmloom.sim.blocks.attention import AttentionHarness
from llmloom.sim.golden.attention import attention_bitexact
from llmloom.sim.harness import ControlStreams, Drive
from llmloom.sim.runner import run_block, simulate
from llmloom.sim.streams import Stalls, pack_rows, unpack_rows
from llmloom.sim.tools import tool_env

H = AttentionHarness()
# One config, one Verilator build (the harness's wrapper and the bare-`simulate` run below
# use the same component, so the same Verilog).
CFG = AttentionConfig(d_model=8, heads=2, seq=8, lanes=2, qk_rows=2, qk_cols=4, pv_rows=2,
                      pv_cols=2, causal=True, score_scale=0.05)


@pytest.mark.parametrize("stall, rows", [("none", 5), ("random", 8)])
def test_prefill_on_hdl_simulators(hdl_sim, stall, rows, rng):
    t = {n: rng.integers(-128, 128, (rows, CFG.d_model), dtype=np.int8) for n in "qkv"}
    seed = int(rng.integers(1 << 30))
    result = run_block(H, CFG, t, sim=hdl_sim, stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    np.testing.assert_array_equal(result.outputs["y"],
                                  attention_bitexact(CFG, t["q"], t["k"], t["v"]))
    reference = run_block(H, CFG, t, stalls_in=Stalls(stall, seed),
                          stalls_out=Stalls(stall, seed + 1))
    assert result.cycles == reference.cycles


def test_decode_after_prefill_on_hdl_simulators(hdl_sim, rng):
    l = 7
    t = {n: rng.integers(-128, 128, (l, CFG.d_model), dtype=np.int8) for n in "qkv"}
    beat = row_layout(INT8.shape, CFG.lanes)
    timed = {n: pack_rows(beat, t[n][:l - 1]) + pack_rows(beat, t[n][l - 1:]) for n in "qkv"}
    drive = Drive(preload={}, timed=timed, expect={"o": l * CFG.d_model // CFG.lanes})
    beats, *_ = simulate(ControlStreams(Attention(CFG)), drive, sim=hdl_sim,
                         stalls_in=Stalls("pattern"), stalls_out=Stalls("random", 7),
                         max_cycles=100_000)
    y, _, _ = unpack_rows(beat, beats["o"], CFG.d_model)
    np.testing.assert_array_equal(y, attention_bitexact(CFG, t["q"], t["k"], t["v"]))


# bidirectional, d 16, 2 heads, lanes 4: seq 8 and seq 6 (no multiple of lanes)
BERT16 = AttentionConfig(d_model=16, heads=2, seq=8, lanes=4, qk_rows=2, qk_cols=4, pv_rows=2,
                         pv_cols=4, causal=False, score_scale=0.05)
BERT6 = BERT16.replace(seq=6)


def require_simulator(sim):
    """``sim``, or a skip where it is not installed (a failure in CI)."""
    tool = "iverilog" if sim == "icarus" else "verilator"
    if shutil.which(tool, path=tool_env()["PATH"]) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{sim} is not installed; CI must install it")
        pytest.skip(f"{sim} is not installed")
    return sim


@pytest.mark.parametrize("sim, cfg, rows, stall", [
    ("icarus", BERT16, 3, "none"), ("icarus", BERT16, 5, "pattern"),
    ("icarus", BERT16, 8, "random"), ("icarus", BERT6, 5, "random"),
    ("verilator", BERT6, 5, "random"),
], ids=["icarus-s8n3", "icarus-s8n5", "icarus-s8n8", "icarus-s6n5", "verilator-s6n5"])
def test_bidirectional_sentences_on_hdl_simulators(sim, cfg, rows, stall, rng):
    """A sentence of ``rows <= seq`` tokens attends to its own keys only."""
    sim = require_simulator(sim)
    t = {n: rng.integers(-128, 128, (rows, cfg.d_model), dtype=np.int8) for n in "qkv"}
    seed = int(rng.integers(1 << 30))
    stalls = dict(stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    result = run_block(H, cfg, t, sim=sim, **stalls)
    np.testing.assert_array_equal(result.outputs["y"],
                                  attention_bitexact(cfg, t["q"], t["k"], t["v"]))
    assert result.cycles == run_block(H, cfg, t, **stalls).cycles


def test_bidirectional_sentences_back_to_back_on_icarus(rng):
    """Sentences of 3, 8 and 5 tokens through one instance: the caches empty themselves."""
    cfg, sizes = BERT16, [3, 8, 5]
    chunks = [{n: rng.integers(-128, 128, (r, cfg.d_model), dtype=np.int8) for n in "qkv"}
              for r in sizes]
    beat = row_layout(INT8.shape, cfg.lanes)
    timed = {n: sum((pack_rows(beat, c[n]) for c in chunks), []) for n in "qkv"}
    drive = Drive(preload={}, timed=timed, expect={"o": sum(sizes) * cfg.d_model // cfg.lanes})
    beats, *_ = simulate(ControlStreams(Attention(cfg)), drive, sim=require_simulator("icarus"),
                         stalls_in=Stalls("pattern"), stalls_out=Stalls("random", 3),
                         max_cycles=100_000)
    y, _, _ = unpack_rows(beat, beats["o"], cfg.d_model)
    want = [attention_bitexact(cfg, c["q"], c["k"], c["v"]) for c in chunks]
    np.testing.assert_array_equal(y, np.concatenate(want))
