"""Stream conventions and plumbing shared by all blocks.

Every block moves data on :mod:`amaranth.lib.stream` ports and obeys its rules: once ``valid``
is asserted it stays, with the payload unchanged, until the transfer; ``valid`` never waits for
``ready``. Tensors travel as rows: a beat carries ``lanes`` elements of a row in ``data`` (an
``ArrayLayout``), ``last`` marks the last beat of a row and ``end`` the last beat of the last row
of a tensor (so blocks that count rows, like a causal softmax, know where a tensor starts).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import ConfigError

__all__ = ["row_layout", "SkidBuffer", "Queue", "Fork", "Cast", "Gearbox"]


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




class Fork(wiring.Component):
    """Broadcast one stream to ``n`` consumers (``o_0`` … ``o_{n-1}``), each taking every beat
    at its own pace: a beat leaves the input once every output has taken it.

    Members
    -------
    i : In(stream.Signature(shape))
    o_0 … o_{n-1} : Out(stream.Signature(shape))

    Combinational (no latency, no storage): an output that took the current beat waits, with
    ``valid`` low, for the others. Put a :class:`Queue` behind an output whose consumer runs
    ahead of the others (a residual bypass) with the depth the schedule needs.
    """

    def __init__(self, shape, n):
        if not isinstance(n, int) or n < 1:
            self._MustUse__silence = True
            raise ConfigError(f"fork outputs n={n!r} is out of range; allowed: >= 1")
        self._n = n
        super().__init__({"i": In(stream.Signature(shape)),
                          **{f"o_{k}": Out(stream.Signature(shape)) for k in range(n)}})

    def elaborate(self, platform):
        m = Module()
        outs = [getattr(self, f"o_{k}") for k in range(self._n)]
        taken = Signal(self._n)          # which outputs already took the current beat
        all_done = 1
        for k, o in enumerate(outs):
            m.d.comb += [o.payload.eq(self.i.payload), o.valid.eq(self.i.valid & ~taken[k])]
            all_done = all_done & (taken[k] | o.ready)
        m.d.comb += self.i.ready.eq(all_done)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += taken.eq(0)
        with m.Else():
            for k, o in enumerate(outs):
                with m.If(o.valid & o.ready):
                    m.d.sync += taken[k].eq(1)
        return m


class Cast(wiring.Component):
    """Convert each lane of a row stream to another shape (Amaranth's value conversion: sign or
    zero extension, or truncation), e.g. 10-bit probabilities to ``signed(11)`` activations.
    Combinational."""

    def __init__(self, in_shape, out_shape, lanes):
        self._lanes = lanes
        super().__init__({"i": In(stream.Signature(row_layout(in_shape, lanes))),
                          "o": Out(stream.Signature(row_layout(out_shape, lanes)))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.o.valid.eq(self.i.valid), self.i.ready.eq(self.o.ready),
                     self.o.payload.last.eq(self.i.payload.last),
                     self.o.payload.end.eq(self.i.payload.end)]
        m.d.comb += [self.o.payload.data[k].eq(self.i.payload.data[k])
                     for k in range(self._lanes)]
        return m


class Gearbox(wiring.Component):
    """Change the lanes of a row stream: ``in_lanes`` → ``out_lanes`` elements per beat, one a
    multiple of the other and both dividing the row ``length`` (with ``in_lanes ==
    out_lanes`` it is a wire and ``length`` may be anything: rows keep their padded last
    beat). It lets each stage of a layer run at its own parallelism (a GEMM's ``cols`` outputs
    per beat into a kernel's ``lanes``).

    Members
    -------
    i : In(stream.Signature(row_layout(shape, in_lanes)))
    o : Out(stream.Signature(row_layout(shape, out_lanes)))

    Widening collects ``out/in`` beats and emits them as one (latency 1 after the last);
    narrowing holds each input beat and emits ``in/out`` beats from it (latency 2). Either way
    the slower side runs at one beat per cycle, and ``last``/``end`` stay on a row's and a
    tensor's last beat.
    """

    def __init__(self, shape, in_lanes, out_lanes, length):
        self._MustUse__silence = True
        for name, lanes in (("in_lanes", in_lanes), ("out_lanes", out_lanes)):
            if not isinstance(lanes, int) or lanes < 1 or (
                    length % lanes and in_lanes != out_lanes):
                raise ConfigError(f"{name}={lanes!r} does not divide length={length}; "
                                  "allowed: a divisor of the row length")
        if max(in_lanes, out_lanes) % min(in_lanes, out_lanes):
            raise ConfigError(f"in_lanes={in_lanes} and out_lanes={out_lanes}: allowed: one a "
                              "multiple of the other")
        self._MustUse__silence = False
        self._in, self._out = in_lanes, out_lanes
        super().__init__({"i": In(stream.Signature(row_layout(shape, in_lanes))),
                          "o": Out(stream.Signature(row_layout(shape, out_lanes)))})

    def elaborate(self, platform):
        m = Module()
        if self._in == self._out:
            m.d.comb += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid),
                         self.i.ready.eq(self.o.ready)]
            return m
        advance = ~self.o.valid | self.o.ready
        if self._out > self._in:
            ratio = self._out // self._in
            parts = [Signal.like(self.i.payload.data, name=f"part{k}") for k in range(ratio)]
            count = Signal(range(ratio))
            # the output register is free, or frees this cycle, unless we still collect
            m.d.comb += self.i.ready.eq((count != ratio - 1) | advance)
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += self.o.valid.eq(0)
            with m.If(self.i.valid & self.i.ready):
                with m.If(count == ratio - 1):
                    m.d.sync += [count.eq(0), self.o.valid.eq(1),
                                 self.o.payload.last.eq(self.i.payload.last),
                                 self.o.payload.end.eq(self.i.payload.end)]
                    for k in range(ratio - 1):
                        m.d.sync += [self.o.payload.data[k * self._in + e].eq(parts[k][e])
                                     for e in range(self._in)]
                    m.d.sync += [self.o.payload.data[(ratio - 1) * self._in + e].eq(
                        self.i.payload.data[e]) for e in range(self._in)]
                with m.Else():
                    m.d.sync += count.eq(count + 1)
                    with m.Switch(count):
                        for k in range(ratio - 1):
                            with m.Case(k):
                                m.d.sync += parts[k].eq(self.i.payload.data)
        else:
            ratio = self._in // self._out
            held = Signal.like(self.i.payload, name="held")
            held_valid = Signal()
            index = Signal(range(ratio))
            final = index == ratio - 1
            # take a new input beat when nothing is held, or the last piece leaves now
            take = ~held_valid | (final & advance)
            m.d.comb += self.i.ready.eq(take)
            with m.If(advance):
                m.d.sync += self.o.valid.eq(held_valid)
                with m.Switch(index):
                    for k in range(ratio):
                        with m.Case(k):
                            m.d.sync += [self.o.payload.data[e].eq(
                                held.data[k * self._out + e]) for e in range(self._out)]
                m.d.sync += [self.o.payload.last.eq(held.last & final),
                             self.o.payload.end.eq(held.end & final)]
                with m.If(held_valid):
                    m.d.sync += index.eq(Mux(final, 0, index + 1))
                    with m.If(final):
                        m.d.sync += held_valid.eq(0)
            with m.If(self.i.valid & take):
                m.d.sync += [held.eq(self.i.payload), held_valid.eq(1)]
        return m
