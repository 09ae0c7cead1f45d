"""Layernorm and rmsnorm over rows of int8, with per-element gamma and beta, int8 out; or
int16 in and/or out (``in_width``, ``out_width``: the wide residual stream).

Both blocks share one datapath (:class:`Norm`); rmsnorm is layernorm without the centring.
The numbers below are for int8; the int16 differences follow them.

Numerics (all integer; the golden model :func:`llmloom.sim.golden.norm.norm_bitexact` does
the same steps with the constants of :class:`NormConfig`):

* **Statistics, exactly.** Phase 1 sums ``S1 = Σx`` and ``S2 = Σx²`` over the row on wide
  integers. With int8 inputs these sums are exact, so the variance is computed exactly as an
  integer: ``D = L·S2 − S1² = L²·var`` (Lagrange's identity ``D = Σ_{i<j} (x_i − x_j)²``; it is
  never negative and no cancellation is lost, which is what makes E[x²] − E[x]² unsound in
  low-precision floating or fixed point). For rmsnorm ``D = L·S2 = L²·mean(x²)``.
* **Normalised value without a division.** With ``c = L·x − S1`` (rmsnorm: ``c = L·x``),
  ``(x − μ)/sqrt(var + eps) = c / sqrt(D + E)`` where ``E = eps·L²/x_scale²`` (x_scale
  cancels elsewhere). ``V = D·4**E_FRAC + round(E·4**E_FRAC)`` keeps E to 2**-12 of a unit.
* **rsqrt** (a pipelined scalar unit, 5 cycles, three multiplies per row): ``V = m·4**h`` with
  ``m ∈ [1/4, 1)`` (priority encoder and shift; ``MANT_BITS`` = 24), ``y0 =
  RSQRT_TABLE[top 8 bits of m]`` (at the segment midpoint, 15 fraction bits), one Newton step
  ``y1 = y0·(3 − m·y0²)/2`` (relative error ≲ 2**-14). ``V = 0`` only for an all-equal row
  (rmsnorm: all zero), where every ``c`` is 0 and the output is beta.
* **Output:** ``n = round(c·y1 / 2**(15 + h − E_FRAC − n_frac))`` (the normalised value with
  ``n_frac`` fraction bits, one variable shift per lane), then ``y = saturate_int8(round(
  (n·G_j + B_j) / 2**T))`` with ``G_j = round(gamma_j/out_scale · 2**g_frac)`` (18-bit,
  ``g_frac`` chosen from the largest |gamma|/out_scale), ``B_j = round(beta_j/out_scale ·
  2**T)``, ``T = n_frac + g_frac``. ``n_frac`` is 12, or more when gamma/out_scale is large
  (eps dominating a small variance makes n small and the calibrated out_scale tiny), so that
  n's rounding costs at most 2**-6 LSB. Roundings of n and y are half up (ties towards +∞);
  gamma, beta and eps are quantised half to even.

Accuracy against float64 layernorm/rmsnorm on the dequantised input ``x·x_scale``: within
``0.5 + ~0.02`` LSB of ``out_scale`` where the output does not saturate (rounding, rsqrt
relative error ~2**-14 of up to 127 LSB, n's rounding); measured worst case 0.509 LSB over
lengths 1..8192, x_scale 1/256..4, eps 0..1e-2, calibrated and default out_scale
(``tests/hw/test_norm.py``). The default out_scale (no data) is a bound no input can exceed.

**int16.** An int16 input only widens the statistics (``S1``, ``S2``, ``D`` <= L²·2**30, V up
to 70 bits at L = 8192: the golden model holds V in Python ints, everything after the mantissa
in int64) and ``c`` (±65535·L); they stay exact. An int16 output needs n to 2**-15 relative
instead of 2**-7, so it uses the finer constants of :data:`RSQRT_WIDE`: a 1024-entry table
of 25 bits, 24 fraction bits, a 28-bit mantissa, a Newton step recentred by a constant
(relative error ±7.3e-7, 2**-20.4), eps to 4**-10 of a unit of D, and 26-bit gammas (G_j to
2**-25 of the largest: a MiniLM layernorm's 0.01 next to a 10 is held to 2e-5 of itself). Bound
against float64 for an int16 output, where it does not saturate: ``0.52 + 1e-6·|gamma_j·n_j|
/out_scale + |n_j|·2**-(g_frac+1)`` LSB (n_j the float normalised value; the second term is
the rsqrt's error, large only where beta cancels a gamma·n beyond the output range; the third
gamma's rounding, ~0.003 LSB for MiniLM's layernorms); the first term measured 0.513 over lengths
1..8192, x_scale 2**-16..0.5, eps 0..1e-2, gammas 0.01..10, betas to ±4
(``tests/hw/test_norm.py``). The stages and so the timing are the same at every width.

Timing: the row-kernel skeleton (:mod:`.rowkernel`): II = 1 beat per cycle for every row
length; ``STATS_LATENCY`` = 8 (beat register, beat sums, running sums, D and V, normalise,
table, two Newton multiplies, the last), ``EMIT_STAGES`` = 4 (centre, multiply by y1, shift,
multiply-add gamma/beta), so one row alone takes ``2·B + 15`` cycles.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from amaranth.hdl import Const, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream
from amaranth.lib.wiring import In

from ..config import Choice, ConfigError, Range, spec
from ..numeric import IntType, Rounding, round_shift_var_hw, saturate_hw
from ..stream import row_layout
from .loadable import Constant, constant_memories
from .requant import constant_word, fields_constant
from .rowkernel import (
    RowKernel,
    RowKernelConfig,
    bit_length_hw,
    check_positive,
    check_vector,
    signed_width,
)

__all__ = ["NormConfig", "LayerNormConfig", "RMSNormConfig", "Norm", "E_FRAC", "N_FRAC",
           "MANT_BITS", "RSQRT_INDEX_BITS", "RSQRT_FRAC", "RSQRT_TABLE", "G_BITS", "Rsqrt",
           "RSQRT_NARROW", "RSQRT_WIDE", "WIDTHS"]

#: Fraction bits (base 4) of V = (D + E)·4**E_FRAC: eps is kept to 2**-12 of a unit of D.
E_FRAC = 6
#: Fraction bits of the normalised value n: at least N_FRAC, and enough that rounding n
#: costs at most 2**-6 of an output step (``log2(max|gamma|/out_scale) + 5``), but no more
#: than keeps n's shift positive for the smallest nonzero V (see ``NormConfig.n_frac``).
N_FRAC = 12
MAX_N_FRAC = 30
#: V is normalised to ``m = mant / 2**MANT_BITS ∈ [1/4, 1)``.
MANT_BITS = 24
#: Top bits of mant indexing the rsqrt table (m ∈ [1/4, 1): indices 64..255 are used).
RSQRT_INDEX_BITS = 8
#: Fraction bits of the rsqrt table and of the Newton result (rsqrt(m) ∈ (1, 2]).
RSQRT_FRAC = 15
#: rsqrt(m) at the middle of each segment; entries below 64 (m < 1/4: only V = 0, whose
#: result is multiplied by c = 0) repeat entry 64.
RSQRT_TABLE = tuple(
    round(2 ** RSQRT_FRAC / math.sqrt((max(i, 64) + 0.5) / 2 ** RSQRT_INDEX_BITS))
    for i in range(2 ** RSQRT_INDEX_BITS))
#: Bits of the rsqrt unit's result y1 (< 1.5·2**16 whatever the table index).
Y_BITS = 17
#: Bits of the quantised gamma (signed).
G_BITS = 18
#: Largest g_frac (tiny gammas: the beta term dominates anyway).
MAX_G_FRAC = 30
#: Integer widths of the input and of the output: int8, or int16 (a wide residual stream).
WIDTHS = (8, 16)
#: The golden model's products stay below 2**INT64_MARGIN (n·G, c·y1): n_frac is capped so.
INT64_MARGIN = 62
#: Bits of eps in units of V (``eps_term``) the config accepts.
EPS_BITS = 60
#: The largest final shift T = n_frac + g_frac (the hardware's loaded shift spans 0..this).
MAX_TOTAL_SHIFT = MAX_N_FRAC + MAX_G_FRAC
#: The default hardware width of n (``NormConfig.n_bits``) holds n_frac up to N_FRAC + this
#: (a largest gamma/out_scale up to 2**(N_FRAC + this − 5)); an int16 output 8 more. The real
#: calibrations need none at int8 (MiniLM, SmolLM2: n_frac 12) and n_frac 15..19 at int16;
#: a row kernel calibrated on tiny or degenerate rows (tests/hw/test_norm.py) up to 18.
N_FRAC_ROOM = 6
#: The default hardware width of B (``NormConfig.beta_bits``) is out_width + this: it holds
#: B's clamp (:attr:`NormConfig.beta_q`) up to T = 32; the real calibrations' B need 27..30
#: bits at an int8 output (MiniLM) and 39..41 at int16 (T 22..30).
BETA_ROOM = 34


@dataclasses.dataclass(frozen=True)
class Rsqrt:
    """The constants of one rsqrt unit (table + one Newton step) and of the gamma it feeds.

    ``V = m·4**h``, ``m = mant / 2**mant_bits ∈ [1/4, 1)``; ``y0 = table[top index_bits of
    mant]`` (``frac`` fraction bits, the segment's midpoint); ``t = y0² >> (2·frac − t_frac)``,
    ``t2 = t·mant >> mant_bits`` (``t_frac`` fraction bits); ``y1 = y0·(3·2**t_frac + bias −
    t2) >> (t_frac + 1)`` (``frac`` fraction bits). The Newton step's error ``−1.5·e0²`` is
    never positive; ``bias`` (units of 2**-t_frac) recentres it on zero. ``e_frac``: fraction
    digits (base 4) of V, which keep eps to ``4**-e_frac`` of a unit of D; ``g_bits``: bits of
    the quantised gamma. The output's precision sets them all."""

    e_frac: int
    index_bits: int
    frac: int
    t_frac: int
    mant_bits: int
    bias: int
    g_bits: int

    @functools.cached_property
    def table(self):
        """rsqrt(m) at the middle of each segment; entries below m = 1/4 (only V = 0, whose
        result is multiplied by c = 0) repeat the first used one."""
        first = 1 << (self.index_bits - 2)
        return tuple(round(2 ** self.frac / math.sqrt((max(i, first) + 0.5)
                                                      / 2 ** self.index_bits))
                     for i in range(2 ** self.index_bits))

    @property
    def y_bits(self):
        """Bits of y1 (< 1.5·2**(frac+1) whatever the table index)."""
        return self.frac + 2

    @property
    def three(self):
        """``3 − t2``'s constant, ``3·2**t_frac + bias``."""
        return (3 << self.t_frac) + self.bias


#: Today's unit, for int8 outputs: 256 entries, relative error ≲ 2**-14 (measured 3.4e-5),
#: well under the 127 LSB it scales.
RSQRT_NARROW = Rsqrt(e_frac=E_FRAC, index_bits=RSQRT_INDEX_BITS, frac=RSQRT_FRAC,
                     t_frac=RSQRT_FRAC + 1, mant_bits=MANT_BITS, bias=0, g_bits=G_BITS)
#: For int16 outputs (n up to 32767 LSB): 1024 entries of 25 bits; Newton's error from the
#: table's ``e0 <= 2**-10`` is ``-1.5·e0²``, so a bias of ``1.5·4**-10`` (which moves y1 by half
#: that) centres it: relative
#: error within ±7.3e-7 (2**-20.4) measured over all segments, 0.024 LSB at 32767. gamma
#: widens by the 8 bits the output gains, eps's precision by 8 bits (a length-2 row's
#: D can be 1: eps rounded to 2**-12 of it would cost up to 2 LSB at 32767).
RSQRT_WIDE = Rsqrt(e_frac=E_FRAC + 4, index_bits=10, frac=24, t_frac=26, mant_bits=28,
                   bias=round(1.5 * 4.0 ** -10 * 2 ** 26), g_bits=G_BITS + 8)


def _doc_field(doc):
    # gamma/beta can be thousands of floats: keep them out of repr (llmloom verilog prints it)
    return dataclasses.field(default=None, repr=False, metadata={"allowed": None, "doc": doc})


@dataclasses.dataclass(frozen=True, kw_only=True)
class NormConfig(RowKernelConfig):
    """Fields and derived constants of layernorm and rmsnorm."""

    x_scale: float = spec(1.0 / 16, None,
                          "scale of the int8 input (finite, > 0); IN.npz x_scale")
    eps: float = spec(1e-5, None, "added to the variance (rmsnorm: mean square), in real units; "
                      "finite, >= 0")
    out_scale: float | None = spec(
        None, None, "scale of the int8 output; none: calibrated from the data by `run` (the "
        "float reference's max magnitude maps to 127), else the bound "
        "max_j(|gamma_j|·n_max + |beta_j|)/127 that no input can exceed")
    gamma: tuple | None = _doc_field("per-element scale, length floats (IN.npz gamma); "
                                     "none: ones")
    beta: tuple | None = _doc_field("per-element offset, length floats (IN.npz beta); "
                                    "none: zeros")
    in_width: int = spec(8, Choice(WIDTHS), "bits of the input (int8 or int16)")
    out_width: int = spec(8, Choice(WIDTHS), "bits of the output (int8 or int16; int16 uses "
                          "the finer rsqrt unit and 8 more bits of gamma)")
    n_bits: int | None = spec(
        None, Range(2, 64), "bits of the normalised value n in the hardware (fixed by the "
        "config, not by gamma/out_scale, so that one build serves every calibration); none: "
        f"those of n_frac up to {N_FRAC + N_FRAC_ROOM} (int16 output: 8 more)")
    beta_bits: int | None = spec(
        None, Range(2, 80), "bits of the quantised beta B in the hardware (fixed by the config, "
        f"not by beta/out_scale); none: out_width + {BETA_ROOM}")
    e_max: int = spec(0, Range(0, 15), "row exponents (the residual stream in block "
                      "floating point per row): each row comes with an exponent 0..e_max (port "
                      "e) and is at x_scale·2**e, which scales its epsilon only (eps_term >> "
                      "2e); 0: off")

    KIND = "layernorm"
    CENTERED = True
    STATS_LATENCY = 8
    EMIT_STAGES = 4

    @property
    def IN(self):
        """Integer type of the input."""
        return IntType(self.in_width)

    @property
    def OUT(self):
        """Integer type of the output."""
        return IntType(self.out_width)

    @property
    def rsqrt(self):
        """The rsqrt unit and gamma width (:class:`Rsqrt`) the output's precision needs."""
        return RSQRT_NARROW if self.out_width == 8 else RSQRT_WIDE

    def _validate(self):
        super()._validate()
        object.__setattr__(self, "x_scale", check_positive("x_scale", self.x_scale))
        object.__setattr__(self, "eps", check_positive("eps", self.eps, allow_zero=True))
        if self.out_scale is not None:
            object.__setattr__(self, "out_scale", check_positive("out_scale", self.out_scale))
        object.__setattr__(self, "gamma", check_vector("gamma", self.gamma, self.length))
        object.__setattr__(self, "beta", check_vector("beta", self.beta, self.length))
        ef = self.rsqrt.e_frac
        eps_units = self.eps * self.length ** 2 / self.x_scale ** 2 * 4 ** ef
        if not eps_units < 2 ** EPS_BITS:
            raise ConfigError(f"eps={self.eps!r} is too large for x_scale={self.x_scale!r} "
                              f"(eps/x_scale² = {self.eps / self.x_scale ** 2:.3g}); allowed: "
                              f"eps/x_scale² < 2**{EPS_BITS - 2 * ef} / length²")
        if self.n_frac + self.g_frac < 1:
            raise ConfigError(
                f"gamma/out_scale up to {self.gamma_max:.3g} is too large for "
                f"out_scale={self.out_scale_value!r}; allowed: below "
                f"{2.0 ** (self.rsqrt.g_bits + 10):.3g}")
        if self.n_width > self.n_bits_value:
            raise ConfigError(
                f"gamma/out_scale up to {self.gamma_max:.3g} needs n_frac={self.n_frac}, a "
                f"{self.n_width}-bit n; n_bits={self.n_bits_value} allows {self.n_bits_value} "
                "(raise n_bits)")
        if self.beta is not None and self.beta_width > self.beta_bits_value:
            top = max(abs(b) for b in self.beta_values) / self.out_scale_value
            raise ConfigError(
                f"beta/out_scale up to {top:.3g} needs a {self.beta_width}-bit B at "
                f"T={self.total_shift}; beta_bits={self.beta_bits_value} allows "
                f"{self.beta_bits_value} (raise beta_bits)")

    # -- gamma, beta and the output scale -------------------------------------------------
    @functools.cached_property
    def gamma_values(self):
        return np.ones(self.length) if self.gamma is None else np.asarray(self.gamma, float)

    @functools.cached_property
    def beta_values(self):
        return np.zeros(self.length) if self.beta is None else np.asarray(self.beta, float)

    @property
    def n_max(self):
        """The largest |normalised value| any row can give: sqrt(L−1) (layernorm), sqrt(L)
        (rmsnorm)."""
        return math.sqrt(self.length - 1 if self.CENTERED else self.length)

    @functools.cached_property
    def out_scale_value(self):
        """The output scale in use: ``out_scale``, or the data-independent bound."""
        if self.out_scale is not None:
            return self.out_scale
        bound = float(np.max(np.abs(self.gamma_values) * self.n_max
                             + np.abs(self.beta_values)))
        return bound / self.OUT.max if bound > 0 else 1.0

    @property
    def gamma_max(self):
        return float(np.max(np.abs(self.gamma_values))) / self.out_scale_value

    # -- fixed-point constants, shared by the RTL and the golden model ------------------------
    @functools.cached_property
    def eps_term(self):
        """``round(eps · L² / x_scale² · 4**e_frac)``: eps in units of D, with e_frac
        fraction digits (base 4; E_FRAC = 6 for an int8 output, 10 for int16)."""
        return round(self.eps * self.length ** 2 / self.x_scale ** 2 * 4 ** self.rsqrt.e_frac)

    @property
    def s1_width(self):
        return signed_width(self.IN.min * self.length, self.IN.max * self.length)

    @property
    def s2_width(self):
        """Bits of Σx² (unsigned)."""
        return (self.length * self.IN.min ** 2).bit_length()

    @property
    def eps_width(self):
        """Bits of the loaded ``eps_term``, fixed by the config: those of the largest
        ``D·4**e_frac`` (D <= L²·2**14 for int8 inputs, L²·2**30 for int16), at least
        :data:`EPS_BITS` (every eps the config accepts)."""
        d_bits = 2 * (self.in_width - 1)
        return max((self.length ** 2 << d_bits << 2 * self.rsqrt.e_frac).bit_length(),
                   EPS_BITS + 1)

    @property
    def v_width(self):
        """Bits of V = D·4**e_frac + eps_term (both below 2**eps_width), rounded up to even.
        Any even width that holds V gives the same mantissa and h."""
        w = self.eps_width + 1
        return w + (w & 1)

    @functools.cached_property
    def g_frac(self):
        """Fraction bits of the quantised gamma: the most that keep every |G_j| <
        2**(g_bits − 1) (2**17 for an int8 output, 2**25 for int16)."""
        gmax = self.gamma_max
        limit = (1 << (self.rsqrt.g_bits - 1)) - 1
        if gmax == 0:
            return MAX_G_FRAC
        f = min(MAX_G_FRAC, math.floor(math.log2(limit / gmax)))
        while round(gmax * 2.0 ** f) > limit:
            f -= 1
        while f < MAX_G_FRAC and round(gmax * 2.0 ** (f + 1)) <= limit:
            f += 1
        return f

    @functools.cached_property
    def h_min(self):
        """The smallest exponent h of any V of a row with D >= 1 (D >= L − 1 for layernorm,
        by Lagrange's identity; D >= L for rmsnorm): V >= v_min, so h >= this."""
        d_min = max(1, self.length - 1) if self.CENTERED else self.length
        v_min = (d_min << 2 * self.rsqrt.e_frac) + self.eps_term
        return (v_min.bit_length() + 1) >> 1

    @functools.cached_property
    def n_frac(self):
        """Fraction bits of n (see :data:`N_FRAC`); the shift ``frac + h − e_frac − n_frac``
        (frac = 15, int16 output: 24) stays >= 1 for every h >= h_min, and n·G stays inside
        the golden model's int64 (never binding for an int8 output)."""
        gmax = self.gamma_max
        want = N_FRAC if gmax == 0 else max(N_FRAC, math.ceil(math.log2(gmax)) + 5)
        n_int = math.ceil(math.log2(math.sqrt(self.length) * (1 + 2 ** -12) + 1)) + 1
        fit = INT64_MARGIN - self.rsqrt.g_bits - n_int
        return max(1, min(want, MAX_N_FRAC, fit,
                          self.rsqrt.frac - 1 + self.h_min - self.rsqrt.e_frac))

    @property
    def total_shift(self):
        """T: the final shift of n·G + B."""
        return self.n_frac + self.g_frac

    @functools.cached_property
    def gamma_q(self):
        """G_j = round(gamma_j / out_scale · 2**g_frac) (half to even), as ints."""
        return tuple(int(v) for v in np.rint(self.gamma_values / self.out_scale_value
                                             * 2.0 ** self.g_frac))

    def _n_width(self, n_frac):
        bound = math.ceil(math.sqrt(self.length) * 2 ** n_frac * (1 + 2 ** -12)) + 1
        return signed_width(-bound, bound)

    @property
    def n_width(self):
        """Bits of n (signed): |n| <= sqrt(L)·2**n_frac·(1 + 2**-12) + 1."""
        return self._n_width(self.n_frac)

    @property
    def n_bits_value(self):
        """Bits of n in the hardware: ``n_bits``, or :attr:`n_width` at n_frac = N_FRAC +
        :data:`N_FRAC_ROOM` (+ 8 for an int16 output): a config value, so that every
        calibration of the config builds alike."""
        if self.n_bits is not None:
            return self.n_bits
        # an int16 output's out_scale is 256 times finer: gamma/out_scale 256 times larger
        return self._n_width(N_FRAC + N_FRAC_ROOM + self.out_width - 8)

    @property
    def beta_bits_value(self):
        """Bits of B in the hardware, fixed by the config: ``beta_bits``, or out_width +
        :data:`BETA_ROOM` (1 without a beta)."""
        if self.beta is None:
            return 1
        return self.beta_bits if self.beta_bits is not None else self.out_width + BETA_ROOM

    @functools.cached_property
    def beta_q(self):
        """B_j = round(beta_j / out_scale · 2**T), clamped where the output saturates
        anyway (beyond ``2**(T+out_width) + max|n·G|`` the sign of n·G + B is B's and the
        result is beyond the output's range)."""
        t = self.total_shift
        clamp = (1 << (t + self.out_width)) + (1 << (self.n_width - 1 + self.rsqrt.g_bits - 1))
        out = []
        for b in self.beta_values / self.out_scale_value:
            q = round(math.ldexp(float(b), t))
            out.append(max(-clamp, min(clamp, q)))
        return tuple(out)

    @property
    def beta_width(self):
        return signed_width(min(self.beta_q), max(self.beta_q))

    @property
    def c_width(self):
        span = self.IN.max - self.IN.min
        return signed_width(-span * self.length, span * self.length)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerNormConfig(NormConfig):
    """Layernorm over rows of ``length`` int8: ``gamma·(x − μ)/sqrt(var + eps) + beta``."""

    KIND = "layernorm"
    CENTERED = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class RMSNormConfig(NormConfig):
    """RMSnorm over rows of ``length`` int8: ``gamma·x/sqrt(mean(x²) + eps) + beta``."""

    KIND = "rmsnorm"
    CENTERED = False


class Norm(RowKernel):
    """Layernorm (``LayerNormConfig``) or rmsnorm (``RMSNormConfig``) on int8 rows.

    Parameters
    ----------
    cfg : LayerNormConfig or RMSNormConfig
        gamma and beta are quantised from the config at elaboration (see the module text).

    Members
    -------
    i : In(stream.Signature(row_layout(signed(8), lanes)))
        Rows of ``B = ceil(length / lanes)`` beats; the padding lanes of a row's last beat
        (past ``tail_lanes``) are left out of Σx and Σx².
    o : Out(stream.Signature(row_layout(signed(8), lanes)))
        Normalised rows at ``out_scale_value``, same framing (padding lanes: don't-cares).

    Latency: one row alone takes ``2·B + 15`` cycles (``B = ceil(length/lanes)``), first input to
    last output beat. Initiation interval: 1 beat per cycle for any row length (the row
    buffer is ``B + 10`` beats deep). Backpressure: a stalled ``o`` holds the output pipeline;
    the input is refused once the buffer is full; no beat is lost or reordered.
    """

    def __init__(self, cfg: NormConfig, *, loads=None):
        if not isinstance(cfg, NormConfig):
            raise TypeError(f"cfg must be a LayerNormConfig or RMSNormConfig, not {cfg!r}")
        self._loads = loads
        extra = {"e": In(stream.Signature(row_layout(unsigned(cfg.e_max.bit_length()), 1)))} \
            if cfg.e_max else None
        super().__init__(cfg, cfg.OUT.shape, cfg.IN.shape, extra=extra)

    def record_layout(self):
        cfg = self.cfg
        return data.StructLayout({
            "S1": signed(cfg.s1_width), "y1": unsigned(cfg.rsqrt.y_bits),
            "h": range(cfg.v_width // 2 + 1), "end": 1})

    def _fields(self):
        cfg, rs = self.cfg, self.cfg.rsqrt
        off = rs.frac - rs.e_frac - cfg.n_frac
        return {"eps": (unsigned(cfg.eps_width), cfg.eps_term),
                "h_min": (unsigned((cfg.v_width // 2).bit_length()), cfg.h_min),
                "sh_off": (signed(signed_width(rs.frac - rs.e_frac - MAX_N_FRAC,
                                               rs.frac - rs.e_frac)), off),
                "t": (unsigned(MAX_TOTAL_SHIFT.bit_length()), cfg.total_shift)}

    def constants(self):
        """The calibrated memories (:class:`~.loadable.Constant`): ``consts`` (eps in units
        of V, the floor of h, the offset of n's shift and the final shift T), the per-beat
        gains ``gamma`` and shifts ``beta`` (padding lanes 0), written at run time with
        ``loads``."""
        cfg = self.cfg
        ln, L, B = cfg.lanes, cfg.length, cfg.beats
        pad = [0] * (B * ln - L)        # the padding lanes of the last beat
        gq = [list(cfg.gamma_q[b * ln:(b + 1) * ln]) for b in range(B)]
        bq = [list(cfg.beta_q[b * ln:(b + 1) * ln]) for b in range(B)]
        gq[-1] += pad
        bq[-1] += pad
        return [fields_constant(self._fields()),
                Constant("gamma", data.ArrayLayout(signed(cfg.rsqrt.g_bits), ln),
                         tuple(tuple(int(v) for v in r) for r in gq)),
                Constant("beta", data.ArrayLayout(signed(cfg.beta_bits_value), ln),
                         tuple(tuple(int(v) for v in r) for r in bq))]

    def _word(self, m):
        """The ``consts`` word (one memory read combinationally, made on the first call; see
        :func:`~.requant.constant_word`)."""
        if getattr(self, "_consts", None) is None:
            self._consts = constant_word(m, self._fields(), loads=self._loads)
        return self._consts

    def row_input(self, m):
        """With row exponents: the row's exponent, taken with its first beat and held in
        ``row_e`` (stage A's) until the next row's first beat."""
        if not self.cfg.e_max:
            return None
        take = Signal(name="e_take")
        self._row_e = Signal(unsigned(self.cfg.e_max.bit_length()), name="a_e")
        m.d.comb += self.e.ready.eq(take)
        with m.If(take):
            m.d.sync += self._row_e.eq(self.e.payload.data[0])
        return self.e.valid, take

    def phase1(self, m, a):
        cfg = self.cfg
        ln, L = cfg.lanes, cfg.length
        rs = cfg.rsqrt
        s2_width = cfg.s2_width
        word = self._word(m)

        # B: beat sums
        b_valid, b_first, b_last, b_end = (Signal(name=f"b_{k}") for k in
                                           ("valid", "first", "last", "end"))
        b_s1 = Signal(signed(cfg.s1_width), name="b_s1")
        b_s2 = Signal(unsigned(s2_width), name="b_s2")
        m.d.sync += [b_valid.eq(a.valid), b_first.eq(a.first), b_last.eq(a.last),
                     b_end.eq(a.end)]
        # the padding lanes of a row's last beat count as zeros in both sums
        x = [self.masked(a.last, n, a.data[n]) for n in range(ln)]
        m.d.sync += [b_s1.eq(sum(x)), b_s2.eq(sum(v * v for v in x))]

        # C: running sums
        S1 = Signal(signed(cfg.s1_width), name="S1")
        S2 = Signal(unsigned(s2_width), name="S2")
        s1_new = Signal.like(S1, name="s1_new")
        s2_new = Signal.like(S2, name="s2_new")
        m.d.comb += [s1_new.eq(Mux(b_first, b_s1, S1 + b_s1)),
                     s2_new.eq(Mux(b_first, b_s2, S2 + b_s2))]
        with m.If(b_valid):
            m.d.sync += [S1.eq(s1_new), S2.eq(s2_new)]
        c_valid, c_end = Signal(name="c_valid"), Signal(name="c_end")
        c_S1, c_S2 = Signal.like(S1, name="c_S1"), Signal.like(S2, name="c_S2")
        m.d.sync += [c_valid.eq(b_valid & b_last), c_end.eq(b_end), c_S1.eq(s1_new),
                     c_S2.eq(s2_new)]

        # D: V = D·4**e_frac + eps_term, D = L·S2 − S1² (exact, >= 0)
        vw = cfg.v_width
        d_V = Signal(vw, name="d_V")
        dv = c_S2 * L - c_S1 * c_S1 if cfg.CENTERED else c_S2 * L
        eps = word.eps
        if cfg.e_max:       # the row's exponent, carried beside the sums: eps >> 2e
            b_e = Signal.like(self._row_e, name="b_e")
            c_e = Signal.like(self._row_e, name="c_e")
            m.d.sync += [b_e.eq(self._row_e), c_e.eq(b_e)]
            eps = word.eps >> (c_e * 2)
        m.d.sync += d_V.eq((dv.as_unsigned() << 2 * rs.e_frac) + eps)
        d_valid, d_end, d_S1 = Signal(name="d_valid"), Signal(name="d_end"), \
            Signal.like(S1, name="d_S1")
        m.d.sync += [d_valid.eq(c_valid), d_end.eq(c_end), d_S1.eq(c_S1)]

        # E: normalise V = m·4**h, m ∈ [1/4, 1)
        nb = bit_length_hw(m, d_V, "d_nb")
        h = Signal(range(vw // 2 + 1), name="d_h")
        shamt = Signal(range(vw + 1), name="d_shamt")
        aligned = Signal(vw, name="d_aligned")
        m.d.comb += [h.eq((nb + 1) >> 1), shamt.eq(vw - 2 * h), aligned.eq(d_V << shamt)]
        e_mant = Signal(rs.mant_bits, name="e_mant")
        e_h = Signal(range(vw // 2 + 1), name="e_h")
        m.d.sync += [
            e_mant.eq(aligned >> (vw - rs.mant_bits) if vw >= rs.mant_bits
                      else aligned << (rs.mant_bits - vw)),
            # h >= h_min whenever D >= 1; for D = 0 every c is 0 and h does not matter
            e_h.eq(Mux(h < word.h_min, word.h_min, h)),
        ]

        def carry(prefix, src):
            regs = [Signal.like(s, name=f"{prefix}_{s.name.split('_', 1)[1]}") for s in src]
            m.d.sync += [r.eq(s) for r, s in zip(regs, src, strict=True)]
            return regs

        e_valid, e_end, e_S1 = carry("e", [d_valid, d_end, d_S1])

        # F: table
        rom = memory.Memory(shape=unsigned(rs.frac + 2), depth=len(rs.table), init=rs.table)
        m.submodules.rsqrt = rom
        port = rom.read_port()
        m.d.comb += port.addr.eq(e_mant[rs.mant_bits - rs.index_bits:])
        f_mant, f_h, f_valid, f_end, f_S1 = carry("f", [e_mant, e_h, e_valid, e_end, e_S1])

        # G, H, I: Newton step y1 = y0·(3 − m·y0²)/2
        g_t = Signal(2 * (rs.frac + 2) - (2 * rs.frac - rs.t_frac), name="g_t")
        g_y0 = Signal(rs.frac + 2, name="g_y0")
        m.d.sync += [g_t.eq((port.data * port.data) >> (2 * rs.frac - rs.t_frac)),
                     g_y0.eq(port.data)]
        g_mant, g_h, g_valid, g_end, g_S1 = carry("g", [f_mant, f_h, f_valid, f_end, f_S1])

        h_t2 = Signal(len(g_t), name="h_t2")
        m.d.sync += h_t2.eq((g_t * g_mant) >> rs.mant_bits)
        h_y0, h_h, h_valid, h_end, h_S1 = carry("h", [g_y0, g_h, g_valid, g_end, g_S1])

        i_rec = Signal(self.record_layout(), name="i_rec")
        i_valid = Signal(name="i_valid")
        three = Const(rs.three, len(h_t2) + 1)
        m.d.sync += [
            i_valid.eq(h_valid),
            i_rec.y1.eq((h_y0 * (three - h_t2)) >> (rs.t_frac + 1)),
            i_rec.h.eq(h_h), i_rec.S1.eq(h_S1), i_rec.end.eq(h_end),
        ]
        return i_valid, i_rec

    def emit(self, m, adv, issue, s1):
        cfg = self.cfg
        ln, L = cfg.lanes, cfg.length
        word = self._word(m)
        roms = constant_memories(m, self.constants()[1:], self._loads)
        g_rom, b_rom = roms["gamma"], roms["beta"]
        g_port, b_port = g_rom.read_port(), b_rom.read_port()
        m.d.comb += [g_port.addr.eq(issue["beat"]), b_port.addr.eq(issue["beat"]),
                     g_port.en.eq(adv), b_port.en.eq(adv)]
        rec = s1["record"]

        def stage(name, value):
            reg = Signal(value.shape(), name=name)
            with m.If(adv):
                m.d.sync += reg.eq(value)
            return reg

        sh_width = range(cfg.v_width // 2 + max(16, cfg.rsqrt.frac + 1))
        # s2: centre
        c2 = []
        for n in range(ln):
            lx = s1["data"][n] * L
            c2.append(Signal(signed(cfg.c_width), name=f"s2_c{n}"))
            with m.If(adv):
                m.d.sync += c2[n].eq(lx - rec.S1 if cfg.CENTERED else lx)
        y1_2 = stage("s2_y1", rec.y1)
        sh_2 = Signal(sh_width, name="s2_sh")
        with m.If(adv):
            m.d.sync += sh_2.eq(rec.h + word.sh_off)
        g_2, b_2 = stage("s2_g", g_port.data), stage("s2_b", b_port.data)
        # s3: times y1
        p3 = [stage(f"s3_p{n}", c2[n] * y1_2) for n in range(ln)]
        sh_3, g_3, b_3 = stage("s3_sh", sh_2), stage("s3_g", g_2), stage("s3_b", b_2)
        # s4: n = round(p / 2**sh), sh >= 1
        half = (Const(1, len(p3[0])) << sh_3) >> 1
        n4 = []
        for n in range(ln):
            n4.append(Signal(signed(cfg.n_bits_value), name=f"s4_n{n}"))
            with m.If(adv):
                m.d.sync += n4[n].eq((p3[n] + half) >> sh_3)
        g_4, b_4 = stage("s4_g", g_3), stage("s4_b", b_3)
        # s5: n·G + B
        acc5 = [stage(f"s5_acc{n}", n4[n] * g_4[n] + b_4[n]) for n in range(ln)]
        # the final shift T, loaded: the sum sign-extended so that the shift can span every T
        wide = [Signal(signed(max(len(acc5[n]), MAX_TOTAL_SHIFT + 1)), name=f"s5_wide{n}")
                for n in range(ln)]
        m.d.comb += [wide[n].eq(acc5[n]) for n in range(ln)]
        return [saturate_hw(round_shift_var_hw(wide[n], word.t, MAX_TOTAL_SHIFT,
                                               Rounding.HALF_UP), cfg.OUT) for n in range(ln)]
