"""Golden models of layernorm and rmsnorm: float64 maths and the bit-exact integer model
(the steps of :class:`~llmloom.hw.blocks.norm.Norm`, constants imported from there)."""

from __future__ import annotations

import numpy as np

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
    """``int.bit_length`` of each element of a non-negative integer array (int64, or Python
    ints in an object array), exactly."""
    v = np.asarray(v)
    if v.dtype == object:
        return np.array([int(e).bit_length() for e in v.reshape(-1)],
                        dtype=np.int64).reshape(v.shape)
    v = v.astype(np.int64)
    n = np.zeros(v.shape, dtype=np.int64)
    for k in range(63):
        n += (v >> k) > 0
    return n


def rsqrt_bitexact(cfg, V):
    """``(y1, h)`` with ``y1 / 2**frac · 2**-h ≈ 1/sqrt(V)`` (``frac`` of ``cfg.rsqrt``: 15,
    or 24 for an int16 output), as the hardware's rsqrt unit computes them (``h`` clamped to
    >= ``h_min``, as there). ``V`` may be Python ints (an object array): an int16 input's V
    exceeds int64; the mantissa and everything after it fit int64."""
    rs = cfg.rsqrt
    V = np.asarray(V)
    if V.dtype != object:
        V = V.astype(np.int64)
    vw, mb = cfg.v_width, rs.mant_bits
    h = (bit_length(V) + 1) >> 1
    aligned = V << (vw - 2 * h).astype(V.dtype)
    mant = aligned >> (vw - mb) if vw >= mb else aligned << (mb - vw)
    mant = mant.astype(np.int64)
    y0 = np.asarray(rs.table, dtype=np.int64)[mant >> (mb - rs.index_bits)]
    t = (y0 * y0) >> (2 * rs.frac - rs.t_frac)
    t2 = (t * mant) >> mb
    y1 = (y0 * (rs.three - t2)) >> (rs.t_frac + 1)
    assert np.all((y1 >= 0) & (y1 < 1 << rs.y_bits)), "rsqrt out of range"
    return y1, np.maximum(h, cfg.h_min)


def norm_bitexact(cfg, x, e=None):
    """int8 (int16: ``cfg.out_width``) outputs exactly as the RTL computes them.

    ``e`` (one per row): the rows carry a power-of-two exponent, row ``i`` at ``x_scale ·
    2**e[i]`` (the residual stream's row exponents). The norm is scale invariant but for its
    epsilon, which is ``eps_term >> 2·e[i]`` in that row's units (floored: eps in a row with
    ``e > 0`` is at most one unit of ``V`` low, against ``V ≥ 4**e_frac`` for any non-zero
    row), as the RTL's norm does with its ``e`` input (``NormConfig.e_max``)."""
    x = np.asarray(x, dtype=np.int64)
    L = cfg.length
    s1 = x.sum(axis=1)
    s2 = (x * x).sum(axis=1)
    d = L * s2 - s1 * s1 if cfg.CENTERED else L * s2     # < 2**57 for int16 inputs
    assert np.all(d >= 0)
    if cfg.v_width > 62:             # V = D·4**e_frac outgrows int64: Python ints
        d = d.astype(object)
    eps = cfg.eps_term if e is None else np.array(
        [cfg.eps_term >> 2 * int(k) for k in np.asarray(e).reshape(-1)],
        dtype=object if cfg.v_width > 62 else np.int64)
    V = (d << 2 * cfg.rsqrt.e_frac) + eps
    assert max(V.tolist(), default=0) < (1 << cfg.v_width), "V out of range"
    y1, h = rsqrt_bitexact(cfg, V)
    c = L * x - s1[:, None] if cfg.CENTERED else L * x
    sh = (h + cfg.rsqrt.frac - cfg.rsqrt.e_frac - cfg.n_frac)[:, None]
    assert np.all(sh >= 1)
    n = (c * y1[:, None] + (np.int64(1) << (sh - 1))) >> sh
    bound = np.int64(1) << (cfg.n_width - 1)
    assert np.all((n >= -bound) & (n < bound)), "normalised value out of range"
    acc = n * np.asarray(cfg.gamma_q, dtype=np.int64) + np.asarray(cfg.beta_q, dtype=np.int64)
    t = cfg.total_shift
    y = (acc + (np.int64(1) << (t - 1))) >> t
    return cfg.OUT.saturate(y).astype(cfg.OUT.dtype)
