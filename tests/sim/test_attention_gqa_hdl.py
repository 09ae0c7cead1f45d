"""Grouped-query attention's generated Verilog on Icarus and Verilator: bit-exact with
``attention_bitexact`` for a prefill and for a prefill then decode steps in one run, under
stalls, with the cycles of Amaranth's simulator. One small config (4 query heads on 2 KV
heads), one Verilator build."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.blocks.attention_config import AttentionConfig
from llmloom.sim.blocks.attention import AttentionHarness
from llmloom.sim.golden.attention import attention_bitexact
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

from ..hw.test_attention_gqa import golden_sequence, run_sequence

H = AttentionHarness()
CFG = AttentionConfig(d_model=8, heads=4, kv_heads=2, seq=6, lanes=2, qk_rows=2, qk_cols=2,
                      pv_rows=2, pv_cols=2, causal=True, score_scale=0.05)


def _qkv(rows, rng):
    t = {"q": rng.integers(-128, 128, (rows, CFG.d_model), dtype=np.int8)}
    return t | {n: rng.integers(-128, 128, (rows, CFG.kv_width), dtype=np.int8) for n in "kv"}


@pytest.mark.parametrize("stall, rows", [("none", 5), ("random", 6)])
def test_gqa_prefill_on_hdl_simulators(hdl_sim, stall, rows, rng):
    t = _qkv(rows, rng)
    seed = int(rng.integers(1 << 30))
    stalls = dict(stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    result = run_block(H, CFG, t, sim=hdl_sim, **stalls)
    np.testing.assert_array_equal(result.outputs["y"],
                                  attention_bitexact(CFG, t["q"], t["k"], t["v"]))
    assert result.cycles == run_block(H, CFG, t, **stalls).cycles


@pytest.mark.parametrize("stall", ["pattern", "random"])
def test_gqa_decode_after_prefill_on_hdl_simulators(hdl_sim, stall, rng):
    chunks = [_qkv(n, rng) for n in (3, 1, 1)]
    got = run_sequence(CFG, chunks, stall, int(rng.integers(1 << 30)), sim=hdl_sim)
    for g, w in zip(got, golden_sequence(CFG, chunks), strict=True):
        np.testing.assert_array_equal(g, w)
