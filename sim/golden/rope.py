"""Golden models of the RoPE block (:mod:`llmloom.hw.blocks.rope`).

The bit-exact model reads the very table the RTL's ROM holds
(:attr:`~llmloom.hw.blocks.rope.RopeConfig.table`) and rounds and saturates as the RTL does.
The float64 model rotates the dequantised input with angles computed here independently (through
:func:`llmloom.sim.golden.llama.rope_adjacent`, the LLaMA reference's own RoPE), so the
error-bound test compares two implementations of the maths, not one with itself.
"""

from __future__ import annotations

import numpy as np

from ...hw.numeric import Rounding, round_shift
from .llama import rope_adjacent

__all__ = ["rope_bitexact", "rope_float", "row_positions"]


def row_positions(cfg, rows, pos):
    """Positions of ``rows`` rows of one tensor starting at ``pos``; a ValueError unless they
    all lie in the table (``pos + rows <= cfg.positions``)."""
    pos = int(pos)
    if pos < 0 or pos + rows > cfg.positions:
        raise ValueError(f"rows at positions {pos}..{pos + rows - 1} do not fit the table; "
                         f"allowed: 0..{cfg.positions - 1} (config positions)")
    return np.arange(pos, pos + rows)


def rope_bitexact(cfg, x, pos=0):
    """int8 results exactly as the RTL gives them: ``x`` (rows × length integers of
    ``cfg.IN``: int8, or int16 with ``in_width`` 16), row ``r`` at position ``pos + r``."""
    x = np.asarray(x, dtype=np.int64)
    rows = x.shape[0]
    p = row_positions(cfg, rows, pos)
    C, S = cfg.table
    c, s = C[p][:, None, :], S[p][:, None, :]                 # rows × 1 × d_head/2
    pairs = x.reshape(rows, cfg.heads, cfg.d_head // 2, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    y = np.stack([x0 * c - x1 * s, x0 * s + x1 * c], axis=-1).reshape(rows, cfg.length)
    return cfg.OUT.saturate(round_shift(y, cfg.frac_bits, Rounding(cfg.rounding))).astype(
        cfg.OUT.dtype)


def rope_float(cfg, x, pos=0):
    """The float64 rotation of the dequantised input ``x · x_scale`` (real values)."""
    x = np.asarray(x, dtype=np.float64) * cfg.x_scale
    rows = x.shape[0]
    p = row_positions(cfg, rows, pos)
    heads = x.reshape(rows, cfg.heads, cfg.d_head)
    return rope_adjacent(heads, p, cfg.base).reshape(rows, cfg.length)
