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

What lives where: :class:`LayerConfig` is what the hardware *is* — architecture, dimensions,
parallelism, rounding — and optionally its *numbers*, :class:`LayerNumbers`: the activation
scales, per-channel weight scales and int32 biases (the re-quantisers' per-channel ROMs and
multipliers), layernorm gamma/beta (the norms' ROMs). A config without numbers is a real
config: every stage's block config is built from it, with nominal constants
(:func:`nominal_constants`) that give each block the shape calibration gives it, so its
structure, timing and resources are those of a calibrated layer; what needs the real
numbers (the RTL of :mod:`.layer`, the golden models) refuses it. The int8 weight
matrices, which a spatial design streams from off-chip memory, are data: they live in
:class:`LayerWeights`. :mod:`llmloom.sim.quantize` computes the numbers and the int8 weights
from float weights.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from ..blocks.activation import GeluConfig
from ..blocks.attention_config import AttentionConfig
from ..blocks.dynquant import DynQuantConfig
from ..blocks.gemm_config import GemmConfig
from ..blocks.gemv import GemvConfig
from ..blocks.norm import LayerNormConfig
from ..blocks.requant import ROUNDINGS, RequantConfig, check_scale, check_scales
from ..blocks.residual import ResidualConfig
from ..blocks.rowkernel import MAX_LENGTH, check_vector
from ..config import BlockConfig, Choice, ConfigError, Range, spec
from ..numeric import INT32
from .bert import BERT
from .description import SCHEMES
from .gpt2 import GPT2

__all__ = ["ARCHS", "DESCRIPTIONS", "ENGINES", "LN_EPS", "LINEARS", "NORMS",
           "nominal_constants", "ActScales", "LinearParams", "NormParams", "LayerNumbers",
           "LayerConfig", "LayerWeights"]

#: The architectures: name → its layer's description.
DESCRIPTIONS = {d.arch: d for d in (GPT2, BERT)}
ARCHS = tuple(DESCRIPTIONS)
#: Layernorm epsilon of each architecture (Hugging Face defaults).
LN_EPS = {arch: d.eps for arch, d in DESCRIPTIONS.items()}
#: The linear stages (each one a :class:`LinearParams` field of :class:`LayerNumbers`).
LINEARS = tuple(st.name for st in GPT2.of_kind("linear"))
assert all(tuple(st.name for st in d.of_kind("linear")) == LINEARS
           for d in DESCRIPTIONS.values())
#: The norms (each one a :class:`NormParams` field of :class:`LayerNumbers`).
NORMS = tuple(st.params for st in GPT2.of_kind("norm"))
assert all(tuple(st.params for st in d.of_kind("norm")) == NORMS for d in DESCRIPTIONS.values())
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
class LayerNumbers:
    """The numbers of a calibrated layer, computed by :mod:`llmloom.sim.quantize` from float
    weights and calibration data: every activation's scale (``scales``), each linear stage's
    per-channel weight scales and int32 bias (``q k v o f1 f2``, the stages' ``params``) and
    each norm's gamma and beta (``ln1 ln2``). Each may be given as a dict of its fields (a JSON
    file); their lengths are checked against the structure by :class:`LayerConfig`."""

    scales: ActScales
    q: LinearParams
    k: LinearParams
    v: LinearParams
    o: LinearParams
    f1: LinearParams
    f2: LinearParams
    ln1: NormParams
    ln2: NormParams

    def __post_init__(self):
        for names, cls in ((("scales",), ActScales), (LINEARS, LinearParams),
                           (NORMS, NormParams)):
            for name in names:
                if getattr(self, name) is None:
                    raise ConfigError(f"numbers.{name} is missing; allowed: {cls.__name__} or "
                                      "a dict of its fields (a calibrated layer has them all)")
                object.__setattr__(self, name, _nested(cls, getattr(self, name),
                                                       f"numbers.{name}"))

    def params(self, name):
        """The constants of a stage's ``params`` (a linear stage's or a norm's)."""
        return getattr(self, name)


def nominal_constants(kind, length):
    """The constants of a shape-only config's block of stage ``kind`` (rows of ``length``):
    the block's own defaults, except where calibration gives the hardware another shape, so
    that a layer without numbers has a calibrated one's structure, timing and resources.

    * ``linear`` (its re-quantiser): per-channel accumulator scales that vary by channel, as a
      calibrated matrix's do (within a factor of two of each other: aligned multipliers that
      differ by channel, read from a channel table when a row has more than one beat), and a
      bias (zero), as every linear stage has one.
    * ``residual``: two input scales that differ from each other and from the output's (two
      real multipliers, not shifts).
    """
    if kind == "linear":
        return {"acc_scale": tuple(2.0 ** -12 * (1.0 + 0.9 * (c % 7) / 7) for c in range(length)),
                "bias": (0,) * length, "out_scale": 0.05}
    if kind == "residual":
        return {"x_scale": 0.03, "r_scale": 0.05, "out_scale": 0.07}
    return {}



@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerConfig(BlockConfig):
    """One GPT-2 block or BERT encoder layer, W8A8: its structure, and its numbers once
    calibrated; every block config is a property.

    The fields up to ``head_engines`` are the hardware: dimensions, parallelism, rounding.
    ``numbers`` (:class:`LayerNumbers`, from :func:`llmloom.sim.quantize.calibrate`) are the
    calibrated constants. Without them the config is a shape-only one, and still a whole
    config: every stage's block config is built, with nominal constants
    (:func:`nominal_constants`) in place of the calibrated ones, which is all the RTL's
    structure, the timing and the resource models need; the input and output scales, the
    layer's RTL and the golden models need the numbers and say so.
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
    scheme: str = spec("static", Choice(SCHEMES),
                       "numerics: static (every activation int8 at one calibrated scale per "
                       "tensor) or dynamic (the residual stream int16; each linear stage reads "
                       "int8 at a per-token power-of-two scale: holds on trained weights, "
                       "whose outlier channels int8 at one scale cannot)")
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
    numbers: LayerNumbers | None = spec(
        None, None, "the calibrated constants (LayerNumbers: scales, q k v o f1 f2 weight "
        "scales and biases, ln1 ln2 gamma and beta); none: a shape-only config")

    #: The fields of the older flat form of a config file (the numbers beside the structure),
    #: which :meth:`from_dict` still reads.
    FLAT_NUMBERS = ("scales", *LINEARS, *NORMS)

    @classmethod
    def from_dict(cls, values):
        """Build from a plain dict (a JSON file). A file of the older flat form — ``scales``,
        ``q`` ... ``ln2`` beside the structure fields, as stored synthesis baselines and
        ``--meta`` files have them — is read too: those fields are the ``numbers`` (all
        ``null``: none)."""
        values = dict(values)
        flat = {k: values.pop(k) for k in cls.FLAT_NUMBERS if k in values}
        if any(v is not None for v in flat.values()):
            if values.get("numbers") is not None:
                raise ConfigError(f"numbers and {', '.join(flat)} are both given; allowed: "
                                  "one of them (numbers holds them)")
            values["numbers"] = flat
        return super().from_dict(values)

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
        nums = _nested(LayerNumbers, self.numbers, "numbers")
        object.__setattr__(self, "numbers", None if nums is None else self._checked(nums))
        # Build every block of a calibrated layer once, so that their own limits (those of
        # its constants) are reported now; the engines' of any layer.
        _ = self.stages if self.calibrated else [self.linear(name) for name in LINEARS]

    def _checked(self, nums):
        """``nums`` with every per-channel list checked against this structure (weight scales
        per channel as a tuple, biases int32)."""
        out = {}
        for name in LINEARS:
            p = nums.params(name)
            n_out = self.linear_shape(name)[1]
            ws = check_scales(f"numbers.{name}.w_scale", p.w_scale, n_out)
            if not isinstance(ws, tuple):
                ws = (ws,) * n_out
            out[name] = LinearParams(w_scale=ws, bias=self._bias(f"numbers.{name}", p.bias,
                                                                 n_out))
        for name in NORMS:
            p = nums.params(name)
            out[name] = NormParams(
                gamma=check_vector(f"numbers.{name}.gamma", p.gamma, self.d_model),
                beta=check_vector(f"numbers.{name}.beta", p.beta, self.d_model))
        return dataclasses.replace(nums, **out)

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
        """The architecture's layer in this config's numerics scheme: its stages and the
        tensors between them."""
        return DESCRIPTIONS[self.arch].for_scheme(self.scheme)

    def tensor_length(self, tensor):
        """Elements per row of ``tensor``: ``d_ff`` for the FFN's hidden tensors (FFN1's
        output and what follows it up to FFN2), else ``d_model``."""
        st = self.description.producer(tensor)
        if st is None:
            return self.d_model
        if st.kind == "linear":
            return self.linear_shape(st.name)[1]
        if st.kind in ("act", "quant"):
            return self.tensor_length(st.inputs[0])
        return self.d_model

    def width(self, tensor):
        """Bits of ``tensor`` (16 on the residual stream of the dynamic scheme, else 8)."""
        return self.description.width(tensor)

    @property
    def eps_value(self):
        return self.description.eps if self.eps is None else self.eps

    @property
    def causal(self):
        return self.description.causal

    @property
    def calibrated(self):
        """True when the config has its numbers (:class:`LayerNumbers`)."""
        return self.numbers is not None

    def _numbers(self, what):
        if self.numbers is None:
            raise ConfigError(f"{what} needs the layer's numbers, and this config has none (a "
                              "shape-only config); calibrate the layer (llmloom.sim.quantize)")
        return self.numbers

    @property
    def x_scale(self):
        """Scale of the layer input ``x`` (a calibrated config's)."""
        return self._numbers("the input scale").scales.x

    @property
    def y_scale(self):
        """Scale of the layer output (the description's output tensor: GPT-2 ``r2``, BERT
        ``n2``; a calibrated config's)."""
        return getattr(self._numbers("the output scale").scales, self.description.output)

    def _constants(self, stage, length, calibrated):
        """The constants of ``stage``'s block: ``calibrated(numbers)`` (a dict of its config
        fields), or without numbers :func:`nominal_constants`."""
        if self.numbers is None:
            return nominal_constants(stage.kind, length)
        return calibrated(self.numbers)

    def linear_shape(self, name):
        """``(in, out)`` features of a linear stage."""
        d, f = self.d_model, self.d_ff
        return {"f1": (d, f), "f2": (f, d)}.get(name, (d, d))

    def linear_io(self, name):
        """``(input tensor, output tensor)`` names of a linear stage (keys of ActScales)."""
        st = self.description[name]
        return st.inputs[0], st.output

    # Block configs ---------------------------------------------------------------------------
    @staticmethod
    def _check_linear(name):
        if name not in LINEARS:
            raise ConfigError(f"linear stage {name!r} is not allowed; allowed: "
                              f"{' | '.join(LINEARS)}")

    def _linear_fields(self, name):
        self._check_linear(name)
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
        bias, output at the stage's output scale (without numbers, nominal ones)."""
        self._check_linear(name)
        st = self.description[name]
        n = self.linear_shape(name)[1]

        desc, src = self.description, st.inputs[0]

        def calibrated(nums):
            p, s = nums.params(st.params), nums.scales
            s_in = getattr(s, desc.base(src))
            return {"acc_scale": tuple(s_in * w for w in p.w_scale), "bias": p.bias,
                    "out_scale": getattr(s, st.output)}
        # a per-token input (the dynamic scheme): its row's exponent undoes the narrowing
        exponent = ({"row_exponent": True,
                     "e_max": self.width(desc.base(src)) - self.width(src)}
                    if desc.row_exponent(src) else {})
        return RequantConfig(length=n, lanes=self.lanes, rounding=self.rounding,
                             out_width=self.width(st.output), **exponent,
                             **self._constants(st, n, calibrated))

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

        def calibrated(nums):
            p, s = nums.params(st.params), nums.scales
            return {"x_scale": getattr(s, st.inputs[0]), "out_scale": getattr(s, st.output),
                    "gamma": p.gamma, "beta": p.beta}
        return LayerNormConfig(length=self.d_model, lanes=self.lanes, eps=self.eps_value,
                               in_width=self.width(st.inputs[0]),
                               out_width=self.width(st.output),
                               **self._constants(st, self.d_model, calibrated))

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

        def calibrated(nums):
            s = nums.scales
            return {"x_scale": getattr(s, st.inputs[0]), "out_scale": getattr(s, st.output)}
        return GeluConfig(length=self.d_ff, lanes=self.lanes,
                          approximation=self.description.act.removeprefix("gelu_"),
                          out_width=self.width(st.output),
                          **self._constants(st, self.d_ff, calibrated))

    def _residual(self, name):
        st = self.description[name]

        def calibrated(nums):
            s = nums.scales
            branch, skip = st.inputs
            return {"x_scale": getattr(s, branch), "r_scale": getattr(s, skip),
                    "out_scale": getattr(s, st.output)}
        branch, skip = st.inputs
        return ResidualConfig(length=self.d_model, lanes=self.lanes, rounding=self.rounding,
                              x_width=self.width(branch), r_width=self.width(skip),
                              out_width=self.width(st.output),
                              **self._constants(st, self.d_model, calibrated))

    @property
    def residual1(self):
        """``r1 = o + x`` (branch o as the main path, input x as the skip)."""
        return self._residual("residual1")

    @property
    def residual2(self):
        """``r2 = f + skip`` with skip ``r1`` (GPT-2) or ``n1`` (BERT)."""
        return self._residual("residual2")

    def quant(self, name):
        """The per-token quantiser of ``quant`` stage ``name`` (the dynamic scheme): a wide
        tensor's rows to int8, one power-of-two exponent per row."""
        st = self.description[name]
        if st.kind != "quant":
            raise ConfigError(f"stage {name!r} is a {st.kind} stage, not a quant stage")
        return DynQuantConfig(length=self.tensor_length(st.inputs[0]), lanes=self.lanes,
                              in_width=self.width(st.inputs[0]), out_width=self.width(st.output),
                              rounding=self.rounding)

    def stage_config(self, name):
        """The block config of stage ``name``: ``(engine, requant)`` for a linear stage (the
        engine of :meth:`linear`), else the block's own config."""
        st = self.description[name]
        if st.kind == "linear":
            return self.linear(name), self.requant(name)
        if st.kind == "quant":
            return self.quant(name)
        return getattr(self, name)

    @property
    def attention(self):
        """The multi-head attention (its per-head blocks are its properties)."""
        st = self.description["attention"]

        def calibrated(nums):
            s = nums.scales
            q, k, v = (getattr(s, t) for t in st.inputs)
            return {"q_scale": q, "k_scale": k, "v_scale": v, "score_scale": s.score,
                    "out_scale": getattr(s, st.output)}
        return AttentionConfig(d_model=self.d_model, heads=self.heads, seq=self.seq,
                               causal=self.causal, lanes=self.lanes,
                               qk_rows=self.qk_rows, qk_cols=self.qk_cols,
                               pv_rows=self.pv_rows, pv_cols=self.pv_cols,
                               rounding=self.rounding, head_engines=self.head_engines,
                               **self._constants(st, self.seq, calibrated))

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
    :class:`LayerNumbers` (``cfg.numbers.q.bias``, ...), next to the per-channel weight
    scales.
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
