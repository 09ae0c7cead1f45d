"""Golden models of the residual add (two int8 or int16 tensors with their own scales → int8
or int16)."""

from __future__ import annotations

import numpy as np

from ...hw.numeric import round_shift

__all__ = ["residual_bitexact", "residual_float"]


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
