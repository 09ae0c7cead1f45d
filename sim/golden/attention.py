"""Golden models of multi-head attention: the bit-exact composition of the block goldens, the
float64 maths, the calibration of its scales from data, and the error bound between the two.

The bit-exact model calls the blocks' own golden models on the block configs that
:class:`~llmloom.hw.blocks.attention_config.AttentionConfig` derives, head by head:
``gemm_bitexact → requant_bitexact → softmax_bitexact → gemm_bitexact → requant_bitexact``.
It re-implements no arithmetic, so it is exactly what the composed RTL must produce.

Error bound (:func:`attention_error_bound`), for every output element of a row with ``n`` kept
keys, against the float64 attention of the dequantised inputs, when no score saturates::

    |y·out_scale − y_float| <= out_scale·(0.5 + 2**(w − 17))
                              + max|v|·((exp(score_scale) − 1) + n·SOFTMAX_PROB_ERROR)

Derivation: scores are rounded to ``score_scale`` (each off by at most half a step, ε, plus the
multiplier's ~2**-16 relative error), which moves every float probability by a factor within
``exp(±2ε)``, so ``Σ|Δp_j|·|v_j| <= (exp(2ε) − 1)·max|v|``; the softmax block's 10-bit
probabilities are within ``SOFTMAX_PROB_ERROR`` of the float softmax of the rounded scores
(``hw/blocks/softmax.py``), which costs at most ``n·SOFTMAX_PROB_ERROR·max|v|``; the final
re-quantisation adds half a step (plus the multiplier's error on at most ``2**(w − 1)`` steps
of the ``w``-bit output, ``out_width``, which with 16-bit multipliers is below ``2**(w − 17)`` of
a step: ``2**-9`` for int8, half a step for int16). Measured errors are far inside it (the terms are
worst cases that random data does not align).
"""

from __future__ import annotations

import math

import numpy as np

from ...hw.numeric import IntType, QuantParams
from .gemm import gemm_bitexact
from .requant import requant_bitexact
from .softmax import causal_keep, softmax_bitexact

__all__ = ["attention_bitexact", "attention_float", "attention_scores_float",
           "calibrate_attention", "attention_error_bound", "SOFTMAX_PROB_ERROR", "attention",
           "softmax"]

#: |p/1023 − p_float| of the softmax block (its stated bound, ``hw/blocks/softmax.py``).
SOFTMAX_PROB_ERROR = 0.0008


# ---- the float maths (also the layers' float references, llmloom.sim.golden.layers) ----------
def softmax(s, axis=-1):
    s = s - s.max(axis=axis, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=axis, keepdims=True)


def attention(q, k, v, heads, causal, q_offset=0, kv_heads=None):
    """Multi-head scaled dot-product attention; query row r sits at position r + q_offset.
    Grouped-query with ``kv_heads`` (None: ``heads``): K and V have ``kv_heads`` heads and
    query head h reads KV head ``h // (heads / kv_heads)``."""
    lq, d = q.shape
    lk = k.shape[0]
    dh = d // heads
    group = heads // (kv_heads or heads)
    out = np.empty((lq, d))
    for h in range(heads):
        sl = slice(h * dh, (h + 1) * dh)
        kv = slice(h // group * dh, (h // group + 1) * dh)
        s = q[:, sl] @ k[:, kv].T / math.sqrt(dh)
        if causal:
            mask = np.arange(lk)[None, :] > (np.arange(lq)[:, None] + q_offset)
            s = np.where(mask, -np.inf, s)
        out[:, sl] = softmax(s) @ v[:, kv]
    return out


# ---- the block's golden models -----------------------------------------------------------------
def _inputs(cfg, q, k, v, q_offset):
    q, k, v = (np.asarray(t) for t in (q, k, v))
    for name, t, width in (("q", q, cfg.d_model), ("k", k, cfg.kv_width),
                           ("v", v, cfg.kv_width)):
        if t.ndim != 2 or t.shape[1] != width:
            raise ValueError(f"{name} has shape {t.shape}; expected rows×{width}")
    if k.shape != v.shape:
        raise ValueError(f"k has shape {k.shape} but v has {v.shape}; expected the same")
    cfg.check_call(q.shape[0], k.shape[0], q_offset)
    return q, k, v


def _padded(t, rows):
    """``t`` with zero rows appended up to ``rows`` (the RTL's K/V buffers hold ``seq``
    positions; masked keys never reach the output, whatever these rows hold)."""
    out = np.zeros((rows, t.shape[1]), dtype=np.int64)
    out[:t.shape[0]] = t
    return out


def attention_bitexact(cfg, q, k, v, q_offset=0):
    """The attention output exactly as the composed RTL computes it (int8, or int16 with
    ``cfg.out_width`` 16).

    Parameters
    ----------
    cfg : AttentionConfig
    q : int8 array, rows × d_model
        Queries at positions ``q_offset, q_offset + 1, ...``.
    k, v : int8 arrays, ctx × kv_width
        Keys and values of positions ``0 .. ctx − 1`` (``kv_heads`` heads: query head h
        reads KV head ``h // kv_group``) (``ctx <= seq``; see the contract in
        :mod:`llmloom.hw.blocks.attention_config`: bidirectional, ``ctx`` = rows, the keys
        past ``ctx`` masked, so the result is that of a config with ``seq = ctx``).
    q_offset : int
        Position of the first query (causal only).

    Returns int8 (int16) rows × d_model: head h in columns ``h·d_head .. (h+1)·d_head − 1``.
    """
    q, k, v = _inputs(cfg, q, k, v, q_offset)
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not np.issubdtype(t.dtype, np.integer) or not (t.size == 0 or (
                t.min() >= -128 and t.max() <= 127)):
            raise ValueError(f"{name} must hold int8 values")
    dh = cfg.d_head
    qk, sreq, smax = cfg.qk_gemm, cfg.score_requant, cfg.softmax_block
    pv, oreq = cfg.pv_gemm, cfg.out_requant
    # the softmax's port: the causal offset, or the key count of the padding mask
    port = {"offset": q_offset} if cfg.causal else {"keys": k.shape[0]}
    kp, vp = _padded(k, cfg.seq), _padded(v, cfg.seq)
    out = np.empty((q.shape[0], cfg.d_model), dtype=oreq.OUT.dtype)
    for h in range(cfg.heads):
        cols = slice(h * dh, (h + 1) * dh)
        g = h // cfg.kv_group
        kv = slice(g * dh, (g + 1) * dh)
        scores = requant_bitexact(sreq, gemm_bitexact(qk, q[:, cols], kp[:, kv].T))
        probs = softmax_bitexact(smax, scores, **port)
        out[:, cols] = requant_bitexact(oreq, gemm_bitexact(pv, probs, vp[:, kv]))
    return out


def attention_float(cfg, q, k, v, q_offset=0):
    """The float64 attention of the dequantised inputs (:func:`attention`): the maths that
    :func:`attention_bitexact` approximates. Keys beyond ``ctx`` do not exist here at all."""
    q, k, v = _inputs(cfg, q, k, v, q_offset)
    return attention(q * cfg.q_scale, k * cfg.k_scale, v * cfg.v_scale, cfg.heads, cfg.causal,
                     q_offset, cfg.kv_heads_value)


def attention_scores_float(q, k, heads, causal, q_offset=0, kv_heads=None):
    """The real scores ``q_h·k_hᵀ/sqrt(d_head)`` of every head (heads × rows × ctx) and the
    boolean mask of kept keys (rows × ctx), for calibration (``kv_heads``: as
    :func:`attention`)."""
    q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
    dh = q.shape[1] // heads
    group = heads // (kv_heads or heads)
    s = np.stack([q[:, h * dh:(h + 1) * dh]
                  @ k[:, h // group * dh:(h // group + 1) * dh].T / math.sqrt(dh)
                  for h in range(heads)])
    keep = causal_keep(q.shape[0], k.shape[0], causal, q_offset)
    return s, keep


def calibrate_attention(cfg, q, k, v, q_offset=0):
    """``cfg`` with ``score_scale`` and ``out_scale`` calibrated on int8 inputs: the largest
    magnitude of the kept float scores onto 127, and of the float output onto the largest
    output value (127, or 32767 with ``cfg.out_width`` 16)."""
    q, k, v = _inputs(cfg, q, k, v, q_offset)
    s, keep = attention_scores_float(q * cfg.q_scale, k * cfg.k_scale, cfg.heads, cfg.causal,
                                     q_offset, cfg.kv_heads_value)
    kept = s[:, keep]
    score = float(QuantParams.calibrate(kept).scale) if kept.size else None
    y = attention_float(cfg, q, k, v, q_offset)
    out = float(QuantParams.calibrate(y, IntType(cfg.out_width)).scale)
    return cfg.replace(score_scale=score, out_scale=out)


def attention_error_bound(cfg, v, rows, ctx, q_offset=0):
    """Per-row bound (a rows × 1 array, real units) on ``|y·out_scale − attention_float|``
    for inputs whose scores do not saturate (see the module text)."""
    n = causal_keep(rows, ctx, cfg.causal, q_offset).sum(axis=1)[:, None]
    vmax = float(np.max(np.abs(np.asarray(v, np.float64)))) * cfg.v_scale
    return (cfg.out_scale_value * (0.5 + 2.0 ** (cfg.out_width - 17))
            + vmax * (math.expm1(cfg.score_scale_value) + n * SOFTMAX_PROB_ERROR))
