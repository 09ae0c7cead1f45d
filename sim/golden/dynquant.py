"""Golden model of dynamic per-row quantisation (:mod:`llmloom.hw.blocks.dynquant`)."""

from __future__ import annotations

import numpy as np

from .requant import shift_rows

__all__ = ["row_exponents", "dynquant_bitexact"]


def row_exponents(cfg, x):
    """Each row's exponent: the smallest ``e`` in ``0..e_max`` with ``max|x| ≤ Q·2**e``
    (``e_max`` when none), as int64."""
    amax = np.abs(np.asarray(x, dtype=np.int64)).max(axis=1, initial=0)
    e = np.zeros(amax.shape, dtype=np.int64)
    for t in cfg.thresholds:
        e += amax > t
    return e


def dynquant_bitexact(cfg, x):
    """``(y, e)`` exactly as :class:`~llmloom.hw.blocks.dynquant.DynQuant` computes them:
    ``y`` int64 rows in ``cfg.OUT``'s range, ``e`` one int64 exponent per row."""
    e = row_exponents(cfg, x)
    return cfg.OUT.saturate(shift_rows(x, e, cfg.rounding)), e
