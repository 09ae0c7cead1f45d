"""Golden models of the systolic GEMM."""

from __future__ import annotations

import numpy as np

from ...hw.blocks.gemm_config import GemmConfig
from ...hw.numeric import INT32, IntType, round_shift

__all__ = ["gemm_bitexact", "group_gemm_bitexact", "gemm_float", "packed_products"]


def gemm_bitexact(cfg, a, w):
    """C = A·W exactly as the RTL computes it: products and sums on wide integers.

    The accumulator is ``cfg.acc_width`` bits, which the config guarantees holds any sum of
    ``k`` products, so nothing saturates or wraps; the check below proves it on every call.
    """
    a = np.asarray(a, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    c = a @ w  # int64: |c| <= k · 2**(a+w-2) < 2**62 for every valid config
    bound = 1 << (cfg.acc_width - 1)
    assert c.size == 0 or (c.min() >= -bound and c.max() < bound), "accumulator overflow"
    return c.astype(IntType(cfg.OUT_WIDTH).dtype)


def group_gemm_bitexact(a, codes, group_scale, group_min, shift, rounding):
    """A linear stage's accumulators with grouped weights: ``a`` rows × k (int8), ``codes``
    k × n (0..15 at W4; int8 at W8, GGUF's Q8_0), ``group_scale`` and ``group_min`` (k/g) × n
    integers for groups of ``g`` consecutive inputs (``group_min`` ``None``: Q8_0's groups,
    no minimum). Each group's sums, ``P = Σ a·q`` and ``S = Σ a``, are exact;
    ``Σ_g group_scale·P + group_min·S`` is formed exactly (int64) and shifted right
    by ``shift``, rounded by ``rounding``, into int32 (the config's shift guarantees it fits;
    the check below proves it on every call). It stands for ``a @ (d·q + m)`` in units of the
    channel's ``group_scale`` unit times ``2**shift``."""
    a = np.asarray(a, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.int64)
    scale = np.asarray(group_scale, dtype=np.int64)
    rows, k = a.shape
    groups, n = scale.shape
    g = k // groups
    ag = a.reshape(rows, groups, g)
    p = np.einsum("rgj,gjc->rgc", ag, codes.reshape(groups, g, n))      # |p| < 2**17
    acc = np.einsum("rgc,gc->rc", p, scale)                              # |acc| < 2**62
    if group_min is not None:
        acc += ag.sum(axis=2) @ np.asarray(group_min, dtype=np.int64)
    c = round_shift(acc, shift, rounding)
    assert c.size == 0 or (c.min() >= INT32.min and c.max() <= INT32.max), \
        "accumulator overflow"
    return c.astype(INT32.dtype)


def gemm_float(a, w, a_scale=1.0, w_scale=1.0):
    """The real-valued product that the quantised one approximates."""
    return (np.asarray(a, np.float64) * a_scale) @ (np.asarray(w, np.float64) * w_scale)


def packed_products(a, w_lo, w_hi, a_width=8, w_width=8):
    """``(a·w_lo, a·w_hi)`` as the packed PE (``GemmConfig.dsp_packing``) gets them from one
    multiplication, bit for bit: the operand ``Cat(w_lo, sign(w_lo)…, w_hi − sign(w_lo))``,
    the product, the low field read as a signed ``a_width + w_width``-bit number and the high
    field plus the low one's sign (see :class:`~llmloom.hw.blocks.pe.PackedProcessingElement`).

    Any array shapes that broadcast; int64 in and out. Equal to the plain products for every
    input in range, which ``tests/hw/test_gemm_packing.py`` checks exhaustively.
    """
    s = GemmConfig.PACK_SHIFT
    a, w_lo, w_hi = (np.asarray(x, dtype=np.int64) for x in (a, w_lo, w_hi))
    sign = (w_lo < 0).astype(np.int64)
    operand = ((w_hi - sign) << s) | (sign * ((1 << s) - (1 << w_width))) | (
        w_lo & ((1 << w_width) - 1))
    product = a * operand
    n = a_width + w_width
    low = ((product & ((1 << n) - 1)) ^ (1 << (n - 1))) - (1 << (n - 1))
    high = (product >> s) + ((product >> (s - 1)) & 1)
    return low, high
