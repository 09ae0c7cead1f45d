"""Stream conventions and plumbing shared by all blocks.

Every block moves data on :mod:`amaranth.lib.stream` ports and obeys its rules: once ``valid``
is asserted it stays, with the payload unchanged, until the transfer; ``valid`` never waits for
``ready``. Tensors travel as rows: a beat carries ``lanes`` elements of a row in ``data`` (an
``ArrayLayout``), ``last`` marks the last beat of a row and ``end`` the last beat of the last row
of a tensor (so blocks that count rows, like a causal softmax, know where a tensor starts).
"""

from __future__ import annotations

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import ConfigError

__all__ = ["row_layout", "SkidBuffer", "Queue"]


def row_layout(shape, lanes):
    """The payload of a row stream: ``lanes`` elements of ``shape``, then ``last`` and ``end``."""
    return data.StructLayout({
        "data": data.ArrayLayout(shape, lanes),
        "last": 1,
        "end": 1,
    })


class SkidBuffer(wiring.Component):
    """A two-entry register stage that cuts the combinational path on both ``valid`` and
    ``ready``: full throughput, ``i.ready`` comes straight from a flip-flop.

    Parameters
    ----------
    shape : ShapeLike
        Payload shape of both ports.

    Members
    -------
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))

    Latency 1 cycle, initiation interval 1. Under backpressure one extra beat is held in the skid
    register, so ``i.ready`` falls one cycle after ``o.ready`` does, and no beat is lost.
    """

    def __init__(self, shape):
        self._shape = shape
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        skid = Signal.like(self.o.payload, name="skid")
        skid_valid = Signal()
        m.d.comb += self.i.ready.eq(~skid_valid)
        with m.If(self.o.ready | ~self.o.valid):
            # The output register is free this cycle: fill it from the skid register first.
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & self.i.ready):
            # Output stalled but we told the producer we were ready: keep its beat aside.
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m


class Queue(wiring.Component):
    """A first-in first-out queue of ``depth`` beats with stream ports (wraps
    :class:`amaranth.lib.fifo.SyncFIFOBuffered`, whose output is registered).

    Members
    -------
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))
    level : Out(range(depth + 1))
        Beats held now.

    Latency 2 cycles (the FIFO's registered output); initiation interval 1; ``i.ready`` is
    low exactly when ``depth`` beats are held.
    """

    def __init__(self, shape, depth):
        if not isinstance(depth, int) or depth < 1:
            self._MustUse__silence = True   # never built: no "unused elaboratable" warning
            raise ConfigError(f"queue depth={depth!r} is out of range; allowed: >= 1")
        self._shape, self._depth = shape, depth
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        width = Shape.cast(self._shape).width
        m.submodules.fifo = q = fifo.SyncFIFOBuffered(width=width, depth=self._depth)
        m.d.comb += [
            q.w_data.eq(self.i.payload),
            q.w_en.eq(self.i.valid),
            self.i.ready.eq(q.w_rdy),
            self.o.payload.eq(q.r_data),
            self.o.valid.eq(q.r_rdy),
            q.r_en.eq(self.o.ready),
            self.level.eq(q.level),
        ]
        return m


