"""Residual add: two int8 or int16 streams with their own scales → int8 or int16 at
``out_scale``.

::

    y = saturate(round((x · x_scale + r · r_scale) / out_scale))

``x_width``, ``r_width`` and ``out_width`` (8 or 16 each) set the three streams' integer
types; the products, the sum and the saturation widen with them.

Each ratio ``x_scale / out_scale`` and ``r_scale / out_scale`` is a fixed-point multiplier
(:func:`~llmloom.hw.numeric.quantize_multiplier`, ``mult_bits`` bits); the two are aligned to
one shift ``s`` (:func:`~llmloom.hw.blocks.requant.aligned_multipliers`: the same rationals,
exactly), so the sum ``x·Mx + r·Mr`` is formed on wide integers and rounded once, by
``rounding`` (default ``half_even``: to nearest, ties to even), then saturated.
:attr:`ResidualConfig.multipliers` computes ``(Mx, Mr, s)`` once for the RTL and the golden
model.

Accuracy against float64 maths on the dequantised inputs, for outputs that do not saturate:
``|y·out_scale − (x·x_scale + r·r_scale)| ≤ 0.5·out_scale + 2**-mult_bits·(|x|·x_scale +
|r|·r_scale)`` (one rounding, plus each multiplier's relative error ``≤ 2**-mult_bits``;
the second term is at most ``256·max(x_scale, r_scale)/out_scale · 2**-16`` LSB at the default
16 bits, a few thousandths of an LSB for any sensible scales); measured 0.5007 LSB worst on
random data (``tests/hw/test_residual.py`` holds it to the bound). ``floor`` rounding makes
the 0.5 a 1.

At int16 the same bound holds, but its second term is relative to terms up to 2**15 LSB, so
the multipliers want 8 more bits: with ``mult_bits=24`` it is ``2**-24·(|x|·x_scale +
|r|·r_scale)/out_scale``, ≤ 0.002 LSB of an int16 output where x and r do not cancel and the
sum does not saturate; measured 0.5009 LSB worst over random int16 data with a third of the
sums saturating (``tests/hw/test_residual.py``). ``mult_bits=16`` (the default) with an int16
output costs up to ``2**-16·32768`` = 0.5 LSB more: a config for the wide residual stream
sets ``mult_bits=24``.
"""

from __future__ import annotations

import dataclasses
import functools

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import BlockConfig, Choice, ConfigError, Range, spec
from ..numeric import IntType, Rounding, round_shift_var_hw, saturate_hw
from ..stream import row_layout
from .requant import (
    ROUNDINGS,
    EltwiseTiming,
    Scale,
    aligned_multipliers,
    check_scale,
    constant_word,
    fields_constant,
    pipeline_advance,
)

__all__ = ["ResidualConfig", "Residual"]

#: Widest aligned multiplier accepted (two scales 2**24 apart at 16 bits): the products stay
#: far inside the golden model's int64 and a DSP or two per lane.
MAX_MULT_WIDTH = 40
#: The default room for the two scales' spread in the aligned multipliers (``mult_width``):
#: an int8 branch onto an int16 stream is 2**8 apart, and calibrations move it a few more
#: (the real calibrations, MiniLM and SmolLM2: at most 9 bits).
SPREAD_BITS = 10
#: Integer widths of the streams: int8, or int16 (a wide residual stream).
WIDTHS = (8, 16)
#: Integer widths of the branch ``x``: those, or int24 (a branch whose rows differ in range by
#: more than int16 holds, LLaMA's ``f``: ``hw/layers/llama.py``).
X_WIDTHS = (8, 16, 24)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResidualConfig(EltwiseTiming, BlockConfig):
    """``x + r`` on int8 (or int16) rows with different scales."""

    length: int = spec(64, Range(1, 65536), "row length (elements per row)")
    lanes: int = spec(4, Range(1, 64), "elements per beat (any length: the last beat of a row "
                      "is padded)")
    x_scale: float = spec(1.0 / 32, Scale(), "scale of x")
    r_scale: float = spec(1.0 / 32, Scale(), "scale of r")
    out_scale: float | None = spec(
        None, Scale(), "scale of the int8 output; none: calibrated from the data by `run` (the "
        "float sum's max magnitude maps to 127), else 128·(x_scale + r_scale) / 127")
    rounding: str = spec("half_even", Choice(ROUNDINGS), "rounding of the final shift")
    mult_bits: int = spec(16, Range(2, 24), "bits of each fixed-point multiplier (24 for an "
                          "int16 output, see the module text)")
    x_width: int = spec(8, Choice(X_WIDTHS), "bits of x (int8, int16 or int24)")
    r_width: int = spec(8, Choice(WIDTHS), "bits of r (int8 or int16)")
    out_width: int = spec(8, Choice(WIDTHS), "bits of the output (int8 or int16)")
    mult_width: int | None = spec(
        None, Range(2, MAX_MULT_WIDTH), "bits of the aligned multipliers in the hardware (fixed "
        "by the config, not by the scales, so that one build serves every calibration); none: "
        f"mult_bits + {SPREAD_BITS} (scales up to 2**{SPREAD_BITS} apart)")
    e_max: int = spec(0, Range(0, 15), "row exponents (the residual stream in block floating "
                      "point per row): the skip's rows come with an exponent 0..e_max (port "
                      "r_e) and are aligned by 2**e, the output is the sum at out_scale on "
                      "out_width + e_max bits, for a DynQuant to pick its row's exponent; "
                      "0: off")

    #: Pipeline stages: the two products; sum, round and saturate (the output register).
    LATENCY = 2

    @property
    def X(self):
        """Integer type of ``x``."""
        return IntType(self.x_width)

    @property
    def R(self):
        """Integer type of ``r``."""
        return IntType(self.r_width)

    @property
    def OUT(self):
        """Integer type of the output (with row exponents: of the row-scaled result, after
        the DynQuant that follows the block)."""
        return IntType(self.out_width)

    @property
    def SUM(self):
        """Integer type of the block's output port: ``OUT``, or with row exponents the sum
        at ``out_scale`` on ``out_width + e_max`` bits."""
        return IntType(self.out_width + self.e_max)

    @property
    def e_width(self):
        """Bits of the skip's row exponents (port ``r_e``)."""
        return self.e_max.bit_length()

    def _validate(self):
        for name in ("x_scale", "r_scale"):
            object.__setattr__(self, name, check_scale(name, getattr(self, name)))
        if self.out_scale is not None:
            object.__setattr__(self, "out_scale", check_scale("out_scale", self.out_scale))
        out = self.out_scale_value
        # the aligned multipliers' width before any is made coarser to fit mult_width
        width = max(aligned_multipliers([self.x_scale / out, self.r_scale / out],
                                        self.mult_bits)[0]).bit_length()
        if width > MAX_MULT_WIDTH:
            raise ConfigError(
                f"x_scale={self.x_scale!r} and r_scale={self.r_scale!r} are "
                f"{max(self.x_scale, self.r_scale) / min(self.x_scale, self.r_scale):.3g} "
                f"apart, which needs {width}-bit aligned multipliers; allowed: at most "
                f"{MAX_MULT_WIDTH} bits")
        if self.multipliers[2] > self.shift_max:
            raise ConfigError(
                f"x_scale={self.x_scale!r} and r_scale={self.r_scale!r} at out_scale="
                f"{self.out_scale_value!r} need a shift of {self.multipliers[2]}; allowed: at "
                f"most {self.shift_max} (the {self.sum_width}-bit sum's)")

    @property
    def beats(self):
        """Beats per row, ``ceil(length / lanes)``: the last one is padded when ``lanes`` does
        not divide ``length`` (lanes are independent: padding lanes are summed and dropped)."""
        return -(-self.length // self.lanes)

    @property
    def out_scale_value(self):
        """The output scale in use: ``out_scale``, or the scale that maps the largest sum any
        inputs can give, ``128·(x_scale + r_scale)`` (int8 inputs; ``32768·`` a scale for an
        int16 one), onto the output's largest value (127 or 32767)."""
        if self.out_scale is not None:
            return self.out_scale
        if self.x_width == self.r_width:      # (today's expression, to the last bit)
            return -self.X.min * (self.x_scale + self.r_scale) / self.OUT.max
        return (-self.X.min * self.x_scale - self.R.min * self.r_scale) / self.OUT.max

    @functools.cached_property
    def multipliers(self):
        """``(Mx, Mr, s)``: ``x_scale/out_scale ≈ Mx·2**-s`` and ``r_scale/out_scale ≈
        Mr·2**-s``, one shift for both, each at most ``mult_width_value`` bits (the smaller
        factor loses precision when the two are further apart than that allows)."""
        out = self.out_scale_value
        (mx, mr), s = aligned_multipliers([self.x_scale / out, self.r_scale / out],
                                          self.mult_bits)
        # Scales further apart than the hardware's words hold (``mult_width_value``): the
        # larger keeps its bits, the smaller drops the excess (rounded half up), so that one
        # build still serves the calibration; a row-exponent stream's skip can sit 2**12 above
        # the branch (a late SmolLM2 layer).
        excess = min(max(mx, mr).bit_length() - self.mult_width_value, s)
        if excess > 0:
            half = 1 << (excess - 1)
            mx, mr, s = (mx + half) >> excess, (mr + half) >> excess, s - excess
        return mx, mr, s

    @property
    def mult_width_value(self):
        """Bits of the hardware's multiplier words: ``mult_width``, or ``mult_bits +``
        :data:`SPREAD_BITS` (at most :data:`MAX_MULT_WIDTH`)."""
        if self.mult_width is not None:
            return self.mult_width
        return min(MAX_MULT_WIDTH, self.mult_bits + SPREAD_BITS)

    @property
    def product_width(self):
        """Bits of ``x·Mx`` and of ``r·Mr`` (signed; ``r·Mr`` aligned by up to ``2**e_max``)
        for multipliers of ``mult_width_value`` bits: the wider of the two."""
        return max(self.x_width, self.r_width + self.e_max) + self.mult_width_value

    @property
    def sum_width(self):
        """Bits of ``x·Mx + r·Mr`` (signed)."""
        return self.product_width + 1

    @property
    def shift_max(self):
        """The largest shift ``s`` the hardware takes (loaded at run time, its register's
        width fixed by the config): the sum's width less two, so that the rounding shift never
        reads past the top bit."""
        return self.sum_width - 2


class Residual(wiring.Component):
    """``y = x + r`` on int8 or int16 rows with per-tensor scales, rescaled to ``out_scale``.

    Parameters
    ----------
    cfg : ResidualConfig

    Members
    -------
    x : In(stream.Signature(row_layout(signed(x_width), lanes)))
        The main path's rows; its ``last`` and ``end`` frame the output.
    r : In(stream.Signature(row_layout(signed(r_width), lanes)))
        The residual (skip) rows, beat for beat with ``x``; its ``last``/``end`` are ignored.
    r_e : In(stream.Signature(row_layout(unsigned(e_width), 1)))
        Only with ``e_max`` > 0: the skip rows' exponents, one beat per row, taken with the
        row's first beat; the skip row is ``r · 2**r_e``.
    o : Out(stream.Signature(row_layout(signed(out_width), lanes)))
        The sums, framed as ``x``; with ``e_max`` > 0 at ``out_scale`` on ``out_width +
        e_max`` bits (``SUM``), before the row's exponent is picked.

    The two inputs advance together: a beat is taken from both in the same cycle, only when
    both are valid (each ``ready`` is high only then, which the stream rules allow: ``ready``
    may wait for ``valid``). Pipeline of two registered stages (the two constant products;
    their sum, rounded, shifted and saturated into the output register): latency 2 cycles,
    initiation interval 1 (``lanes`` elements per cycle). Backpressure: a stage loads when it is
    empty or its successor loads; no beat is lost or duplicated.
    """

    def __init__(self, cfg: ResidualConfig, *, loads=None):
        if not isinstance(cfg, ResidualConfig):
            raise TypeError(f"cfg must be a ResidualConfig, not {cfg!r}")
        self.cfg, self._loads = cfg, loads
        members = {
            "x": In(stream.Signature(row_layout(cfg.X.shape, cfg.lanes))),
            "r": In(stream.Signature(row_layout(cfg.R.shape, cfg.lanes))),
            "o": Out(stream.Signature(row_layout(cfg.SUM.shape, cfg.lanes))),
        }
        if cfg.e_max:
            members["r_e"] = In(stream.Signature(row_layout(unsigned(cfg.e_width), 1)))
        super().__init__(members)

    def _fields(self):
        cfg = self.cfg
        mx, mr, shift = cfg.multipliers
        mult = unsigned(cfg.mult_width_value)
        return {"mx": (mult, mx), "mr": (mult, mr),
                "shift": (unsigned(cfg.shift_max.bit_length()), shift)}

    def constants(self):
        """The calibrated memories (:class:`~.loadable.Constant`): the ``consts`` word (the
        two multipliers and their shift), written at run time with ``loads``."""
        return [fields_constant(self._fields())]

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        rounding = Rounding(cfg.rounding)
        # the calibrated numbers, loaded at run time (one build serves every calibration)
        word = constant_word(m, self._fields(), loads=self._loads)

        v1 = Signal()
        adv1, adv2 = pipeline_advance([v1, self.o.valid], self.o.ready)
        both = self.x.valid & self.r.valid
        if cfg.e_max:
            both, align = self._row_exponent(m, adv1, both)
        m.d.comb += [self.x.ready.eq(adv1 & both), self.r.ready.eq(adv1 & both)]

        # Stage 1: the two products by the loaded multipliers.
        px = [Signal(signed(cfg.product_width), name=f"px{j}") for j in range(cfg.lanes)]
        pr = [Signal(signed(cfg.product_width), name=f"pr{j}") for j in range(cfg.lanes)]
        last1, end1 = Signal(), Signal()
        with m.If(adv1):
            m.d.sync += [v1.eq(both), last1.eq(self.x.payload.last),
                         end1.eq(self.x.payload.end)]
            for j in range(cfg.lanes):
                rm = self.r.payload.data[j] * word.mr
                m.d.sync += [px[j].eq(self.x.payload.data[j] * word.mx),
                             pr[j].eq(rm << align if cfg.e_max else rm)]

        # Stage 2: sum, round, shift, saturate into the output register.
        out = [Signal(cfg.SUM.shape, name=f"y{j}") for j in range(cfg.lanes)]
        last2, end2 = Signal(), Signal()
        with m.If(adv2):
            m.d.sync += [self.o.valid.eq(v1), last2.eq(last1), end2.eq(end1)]
            for j in range(cfg.lanes):
                total = Signal(signed(cfg.sum_width), name=f"sum{j}")
                m.d.comb += total.eq(px[j] + pr[j])
                m.d.sync += out[j].eq(saturate_hw(
                    round_shift_var_hw(total, word.shift, cfg.shift_max, rounding), cfg.SUM))
        m.d.comb += [self.o.payload.last.eq(last2), self.o.payload.end.eq(end2)]
        m.d.comb += [self.o.payload.data[j].eq(out[j]) for j in range(cfg.lanes)]
        return m

    def _row_exponent(self, m, adv1, both):
        """With row exponents: take the skip row's exponent with its first beat (a beat of
        ``x`` and ``r`` goes in only with it) and hold it for the row. Returns the new
        ``both`` and the row's alignment shift."""
        first = Signal(init=1, name="row_first")
        held = Signal(unsigned(self.cfg.e_width), name="row_e")
        both = both & (self.r_e.valid | ~first)
        take = adv1 & both
        m.d.comb += self.r_e.ready.eq(take & first)
        with m.If(take):
            m.d.sync += first.eq(self.x.payload.last)
            with m.If(first):
                m.d.sync += held.eq(self.r_e.payload.data[0])
        return both, Mux(first, self.r_e.payload.data[0], held)
