"""Golden models of the residual add (two int8 or int16 tensors with their own scales → int8
or int16)."""

from __future__ import annotations

import numpy as np

from ...hw.numeric import round_shift

__all__ = ["residual_bitexact", "residual_rows_bitexact", "residual_float", "exponents_of"]


def residual_bitexact(cfg, x, r):
    """int8 (int16) sums exactly as :class:`~llmloom.hw.blocks.residual.Residual` computes
    them: both products by the aligned multipliers and their sum on int64, one rounding shift
    by ``cfg.rounding``, explicit saturation."""
    mx, mr, shift = cfg.multipliers
    total = np.asarray(x, dtype=np.int64) * mx + np.asarray(r, dtype=np.int64) * mr
    return cfg.OUT.saturate(round_shift(total, shift, cfg.rounding)).astype(cfg.OUT.dtype)


def residual_float(cfg, x, r):
    """The real sum of the dequantised inputs, float64."""
    return (np.asarray(x, dtype=np.float64) * cfg.x_scale
            + np.asarray(r, dtype=np.float64) * cfg.r_scale)


def exponents_of(v, q, e_max):
    """Each row's exponent: the smallest ``e`` in ``0..e_max`` with ``max |v| ≤ q·2**e``
    (``e_max`` when none), as :class:`~llmloom.hw.blocks.dynquant.DynQuant` picks it: one
    comparison per candidate against the row's largest magnitude."""
    amax = np.abs(np.asarray(v, dtype=np.int64)).max(axis=1, initial=0)
    e = np.zeros(amax.shape, dtype=np.int64)
    for k in range(e_max):
        e += amax > q << k
    return e


def residual_rows_bitexact(cfg, x, r, r_e, e_max):
    """``(y, e)``: the sum of branch ``x`` and skip ``r`` in block floating point per row
    (the residual stream's row exponents, ``LayerConfig.stream_exponent = e_max``).

    The skip's row ``i`` is at ``r_scale · 2**r_e[i]``; the output's at ``out_scale ·
    2**e[i]``. Steps: ``total = x·Mx + (r·Mr << r_e)`` on int64 (the skip aligned to the
    branch), ``v = round_shift(total, s)`` — the sum at the output's base scale, saturated to
    ``out_width + e_max`` bits — then, as the per-token quantiser
    (:func:`~llmloom.sim.golden.dynquant.dynquant_bitexact`) does, ``e`` the smallest in
    ``0..e_max`` with ``max |v| ≤ Q·2**e`` and ``y = saturate(round_shift(v, e))``.

    Error bound, where nothing saturates (``max |v| ≤ Q·2**e_max``): ``|y·2**e − (x·x_scale
    + r·r_scale·2**r_e)/out_scale| ≤ 1/2 + 2**(e−1) + δ``, half a step of the base scale
    (the first rounding) plus half a step of the row's own (the shift by ``e``), ``δ`` the
    multipliers' error (``(|x|·|Mx − x_scale/out_scale·2**s| + …)·2**-s``, as
    :func:`residual_bitexact`'s). A row keeps at least ``Q/2`` steps of its largest value
    once ``e > 0``.
    """
    mx, mr, shift = cfg.multipliers
    r_e = np.asarray(r_e, dtype=np.int64).reshape(-1, 1)
    total = np.asarray(x, dtype=np.int64) * mx + \
        (np.asarray(r, dtype=np.int64) * mr << r_e)
    bound = 1 << (cfg.OUT.width - 1 + e_max)
    v = np.clip(round_shift(total, shift, cfg.rounding), -bound, bound - 1)
    e = exponents_of(v, cfg.OUT.max, e_max)
    y = np.empty_like(v)
    for k in np.unique(e):
        rows = e == k
        y[rows] = round_shift(v[rows], int(k), cfg.rounding)
    return cfg.OUT.saturate(y).astype(cfg.OUT.dtype), e
