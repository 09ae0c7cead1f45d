"""Rotary position embedding (RoPE) on int8 or int16 rows of queries or keys, into int8.

A row is one token's ``length = heads · d_head`` values (all heads of Q, or all KV heads of
K), int8 or int16 (``in_width``), at position ``p``. Pair ``i`` of each head, the *adjacent*
elements ``(x[2i], x[2i+1])`` (the pairing of GGUF's permuted ``attn_q``/``attn_k``
weights), is rotated by the angle ``p · θ_i``, ``θ_i = base**(−2i/d_head)``::

    y[2i]   = x[2i]·cos(pθ_i) − x[2i+1]·sin(pθ_i)
    y[2i+1] = x[2i]·sin(pθ_i) + x[2i+1]·cos(pθ_i)

then re-quantised from ``x_scale`` to ``out_scale``, int8. An int16 input (LLaMA's q and k
in the dynamic scheme, :mod:`llmloom.hw.layers.llama`) is a projection's output rounded once,
finely, so that the int8 the attention reads is rounded once too: q rounded to int8 and then
rotated and rounded again was the largest loss left in SmolLM2 at W8A8.

**Tables.** The block holds the integer factors ``C = round(r·cos(pθ_i)·2**F)`` and
``S = round(r·sin(pθ_i)·2**F)`` (round half to even, ``r = x_scale/out_scale`` folded in, so
no separate scaling multiplier is needed; ``F = frac_bits``) for every position ``p <
positions`` and every pair ``i < d_head/2``: a ROM of ``positions · d_head/lanes`` words, one
word per beat holding the ``lanes/2`` (C, S) pairs that beat needs (:attr:`RopeConfig.table`).
Why a full position × frequency table rather than a table per frequency with angle addition
(``cos((a+b)θ)`` from two smaller tables) or a phase accumulator with a sine table: the full
table is exact to one rounding per entry, so the error bound is the simplest there is and the
bit-exact model is a table look-up; one synchronous read per beat, no extra multipliers. Its
cost is ``positions · d_head · table_width`` bits: SmolLM2 (``d_head`` 64, 16-bit entries) at
a 2048-token context is 2 Mbit — seven UltraRAMs of a U280's 960 (the same at int16: 16-bit
entries, :data:`ENTRY_BITS`). Longer contexts would take the angle-addition split (two tables
of ``√positions`` rows, four more multipliers a pair). An int16 input keeps one multiplier a
product: an int16 by a 16-bit entry fits one DSP48E2 (27 × 18) or MULT18X18D; the products
are ``in_width + table_width`` bits, their sums one more.

**Scales of an int16 input.** Its steps are 256 times finer for the same real range, so the
ratio ``r = x_scale/out_scale`` is ~256 times smaller: the allowed ratios reach
``2**−(in_width−8)`` times lower (:func:`ratio_range`), and ``frac_bits`` takes seven more
bits (default 21, :data:`FRAC_BITS`), so that an entry keeps 16 bits and the table's share
of the error below is ``2**(in_width−1)·2**−F`` = 1/64 output LSB (1/128 at int8's 14).

**Positions.** The plain input ``pos`` is sampled at each tensor's first beat: row ``r`` of the
tensor (a prefill chunk, or one decode row) is at position ``pos + r``. ``end`` on a tensor's
last beat starts the count again. Positions must stay below ``positions`` (the address then
wraps; the harness refuses such tensors).

**Rounding and accuracy.** Each output is ``saturate_int8(round_shift(x0·C − x1·S, F))`` (or
the ``+`` form), rounded by ``rounding`` (default half to even). Against the float64 rotation
of the dequantised input, an output that does not saturate is within
:attr:`RopeConfig.error_bound_lsb` ``= 0.5 + 2**(in_width−1)·2**−F`` LSB of ``out_scale``
(1 + ... with ``floor``; ``0.5 + 128·2**−F`` at int8): 0.5 from the final rounding, and
``|x0|·|ΔC| + |x1|·|ΔS| ≤ 2·2**(in_width−1)·0.5·2**−F`` from the two table roundings. A
pair's rotated length is its input length, up to 181 LSB of an int8 input, so with
``out_scale = x_scale`` an output saturates only where both inputs of its pair are large.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import BlockConfig, Choice, ConfigError, Range, spec
from ..hfconfig import ROPE_BASE_DEFAULT
from ..numeric import INT8, IntType, Rounding, round_shift_hw, saturate_hw
from ..stream import row_layout
from .loadable import Constant, constant_memories
from .requant import ROUNDINGS, Scale, check_scale, pipeline_advance
from .rowkernel import signed_width

__all__ = ["RopeConfig", "Rope", "MAX_POSITIONS", "IN_WIDTHS", "RATIO_RANGE", "WIDE_ENTRY_BITS",
           "FRAC_BITS", "FRAC_BITS_MAX", "ENTRY_BITS", "ratio_range"]

#: Most positions a table holds (the ROM's depth in positions).
MAX_POSITIONS = 1 << 16
#: Bits the input may have (:attr:`RopeConfig.in_width`): int8, or int16 (LLaMA's q and k in
#: the dynamic scheme, :mod:`llmloom.hw.layers.llama`).
IN_WIDTHS = (8, 16)
#: Allowed ``x_scale / out_scale`` of an int8 input: keeps the table entries within
#: 2**(F+8) and the products well inside 40 bits (at int8), and covers every out_scale that
#: calibration can give (a non-zero int8 pair keeps a rotated component of at least 0.707
#: LSB, which maps to at most 180·out_scale). A wider input's lower end is
#: ``2**-(in_width-8)`` times lower (:func:`ratio_range`: the same real range on finer input
#: steps); its upper end stays, as calibration of a lone ±1 gives the same ratio at any width.
RATIO_RANGE = (2.0 ** -8, 2.0 ** 8)
#: Bits above ``frac_bits`` of a table entry that holds any ratio of :data:`RATIO_RANGE`
#: (``RopeConfig.entry_width = frac_bits + WIDE_ENTRY_BITS``).
WIDE_ENTRY_BITS = 10
#: Default fraction bits ``F`` of the table entries, by ``in_width``. An int16 input's ratio
#: of scales is ~256 times smaller than an int8 one's, so its entries take seven more fraction
#: bits to keep 16 significant bits (:data:`ENTRY_BITS`). The table's share of the error,
#: ``2**(in_width-1)·2**-F`` output LSB, is then 1/128 LSB at int8 and 1/64 at int16, 1/128
#: for an int16 tensor calibrated with 2× headroom (LLaMA's q and k: none of its values
#: beyond 16 384); an eighth bit would take the entries to 17 bits, the table's words (two
#: pairs at 4 lanes) from 64 to 68 bits, three 32-bit words of the layer's image instead of
#: two (+6 % on SmolLM2's image at a 2048-token context).
FRAC_BITS = {8: 14, 16: 21}
#: Most fraction bits of an int8 input's table; ``in_width - 8`` more for a wider input.
FRAC_BITS_MAX = 20
#: Bits above ``frac_bits`` of a table entry when ``entry_width`` is not given, by
#: ``in_width``: int8 entries up to 2**(F+1), ``x_scale/out_scale`` below 2, as calibration
#: gives an int8 input (a rotation keeps lengths, so at most √2); int16 entries up to
#: 2**(F−6), a ratio below 2**−6, which holds an int16 tensor's calibration with up to 2.8×
#: headroom (√2·2.8·127/32767 = 0.0154; SmolLM2's q and k at 2×: 0.0078). 16 bits either
#: way: one multiplier port (DSP48E2's 18, MULT18X18D's) with the int16 on the other.
ENTRY_BITS = {8: 2, 16: -5}


def ratio_range(in_width):
    """Allowed ``x_scale / out_scale`` for an input of ``in_width`` bits:
    :data:`RATIO_RANGE`, its lower end times ``2**-(in_width-8)``."""
    return RATIO_RANGE[0] * 2.0 ** -(in_width - INT8.width), RATIO_RANGE[1]


@dataclasses.dataclass(frozen=True)
class _Above:
    """Allowed values of a float field: finite and > ``lo``."""

    lo: float

    def check(self, name, value):
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                math.isfinite(value) and value > self.lo):
            raise ConfigError(f"{name}={value!r} is not allowed; allowed: {self}")

    def __str__(self):
        return f"finite > {self.lo:g}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class RopeConfig(BlockConfig):
    """RoPE on int8 or int16 rows of ``length = heads · d_head`` elements, int8 out."""

    length: int = spec(64, Range(2, 8192), "row length: heads · d_head elements")
    d_head: int = spec(64, Range(2, 1024), "elements per head (even; divides length)")
    lanes: int = spec(8, Range(2, 64), "elements per beat (even; divides d_head, so a beat "
                      "holds whole pairs of one head)")
    positions: int = spec(256, Range(2, MAX_POSITIONS), "positions the table holds (the "
                          "context): pos + rows must stay within it")
    base: float = spec(ROPE_BASE_DEFAULT, _Above(1.0), "RoPE frequency base (LLaMA 10000, "
                       "SmolLM2 100000)")
    in_width: int = spec(8, Choice(IN_WIDTHS), "bits of the input: 8, or 16 (q and k written "
                         "wide, rounded once, by RoPE only)")
    x_scale: float = spec(1.0 / 32, Scale(), "scale of the input")
    out_scale: float | None = spec(
        None, Scale(), "scale of the int8 output; none: calibrated from the data by `run` (the "
        "float result's max magnitude maps to 127), else x_scale · 2**(in_width − 8)")
    frac_bits: int | None = spec(
        None, Range(4, FRAC_BITS_MAX + 8), "fraction bits F of the cos/sin table entries, "
        f"4..{FRAC_BITS_MAX} plus in_width − 8; none: {FRAC_BITS[8]} at in_width 8, "
        f"{FRAC_BITS[16]} at 16")
    rounding: str = spec("half_even", Choice(ROUNDINGS), "rounding of the final shift")
    entry_width: int | None = spec(
        None, Range(4, 40), "bits of a signed table entry (fixed by the config, not by the "
        "scales, so that one build serves every calibration); none: frac_bits + 2 at "
        "in_width 8 (x_scale/out_scale below 2, as calibration gives: a rotation keeps "
        "lengths, so at most √2), frac_bits − 5 at 16 (below 2**−6; ENTRY_BITS)")

    #: Pipeline stages: table read (with the input registered beside it), the four products
    #: of a pair, then sum, round and saturate into the output register.
    LATENCY = 3
    OUT = INT8

    def _validate(self):
        if self.frac_bits is None:
            object.__setattr__(self, "frac_bits", FRAC_BITS[self.in_width])
        hi = FRAC_BITS_MAX + self.in_width - INT8.width
        if self.frac_bits > hi:
            raise ConfigError(f"frac_bits={self.frac_bits} is out of range; allowed: 4..{hi} "
                              f"at in_width={self.in_width}")
        object.__setattr__(self, "x_scale", check_scale("x_scale", self.x_scale))
        if self.out_scale is not None:
            object.__setattr__(self, "out_scale", check_scale("out_scale", self.out_scale))
        if self.d_head % 2:
            raise ConfigError(f"d_head={self.d_head} is odd; allowed: even (RoPE rotates pairs)")
        if self.length % self.d_head:
            raise ConfigError(f"length={self.length} is not a multiple of d_head={self.d_head}; "
                              "allowed: heads · d_head")
        if self.lanes % 2 or self.d_head % self.lanes:
            raise ConfigError(f"lanes={self.lanes} is not allowed with d_head={self.d_head}; "
                              "allowed: an even divisor of d_head")
        lo, hi = ratio_range(self.in_width)
        ratio = self.ratio
        if not lo <= ratio <= hi:
            raise ConfigError(f"x_scale/out_scale={ratio:.6g} is out of range; allowed: "
                              f"{lo:g}..{hi:g}")
        m = round(ratio * 2.0 ** self.frac_bits)
        if signed_width(-m, m) > self.table_width:
            raise ConfigError(f"x_scale/out_scale={ratio:.6g} needs {signed_width(-m, m)}-bit "
                              f"table entries; entry_width={self.table_width} allows "
                              f"{self.table_width} (raise entry_width)")

    # Derived ------------------------------------------------------------------------------------
    @property
    def IN(self):  # noqa: N802 (named as the other blocks' IN)
        """Integer type of the input: int8, or int16 (``in_width``)."""
        return IntType(self.in_width)

    @property
    def beats(self):
        """Beats per row, ``length / lanes`` (never padded: ``lanes`` divides ``d_head``)."""
        return self.length // self.lanes

    @property
    def heads(self):
        return self.length // self.d_head

    @property
    def head_beats(self):
        """Beats per head, ``d_head / lanes``: the table words of one position."""
        return self.d_head // self.lanes

    @property
    def out_scale_value(self):
        """The output scale in use: ``out_scale``, or ``x_scale · 2**(in_width − 8)`` (a
        rotation keeps lengths; an int16 input's range maps onto int8's)."""
        if self.out_scale is not None:
            return self.out_scale
        return self.x_scale * 2.0 ** (self.in_width - INT8.width)

    @property
    def ratio(self):
        """``r = x_scale / out_scale``, folded into the table."""
        return self.x_scale / self.out_scale_value

    @property
    def latency(self):
        return self.LATENCY

    @property
    def error_bound_lsb(self):
        """Largest ``|y − rotation(x·x_scale)/out_scale|`` of an output that does not saturate,
        in output LSB (see the module docstring)."""
        final = 1.0 if self.rounding == "floor" else 0.5
        return final + 2.0 ** (self.in_width - 1 - self.frac_bits)

    @functools.cached_property
    def angles(self):
        """``p · θ_i`` in float64, positions × d_head/2."""
        i = np.arange(self.d_head // 2, dtype=np.float64)
        theta = np.exp(-2.0 * i / self.d_head * math.log(self.base))
        return np.arange(self.positions, dtype=np.float64)[:, None] * theta[None, :]

    @functools.cached_property
    def table(self):
        """``(C, S)``: int64 arrays positions × d_head/2, ``round(r·cos|sin · 2**F)`` (half to
        even). The RTL's ROM and the bit-exact model both read them."""
        k = self.ratio * 2.0 ** self.frac_bits
        return (np.rint(np.cos(self.angles) * k).astype(np.int64),
                np.rint(np.sin(self.angles) * k).astype(np.int64))

    @property
    def table_width(self):
        """Bits of a signed table entry: ``entry_width``, or ``frac_bits`` plus
        :data:`ENTRY_BITS` of ``in_width`` (16 bits at either width's default F)."""
        if self.entry_width is not None:
            return self.entry_width
        return self.frac_bits + ENTRY_BITS[self.in_width]

    @property
    def product_width(self):
        """Bits of ``x0·C − x1·S`` (signed): an input times an entry, doubled."""
        return self.in_width + self.table_width + 1

    @property
    def table_bits(self):
        """Bits of the ROM: positions · d_head/2 pairs of two entries."""
        return self.positions * self.d_head * self.table_width

    # Timing (one home: perf calls these) -------------------------------------------------------
    @classmethod
    def cycles_np(cls, length, lanes, rows):
        """Cycles on ``rows`` rows of ``length`` from the first input beat accepted to the last
        output beat, inputs offered every cycle and the output always ready: one beat per
        cycle through ``LATENCY`` registered stages. Arguments broadcast (ints or arrays)."""
        return rows * (length // lanes) + cls.LATENCY

    def cycles(self, rows):
        """Cycles of this block on ``rows`` rows (see :meth:`cycles_np`)."""
        if rows < 1:
            raise ValueError(f"rows={rows} must be >= 1")
        return int(self.cycles_np(self.length, self.lanes, rows))


class Rope(wiring.Component):
    """Rotary position embedding of int8 or int16 rows into int8, by a position × frequency
    table.

    Parameters
    ----------
    cfg : RopeConfig

    Members
    -------
    i : In(stream.Signature(row_layout(signed(in_width), lanes)))
        Rows of ``length / lanes`` beats; lane ``j`` of beat ``b`` is element ``b·lanes + j``
        (head ``(b·lanes + j) // d_head``). ``last`` on a row's last beat is implied by the
        count; ``end`` on a tensor's last beat restarts the positions at ``pos``.
    o : Out(stream.Signature(row_layout(signed(8), lanes)))
        The rotated rows, the same framing (``last`` on each row's last beat, ``end`` carried).
    pos : In(range(positions))
        Position of a tensor's first row, sampled with that tensor's first beat.

    Pipeline: the table read (a synchronous ROM port whose register is stage 1, the input
    registered beside it), the four products of each pair, then the two sums, rounding and
    saturation into the output register. Latency 3 cycles, initiation interval 1 (``lanes``
    elements a cycle). Backpressure: a stage loads when it is empty or its successor loads
    (bubbles collapse), so ``i.ready`` falls only when all three stages hold a beat and ``o``
    is not taken; the ROM port is enabled by the first stage's advance, so its data holds too.
    """

    def __init__(self, cfg: RopeConfig, *, loads=None):
        if not isinstance(cfg, RopeConfig):
            raise TypeError(f"cfg must be a RopeConfig, not {cfg!r}")
        self.cfg, self._loads = cfg, loads
        super().__init__({
            "i": In(stream.Signature(row_layout(cfg.IN.shape, cfg.lanes))),
            "o": Out(stream.Signature(row_layout(cfg.OUT.shape, cfg.lanes))),
            "pos": In(range(cfg.positions)),
        })

    def constants(self):
        """The calibrated memory (:class:`~.loadable.Constant`): the ``table``, word
        ``p·H + k`` the (C, S) pairs of beat ``k`` of a head at position ``p`` (its entries
        scaled by the calibration's ratio of scales), written at run time with ``loads``."""
        cfg = self.cfg
        pairs, H = cfg.lanes // 2, cfg.head_beats
        entry = data.StructLayout({"c": signed(cfg.table_width), "s": signed(cfg.table_width)})
        C, S = cfg.table
        init = [[{"c": int(C[p, k * pairs + j]), "s": int(S[p, k * pairs + j])}
                 for j in range(pairs)] for p in range(cfg.positions) for k in range(H)]
        return [Constant("table", data.ArrayLayout(entry, pairs), tuple(init))]

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        lanes, pairs, B, H = cfg.lanes, cfg.lanes // 2, cfg.beats, cfg.head_beats
        tw, F = cfg.table_width, cfg.frac_bits
        rounding = Rounding(cfg.rounding)

        rom = constant_memories(m, self.constants(), self._loads)["table"]
        port = rom.read_port()

        valids = [Signal(name="valid1"), Signal(name="valid2"), self.o.valid]
        advs = pipeline_advance(valids, self.o.ready)
        m.d.comb += self.i.ready.eq(advs[0])
        accept = Signal()
        m.d.comb += accept.eq(self.i.valid & self.i.ready)

        # ---- position and beat counters of the input side --------------------------------------
        starting = Signal(init=1)                   # the next beat is a tensor's first
        row_pos = Signal(range(cfg.positions))      # position of the current row (after its
        beat = Signal(range(B))                     # first beat); beat of the row
        k = Signal(range(H))                        # beat within the head
        cur_pos = Signal(range(cfg.positions))
        m.d.comb += cur_pos.eq(Mux(starting, self.pos, row_pos))
        row_last = beat == B - 1
        with m.If(accept):
            m.d.sync += [
                beat.eq(Mux(row_last, 0, beat + 1)),
                k.eq(Mux(k == H - 1, 0, k + 1)),
                starting.eq(self.i.payload.end & row_last),
            ]
            with m.If(row_last):
                m.d.sync += row_pos.eq(Mux(cur_pos == cfg.positions - 1, 0, cur_pos + 1))
            with m.Else():
                m.d.sync += row_pos.eq(cur_pos)
        m.d.comb += [port.addr.eq(cur_pos * H + k), port.en.eq(advs[0])]

        # ---- stage 1: the table word (in the port) and the beat ---------------------------------
        x1 = Signal(data.ArrayLayout(cfg.IN.shape, lanes), name="x1")
        last1, end1 = Signal(name="last1"), Signal(name="end1")
        with m.If(advs[0]):
            m.d.sync += [valids[0].eq(self.i.valid), x1.eq(self.i.payload.data),
                         last1.eq(row_last), end1.eq(self.i.payload.end & row_last)]

        # ---- stage 2: the four products of each pair ---------------------------------------------
        pw = cfg.in_width + tw
        prods = [[Signal(signed(pw), name=f"p{j}_{n}") for n in range(4)] for j in range(pairs)]
        last2, end2 = Signal(name="last2"), Signal(name="end2")
        with m.If(advs[1]):
            m.d.sync += [valids[1].eq(valids[0]), last2.eq(last1), end2.eq(end1)]
            for j in range(pairs):
                x0, xb = x1[2 * j], x1[2 * j + 1]
                c, s = port.data[j].c, port.data[j].s
                m.d.sync += [prods[j][0].eq(x0 * c), prods[j][1].eq(xb * s),
                             prods[j][2].eq(x0 * s), prods[j][3].eq(xb * c)]

        # ---- stage 3: sums, rounding and saturation into the output register --------------------
        last3, end3 = Signal(name="last3"), Signal(name="end3")
        with m.If(advs[2]):
            m.d.sync += [valids[2].eq(valids[1]), last3.eq(last2), end3.eq(end2)]
            for j in range(pairs):
                p = prods[j]
                y0 = Signal(signed(cfg.product_width), name=f"sum{j}_0")
                y1 = Signal(signed(cfg.product_width), name=f"sum{j}_1")
                m.d.comb += [y0.eq(p[0] - p[1]), y1.eq(p[2] + p[3])]
                m.d.sync += [
                    self.o.payload.data[2 * j].eq(saturate_hw(round_shift_hw(y0, F, rounding),
                                                              cfg.OUT)),
                    self.o.payload.data[2 * j + 1].eq(
                        saturate_hw(round_shift_hw(y1, F, rounding), cfg.OUT)),
                ]
        m.d.comb += [self.o.payload.last.eq(last3), self.o.payload.end.eq(end3)]
        return m
