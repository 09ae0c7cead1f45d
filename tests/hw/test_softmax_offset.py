"""The softmax with a runtime causal offset (``runtime_offset``): one instance equals, bit for
bit, the config with ``causal_offset = p`` for every position p, on Amaranth's simulator (with
the offset changing from tensor to tensor) and on Icarus and Verilator."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator

from llmloom.hw.blocks.softmax import OFFSET_BITS, Softmax, SoftmaxConfig
from llmloom.hw.config import ConfigError
from llmloom.sim.blocks.softmax import SoftmaxHarness
from llmloom.sim.golden.softmax import softmax_bitexact
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls, pack_rows, unpack_rows

STALLS = ["none", "pattern", "random"]
H = SoftmaxHarness()


def _fixed(cfg, p):
    """The per-offset config the runtime one must equal."""
    return cfg.replace(runtime_offset=False, causal_offset=p)


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("shape", [(5, 16, 4, 0), (3, 16, 4, 7), (4, 12, 3, 11), (2, 8, 8, 40),
                                   (1, 8, 2, 5)], ids=lambda s: "R{}L{}l{}p{}".format(*s))
def test_runtime_offset_equals_fixed_offset(shape, stall, rng):
    rows, length, lanes, p = shape
    cfg = SoftmaxConfig(length=length, lanes=lanes, causal=True, runtime_offset=True,
                        x_scale=1 / 8)
    x = rng.integers(-128, 128, (rows, length), dtype=np.int8)
    seed = int(rng.integers(1 << 30))
    result = run_block(H, cfg, {"x": x, "offset": p}, stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    np.testing.assert_array_equal(result.outputs["y"], softmax_bitexact(_fixed(cfg, p), x))
    np.testing.assert_array_equal(result.outputs["y"], softmax_bitexact(cfg, x, offset=p))


def _run_tensors(cfg, tensors, offsets, stall, seed, deadline=20000):
    """Several tensors back to back through one instance, the ``offset`` port set to the
    tensor's offset while its first beat is offered and to junk at every other beat (it must
    be read at the first beat only)."""
    dut = Softmax(cfg)
    layout = dut.i.payload.shape()
    beats, firsts = [], []
    for x, p in zip(tensors, offsets, strict=True):
        words = pack_rows(layout, x)
        firsts += [p] + [None] * (len(words) - 1)
        beats += words
    want = sum(x.shape[0] for x in tensors) * cfg.beats
    got = []
    go_in, go_out = Stalls(stall, seed).generator(), Stalls(stall, seed + 1).generator(1)
    junk = np.random.default_rng(seed)

    async def producer(ctx):
        for word, p in zip(beats, firsts, strict=True):
            while not next(go_in):
                ctx.set(dut.i.valid, 0)
                ctx.set(dut.offset, int(junk.integers(1 << OFFSET_BITS)))
                await ctx.tick()
            ctx.set(dut.i.valid, 1)
            ctx.set(Value.cast(dut.i.payload), word)
            while True:
                ctx.set(dut.offset, p if p is not None else int(junk.integers(1 << OFFSET_BITS)))
                if ctx.get(dut.i.ready):
                    await ctx.tick()
                    break
                await ctx.tick()
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        cycles = 0
        while len(got) < want:
            ready = next(go_out)
            ctx.set(dut.o.ready, ready)
            if ready and ctx.get(dut.o.valid):
                got.append(ctx.get(Value.cast(dut.o.payload)))
            await ctx.tick()
            cycles += 1
            assert cycles < deadline, f"deadline: {len(got)} of {want} beats"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run_until(deadline * 1e-8 + 1e-6)
    y, _, end = unpack_rows(dut.o.payload.shape(), got, cfg.length)
    return y, end


@pytest.mark.parametrize("stall", STALLS)
def test_offset_sampled_per_tensor(stall, rng):
    """Prefill chunks and decode steps at changing positions in one simulation."""
    cfg = SoftmaxConfig(length=12, lanes=3, causal=True, runtime_offset=True, x_scale=1 / 16)
    sizes, offsets = [3, 1, 1, 4, 2, 1], [0, 3, 4, 5, 9, 11]
    tensors = [rng.integers(-128, 128, (n, cfg.length)) for n in sizes]
    y, end = _run_tensors(cfg, tensors, offsets, stall, int(rng.integers(1 << 30)))
    want = np.vstack([softmax_bitexact(_fixed(cfg, p), x)
                      for x, p in zip(tensors, offsets, strict=True)])
    np.testing.assert_array_equal(y, want)
    assert list(np.flatnonzero(end)) == list(np.cumsum(sizes) * cfg.beats - 1)


def test_decode_row_equals_last_prefill_row(rng):
    """A decode step at position p gives the last row of a prefill of p + 1 rows."""
    cfg = SoftmaxConfig(length=8, lanes=4, causal=True, runtime_offset=True, x_scale=1 / 8)
    x = rng.integers(-128, 128, (6, 8))
    y, _ = _run_tensors(cfg, [x, x[-1:]], [0, 5], "none", 3)
    np.testing.assert_array_equal(y[5], y[6])


def test_tables_do_not_depend_on_the_offset():
    cfg = SoftmaxConfig(length=64, lanes=8, causal=True, runtime_offset=True, x_scale=0.07)
    for p in (0, 1, 63, 1000):
        fixed = _fixed(cfg, p)
        assert (fixed.exp_table, fixed.exp_frac, fixed.prob_shift, fixed.sum_width) == (
            cfg.exp_table, cfg.exp_frac, cfg.prob_shift, cfg.sum_width)
    assert OFFSET_BITS == 13


@pytest.mark.parametrize("bad, message", [
    (dict(runtime_offset=True), "runtime_offset=true needs causal=true"),
    (dict(runtime_offset=True, causal=True, causal_offset=2),
     "causal_offset=2 is not allowed with runtime_offset=true"),
    (dict(runtime_offset=1, causal=True), "runtime_offset=1 must be true or false"),
])
def test_config_rejects(bad, message):
    with pytest.raises(ConfigError, match=message):
        SoftmaxConfig(**bad)


def test_fixed_config_has_no_offset_port():
    fixed = Softmax(SoftmaxConfig(causal=True))
    runtime = Softmax(SoftmaxConfig(causal=True, runtime_offset=True))
    fixed._MustUse__silence = runtime._MustUse__silence = True     # signatures only
    assert "offset" not in fixed.signature.members
    assert "offset" in runtime.signature.members


HDL_CFG = SoftmaxConfig(length=8, lanes=2, causal=True, runtime_offset=True, x_scale=1 / 8)


@pytest.mark.parametrize("p, stall", [(0, "none"), (3, "pattern"), (9, "random")])
def test_runtime_offset_on_hdl_simulators(hdl_sim, p, stall, rng):
    x = rng.integers(-128, 128, (4, HDL_CFG.length), dtype=np.int8)
    seed = int(rng.integers(1 << 30))
    result = run_block(H, HDL_CFG, {"x": x, "offset": p}, sim=hdl_sim,
                       stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    np.testing.assert_array_equal(result.outputs["y"], softmax_bitexact(_fixed(HDL_CFG, p), x))
    reference = run_block(H, HDL_CFG, {"x": x, "offset": p}, stalls_in=Stalls(stall, seed),
                          stalls_out=Stalls(stall, seed + 1))
    assert result.cycles == reference.cycles
