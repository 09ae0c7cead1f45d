"""Float64 references of whole transformer layers: the maths the integer pipeline approximates.

Weights under the canonical names of :mod:`llmloom.sim.weights` (``x @ W`` orientation).
"""

from __future__ import annotations

import math

import numpy as np

from .activation import activation_bitexact
from .attention import attention, attention_bitexact, attention_scores_float, softmax
from .gemm import gemm_bitexact
from .norm import norm_bitexact
from .requant import requant_bitexact
from .residual import residual_bitexact

# softmax and attention, the float maths of the attention block, live in .attention (below this
# module, which composes the blocks); they stay importable from here.
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


# ---- the whole layer: float trace, bit-exact integer model, comparison -----------------------
# (below the float references above, which stay the plain maths they were)

__all__ += ["layer_float", "layer_float_trace", "KVCache", "layer_bitexact", "dequantize",
            "cosine"]


def layer_float(x, w, arch, heads):
    """The float64 layer of ``arch`` (``gpt2_block_float`` or ``bert_layer_float``)."""
    if arch == "gpt2":
        return gpt2_block_float(x, w, heads)
    if arch == "bert":
        return bert_layer_float(x, w, heads)
    raise ValueError(f"arch={arch!r} is not allowed; allowed: gpt2 | bert")


def layer_float_trace(x, w, arch, heads, eps=None):
    """Every intermediate tensor of the float64 layer, named as in
    :class:`~llmloom.hw.layers.config.ActScales` (``x n1 q k v attn o r1 n2 u g f r2``), plus
    ``scores`` (heads × rows × rows, real ``q·kᵀ/sqrt(d_head)``), ``keep`` (the kept keys) and
    ``y``. The same maths as :func:`gpt2_block_float` / :func:`bert_layer_float`, step by
    step (a test holds ``y`` equal to them), for calibration."""
    x = np.asarray(x, np.float64)
    eps = LN_EPS[arch] if eps is None else eps
    t = {"x": x}
    causal = arch == "gpt2"
    a_in = layernorm(x, w["ln1_g"], w["ln1_b"], eps) if causal else x
    if causal:
        t["n1"] = a_in
    t["q"], t["k"], t["v"] = (a_in @ w[f"w{n}"] + w[f"b{n}"] for n in "qkv")
    t["scores"], t["keep"] = attention_scores_float(t["q"], t["k"], heads, causal)
    t["attn"] = attention(t["q"], t["k"], t["v"], heads, causal=causal)
    t["o"] = t["attn"] @ w["wo"] + w["bo"]
    t["r1"] = x + t["o"]
    if causal:
        t["n2"] = f_in = layernorm(t["r1"], w["ln2_g"], w["ln2_b"], eps)
        skip = t["r1"]
    else:
        t["n1"] = f_in = skip = layernorm(t["r1"], w["ln1_g"], w["ln1_b"], eps)
    t["u"] = f_in @ w["w1"] + w["b1"]
    t["g"] = (gelu_tanh if causal else gelu_erf)(t["u"])
    t["f"] = t["g"] @ w["w2"] + w["b2"]
    t["r2"] = skip + t["f"]
    if not causal:
        t["n2"] = layernorm(t["r2"], w["ln2_g"], w["ln2_b"], eps)
    t["y"] = t["r2"] if causal else t["n2"]
    return t


class KVCache:
    """The K and V rows of the positions seen so far (int8, positions × d_model each), as
    the on-chip cache holds them. Immutable: :meth:`append` returns a new cache."""

    __slots__ = ("k", "v")

    def __init__(self, k, v):
        k, v = np.asarray(k), np.asarray(v)
        if k.ndim != 2 or k.shape != v.shape:
            raise ValueError(f"KV cache rows must be positions×d_model, equal for K and V; "
                             f"got {k.shape} and {v.shape}")
        self.k, self.v = k.astype(np.int8), v.astype(np.int8)
        self.k.setflags(write=False)
        self.v.setflags(write=False)

    @classmethod
    def empty(cls, d_model):
        z = np.zeros((0, d_model), dtype=np.int8)
        return cls(z, z)

    def __len__(self):
        return self.k.shape[0]

    def append(self, k, v, capacity):
        """A cache with rows ``k``, ``v`` added; more than ``capacity`` positions is an
        overflow (``ValueError``), as in the hardware."""
        n = len(self) + np.asarray(k).shape[0]
        if n > capacity:
            raise ValueError(f"KV cache overflow: {n} positions exceed the capacity "
                             f"seq={capacity}")
        return KVCache(np.concatenate([self.k, k]), np.concatenate([self.v, v]))

    def __repr__(self):
        return f"KVCache(positions={len(self)}, d_model={self.k.shape[1]})"


def _linear(cfg, weights, name, x):
    return requant_bitexact(cfg.requant(name),
                            gemm_bitexact(cfg.gemm(name), x, weights.matrix(name)))


def layer_bitexact(cfg, weights, x_int, mode="prefill", cache=None):
    """The layer's int8 output rows exactly as the composed RTL computes them.

    Parameters
    ----------
    cfg : LayerConfig
        Calibrated (``cfg.calibrated``).
    weights : LayerWeights
    x_int : int8 array, rows × d_model
        Input rows at scale ``cfg.scales.x``.
    mode : "prefill" | "decode"
        ``prefill``: the rows are positions ``0 .. rows−1`` of a new sequence (``cache`` must be
        None); GPT-2 needs ``rows <= seq``, BERT ``rows == seq``. ``decode`` (GPT-2 only): one
        row at position ``len(cache)``, attending to the cache and itself (``cache=None`` is
        the empty cache).
    cache : KVCache or None

    Returns ``(y, cache)``: int8 rows × d_model at ``cfg.y_scale`` and the cache with this
    call's K and V rows appended. Every stage but attention is row-wise and attention reads
    only the cached rows, so decode after a prefill of l−1 tokens gives, bit for bit, the last
    row of a prefill of l tokens.
    """
    if not cfg.calibrated:
        raise ValueError("layer config is not calibrated; build it with "
                         "llmloom.sim.quantize.quantize_layer")
    weights.check(cfg)
    x = np.asarray(x_int)
    if x.ndim != 2 or x.shape[1] != cfg.d_model or x.shape[0] < 1:
        raise ValueError(f"x_int has shape {x.shape}; expected rows×{cfg.d_model}, rows >= 1")
    if not np.issubdtype(x.dtype, np.integer) or x.min() < -128 or x.max() > 127:
        raise ValueError("x_int must hold int8 values")
    x = x.astype(np.int64)
    if mode == "prefill":
        if cache is not None:
            raise ValueError("prefill starts a sequence: cache must be None")
        cache = KVCache.empty(cfg.d_model)
    elif mode == "decode":
        if cfg.arch != "gpt2":
            raise ValueError(f"decode needs a causal layer; arch={cfg.arch!r} is bidirectional")
        if x.shape[0] != 1:
            raise ValueError(f"decode takes one row; got {x.shape[0]}")
        cache = KVCache.empty(cfg.d_model) if cache is None else cache
    else:
        raise ValueError(f"mode={mode!r} is not allowed; allowed: prefill | decode")
    pos = len(cache)

    if cfg.arch == "gpt2":
        n1 = norm_bitexact(cfg.norm1, x)
        q, k, v = (_linear(cfg, weights, n, n1) for n in "qkv")
        cache = cache.append(k, v, cfg.seq)
        a = attention_bitexact(cfg.attention, q, cache.k, cache.v, q_offset=pos)
        r1 = residual_bitexact(cfg.residual1, _linear(cfg, weights, "o", a), x)
        n2 = norm_bitexact(cfg.norm2, r1)
        g = activation_bitexact(cfg.gelu, _linear(cfg, weights, "f1", n2))
        y = residual_bitexact(cfg.residual2, _linear(cfg, weights, "f2", g), r1)
    else:
        q, k, v = (_linear(cfg, weights, n, x) for n in "qkv")
        cache = cache.append(k, v, cfg.seq)
        a = attention_bitexact(cfg.attention, q, cache.k, cache.v, q_offset=0)
        r1 = residual_bitexact(cfg.residual1, _linear(cfg, weights, "o", a), x)
        n1 = norm_bitexact(cfg.norm1, r1)
        g = activation_bitexact(cfg.gelu, _linear(cfg, weights, "f1", n1))
        r2 = residual_bitexact(cfg.residual2, _linear(cfg, weights, "f2", g), n1)
        y = norm_bitexact(cfg.norm2, r2)
    return y.astype(np.int8), cache


def dequantize(q, scale):
    """Integers back to reals: ``q · scale`` (scale per tensor, or per channel on the last
    axis), float64."""
    return np.asarray(q, np.float64) * np.asarray(scale, np.float64)


def cosine(a, b):
    """Cosine similarity of two tensors, flattened."""
    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na and nb else float(na == nb)
