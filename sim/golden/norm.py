"""Golden models of layernorm and rmsnorm: float64 maths and the bit-exact integer model
(the steps of :class:`~llmloom.hw.blocks.norm.Norm`, constants imported from there)."""

from __future__ import annotations

import numpy as np

from ...hw.blocks.norm import (
    E_FRAC,
    MANT_BITS,
    RSQRT_FRAC,
    RSQRT_INDEX_BITS,
    RSQRT_TABLE,
    Y_BITS,
)

__all__ = ["norm_float", "norm_bitexact", "rsqrt_bitexact", "bit_length"]


def norm_float(cfg, x):
    """``gamma · (x − μ)/sqrt(var + eps) + beta`` (rmsnorm: ``gamma · x/sqrt(mean(x²) + eps)
    + beta``) of ``x · x_scale`` in float64; a row with zero denominator normalises to 0."""
    z = np.asarray(x, dtype=np.float64) * cfg.x_scale
    if cfg.CENTERED:
        z = z - z.mean(axis=1, keepdims=True)
    denom = np.sqrt((z * z).mean(axis=1, keepdims=True) + cfg.eps)
    n = np.divide(z, denom, out=np.zeros_like(z), where=denom > 0)
    return n * cfg.gamma_values + cfg.beta_values


def bit_length(v):
    """``int.bit_length`` of each element of a non-negative int64 array, exactly."""
    v = np.asarray(v, dtype=np.int64)
    n = np.zeros(v.shape, dtype=np.int64)
    for k in range(63):
        n += (v >> k) > 0
    return n


def rsqrt_bitexact(cfg, V):
    """``(y1, h)`` with ``y1 / 2**15 · 2**-h ≈ 1/sqrt(V)``, as the hardware's rsqrt unit
    computes them (``h`` clamped to >= ``h_min``, as there)."""
    V = np.asarray(V, dtype=np.int64)
    vw = cfg.v_width
    h = (bit_length(V) + 1) >> 1
    aligned = V << (vw - 2 * h)
    mant = aligned >> (vw - MANT_BITS) if vw >= MANT_BITS else aligned << (MANT_BITS - vw)
    y0 = np.asarray(RSQRT_TABLE, dtype=np.int64)[mant >> (MANT_BITS - RSQRT_INDEX_BITS)]
    t = (y0 * y0) >> (2 * RSQRT_FRAC - 16)
    t2 = (t * mant) >> MANT_BITS
    y1 = (y0 * ((3 << 16) - t2)) >> (RSQRT_FRAC + 2)
    assert np.all((y1 >= 0) & (y1 < 1 << Y_BITS)), "rsqrt out of range"
    return y1, np.maximum(h, cfg.h_min)


def norm_bitexact(cfg, x):
    """int8 outputs exactly as the RTL computes them."""
    x = np.asarray(x, dtype=np.int64)
    L = cfg.length
    s1 = x.sum(axis=1)
    s2 = (x * x).sum(axis=1)
    d = L * s2 - s1 * s1 if cfg.CENTERED else L * s2
    assert np.all(d >= 0)
    V = (d << 2 * E_FRAC) + cfg.eps_term
    assert V.max(initial=0) < (1 << cfg.v_width), "V out of range"
    y1, h = rsqrt_bitexact(cfg, V)
    c = L * x - s1[:, None] if cfg.CENTERED else L * x
    sh = (h + RSQRT_FRAC - E_FRAC - cfg.n_frac)[:, None]
    assert np.all(sh >= 1)
    n = (c * y1[:, None] + (np.int64(1) << (sh - 1))) >> sh
    bound = np.int64(1) << (cfg.n_width - 1)
    assert np.all((n >= -bound) & (n < bound)), "normalised value out of range"
    acc = n * np.asarray(cfg.gamma_q, dtype=np.int64) + np.asarray(cfg.beta_q, dtype=np.int64)
    t = cfg.total_shift
    y = (acc + (np.int64(1) << (t - 1))) >> t
    return np.clip(y, -128, 127).astype(np.int8)
