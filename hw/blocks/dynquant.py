"""Dynamic per-row quantisation: int16 rows → int8 rows and one power-of-two exponent per row.

A GEMM takes int8 inputs, but the residual stream and the norms' outputs are int16 at static
scales. This block narrows each int16 row by the smallest power of two that fits its largest
magnitude into int8, and sends that power on along with the row, so that the re-quantiser
after the GEMM undoes it (:class:`~llmloom.hw.blocks.requant.Requant` with
``row_exponent``): the real value of an output element is ``y · x_scale · 2**e``.

Per row (the golden model :func:`llmloom.sim.golden.dynquant.dynquant_bitexact` does the same
steps; ``Q = 2**(out_width−1) − 1``, 127 for int8, and ``e_max = in_width − out_width``):

* ``amax = max |x|`` over the row's elements (the padding lanes of its last beat left out);
* ``e`` = the smallest ``e`` in ``0..e_max`` with ``amax ≤ Q·2**e`` (``e_max`` when there is
  none; 0 for an all-zero row): one comparator per candidate, on the row's ``amax`` only;
* ``y = saturate(round_shift(x, e))`` by the config's rounding. With ``amax ≤ Q·2**e`` no
  output exceeds ±Q, so nothing saturates, except in rows whose ``amax`` is above
  ``Q·2**e_max`` (for int16: 32513..32767, the top 0.8 % of the range), which clip to ±Q.
  The one output beyond ±Q is ``−Q−1`` (−128), from ``x = −2**(in_width−1)`` exactly.

Accuracy: ``|y·2**e − x| ≤ 2**(e−1)`` (``floor``: ``< 2**e``) where nothing saturates, i.e.
half a step of the row's own scale, which is at most ``amax/Q``; a row whose largest element
is at least half of int8's range away from underflow keeps 7 bits of relative precision.

Timing: the row-kernel skeleton (:mod:`.rowkernel`): II = 1 beat per cycle for every row
length; ``STATS_LATENCY`` = 3 (beat max, running max, exponent), ``EMIT_STAGES`` = 1 (the
rounding shift), so one row alone takes ``2·B + 7`` cycles (``B = ceil(length/lanes)``).
The exponent of a row is offered on ``o_e`` when the row's first beat is read from the buffer
(before that beat leaves ``o_y``); a row's output does not start while ``o_e`` holds two
unconsumed exponents, so a consumer that never takes ``o_e`` stalls ``o_y`` too.
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream
from amaranth.lib.wiring import Out

from ..config import Choice, ConfigError, Range, spec
from ..numeric import IntType, Rounding, round_shift_var_hw, saturate_hw
from ..stream import row_layout
from .requant import ROUNDINGS
from .rowkernel import RowKernel, RowKernelConfig

__all__ = ["DynQuantConfig", "DynQuant"]

#: Depth of the exponent output queue (rows whose exponent waits for the consumer).
EXP_QUEUE = 2


@dataclasses.dataclass(frozen=True, kw_only=True)
class DynQuantConfig(RowKernelConfig):
    """Rows of ``length`` int``in_width`` → int``out_width`` rows and one exponent per row."""

    in_width: int = spec(16, Range(3, 31), "bits of the signed input elements (31: a sum of "
                         "the int16 residual stream with 15 bits of row exponent)")
    out_width: int = spec(8, Range(2, 16), "bits of the signed output elements (< in_width)")
    rounding: str = spec("half_even", Choice(ROUNDINGS), "rounding of the shift by e")

    STATS_LATENCY = 3
    EMIT_STAGES = 1

    def _validate(self):
        super()._validate()
        if self.out_width >= self.in_width:
            raise ConfigError(f"out_width={self.out_width} is not allowed with in_width="
                              f"{self.in_width}; allowed: out_width < in_width")

    @property
    def IN(self):
        return IntType(self.in_width)

    @property
    def OUT(self):
        return IntType(self.out_width)

    @property
    def e_max(self):
        """The largest exponent: ``in_width − out_width``."""
        return self.in_width - self.out_width

    @property
    def e_width(self):
        """Bits of the (unsigned) exponent stream."""
        return self.e_max.bit_length()

    @property
    def thresholds(self):
        """``Q·2**k`` for ``k`` in ``0..e_max−1``: ``e`` is the count of them below ``amax``."""
        q = self.OUT.max
        return tuple(q << k for k in range(self.e_max))


class DynQuant(RowKernel):
    """Per-row power-of-two quantisation of int``in_width`` rows to int``out_width``.

    Parameters
    ----------
    cfg : DynQuantConfig

    Members
    -------
    i : In(stream.Signature(row_layout(signed(in_width), lanes)))
        Rows of ``B = ceil(length / lanes)`` beats; the padding lanes of a row's last beat
        are left out of the row's maximum.
    o_y : Out(stream.Signature(row_layout(signed(out_width), lanes)))
        ``round_shift(x, e)`` of the row, same framing (padding lanes: don't-cares).
    o_e : Out(stream.Signature(row_layout(unsigned(e_width), 1)))
        One beat per row, in row order: the row's exponent; ``last`` set on every beat,
        ``end`` on the tensor's last row.

    Latency: one row alone takes ``2·B + 7`` cycles, first input to last output beat;
    II = 1 beat per cycle. Backpressure: a stalled ``o_y`` holds the output pipeline and the
    input is refused once the row buffer is full; a stalled ``o_e`` holds the start of the
    third row after the oldest unconsumed exponent's.
    """

    def __init__(self, cfg: DynQuantConfig):
        if not isinstance(cfg, DynQuantConfig):
            raise TypeError(f"cfg must be a DynQuantConfig, not {cfg!r}")
        super().__init__(cfg, cfg.OUT.shape, in_shape=cfg.IN.shape, out_name="o_y", extra={
            "o_e": Out(stream.Signature(row_layout(unsigned(cfg.e_width), 1)))})

    def record_layout(self):
        return data.StructLayout({"e": unsigned(self.cfg.e_width), "end": 1})

    def phase1(self, m, a):
        cfg = self.cfg
        amax_shape = unsigned(cfg.in_width)          # |−2**(in_width−1)| fits
        # B: the beat's largest magnitude (padding lanes count as 0)
        b_valid, b_first, b_last, b_end = (Signal(name=f"b_{k}") for k in
                                           ("valid", "first", "last", "end"))
        m.d.sync += [b_valid.eq(a.valid), b_first.eq(a.first), b_last.eq(a.last),
                     b_end.eq(a.end)]
        mags = []
        for n in range(cfg.lanes):
            x = a.data[n]
            mag = Signal(amax_shape, name=f"a_mag{n}")
            m.d.comb += mag.eq(self.masked(a.last, n, Mux(x < 0, -x, x)))
            mags.append(mag)
        while len(mags) > 1:                          # a balanced max tree
            nxt = []
            for k in range(0, len(mags) - 1, 2):
                mx = Signal(amax_shape, name=f"a_max{len(mags)}_{k}")
                m.d.comb += mx.eq(Mux(mags[k] > mags[k + 1], mags[k], mags[k + 1]))
                nxt.append(mx)
            if len(mags) % 2:
                nxt.append(mags[-1])
            mags = nxt
        b_max = Signal(amax_shape, name="b_max")
        m.d.sync += b_max.eq(mags[0])

        # C: the running max of the row
        run = Signal(amax_shape, name="run_max")
        run_new = Signal(amax_shape, name="run_new")
        m.d.comb += run_new.eq(Mux(b_first | (b_max > run), b_max, run))
        with m.If(b_valid):
            m.d.sync += run.eq(run_new)
        c_valid, c_end = Signal(name="c_valid"), Signal(name="c_end")
        c_amax = Signal(amax_shape, name="c_amax")
        m.d.sync += [c_valid.eq(b_valid & b_last), c_end.eq(b_end), c_amax.eq(run_new)]

        # D: e = the number of thresholds Q·2**k below amax (they increase with k)
        d_valid = Signal(name="d_valid")
        d_rec = Signal(self.record_layout(), name="d_rec")
        m.d.sync += [d_valid.eq(c_valid), d_rec.end.eq(c_end),
                     d_rec.e.eq(sum(c_amax > t for t in cfg.thresholds))]
        return d_valid, d_rec

    def row_output(self, m, head):
        m.submodules.exponents = q = fifo.SyncFIFO(
            width=self.o_e.payload.shape().size, depth=EXP_QUEUE)
        take = Signal(name="e_take")
        beat = Signal(self.o_e.payload.shape(), name="e_beat")
        m.d.comb += [
            beat.data[0].eq(head.e), beat.last.eq(1), beat.end.eq(head.end),
            q.w_data.eq(beat), q.w_en.eq(take),
            self.o_e.valid.eq(q.r_rdy), self.o_e.payload.eq(q.r_data),
            q.r_en.eq(self.o_e.ready),
        ]
        return q.w_rdy, take

    def emit(self, m, adv, issue, s1):
        cfg = self.cfg
        e = s1["record"].e
        rounding = Rounding(cfg.rounding)
        shifted = []
        for n in range(cfg.lanes):
            v = round_shift_var_hw(s1["data"][n], e, cfg.e_max, rounding)
            reg = Signal(v.shape(), name=f"s2_y{n}")
            with m.If(adv):
                m.d.sync += reg.eq(v)
            shifted.append(reg)
        return [saturate_hw(v, cfg.OUT) for v in shifted]
