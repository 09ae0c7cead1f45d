"""The softmax's key padding mask (``runtime_keys``): every row keeps the keys ``j < keys``,
the count read from the ``keys`` port at each tensor's first beat. One instance of ``length``
L gives, for a count n, what a config of ``length = n`` gives on the first n scores (and 0
after), bit for bit, on Amaranth's simulator (the count changing from tensor to tensor) and
on Icarus and Verilator."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator

from llmloom.hw.blocks.softmax import KEYS_BITS, PROB, Softmax, SoftmaxConfig
from llmloom.hw.config import ConfigError
from llmloom.sim.blocks.softmax import SoftmaxHarness
from llmloom.sim.golden.softmax import softmax_bitexact
from llmloom.sim.harness import TensorError
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls, pack_rows, unpack_rows

STALLS = ["none", "pattern", "random"]
H = SoftmaxHarness()


def _short(cfg, x, n):
    """What a config of ``length = n`` gives on the first n scores, zeros after."""
    want = np.zeros(x.shape, PROB.dtype)
    want[:, :n] = softmax_bitexact(cfg.replace(length=n, runtime_keys=False), x[:, :n])
    return want


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("shape", [(3, 8, 4, 3), (4, 8, 4, 5), (2, 8, 4, 8), (3, 6, 4, 5),
                                   (2, 12, 3, 1)], ids=lambda s: "R{}L{}l{}n{}".format(*s))
def test_keys_equal_a_config_of_that_length(shape, stall, rng):
    rows, length, lanes, n = shape
    cfg = SoftmaxConfig(length=length, lanes=lanes, runtime_keys=True, x_scale=1 / 8)
    x = rng.integers(-128, 128, (rows, length), dtype=np.int8)
    x[:, n:] = 127                 # masked keys above every kept one: they must not count
    seed = int(rng.integers(1 << 30))
    result = run_block(H, cfg, {"x": x, "keys": n}, stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    want = softmax_bitexact(cfg, x, keys=n)
    np.testing.assert_array_equal(result.outputs["y"], want)
    np.testing.assert_array_equal(want, _short(cfg, x, n))


def test_keys_sampled_per_tensor(rng):
    """Tensors of changing key counts back to back; the port holds junk between first beats."""
    cfg = SoftmaxConfig(length=12, lanes=4, runtime_keys=True, x_scale=1 / 16)
    sizes, counts = [3, 1, 4, 2], [5, 12, 1, 9]
    tensors = [rng.integers(-128, 128, (r, cfg.length)) for r in sizes]
    dut = Softmax(cfg)
    layout = dut.i.payload.shape()
    beats, firsts = [], []
    for x, n in zip(tensors, counts, strict=True):
        words = pack_rows(layout, x)
        firsts += [n] + [None] * (len(words) - 1)
        beats += words
    want_beats = sum(sizes) * cfg.beats
    got = []
    go_in, go_out = Stalls("random", 5).generator(), Stalls("random", 6).generator(1)
    junk = np.random.default_rng(1)

    async def producer(ctx):
        for word, n in zip(beats, firsts, strict=True):
            while not next(go_in):
                ctx.set(dut.i.valid, 0)
                ctx.set(dut.keys, int(junk.integers(1 << KEYS_BITS)))
                await ctx.tick()
            ctx.set(dut.i.valid, 1)
            ctx.set(Value.cast(dut.i.payload), word)
            while True:
                ctx.set(dut.keys, n if n is not None else int(junk.integers(1 << KEYS_BITS)))
                if ctx.get(dut.i.ready):
                    await ctx.tick()
                    break
                await ctx.tick()
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        while len(got) < want_beats:
            ready = next(go_out)
            ctx.set(dut.o.ready, ready)
            if ready and ctx.get(dut.o.valid):
                got.append(ctx.get(Value.cast(dut.o.payload)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run_until(20000 * 1e-8)
    y, _, _ = unpack_rows(dut.o.payload.shape(), got, cfg.length)
    want = np.vstack([softmax_bitexact(cfg, x, keys=n)
                      for x, n in zip(tensors, counts, strict=True)])
    np.testing.assert_array_equal(y, want)


def test_config_and_tensor_rejects():
    with pytest.raises(ConfigError, match="runtime_keys=true needs causal=false"):
        SoftmaxConfig(causal=True, runtime_keys=True)
    cfg = SoftmaxConfig(length=8, lanes=4, runtime_keys=True)
    x = np.zeros((1, 8), np.int8)
    for bad in (0, 9):
        with pytest.raises(TensorError, match="one integer in 1..8"):
            H.prepare(cfg, {"x": x, "keys": bad})
    with pytest.raises(TensorError, match="needs runtime_keys=true"):
        H.prepare(cfg.replace(runtime_keys=False), {"x": x, "keys": 3})
    with pytest.raises(ValueError, match="runtime_keys"):
        softmax_bitexact(cfg.replace(runtime_keys=False), x, keys=3)
    plain = Softmax(cfg.replace(runtime_keys=False))
    masked = Softmax(cfg)
    plain._MustUse__silence = masked._MustUse__silence = True
    assert "keys" not in plain.signature.members and "keys" in masked.signature.members


HDL_CFG = SoftmaxConfig(length=6, lanes=4, runtime_keys=True, x_scale=1 / 8)


@pytest.mark.parametrize("n, stall", [(3, "random"), (6, "pattern")])
def test_keys_on_hdl_simulators(hdl_sim, n, stall, rng):
    x = rng.integers(-128, 128, (4, HDL_CFG.length), dtype=np.int8)
    seed = int(rng.integers(1 << 30))
    stalls = dict(stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    result = run_block(H, HDL_CFG, {"x": x, "keys": n}, sim=hdl_sim, **stalls)
    np.testing.assert_array_equal(result.outputs["y"], _short(HDL_CFG, x, n))
    assert result.cycles == run_block(H, HDL_CFG, {"x": x, "keys": n}, **stalls).cycles
