"""Whole transformer layers: the float64 maths and the bit-exact integer model, both by walking
the architecture's description (:mod:`llmloom.hw.layers.description`), stage by stage.

Weights under the canonical names of :mod:`llmloom.sim.weights` (``x @ W`` orientation); a
LLaMA layer's are those of :meth:`llmloom.sim.checkpoint.GgufModel.layer_weights` (``ln1_g wq
wk wv wo ln2_g w_gate w_up w_down``, no biases, no norm offsets). Its float maths are those of
the float reference :mod:`llmloom.sim.golden.llama` (RMSNorm; RoPE on adjacent pairs, row
``r`` at position ``pos + r``; grouped-query attention; SiLU; the product).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ...hw.hfconfig import ROPE_BASE_DEFAULT
from ...hw.layers.config import DESCRIPTIONS
from ...hw.numeric import INT8, IntType
from .activation import activation_bitexact
from .attention import attention, attention_bitexact, attention_scores_float, softmax
from .dynquant import dynquant_bitexact
from .gemm import gemm_bitexact, group_gemm_bitexact
from .llama import rms_norm, rope_adjacent, silu
from .mul import mul_bitexact
from .norm import norm_bitexact
from .requant import requant_bitexact
from .residual import residual_bitexact, residual_rows_bitexact
from .rope import rope_bitexact

# softmax and attention, the float maths of the attention block, live in .attention (below this
# module, which composes the blocks); they stay importable from here.
__all__ = ["layernorm", "gelu_tanh", "gelu_erf", "softmax", "attention", "gpt2_block_float",
           "bert_layer_float"]

#: Layernorm epsilon of each architecture (its description's).
LN_EPS = {arch: d.eps for arch, d in DESCRIPTIONS.items()}


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
    return layer_float(x, w, "gpt2", heads)


def bert_layer_float(x, w, heads):
    """BERT encoder layer (post-norm, bidirectional)."""
    return layer_float(x, w, "bert", heads)


# ---- the whole layer: float trace, bit-exact integer model, comparison -----------------------
# (below the float references above, which stay the plain maths they were)

__all__ += ["layer_float", "layer_float_trace", "KVCache", "RowScaled", "layer_bitexact",
            "layer_bitexact_trace", "linear_acc", "dequantize", "cosine", "sqnr_db"]


@dataclasses.dataclass(frozen=True, eq=False)
class RowScaled:
    """Integer rows with one power-of-two exponent each (block floating point per token): row
    ``i``'s real value is ``values[i] · scale · 2**e[i]``, ``scale`` the tensor's static one.
    The residual stream of a layer with ``stream_exponent`` (``x``, and the output) comes and
    goes in this form; :func:`dequantize` takes it."""

    values: np.ndarray
    e: np.ndarray

    def __post_init__(self):
        v, e = np.asarray(self.values), np.asarray(self.e, dtype=np.int64).reshape(-1)
        if v.ndim != 2 or e.shape[0] != v.shape[0]:
            raise ValueError(f"RowScaled: values of shape {v.shape} and {e.shape[0]} "
                             "exponents; expected rows × features and one exponent a row")
        if e.size and e.min() < 0:
            raise ValueError("RowScaled: exponents must be >= 0")
        object.__setattr__(self, "values", v)
        object.__setattr__(self, "e", e)

    @property
    def shape(self):
        return self.values.shape

    def __len__(self):
        return self.values.shape[0]

    def __getitem__(self, rows):
        """Rows ``rows`` (a slice), with their exponents."""
        return RowScaled(self.values[rows], self.e[rows])

    @classmethod
    def concatenate(cls, parts):
        return cls(np.concatenate([p.values for p in parts]),
                   np.concatenate([p.e for p in parts]))


def _description(arch):
    if arch not in DESCRIPTIONS:
        raise ValueError(f"arch={arch!r} is not allowed; allowed: {' | '.join(DESCRIPTIONS)}")
    return DESCRIPTIONS[arch]


def layer_float(x, w, arch, heads, **kw):
    """The float64 layer of ``arch``: the output of :func:`layer_float_trace` (``kw``: its
    ``eps``, ``kv_heads``, ``rope_base``)."""
    return layer_float_trace(x, w, arch, heads, **kw)["y"]


_ACTIVATIONS = {"gelu_tanh": gelu_tanh, "gelu_erf": gelu_erf, "silu": silu}


def layer_float_trace(x, w, arch, heads, eps=None, *, kv_heads=None, rope_base=ROPE_BASE_DEFAULT,
                      pos=0):
    """Every intermediate tensor of the float64 layer, named as in
    :class:`~llmloom.hw.layers.config.ActScales` (GPT-2: ``x n1 q k v attn o r1 n2 u g f r2``),
    plus ``scores`` (heads × rows × rows, real ``q·kᵀ/sqrt(d_head)``), ``keep`` (the kept
    keys) and ``y`` (the description's output), for calibration: the description's stages in
    order, each the plain maths of its kind.

    ``kv_heads`` (default ``heads``): the K and V heads of grouped-query attention (LLaMA);
    ``rope_base`` and ``pos`` (the position of the first row; the rows attend among
    themselves): LLaMA's rotary positions."""
    desc = _description(arch)
    eps = desc.eps if eps is None else eps
    kv_heads = heads if kv_heads is None else kv_heads
    x = np.asarray(x, np.float64)
    positions = np.arange(pos, pos + x.shape[0])
    t = {"x": x}
    for st in desc.stages:
        a = [t[name] for name in st.inputs]
        if st.kind == "norm":
            if desc.norm == "rmsnorm":
                out = rms_norm(a[0], w[f"{st.params}_g"], eps)
            else:
                out = layernorm(a[0], w[f"{st.params}_g"], w[f"{st.params}_b"], eps)
        elif st.kind == "linear":
            out = a[0] @ w[st.weight]
            if st.bias in w:
                out = out + w[st.bias]
        elif st.kind == "attention":
            t["scores"], t["keep"] = attention_scores_float(a[0], a[1], heads, desc.causal,
                                                            kv_heads=kv_heads)
            out = attention(*a, heads, causal=desc.causal, kv_heads=kv_heads)
        elif st.kind == "act":
            out = _ACTIVATIONS[desc.act](a[0])
        elif st.kind == "rope":
            rows, width = a[0].shape
            dh = x.shape[1] // heads
            out = rope_adjacent(a[0].reshape(rows, width // dh, dh), positions,
                                rope_base).reshape(rows, width)
        elif st.kind == "mul":
            out = a[0] * a[1]
        else:                       # residual: branch + skip
            out = a[0] + a[1]
        t[st.output] = out
    t["y"] = t[desc.output]
    return t


class KVCache:
    """The K and V rows of the positions seen so far (int8, positions × ``kv_heads · d_head``
    each: ``d_model`` but with grouped-query attention; LLaMA's keys rotated), as the on-chip
    cache holds them. Immutable: :meth:`append` returns a new cache."""

    __slots__ = ("k", "v")

    def __init__(self, k, v):
        k, v = np.asarray(k), np.asarray(v)
        if k.ndim != 2 or k.shape != v.shape:
            raise ValueError(f"KV cache rows must be positions×features, equal for K and V; "
                             f"got {k.shape} and {v.shape}")
        self.k, self.v = k.astype(INT8.dtype), v.astype(INT8.dtype)
        self.k.setflags(write=False)
        self.v.setflags(write=False)

    @classmethod
    def empty(cls, width):
        """No positions, rows of ``width`` (``cfg.kv_width``)."""
        z = np.zeros((0, width), dtype=INT8.dtype)
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
        return f"KVCache(positions={len(self)}, width={self.k.shape[1]})"


def linear_acc(cfg, weights, name, x):
    """Linear stage ``name``'s int32 accumulators (before its re-quantiser): the GEMM of the
    int8 weights, or with grouped weights (``cfg.grouped``: W4, or W8 ``weight_groups``) the
    group-scaled sums of the codes (:func:`~llmloom.sim.golden.gemm.group_gemm_bitexact`;
    Q8_0's groups, W8, have no minimum)."""
    if cfg.grouped:
        p = cfg.numbers.params(name)
        return group_gemm_bitexact(x, weights.matrix(name), p.group_scale, p.group_min,
                                   cfg.group_shift(name), cfg.rounding)
    return gemm_bitexact(cfg.gemm(name), x, weights.matrix(name))


def _linear(cfg, weights, name, x, e=None):
    return requant_bitexact(cfg.requant(name), linear_acc(cfg, weights, name, x), e)


def layer_bitexact(cfg, weights, x_int, mode="prefill", cache=None):
    """The layer's output rows exactly as the composed RTL computes them (int8; int16 in the
    dynamic scheme, whose residual stream is wide).

    Parameters
    ----------
    cfg : LayerConfig
        Calibrated (``cfg.calibrated``).
    weights : LayerWeights
    x_int : int array, rows × d_model (int8, or int16 in the dynamic scheme)
        Input rows at scale ``cfg.x_scale``.
    mode : "prefill" | "decode"
        ``prefill``: the rows are positions ``0 .. rows−1`` of a new sequence (``cache`` must be
        None), ``rows <= seq`` (BERT: one sentence, the keys past ``rows`` masked, as a layer
        of ``seq = rows`` computes it). ``decode`` (causal layers: GPT-2, LLaMA): one row at
        position ``len(cache)`` (LLaMA: rotated by that position), attending to the cache and
        itself (``cache=None`` is the empty cache).
    cache : KVCache or None

    Returns ``(y, cache)``: rows × d_model at ``cfg.y_scale`` (int8 or int16) and the cache
    with this call's K and V rows appended. Every stage but attention is row-wise (RoPE by the
    row's position) and attention reads only the cached rows, so decode after a prefill of l−1
    tokens gives, bit for bit, the last row of a prefill of l tokens.

    With ``cfg.stream_exponent`` (LLaMA: the residual stream in block floating point per
    token, :attr:`~llmloom.hw.layers.description.LayerDescription.row_exponents`), ``x_int``
    is a :class:`RowScaled` (a plain array: every exponent 0) and so is ``y``: each residual
    add aligns its skip by the skip row's ``2**e`` and picks its output row's exponent
    (:func:`~llmloom.sim.golden.residual.residual_rows_bitexact`, whose error bound it is);
    the norms take the row's exponent for their epsilon only
    (:func:`~llmloom.sim.golden.norm.norm_bitexact`). The RTL computes the same
    (:class:`~llmloom.hw.layers.common.RowResidual`, the norms' ``e`` input).
    """
    t, cache = layer_bitexact_trace(cfg, weights, x_int, mode, cache)
    out = cfg.description.output
    dtype = IntType(cfg.width(out)).dtype
    if isinstance(t[out], RowScaled):
        return RowScaled(t[out].values.astype(dtype), t[out].e), cache
    return t[out].astype(dtype), cache


def layer_bitexact_trace(cfg, weights, x_int, mode="prefill", cache=None):
    """:func:`layer_bitexact` with every intermediate integer tensor: ``(t, cache)``, ``t``
    named as the description's tensors (GPT-2: ``x n1 q k v attn o r1 n2 u g f r2``, and in the
    dynamic scheme the quant stages' ``x_i8``...), each at its scale in
    ``cfg.numbers.scales`` (a quant stage's output at its input's, times each row's
    ``2**e``; with ``cfg.stream_exponent`` the residual stream's tensors are
    :class:`RowScaled`)."""
    if not cfg.calibrated:
        raise ValueError("the layer config is not calibrated (a shape-only config has no "
                         "numbers); calibrate it with llmloom.sim.quantize")
    weights.check(cfg)
    x = np.asarray(x_int.values if isinstance(x_int, RowScaled) else x_int)
    if x.ndim != 2 or x.shape[1] != cfg.d_model or x.shape[0] < 1:
        raise ValueError(f"x_int has shape {x.shape}; expected rows×{cfg.d_model}, rows >= 1")
    bits = cfg.width("x")
    exponents = {}      # a tensor with row exponents → its rows' exponents
    if isinstance(x_int, RowScaled):
        if not cfg.row_exponent("x"):
            raise ValueError("x_int has row exponents (RowScaled), but the layer's input has "
                             "none (stream_exponent=0)")
        if x_int.e.size and x_int.e.max() > cfg.stream_exponent:
            raise ValueError(f"x_int's row exponents must be in 0..{cfg.stream_exponent}")
        exponents["x"] = x_int.e
    elif cfg.row_exponent("x"):
        exponents["x"] = np.zeros(x.shape[0], np.int64)
    if not np.issubdtype(x.dtype, np.integer) or x.min() < -2 ** (bits - 1) or \
            x.max() >= 2 ** (bits - 1):
        raise ValueError(f"x_int must hold int{bits} values")
    x = x.astype(np.int64)
    if mode == "prefill":
        if cache is not None:
            raise ValueError("prefill starts a sequence: cache must be None")
        cache = KVCache.empty(cfg.kv_width)
    elif mode == "decode":
        if not cfg.causal:
            raise ValueError(f"decode needs a causal layer; arch={cfg.arch!r} is bidirectional")
        if x.shape[0] != 1:
            raise ValueError(f"decode takes one row; got {x.shape[0]}")
        cache = KVCache.empty(cfg.kv_width) if cache is None else cache
    else:
        raise ValueError(f"mode={mode!r} is not allowed; allowed: prefill | decode")
    pos = len(cache)
    if pos + x.shape[0] > cfg.seq:      # before any stage (RoPE's table ends there too)
        raise ValueError(f"KV cache overflow: {pos + x.shape[0]} positions exceed the "
                         f"capacity seq={cfg.seq}")

    t = {"x": x}
    # (and a quant stage's output tensor → its rows' exponents)
    for st in cfg.description.stages:
        a = [t[name] for name in st.inputs]
        if st.kind == "linear":
            out = _linear(cfg, weights, st.name, a[0], exponents.get(st.inputs[0]))
        elif st.kind == "quant":
            out, exponents[st.output] = dynquant_bitexact(cfg.stage_config(st.name), a[0])
        elif st.kind == "attention":
            cache = cache.append(a[1], a[2], cfg.seq)
            out = attention_bitexact(cfg.attention, a[0], cache.k, cache.v,
                                     q_offset=pos if cfg.causal else 0)
        elif st.kind == "norm":
            out = norm_bitexact(cfg.stage_config(st.name), a[0], exponents.get(st.inputs[0]))
        elif st.kind == "act":
            out = activation_bitexact(cfg.stage_config(st.name), a[0])
        elif st.kind == "rope":     # row r at position pos + r
            out = rope_bitexact(cfg.stage_config(st.name), a[0], pos)
        elif st.kind == "mul":
            out = mul_bitexact(cfg.stage_config(st.name), a[0], a[1])
        elif cfg.row_exponent(st.output):   # residual in block floating point per row
            skip_e = exponents.get(st.inputs[1], np.zeros(len(a[1]), np.int64))
            out, exponents[st.output] = residual_rows_bitexact(
                cfg.stage_config(st.name), a[0], a[1], skip_e, cfg.stream_exponent)
        else:                       # residual: the branch as x, the skip as r
            out = residual_bitexact(cfg.stage_config(st.name), a[0], a[1])
        t[st.output] = out
    for name in cfg.description.row_exponents:
        if cfg.row_exponent(name):
            t[name] = RowScaled(t[name], exponents[name])
    return t, cache


def dequantize(q, scale):
    """Integers back to reals: ``q · scale`` (scale per tensor, or per channel on the last
    axis), float64; a :class:`RowScaled` ``q`` times its rows' ``2**e`` too."""
    if isinstance(q, RowScaled):
        return np.asarray(q.values, np.float64) * np.asarray(scale, np.float64) * \
            np.exp2(q.e.astype(np.float64))[:, None]
    return np.asarray(q, np.float64) * np.asarray(scale, np.float64)


def cosine(a, b):
    """Cosine similarity of two tensors, flattened."""
    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na and nb else float(na == nb)


def sqnr_db(approx, ref):
    """Signal-to-quantisation-noise ratio of ``approx`` against ``ref`` in dB:
    ``10·log10(Σ ref² / Σ (approx − ref)²)`` (inf when equal)."""
    a, r = np.asarray(approx, np.float64), np.asarray(ref, np.float64)
    noise = float(np.sum((a - r) ** 2))
    signal = float(np.sum(r ** 2))
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal else -math.inf
