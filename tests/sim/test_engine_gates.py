"""Gated input words and per-segment timing in the stream engine (``sim/engine.py``): a gated
word is never offered before its output condition holds (and, without stalls, in the very
next cycle), segments are timed from their first input transfer to their last output
transfer, gated segments add up to the run, and every back end agrees."""

from __future__ import annotations

import collections

import pytest
from amaranth.hdl import unsigned

from llmloom.hw.stream import Queue
from llmloom.sim.engine import StreamEngine
from llmloom.sim.harness import Drive, Gate, Segment
from llmloom.sim.runner import simulate
from llmloom.sim.streams import NO_STALLS, Stalls


class DelayLine:
    """A stand-in block for the engine alone: ``i`` is always ready, and each beat is offered
    on ``o`` ``latency`` cycles after its transfer, in order, held until taken."""

    def __init__(self, latency):
        self.latency, self.cycle = latency, 0
        self.queue = collections.deque()
        self.inputs = {}

    def get(self, name):
        if name == "i__ready":
            return 1
        if name == "o__valid":
            return int(bool(self.queue) and self.queue[0][0] <= self.cycle)
        return self.queue[0][1]                     # o__payload

    def tick(self):
        if self.inputs.get("o__ready") and self.get("o__valid"):
            self.queue.popleft()
        if self.inputs.get("i__valid"):
            self.queue.append((self.cycle + self.latency, self.inputs["i__payload"]))
        self.cycle += 1


def run_engine(drive, latency=3, stalls_in=NO_STALLS, stalls_out=NO_STALLS):
    """``(engine, offers, taken_out)``: per cycle the word offered on ``i`` (or None), and the
    cycle of every output transfer."""
    engine = StreamEngine(drive, stalls_in, stalls_out, max_cycles=10_000)
    dut, offers, taken = DelayLine(latency), [], []
    while not engine.done:
        dut.inputs = dict(engine.drive())
        offers.append(dut.inputs.get("i__payload") if dut.inputs.get("i__valid") else None)
        before = len(engine.outputs[0].got)
        engine.observe(dut.get)
        if len(engine.outputs[0].got) > before:
            taken.append(dut.cycle)
        dut.tick()
    return engine, offers, taken


def first_offer(offers, word):
    return offers.index(word)


WORDS = list(range(100, 112))


def gated_drive(**kw):
    return Drive(preload={}, timed={"i": WORDS}, expect={"o": len(WORDS)},
                 gates={"i": [Gate(4, "o", 4), Gate(9, "o", 6)]},
                 segments=[Segment("i", 0, "o", 4), Segment("i", 4, "o", 9),
                           Segment("i", 9, "o", 12)], **kw)


def test_gated_word_is_offered_the_cycle_after_its_condition():
    engine, offers, taken = run_engine(gated_drive())
    assert engine.results()["o"] == WORDS
    assert first_offer(offers, WORDS[4]) == taken[3] + 1      # after the 4th output beat
    assert first_offer(offers, WORDS[9]) == taken[5] + 1      # after the 6th
    # ungated words follow back to back
    assert [first_offer(offers, WORDS[j]) for j in range(4)] == [0, 1, 2, 3]
    assert first_offer(offers, WORDS[5]) == first_offer(offers, WORDS[4]) + 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_gates_hold_under_random_stalls(seed):
    engine, offers, taken = run_engine(gated_drive(), stalls_in=Stalls("random", seed),
                                       stalls_out=Stalls("random", seed + 10))
    assert engine.results()["o"] == WORDS
    assert first_offer(offers, WORDS[4]) > taken[3]
    assert first_offer(offers, WORDS[9]) > taken[5]


def test_segments_are_timed_and_gated_ones_add_up():
    drive = Drive(preload={}, timed={"i": WORDS}, expect={"o": len(WORDS)},
                  gates={"i": [Gate(4, "o", 4)]},
                  segments=[Segment("i", 0, "o", 4), Segment("i", 4, "o", 12)])
    engine, offers, taken = run_engine(drive, latency=5)
    first, second = engine.segment_cycles
    assert first == taken[3] - 0 + 1 == 4 + 5
    assert second == taken[11] - first_offer(offers, WORDS[4]) + 1 == 8 + 5
    # the second segment's first word is offered (and taken) the cycle after the first's end
    assert engine.cycles == first + second
    # without the gate the tensors overlap: the run is shorter than the sum
    free = Drive(preload={}, timed={"i": WORDS}, expect={"o": len(WORDS)},
                 segments=drive.segments)
    engine, *_ = run_engine(free, latency=5)
    assert engine.cycles == 12 + 5 < sum(engine.segment_cycles)


@pytest.mark.parametrize("bad, message", [
    (dict(gates={"x": [Gate(0, "o", 1)]}), "not a timed input"),
    (dict(gates={"i": [Gate(0, "y", 1)]}), "not an output"),
    (dict(gates={"i": [Gate(12, "o", 1)]}), "has 12 words"),
    (dict(gates={"i": [Gate(3, "o", 13)]}), "never open"),
    (dict(gates={"i": [Gate(3, "o", 1), Gate(3, "o", 2)]}), "two gates"),
    (dict(segments=[Segment("i", 12, "o", 3)]), "not a timed input word"),
    (dict(segments=[Segment("i", 0, "o", 0)]), "not an expected output beat"),
])
def test_bad_gates_and_segments_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        StreamEngine(Drive(preload={}, timed={"i": WORDS}, expect={"o": 12}, **bad))


def queue_drive():
    return Drive({}, {"i": WORDS}, {"o": len(WORDS)}, gates={"i": [Gate(5, "o", 5)]},
                 segments=[Segment("i", 0, "o", 5), Segment("i", 5, "o", 12)])


def test_gates_on_amaranth():
    beats, cycles, _, _, segments = simulate(Queue(unsigned(8), 4), queue_drive())
    assert beats["o"] == WORDS
    # Queue latency 2: a segment of n beats takes n + 2 cycles; the gate adds them up
    assert segments == [5 + 2, 7 + 2] and cycles == sum(segments)


def test_gates_on_hdl_simulators(hdl_sim):
    stalls = dict(stalls_in=Stalls("random", 5), stalls_out=Stalls("random", 6))
    beats, cycles, _, _, segments = simulate(Queue(unsigned(8), 4), queue_drive(),
                                             sim=hdl_sim, **stalls)
    assert beats["o"] == WORDS
    assert (cycles, segments) == simulate(Queue(unsigned(8), 4), queue_drive(), **stalls)[1::3]
    assert cycles >= sum(segments)
