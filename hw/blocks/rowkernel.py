"""The skeleton shared by the row-reduction kernels (softmax, layernorm, rmsnorm, dynquant).

A row reduction needs the whole row before it can emit any of it, so a row kernel works in two
phases over a row buffer:

* **phase 1** (statistics) takes each input beat, writes it into the row buffer and feeds the
  block's statistics pipeline (running max and rescaled Σexp; or Σx and Σx²). At a row's last
  beat the statistics go through the block's per-row scalar unit (reciprocal; rsqrt), a fully
  pipelined one that accepts a row every cycle, and come out as one *row record*, which is
  pushed into a small record queue;
* **phase 2** (output) pops the record of the oldest row, reads the row back from the buffer
  and computes the outputs in the block's output pipeline.

The row buffer is a circular buffer of ``beats + gap`` beats (``gap`` = cycles from a row's
last input beat to its first read), not a ping-pong pair: a row's beats are read out while the
following rows are written, and the input is refused only when the buffer is full. With that
depth the buffer never fills when the output is always ready, so the kernel runs at one beat
per cycle (II = 1) for every row length, short rows included (the scalar unit is pipelined, so
its latency costs buffer depth, not throughput). Rows never interleave: phase 1 of row r+1
overlaps phase 2 of row r.

Rows of any length: a row is ``B = ceil(length/lanes)`` beats, the last one padded when
``lanes`` does not divide ``length``. Its padding lanes hold whatever the producer left there:
each block's statistics leave them out (the config's ``tail_lanes`` is a constant, so the mask
is a few gates on the last beat), and what comes out in them is not part of the row (the
consumer drops it, as :func:`llmloom.sim.streams.unpack_rows` does).

Timing without stalls (``B`` beats per row, ``P`` the block's statistics
latency, ``K`` its output stages): a row's first output beat leaves ``B + P + K + 3`` cycles
after its first input beat, its last ``B + P + K + 3`` cycles after its last input beat, and
``R`` rows take ``R·B + B + P + K + 3`` cycles from the first input transfer to the last output
transfer (:func:`llmloom.perf.cycles.row_kernel_cycles`).
"""

from __future__ import annotations

import dataclasses
import math
import numbers

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import BlockConfig, ConfigError, Range, spec
from ..numeric import INT8
from ..stream import row_layout

__all__ = ["check_positive", "check_vector", "RowKernelConfig", "RowKernel", "bit_length_hw",
           "delay", "signed_width", "MAX_LENGTH"]

#: Longest row: keeps every wide sum of the norms (L²·2**14 · 4**6) inside int64 with margin.
MAX_LENGTH = 8192


def check_positive(name, value, *, allow_zero=False):
    """``value`` as a float, or :class:`ConfigError` unless it is finite and > 0 (>= 0)."""
    allowed = "finite and >= 0" if allow_zero else "finite and > 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name}={value!r} is not a number; allowed: {allowed}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ConfigError(f"{name}={value!r} is not allowed; allowed: {allowed}")
    return v


def check_vector(name, value, length):
    """``None`` or a sequence of ``length`` finite floats, as a tuple."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not hasattr(value, "__len__"):
        raise ConfigError(f"{name}={value!r} is not a list of numbers; allowed: {length} "
                          "finite numbers")
    items = list(value)
    if len(items) != length:
        raise ConfigError(f"{name} has {len(items)} entries; expected one per element "
                          f"(length={length})")
    for n, v in enumerate(items):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ConfigError(f"{name}[{n}]={v!r} is not allowed; allowed: a finite number")
    return tuple(float(v) for v in items)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RowKernelConfig(BlockConfig):
    """Fields and derived sizes common to the row kernels. Subclasses set
    ``STATS_LATENCY`` (cycles from a row's last beat in stage A to its record being pushed)
    and ``EMIT_STAGES`` (output pipeline registers between the buffer read and the output
    register)."""

    length: int = spec(64, Range(1, MAX_LENGTH), "row length L (elements per row)")
    lanes: int = spec(4, Range(1, 64), "elements per beat (any length: the last beat of a row "
                      "is padded)")

    STATS_LATENCY = 0
    EMIT_STAGES = 0
    #: Integer type of the input rows (a subclass may make it follow a width field).
    IN = INT8

    @property
    def beats(self):
        """Beats per row, ``B = ceil(length / lanes)``."""
        return -(-self.length // self.lanes)

    @property
    def tail_lanes(self):
        """Lanes of a row's last beat that hold elements (``lanes`` unless the beat is padded);
        the reductions leave the others out, and their outputs are don't-cares."""
        return self.length - (self.beats - 1) * self.lanes

    @property
    def gap(self):
        """Cycles from a row's last input transfer to the read of its first beat."""
        return self.row_gap()

    @classmethod
    def row_gap(cls):
        """:attr:`gap` of the kernel (it depends on the class only): the statistics latency,
        then the record queue's write and read."""
        return cls.STATS_LATENCY + 2

    @property
    def buffer_depth(self):
        """Row buffer depth in beats: enough that the input never waits without output
        stalls (the unread beats are at most ``beats + gap - 1``)."""
        return self.beats + self.gap

    @property
    def record_depth(self):
        """Row records held at once: every row with a record has a beat in the buffer, all
        but the oldest a whole row."""
        return 1 + (self.buffer_depth - 1) // self.beats

    @property
    def row_latency(self):
        """Cycles of one row alone, first input transfer to last output transfer."""
        return self.cycles(1)

    # Timing (one home: perf.cycles and perf.pipeline call these) --------------------------------
    @classmethod
    def cycles_np(cls, length, lanes, rows):
        """Cycles on ``rows`` rows of ``length`` (``B = ceil(length/lanes)`` beats), from the
        first input beat accepted to the last output beat, inputs offered every cycle, output
        always ready. All arguments broadcast (ints or numpy arrays).

        The input never waits (the row buffer covers the statistics latency), so rows enter
        at one beat per cycle; a row's first beat is read :meth:`row_gap` cycles after its last
        beat entered, and leaves ``EMIT_STAGES + 2`` cycles after that read. The last row's
        last beat therefore leaves ``B + gap + EMIT_STAGES + 1`` cycles after it entered:
        exact for every row length (short rows included: II = 1 always)."""
        beats = -(-length // lanes)
        return rows * beats + beats + cls.row_gap() + cls.EMIT_STAGES + 1

    def cycles(self, rows):
        """Cycles of this kernel on ``rows`` rows (see :meth:`cycles_np`)."""
        if rows < 1:
            raise ValueError(f"rows={rows} must be >= 1")
        return int(self.cycles_np(self.length, self.lanes, rows))


def bit_length_hw(m, value, name="nbits"):
    """``value.bit_length()`` of an unsigned Amaranth value (a priority encoder)."""
    n = Signal(range(len(value) + 1), name=name)
    for b in range(len(value)):
        with m.If(value[b]):
            m.d.comb += n.eq(b + 1)
    return n


def delay(m, value, n, *, en=None, name="d"):
    """``value`` after ``n`` registers (that load when ``en``, or every cycle)."""
    for k in range(n):
        reg = Signal.like(value, name=f"{name}_{k}") if isinstance(value, Signal) else \
            Signal(value.shape(), name=f"{name}_{k}")
        if en is None:
            m.d.sync += reg.eq(value)
        else:
            with m.If(en):
                m.d.sync += reg.eq(value)
        value = reg
    return value


class RowKernel(wiring.Component):
    """Base of the row kernels: ports, row buffer, record queue and output sequencing.

    Subclasses give :meth:`record_layout`, :meth:`phase1` and :meth:`emit` and set the
    config's ``STATS_LATENCY`` and ``EMIT_STAGES`` to match them.

    Members
    -------
    i : In(stream.Signature(row_layout(in_shape, lanes)))
        ``in_shape`` is int8 unless the kernel says otherwise. Rows of ``beats =
        ceil(length / lanes)`` beats (the last one padded; its lanes past ``tail_lanes`` are
        ignored). Beats are counted, so ``last`` is implied; ``end`` is read on a row's last
        beat only.
    o : Out(stream.Signature(row_layout(out_shape, lanes)))
        (Named ``out_name`` by a kernel with more outputs, e.g. ``o_y``.) The same framing:
        ``last`` on each row's last beat, ``end`` copied from the input row's last beat. The
        padding lanes of a row's last beat hold don't-cares.

    Backpressure: ``o`` stalls the whole output pipeline (the output register holds its beat);
    the buffer then fills and ``i.ready`` falls when it holds ``buffer_depth`` beats. Phase 1
    never stalls. ``i.ready`` comes straight from a comparison of a register.
    """

    # the defaults, also for a subclass that builds its signature itself (softmax's offset)
    _in_shape = INT8.shape
    _out_name = "o"

    def __init__(self, cfg, out_shape, in_shape=INT8.shape, out_name="o", extra=None):
        self.cfg = cfg
        self._out_shape = out_shape
        self._in_shape = in_shape
        self._out_name = out_name
        super().__init__({
            "i": In(stream.Signature(row_layout(in_shape, cfg.lanes))),
            out_name: Out(stream.Signature(row_layout(out_shape, cfg.lanes))),
            **(extra or {}),
        })

    # -- the subclass API ----------------------------------------------------------------------
    def record_layout(self):
        """StructLayout of the per-row record; must have a 1-bit ``end`` field."""
        raise NotImplementedError

    def phase1(self, m, a):
        """Statistics from stage A (``a``: valid, data, first, last, end, beat registers of the
        accepted beat; lanes past ``tail_lanes`` of a last beat are padding, see
        :meth:`lane_valid`). Returns ``(valid, record)``: ``valid`` high for one cycle per row,
        ``STATS_LATENCY`` cycles after ``a.valid & a.last``."""
        raise NotImplementedError

    def emit(self, m, adv, issue, s1):
        """Output lanes. ``issue``: ``go``, ``beat`` (index of the beat being read) and
        ``record`` (its row's record) in the read cycle; ``s1``: ``data`` (the beat read),
        ``beat`` and ``record`` one advance later. Every register here loads on ``adv``.
        Returns the lane values ``EMIT_STAGES`` advances after ``s1``."""
        raise NotImplementedError

    def row_input(self, m):
        """A per-row side input, or ``None`` (the default: none). A kernel with one returns
        ``(valid, take)``: the base takes a row's first beat only while ``valid``, and drives
        the 1-bit ``take`` high in the cycle it does, so that the kernel can take the row's
        side beat."""
        return None

    def row_output(self, m, head):
        """A per-row side output, or ``None`` (the default: none). A kernel with one returns
        ``(ready, take)``: the base starts a row's output (reads its first beat) only while
        ``ready``, and drives the 1-bit ``take`` high in that cycle, with ``head`` (the row's
        record) valid, so that the kernel can push the row's side beat."""
        return None

    def lane_valid(self, last, n):
        """Whether lane ``n`` of a beat holds an element of the row: always, but on a padded
        last beat (``last``) only the first ``tail_lanes`` lanes (a constant per lane)."""
        if n < self.cfg.tail_lanes:
            return Const(1, 1)
        return ~last

    def masked(self, last, n, value, fill=0):
        """``value`` of lane ``n``, or ``fill`` where that lane is padding (see
        :meth:`lane_valid`); no logic at all for the lanes that always hold elements."""
        if n < self.cfg.tail_lanes:
            return value
        return Mux(last, fill, value)

    # -- the shared machinery -----------------------------------------------------------------
    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        B, depth = cfg.beats, cfg.buffer_depth
        out = getattr(self, self._out_name)
        lanes_shape = self.i.payload.data.shape()       # the input port's lanes

        m.submodules.buf = buf = memory.Memory(shape=lanes_shape, depth=depth, init=[])
        wr = buf.write_port()
        rd = buf.read_port()
        rec_layout = self.record_layout()
        m.submodules.records = records = fifo.SyncFIFO(
            width=rec_layout.size, depth=cfg.record_depth)

        # ---- input: write the buffer, register the beat for phase 1 -------------------------
        count = Signal(range(depth + 1))
        wptr = Signal(range(depth))
        in_beat = Signal(range(B))
        accept = Signal()
        side_in = self.row_input(m)
        if side_in is None:
            ready = count != depth
        else:       # a row's first beat goes in only with its side beat
            side_valid, side_take = side_in
            ready = (count != depth) & (side_valid | (in_beat != 0))
            m.d.comb += side_take.eq(accept & (in_beat == 0))
        m.d.comb += [
            self.i.ready.eq(ready),
            accept.eq(self.i.valid & self.i.ready),
            wr.addr.eq(wptr), wr.data.eq(self.i.payload.data), wr.en.eq(accept),
        ]
        with m.If(accept):
            with m.If(wptr == depth - 1):
                m.d.sync += wptr.eq(0)
            with m.Else():
                m.d.sync += wptr.eq(wptr + 1)
            with m.If(in_beat == B - 1):
                m.d.sync += in_beat.eq(0)
            with m.Else():
                m.d.sync += in_beat.eq(in_beat + 1)

        beat_layout = data.StructLayout({
            "valid": 1, "data": lanes_shape, "first": 1, "last": 1, "end": 1,
            "beat": range(B),
        })
        a = Signal(beat_layout, name="a")
        m.d.sync += [
            a.valid.eq(accept), a.data.eq(self.i.payload.data), a.first.eq(in_beat == 0),
            a.last.eq(in_beat == B - 1), a.end.eq(self.i.payload.end & (in_beat == B - 1)),
            a.beat.eq(in_beat),
        ]
        rec_valid, rec = self.phase1(m, a)
        m.d.comb += [records.w_en.eq(rec_valid), records.w_data.eq(rec)]

        # ---- output: read rows back in order ------------------------------------------------
        adv = Signal()
        go = Signal()
        rptr = Signal(range(depth))
        rd_beat = Signal(range(B))
        head = Signal(rec_layout, name="head")
        side = self.row_output(m, head)
        if side is None:
            start = adv & records.r_rdy
        else:
            side_ready, side_take = side
            start = adv & records.r_rdy & (side_ready | (rd_beat != 0))
            m.d.comb += side_take.eq(go & (rd_beat == 0))
        m.d.comb += [
            adv.eq(~out.valid | out.ready),
            go.eq(start),
            head.eq(records.r_data),
            rd.addr.eq(rptr), rd.en.eq(adv),
            records.r_en.eq(go & (rd_beat == B - 1)),
        ]
        with m.If(go):
            with m.If(rptr == depth - 1):
                m.d.sync += rptr.eq(0)
            with m.Else():
                m.d.sync += rptr.eq(rptr + 1)
            with m.If(rd_beat == B - 1):
                m.d.sync += rd_beat.eq(0)
            with m.Else():
                m.d.sync += rd_beat.eq(rd_beat + 1)
        m.d.sync += count.eq(count + accept - go)

        s1_valid = Signal()
        s1_last = Signal()
        s1_beat = Signal(range(B))
        s1_rec = Signal(rec_layout, name="s1_rec")
        with m.If(adv):
            m.d.sync += [s1_valid.eq(go), s1_last.eq(rd_beat == B - 1), s1_beat.eq(rd_beat),
                         s1_rec.eq(head)]
        lanes_out = self.emit(m, adv, {"go": go, "beat": rd_beat, "record": head},
                              {"data": rd.data, "beat": s1_beat, "record": s1_rec})
        k = cfg.EMIT_STAGES
        v_k = delay(m, s1_valid, k, en=adv, name="out_valid")
        last_k = delay(m, s1_last, k, en=adv, name="out_last")
        end_k = delay(m, s1_last & s1_rec.end, k, en=adv, name="out_end")
        with m.If(adv):
            m.d.sync += [out.valid.eq(v_k), out.payload.last.eq(last_k),
                         out.payload.end.eq(end_k)]
            m.d.sync += [out.payload.data[n].eq(lanes_out[n]) for n in range(cfg.lanes)]
        return m


def signed_width(lo, hi):
    """Bits of the smallest two's complement type holding every integer in ``lo..hi``."""
    return max(int(hi).bit_length(), (-int(lo) - 1).bit_length() if lo < 0 else 0) + 1
