"""Stream plumbing: the skid buffer and the queue lose, duplicate or reorder nothing."""

from __future__ import annotations

import pytest
from amaranth.hdl import unsigned

from llmloom.hw.config import ConfigError
from llmloom.hw.stream import Queue, SkidBuffer
from llmloom.sim.harness import Drive
from llmloom.sim.runner import simulate
from llmloom.sim.streams import Stalls


@pytest.mark.parametrize("stall", ["none", "pattern", "random"])
@pytest.mark.parametrize("make, latency", [(lambda: SkidBuffer(unsigned(12)), 1),
                                           (lambda: Queue(unsigned(12), 3), 2)],
                         ids=["skid", "queue"])
def test_in_order_under_stalls(make, latency, stall, rng):
    words = [int(x) for x in rng.integers(0, 1 << 12, 200)]
    beats, cycles, *_ = simulate(make(), Drive({}, {"i": words}, {"o": len(words)}),
                                 stalls_in=Stalls(stall, 3), stalls_out=Stalls(stall, 4))
    assert beats["o"] == words
    if stall == "none":
        assert cycles == len(words) + latency      # full throughput


def test_skid_buffer_ready_is_registered():
    """i.ready must not depend combinationally on o.ready (that is the point of a skid)."""
    from amaranth.sim import Simulator

    dut = SkidBuffer(unsigned(4))
    seen = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.o.ready, 0)
        await ctx.tick()
        before = ctx.get(dut.i.ready)
        ctx.set(dut.o.ready, 1)          # flip o.ready within the cycle
        seen.append((before, ctx.get(dut.i.ready)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen[0][0] == seen[0][1]


def test_queue_depth_checked():
    with pytest.raises(ConfigError, match="queue depth=0 is out of range"):
        Queue(unsigned(8), 0)


# ---- the plumbing that lets stages of different parallelism meet -----------------------------
from amaranth.hdl import signed  # noqa: E402

from llmloom.hw.stream import Cast, Fork, Gearbox, row_layout  # noqa: E402
from llmloom.sim.streams import pack_rows, unpack_rows  # noqa: E402

GEARS = [(1, 4, 8), (4, 1, 8), (2, 6, 12), (6, 2, 12), (3, 3, 9), (4, 8, 8), (8, 4, 8)]


@pytest.mark.parametrize("stall", ["none", "pattern", "random"])
@pytest.mark.parametrize("gear", GEARS, ids=lambda g: "{}to{}_L{}".format(*g))
def test_gearbox(gear, stall, rng):
    a, b, length = gear
    rows = rng.integers(-128, 128, (7, length))
    dut = Gearbox(signed(8), a, b, length)
    words = pack_rows(row_layout(signed(8), a), rows)
    want = pack_rows(row_layout(signed(8), b), rows)
    beats, cycles, *_ = simulate(dut, Drive({}, {"i": words}, {"o": len(want)}),
                                 stalls_in=Stalls(stall, 1), stalls_out=Stalls(stall, 2))
    assert beats["o"] == want            # data, `last` on row ends, `end` on the final beat
    if stall == "none":
        assert cycles <= max(len(words), len(want)) + 2     # the slower side at full rate


def test_gearbox_rejects():
    with pytest.raises(ConfigError, match="in_lanes=3 does not divide length=8"):
        Gearbox(signed(8), 3, 1, 8)
    with pytest.raises(ConfigError, match="one a multiple of the other"):
        Gearbox(signed(8), 4, 6, 12)


@pytest.mark.parametrize("stall", ["none", "pattern", "random"])
def test_fork_delivers_every_beat_to_every_output(stall, rng):
    words = [int(x) for x in rng.integers(0, 1 << 10, 100)]
    dut = Fork(unsigned(10), 3)
    beats, *_ = simulate(dut, Drive({}, {"i": words}, {"o_0": 100, "o_1": 100, "o_2": 100}),
                         stalls_in=Stalls(stall, 5), stalls_out=Stalls(stall, 6))
    assert beats["o_0"] == beats["o_1"] == beats["o_2"] == words


def test_cast_uint8_to_signed9(rng):
    from amaranth.hdl import unsigned as u
    rows = rng.integers(0, 256, (3, 4))
    dut = Cast(u(8), signed(9), 2)
    beats, *_ = simulate(dut, Drive({}, {"i": pack_rows(row_layout(u(8), 2), rows)},
                                    {"o": 6}))
    back, last, end = unpack_rows(row_layout(signed(9), 2), beats["o"], 4)
    assert (back == rows).all() and last.sum() == 3 and end[-1]
