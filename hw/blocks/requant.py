"""Re-quantisation: int32 accumulators (plus an optional int32 bias) → int8 (or int16) at a new
scale, optionally undoing a per-row power-of-two exponent of the GEMM's input.

The real value of an accumulator in channel ``c`` is ``(acc + bias[c]) · acc_scale[c]``; the
output is that value in units of ``out_scale``::

    y = saturate_int8(round((acc + bias[c]) · acc_scale[c] / out_scale))

The ratio ``acc_scale[c] / out_scale`` is a fixed-point multiplier ``mult_c · 2**-shift_c``
(:func:`~llmloom.hw.numeric.quantize_multiplier`, ``mult_bits`` bits, normalised). So that the
hardware needs no variable shifter, the per-channel pairs are aligned once to the largest shift
``s``: ``M_c = mult_c · 2**(s − shift_c)`` represents the very same rational number, so
``round_shift(v · M_c, s)`` equals ``round_shift(v · mult_c, shift_c)`` in every rounding mode.
:attr:`RequantConfig.multipliers` computes ``(M, s)`` once; the RTL and the bit-exact golden
model both use it.

Rounding (config ``rounding``): ``half_even`` (default; to nearest, ties to even: unbiased),
``half_up`` (ties towards +∞) or ``floor``; then saturation to −128..127 (``out_width`` 16:
−32768..32767, for the int16 residual stream).

**Row exponent** (``row_exponent``): when the GEMM's input rows were quantised each with its
own power of two (:mod:`.dynquant`: a row's real value is ``x8 · x_scale · 2**e``), the
accumulators of that row are in units of ``acc_scale · 2**e``, and a second input stream
``e`` gives one exponent per row (``0..e_max``, taken with the row's first beat). The bias
stays an int32 at the ``e = 0`` unit, so::

    y = saturate(round_shift((acc + round_shift(bias[c], e)) · M_c, s − e))

one barrel shift of the bias and a variable final shift (``log2(e_max+1)`` levels of muxes
each: the final shift is a constant ``s − e_max`` that keeps a guard and a sticky bit, then
``e_max − e``, see :func:`~llmloom.hw.numeric.round_shift_split_hw`), no other multiplier.
With ``e = 0`` this is bit for bit the requant above. The config keeps ``s ≥ e_max`` by
scaling every ``M_c`` up by ``2**(e_max − s)`` when needed (the same rational numbers), within
:data:`MAX_MULT_WIDTH` bits or a :class:`ConfigError`.

Accuracy against float64 maths on the dequantised values: for outputs that do not saturate,
``|y·out_scale − (acc·2**e + bias)·acc_scale| ≤ (0.5 + 2**(w−1)·2**-mult_bits + 0.5·2**e
·acc_scale/out_scale) · out_scale`` for ``w = out_width``: 0.5 LSB from the final rounding,
the multiplier's relative error ``≤ 2**-mult_bits`` on a value of at most ``2**(w−1)`` LSB,
and the bias's rounding to the row's unit (half an accumulator step, ``0.5·2**e·acc_scale``;
none without a row exponent, where ``e = 0``); with ``floor`` each 0.5 becomes 1. For int8
outputs with the default 16 bits that is 0.502 LSB: measured 0.5007 worst on random data
(``tests/hw/test_requant.py`` holds it to the bound). int16 outputs want ``mult_bits`` of 20
or more (at 16 the multiplier alone may cost half an LSB). Saturated outputs are the output
type's bound.

**Run-time constants** (``Requant(cfg, load=True)``): a ``load`` stream (re)writes the
calibrated numbers — the per-channel multipliers, the biases and the common shift — so that
one build serves several weight sets (:class:`~llmloom.hw.layers.fetched.FetchedLinear` feeds
it from a layer's weight image). The widths stay the config's (``mult_width_value``,
``shift_max``): a set whose numbers do not fit is refused where its image is packed.

This module also holds the scale checks shared by the element-wise blocks (``check_scale``,
``check_scales``), the stage-advance rule of their pipelines (:func:`pipeline_advance`) and
their timing (:class:`EltwiseTiming`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import BlockConfig, Choice, ConfigError, Range, spec
from ..numeric import (
    INT32,
    IntType,
    Rounding,
    quantize_multiplier,
    round_shift_var_hw,
    saturate_hw,
)
from ..stream import row_layout
from .loadable import Constant, constant_memories

__all__ = ["RequantConfig", "Requant", "check_scale", "check_scales", "aligned_multipliers",
           "constant_word", "constant_memory", "pipeline_advance", "EltwiseTiming", "ROUNDINGS",
           "Scale", "ChannelInts"]

ROUNDINGS = tuple(r.value for r in (Rounding.HALF_EVEN, Rounding.HALF_UP, Rounding.FLOOR))

#: The widest aligned multiplier accepted: keeps ``(acc + bias) · M`` below 2**62, so the
#: golden model's int64 arithmetic is exact.
MAX_MULT_WIDTH = 29
#: The default room above ``mult_bits`` of the aligned multipliers of a per-channel scale (or
#: with a row exponent) in the hardware (``mult_width``): the real calibrations (MiniLM,
#: SmolLM2, static and dynamic) need at most 8 bits.
CHANNEL_SPREAD_BITS = 10


# ---- shared by the element-wise blocks ---------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Scale:
    """The allowed values of a scale field (for :func:`~llmloom.hw.config.spec`): a finite
    float > 0, or with ``per_channel`` also a list of them (whose length the config checks)."""

    per_channel: bool = False

    def check(self, name, value):
        if not self.per_channel:
            check_scale(name, value)

    def __str__(self):
        return "finite > 0" + (", or a list of them, one per channel" if self.per_channel
                               else "")


@dataclasses.dataclass(frozen=True)
class ChannelInts:
    """Allowed values of a per-channel integer list (checked by the config, which knows the
    length)."""

    itype: object

    def check(self, name, value):
        pass

    def __str__(self):
        return f"a list of {self.itype.name}, one per channel"


def check_scale(name, value):
    """``value`` as a Python float, or :class:`ConfigError` unless it is finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name}={value!r} is not a number; allowed: finite and > 0")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ConfigError(f"{name}={value!r} is not allowed; allowed: finite and > 0")
    return v


def check_scales(name, value, length):
    """A per-tensor float, or per-channel sequence of ``length`` floats (as a tuple)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return check_scale(name, value)
    try:
        if isinstance(value, str | bytes):
            raise TypeError
        items = list(value)
    except TypeError:
        raise ConfigError(f"{name}={value!r} is not a number or a list of numbers; "
                          "allowed: finite and > 0") from None
    if len(items) != length:
        raise ConfigError(f"{name} has {len(items)} entries; expected one per channel "
                          f"(length={length}) or a single number")
    for n, v in enumerate(items):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (
                math.isfinite(float(v)) and float(v) > 0):
            raise ConfigError(f"{name}[{n}]={v!r} is not allowed; allowed: finite and > 0")
    return tuple(float(v) for v in items)


def aligned_multipliers(reals, mult_bits):
    """Positive factors as ``(M, s)``: integers ``M[c]`` and one shift ``s >= 0`` with
    ``M[c] · 2**-s == mult_c · 2**-shift_c`` exactly, ``(mult_c, shift_c)`` from
    :func:`quantize_multiplier`. One shift for all lets the RTL shift by a constant."""
    pairs = [quantize_multiplier(r, mult_bits) for r in reals]
    s = max(0, max(sh for _, sh in pairs))
    return tuple(mult << (s - sh) for mult, sh in pairs), s


def constant_word(m, fields, name="consts", loads=None):
    """Constants of a block held in one memory word, read combinationally, rather than
    folded into its logic: the memory's contents are cut out of the Verilog and loaded at run
    time (:func:`~llmloom.hw.emit.split_memory_init`), so the Verilog, and a simulator model
    built from it, is the same for every set of calibrated numbers of one config. ``fields``
    maps a name to ``(shape, value)``: the shape fixed by the config (never by the value), so
    that the text does not change. Returns the word (a view with one field per name); the
    memory is submodule ``name`` of ``m``, written at run time through ``loads`` when given
    (:func:`~.loadable.constant_memories`)."""
    mems = constant_memories(m, [fields_constant(fields, name)], loads)
    return mems[name].read_port(domain="comb").data


def fields_constant(fields, name="consts"):
    """The :class:`~.loadable.Constant` of :func:`constant_word`'s one-word memory."""
    layout = data.StructLayout({k: shape for k, (shape, _) in fields.items()})
    return Constant(name, layout, ({k: v for k, (_, v) in fields.items()},))


def constant_memory(m, fields, name="consts"):
    """The one-word memory of :func:`constant_word` itself (submodule ``name`` of ``m``), for
    a block that also writes it at run time (a write port of its own)."""
    return constant_memories(m, [fields_constant(fields, name)])[name]


def pipeline_advance(valids, out_ready):
    """The advance condition of each stage of a pipeline whose last stage is the output
    register: stage ``k`` loads when it is empty or stage ``k + 1`` loads (or, for the last, the
    consumer takes the output). Bubbles collapse, so a gap in the input costs nothing while the
    output is stalled. ``valids`` are the stages' valid bits, output register last."""
    adv = [None] * len(valids)
    nxt = out_ready
    for k in reversed(range(len(valids))):
        adv[k] = ~valids[k] | nxt
        nxt = adv[k]
    return adv


class EltwiseTiming:
    """Timing of an element-wise kernel (requant, residual, the activations), in one place for
    ``perf``: one beat per cycle (initiation interval 1) through :attr:`latency` registered
    stages, output register included. A config sets ``LATENCY``, or overrides :attr:`latency`
    and :meth:`shape_latency` when its latency depends on its constants."""

    @property
    def latency(self):
        """Pipeline stages, output register included."""
        return self.LATENCY

    @classmethod
    def shape_latency(cls, length, lanes):
        """:attr:`latency` from the shape alone, before calibration: ``LATENCY`` whatever the
        shape (it broadcasts against arrays of ``length``, ``lanes``)."""
        return cls.LATENCY

    @classmethod
    def cycles_np(cls, length, lanes, rows, latency=None):
        """Cycles on ``rows`` rows of ``length`` (``ceil(length/lanes)`` beats each), from the
        first input beat accepted to the last output beat delivered, inputs offered every cycle
        and the output always ready: the beats, one per cycle, plus the pipeline's ``latency``
        (default :meth:`shape_latency`). All arguments broadcast (ints or numpy arrays)."""
        beats = -(-length // lanes)
        if latency is None:
            latency = cls.shape_latency(length, lanes)
        return rows * beats + latency

    def cycles(self, rows):
        """Cycles of this kernel on ``rows`` rows (see :meth:`cycles_np`)."""
        if rows < 1:
            raise ValueError(f"rows={rows} must be >= 1")
        return int(self.cycles_np(self.length, self.lanes, rows, self.latency))


# ---- the block ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class RequantConfig(EltwiseTiming, BlockConfig):
    """int32 accumulators (+ bias) → int8 (or int16), per-tensor or per-channel scale, and
    optionally a per-row exponent of the accumulators' unit.

    The channel of an element is its column within the row (a GEMM's output feature).
    """

    length: int = spec(64, Range(1, 65536), "row length: channels (columns) per row")
    lanes: int = spec(4, Range(1, 64), "elements per beat (any length: the last beat of a row "
                      "is padded)")
    acc_scale: float | tuple = spec(
        2.0 ** -11, Scale(per_channel=True), "scale of the accumulators: one float (per "
        "tensor) or one per channel")
    bias: tuple | None = spec(
        None, ChannelInts(INT32), "bias per channel, added to the accumulator before "
        "scaling; none: no bias")
    out_scale: float | None = spec(
        None, Scale(), "scale of the int8 output; none: calibrated from the data by `run` (the "
        "float result's max magnitude maps to 127), else the largest value any input can give")
    rounding: str = spec("half_even", Choice(ROUNDINGS), "rounding of the final shift")
    mult_bits: int = spec(16, Range(2, 24), "bits of each fixed-point multiplier")
    out_width: int = spec(8, Choice((8, 9, 10, 11, 12, 16, 24)), "bits of the signed output: "
                          "8, 9..12 (a wider activation table's input), 16 (the int16 "
                          "residual stream) or 24 (a wide branch into it)")
    row_exponent: bool = spec(False, None, "a second input stream `e` gives each row's "
                              "exponent: the accumulators of that row are in units of "
                              "acc_scale·2**e (a dynamically quantised GEMM input)")
    e_max: int = spec(8, Range(1, 24), "the largest row exponent (with row_exponent)")
    mult_width: int | None = spec(
        None, Range(2, MAX_MULT_WIDTH), "bits of the aligned multipliers in the hardware (a "
        "width fixed by the config, not by the calibrated values, so that one build serves "
        f"every calibration); none: mult_bits per tensor, mult_bits + {CHANNEL_SPREAD_BITS} "
        "per channel or with a row exponent")

    ACC = INT32

    @property
    def OUT(self):
        """The output type: a signed ``out_width``-bit integer."""
        return IntType(self.out_width)

    @property
    def e_width(self):
        """Bits of the (unsigned) row exponent (with ``row_exponent``)."""
        return self.e_max.bit_length()

    def _validate(self):
        object.__setattr__(self, "acc_scale", check_scales("acc_scale", self.acc_scale,
                                                           self.length))
        if self.out_scale is not None:
            object.__setattr__(self, "out_scale", check_scale("out_scale", self.out_scale))
        if self.bias is not None:
            object.__setattr__(self, "bias", self._check_bias(self.bias))
        width = max(self.multipliers[0]).bit_length()
        if width > MAX_MULT_WIDTH and self.row_exponent and self._raised_shift:
            raise ConfigError(
                f"e_max={self.e_max} needs the multipliers' shift raised to {self.e_max}, "
                f"which makes them {width} bits; allowed: at most {MAX_MULT_WIDTH} bits (lower "
                "e_max or mult_bits, or a smaller acc_scale/out_scale ratio)")
        if width > MAX_MULT_WIDTH:
            spread = max(self.channel_scales) / min(self.channel_scales)
            raise ConfigError(
                f"acc_scale spans a factor of {spread:.3g}, which needs {width}-bit aligned "
                f"multipliers; allowed: at most {MAX_MULT_WIDTH} bits (lower mult_bits or "
                "narrow the spread of acc_scale)")
        if width > self.mult_width_value:
            raise ConfigError(
                f"the calibrated multipliers need {width} bits; mult_width="
                f"{self.mult_width_value} allows {self.mult_width_value} (raise mult_width, "
                f"at most {MAX_MULT_WIDTH})")
        shift = self.multipliers[1]
        if shift > self.shift_max:
            raise ConfigError(
                f"acc_scale/out_scale={min(self.channel_scales) / self.out_scale_value:.3g} "
                f"needs a shift of {shift}; allowed: at most {self.shift_max} (the "
                f"{self.product_width}-bit product's)")

    def _check_bias(self, bias):
        try:
            items = list(bias)
        except TypeError:
            raise ConfigError(f"bias={bias!r} is not a list; allowed: {self.length} int32 "
                              "values") from None
        if len(items) != self.length:
            raise ConfigError(f"bias has {len(items)} entries; expected length={self.length}")
        for n, v in enumerate(items):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not (
                    self.ACC.min <= int(v) <= self.ACC.max):
                raise ConfigError(f"bias[{n}]={v!r} is not allowed; allowed: an int32 integer")
        return tuple(int(v) for v in items)

    # Derived ------------------------------------------------------------------------------------
    @property
    def beats(self):
        """Beats per row, ``ceil(length / lanes)``: the last one is padded when ``lanes`` does
        not divide ``length`` (lanes are independent: padding lanes get channel 0's constants
        and their results are dropped)."""
        return -(-self.length // self.lanes)

    @property
    def per_channel(self):
        return isinstance(self.acc_scale, tuple)

    @property
    def varying_multipliers(self):
        """True when the channels may have their own multipliers (a per-channel scale): a
        property of the config, not of the calibrated values, so that one build serves every
        calibration."""
        return self.per_channel

    @property
    def channel_table(self):
        """True when the per-channel constants (a per-channel multiplier or a bias) change
        from beat to beat of a row, so that they are read from a ROM of ``beats`` words (else
        one word holds them for every beat)."""
        return self.beats > 1 and (self.per_channel or self.bias is not None)

    @property
    def mult_width_value(self):
        """Bits of the hardware's multiplier words: ``mult_width``, or without it
        ``mult_bits`` for a per-tensor scale and :data:`MAX_MULT_WIDTH` for a per-channel one
        or with a row exponent (the aligned multipliers are wider there)."""
        if self.mult_width is not None:
            return self.mult_width
        if self.per_channel or self.row_exponent:
            return min(MAX_MULT_WIDTH, self.mult_bits + CHANNEL_SPREAD_BITS)
        return self.mult_bits

    @property
    def shift_max(self):
        """The largest common shift ``s`` the hardware takes (it is loaded at run time, so its
        register's width is fixed by the config): the product's width less two."""
        return self.product_width - 2

    @property
    def load_beats(self):
        """Beats of one load on the ``load`` stream of ``Requant(cfg, load=True)``: ``beats``
        of multipliers, ``beats`` of biases, one with the shift."""
        return 2 * self.beats + 1

    def load_values(self):
        """This config's numbers as the ``load`` beats of ``Requant(build, load=True)``
        (:attr:`load_beats` lists of ``lanes`` ints): the aligned multipliers and the biases by
        channel, the padding lanes 0, then the shift in lane 0."""
        pad = self.beats * self.lanes - self.length
        mults, shift = self.multipliers
        rows = []
        for vals in (list(mults) + [0] * pad, list(self.channel_bias) + [0] * pad):
            rows += [vals[b * self.lanes:(b + 1) * self.lanes] for b in range(self.beats)]
        return rows + [[shift] + [0] * (self.lanes - 1)]

    #: Fields that shape a re-quantiser's hardware (its ports, memories and widths); the
    #: numbers of any config that agrees on them and fits the widths load into it.
    STRUCTURE = ("length", "lanes", "rounding", "out_width", "row_exponent", "e_max")

    def check_loadable(self, other):
        """:class:`ConfigError` unless ``other``'s numbers can be loaded into a re-quantiser
        built for this config (``Requant(self, load=True)``): the same :data:`STRUCTURE`, a
        per-channel scale and a bias alike, and multipliers and shift within this build's
        ``mult_width_value`` and ``shift_max``."""
        for name in self.STRUCTURE:
            if getattr(other, name) != getattr(self, name):
                raise ConfigError(f"{name}={getattr(other, name)!r} differs from the build's "
                                  f"{getattr(self, name)!r}; allowed: the same")
        for what, a, b in (("a per-channel scale", self.per_channel, other.per_channel),
                           ("a bias", self.bias is not None, other.bias is not None)):
            if a != b:
                raise ConfigError(f"the numbers {'have' if b else 'lack'} {what}; the build "
                                  f"{'has' if a else 'lacks'} it; allowed: the same")
        mults, shift = other.multipliers
        width = max(mults).bit_length()
        if width > self.mult_width_value:
            raise ConfigError(f"the multipliers need {width} bits; the build's mult_width "
                              f"is {self.mult_width_value} (raise mult_width)")
        if shift > self.shift_max:
            raise ConfigError(f"the shift {shift} exceeds the build's shift_max="
                              f"{self.shift_max}")

    #: Pipeline stages without the channel table: bias add, multiply, round and saturate
    #: (output register included).
    BASE_LATENCY = 3

    @property
    def latency(self):
        """Pipeline stages, output register included: (channel table read,) bias add,
        multiply, round and saturate."""
        return self.BASE_LATENCY + self.channel_table

    @classmethod
    def shape_latency(cls, length, lanes, per_channel=True):
        """:attr:`latency` from the shape alone, before calibration: with per-channel
        constants (``per_channel``) the usual case is that they vary, so a row of more than one
        beat reads them from the channel table; a per-tensor scale never needs one. Arguments
        broadcast (ints or numpy arrays)."""
        beats = -(-length // lanes)
        return cls.BASE_LATENCY + (per_channel & (beats > 1))

    @property
    def channel_scales(self):
        """``acc_scale`` for each of the ``length`` channels."""
        return self.acc_scale if self.per_channel else (self.acc_scale,) * self.length

    @property
    def channel_bias(self):
        """The bias of each channel (zeros without bias)."""
        return self.bias if self.bias is not None else (0,) * self.length

    @property
    def out_scale_value(self):
        """The output scale in use: ``out_scale``, or without it the scale that maps the largest
        magnitude any int32 input (plus bias) can reach onto the output's maximum (with
        ``row_exponent``, that of rows at ``e_max``)."""
        if self.out_scale is not None:
            return self.out_scale
        unit = 2 ** self.e_max if self.row_exponent else 1
        return max((2 ** 31 * unit + abs(b)) * s for b, s in zip(
            self.channel_bias, self.channel_scales, strict=True)) / self.OUT.max

    @functools.cached_property
    def _aligned(self):
        out = self.out_scale_value
        return aligned_multipliers([s / out for s in self.channel_scales], self.mult_bits)

    @property
    def _raised_shift(self):
        return self._aligned[1] < self.e_max

    @functools.cached_property
    def multipliers(self):
        """``(M, s)``: per-channel aligned multipliers (a tuple of ``length`` ints, all equal
        per tensor) and the common shift; see :func:`aligned_multipliers`. With
        ``row_exponent`` the shift is at least ``e_max`` (the multipliers scaled up to match),
        so that the final shift ``s − e`` is never negative."""
        mults, shift = self._aligned
        if self.row_exponent and shift < self.e_max:
            up = self.e_max - shift
            return tuple(m << up for m in mults), self.e_max
        return mults, shift

    @property
    def sum_width(self):
        """Bits of ``acc + bias`` (signed): one more than int32 when there is a bias."""
        return self.ACC.width + (self.bias is not None)

    @property
    def product_width(self):
        """Bits of ``(acc + bias) · M`` (signed) for any multiplier of ``mult_width_value``
        bits; the shift ``s`` is at most this less two (:attr:`shift_max`), so that the
        rounding shift never reads past the top bit."""
        return self.sum_width + self.mult_width_value


class Requant(wiring.Component):
    """int32 accumulators (+ bias) → int8 (int16) by a fixed-point multiply, round and
    saturate; with ``row_exponent``, each row's exponent undone on the way.

    Parameters
    ----------
    cfg : RequantConfig
    load : bool
        A ``load`` stream for the calibrated numbers (see ``load`` below).
    banks : 1 or 2
        With ``load``: two banks of numbers, double-buffered (see ``load``).

    Members
    -------
    i : In(stream.Signature(row_layout(signed(32), lanes)))
        Accumulator rows: ``ceil(length / lanes)`` beats per row (the last one padded), lane
        ``j`` of beat ``b`` is channel ``b·lanes + j``; ``last`` on a row's last beat (it
        resets the channel count), ``end`` on the tensor's last beat.
    acc, e : In(...)
        With ``row_exponent`` (a block with two inputs names them by role): ``acc`` replaces
        ``i``, and ``e`` (``row_layout(unsigned(e_width), 1)``) carries one exponent per row,
        ``0..e_max``, taken in the cycle the row's first accumulator beat is (neither is taken
        without the other).
    load : In(stream.Signature(row_layout(signed(32), lanes)))
        Only with ``load=True`` (then ``acc`` replaces ``i`` too): the calibrated numbers, as
        ``cfg.load_beats`` beats — ``beats`` beats of aligned multipliers ``M_c`` (lane ``j``
        of beat ``b`` is channel ``b·lanes + j``, as on ``acc``; only the low
        ``mult_width_value`` bits are kept, and a per-tensor scale takes channel 0's), then
        ``beats`` beats of int32 biases (ignored without a bias), then one beat whose lane 0
        is the common shift ``s`` (low ``shift_max.bit_length()`` bits); ``last``/``end`` are
        ignored, the beats are counted. A load beat is taken only while no accumulator beat is
        in the pipeline, and no accumulator beat is taken from the cycle a load beat is
        offered until the load's last beat is in (the engines' ``weight`` rule: a load never
        mixes with results). Until the first load the numbers are the config's (the memories'
        initial contents). With ``banks=2`` the numbers are double-buffered: loads fill two
        banks in turn and tensors (``end`` on a tensor's last beat) use them in turn, a load
        taken while its bank is free (its previous tensor's last beat has left ``o``), a
        tensor's beats while its bank is full; no initial numbers then.
    o : Out(stream.Signature(row_layout(signed(out_width), lanes)))
        The results in the same order, with ``last`` and ``end`` carried through.

    Pipeline of registered stages: when the per-channel constants (multiplier, bias) change
    from beat to beat, first a ROM read (one word of ``lanes`` constants per beat of a row,
    addressed by the beat's index; a synchronous read port enabled by the stage's advance);
    then add the bias; multiply; round, shift and saturate into the output register. Latency
    ``cfg.latency`` = 4 cycles with the ROM, 3 without (per-tensor scale, no bias, or one beat
    per row: the constants are wired per lane); initiation interval 1 (``lanes`` elements per
    cycle). Backpressure: a stage loads when it is empty or its successor loads, so
    ``i.ready`` falls only when every stage is full and ``o`` is not taken (or, at a row's first
    beat, while no exponent is offered); no beat is lost or duplicated. The row exponent rides
    along the pipeline: the bias is shifted by it in the bias-add stage, the final shift is
    ``s − e``; the latency is the same.
    """

    def __init__(self, cfg: RequantConfig, *, load=False, banks=1, loads=None):
        if not isinstance(cfg, RequantConfig):
            raise TypeError(f"cfg must be a RequantConfig, not {cfg!r}")
        if banks not in (1, 2) or (banks == 2 and not load):
            raise ValueError(f"banks={banks!r}; allowed: 1, or 2 with load=True")
        if load and loads is not None:
            raise ValueError("loads (a constant bus) is for a re-quantiser without load=True")
        self.cfg, self._load, self._banks, self._loads = cfg, bool(load), banks, loads
        acc = In(stream.Signature(row_layout(cfg.ACC.shape, cfg.lanes)))
        ports = {"acc": acc} if cfg.row_exponent or load else {"i": acc}
        if cfg.row_exponent:
            ports["e"] = In(stream.Signature(row_layout(unsigned(cfg.e_width), 1)))
        if load:
            ports["load"] = In(stream.Signature(row_layout(cfg.ACC.shape, cfg.lanes)))
        super().__init__({**ports, "o": Out(stream.Signature(row_layout(cfg.OUT.shape,
                                                                         cfg.lanes)))})

    def _numbers(self):
        """``(fields, init, lane_fields, rows)``: the ``consts`` word's fields (shapes) and
        values, and with a channel table its lanes' fields and its rows (a beat's constants
        each)."""
        cfg = self.cfg
        lanes, beats = cfg.lanes, cfg.beats
        mults, shift = cfg.multipliers
        bias = cfg.channel_bias
        # The padding lanes of a row's last beat (when lanes does not divide length) get
        # channel 0's multiplier and no bias: any constants would do, their results are dropped.
        pad = beats * lanes - cfg.length
        mults, bias = tuple(mults) + (mults[0],) * pad, tuple(bias) + (0,) * pad
        mult_shape = unsigned(cfg.mult_width_value)
        per_channel, has_bias = cfg.per_channel, cfg.bias is not None
        table = cfg.channel_table
        fields = {"shift": unsigned(cfg.shift_max.bit_length())}
        if not per_channel:
            fields["mult"] = mult_shape
        if not table and per_channel:
            fields["mults"] = data.ArrayLayout(mult_shape, lanes)
        if not table and has_bias:
            fields["bias"] = data.ArrayLayout(cfg.ACC.shape, lanes)
        init = {"shift": shift, "mult": mults[0], "mults": list(mults[:lanes]),
                "bias": list(bias[:lanes])}
        lane_fields = {"bias": cfg.ACC.shape} if has_bias else {}
        if per_channel:
            lane_fields["mult"] = mult_shape
        rows = [[{name: (mults if name == "mult" else bias)[b * lanes + j]
                  for name in lane_fields} for j in range(lanes)] for b in range(beats)]
        return fields, init, lane_fields, rows

    def constants(self):
        """The calibrated memories (:class:`~.loadable.Constant`) of a re-quantiser without
        ``load``: the ``consts`` word and, with a channel table, ``channels``."""
        if self._load:
            raise ValueError("a re-quantiser with load=True takes its numbers on `load`")
        fields, init, lane_fields, rows = self._numbers()
        out = [fields_constant({k: (shape, init[k]) for k, shape in fields.items()})]
        if self.cfg.channel_table:
            layout = data.ArrayLayout(data.StructLayout(lane_fields), self.cfg.lanes)
            out.append(Constant("channels", layout, tuple(rows)))
        return out

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        lanes, beats = cfg.lanes, cfg.beats
        mult_shape = unsigned(cfg.mult_width_value)
        per_channel, has_bias = cfg.per_channel, cfg.bias is not None
        rounding = Rounding(cfg.rounding)
        load = self._load
        inp = self.acc if cfg.row_exponent or load else self.i

        valids = [Signal(name=f"valid{k}") for k in range(1, cfg.latency)] + [self.o.valid]
        advs = pipeline_advance(valids, self.o.ready)
        beat = None
        # `hold`: no accumulator beat enters while a load is offered or under way
        banked = self._banks == 2
        ld_bank = rd_bank = full = None
        if load:
            load_at = Signal(range(cfg.load_beats), name="load_at")    # the next load beat
            load_fire = self.load.valid & self.load.ready
            with m.If(load_fire):
                m.d.sync += load_at.eq(Mux(load_at == cfg.load_beats - 1, 0, load_at + 1))
            if banked:
                # two sets of numbers: loads fill the banks in turn, tensors use them in turn;
                # a bank is full from its load's last beat until its tensor's last beat leaves
                ld_bank, rd_bank = Signal(name="ld_bank"), Signal(name="rd_bank")
                full = Signal(2, name="full")
                hold = ~full.bit_select(rd_bank, 1)
                m.d.comb += self.load.ready.eq(~full.bit_select(ld_bank, 1))
                with m.If(load_fire & (load_at == cfg.load_beats - 1)):
                    m.d.sync += ld_bank.eq(~ld_bank)
                    for b in range(2):
                        with m.If(ld_bank == b):
                            m.d.sync += full[b].eq(1)
            else:
                hold = (load_at != 0) | self.load.valid
                empty = ~valids[0]
                for v in valids[1:]:
                    empty = empty & ~v
                m.d.comb += self.load.ready.eq(empty)

        def beat_counter():
            # the beat's index within the row (``last`` or the count's wrap starts a new row)
            counter = Signal(range(beats), name="beat")
            with m.If(inp.valid & inp.ready):
                with m.If(inp.payload.last | (counter == beats - 1)):
                    m.d.sync += counter.eq(0)
                with m.Else():
                    m.d.sync += counter.eq(counter + 1)
            return counter

        if cfg.row_exponent:
            beat = beat_counter()
            # A row's first beat waits for its exponent and takes it; the others use the
            # exponent held from their row's first beat.
            first = Signal(name="first")
            held = Signal(unsigned(cfg.e_width), name="e_held")
            in_ok = Signal(name="in_ok")
            ok = ~first | self.e.valid
            e_ready = advs[0] & inp.valid & first
            if load:
                ok, e_ready = ok & ~hold, e_ready & ~hold
            m.d.comb += [first.eq(beat == 0), in_ok.eq(ok), inp.ready.eq(advs[0] & in_ok),
                         self.e.ready.eq(e_ready)]
            with m.If(self.e.valid & self.e.ready):
                m.d.sync += held.eq(self.e.payload.data[0])
            exp = Mux(first, self.e.payload.data[0], held)
            in_valid = inp.valid & in_ok
        elif load:
            m.d.comb += inp.ready.eq(advs[0] & ~hold)
            in_valid, exp = inp.valid & ~hold, None
        else:
            m.d.comb += inp.ready.eq(advs[0])
            in_valid, exp = inp.valid, None
        # Each stage: (valid, advance, last, end) with the previous stage's signals as source.
        frame = [(in_valid, inp.payload.last, inp.payload.end)]
        for k, (valid, adv) in enumerate(zip(valids, advs, strict=True)):
            last, end = Signal(name=f"last{k + 1}"), Signal(name=f"end{k + 1}")
            with m.If(adv):
                m.d.sync += [valid.eq(frame[-1][0]), last.eq(frame[-1][1]),
                             end.eq(frame[-1][2])]
            frame.append((valid, last, end))
        m.d.comb += [self.o.payload.last.eq(frame[-1][1]), self.o.payload.end.eq(frame[-1][2])]
        # two banks: each beat's bank rides along (bank_at[k]: the bank of stage k's beat,
        # k = 0 the input's); a tensor's last beat in moves the input to the other bank, its
        # last beat out frees its bank
        bank_at = [rd_bank]
        if banked:
            with m.If(inp.valid & inp.ready & inp.payload.last & inp.payload.end):
                m.d.sync += rd_bank.eq(~rd_bank)
            for k, adv in enumerate(advs):
                reg = Signal(name=f"bank{k + 1}")
                with m.If(adv):
                    m.d.sync += reg.eq(bank_at[-1])
                bank_at.append(reg)
            with m.If(self.o.valid & self.o.ready & self.o.payload.last & self.o.payload.end):
                for b in range(2):
                    with m.If(bank_at[-1] == b):
                        m.d.sync += full[b].eq(0)
        stage = iter(advs)

        def carry_exponent(adv, value, name):
            # the row exponent, one register per stage (none without row_exponent)
            if not cfg.row_exponent:
                return None
            reg = Signal(unsigned(cfg.e_width), name=name)
            with m.If(adv):
                m.d.sync += reg.eq(value)
            return reg

        # The calibrated numbers live in memories, not in the logic: their words are loaded at
        # run time (``hw.emit.split_memory_init``), so the Verilog is the same for every
        # calibration of one config. ``consts``: one word, read combinationally: the common
        # shift and whatever does not change from beat to beat.
        table = cfg.channel_table
        fields, init, lane_fields, rows = self._numbers()
        ti = int(table)        # stages before the bias add
        if load:
            # one memory per field, each written by the load beats that carry it; two banks:
            # each read at the bank of the beat in the stage that uses it (the shift at the
            # final shift's stage, the rest at the bias add)
            use = {k: bank_at[ti] if banked else None for k in fields}
            if banked:
                use["shift"] = bank_at[ti + 1] if cfg.row_exponent else bank_at[ti + 2]
            word = types.SimpleNamespace(**{
                k: self._loaded_constant(m, k, shape, init[k], load_at, ld_bank, use[k])
                for k, shape in fields.items()})
        else:
            word = constant_word(m, {k: (shape, init[k]) for k, shape in fields.items()},
                                 loads=self._loads)
        shift_sig = word.shift

        acc = [inp.payload.data[j] for j in range(lanes)]
        if table:
            # Stage: the channel constants of this beat, read from a ROM addressed by the
            # beat's index within the row; the read port's register is this stage's register.
            adv = next(stage)
            if beat is None:
                beat = beat_counter()
            exp = carry_exponent(adv, exp, "e_rom")
            if load:
                # a table per field (a word's multipliers and biases arrive in different load
                # beats), read alike
                reads = self._loaded_tables(m, lane_fields, rows, beat, adv, load_at,
                                            ld_bank, rd_bank)
                lane_data = [{k: reads[k][j] for k in reads} for j in range(lanes)]
            else:
                rom = constant_memories(m, self.constants()[1:], self._loads)["channels"]
                port = rom.read_port()
                m.d.comb += [port.addr.eq(beat), port.en.eq(adv)]
                lane_data = [{k: getattr(port.data[j], k) for k in lane_fields}
                             for j in range(lanes)]
            acc_r = [Signal(cfg.ACC.shape, name=f"acc{j}") for j in range(lanes)]
            with m.If(adv):
                m.d.sync += [acc_r[j].eq(acc[j]) for j in range(lanes)]
            acc = acc_r
            lane_bias = [lane_data[j]["bias"] if has_bias else 0 for j in range(lanes)]
            lane_mult = [lane_data[j]["mult"] if per_channel else word.mult
                         for j in range(lanes)]
        else:
            lane_bias = [word.bias[j] if has_bias else 0 for j in range(lanes)]
            lane_mult = [word.mults[j] if per_channel else word.mult for j in range(lanes)]

        if cfg.row_exponent:
            # the bias at the row's unit: round_shift(bias, e), a barrel shift
            lane_bias = [b if isinstance(b, int) else round_shift_var_hw(
                b, exp, cfg.e_max, rounding) for b in lane_bias]

        # Stage: acc + bias (and the multiplier, registered).
        adv = next(stage)
        sums = [Signal(signed(cfg.sum_width), name=f"sum{j}") for j in range(lanes)]
        factor = [Signal(mult_shape, name=f"mult{j}") for j in range(lanes)]
        with m.If(adv):
            for j in range(lanes):
                m.d.sync += [sums[j].eq(acc[j] + lane_bias[j]), factor[j].eq(lane_mult[j])]
        exp = carry_exponent(adv, exp, "e_sum")

        # Stage: the multiply (and, with a row exponent, the final shift s − e).
        adv = next(stage)
        prods = [Signal(signed(cfg.product_width), name=f"prod{j}") for j in range(lanes)]
        with m.If(adv):
            for j in range(lanes):
                m.d.sync += prods[j].eq(sums[j] * factor[j])
        if cfg.row_exponent:
            final = Signal(range(cfg.shift_max + 1), name="final_shift")
            with m.If(adv):
                m.d.sync += final.eq(shift_sig - exp)
        else:
            final = shift_sig

        # Stage: round, shift (by the loaded s, or s − e), saturate into the output register.
        adv = next(stage)
        out = [Signal(cfg.OUT.shape, name=f"y{j}") for j in range(lanes)]
        with m.If(adv):
            for j in range(lanes):
                rounded = round_shift_var_hw(prods[j], final, cfg.shift_max, rounding)
                m.d.sync += out[j].eq(saturate_hw(rounded, cfg.OUT))
        m.d.comb += [self.o.payload.data[j].eq(out[j]) for j in range(lanes)]
        return m

    def _load_phase(self, field, at):
        """``(taken, index)``: whether load beat ``at`` carries ``field`` (for a channel
        field: the table word it writes; for a constant, lane 0 or the lanes of beat 0)."""
        beats = self.cfg.beats
        if field == "shift":
            return at == 2 * beats, 0
        if field in ("bias",):
            return (at >= beats) & (at < 2 * beats), at - beats
        return at < beats, at                   # "mult", "mults": the multiplier beats

    def _loaded_constant(self, m, field, shape, init, at, ld_bank=None, rd_bank=None):
        """A constant of the ``consts`` word (:func:`constant_word`) in a memory of its own
        (two words with two banks, written at ``ld_bank`` and read at ``rd_bank``), written by
        the load beats that carry it (lane 0, or the first beat's lanes for a per-lane field,
        ``mults`` or ``bias``). Returns its value, read combinationally."""
        if ld_bank is None:
            mem = constant_memory(m, {field: (shape, init)}, name=f"consts_{field}")
        else:
            layout = data.StructLayout({field: shape})
            m.submodules[f"consts_{field}"] = mem = memory.Memory(
                shape=layout, depth=2, init=[{field: init}] * 2)
        wr = mem.write_port()
        taken, index = self._load_phase(field, at)
        lanes = self.load.payload.data
        if field in ("mults", "bias"):
            m.d.comb += [wr.data[field][j].eq(lanes[j]) for j in range(self.cfg.lanes)]
        else:
            m.d.comb += wr.data[field].eq(lanes[0])
        m.d.comb += wr.en.eq(self.load.valid & self.load.ready & taken & (index == 0))
        rd = mem.read_port(domain="comb")
        if ld_bank is not None:
            m.d.comb += [wr.addr.eq(ld_bank), rd.addr.eq(rd_bank)]
        return rd.data[field]

    def _loaded_tables(self, m, lane_fields, rows, beat, adv, at, ld_bank=None, rd_bank=None):
        """The channel table as one memory per field (``channels_mult``, ``channels_bias``),
        each written by its load beats and read, like the single table, by the beat's index
        (enabled by the stage's advance); two banks (``ld_bank``, ``rd_bank``): ``2·beats``
        words, a bank's ``beats`` after the other's. Returns ``{field: read data}``."""
        lanes, beats = self.cfg.lanes, self.cfg.beats
        nb = 1 if ld_bank is None else 2
        reads = {}
        for name, shape in lane_fields.items():
            init = [[row[j][name] for j in range(lanes)] for row in rows] * nb
            mem = memory.Memory(shape=data.ArrayLayout(shape, lanes), depth=nb * beats,
                                init=init)
            m.submodules[f"channels_{name}"] = mem
            rd, wr = mem.read_port(), mem.write_port()
            taken, index = self._load_phase(name, at)
            if nb == 1:
                m.d.comb += [rd.addr.eq(beat), wr.addr.eq(index)]
            else:
                m.d.comb += [rd.addr.eq(rd_bank * beats + beat),
                             wr.addr.eq(ld_bank * beats + index[:len(beat)] if beats > 1
                                        else ld_bank)]
            m.d.comb += [rd.en.eq(adv),
                         wr.en.eq(self.load.valid & self.load.ready & taken)]
            m.d.comb += [wr.data[j].eq(self.load.payload.data[j]) for j in range(lanes)]
            reads[name] = rd.data
        return reads
