"""Golden model of the KV cache block: the :class:`~llmloom.sim.golden.layers.KVCache` of the
layer model, read out per head as attention's GEMM weights (zero-padded to ``seq``)."""

from __future__ import annotations

import numpy as np

from ...hw.numeric import INT8
from .layers import KVCache

__all__ = ["kvcache_fill", "kvcache_readout", "spill_rows"]


def kvcache_fill(cfg, k, v, cache=None):
    """The cache after appending rows ``k``, ``v`` (``ValueError`` on overflow, as the block
    refuses the append)."""
    cache = KVCache.empty(cfg.kv_width) if cache is None else cache
    return cache.append(np.asarray(k), np.asarray(v), cfg.seq)


def kvcache_readout(cfg, cache, head):
    """``(kt, vh)`` of (query) ``head``: K_hᵀ (d_head × seq) and V_h (seq × d_head) of its KV
    head ``head // kv_group``, int8, positions at or past ``len(cache)`` zero (what ``o_kt``
    and ``o_vh`` carry, padding lanes dropped)."""
    if not 0 <= head < cfg.heads:
        raise ValueError(f"head={head} is out of range; allowed: 0..{cfg.heads - 1}")
    kvh = head // cfg.kv_group
    cols = slice(kvh * cfg.d_head, (kvh + 1) * cfg.d_head)
    k = np.zeros((cfg.seq, cfg.d_head), dtype=INT8.dtype)
    v = np.zeros((cfg.seq, cfg.d_head), dtype=INT8.dtype)
    k[:len(cache)] = cache.k[:, cols]
    v[:len(cache)] = cache.v[:, cols]
    return k.T.copy(), v


def spill_rows(cfg, k, v):
    """The bytes of positions' rows ``k``, ``v`` (rows × kv_width int8) as a working cache's
    region holds them (:class:`~llmloom.hw.blocks.kvcache.KvCache` with ``spill``): per
    position its K row, then its V row as the V memory's words, ``head_tiles`` words of
    ``pv_cols`` features per KV head, zero past ``d_head``. ``uint8``, rows × spill_bytes."""
    k, v = np.asarray(k, dtype=INT8.dtype), np.asarray(v, dtype=INT8.dtype)
    n, dh, pc = len(k), cfg.d_head, cfg.pv_cols
    words = np.zeros((n, cfg.kv_heads_value, cfg.head_tiles * pc), dtype=INT8.dtype)
    words[:, :, :dh] = v.reshape(n, cfg.kv_heads_value, dh)
    return np.concatenate([k, words.reshape(n, -1)], axis=1).view(np.uint8)
