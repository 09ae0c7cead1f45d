"""Numeric types shared by the RTL generators and the golden models.

Integers of a given width and signedness, fixed-point numbers with a scale, rounding and
saturation, and per-tensor / per-channel quantisation parameters. The golden models in
``llmloom.sim.golden`` and the Amaranth blocks both call into this module, so a rounding rule is
written once: :func:`round_shift` on NumPy arrays and :func:`round_shift_hw` on Amaranth values
implement the same integer arithmetic.
"""

from __future__ import annotations

import dataclasses
import enum
import math

import numpy as np
from amaranth.hdl import Cat, Const, Mux, signed, unsigned

from .config import ConfigError

__all__ = [
    "IntType", "INT4", "INT8", "INT16", "INT32", "UINT8",
    "Rounding", "round_shift", "round_shift_hw", "round_shift_var_hw",
    "round_shift_split_hw", "saturate_hw",
    "FixedPoint", "QuantParams", "quantize_multiplier",
]


@dataclasses.dataclass(frozen=True)
class IntType:
    """A two's complement (``signed=True``) or unsigned integer of ``width`` bits."""

    width: int
    signed: bool = True

    def __post_init__(self):
        if not (1 <= self.width <= 64):
            raise ConfigError(f"integer width={self.width} is out of range; allowed: 1..64")

    @property
    def min(self):
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max(self):
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def shape(self):
        """The Amaranth shape."""
        return signed(self.width) if self.signed else unsigned(self.width)

    @property
    def name(self):
        return f"{'int' if self.signed else 'uint'}{self.width}"

    @property
    def dtype(self):
        """The NumPy dtype that holds it: the narrowest of 8, 16, 32, 64 bits."""
        bits = next(b for b in (8, 16, 32, 64) if b >= self.width)
        return np.dtype(f"{'int' if self.signed else 'uint'}{bits}")

    def saturate(self, x):
        """Clamp a NumPy integer array (computed wide) into this type's range, as int64."""
        return np.clip(np.asarray(x, dtype=np.int64), self.min, self.max)

    def contains(self, x):
        """True if every element of ``x`` is representable."""
        x = np.asarray(x)
        return bool(x.size == 0 or (x.min() >= self.min and x.max() <= self.max))


INT4, INT8, INT16, INT32 = IntType(4), IntType(8), IntType(16), IntType(32)
UINT8 = IntType(8, signed=False)


class Rounding(enum.Enum):
    """How a right shift by ``s`` bits (division by 2**s) rounds.

    ``FLOOR``: towards −∞ (a plain arithmetic shift, cheapest in hardware).
    ``HALF_UP``: to nearest, ties towards +∞ (add 2**(s−1), then shift: one adder).
    ``HALF_EVEN``: to nearest, ties to even (unbiased; one adder and a tie detector).
    """

    FLOOR = "floor"
    HALF_UP = "half_up"
    HALF_EVEN = "half_even"


def round_shift(x, shift, mode=Rounding.HALF_UP):
    """``x / 2**shift`` rounded by ``mode``, on NumPy int64 arrays (exact for |x| < 2**62)."""
    x = np.asarray(x, dtype=np.int64)
    if shift == 0:
        return x.copy()
    if shift < 0:
        raise ValueError(f"shift={shift} must be >= 0")
    mode = Rounding(mode)
    if mode is Rounding.FLOOR:
        return x >> shift
    half = np.int64(1) << (shift - 1)
    if mode is Rounding.HALF_UP:
        return (x + half) >> shift
    q = x >> shift
    rem = x - (q << shift)
    up = (rem > half) | ((rem == half) & ((q & 1) == 1))
    return q + up.astype(np.int64)


def round_shift_hw(value, shift, mode=Rounding.HALF_UP):
    """The Amaranth expression of :func:`round_shift` for a constant ``shift``.

    The result is one bit wider than needed so that HALF_UP's addition cannot wrap; saturate it
    with :func:`saturate_hw`.
    """
    mode = Rounding(mode)
    if shift == 0:
        return value
    width = len(value) + 1
    wide = value.as_signed() if value.shape().signed else value.as_unsigned()
    if mode is Rounding.FLOOR:
        return wide >> shift
    half = Const(1 << (shift - 1), width)
    if mode is Rounding.HALF_UP:
        return (wide + half) >> shift
    q = wide >> shift
    rem = value[:shift]
    up = (rem > half[:shift]) | ((rem == half[:shift]) & q[0])
    return q + up


def round_shift_var_hw(value, shift, max_shift, mode=Rounding.HALF_UP, offset=0):
    """The Amaranth expression of :func:`round_shift` by ``offset + shift``, for a variable
    ``shift`` (an unsigned value in ``0..max_shift``) and a constant ``offset``: a barrel
    shifter over ``max_shift + 1`` positions, the half-LSB constant chosen by ``shift``
    (HALF_UP: one adder) and, for HALF_EVEN, a tie detector on the masked remainder.

    Like :func:`round_shift_hw` the result is one bit wider than ``value`` (saturate it with
    :func:`saturate_hw`); ``value`` must be at least ``offset + max_shift`` bits wide."""
    mode = Rounding(mode)
    top = offset + max_shift
    if len(value) < top:
        raise ValueError(f"value of {len(value)} bits is narrower than offset + max_shift = "
                         f"{top}")
    if top == 0:
        return value
    wide = value.as_signed() if value.shape().signed else value.as_unsigned()
    if mode is Rounding.FLOOR:
        return (wide >> offset) >> shift
    n = top + 1
    pow2 = (Const(1 << offset, n) << shift)[:n]     # 2**(offset + shift)
    half = pow2 >> 1                                # half of it, 0 for a zero shift
    if mode is Rounding.HALF_UP:
        return ((wide + half) >> offset) >> shift
    q = (wide >> offset) >> shift
    rem = value[:top] & (pow2 - 1)[:top]
    up = (rem > half) | ((rem == half) & (pow2 != 1) & q[0])
    return q + up


def round_shift_split_hw(value, const, var, var_max, mode=Rounding.HALF_UP, sat_width=None):
    """:func:`round_shift` of ``value`` by ``const + var``: a constant shift ``const`` and a
    variable one ``var`` in ``0..var_max``, so that the barrel shifter spans ``var_max + 1``
    positions (``log2`` of that in mux levels), not ``const + var_max + 1``.

    The constant shift drops the low ``const`` bits but keeps two of them, the guard bit (the
    highest dropped) and a sticky bit (any of the others set): ``round_shift(value, const +
    var)`` equals ``round_shift(q·4 + guard·2 + sticky, var + 2)`` with ``q = value >>
    const`` in every rounding mode (the floor is the same, and the remainder compares with
    half a step as the true one does). ``value`` must be at least ``const + var_max`` bits.

    ``sat_width``: the caller saturates the result to a signed type of that many bits, so the
    barrel needs only ``sat_width + var_max + 3`` bits of the kept value: it is clamped to
    them first (a value beyond them, shifted by at most ``var_max + 2``, is still beyond the
    saturated type, on the same side), which narrows the barrel shifter to that width."""
    if const == 0:
        return round_shift_var_hw(value, var, var_max, mode)
    if len(value) < const + var_max:
        raise ValueError(f"value of {len(value)} bits is narrower than const + var_max = "
                         f"{const + var_max}")
    wide = value.as_signed() if value.shape().signed else value.as_unsigned()
    q = wide >> const
    guard = value[const - 1]
    sticky = value[:const - 1].any() if const >= 2 else Const(0, 1)
    kept = Cat(sticky, guard, q)
    kept = kept.as_signed() if value.shape().signed else kept
    if sat_width is not None and value.shape().signed and len(kept) > sat_width + var_max + 3:
        kept = saturate_hw(kept, IntType(sat_width + var_max + 3))
    return round_shift_var_hw(kept, var, var_max, mode, offset=2)


def saturate_hw(value, itype):
    """Clamp an Amaranth value into ``itype`` (an :class:`IntType`)."""
    clamped = Mux(value > itype.max, itype.max, Mux(value < itype.min, itype.min, value))
    return clamped[:itype.width].as_signed() if itype.signed else clamped[:itype.width]


@dataclasses.dataclass(frozen=True)
class FixedPoint:
    """A fixed-point type: ``itype`` integers read as ``value · 2**-frac``."""

    itype: IntType
    frac: int

    @property
    def scale(self):
        return 2.0 ** -self.frac

    def quantize(self, x, mode=Rounding.HALF_EVEN):
        """Float array → saturated integers of this type (round to nearest by ``mode``)."""
        return QuantParams(scale=self.scale, itype=self.itype).quantize(x, mode)

    def dequantize(self, q):
        return np.asarray(q, dtype=np.float64) * self.scale


@dataclasses.dataclass(frozen=True)
class QuantParams:
    """Symmetric quantisation: ``real = scale · q``, ``q`` an ``itype`` integer.

    ``scale`` is a float (per tensor) or a 1-D array (per channel, along the last axis).
    """

    scale: float | tuple
    itype: IntType = INT8

    def __post_init__(self):
        s = np.asarray(self.scale, dtype=np.float64)
        if s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ConfigError(f"scale={self.scale!r} is not allowed; allowed: finite and > 0")

    def quantize(self, x, mode=Rounding.HALF_EVEN):
        x = np.asarray(x, dtype=np.float64) / np.asarray(self.scale, dtype=np.float64)
        if Rounding(mode) is Rounding.HALF_EVEN:
            q = np.rint(x)
        elif Rounding(mode) is Rounding.HALF_UP:
            q = np.floor(x + 0.5)
        else:
            q = np.floor(x)
        return self.itype.saturate(q)

    def dequantize(self, q):
        return np.asarray(q, dtype=np.float64) * np.asarray(self.scale, dtype=np.float64)

    @classmethod
    def calibrate(cls, x, itype=INT8, axis=None):
        """The scale that maps the largest magnitude of ``x`` onto ``itype.max`` (no range
        wasted); per channel along ``axis`` when given. An all-zero tensor gets scale 1."""
        amax = np.max(np.abs(np.asarray(x, dtype=np.float64)), axis=axis)
        amax = np.where(amax > 0, amax, itype.max)
        scale = amax / itype.max
        return cls(scale=float(scale) if np.ndim(scale) == 0 else tuple(scale.tolist()),
                   itype=itype)


def quantize_multiplier(real, mult_bits=16):
    """A positive real factor as ``mult · 2**-shift`` with ``mult`` an unsigned integer of at
    most ``mult_bits`` bits, normalised (top bit set) for the most precision.

    Returns ``(mult, shift)``; ``shift`` may be negative for factors ≥ 2**mult_bits.
    """
    if not (math.isfinite(real) and real > 0):
        raise ConfigError(f"scale factor {real!r} is not allowed; allowed: finite and > 0")
    mant, exp = math.frexp(real)            # real = mant · 2**exp, 0.5 <= mant < 1
    mult = round(mant * (1 << mult_bits))
    shift = mult_bits - exp
    if mult == 1 << mult_bits:             # rounding carried into a new bit
        mult >>= 1
        shift -= 1
    return mult, shift


