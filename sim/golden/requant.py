"""Golden models of re-quantisation (int32 accumulators + bias → int8)."""

from __future__ import annotations

import numpy as np

from ...hw.numeric import round_shift

__all__ = ["requant_bitexact", "requant_float", "requant_dequantized"]


def requant_bitexact(cfg, acc):
    """int8 results exactly as :class:`~llmloom.hw.blocks.requant.Requant` computes them.

    ``acc + bias`` and the product with the channel's aligned multiplier are formed on int64
    (the config keeps ``|(acc + bias) · M| < 2**62``), rounded by ``cfg.rounding`` in one shift
    by the common ``s`` and saturated explicitly.
    """
    acc = np.asarray(acc, dtype=np.int64)
    mults, shift = cfg.multipliers
    v = acc + np.asarray(cfg.channel_bias, dtype=np.int64)
    p = v * np.asarray(mults, dtype=np.int64)
    y = round_shift(p, shift, cfg.rounding)
    return cfg.OUT.saturate(y).astype(np.int8)


def requant_float(cfg, acc):
    """The real values the accumulators stand for: ``(acc + bias) · acc_scale`` in float64."""
    acc = np.asarray(acc, dtype=np.float64)
    return (acc + np.asarray(cfg.channel_bias, dtype=np.float64)) * np.asarray(
        cfg.channel_scales, dtype=np.float64)


def requant_dequantized(cfg, y):
    """int8 results back to reals at the output scale."""
    return np.asarray(y, dtype=np.float64) * cfg.out_scale_value
