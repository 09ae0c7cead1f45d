"""Golden models of re-quantisation (int32 accumulators + bias → int8 or int16, optionally with
a per-row exponent of the accumulators' unit)."""

from __future__ import annotations

import numpy as np

from ...hw.numeric import round_shift

__all__ = ["requant_bitexact", "requant_float", "requant_dequantized", "shift_rows"]


def shift_rows(x, shifts, mode):
    """``round_shift(x[r], shifts[r], mode)`` for each row ``r`` (int64): one shift per row,
    the rounding of :func:`~llmloom.hw.numeric.round_shift` itself."""
    x = np.asarray(x, dtype=np.int64)
    shifts = np.asarray(shifts, dtype=np.int64).reshape(-1)
    out = np.empty_like(x)
    for k in np.unique(shifts):
        rows = shifts == k
        out[rows] = round_shift(x[rows], int(k), mode)
    return out


def requant_bitexact(cfg, acc, e=None):
    """Results exactly as :class:`~llmloom.hw.blocks.requant.Requant` computes them (int8, or
    int16 or int24 with ``out_width`` 16 or 24, in int32).

    ``acc + bias`` and the product with the channel's aligned multiplier are formed on int64
    (the config keeps ``|(acc + bias) · M| < 2**62``), rounded by ``cfg.rounding`` in one shift
    by the common ``s`` and saturated explicitly. With ``e`` (one exponent per row, for a
    config with ``row_exponent``) the bias is first rounded to the row's unit,
    ``round_shift(bias, e)``, and the final shift is ``s − e``.
    """
    acc = np.asarray(acc, dtype=np.int64)
    mults, shift = cfg.multipliers
    bias = np.asarray(cfg.channel_bias, dtype=np.int64)
    dtype = cfg.OUT.dtype
    if e is None:
        v = acc + bias
        p = v * np.asarray(mults, dtype=np.int64)
        y = round_shift(p, shift, cfg.rounding)
        return cfg.OUT.saturate(y).astype(dtype)
    e = np.asarray(e, dtype=np.int64).reshape(-1)
    if e.shape[0] != acc.shape[0] or (e.size and not (e.min() >= 0 and e.max() <= shift)):
        raise ValueError(f"e must hold one exponent in 0..{shift} per row")
    v = acc + shift_rows(np.broadcast_to(bias, acc.shape), e, cfg.rounding)
    p = v * np.asarray(mults, dtype=np.int64)
    y = shift_rows(p, shift - e, cfg.rounding)
    return cfg.OUT.saturate(y).astype(dtype)


def requant_float(cfg, acc, e=None):
    """The real values the accumulators stand for: ``(acc · 2**e + bias) · acc_scale`` in
    float64 (``e = 0`` without row exponents)."""
    acc = np.asarray(acc, dtype=np.float64)
    if e is not None:
        acc = acc * np.exp2(np.asarray(e, dtype=np.float64).reshape(-1, 1))
    return (acc + np.asarray(cfg.channel_bias, dtype=np.float64)) * np.asarray(
        cfg.channel_scales, dtype=np.float64)


def requant_dequantized(cfg, y):
    """Results back to reals at the output scale."""
    return np.asarray(y, dtype=np.float64) * cfg.out_scale_value
