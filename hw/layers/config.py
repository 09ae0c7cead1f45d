"""The configuration of one transformer layer: the single source of truth of its integer
numerics, from which the exact config of every block of every stage is derived.

What the layer computes — its stages, the tensors between them — is its architecture's
description (:mod:`.gpt2`, :mod:`.bert`; :mod:`.description`); every int8 tensor between
stages has one per-tensor scale in :class:`ActScales`, named after it, and each stage's block
config takes the scales of the tensors it reads and writes.

Every linear stage is a linear engine — the output-stationary :class:`GemmConfig` or the decode
:class:`GemvConfig`, chosen by ``engine`` (int8 × int8 → int32 either way, weights in×out) —
followed by a :class:`RequantConfig` with a **per-output-channel** accumulator scale
``s_in · w_scale[c]`` and the int32 bias ``round(b[c] / (s_in · w_scale[c]))``. Residual
adds take the branch as ``x`` (main path) and the skip as ``r``.

What lives where: the config holds what shapes the hardware's constants — dimensions,
parallelism, activation scales, per-channel weight scales, int32 biases (the re-quantiser's
per-channel ROM, like its multipliers), layernorm gamma/beta (the norm's ROMs). The int8 weight
matrices, which a spatial design streams from off-chip memory, are data: they live in
:class:`LayerWeights`. :mod:`llmloom.sim.quantize` builds both from float weights.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from ..blocks.activation import GeluConfig
from ..blocks.attention_config import AttentionConfig
from ..blocks.gemm_config import GemmConfig
from ..blocks.gemv import GemvConfig
from ..blocks.norm import LayerNormConfig
from ..blocks.requant import ROUNDINGS, RequantConfig, check_scale, check_scales
from ..blocks.residual import ResidualConfig
from ..blocks.rowkernel import MAX_LENGTH, check_vector
from ..config import BlockConfig, Choice, ConfigError, Range, spec
from ..numeric import INT32
from .bert import BERT
from .gpt2 import GPT2

__all__ = ["ARCHS", "DESCRIPTIONS", "ENGINES", "LN_EPS", "LINEARS", "ActScales", "LinearParams",
           "NormParams", "LayerConfig", "LayerWeights"]

#: The architectures: name → its layer's description.
DESCRIPTIONS = {d.arch: d for d in (GPT2, BERT)}
ARCHS = tuple(DESCRIPTIONS)
#: Layernorm epsilon of each architecture (Hugging Face defaults).
LN_EPS = {arch: d.eps for arch, d in DESCRIPTIONS.items()}
#: The linear stages (each one a :class:`LinearParams` field of :class:`LayerConfig`).
LINEARS = tuple(st.name for st in GPT2.of_kind("linear"))
assert all(tuple(st.name for st in d.of_kind("linear")) == LINEARS
           for d in DESCRIPTIONS.values())
#: The engines a linear stage can run on (:attr:`LayerConfig.engine`).
ENGINES = ("gemm", "gemv")


def _scale_field(doc):
    return dataclasses.field(metadata={"allowed": None, "doc": doc})


@dataclasses.dataclass(frozen=True, kw_only=True)
class ActScales:
    """The per-tensor scale of every int8 activation of the layer (real = int · scale).

    ``y`` (the layer output) is ``r2`` for GPT-2 and ``n2`` for BERT
    (:attr:`LayerConfig.y_scale`). The probabilities' scale is fixed (1/255), not listed.
    """

    x: float = _scale_field("layer input")
    n1: float = _scale_field("LN1 output (GPT-2: before attention; BERT: after residual 1)")
    q: float = _scale_field("queries")
    k: float = _scale_field("keys (and the K cache)")
    v: float = _scale_field("values (and the V cache)")
    score: float = _scale_field("attention scores q·kᵀ/sqrt(d_head), softmax input")
    attn: float = _scale_field("attention output (all heads)")
    o: float = _scale_field("output projection")
    r1: float = _scale_field("first residual sum")
    n2: float = _scale_field("LN2 output (GPT-2: before the FFN; BERT: the layer output)")
    u: float = _scale_field("FFN1 output (GELU input)")
    g: float = _scale_field("GELU output")
    f: float = _scale_field("FFN2 output")
    r2: float = _scale_field("second residual sum (GPT-2: the layer output)")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, check_scale(f"scales.{f.name}",
                                                         getattr(self, f.name)))


@dataclasses.dataclass(frozen=True, kw_only=True)
class LinearParams:
    """Hardware constants of one linear stage: the per-output-channel weight scales and the
    int32 bias (already in accumulator units). Lengths are checked by :class:`LayerConfig`."""

    w_scale: tuple = dataclasses.field(repr=False)
    bias: tuple | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NormParams:
    """A layernorm's gamma and beta (floats; the norm block quantises them)."""

    gamma: tuple | None = dataclasses.field(default=None, repr=False)
    beta: tuple | None = dataclasses.field(default=None, repr=False)


def _nested(cls, value, name):
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, dict):
        try:
            return cls(**value)
        except TypeError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    raise ConfigError(f"{name}={type(value).__name__} is not allowed; allowed: "
                      f"{cls.__name__} or a dict of its fields")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerConfig(BlockConfig):
    """One GPT-2 block or BERT encoder layer, W8A8; every block config is a property.

    ``scales``, the six :class:`LinearParams` and the two :class:`NormParams` are filled by
    :func:`llmloom.sim.quantize.quantize_layer`; without them (``None``) the config still
    gives the linear engines' configs (dimensions and parallelism, all the performance model
    needs), and the stages that need constants raise :class:`ConfigError` naming what is
    missing.
    """

    arch: str = spec("gpt2", Choice(ARCHS), "gpt2: pre-norm, causal; bert: post-norm, "
                     "bidirectional")
    d_model: int = spec(64, Range(1, MAX_LENGTH), "model width d")
    heads: int = spec(4, Range(1, 4096), "attention heads; divides d_model")
    d_ff: int = spec(256, Range(1, 65536), "FFN width")
    seq: int = spec(16, Range(1, MAX_LENGTH), "GPT-2: KV cache capacity (maximum context); "
                    "BERT: the longest sentence (a tensor of 1..seq rows)")
    lanes: int = spec(4, Range(1, 64), "elements per beat of every stream; divides d_model, "
                      "d_ff and d_head")
    eps: float | None = spec(None, None, "layernorm epsilon; none: the arch's (gpt2 1e-5, "
                             "bert 1e-12)")
    rounding: str = spec("half_even", Choice(ROUNDINGS),
                         "rounding of every re-quantisation and residual")
    engine: str = spec("gemm", Choice(ENGINES),
                       "which engine every linear stage (q, k, v, o, f1, f2) uses: gemm the "
                       "output-stationary array (prefill: each weight reused over a token "
                       "tile), gemv the decode engine (each weight used once per token, every "
                       "multiplier busy on one token; prefill rows go through one at a time)")
    linear_rows: int = spec(4, Range(1, 64), "rows of the q, k, v, o arrays (gemm: token "
                            "tile; gemv: inner-dimension lanes, a multiple of lanes)")
    linear_cols: int = spec(4, Range(1, 64), "columns of the q, k, v, o arrays (output "
                            "features at once)")
    ffn_rows: int = spec(4, Range(1, 64), "rows of the FFN1 and FFN2 arrays (gemm: token "
                         "tile; gemv: inner-dimension lanes, a multiple of lanes)")
    ffn_cols: int = spec(4, Range(1, 64), "columns of the FFN1 and FFN2 arrays (output "
                         "features at once)")
    qk_rows: int = spec(4, Range(1, 64), "rows of the Q·Kᵀ array")
    qk_cols: int = spec(4, Range(1, 64), "columns of the Q·Kᵀ array")
    pv_rows: int = spec(4, Range(1, 64), "rows of the P·V array")
    pv_cols: int = spec(4, Range(1, 64), "columns of the P·V array")
    head_engines: int = spec(1, Range(1, 4096), "attention heads computed at once (each "
                             "engine its own Q·Kᵀ and P·V arrays and KV cache bank); divides "
                             "heads: 1 = heads in sequence, heads = all in parallel")
    scales: ActScales | None = spec(None, None, "activation scales (ActScales)")
    q: LinearParams | None = spec(None, None, "Q projection constants")
    k: LinearParams | None = spec(None, None, "K projection constants")
    v: LinearParams | None = spec(None, None, "V projection constants")
    o: LinearParams | None = spec(None, None, "output projection constants")
    f1: LinearParams | None = spec(None, None, "FFN1 constants")
    f2: LinearParams | None = spec(None, None, "FFN2 constants")
    ln1: NormParams | None = spec(None, None, "first layernorm's gamma and beta")
    ln2: NormParams | None = spec(None, None, "second layernorm's gamma and beta")

    def _validate(self):
        d, f = self.d_model, self.d_ff
        if d % self.heads:
            raise ConfigError(f"heads={self.heads} does not divide d_model={d}; allowed: a "
                              "divisor of d_model")
        if self.heads % self.head_engines:
            raise ConfigError(f"head_engines={self.head_engines} does not divide "
                              f"heads={self.heads}; allowed: a divisor of heads")
        for name, n in (("d_model", d), ("d_ff", f), ("d_head", self.d_head)):
            if n % self.lanes:
                raise ConfigError(f"lanes={self.lanes} does not divide {name}={n}; allowed: "
                                  f"a common divisor of d_model, d_ff and d_head")
        if self.engine == "gemv":
            # the GEMV writes whole input beats into words of `rows` activations
            for name in ("linear_rows", "ffn_rows"):
                rows = getattr(self, name)
                if rows % self.lanes:
                    raise ConfigError(f"{name}={rows} is not a multiple of lanes={self.lanes}; "
                                      "allowed with engine=gemv: a multiple of lanes")
        if self.eps is not None:
            if isinstance(self.eps, bool) or not isinstance(self.eps, numbers.Real) or not (
                    math.isfinite(self.eps) and self.eps >= 0):
                raise ConfigError(f"eps={self.eps!r} is not allowed; allowed: finite and >= 0")
            object.__setattr__(self, "eps", float(self.eps))
        object.__setattr__(self, "scales", _nested(ActScales, self.scales, "scales"))
        for name in LINEARS:
            p = _nested(LinearParams, getattr(self, name), name)
            if p is not None:
                n_out = self.linear_shape(name)[1]
                ws = check_scales(f"{name}.w_scale", p.w_scale, n_out)
                if not isinstance(ws, tuple):
                    ws = (ws,) * n_out
                p = LinearParams(w_scale=ws, bias=self._bias(name, p.bias, n_out))
            object.__setattr__(self, name, p)
        for name in ("ln1", "ln2"):
            p = _nested(NormParams, getattr(self, name), name)
            if p is not None:
                p = NormParams(gamma=check_vector(f"{name}.gamma", p.gamma, d),
                               beta=check_vector(f"{name}.beta", p.beta, d))
            object.__setattr__(self, name, p)
        # Build every block once, so that their own limits are reported now.
        _ = self.stages if self.calibrated else [self.linear(name) for name in LINEARS]

    @staticmethod
    def _bias(name, bias, n_out):
        if bias is None:
            return None
        items = list(np.asarray(bias).reshape(-1)) if not isinstance(bias, tuple) else bias
        if len(items) != n_out:
            raise ConfigError(f"{name}.bias has {len(items)} entries; expected {n_out} (one per "
                              "output channel)")
        for n, b in enumerate(items):
            if isinstance(b, bool) or not isinstance(b, numbers.Integral | np.integer) or not (
                    INT32.min <= int(b) <= INT32.max):
                raise ConfigError(f"{name}.bias[{n}]={b!r} is not allowed; allowed: an int32 "
                                  "integer")
        return tuple(int(b) for b in items)

    # Derived ---------------------------------------------------------------------------------
    @property
    def d_head(self):
        return self.d_model // self.heads

    @property
    def description(self):
        """The architecture's layer: its stages and the tensors between them."""
        return DESCRIPTIONS[self.arch]

    @property
    def eps_value(self):
        return self.description.eps if self.eps is None else self.eps

    @property
    def causal(self):
        return self.description.causal

    @property
    def calibrated(self):
        """True when every constant is present (scales, linear and norm parameters)."""
        return self.scales is not None and all(
            getattr(self, n) is not None for n in (*LINEARS, "ln1", "ln2"))

    @property
    def y_scale(self):
        """Scale of the layer output (the description's output tensor: GPT-2 ``r2``, BERT
        ``n2``)."""
        return getattr(self._scales, self.description.output)

    @property
    def _scales(self):
        if self.scales is None:
            raise ConfigError("scales are not set; calibrate the layer (llmloom.sim.quantize."
                              "quantize_layer)")
        return self.scales

    def _require(self, name):
        p = getattr(self, name)
        if p is None:
            raise ConfigError(f"{name} parameters are not set; calibrate the layer "
                              "(llmloom.sim.quantize.quantize_layer)")
        return p

    def linear_shape(self, name):
        """``(in, out)`` features of a linear stage."""
        d, f = self.d_model, self.d_ff
        return {"f1": (d, f), "f2": (f, d)}.get(name, (d, d))

    def linear_io(self, name):
        """``(input tensor, output tensor)`` names of a linear stage (keys of ActScales)."""
        st = self.description[name]
        return st.inputs[0], st.output

    # Block configs ---------------------------------------------------------------------------
    def _linear_fields(self, name):
        if name not in LINEARS:
            raise ConfigError(f"linear stage {name!r} is not allowed; allowed: "
                              f"{' | '.join(LINEARS)}")
        k, n = self.linear_shape(name)
        ffn = name in ("f1", "f2")
        return dict(rows=self.ffn_rows if ffn else self.linear_rows,
                    cols=self.ffn_cols if ffn else self.linear_cols,
                    k=k, n=n, lanes=self.lanes, a_width=8, w_width=8)

    def gemm(self, name):
        """The output-stationary GEMM of a linear stage (``q k v o f1 f2``), whatever
        :attr:`engine` is: the array the stage would be with ``engine="gemm"``, with the same
        ``rows``×``cols`` multipliers, k, n and lanes. The golden model computes every linear
        stage through it (both engines give the same integers); the stage's own engine is
        :meth:`linear`."""
        return GemmConfig(**self._linear_fields(name))

    def linear(self, name):
        """The engine config of a linear stage (``q k v o f1 f2``): a :class:`GemmConfig` when
        ``engine="gemm"``, a :class:`GemvConfig` when ``engine="gemv"``, from the same fields
        (``linear_rows``/``linear_cols`` for q, k, v, o; ``ffn_rows``/``ffn_cols`` for f1,
        f2; k and n the stage's in and out features; ``lanes``; int8 × int8)."""
        cls = GemvConfig if self.engine == "gemv" else GemmConfig
        return cls(**self._linear_fields(name))

    @property
    def linear_macs_per_cycle(self):
        """``{stage: peak multiply-accumulates per cycle}`` of the six linear stages: the
        engine's ``rows × cols`` multipliers, which both engines have (the GEMV's are all busy
        on one token, the GEMM's on a token tile of ``rows``)."""
        return {name: self.linear(name).peak_macs_per_cycle for name in LINEARS}

    def requant(self, name):
        """The re-quantisation after a linear stage: per-channel ``s_in·w_scale[c]``, the int32
        bias, output at the stage's output scale."""
        p = self._require(name)
        src, dst = self.linear_io(name)
        s_in = getattr(self._scales, src)
        return RequantConfig(length=self.linear_shape(name)[1], lanes=self.lanes,
                             acc_scale=tuple(s_in * w for w in p.w_scale), bias=p.bias,
                             out_scale=getattr(self._scales, dst), rounding=self.rounding)

    q_gemm = property(lambda self: self.gemm("q"), doc="Q projection GEMM (d×d)")
    k_gemm = property(lambda self: self.gemm("k"), doc="K projection GEMM (d×d)")
    v_gemm = property(lambda self: self.gemm("v"), doc="V projection GEMM (d×d)")
    o_gemm = property(lambda self: self.gemm("o"), doc="output projection GEMM (d×d)")
    f1_gemm = property(lambda self: self.gemm("f1"), doc="FFN1 GEMM (d×d_ff)")
    f2_gemm = property(lambda self: self.gemm("f2"), doc="FFN2 GEMM (d_ff×d)")
    q_requant = property(lambda self: self.requant("q"), doc="Q re-quantisation")
    k_requant = property(lambda self: self.requant("k"), doc="K re-quantisation")
    v_requant = property(lambda self: self.requant("v"), doc="V re-quantisation")
    o_requant = property(lambda self: self.requant("o"), doc="output projection requant")
    f1_requant = property(lambda self: self.requant("f1"), doc="FFN1 re-quantisation")
    f2_requant = property(lambda self: self.requant("f2"), doc="FFN2 re-quantisation")

    def _norm(self, name):
        st = self.description[name]
        p = self._require(st.params)
        s = self._scales
        return LayerNormConfig(length=self.d_model, lanes=self.lanes,
                               x_scale=getattr(s, st.inputs[0]), eps=self.eps_value,
                               out_scale=getattr(s, st.output), gamma=p.gamma, beta=p.beta)

    @property
    def norm1(self):
        """LN1: of the input (GPT-2) or of the first residual sum (BERT)."""
        return self._norm("norm1")

    @property
    def norm2(self):
        """LN2: of the first residual sum (GPT-2) or of the second (BERT)."""
        return self._norm("norm2")

    @property
    def gelu(self):
        """GELU table: GPT-2's tanh formula, or BERT's exact (erf) GELU (the description's
        ``act``)."""
        st = self.description["gelu"]
        s = self._scales
        return GeluConfig(length=self.d_ff, lanes=self.lanes, x_scale=getattr(s, st.inputs[0]),
                          out_scale=getattr(s, st.output),
                          approximation=self.description.act.removeprefix("gelu_"))

    def _residual(self, name):
        st = self.description[name]
        s = self._scales
        branch, skip = st.inputs
        return ResidualConfig(length=self.d_model, lanes=self.lanes,
                              x_scale=getattr(s, branch), r_scale=getattr(s, skip),
                              out_scale=getattr(s, st.output), rounding=self.rounding)

    @property
    def residual1(self):
        """``r1 = o + x`` (branch o as the main path, input x as the skip)."""
        return self._residual("residual1")

    @property
    def residual2(self):
        """``r2 = f + skip`` with skip ``r1`` (GPT-2) or ``n1`` (BERT)."""
        return self._residual("residual2")

    def stage_config(self, name):
        """The block config of stage ``name``: ``(engine, requant)`` for a linear stage (the
        engine of :meth:`linear`), else the block's own config."""
        st = self.description[name]
        if st.kind == "linear":
            return self.linear(name), self.requant(name)
        return getattr(self, name)

    @property
    def attention(self):
        """The multi-head attention (its per-head blocks are its properties)."""
        s = self._scales
        return AttentionConfig(d_model=self.d_model, heads=self.heads, seq=self.seq,
                               causal=self.causal, q_scale=s.q, k_scale=s.k, v_scale=s.v,
                               score_scale=s.score, out_scale=s.attn, lanes=self.lanes,
                               qk_rows=self.qk_rows, qk_cols=self.qk_cols,
                               pv_rows=self.pv_rows, pv_cols=self.pv_cols,
                               rounding=self.rounding, head_engines=self.head_engines)

    @property
    def attention_shape(self):
        """The attention's dimensions and parallelism without its scales (default ones): what
        shapes its hardware and timing, for an uncalibrated config too."""
        return AttentionConfig(d_model=self.d_model, heads=self.heads, seq=self.seq,
                               causal=self.causal, lanes=self.lanes, qk_rows=self.qk_rows,
                               qk_cols=self.qk_cols, pv_rows=self.pv_rows,
                               pv_cols=self.pv_cols, rounding=self.rounding,
                               head_engines=self.head_engines)

    @property
    def stages(self):
        """``[(name, config)]`` in dataflow order; a linear stage is ``(name, (engine,
        requant))`` with the engine config of :meth:`linear`."""
        return [(st.name, self.stage_config(st.name)) for st in self.description.stages]

    @property
    def kv_cache_bytes(self):
        """On-chip K and V cache: ``seq`` positions × ``d_model`` int8, twice."""
        return 2 * self.seq * self.d_model


@dataclasses.dataclass(frozen=True, eq=False)
class LayerWeights:
    """The int8 weight matrices of one layer (``x @ W`` orientation: in × out), read-only.

    Biases are not here: they are per-channel constants of the re-quantisers and live in
    :class:`LayerConfig` (``cfg.q.bias``, ...), next to the per-channel weight scales.
    """

    wq: np.ndarray
    wk: np.ndarray
    wv: np.ndarray
    wo: np.ndarray
    w1: np.ndarray
    w2: np.ndarray

    def __post_init__(self):
        for f in dataclasses.fields(self):
            a = np.asarray(getattr(self, f.name))
            if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer) or (
                    a.size and (a.min() < -128 or a.max() > 127)):
                raise ConfigError(f"weight {f.name} must be a 2-D array of int8 values; got "
                                  f"{a.dtype} {a.shape}")
            a = a.astype(np.int8)
            a.setflags(write=False)
            object.__setattr__(self, f.name, a)

    def matrix(self, name):
        """The weights of a linear stage (``q k v o f1 f2``)."""
        return getattr(self, GPT2[name].weight)

    def check(self, cfg):
        """Raise :class:`ConfigError` unless every matrix has the shape ``cfg`` needs."""
        for name in LINEARS:
            want = cfg.linear_shape(name)
            got = self.matrix(name).shape
            if got != want:
                raise ConfigError(f"weight {GPT2[name].weight} has shape {got[0]}×{got[1]}; "
                                  f"expected {want[0]}×{want[1]} for this layer config")
        return self

    def to_dict(self):
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
