"""Attention with ``head_engines`` heads at once: the config rule, one copy of the per-head
blocks per engine, and on Amaranth's simulator bit-exact with ``attention_bitexact`` for 1, 2
and all engines (causal and bidirectional, under stalls, a prefill chunk then decode steps,
``clear`` and overflow); all engines at once take fewer cycles, and the heads phase takes one
head's time per round."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Fragment, Value
from amaranth.sim import Simulator

from llmloom.hw.blocks.attention import Attention
from llmloom.hw.blocks.attention_config import AttentionConfig
from llmloom.hw.config import ConfigError
from llmloom.hw.numeric import INT8
from llmloom.hw.stream import row_layout
from llmloom.sim.blocks.attention import AttentionHarness
from llmloom.sim.golden.attention import attention_bitexact
from llmloom.sim.harness import ControlStreams, Drive
from llmloom.sim.runner import run_block, simulate
from llmloom.sim.streams import Stalls, pack_rows, unpack_rows

H = AttentionHarness()
# four heads of d_head 4 (two beats each), so that 2 engines take two rounds of two heads
GPT4 = AttentionConfig(d_model=16, heads=4, seq=8, lanes=2, qk_rows=2, qk_cols=4, pv_rows=2,
                       pv_cols=2, causal=True, score_scale=0.05)
BERT4 = GPT4.replace(causal=False)
ENGINES = [1, 2, 4]


def _qkv(cfg, rows, rng):
    return {n: rng.integers(-128, 128, (rows, cfg.d_model), dtype=np.int8) for n in "qkv"}


def test_head_engines_config():
    assert AttentionConfig().head_engines == 1
    cfg = GPT4.replace(head_engines=2)
    assert (cfg.head_rounds, cfg.engine_width) == (2, 8)
    assert (GPT4.head_rounds, GPT4.replace(head_engines=4).head_rounds) == (4, 1)
    with pytest.raises(ConfigError, match="head_engines=3 does not divide heads=4"):
        GPT4.replace(head_engines=3)
    with pytest.raises(ConfigError, match="head_engines"):
        GPT4.replace(head_engines=0)


@pytest.mark.parametrize("engines", ENGINES)
def test_one_copy_of_the_head_blocks_per_engine(engines):
    frag = Fragment.get(Attention(GPT4.replace(head_engines=engines)), None)
    names = {name for _, name, _ in frag.subfragments}
    blocks = ("cache", "qk", "pv", "score_gear", "score_requant", "softmax", "cast",
              "out_gear", "out_requant", "qbuf", "obuf")
    if engines == 1:          # the single-engine netlist keeps its names
        assert names == set(blocks)
    else:
        assert names == {f"e{e}_{b}" for e in range(engines) for b in blocks}


@pytest.mark.parametrize("engines", ENGINES)
@pytest.mark.parametrize("cfg, rows, stall", [(GPT4, 5, "pattern"), (GPT4, 8, "random"),
                                              (BERT4, 8, "random")],
                         ids=["gpt_l5_pattern", "gpt_full_random", "bert_random"])
def test_prefill_equals_golden(cfg, rows, stall, engines, rng):
    cfg = cfg.replace(head_engines=engines)
    t = _qkv(cfg, rows, rng)
    seed = int(rng.integers(1 << 30))
    result = run_block(H, cfg, t, stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    np.testing.assert_array_equal(result.outputs["y"],
                                  attention_bitexact(cfg, t["q"], t["k"], t["v"]))


# three heads on three engines, arrays wider than lanes (gearboxes narrow), rows past the
# array height; lanes 4 over 2-wide P·V words (two V writes per beat) and a 1-wide Q·Kᵀ array
# (the score gearbox widens), two heads on two engines
OTHER = [
    (AttentionConfig(d_model=12, heads=3, seq=8, lanes=2, qk_rows=3, qk_cols=8, pv_rows=4,
                     pv_cols=4, causal=True, k_scale=1 / 64, head_engines=3), 7),
    (AttentionConfig(d_model=16, heads=2, seq=8, lanes=4, qk_rows=2, qk_cols=1, pv_rows=2,
                     pv_cols=2, causal=True, score_scale=0.05, head_engines=2), 3),
]


@pytest.mark.parametrize("cfg, rows", OTHER, ids=["wide_h3e3", "lanes4_h2e2"])
def test_other_shapes_equal_golden(cfg, rows, rng):
    t = _qkv(cfg, rows, rng)
    seed = int(rng.integers(1 << 30))
    result = run_block(H, cfg, t, stalls_in=Stalls("random", seed),
                       stalls_out=Stalls("random", seed + 1))
    np.testing.assert_array_equal(result.outputs["y"],
                                  attention_bitexact(cfg, t["q"], t["k"], t["v"]))


@pytest.mark.slow
@pytest.mark.parametrize("stall", ["none", "pattern", "random"])
@pytest.mark.parametrize("engines", ENGINES)
@pytest.mark.parametrize("cfg", [GPT4, BERT4], ids=["gpt", "bert"])
def test_prefill_sweep(cfg, engines, stall, rng):
    """Every chunk length (bidirectional: the full length) on 1, 2 and 4 engines."""
    cfg = cfg.replace(head_engines=engines)
    for rows in range(1, cfg.seq + 1) if cfg.causal else [cfg.seq]:
        t = _qkv(cfg, rows, rng)
        seed = int(rng.integers(1 << 30))
        result = run_block(H, cfg, t, stalls_in=Stalls(stall, seed),
                           stalls_out=Stalls(stall, seed + 1))
        np.testing.assert_array_equal(result.outputs["y"],
                                      attention_bitexact(cfg, t["q"], t["k"], t["v"]))


@pytest.mark.parametrize("engines", [2, 4])
def test_chunk_then_decode_steps(engines, rng):
    """A prefill chunk then two decode steps in one sequence: the banked cache keeps every
    engine's head group across tensors."""
    cfg = GPT4.replace(head_engines=engines)
    chunks = [_qkv(cfg, n, rng) for n in (5, 1, 1)]
    beat = row_layout(INT8.shape, cfg.lanes)
    timed = {n: sum((pack_rows(beat, c[n]) for c in chunks), []) for n in "qkv"}
    drive = Drive(preload={}, timed=timed, expect={"o": 7 * cfg.d_model // cfg.lanes})
    seed = int(rng.integers(1 << 30))
    beats, *_ = simulate(ControlStreams(Attention(cfg)), drive, stalls_in=Stalls("random", seed),
                         stalls_out=Stalls("pattern", seed + 1), max_cycles=50_000)
    y, _, end = unpack_rows(beat, beats["o"], cfg.d_model)
    assert list(np.flatnonzero(end)) == [n * cfg.d_model // cfg.lanes - 1 for n in (5, 6, 7)]
    k = np.vstack([c["k"] for c in chunks])
    v = np.vstack([c["v"] for c in chunks])
    want = np.vstack([attention_bitexact(cfg, chunks[0]["q"], k[:5], v[:5]),
                      attention_bitexact(cfg, chunks[1]["q"], k[:6], v[:6], q_offset=5),
                      attention_bitexact(cfg, chunks[2]["q"], k, v, q_offset=6)])
    np.testing.assert_array_equal(y, want)


def test_clear_and_overflow_with_engines(rng):
    """Two engines: a sequence, ``clear``, a new sequence from position 0; then a chunk past
    ``seq`` is refused and flagged."""
    cfg = GPT4.replace(head_engines=2)
    dut = Attention(cfg)
    beat = row_layout(INT8.shape, cfg.lanes)
    seqs = [_qkv(cfg, 5, rng), _qkv(cfg, 4, rng), _qkv(cfg, 5, rng)]
    got = []

    async def send_and_collect(ctx, t, limit=5000):
        words = {getattr(dut, n): pack_rows(beat, t[n]) for n in "qkv"}
        idx = {p: 0 for p in words}
        want = t["q"].shape[0] * cfg.d_model // cfg.lanes
        out = []
        ctx.set(dut.o.ready, 1)
        for _ in range(limit):
            for p in words:
                live = idx[p] < len(words[p])
                ctx.set(p.valid, live)
                if live:
                    ctx.set(Value.cast(p.payload), words[p][idx[p]])
            taken = [p for p in words if idx[p] < len(words[p]) and ctx.get(p.ready)]
            if ctx.get(dut.o.valid):
                out.append(ctx.get(Value.cast(dut.o.payload)))
            await ctx.tick()
            for p in taken:
                idx[p] += 1
            if len(out) == want:
                break
        for p in words:
            ctx.set(p.valid, 0)
        return out

    async def script(ctx):
        got.append(await send_and_collect(ctx, seqs[0]))
        assert ctx.get(dut.pos) == 5
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert ctx.get(dut.pos) == 0
        got.append(await send_and_collect(ctx, seqs[1]))
        assert ctx.get(dut.pos) == 4 and not ctx.get(dut.overflow)
        got.append(await send_and_collect(ctx, seqs[2], limit=300))   # 4 + 5 > seq = 8
        assert ctx.get(dut.overflow) and got[-1] == []

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(script)
    sim.run()
    assert len(got) == 3
    for out, t in zip(got[:2], seqs[:2], strict=True):
        y, _, _ = unpack_rows(beat, out, cfg.d_model)
        np.testing.assert_array_equal(y, attention_bitexact(cfg, t["q"], t["k"], t["v"]))


@pytest.mark.parametrize("rows", [1, 5])
def test_engines_in_parallel_take_fewer_cycles(rows, rng):
    """Stall-free, 4 heads on 1, 2 and 4 engines: fewer cycles with more engines, and each
    round of the heads phase takes the same time whatever the number of engines (engines in
    lock step), so the cycles are linear in ``head_rounds``: c1 − c2 = 2·(c2 − c4)."""
    t = _qkv(GPT4, rows, rng)
    cycles = {}
    for e in ENGINES:
        cfg = GPT4.replace(head_engines=e)
        result = run_block(H, cfg, t)
        np.testing.assert_array_equal(result.outputs["y"],
                                      attention_bitexact(cfg, t["q"], t["k"], t["v"]))
        cycles[e] = result.cycles
    assert cycles[4] < cycles[2] < cycles[1]
    assert cycles[1] - cycles[2] == 2 * (cycles[2] - cycles[4])
