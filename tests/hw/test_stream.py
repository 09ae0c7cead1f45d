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
