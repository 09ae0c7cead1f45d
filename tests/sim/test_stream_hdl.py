"""Stream plumbing on Icarus and Verilator: nothing lost, duplicated or reordered."""

from __future__ import annotations

import pytest
from amaranth.hdl import signed, unsigned

from llmloom.hw.stream import Fork, Gearbox, row_layout
from llmloom.sim.engine import SimTimeout
from llmloom.sim.harness import Drive
from llmloom.sim.runner import simulate
from llmloom.sim.streams import Stalls, pack_rows


@pytest.mark.parametrize("stall", ["pattern", "random"])
@pytest.mark.parametrize("gear", [(2, 6), (6, 2)], ids=["widen", "narrow"])
def test_gearbox_hdl(hdl_sim, gear, stall, rng):
    a, b = gear
    rows = rng.integers(-128, 128, (5, 12))
    want = pack_rows(row_layout(signed(8), b), rows)
    beats, *_ = simulate(Gearbox(signed(8), a, b, 12),
                         Drive({}, {"i": pack_rows(row_layout(signed(8), a), rows)},
                               {"o": len(want)}),
                         sim=hdl_sim, stalls_in=Stalls(stall, 1), stalls_out=Stalls(stall, 2))
    assert beats["o"] == want


def test_fork_hdl(hdl_sim, rng):
    words = [int(x) for x in rng.integers(0, 1 << 10, 60)]
    beats, *_ = simulate(Fork(unsigned(10), 2), Drive({}, {"i": words}, {"o_0": 60, "o_1": 60}),
                         sim=hdl_sim, stalls_in=Stalls("random", 3),
                         stalls_out=Stalls("random", 4))
    assert beats["o_0"] == beats["o_1"] == words


def test_a_failed_cocotb_run_raises_its_reason_in_the_caller(icarus_sim):
    """The bench reports its failure (here the engine's timeout) under the result key every
    cocotb bench uses, and the runner raises it, of its kind, in the caller."""
    words = list(range(8))
    with pytest.raises(SimTimeout, match=r"within 200 cycles \(outputs o_0: 8 of 9 beats"):
        simulate(Fork(unsigned(10), 2), Drive({}, {"i": words}, {"o_0": 9, "o_1": 8}),
                 sim=icarus_sim, max_cycles=200)
