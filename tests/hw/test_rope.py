"""RoPE on Amaranth's simulator: bit-exact with the golden model under stalls, positions taken
from the ``pos`` port per tensor, the bit-exact model within its stated bound of float64
maths, the table's facts, and bad configs and tensors rejected in one line."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator

from llmloom.hw.blocks.rope import Rope, RopeConfig
from llmloom.hw.config import ConfigError
from llmloom.sim.blocks.rope import RopeHarness
from llmloom.sim.golden.llama import rope_adjacent
from llmloom.sim.golden.rope import rope_bitexact, rope_float
from llmloom.sim.harness import TensorError
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls, pack_rows, unpack_rows

STALLS = ["none", "pattern", "random"]
H = RopeHarness()


def _check(cfg, x, pos, stall, seed=1):
    result = run_block(H, cfg, {"x": x, "pos": pos}, sim="amaranth",
                       stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    assert result.outputs["y"].dtype == np.int8
    np.testing.assert_array_equal(result.outputs["y"], rope_bitexact(cfg, x, pos))
    golden = H.golden(cfg, H.prepare(cfg, {"x": x, "pos": pos}))
    for key in golden:
        assert np.array_equal(result.outputs[key], golden[key]), key
    return result


# (rows, length, d_head, lanes, positions, pos)
SHAPES = [(5, 24, 8, 4, 40, 33), (3, 16, 16, 16, 8, 5), (4, 12, 4, 2, 300, 0),
          (1, 64, 64, 8, 600, 599), (2, 4, 2, 2, 2, 0)]


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "R{}L{}d{}l{}P{}p{}".format(*s))
def test_random_rows(shape, stall, rng):
    rows, length, d_head, lanes, positions, pos = shape
    cfg = RopeConfig(length=length, d_head=d_head, lanes=lanes, positions=positions,
                     base=float(rng.choice([10000.0, 100000.0, 7.5])),
                     x_scale=float(rng.uniform(0.01, 0.1)),
                     out_scale=float(rng.uniform(0.01, 0.1)), entry_width=24)
    x = rng.integers(-128, 128, (rows, length)).astype(np.int8)
    result = _check(cfg, x, pos, stall, seed=int(rng.integers(1 << 30)))
    if stall == "none":
        assert result.cycles == cfg.cycles(rows) == rows * cfg.beats + cfg.latency


@pytest.mark.parametrize("kind", ["all_min", "all_max", "zeros", "one_hot", "alternating"])
def test_edge_values(kind, rng):
    rows, length = 6, 16
    cfg = RopeConfig(length=length, d_head=8, lanes=4, positions=64, x_scale=0.05)
    x = {"all_min": np.full((rows, length), -128), "all_max": np.full((rows, length), 127),
         "zeros": np.zeros((rows, length), int),
         "one_hot": np.eye(rows, length, 3, dtype=int) * 127,
         "alternating": np.tile([127, -128], (rows, length // 2))}[kind]
    _check(cfg, x.astype(np.int8), 50, "random", seed=int(rng.integers(1 << 30)))


# (rows, length, d_head, lanes, positions, pos)
WIDE_SHAPES = [(5, 24, 8, 4, 40, 33), (2, 16, 16, 16, 8, 5)]


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("shape", WIDE_SHAPES, ids=lambda s: "R{}L{}d{}l{}P{}p{}".format(*s))
def test_int16_rows(shape, stall, rng):
    """``in_width`` 16: int16 rows in, int8 out, at a ratio of scales ~2**-8 (an int16 input's
    range onto int8's) with the default 21 fraction bits and 16-bit entries."""
    rows, length, d_head, lanes, positions, pos = shape
    x_scale = float(rng.uniform(1e-4, 4e-4))
    cfg = RopeConfig(length=length, d_head=d_head, lanes=lanes, positions=positions,
                     base=100000.0, in_width=16, x_scale=x_scale,
                     out_scale=x_scale * float(rng.uniform(100, 400)))
    assert (cfg.frac_bits, cfg.table_width, cfg.product_width) == (21, 16, 33)
    x = rng.integers(-32768, 32768, (rows, length))
    x[0, :4] = [-32768, 32767, -32768, -32768]          # the extremes
    result = _check(cfg, x.astype(np.int16), pos, stall, seed=int(rng.integers(1 << 30)))
    if stall == "none":
        assert result.cycles == cfg.cycles(rows)


def test_int16_input_is_refused_by_an_int8_block():
    cfg = RopeConfig(length=16, d_head=8, lanes=4, positions=10)
    with pytest.raises(TensorError, match=r"in_width=16 takes int16"):
        H.prepare(cfg, {"x": np.zeros((1, 16), np.int16)})


def test_int16_calibrated_out_scale_of_the_smallest_input():
    """As at int8: a lone ±1 int16 input still gives a ratio the (wider) table accepts."""
    x = np.zeros((2, 16), np.int16)
    x[1, 5] = -1
    tensors = {"x": x, "x_scale": 1e-4, "pos": 3}
    cfg = H.config({"d_head": 8, "lanes": 4, "positions": 8, "in_width": 16}, tensors)
    assert 1 < cfg.ratio <= 256 and cfg.table_width == 21 + 10
    assert np.max(np.abs(_check(cfg, x, 3, "none").outputs["y"])) == 127


def test_position_zero_is_the_identity_at_equal_scales(rng):
    cfg = RopeConfig(length=16, d_head=8, lanes=4, positions=4, x_scale=0.03)
    x = rng.integers(-128, 128, (1, 16)).astype(np.int8)
    np.testing.assert_array_equal(_check(cfg, x, 0, "none").outputs["y"], x)


def test_calibrated_out_scale_of_the_smallest_input():
    """`run` calibrates out_scale from the float result when it is not set; a lone ±1 (the
    smallest non-zero input) still gives a scale ratio the table accepts."""
    x = np.zeros((2, 16), np.int8)
    x[1, 5] = -1
    tensors = {"x": x, "x_scale": 0.05, "pos": 3}
    cfg = H.config({"d_head": 8, "lanes": 4, "positions": 8}, tensors)
    assert 1 < cfg.ratio <= 256
    y = _check(cfg, x, 3, "none").outputs["y"]
    assert np.max(np.abs(y)) == 127


def _run_tensors(cfg, tensors, positions, stall, seed, deadline=20000):
    """Several tensors back to back through one instance; ``pos`` is set to the tensor's
    position while its first beat is offered and to junk at every other beat (it must be read
    at a tensor's first beat only)."""
    dut = Rope(cfg)
    layout = dut.i.payload.shape()
    beats, firsts = [], []
    for x, p in zip(tensors, positions, strict=True):
        words = pack_rows(layout, x)
        firsts += [p] + [None] * (len(words) - 1)
        beats += words
    want = sum(x.shape[0] for x in tensors) * cfg.beats
    got = []
    go_in, go_out = Stalls(stall, seed).generator(), Stalls(stall, seed + 1).generator(1)
    junk = np.random.default_rng(seed)

    # Handshakes are judged by the values sampled at the clock edge: ``i.ready`` follows
    # ``o.ready`` combinationally (the pipeline's stages advance together), so a value read
    # between the two testbenches' writes in a cycle could be stale.
    async def producer(ctx):
        for word, p in zip(beats, firsts, strict=True):
            while not next(go_in):
                ctx.set(dut.i.valid, 0)
                ctx.set(dut.pos, int(junk.integers(cfg.positions)))
                await ctx.tick()
            ctx.set(dut.i.valid, 1)
            ctx.set(Value.cast(dut.i.payload), word)
            while True:
                ctx.set(dut.pos, p if p is not None else int(junk.integers(cfg.positions)))
                *_, ready = await ctx.tick().sample(dut.i.ready)
                if ready:
                    break
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        cycles = 0
        while len(got) < want:
            ctx.set(dut.o.ready, next(go_out))
            *_, ready, valid, word = await ctx.tick().sample(dut.o.ready, dut.o.valid,
                                                              Value.cast(dut.o.payload))
            if ready and valid:
                got.append(word)
            cycles += 1
            assert cycles < deadline, f"deadline: {len(got)} of {want} beats"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run_until(deadline * 1e-8 + 1e-6)
    y, last, end = unpack_rows(dut.o.payload.shape(), got, cfg.length)
    return y, last, end


@pytest.mark.parametrize("stall", STALLS)
def test_position_sampled_per_tensor(stall, rng):
    """A prefill chunk, then decode steps, then a new sequence, in one simulation."""
    cfg = RopeConfig(length=24, d_head=8, lanes=4, positions=32, base=100000.0, x_scale=0.05)
    sizes, positions = [5, 1, 1, 3, 2, 1], [0, 5, 6, 7, 0, 31]
    tensors = [rng.integers(-128, 128, (n, cfg.length)) for n in sizes]
    y, last, end = _run_tensors(cfg, tensors, positions, stall, int(rng.integers(1 << 30)))
    want = np.vstack([rope_bitexact(cfg, x, p) for x, p in zip(tensors, positions, strict=True)])
    np.testing.assert_array_equal(y, want)
    assert list(np.flatnonzero(end)) == list(np.cumsum(sizes) * cfg.beats - 1)
    assert list(np.flatnonzero(last)) == list(np.arange(1, sum(sizes) + 1) * cfg.beats - 1)


# ---- numerics ------------------------------------------------------------------------------
def _assert_bound_attained(cfg, rng):
    """Random full-range rows at positions up to 65535: the largest error of an output that
    does not saturate is within ``cfg.error_bound_lsb`` and within 0.02 LSB of its rounding
    part (the table's part, ``2**(in_width−1)·2**−F``, taken off)."""
    top = 1 << (cfg.in_width - 1)
    worst = 0.0
    for pos in (0, 1, 17, 4095, (1 << 16) - 40):
        x = rng.integers(-top, top, (40, cfg.length))
        y = rope_bitexact(cfg, x, pos).astype(np.int64)
        ref = rope_float(cfg, x, pos) / cfg.out_scale_value
        keep = (y > -128) & (y < 127)
        worst = max(worst, float(np.max(np.abs(y - ref)[keep])))
    assert worst <= cfg.error_bound_lsb
    assert worst >= cfg.error_bound_lsb - top * 2.0 ** -cfg.frac_bits - 0.02


@pytest.mark.parametrize("values", [
    {}, {"frac_bits": 8}, {"frac_bits": 20, "rounding": "half_up"}, {"rounding": "floor"},
    {"out_scale": 0.05 / 1.5}, {"out_scale": 0.05 * 3}, {"base": 100000.0, "d_head": 64},
], ids=lambda v: "-".join(f"{k}={v}" for k, v in v.items()) or "default")
def test_bitexact_within_the_stated_bound_of_float(values, rng):
    """|y − rotation(x·x_scale)/out_scale| ≤ 0.5 + 128·2**−F LSB (1 + ... with floor) where y
    does not saturate, over random rows at positions up to 65535 (measured: 0.5 + a few
    thousandths with 14 fraction bits; the bound is attained within 0.02 LSB)."""
    values = {"length": 128, "d_head": 32, "lanes": 8, "positions": 1 << 16, "x_scale": 0.05}\
        | values
    cfg = RopeConfig(**values)
    _assert_bound_attained(cfg, rng)


@pytest.mark.parametrize("values", [
    {}, {"frac_bits": 16}, {"rounding": "floor"}, {"out_scale": 0.05 * 256 / 1.5},
    {"out_scale": 0.05 * 256 * 3, "base": 100000.0, "d_head": 64},
], ids=lambda v: "-".join(f"{k}={v}" for k, v in v.items()) or "default")
def test_int16_bitexact_within_the_stated_bound_of_float(values, rng):
    """At ``in_width`` 16: |y − rotation(x·x_scale)/out_scale| ≤ 0.5 + 2**15·2**−F LSB (1 + ...
    with floor), F 21 by default (0.5 + 1/64), where y does not saturate; attained within
    0.02 LSB."""
    values = {"length": 128, "d_head": 32, "lanes": 8, "positions": 1 << 16, "x_scale": 0.05,
              "in_width": 16} | values
    cfg = RopeConfig(**values)
    assert cfg.error_bound_lsb == (1.0 if cfg.rounding == "floor" else 0.5) + \
        2.0 ** (15 - cfg.frac_bits)
    _assert_bound_attained(cfg, rng)


def test_widths_follow_in_width():
    """int8 keeps its table (14 fraction bits, 16-bit entries, 25-bit sums); int16 takes seven
    more fraction bits, 16-bit entries (one multiplier port beside the int16) and 33-bit sums,
    and its default output scale maps the int16 range onto int8's."""
    c8, c16 = RopeConfig(), RopeConfig(in_width=16)
    assert (c8.IN.width, c8.frac_bits, c8.table_width, c8.product_width) == (8, 14, 16, 25)
    assert (c16.IN.width, c16.frac_bits, c16.table_width, c16.product_width) == (16, 21, 16, 33)
    assert (c8.error_bound_lsb, c16.error_bound_lsb) == (0.5 + 2.0 ** -7, 0.5 + 2.0 ** -6)
    assert c16.ratio == 2.0 ** -8
    # the same rotation: an int16 entry holds 2**-8 of an int8 one's value in 2**-21 steps,
    # so 16 bits hold both
    C8, _ = c8.table
    C16, _ = c16.table
    assert np.all(np.abs(2 * C16 - C8) <= 1) and np.max(np.abs(C16)) == 1 << 13


def test_float_model_is_the_llama_references_rope(rng):
    cfg = RopeConfig(length=32, d_head=16, lanes=4, positions=100, base=100000.0, x_scale=0.1)
    x = rng.integers(-128, 128, (7, 32))
    want = rope_adjacent(x.reshape(7, 2, 16) * 0.1, np.arange(90, 97), 100000.0)
    np.testing.assert_allclose(rope_float(cfg, x, 90), want.reshape(7, 32), rtol=0, atol=1e-12)


def test_table_facts():
    cfg = RopeConfig(length=64, d_head=64, lanes=8, positions=2048, base=100000.0)
    C, S = cfg.table
    assert C.shape == S.shape == (2048, 32)
    assert np.all(C[0] == 1 << 14) and np.all(S[0] == 0)     # position 0: no rotation
    assert cfg.table_width == 16 and cfg.table_bits == 2048 * 64 * 16
    assert np.max(np.abs(C)) <= 1 << 14 and np.max(np.abs(S)) <= 1 << 14
    # the slowest pair barely turns over the context, the fastest turns once a position
    assert S[2047, 31] < 0.05 * (1 << 14) and S[1, 0] == round(np.sin(1.0) * (1 << 14))


# ---- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("values, message", [
    ({"d_head": 7, "length": 14}, "d_head=7 is odd"),
    ({"length": 60}, "length=60 is not a multiple of d_head=64"),
    ({"lanes": 3}, "lanes=3 is not allowed with d_head=64"),
    ({"lanes": 12}, "lanes=12 is not allowed with d_head=64"),
    ({"base": 1.0}, "base=1.0 is not allowed"),
    ({"base": float("inf")}, "base=inf is not allowed"),
    ({"positions": 1}, "positions=1 is out of range"),
    ({"x_scale": 1.0, "out_scale": 1e-3}, "x_scale/out_scale=1000 is out of range"),
    ({"frac_bits": 3}, "frac_bits=3 is out of range"),
    ({"frac_bits": 21}, "frac_bits=21 is out of range; allowed: 4..20 at in_width=8"),
    ({"in_width": 16, "frac_bits": 29}, "frac_bits=29 is out of range"),
    ({"in_width": 12}, "in_width=12 is not allowed; allowed: 8 | 16"),
    ({"in_width": 16, "x_scale": 1e-8, "out_scale": 0.05}, "x_scale/out_scale=2e-07 is out "
     "of range; allowed: 1.52588e-05..256"),
    ({"in_width": 16, "x_scale": 0.1, "out_scale": 1.0}, "x_scale/out_scale=0.1 needs "
     "19-bit table entries; entry_width=16"),
    ({"rounding": "up"}, "rounding='up' is not allowed"),
])
def test_bad_configs(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        RopeConfig(**values)


def test_bad_tensors():
    cfg = RopeConfig(length=16, d_head=8, lanes=4, positions=10)
    x = np.zeros((3, 16), np.int8)
    with pytest.raises(TensorError, match=r"positions 8\.\.10 do not fit the table"):
        H.prepare(cfg, {"x": x, "pos": 8})
    with pytest.raises(TensorError, match="'pos' must be one integer"):
        H.prepare(cfg, {"x": x, "pos": 1.5})
    with pytest.raises(TensorError, match=r"shape 3×12; expected \?×16"):
        H.prepare(cfg, {"x": np.zeros((3, 12), np.int8)})
