"""Grouped-query attention (``kv_heads`` < ``heads``) on Amaranth's simulator: the KV cache
holds ``kv_heads`` heads and a read of query head h gives KV head h // (heads/kv_heads); the
attention is bit-exact with ``attention_bitexact`` for a prefill, chunks and decode steps,
with one engine and with several, under stalls; the golden model equals multi-head attention
on K and V with each KV head repeated for its group; bad groupings are rejected."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import signed

from llmloom.hw.blocks.attention import Attention
from llmloom.hw.blocks.attention_config import AttentionConfig
from llmloom.hw.blocks.kvcache import KvCacheConfig
from llmloom.hw.config import ConfigError
from llmloom.hw.numeric import INT8
from llmloom.hw.stream import row_layout
from llmloom.perf.cycles import attention_cycles
from llmloom.sim.blocks.attention import AttentionHarness
from llmloom.sim.blocks.kvcache import KvCacheHarness
from llmloom.sim.golden.attention import attention_bitexact, attention_float, calibrate_attention
from llmloom.sim.harness import ControlStreams, Drive
from llmloom.sim.runner import run_block, simulate
from llmloom.sim.streams import Stalls, pack_rows, unpack_rows

STALLS = ["none", "pattern", "random"]
H = AttentionHarness()

# 4 query heads on 2 KV heads (d_head 4), causal; and 3 query heads on 1 KV head, wider
# arrays than lanes
GQA = AttentionConfig(d_model=16, heads=4, kv_heads=2, seq=8, lanes=2, qk_rows=2, qk_cols=4,
                      pv_rows=2, pv_cols=2, causal=True, score_scale=0.05)
MQA = AttentionConfig(d_model=12, heads=3, kv_heads=1, seq=8, lanes=2, qk_rows=3, qk_cols=8,
                      pv_rows=4, pv_cols=4, causal=True, k_scale=1 / 64)
GQA_E2 = GQA.replace(head_engines=2)
# the dynamic scheme's LLaMA attention: int16 output (P·V re-quantised at a fine scale)
GQA16 = GQA.replace(out_width=16, out_scale=0.5 / 32767)


def _qkv(cfg, rows, rng):
    t = {"q": rng.integers(-128, 128, (rows, cfg.d_model), dtype=np.int8)}
    t |= {n: rng.integers(-128, 128, (rows, cfg.kv_width), dtype=np.int8) for n in "kv"}
    return t


def _repeat_kv(cfg, x):
    """K or V with each KV head's columns repeated for the query heads of its group."""
    dh = cfg.d_head
    return np.hstack([x[:, h // cfg.kv_group * dh:(h // cfg.kv_group + 1) * dh]
                      for h in range(cfg.heads)])


def test_sizes_follow_the_kv_heads():
    assert (GQA.kv_heads_value, GQA.kv_group, GQA.kv_width) == (2, 2, 8)
    assert GQA.kv_cache_bytes == 2 * 8 * 8
    cache = KvCacheConfig.of(GQA)
    assert (cache.kv_width, cache.beats, cache.kv_group) == (8, 4, 2)
    mha = GQA.replace(kv_heads=0)
    assert (mha.kv_heads_value, mha.kv_group, mha.kv_width) == (4, 1, 16)
    assert GQA.replace(kv_heads=4).kv_width == 16


@pytest.mark.parametrize("bad, match", [
    (dict(kv_heads=3), "kv_heads=3 does not divide heads=4"),
    (dict(kv_heads=1, head_engines=2), "head_engines=2 does not divide kv_heads=1"),
])
def test_bad_groupings_are_rejected(bad, match):
    with pytest.raises(ConfigError, match=match):
        GQA.replace(**bad)
    if "head_engines" not in bad:
        with pytest.raises(ConfigError, match=match):
            KvCacheConfig(d_model=16, heads=4, **bad)


@pytest.mark.parametrize("cfg", [GQA, MQA], ids=["gqa", "mqa"])
def test_golden_is_mha_on_repeated_kv(cfg, rng):
    t = _qkv(cfg, 6, rng)
    mha = cfg.replace(kv_heads=0)
    k, v = _repeat_kv(cfg, t["k"]), _repeat_kv(cfg, t["v"])
    for off, rows in ((0, 6), (3, 3)):
        q = t["q"][off:off + rows]
        np.testing.assert_array_equal(attention_bitexact(cfg, q, t["k"], t["v"], off),
                                      attention_bitexact(mha, q, k, v, off))
        np.testing.assert_array_equal(attention_float(cfg, q, t["k"], t["v"], off),
                                      attention_float(mha, q, k, v, off))
    assert calibrate_attention(cfg, t["q"], t["k"], t["v"]).replace(kv_heads=0) == \
        calibrate_attention(mha, t["q"], k, v)


@pytest.mark.parametrize("stall", STALLS)
def test_kvcache_reads_the_group_kv_head(stall, rng):
    h = KvCacheHarness()
    cfg = KvCacheConfig(d_model=24, heads=6, kv_heads=2, seq=5, lanes=2, qk_cols=2, pv_cols=3)
    k = rng.integers(-128, 128, (4, 8), dtype=np.int8)
    v = rng.integers(-128, 128, (4, 8), dtype=np.int8)
    tensors = {"k": k, "v": v, "heads": np.array([5, 0, 2, 3, 1, 4])}
    assert h.config({"heads": 6, "kv_heads": 2}, tensors).d_model == 24
    seed = int(rng.integers(1 << 30))
    result = run_block(h, cfg, tensors, stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    want = h.golden(cfg, h.prepare(cfg, tensors))
    for name in ("kt", "vh"):
        np.testing.assert_array_equal(result.outputs[name], want[name])
    # query head 5 reads KV head 1 (features 4..7), query head 0 KV head 0
    np.testing.assert_array_equal(want["kt"][0][:, :4], k[:, 4:8].T)
    np.testing.assert_array_equal(want["vh"][1][:4], v[:, 0:4])


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("cfg, rows", [(GQA, 5), (GQA, 1), (MQA, 8), (GQA_E2, 6), (GQA16, 5)],
                         ids=["gqa_l5", "gqa_l1", "mqa_full", "gqa_e2_l6", "gqa_int16_l5"])
def test_prefill_equals_golden(cfg, rows, stall, rng):
    t = _qkv(cfg, rows, rng)
    seed = int(rng.integers(1 << 30))
    result = run_block(H, cfg, t, stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    np.testing.assert_array_equal(result.outputs["y"],
                                  attention_bitexact(cfg, t["q"], t["k"], t["v"]))
    if stall == "none":
        assert result.cycles == attention_cycles(cfg, rows)


def run_sequence(cfg, chunks, stall, seed, sim="amaranth"):
    """Several tensors (dicts of q, k, v) of one sequence in one simulation: the outputs per
    tensor."""
    beat = row_layout(INT8.shape, cfg.lanes)
    timed = {n: sum((pack_rows(beat, c[n]) for c in chunks), []) for n in "qkv"}
    rows = sum(c["q"].shape[0] for c in chunks)
    drive = Drive(preload={}, timed=timed, expect={"o": rows * cfg.d_model // cfg.lanes})
    beats, *_ = simulate(ControlStreams(Attention(cfg)), drive, sim=sim,
                         stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1),
                         max_cycles=200_000)
    y, _, end = unpack_rows(row_layout(signed(cfg.out_width), cfg.lanes), beats["o"],
                            cfg.d_model)
    sizes = np.cumsum([c["q"].shape[0] for c in chunks])
    assert list(np.flatnonzero(end)) == list(sizes * cfg.d_model // cfg.lanes - 1)
    return np.split(y, sizes[:-1])


def golden_sequence(cfg, chunks):
    out, pos = [], 0
    k = v = np.zeros((0, cfg.kv_width), np.int8)
    for c in chunks:
        k, v = np.vstack([k, c["k"]]).astype(np.int8), np.vstack([v, c["v"]]).astype(np.int8)
        out.append(attention_bitexact(cfg, c["q"], k, v, q_offset=pos))
        pos += c["q"].shape[0]
    return out


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("cfg", [GQA, GQA_E2, GQA16], ids=["e1", "e2", "int16"])
def test_chunks_and_decode_steps(cfg, stall, rng):
    """Prefill in two chunks, then decode steps up to a full cache."""
    chunks = [_qkv(cfg, n, rng) for n in (3, 2, 1, 1, 1)]
    got = run_sequence(cfg, chunks, stall, int(rng.integers(1 << 30)))
    for g, w in zip(got, golden_sequence(cfg, chunks), strict=True):
        np.testing.assert_array_equal(g, w)
