"""Golden models of the element-wise product (two int8 or int16 tensors with their own scales →
int8 or int16)."""

from __future__ import annotations

import numpy as np

from ...hw.numeric import round_shift

__all__ = ["mul_bitexact", "mul_float"]


def mul_bitexact(cfg, a, b):
    """int8 (int16) products exactly as :class:`~llmloom.hw.blocks.mul.Mul` computes them:
    ``a·b·M`` on int64, one rounding shift by ``cfg.rounding``, explicit saturation."""
    m, shift = cfg.multiplier
    total = np.asarray(a, dtype=np.int64) * np.asarray(b, dtype=np.int64) * m
    return cfg.OUT.saturate(round_shift(total, shift, cfg.rounding)).astype(cfg.OUT.dtype)


def mul_float(cfg, a, b):
    """The real product of the dequantised inputs, float64."""
    return (np.asarray(a, dtype=np.float64) * cfg.a_scale
            * np.asarray(b, dtype=np.float64) * cfg.b_scale)
