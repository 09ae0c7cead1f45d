"""The cycle-by-cycle stream driver shared by all simulator back ends.

A back end calls, every cycle: :meth:`StreamEngine.drive` (the values to put on the block's
``valid``/``payload``/``ready`` inputs), then :meth:`StreamEngine.observe` with a function that
reads a port signal after the combinational logic has settled, then advances the clock. The
engine decides stalls, records transfers and counts cycles, so Amaranth's simulator, Icarus and
Verilator see exactly the same stimulus.
"""

from __future__ import annotations

import dataclasses

from .streams import NO_STALLS

__all__ = ["StreamEngine", "SimTimeout"]


class SimTimeout(RuntimeError):
    """The block did not produce all its output beats before the deadline."""


@dataclasses.dataclass
class _In:
    port: str
    words: list
    gen: object
    timed: bool
    idx: int = 0
    offered: bool = False

    @property
    def done(self):
        return self.idx >= len(self.words)


@dataclasses.dataclass
class _Out:
    port: str
    expect: int
    gen: object
    got: list = dataclasses.field(default_factory=list)
    ready: bool = False


class StreamEngine:
    """Drives a :class:`~llmloom.sim.harness.Drive` into a block.

    Inputs follow the rules of ``amaranth.lib.stream``: a beat, once offered, stays offered
    with the same payload until it is taken. ``stalls_in`` decides when a new beat is offered;
    ``stalls_out`` decides, every cycle, whether each output is ready.
    """

    def __init__(self, drive, stalls_in=NO_STALLS, stalls_out=NO_STALLS, max_cycles=1_000_000,
                 on_output=None):
        self.inputs = [_In(p, list(w), stalls_in.generator(salt=n), False)
                       for n, (p, w) in enumerate(drive.preload.items())]
        self.inputs += [_In(p, list(w), stalls_in.generator(salt=100 + n), True)
                        for n, (p, w) in enumerate(drive.timed.items())]
        self.outputs = [_Out(p, e, stalls_out.generator(salt=200 + n))
                        for n, (p, e) in enumerate(drive.expect.items())]
        self.max_cycles = max_cycles
        self.cycle = 0
        self.first_timed = None
        self.last_out = None
        self.on_output = on_output

    @property
    def preloading(self):
        return any(not s.timed and not s.done for s in self.inputs)

    @property
    def done(self):
        return all(len(o.got) >= o.expect for o in self.outputs) and all(
            s.done for s in self.inputs)

    @property
    def cycles(self):
        """Cycles from the first timed input transfer to the last output transfer, inclusive."""
        if self.first_timed is None or self.last_out is None:
            return 0
        return self.last_out - self.first_timed + 1

    def drive(self):
        """``[(signal, value)]`` to apply before this cycle's clock edge."""
        sets = []
        preloading = self.preloading
        for s in self.inputs:
            active = not s.done and (not s.timed or not preloading)
            if active and not s.offered:
                s.offered = next(s.gen)
            if not active:
                s.offered = False
            sets.append((f"{s.port}__valid", int(s.offered)))
            if s.offered:
                sets.append((f"{s.port}__payload", s.words[s.idx]))
        for o in self.outputs:
            o.ready = next(o.gen)
            sets.append((f"{o.port}__ready", int(o.ready)))
        return sets

    def observe(self, get):
        """Record the transfers of this cycle; ``get(signal)`` reads a settled value."""
        for s in self.inputs:
            if s.offered and get(f"{s.port}__ready"):
                if s.timed and self.first_timed is None:
                    self.first_timed = self.cycle
                s.idx += 1
                s.offered = False
        for o in self.outputs:
            if o.ready and get(f"{o.port}__valid"):
                if len(o.got) >= o.expect:
                    raise AssertionError(
                        f"output {o.port!r} produced more than the {o.expect} beats expected")
                o.got.append(get(f"{o.port}__payload"))
                self.last_out = self.cycle
                if self.on_output:
                    self.on_output()
        self.cycle += 1
        if self.cycle > self.max_cycles and not self.done:
            got = ", ".join(f"{o.port}: {len(o.got)} of {o.expect} beats" for o in self.outputs)
            fed = ", ".join(f"{s.port}: {s.idx} of {len(s.words)}" for s in self.inputs)
            raise SimTimeout(f"simulation did not finish within {self.max_cycles} cycles "
                             f"(outputs {got}; inputs taken {fed})")

    def results(self):
        return {o.port: o.got for o in self.outputs}
