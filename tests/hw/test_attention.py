"""Multi-head attention with its KV cache on Amaranth's simulator: bit-exact with
``attention_bitexact`` (keys and values: the whole cache so far, queries at ``pos``) for a
prefill, prefill chunks, decode steps after a prefill and bidirectional attention (sentences
of any length up to ``seq``, the keys past it masked; ``seq`` not a multiple of ``lanes``),
under stalls; ``clear`` starts a new sequence; overflow is refused."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Value
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

STALLS = ["none", "pattern", "random"]
H = AttentionHarness()

GPT = AttentionConfig(d_model=8, heads=2, seq=8, lanes=2, qk_rows=2, qk_cols=4, pv_rows=2,
                      pv_cols=2, causal=True, score_scale=0.05)
BERT = GPT.replace(causal=False)
# wider arrays than lanes (gearboxes narrow), three heads, rows past the array height
WIDE = AttentionConfig(d_model=12, heads=3, seq=8, lanes=2, qk_rows=3, qk_cols=8, pv_rows=4,
                       pv_cols=4, causal=True, k_scale=1 / 64)

# bidirectional at d 16, 2 heads, lanes 4: sentences shorter than seq, and a seq (6) that is
# not a multiple of lanes (score rows of two beats, the last padded)
BERT16 = AttentionConfig(d_model=16, heads=2, seq=8, lanes=4, qk_rows=2, qk_cols=4, pv_rows=2,
                         pv_cols=4, causal=False, score_scale=0.05)
BERT6 = BERT16.replace(seq=6)


def _qkv(cfg, rows, rng):
    return {n: rng.integers(-128, 128, (rows, cfg.d_model), dtype=np.int8) for n in "qkv"}


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("cfg, rows", [
    (GPT, 5), (GPT, 8), (GPT, 1), (BERT, 8), (WIDE, 7), (BERT16, 3), (BERT16, 5), (BERT16, 8),
    (BERT6, 5), (BERT6, 6)],
    ids=["gpt_l5", "gpt_full", "gpt_l1", "bert", "wide_l7", "bert16_n3", "bert16_n5",
         "bert16_n8", "bert_s6_n5", "bert_s6_n6"])
def test_prefill_equals_golden(cfg, rows, stall, rng):
    t = _qkv(cfg, rows, rng)
    seed = int(rng.integers(1 << 30))
    result = run_block(H, cfg, t, stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    want = attention_bitexact(cfg, t["q"], t["k"], t["v"])
    assert result.outputs["y"].dtype == np.int8
    np.testing.assert_array_equal(result.outputs["y"], want)


def _run_tensors(cfg, chunks, stall, seed):
    """Several tensors (dicts of q, k, v) in one sequence, one simulation."""
    comp = ControlStreams(Attention(cfg))
    beat = row_layout(INT8.shape, cfg.lanes)
    timed = {n: sum((pack_rows(beat, c[n]) for c in chunks), []) for n in "qkv"}
    rows = sum(c["q"].shape[0] for c in chunks)
    drive = Drive(preload={}, timed=timed, expect={"o": rows * cfg.d_model // cfg.lanes})
    beats, *_ = simulate(comp, drive, stalls_in=Stalls(stall, seed),
                         stalls_out=Stalls(stall, seed + 1), max_cycles=200_000)
    y, _, end = unpack_rows(beat, beats["o"], cfg.d_model)
    sizes = np.cumsum([c["q"].shape[0] for c in chunks])
    assert list(np.flatnonzero(end)) == list(sizes * cfg.d_model // cfg.lanes - 1)
    return np.split(y, sizes[:-1])


def _golden_sequence(cfg, chunks):
    out, k, v, pos = [], np.zeros((0, cfg.d_model)), np.zeros((0, cfg.d_model)), 0
    for c in chunks:
        k, v = np.vstack([k, c["k"]]).astype(np.int8), np.vstack([v, c["v"]]).astype(np.int8)
        out.append(attention_bitexact(cfg, c["q"], k, v, q_offset=pos))
        pos += c["q"].shape[0]
    return out


@pytest.mark.parametrize("stall", STALLS)
def test_decode_after_prefill_equals_last_prefill_row(stall, rng):
    """A prefill of l−1 rows then one decode row gives the last row of an l-row prefill."""
    cfg, l = GPT, 6
    t = _qkv(cfg, l, rng)
    seed = int(rng.integers(1 << 30))
    head = {n: t[n][:l - 1] for n in "qkv"}
    tail = {n: t[n][l - 1:] for n in "qkv"}
    prefill, decode = _run_tensors(cfg, [head, tail], stall, seed)
    full = attention_bitexact(cfg, t["q"], t["k"], t["v"])
    np.testing.assert_array_equal(decode[0], full[-1])
    np.testing.assert_array_equal(prefill, full[:-1])


@pytest.mark.parametrize("stall", STALLS)
def test_chunks_and_decode_steps(stall, rng):
    """Prefill in two chunks, then decode steps up to a full cache."""
    cfg = WIDE
    sizes = [3, 2, 1, 1, 1]
    chunks = [_qkv(cfg, n, rng) for n in sizes]
    got = _run_tensors(cfg, chunks, stall, int(rng.integers(1 << 30)))
    for g, w in zip(got, _golden_sequence(cfg, chunks), strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("cfg", [BERT16, BERT6], ids=["seq8", "seq6"])
def test_sentences_of_any_length_back_to_back(cfg, stall, rng):
    """Bidirectional sentences of several lengths through one instance, no ``clear``: each
    attends to its own keys only (the caches empty themselves after each), ``pos`` stays 0."""
    sizes = [5, cfg.seq, 1, 3]
    chunks = [_qkv(cfg, n, rng) for n in sizes]
    got = _run_tensors(cfg, chunks, stall, int(rng.integers(1 << 30)))
    for g, c in zip(got, chunks, strict=True):
        np.testing.assert_array_equal(g, attention_bitexact(cfg, c["q"], c["k"], c["v"]))


@pytest.mark.parametrize("kind", ["all_min", "all_max", "zeros"])
def test_extreme_values(kind, rng):
    cfg = GPT
    fill = {"all_min": -128, "all_max": 127, "zeros": 0}[kind]
    t = {n: np.full((8, cfg.d_model), fill, dtype=np.int8) for n in "qkv"}
    if kind == "zeros":
        t["v"] = rng.integers(-128, 128, (8, cfg.d_model), dtype=np.int8)
    result = run_block(H, cfg, t, stalls_in=Stalls("pattern"), stalls_out=Stalls("random", 2))
    np.testing.assert_array_equal(result.outputs["y"],
                                  attention_bitexact(cfg, t["q"], t["k"], t["v"]))


def test_clear_and_overflow(rng):
    """A sequence, ``clear``, a new sequence from position 0; then a chunk past ``seq`` is
    refused and flagged."""
    cfg = GPT
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
    sim.run()          # until the script ends (every wait in it has a limit)
    assert len(got) == 3
    for out, t in zip(got[:2], seqs[:2], strict=True):
        y, _, _ = unpack_rows(beat, out, cfg.d_model)
        np.testing.assert_array_equal(y, attention_bitexact(cfg, t["q"], t["k"], t["v"]))


def test_rtl_limits():
    with pytest.raises(ConfigError, match=r"qk_cols=3 does not divide seq=8; allowed: a "
                       r"divisor of seq, or qk_cols=\d+ \(= lanes"):
        Attention(GPT.replace(qk_cols=3))
    with pytest.raises(ConfigError, match="pv_cols=4 and lanes=3"):
        Attention(AttentionConfig(d_model=24, heads=2, seq=6, lanes=3, qk_cols=3, pv_cols=4))
    # seq 6 is no multiple of lanes 4: the score rows keep the array's padded beat
    with pytest.raises(ConfigError, match="qk_cols=2 with seq=6 not a multiple of lanes=4"):
        Attention(BERT6.replace(qk_cols=2))
    Attention(BERT6)._MustUse__silence = True
