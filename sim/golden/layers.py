"""Float64 references of whole transformer layers: the maths the integer pipeline approximates.

Weights under the canonical names of :mod:`llmloom.sim.weights` (``x @ W`` orientation).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["layernorm", "gelu_tanh", "gelu_erf", "softmax", "attention", "gpt2_block_float",
           "bert_layer_float"]

LN_EPS = {"gpt2": 1e-5, "bert": 1e-12}


def layernorm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_erf(x):
    from math import erf
    return 0.5 * x * (1 + np.vectorize(erf)(x / math.sqrt(2)))


def softmax(s, axis=-1):
    s = s - s.max(axis=axis, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=axis, keepdims=True)


def attention(q, k, v, heads, causal, q_offset=0):
    """Multi-head scaled dot-product attention; query row r sits at position r + q_offset."""
    lq, d = q.shape
    lk = k.shape[0]
    dh = d // heads
    out = np.empty((lq, d))
    for h in range(heads):
        sl = slice(h * dh, (h + 1) * dh)
        s = q[:, sl] @ k[:, sl].T / math.sqrt(dh)
        if causal:
            mask = np.arange(lk)[None, :] > (np.arange(lq)[:, None] + q_offset)
            s = np.where(mask, -np.inf, s)
        out[:, sl] = softmax(s) @ v[:, sl]
    return out


def gpt2_block_float(x, w, heads):
    """GPT-2 block (pre-norm, causal): x + attn(ln_1(x)), then + mlp(ln_2(.))."""
    x = np.asarray(x, np.float64)
    h = layernorm(x, w["ln1_g"], w["ln1_b"], LN_EPS["gpt2"])
    q, k, v = h @ w["wq"] + w["bq"], h @ w["wk"] + w["bk"], h @ w["wv"] + w["bv"]
    x = x + attention(q, k, v, heads, causal=True) @ w["wo"] + w["bo"]
    h = layernorm(x, w["ln2_g"], w["ln2_b"], LN_EPS["gpt2"])
    return x + gelu_tanh(h @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"]


def bert_layer_float(x, w, heads):
    """BERT encoder layer (post-norm, bidirectional)."""
    x = np.asarray(x, np.float64)
    q, k, v = x @ w["wq"] + w["bq"], x @ w["wk"] + w["bk"], x @ w["wv"] + w["bv"]
    x = layernorm(x + attention(q, k, v, heads, causal=False) @ w["wo"] + w["bo"],
                  w["ln1_g"], w["ln1_b"], LN_EPS["bert"])
    return layernorm(x + gelu_erf(x @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"],
                     w["ln2_g"], w["ln2_b"], LN_EPS["bert"])
