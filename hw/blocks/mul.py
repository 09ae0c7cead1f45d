"""Element-wise product: two int8 or int16 streams of the same shape, each with its own scale →
int8, int16 or int24 at ``out_scale`` (SwiGLU's ``silu(gate) ⊙ up``).

::

    y = saturate(round((a · a_scale) · (b · b_scale) / out_scale))

``a_width``, ``b_width`` (8 or 16 each) and ``out_width`` (8, 16 or 24) set the three streams'
integer types.
The integer product ``a·b`` is exact; its real value is ``a·b · a_scale·b_scale``, so the one
ratio ``a_scale·b_scale / out_scale`` is a fixed-point multiplier ``M·2**-s``
(:func:`~llmloom.hw.blocks.requant.aligned_multipliers`, ``mult_bits`` bits, as every
re-quantiser's), and ``a·b·M`` is rounded once by ``rounding`` (default ``half_even``) and
saturated. :attr:`MulConfig.multiplier` computes ``(M, s)`` once for the RTL and the golden
model (:func:`llmloom.sim.golden.mul.mul_bitexact`).

Accuracy against float64 maths on the dequantised inputs, for outputs that do not saturate:
``|y·out_scale − a·a_scale·b·b_scale| ≤ 0.5·out_scale + 2**-mult_bits·|a·a_scale·b·b_scale|``
(one rounding, plus the multiplier's relative error); ``floor`` rounding makes the 0.5 a 1.
As for the residual add, an int16 output wants ``mult_bits`` 24 (at 16 the second term may
reach half an LSB of an int16 output); an int24 output takes 24 too (its second term may then
reach half an LSB at full scale, where the per-token quantiser after it keeps 2**-15 of it).
"""

from __future__ import annotations

import dataclasses
import functools

from amaranth.hdl import Module, Signal, signed, unsigned
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

__all__ = ["MulConfig", "Mul"]

#: Widest multiplier accepted: ``a·b·M`` of two int16 stays below 2**62 (the golden model's
#: int64 is exact).
MAX_MULT_WIDTH = 31
#: Integer widths of the input streams: int8, or int16 (the dynamic scheme's wide tensors).
WIDTHS = (8, 16)
#: Integer widths of the output: those, or int24 (a product whose rows differ in range by
#: more than int16 holds, LLaMA's ``p``: ``hw/layers/llama.py``).
OUT_WIDTHS = (8, 16, 24)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MulConfig(EltwiseTiming, BlockConfig):
    """``a ⊙ b`` on int8 (or int16) rows with their own scales, re-quantised."""

    length: int = spec(64, Range(1, 65536), "row length (elements per row)")
    lanes: int = spec(4, Range(1, 64), "elements per beat (any length: the last beat of a row "
                      "is padded)")
    a_scale: float = spec(1.0 / 32, Scale(), "scale of a")
    b_scale: float = spec(1.0 / 32, Scale(), "scale of b")
    out_scale: float | None = spec(
        None, Scale(), "scale of the output; none: calibrated from the data by `run` (the "
        "float product's max magnitude maps to the output's largest value), else the largest "
        "product any inputs can give mapped onto it")
    rounding: str = spec("half_even", Choice(ROUNDINGS), "rounding of the final shift")
    mult_bits: int = spec(16, Range(2, 24), "bits of the fixed-point multiplier (24 for an "
                          "int16 output)")
    a_width: int = spec(8, Choice(WIDTHS), "bits of a (int8 or int16)")
    b_width: int = spec(8, Choice(WIDTHS), "bits of b (int8 or int16)")
    out_width: int = spec(8, Choice(OUT_WIDTHS), "bits of the output (int8, int16 or int24)")
    mult_width: int | None = spec(
        None, Range(2, MAX_MULT_WIDTH), "bits of the multiplier in the hardware (fixed by the "
        "config, not by the scales, so that one build serves every calibration); none: "
        "mult_bits (a ratio a_scale·b_scale/out_scale below 2**mult_bits)")

    #: Pipeline stages: the integer product; times the multiplier; round and saturate (the
    #: output register).
    LATENCY = 3

    @property
    def A(self):
        """Integer type of ``a``."""
        return IntType(self.a_width)

    @property
    def B(self):
        """Integer type of ``b``."""
        return IntType(self.b_width)

    @property
    def OUT(self):
        """Integer type of the output."""
        return IntType(self.out_width)

    def _validate(self):
        for name in ("a_scale", "b_scale"):
            object.__setattr__(self, name, check_scale(name, getattr(self, name)))
        if self.out_scale is not None:
            object.__setattr__(self, "out_scale", check_scale("out_scale", self.out_scale))
        width = self.multiplier[0].bit_length()
        if width > MAX_MULT_WIDTH:
            ratio = self.a_scale * self.b_scale / self.out_scale_value
            raise ConfigError(
                f"a_scale·b_scale/out_scale = {ratio:.3g} needs a {width}-bit multiplier; "
                f"allowed: at most {MAX_MULT_WIDTH} bits (a larger out_scale)")
        if width > self.mult_width_value:
            raise ConfigError(
                f"a_scale·b_scale/out_scale = "
                f"{self.a_scale * self.b_scale / self.out_scale_value:.3g} needs a {width}-bit "
                f"multiplier; mult_width={self.mult_width_value} allows {self.mult_width_value}"
                f" (raise mult_width, at most {MAX_MULT_WIDTH})")
        if self.multiplier[1] > self.shift_max:
            raise ConfigError(
                f"a_scale·b_scale/out_scale = "
                f"{self.a_scale * self.b_scale / self.out_scale_value:.3g} needs a shift of "
                f"{self.multiplier[1]}; allowed: at most {self.shift_max} (the "
                f"{self.product_width}-bit product's)")

    @property
    def beats(self):
        """Beats per row, ``ceil(length / lanes)`` (padding lanes are multiplied and
        dropped)."""
        return -(-self.length // self.lanes)

    @property
    def out_scale_value(self):
        """The output scale in use: ``out_scale``, or the scale that maps the largest product
        any inputs can give, ``a.min·b.min·a_scale·b_scale``, onto the output's largest
        value."""
        if self.out_scale is not None:
            return self.out_scale
        return self.A.min * self.B.min * self.a_scale * self.b_scale / self.OUT.max

    @functools.cached_property
    def multiplier(self):
        """``(M, s)``: ``a_scale·b_scale/out_scale ≈ M·2**-s``, ``s >= 0``."""
        (m,), s = aligned_multipliers(
            [self.a_scale * self.b_scale / self.out_scale_value], self.mult_bits)
        return m, s

    @property
    def ab_width(self):
        """Bits of ``a·b`` (signed)."""
        return self.a_width + self.b_width

    @property
    def mult_width_value(self):
        """Bits of the hardware's multiplier word: ``mult_width``, or ``mult_bits``."""
        return self.mult_width if self.mult_width is not None else self.mult_bits

    @property
    def product_width(self):
        """Bits of ``a·b·M`` (signed) for a multiplier of ``mult_width_value`` bits."""
        return self.ab_width + self.mult_width_value

    @property
    def shift_max(self):
        """The largest shift ``s`` the hardware takes (loaded at run time, its register's
        width fixed by the config): the product's width less two, so that the rounding shift
        never reads past the top bit."""
        return self.product_width - 2


class Mul(wiring.Component):
    """``y = a ⊙ b`` on int8 or int16 rows with per-tensor scales, rescaled to ``out_scale``.

    Parameters
    ----------
    cfg : MulConfig

    Members
    -------
    a : In(stream.Signature(row_layout(signed(a_width), lanes)))
        The first factor's rows; its ``last`` and ``end`` frame the output.
    b : In(stream.Signature(row_layout(signed(b_width), lanes)))
        The second factor's rows, beat for beat with ``a``; its ``last``/``end`` are ignored.
    o : Out(stream.Signature(row_layout(signed(out_width), lanes)))
        The products, framed as ``a``.

    The two inputs advance together: a beat is taken from both in the same cycle, only when
    both are valid (as :class:`~.residual.Residual`'s). Pipeline of three registered stages
    (``a·b``; times the constant ``M``; rounded, shifted and saturated into the output
    register): latency 3 cycles, initiation interval 1. Backpressure: a stage loads when it is
    empty or its successor loads (:func:`~.requant.pipeline_advance`).
    """

    def __init__(self, cfg: MulConfig, *, loads=None):
        if not isinstance(cfg, MulConfig):
            raise TypeError(f"cfg must be a MulConfig, not {cfg!r}")
        self.cfg, self._loads = cfg, loads
        super().__init__({
            "a": In(stream.Signature(row_layout(cfg.A.shape, cfg.lanes))),
            "b": In(stream.Signature(row_layout(cfg.B.shape, cfg.lanes))),
            "o": Out(stream.Signature(row_layout(cfg.OUT.shape, cfg.lanes))),
        })

    def _fields(self):
        cfg = self.cfg
        mult, shift = cfg.multiplier
        return {"mult": (unsigned(cfg.mult_width_value), mult),
                "shift": (unsigned(cfg.shift_max.bit_length()), shift)}

    def constants(self):
        """The calibrated memories (:class:`~.loadable.Constant`): the ``consts`` word (the
        multiplier and its shift), written at run time with ``loads``."""
        return [fields_constant(self._fields())]

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        rounding = Rounding(cfg.rounding)
        # the calibrated numbers, loaded at run time (one build serves every calibration)
        word = constant_word(m, self._fields(), loads=self._loads)
        lanes = range(cfg.lanes)

        v1, v2 = Signal(), Signal()
        adv1, adv2, adv3 = pipeline_advance([v1, v2, self.o.valid], self.o.ready)
        both = self.a.valid & self.b.valid
        m.d.comb += [self.a.ready.eq(adv1 & both), self.b.ready.eq(adv1 & both)]

        # Stage 1: the integer products a·b.
        ab = [Signal(signed(cfg.ab_width), name=f"ab{j}") for j in lanes]
        last1, end1 = Signal(), Signal()
        with m.If(adv1):
            m.d.sync += [v1.eq(both), last1.eq(self.a.payload.last),
                         end1.eq(self.a.payload.end)]
            m.d.sync += [ab[j].eq(self.a.payload.data[j] * self.b.payload.data[j])
                         for j in lanes]

        # Stage 2: times the (loaded) multiplier.
        prod = [Signal(signed(cfg.product_width), name=f"prod{j}") for j in lanes]
        last2, end2 = Signal(), Signal()
        with m.If(adv2):
            m.d.sync += [v2.eq(v1), last2.eq(last1), end2.eq(end1)]
            m.d.sync += [prod[j].eq(ab[j] * word.mult) for j in lanes]

        # Stage 3: round, shift, saturate into the output register.
        out = [Signal(cfg.OUT.shape, name=f"y{j}") for j in lanes]
        last3, end3 = Signal(), Signal()
        with m.If(adv3):
            m.d.sync += [self.o.valid.eq(v2), last3.eq(last2), end3.eq(end2)]
            m.d.sync += [out[j].eq(saturate_hw(
                round_shift_var_hw(prod[j], word.shift, cfg.shift_max, rounding), cfg.OUT))
                for j in lanes]
        m.d.comb += [self.o.payload.last.eq(last3), self.o.payload.end.eq(end3)]
        m.d.comb += [self.o.payload.data[j].eq(out[j]) for j in lanes]
        return m
