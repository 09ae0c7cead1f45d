"""Golden models of the row softmax: float64 maths and the bit-exact integer model.

The bit-exact model repeats :class:`~llmloom.hw.blocks.softmax.Softmax`'s steps beat by beat
(the online max and rescaled sum depend on how a row is cut into beats of ``lanes``), with the
tables and constants imported from the hardware module.
"""

from __future__ import annotations

import numpy as np

from ...hw.blocks.softmax import (
    MANT_BITS,
    OUT_LEVELS,
    R_BITS,
    RECIP_FRAC,
    RECIP_INDEX_BITS,
    RECIP_TABLE,
)

__all__ = ["causal_keep", "softmax_float", "softmax_bitexact", "reciprocal_bitexact"]


def causal_keep(rows, length, causal, offset=0, keys=None):
    """Boolean ``rows × length``: key j of row r is kept (``j <= r + offset`` if causal;
    otherwise ``j < keys``, every key when ``keys`` is None)."""
    j = np.arange(length)[None, :]
    r = np.arange(rows)[:, None]
    if causal:
        return j <= r + offset
    return np.broadcast_to(j < (length if keys is None else keys), (rows, length)).copy()


def softmax_float(x, x_scale, causal=False, offset=0, keys=None):
    """Softmax of ``x · x_scale`` over each row's kept keys in float64; masked keys get 0."""
    z = np.asarray(x, dtype=np.float64) * x_scale
    keep = causal_keep(*z.shape, causal, offset, keys)
    zmax = np.where(keep, z, -np.inf).max(axis=1, keepdims=True)
    e = np.where(keep, np.exp(np.where(keep, z - zmax, 0.0)), 0.0)
    return e / e.sum(axis=1, keepdims=True)


def reciprocal_bitexact(cfg, s):
    """``R ≈ OUT_LEVELS · 2**prob_shift / s`` (``OUT_LEVELS`` = 1023,
    :mod:`llmloom.hw.blocks.softmax`) as the hardware's reciprocal unit computes it
    (normalise, table, one Newton step, rounding shift), for sums ``2**exp_frac <= s <
    2**sum_width``."""
    s = np.asarray(s, dtype=np.int64)
    sw = cfg.sum_width
    nb = np.frexp(s.astype(np.float64))[1].astype(np.int64)     # exact: s < 2**53
    aligned = s << (sw - nb)
    mant = aligned >> (sw - MANT_BITS) if sw >= MANT_BITS else aligned << (MANT_BITS - sw)
    idx = (mant >> (MANT_BITS - 1 - RECIP_INDEX_BITS)) & ((1 << RECIP_INDEX_BITS) - 1)
    y0 = np.asarray(RECIP_TABLE, dtype=np.int64)[idx]
    t = (mant * y0) >> MANT_BITS
    y1 = (y0 * ((2 << RECIP_FRAC) - t)) >> RECIP_FRAC
    sh = nb - (cfg.prob_shift - RECIP_FRAC)
    return (OUT_LEVELS * y1 + (np.int64(1) << (sh - 1))) >> sh


def softmax_bitexact(cfg, x, offset=None, keys=None):
    """10-bit probabilities (scale 1/1023, in uint16) exactly as the RTL computes them; ``x`` is one
    tensor (its row r has the causal limit ``r + causal_offset``). With ``cfg.runtime_offset`` the
    offset is the ``offset`` argument (the value on the block's ``offset`` port; default 0);
    otherwise ``offset`` must be None. With ``cfg.runtime_keys`` every row keeps the keys
    ``j < keys`` (the ``keys`` port; default: all; 0 acts as 1, as in the RTL); otherwise
    ``keys`` must be None."""
    x = np.asarray(x, dtype=np.int64)
    rows, length = x.shape
    ln = cfg.lanes
    table = np.asarray(cfg.exp_table, dtype=np.int64)
    if getattr(cfg, "runtime_offset", False):
        offset = 0 if offset is None else int(offset)
        if offset < 0:
            raise ValueError(f"offset={offset} must be >= 0")
    elif offset is not None:
        raise ValueError("offset is given by the config (causal_offset) unless runtime_offset")
    else:
        offset = cfg.causal_offset
    if getattr(cfg, "runtime_keys", False):
        keys = length if keys is None else int(keys)
        if keys < 0:
            raise ValueError(f"keys={keys} must be >= 0")
        keys = max(keys, 1)
    elif keys is not None:
        raise ValueError("keys is for a config with runtime_keys (the key padding mask)")
    keep = causal_keep(rows, length, cfg.causal, offset, keys)
    M = np.full(rows, -128, dtype=np.int64)
    S = np.zeros(rows, dtype=np.int64)
    F = cfg.exp_frac
    half = np.int64(1) << (F - 1)
    for b in range(cfg.beats):
        q = x[:, b * ln:(b + 1) * ln]
        k = keep[:, b * ln:(b + 1) * ln]
        m_prev = M if b else np.full(rows, -128, dtype=np.int64)
        m_new = np.maximum(m_prev, np.where(k, q, -128).max(axis=1))
        e = np.where(k, table[np.where(k, m_new[:, None] - q, 0)], 0)
        if b:
            S = ((S * table[m_new - m_prev] + half) >> F) + e.sum(axis=1)
        else:
            S = e.sum(axis=1)
        M = m_new
    assert S.min() >= (1 << F) and S.max() < (1 << cfg.sum_width), "sum out of range"
    R = reciprocal_bitexact(cfg, S)
    assert np.all(R < 1 << R_BITS), "reciprocal out of range"
    e = np.where(keep, table[np.where(keep, M[:, None] - x, 0)], 0)
    p = (e * R[:, None] + (np.int64(1) << (cfg.prob_shift - 1))) >> cfg.prob_shift
    return np.minimum(p, OUT_LEVELS).astype(cfg.OUT.dtype)
