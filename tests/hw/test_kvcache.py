"""The KV cache on Amaranth's simulator: readouts bit-exact with the golden model (the layer
model's KVCache, zero-padded) under stalls, overflow refused and flagged, ``clear`` starting a
new sequence, and the cycle predictions exact."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator

from llmloom.hw.blocks.attention_config import AttentionConfig
from llmloom.hw.blocks.kvcache import KvCache, KvCacheConfig
from llmloom.hw.config import ConfigError
from llmloom.perf.cycles import BLOCK_CYCLES, kvcache_append_cycles, kvcache_cycles
from llmloom.sim.blocks.kvcache import KvCacheHarness
from llmloom.sim.golden.kvcache import kvcache_fill, kvcache_readout
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls, pack_rows, unpack_rows

STALLS = ["none", "pattern", "random"]
H = KvCacheHarness()

# (d_model, heads, seq, lanes, qk_cols, pv_cols, positions): banks and words that line up or
# not, partial position tiles, partial head tiles, an empty and a full cache, lanes of 1
CASES = [
    (8, 2, 8, 2, 4, 4, 5),
    (12, 2, 7, 3, 3, 4, 7),
    (8, 1, 5, 1, 1, 1, 2),
    (16, 4, 9, 4, 2, 3, 9),
    (8, 2, 6, 4, 8, 8, 0),
    (24, 3, 4, 8, 4, 2, 3),
]


def _cfg(case):
    d, h, s, ln, qc, pc, _ = case
    return KvCacheConfig(d_model=d, heads=h, seq=s, lanes=ln, qk_cols=qc, pv_cols=pc)


def _check(cfg, k, v, heads, stall, seed=1, sim="amaranth"):
    tensors = {"k": k, "v": v, "heads": np.asarray(heads)}
    result = run_block(H, cfg, tensors, sim=sim, stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    want = H.golden(cfg, H.prepare(cfg, tensors))
    for name in ("kt", "vh"):
        assert result.outputs[name].dtype == np.int8
        np.testing.assert_array_equal(result.outputs[name], want[name])
    return result


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "d{}h{}s{}l{}q{}p{}n{}".format(*c))
def test_readout_equals_golden(case, stall, rng):
    cfg = _cfg(case)
    n = case[-1]
    k = rng.integers(-128, 128, (n, cfg.d_model), dtype=np.int8)
    v = rng.integers(-128, 128, (n, cfg.d_model), dtype=np.int8)
    heads = list(rng.integers(0, cfg.heads, 3)) + list(range(cfg.heads))
    result = _check(cfg, k, v, heads, stall, seed=int(rng.integers(1 << 30)))
    if stall == "none":
        assert result.cycles == kvcache_cycles(cfg, len(heads))


def test_readout_is_the_gemm_weight_format(rng):
    """K_hᵀ and V_h are exactly what ``attention_bitexact`` multiplies by (zero-padded)."""
    acfg = AttentionConfig(d_model=8, heads=2, seq=8, lanes=2, qk_cols=4, pv_cols=2)
    cfg = KvCacheConfig.of(acfg)
    k = rng.integers(-128, 128, (6, 8), dtype=np.int8)
    v = rng.integers(-128, 128, (6, 8), dtype=np.int8)
    result = _check(cfg, k, v, [0, 1], "random")
    for h in range(2):
        kp = np.zeros((8, 8), dtype=np.int8)
        kp[:6] = k
        np.testing.assert_array_equal(result.outputs["kt"][h], kp[:, 4 * h:4 * h + 4].T)
    assert (cfg.kt_beats, cfg.vh_beats) == (acfg.d_head * acfg.qk_gemm.n_tiles,
                                            acfg.seq * acfg.pv_gemm.n_tiles)


@pytest.mark.parametrize("kind", ["all_min", "all_max", "one_hot"])
def test_extreme_values(kind):
    cfg = _cfg(CASES[1])
    shape = (cfg.seq, cfg.d_model)
    if kind == "all_min":
        k = v = np.full(shape, -128, dtype=np.int8)
    elif kind == "all_max":
        k, v = np.full(shape, 127, dtype=np.int8), np.full(shape, -128, dtype=np.int8)
    else:
        k = np.zeros(shape, dtype=np.int8)
        v = np.zeros(shape, dtype=np.int8)
        k[3, 5] = v[6, 2] = 1
    _check(cfg, k, v, [1, 0], "pattern")


def test_v_segments():
    aligned = KvCacheConfig(d_model=16, heads=2, seq=4, lanes=4, qk_cols=4, pv_cols=8)
    assert aligned.v_row_cycles == aligned.beats == 4
    # pv_cols=3 over heads of 4 lanes: every beat is cut at the tile and head boundaries
    odd = KvCacheConfig(d_model=8, heads=2, seq=4, lanes=4, qk_cols=4, pv_cols=3)
    assert odd.v_segments == ((0, 0, 3, 0, 0), (0, 3, 1, 1, 0), (1, 0, 3, 2, 0),
                              (1, 3, 1, 3, 0))
    assert odd.row_cycles == 4


class _Bench:
    """A scripted Amaranth testbench around one KvCache: append rows (K and V offered every
    cycle), pulse ``clear``, read heads; every wait has a deadline."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.dut = KvCache(cfg)
        self.beat = self.dut.k.payload.shape()

    async def push(self, ctx, k, v, limit=2000):
        """Offer rows; returns (cycles until both streams are done, or None at ``limit``)."""
        dut = self.dut
        words = {dut.k: pack_rows(self.beat, k), dut.v: pack_rows(self.beat, v)}
        idx = {p: 0 for p in words}
        for cycle in range(limit):
            live = [p for p in words if idx[p] < len(words[p])]
            if not live:
                return cycle
            for p in words:
                ctx.set(p.valid, p in live)
                if p in live:
                    ctx.set(Value.cast(p.payload), words[p][idx[p]])
            taken = [p for p in live if ctx.get(p.ready)]
            await ctx.tick()
            for p in taken:
                idx[p] += 1
        for p in words:
            ctx.set(p.valid, 0)
        return None

    async def read(self, ctx, head, limit=2000):
        dut = self.dut
        req = pack_rows(dut.rd.payload.shape(), [[head]])[0]
        ctx.set(dut.rd.valid, 1)
        ctx.set(Value.cast(dut.rd.payload), req)
        ctx.set(dut.o_kt.ready, 1)
        ctx.set(dut.o_vh.ready, 1)
        got = {dut.o_kt: [], dut.o_vh: []}
        want = {dut.o_kt: self.cfg.kt_beats, dut.o_vh: self.cfg.vh_beats}
        requested = False
        for _ in range(limit):
            if not requested:
                requested = ctx.get(dut.rd.ready)
                await ctx.tick()
                ctx.set(dut.rd.valid, not requested)
                continue
            for p in got:
                if ctx.get(p.valid) and len(got[p]) < want[p]:
                    got[p].append(ctx.get(Value.cast(p.payload)))
            if all(len(got[p]) == want[p] for p in got):
                await ctx.tick()
                break
            await ctx.tick()
        cfg = self.cfg
        kt, _, _ = unpack_rows(dut.o_kt.payload.shape(), got[dut.o_kt], cfg.seq)
        vh, _, _ = unpack_rows(dut.o_vh.payload.shape(), got[dut.o_vh], cfg.d_head)
        return kt, vh

    def run(self, script):
        sim = Simulator(self.dut)
        sim.add_clock(1e-8)
        sim.add_testbench(script)
        sim.run()      # until the script ends (every wait in it has a limit)


def test_overflow_is_refused_and_clear_starts_again(rng):
    cfg = _cfg(CASES[0])
    bench = _Bench(cfg)
    dut = bench.dut
    k = rng.integers(-128, 128, (cfg.seq + 1, cfg.d_model))
    v = rng.integers(-128, 128, (cfg.seq + 1, cfg.d_model))
    k2 = rng.integers(-128, 128, (3, cfg.d_model))
    v2 = rng.integers(-128, 128, (3, cfg.d_model))
    seen = {}

    async def script(ctx):
        assert await bench.push(ctx, k[:cfg.seq], v[:cfg.seq]) is not None
        assert ctx.get(dut.length) == cfg.seq and not ctx.get(dut.overflow)
        # one more row: refused (ready stays low), flagged, nothing wraps
        assert await bench.push(ctx, k[cfg.seq:], v[cfg.seq:], limit=50) is None
        assert not ctx.get(dut.k.ready) and not ctx.get(dut.v.ready)
        assert ctx.get(dut.overflow) and ctx.get(dut.length) == cfg.seq
        seen["full"] = await bench.read(ctx, 1)
        assert ctx.get(dut.overflow)                 # sticky
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert not ctx.get(dut.overflow) and ctx.get(dut.length) == 0
        assert await bench.push(ctx, k2, v2) is not None
        seen["new"] = await bench.read(ctx, 0)
        seen["done"] = True

    bench.run(script)
    assert seen.get("done")
    full = kvcache_readout(cfg, kvcache_fill(cfg, k[:cfg.seq], v[:cfg.seq]), 1)
    new = kvcache_readout(cfg, kvcache_fill(cfg, k2, v2), 0)
    for got, want in ((seen["full"], full), (seen["new"], new)):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    with pytest.raises(ValueError, match="KV cache overflow"):
        kvcache_fill(cfg, k, v)


@pytest.mark.parametrize("case", [CASES[0], CASES[3]], ids=["aligned", "cut"])
def test_append_cycles(case, rng):
    cfg = _cfg(case)
    n = case[-1]
    bench = _Bench(cfg)
    k = rng.integers(-128, 128, (n, cfg.d_model))
    seen = {}

    async def script(ctx):
        seen["cycles"] = await bench.push(ctx, k, k)

    bench.run(script)
    assert seen["cycles"] == kvcache_append_cycles(cfg, n)


def test_prediction_is_registered():
    assert BLOCK_CYCLES["kvcache"] is kvcache_cycles
    with pytest.raises(ValueError, match="requests=0"):
        kvcache_cycles(KvCacheConfig(), 0)


@pytest.mark.parametrize("bad, message", [
    (dict(heads=3), "heads=3 does not divide d_model=64"),
    (dict(lanes=3), "lanes=3 does not divide d_head=16"),
    (dict(seq=0), "seq=0 is out of range"),
    (dict(qk_cols=65), "qk_cols=65 is out of range"),
])
def test_config_rejects(bad, message):
    with pytest.raises(ConfigError, match=message):
        KvCacheConfig(**bad)
