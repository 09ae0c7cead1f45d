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

A layer's numbers follow its description: :class:`ActScales` has one scale per tensor of any
architecture's description, and a layer gives those of its own (the others are ``None``);
:class:`LayerNumbers` and :class:`LayerWeights` likewise hold the linear stages' constants and
matrices of the layer's own linear stages (``q k v o f1 f2`` for GPT-2 and BERT, ``q k v o
gate up down`` for LLaMA), and :class:`LayerConfig` checks that they are exactly those.

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

from ..blocks.activation import GeluConfig, SiluConfig
from ..blocks.attention_config import AttentionConfig, HeadGeometry
from ..blocks.dynquant import DynQuantConfig
from ..blocks.gemm_config import GROUP_SCALE_BITS, GROUP_TABLES, WEIGHT_GROUP, GemmConfig
from ..blocks.gemv import GemvConfig
from ..blocks.mul import MulConfig
from ..blocks.norm import LayerNormConfig, RMSNormConfig
from ..blocks.requant import ROUNDINGS, RequantConfig, check_scale, check_scales
from ..blocks.residual import ResidualConfig
from ..blocks.rope import RopeConfig
from ..blocks.rowkernel import MAX_LENGTH, check_vector
from ..config import BlockConfig, Choice, ConfigError, Range, spec
from ..hfconfig import ROPE_BASE_DEFAULT
from ..numeric import INT32
from .bert import BERT
from .description import SCHEMES
from .gpt2 import GPT2
from .llama import LLAMA

__all__ = ["ARCHS", "DESCRIPTIONS", "ENGINES", "MAX_STREAM_EXPONENT", "LN_EPS", "LINEARS",
           "ALL_LINEARS", "NORMS", "WEIGHTS", "WEIGHT_BITS", "WEIGHT_GROUP",
           "GROUP_SCALE_BITS", "nominal_constants", "ActScales", "LinearParams",
           "NormParams", "LayerNumbers", "LayerConfig", "LayerWeights"]

#: The architectures: name → its layer's description.
DESCRIPTIONS = {d.arch: d for d in (GPT2, BERT, LLAMA)}
ARCHS = tuple(DESCRIPTIONS)
#: Norm epsilon of each architecture (Hugging Face defaults).
LN_EPS = {arch: d.eps for arch, d in DESCRIPTIONS.items()}
#: The linear stages of GPT-2 and BERT (a layer's own: :attr:`LayerConfig.linears`).
LINEARS = tuple(st.name for st in GPT2.of_kind("linear"))
assert tuple(st.name for st in BERT.of_kind("linear")) == LINEARS
#: Every architecture's linear stages (each one a :class:`LinearParams` field of
#: :class:`LayerNumbers`), in order of first appearance.
ALL_LINEARS = tuple(dict.fromkeys(st.name for d in DESCRIPTIONS.values()
                                  for st in d.of_kind("linear")))
#: A linear stage's weight matrix (:class:`LayerWeights` field), the same in every description.
WEIGHTS = {st.name: st.weight for d in DESCRIPTIONS.values() for st in d.of_kind("linear")}
assert all(WEIGHTS[st.name] == st.weight for d in DESCRIPTIONS.values()
           for st in d.of_kind("linear"))
#: The norms (each one a :class:`NormParams` field of :class:`LayerNumbers`).
NORMS = tuple(st.params for st in GPT2.of_kind("norm"))
assert all(tuple(st.params for st in d.of_kind("norm")) == NORMS for d in DESCRIPTIONS.values())
#: The largest ``stream_exponent`` (a sum then has 16 + 15 bits before its row's shift).
MAX_STREAM_EXPONENT = 15
#: The weight widths a layer can have (:attr:`LayerConfig.weight_bits`).
WEIGHT_BITS = (8, 4)
#: W4 weights: inputs per group (:data:`WEIGHT_GROUP`) and bits of a group's scale and minimum
#: (:data:`GROUP_SCALE_BITS`) live with the GEMM that computes them (``hw.blocks.gemm_config``).
#: The engines a linear stage can run on (:attr:`LayerConfig.engine`).
ENGINES = ("gemm", "gemv")


def _scale_field(doc):
    return dataclasses.field(default=None, metadata={"allowed": None, "doc": doc})


@dataclasses.dataclass(frozen=True, kw_only=True)
class ActScales:
    """The per-tensor scale of every activation of the layer (real = int · scale): one field
    per tensor of any architecture's description, plus ``score``; a layer gives those of its
    own description's tensors (:meth:`LayerConfig.scale_names`) and leaves the others
    ``None``.

    ``y`` (the layer output) is ``r2`` for GPT-2 and LLaMA and ``n2`` for BERT
    (:attr:`LayerConfig.y_scale`). The probabilities' scale is fixed (1/1023), not listed; a
    ``quant`` stage's output is at its input's scale times each row's ``2**e``, not listed.
    """

    x: float | None = _scale_field("layer input")
    n1: float | None = _scale_field("norm1 output (GPT-2, LLaMA: before attention; BERT: "
                                    "after residual 1)")
    q: float | None = _scale_field("queries")
    k: float | None = _scale_field("keys (GPT-2, BERT: and the K cache)")
    v: float | None = _scale_field("values (and the V cache)")
    qr: float | None = _scale_field("LLaMA: rotated queries")
    kr: float | None = _scale_field("LLaMA: rotated keys (and the K cache)")
    score: float | None = _scale_field("attention scores q·kᵀ/sqrt(d_head), softmax input")
    attn: float | None = _scale_field("attention output (all heads)")
    o: float | None = _scale_field("output projection")
    r1: float | None = _scale_field("first residual sum")
    n2: float | None = _scale_field("norm2 output (GPT-2, LLaMA: before the FFN; BERT: the "
                                    "layer output)")
    u: float | None = _scale_field("GPT-2, BERT: FFN1 output (GELU input)")
    g: float | None = _scale_field("GPT-2, BERT: GELU output")
    hg: float | None = _scale_field("LLaMA: gate projection output (SiLU input)")
    hu: float | None = _scale_field("LLaMA: up projection output")
    s: float | None = _scale_field("LLaMA: SiLU output")
    p: float | None = _scale_field("LLaMA: SiLU(gate) ⊙ up, the down projection's input")
    f: float | None = _scale_field("FFN2 (LLaMA: down projection) output")
    r2: float | None = _scale_field("second residual sum (GPT-2, LLaMA: the layer output)")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if getattr(self, f.name) is not None:
                object.__setattr__(self, f.name, check_scale(f"scales.{f.name}",
                                                             getattr(self, f.name)))

    def given(self):
        """``{tensor: scale}`` of the scales given (not ``None``), in field order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}


@dataclasses.dataclass(frozen=True, kw_only=True)
class LinearParams:
    """Hardware constants of one linear stage: the per-output-channel weight scales and the
    int32 bias (already in accumulator units). Lengths are checked by :class:`LayerConfig`."""

    w_scale: tuple = dataclasses.field(repr=False)
    bias: tuple | None = dataclasses.field(default=None, repr=False)
    #: Grouped weights (``LayerConfig.grouped``): each group's integer scale and (W4 only)
    #: minimum, ``in/WEIGHT_GROUP`` rows × ``out`` (see :meth:`LayerConfig.group_shift`);
    #: ``None`` where the weights have no such table (W8 per channel; Q8_0's minimum).
    group_scale: tuple | None = dataclasses.field(default=None, repr=False)
    group_min: tuple | None = dataclasses.field(default=None, repr=False)


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


def _missing(name, cls):
    return ConfigError(f"numbers.{name} is missing; allowed: {cls.__name__} or a dict of its "
                       "fields (a calibrated layer has them all)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerNumbers:
    """The numbers of a calibrated layer, computed by :mod:`llmloom.sim.quantize` from float
    weights and calibration data: every activation's scale (``scales``), each linear stage's
    per-channel weight scales and int32 bias (the stages' ``params``: ``q k v o f1 f2`` for
    GPT-2 and BERT, ``q k v o gate up down`` for LLaMA; the other architectures' are ``None``)
    and each norm's gamma and beta (``ln1 ln2``). Each may be given as a dict of its fields (a
    JSON file); which are needed, and their lengths, are checked against the layer by
    :class:`LayerConfig`."""

    scales: ActScales | None = None
    q: LinearParams | None = None
    k: LinearParams | None = None
    v: LinearParams | None = None
    o: LinearParams | None = None
    f1: LinearParams | None = None
    f2: LinearParams | None = None
    gate: LinearParams | None = None
    up: LinearParams | None = None
    down: LinearParams | None = None
    ln1: NormParams | None = None
    ln2: NormParams | None = None

    def __post_init__(self):
        if self.scales is None:
            raise _missing("scales", ActScales)
        for names, cls in ((("scales",), ActScales), (ALL_LINEARS, LinearParams),
                           (NORMS, NormParams)):
            for name in names:
                object.__setattr__(self, name, _nested(cls, getattr(self, name),
                                                       f"numbers.{name}"))

    def params(self, name):
        """The constants of a stage's ``params`` (a linear stage's or a norm's)."""
        return getattr(self, name)

    def to_dict(self):
        """A plain dict (a JSON file) of what is given: the ``None`` fields and scales of
        other architectures are left out."""
        out = {"scales": self.scales.given()}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "scales" and value is not None:
                out[f.name] = dataclasses.asdict(value)
        return out


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
class LayerConfig(HeadGeometry, BlockConfig):
    """One GPT-2 block, BERT encoder layer or LLaMA-class block (int8 or grouped 4-bit
    weights, ``weight_bits``; int8, int9 or int10 activations into the engines, the
    description's ``narrow``; the residual stream per ``scheme``): its structure, and its
    numbers once calibrated; every block config is a property (:meth:`stage_config`).

    The fields up to ``head_engines`` are the hardware: dimensions, parallelism, rounding.
    ``numbers`` (:class:`LayerNumbers`, from :func:`llmloom.sim.quantize.calibrate`) are the
    calibrated constants. Without them the config is a shape-only one, and still a whole
    config: every stage's block config is built, with nominal constants
    (:func:`nominal_constants`) in place of the calibrated ones, which is all the RTL's
    structure, the timing and the resource models need; the input and output scales, the
    layer's RTL and the golden models need the numbers and say so.
    """

    arch: str = spec("gpt2", Choice(ARCHS), "gpt2: pre-norm, causal; bert: post-norm, "
                     "bidirectional; llama: pre-norm rmsnorm, rotary positions, grouped-query "
                     "attention, SwiGLU, no biases, causal")
    d_model: int = spec(64, Range(1, MAX_LENGTH), "model width d")
    heads: int = spec(4, Range(1, 4096), "attention heads; divides d_model")
    kv_heads: int = spec(0, Range(0, 4096), "key/value heads (grouped-query attention: query "
                         "head h reads KV head h // (heads / kv_heads)); divides heads; 0: "
                         "heads; other than heads for llama only")
    d_ff: int = spec(256, Range(1, 65536), "FFN width")
    seq: int = spec(16, Range(1, MAX_LENGTH), "GPT-2, LLaMA: KV cache capacity (maximum "
                    "context; LLaMA: the positions of the RoPE tables, >= 2); BERT: the longest "
                    "sentence (a tensor of 1..seq rows)")
    lanes: int = spec(4, Range(1, 64), "elements per beat of every stream; divides d_model, "
                      "d_ff and d_head; llama: even (RoPE rotates pairs within a beat)")
    eps: float | None = spec(None, None, "norm epsilon; none: the arch's (gpt2 1e-5, "
                             "bert 1e-12, llama 1e-5)")
    rope_base: float = spec(ROPE_BASE_DEFAULT, None, "RoPE frequency base, finite > 1 (llama only; "
                            "LLaMA 10000, SmolLM2 100000)")
    rounding: str = spec("half_even", Choice(ROUNDINGS),
                         "rounding of every re-quantisation and residual")
    scheme: str = spec("static", Choice(SCHEMES),
                       "numerics: static (every activation int8 at one calibrated scale per "
                       "tensor) or dynamic (the residual stream int16; each linear stage reads "
                       "int8 at a per-token power-of-two scale: holds on trained weights, "
                       "whose outlier channels int8 at one scale cannot)")
    weight_bits: int = spec(8, Choice(WEIGHT_BITS),
                            "8: int8 weights, one scale per output channel; 4: 4-bit codes "
                            "0..15 with an integer scale and minimum per group of 32 inputs "
                            "of each output channel (GGUF's Q4_1 codes kept exactly); 4 runs "
                            "on the GEMM engine (not the GEMV)")
    weight_groups: bool = spec(False, None,
                               "weight_bits 8 only: int8 codes -127..127 with an integer scale "
                               "per group of 32 inputs of each output channel (GGUF's Q8_0, "
                               "no minimum) instead of one scale per output channel; "
                               "runs on the GEMM engine (W4 weights are always grouped)")
    stream_exponent: int = spec(0, Range(0, MAX_STREAM_EXPONENT),
                                "E: the residual stream's input and sums carry one "
                                "power-of-two exponent per row, 0..E (block floating point "
                                "per token, for the few tokens whose activations are thousands "
                                "of times the others'); 0: off; llama only")
    engine: str = spec("gemm", Choice(ENGINES),
                       "which engine every linear stage (q, k, v, o, f1, f2; llama: gate, "
                       "up, down for f1, f2) uses: gemm the "
                       "output-stationary array (prefill: each weight reused over a token "
                       "tile), gemv the decode engine (each weight used once per token, every "
                       "multiplier busy on one token; prefill rows go through one at a time)")
    linear_rows: int = spec(4, Range(1, 64), "rows of the q, k, v, o arrays (gemm: token "
                            "tile; gemv: inner-dimension lanes, a multiple of lanes)")
    linear_cols: int = spec(4, Range(1, 64), "columns of the q, k, v, o arrays (output "
                            "features at once)")
    ffn_rows: int = spec(4, Range(1, 64), "rows of the FFN1 and FFN2 arrays (llama: gate, up "
                         "and down; gemm: token tile; gemv: inner-dimension lanes, a multiple "
                         "of lanes)")
    ffn_cols: int = spec(4, Range(1, 64), "columns of the FFN1 and FFN2 arrays (llama: gate, "
                         "up and down; output features at once)")
    dsp_packing: bool = spec(False, None, "engine=gemm: every linear stage's GEMM computes two "
                             "output columns per multiplier (GemmConfig.dsp_packing: W8's "
                             "weights or W4's codes, two products in one DSP48E2/DSP58; "
                             "none saved on ECP5/iCE40); needs even linear_cols and ffn_cols")
    qk_rows: int = spec(4, Range(1, 64), "rows of the Q·Kᵀ array")
    qk_cols: int = spec(4, Range(1, 64), "columns of the Q·Kᵀ array")
    pv_rows: int = spec(4, Range(1, 64), "rows of the P·V array")
    pv_cols: int = spec(4, Range(1, 64), "columns of the P·V array")
    head_engines: int = spec(1, Range(1, 4096), "attention heads computed at once (each "
                             "engine its own Q·Kᵀ and P·V arrays and KV cache bank); divides "
                             "heads: 1 = heads in sequence, heads = all in parallel")
    numbers: LayerNumbers | None = spec(
        None, None, "the calibrated constants (LayerNumbers: scales, the linear stages' "
        "weight scales and biases (q k v o f1 f2; llama q k v o gate up down), ln1 ln2 gamma "
        "and beta); none: a shape-only config")

    #: The fields of the older flat form of a config file (the numbers beside the structure),
    #: which :meth:`from_dict` still reads (GPT-2 and BERT files only).
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

    def to_dict(self):
        """A plain dict (a JSON file); the numbers as :meth:`LayerNumbers.to_dict` gives them
        (what the layer has, not the other architectures' ``None`` fields)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["numbers"] = None if self.numbers is None else self.numbers.to_dict()
        return out

    def _validate(self):
        d, f = self.d_model, self.d_ff
        if d % self.heads:
            raise ConfigError(f"heads={self.heads} does not divide d_model={d}; allowed: a "
                              "divisor of d_model")
        desc = DESCRIPTIONS[self.arch]
        if self.heads % self.kv_heads_value:
            raise ConfigError(f"kv_heads={self.kv_heads} does not divide heads={self.heads}; "
                              "allowed: a divisor of heads (0: heads)")
        if self.kv_heads_value != self.heads and not any(
                st.features == "kv" for st in desc.of_kind("linear")):
            raise ConfigError(f"kv_heads={self.kv_heads} is not allowed with arch={self.arch} "
                              f"(its K and V have every head); allowed: 0 or {self.heads}")
        if self.stream_exponent and not desc.row_exponents:
            raise ConfigError(f"stream_exponent={self.stream_exponent} is not allowed with "
                              f"arch={self.arch} (its residual stream has no row exponents); "
                              "allowed: 0")
        if desc.of_kind("rope"):
            if self.lanes % 2:
                raise ConfigError(f"lanes={self.lanes} is odd; allowed with arch={self.arch}: "
                                  "even (RoPE rotates pairs within a beat)")
            if self.seq < 2:
                raise ConfigError(f"seq={self.seq} is too small for arch={self.arch}; allowed: "
                                  ">= 2 (the positions of the RoPE tables)")
        if isinstance(self.rope_base, bool) or not isinstance(self.rope_base, numbers.Real) \
                or not (math.isfinite(self.rope_base) and self.rope_base > 1):
            raise ConfigError(f"rope_base={self.rope_base!r} is not allowed; allowed: finite "
                              "and > 1")
        object.__setattr__(self, "rope_base", float(self.rope_base))
        if self.heads % self.head_engines:
            raise ConfigError(f"head_engines={self.head_engines} does not divide "
                              f"heads={self.heads}; allowed: a divisor of heads")
        for name, n in (("d_model", d), ("d_ff", f), ("d_head", self.d_head)):
            if n % self.lanes:
                raise ConfigError(f"lanes={self.lanes} does not divide {name}={n}; allowed: "
                                  f"a common divisor of d_model, d_ff and d_head")
        if self.dsp_packing and self.engine != "gemm":
            raise ConfigError(f"dsp_packing with engine={self.engine}: the GEMV packs no "
                              "products; allowed: dsp_packing=false (or engine=gemm)")
        if self.dsp_packing:
            for name in ("linear_cols", "ffn_cols"):
                if getattr(self, name) % 2:
                    raise ConfigError(f"{name}={getattr(self, name)} is odd, but dsp_packing "
                                      "pairs output columns; allowed: an even "
                                      f"{name} with dsp_packing=true")
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
        if self.weight_groups and self.weight_bits != 8:
            raise ConfigError(f"weight_groups=true with weight_bits={self.weight_bits}: W4 "
                              "weights are always grouped; allowed: weight_groups with "
                              "weight_bits=8 (GGUF's Q8_0)")
        if self.grouped:
            for name in self.linears:
                k = self.linear_shape(name)[0]
                if k % WEIGHT_GROUP:
                    what = "weight_groups" if self.weight_groups else "weight_bits=4"
                    raise ConfigError(f"{what} is not allowed with linear stage {name} of "
                                      f"{k} inputs; allowed: inputs a multiple of {WEIGHT_GROUP} "
                                      "(its weight groups)")
        nums = _nested(LayerNumbers, self.numbers, "numbers")
        object.__setattr__(self, "numbers", None if nums is None else self._checked(nums))
        # Build every block of a calibrated layer once, so that their own limits (those of
        # its constants) are reported now; the engines' of any layer.
        _ = self.stages if self.calibrated else [self.linear(name) for name in self.linears]

    def _checked(self, nums):
        """``nums`` with exactly the scales and constants this layer's description has, and
        every per-channel list checked against this structure (weight scales per channel as a
        tuple, biases int32)."""
        desc = DESCRIPTIONS[self.arch]
        given = nums.scales.given()
        missing = [t for t in self.scale_names if t not in given]
        if missing:
            raise ConfigError(f"numbers.scales: {', '.join(missing)} missing; a {self.arch} "
                              f"layer has a scale for each of {', '.join(self.scale_names)}")
        extra = [t for t in given if t not in self.scale_names]
        if extra:
            raise ConfigError(f"numbers.scales: {', '.join(extra)} given, but a {self.arch} "
                              f"layer has no such tensor; allowed: {', '.join(self.scale_names)}")
        own = {st.params for st in desc.stages if st.kind in ("linear", "norm")}
        for name, cls in [(n, LinearParams) for n in ALL_LINEARS] + [(n, NormParams)
                                                                     for n in NORMS]:
            if name in own and nums.params(name) is None:
                raise _missing(name, cls)
            if name not in own and nums.params(name) is not None:
                raise ConfigError(f"numbers.{name} is given, but a {self.arch} layer has no "
                                  f"stage {name}; allowed: {' | '.join(sorted(own))}")
        out = {}
        for name in self.linears:
            p = nums.params(name)
            n_out = self.linear_shape(name)[1]
            ws = check_scales(f"numbers.{name}.w_scale", p.w_scale, n_out)
            if not isinstance(ws, tuple):
                ws = (ws,) * n_out
            out[name] = LinearParams(w_scale=ws, bias=self._bias(f"numbers.{name}", p.bias,
                                                                 n_out),
                                     **self._groups(name, p))
        for name in NORMS:
            p = nums.params(name)
            out[name] = NormParams(
                gamma=check_vector(f"numbers.{name}.gamma", p.gamma, self.d_model),
                beta=check_vector(f"numbers.{name}.beta", p.beta, self.d_model))
        return dataclasses.replace(nums, **out)

    @property
    def grouped(self):
        """Whether the linear stages' weights come in groups of :data:`WEIGHT_GROUP` inputs
        with an integer scale each: W4 (:attr:`weight_bits` 4, a minimum too) or W8 with
        :attr:`weight_groups` (GGUF's Q8_0, no minimum)."""
        return self.weight_bits == 4 or self.weight_groups

    def _groups(self, name, p):
        """``group_scale`` and ``group_min`` of linear stage ``name`` checked: grouped weights
        (:attr:`grouped`) have their GEMM's tables (``GemmConfig.group_tables``: at W4 both,
        with :attr:`weight_groups`, Q8_0's, the scale alone), each ``in/WEIGHT_GROUP × out``
        integers of :data:`GROUP_SCALE_BITS` (a tuple of rows); else none."""
        where = f"numbers.{name}"
        if not self.grouped:
            if p.group_scale is not None or p.group_min is not None:
                raise ConfigError(f"{where}.group_scale/group_min are given, but weight_bits=8 "
                                  "without weight_groups has no weight groups; allowed: none "
                                  "(weight_bits=4 or weight_groups have them)")
            return {}
        k, n = self.linear_shape(name)
        top = (1 << (GROUP_SCALE_BITS - 1)) - 1
        out = {}
        tables = GROUP_TABLES[self.weight_bits]
        if p.group_min is not None and "group_min" not in tables:
            raise ConfigError(f"{where}.group_min is given, but weight_groups (GGUF's Q8_0) "
                              "has no minimum; allowed: none")
        for field in tables:
            value = getattr(p, field)
            a = np.asarray(() if value is None else value)
            if a.shape != (k // WEIGHT_GROUP, n) or not (
                    np.issubdtype(a.dtype, np.integer) and np.abs(a).max() <= top):
                got = "none" if value is None else f"{a.dtype} {'×'.join(map(str, a.shape))}"
                raise ConfigError(f"{where}.{field} is {got}; allowed with weight_bits="
                                  f"{self.weight_bits} weight_groups={self.weight_groups}: "
                                  f"{k // WEIGHT_GROUP}×{n} integers in -{top}..{top}")
            out[field] = value if isinstance(value, tuple) and all(
                isinstance(r, tuple) for r in value) else tuple(map(tuple, a.tolist()))
        return out

    def group_shift(self, name):
        """Grouped weights (:attr:`grouped`): the right shift, rounded by :attr:`rounding`,
        that brings linear stage ``name``'s group-scaled sums into the re-quantiser's int32.

        The engine sums each group of :data:`WEIGHT_GROUP` inputs twice, ``P = Σ x·q`` and
        ``S = Σ x``; the sum over groups of ``D·P + M·S`` (``D``, ``M`` the group's
        ``group_scale`` and ``group_min``) is then at most ``in · |x|max · (15 + 1) ·
        2**(GROUP_SCALE_BITS−1)`` at W4, ``in · |x|max · 128 · 2**(GROUP_SCALE_BITS−1)`` at W8
        (codes −127..127, no minimum), and this shift keeps that below 2**30 (a bit to spare
        for the rounding). The linear stage's ``w_scale[c]`` is then the unit of ``D`` times
        ``2**shift``."""
        k, _ = self.linear_shape(name)
        a = 1 << (self.width(self.description[name].inputs[0]) - 1)
        code = 16 if self.weight_bits == 4 else 128
        bound = k * a * code * ((1 << (GROUP_SCALE_BITS - 1)) - 1)
        return max(0, bound.bit_length() - 30)

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
    def description(self):
        """The architecture's layer in this config's numerics scheme: its stages and the
        tensors between them."""
        return DESCRIPTIONS[self.arch].for_scheme(self.scheme)

    @property
    def linears(self):
        """This layer's linear stages, in order (their ``params`` are these names)."""
        return tuple(st.name for st in self.description.of_kind("linear"))

    @property
    def scale_names(self):
        """The tensors with a scale of their own in :class:`ActScales`: every tensor of the
        description but the ``quant`` stages' outputs (at their input's scale), and
        ``score``."""
        desc = DESCRIPTIONS[self.arch]
        return tuple(t for t in ActScales.__dataclass_fields__
                     if t in desc.tensors or t == "score")

    def features(self, dim):
        """Elements of a row of dimension ``dim`` (a key of
        :data:`~.description.FEATURES`)."""
        return {"d_model": self.d_model, "d_ff": self.d_ff, "kv": self.kv_width}[dim]

    def tensor_dim(self, tensor):
        """The dimension of ``tensor``'s rows: a linear stage's output its ``features``; the
        output of an element-wise stage (act, quant, rope, mul) its first input's; else
        (norm, attention, residual) ``d_model``."""
        st = self.description.producer(tensor)
        if st is None:
            return "d_model"
        if st.kind == "linear":
            return st.features
        if st.kind in ("act", "quant", "rope", "mul"):
            return self.tensor_dim(st.inputs[0])
        return "d_model"

    def tensor_length(self, tensor):
        """Elements per row of ``tensor`` (:meth:`tensor_dim`): ``d_ff`` for the FFN's hidden
        tensors, ``kv_heads · d_head`` for K and V (and the rotated K), else ``d_model``."""
        return self.features(self.tensor_dim(tensor))

    def width(self, tensor):
        """Bits of ``tensor`` (16 on the residual stream of the dynamic scheme, else 8)."""
        return self.description.width(tensor)

    def row_exponent(self, tensor):
        """Whether ``tensor`` carries one power-of-two exponent per row, ``0..stream_exponent``
        (:attr:`~.description.LayerDescription.row_exponents`, when ``stream_exponent`` is
        on); a ``quant`` stage's output carries its own (:meth:`LayerDescription.row_exponent
        <.description.LayerDescription.row_exponent>`)."""
        return bool(self.stream_exponent) and tensor in self.description.row_exponents

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
        """``(in, out)`` features of a linear stage: its input tensor's length and its
        ``features``."""
        self._check_linear(name)
        st = self.description[name]
        return self.tensor_length(st.inputs[0]), self.features(st.features)

    def is_ffn(self, name):
        """Whether linear stage ``name`` is on the FFN's arrays (``ffn_rows``, ``ffn_cols``):
        its input or output is ``d_ff`` wide (f1, f2; gate, up, down)."""
        st = self.description[name]
        return "d_ff" in (st.features, self.tensor_dim(st.inputs[0]))

    def linear_io(self, name):
        """``(input tensor, output tensor)`` names of a linear stage (keys of ActScales)."""
        st = self.description[name]
        return st.inputs[0], st.output

    # Block configs ---------------------------------------------------------------------------
    def _check_linear(self, name):
        if name not in self.linears:
            raise ConfigError(f"linear stage {name!r} is not allowed; allowed: "
                              f"{' | '.join(self.linears)}")

    def _linear_fields(self, name):
        k, n = self.linear_shape(name)
        ffn = self.is_ffn(name)
        return dict(rows=self.ffn_rows if ffn else self.linear_rows,
                    cols=self.ffn_cols if ffn else self.linear_cols,
                    k=k, n=n, lanes=self.lanes, w_width=8,
                    a_width=self.width(self.description[name].inputs[0]))

    def _group_fields(self, name):
        """The GEMM's grouped-weight fields with grouped weights (:attr:`grouped`): 4-bit codes
        (W4) or int8 codes (W8 :attr:`weight_groups`) with their group tables, the sums
        shifted by :meth:`group_shift` with :attr:`rounding` (exactly the golden model's
        ``linear_acc``); none at W8 per channel."""
        if not self.grouped:
            return {}
        return dict(w_width=self.weight_bits, weight_groups=True,
                    group_shift=self.group_shift(name),
                    rounding=self.rounding)

    def gemm(self, name):
        """The output-stationary GEMM of a linear stage (``q k v o f1 f2``), whatever
        :attr:`engine` is: the array the stage would be with ``engine="gemm"``, with the same
        ``rows``×``cols`` multipliers, k, n and lanes; at W4 (:attr:`weight_bits` 4) its
        weights are the grouped 4-bit codes (``weight_groups``, shifted by
        :meth:`group_shift`). The golden model computes every linear stage through it (both
        engines give the same integers); the stage's own engine is :meth:`linear`."""
        packing = {"dsp_packing": True} if self.dsp_packing else {}
        return GemmConfig(**{**self._linear_fields(name), **self._group_fields(name),
                             **packing})

    def linear(self, name):
        """The engine config of a linear stage (``q k v o f1 f2``): a :class:`GemmConfig` when
        ``engine="gemm"``, a :class:`GemvConfig` when ``engine="gemv"``, from the same fields
        (``linear_rows``/``linear_cols`` for q, k, v, o; ``ffn_rows``/``ffn_cols`` for f1,
        f2; k and n the stage's in and out features; ``lanes``; int8 × int8). At W4
        (:attr:`weight_bits` 4) the GEMM is :meth:`gemm`'s, with grouped 4-bit weights; the
        GEMV has no weight groups and stays the int8 one (the layer's RTL refuses it at W4:
        ``hw.layers.common.check_layer_rtl``)."""
        if self.engine == "gemv":
            return GemvConfig(**self._linear_fields(name))
        return self.gemm(name)

    @property
    def linear_macs_per_cycle(self):
        """``{stage: peak multiply-accumulates per cycle}`` of the linear stages: the
        engine's ``rows × cols`` multipliers, which both engines have (the GEMV's are all busy
        on one token, the GEMM's on a token tile of ``rows``)."""
        return {name: self.linear(name).peak_macs_per_cycle for name in self.linears}

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
        cls = RMSNormConfig if self.description.norm == "rmsnorm" else LayerNormConfig
        # (a norm of a row-exponent tensor takes the row's exponent for its epsilon)
        rows = {"e_max": self.stream_exponent} if self.row_exponent(st.inputs[0]) else {}
        return cls(length=self.d_model, lanes=self.lanes, eps=self.eps_value,
                               in_width=self.width(st.inputs[0]),
                               out_width=self.width(st.output), **rows,
                               **self._constants(st, self.d_model, calibrated))

    @property
    def norm1(self):
        """norm1: of the input (GPT-2, LLaMA) or of the first residual sum (BERT); layernorm,
        or rmsnorm for LLaMA (the description's ``norm``)."""
        return self._norm("norm1")

    @property
    def norm2(self):
        """norm2: of the first residual sum (GPT-2, LLaMA) or of the second (BERT)."""
        return self._norm("norm2")

    def activation(self, name):
        """The table activation of ``act`` stage ``name`` (the description's ``act``): GELU
        with GPT-2's tanh formula or BERT's exact (erf) one, or SiLU (LLaMA)."""
        st = self.description[name]
        length = self.tensor_length(st.inputs[0])

        def calibrated(nums):
            s = nums.scales
            return {"x_scale": getattr(s, st.inputs[0]), "out_scale": getattr(s, st.output)}
        act = self.description.act
        kind = ({"approximation": act.removeprefix("gelu_")} if act.startswith("gelu_")
                else {})
        cls = GeluConfig if act.startswith("gelu_") else SiluConfig
        return cls(length=length, lanes=self.lanes, **kind, out_width=self.width(st.output),
                   in_width=self.width(st.inputs[0]), **self._constants(st, length, calibrated))

    @property
    def gelu(self):
        """GELU table (GPT-2, BERT): :meth:`activation` of stage ``gelu``."""
        return self.activation("gelu")

    @property
    def silu(self):
        """SiLU table (LLaMA): :meth:`activation` of stage ``silu``."""
        return self.activation("silu")

    def rope(self, name):
        """The RoPE of ``rope`` stage ``name`` (LLaMA's ``rope_q``, ``rope_k``): rows of its
        input's length (all heads of Q, or all KV heads of K), ``d_head`` per head, a table of
        ``seq`` positions at base ``rope_base``, input and output at their tensors' scales, the
        input at its tensor's width (LLaMA's q and k int16 in the dynamic scheme)."""
        st = self._stage(name, "rope")
        length = self.tensor_length(st.inputs[0])

        def calibrated(nums):
            s = nums.scales
            return {"x_scale": getattr(s, st.inputs[0]), "out_scale": getattr(s, st.output)}
        return RopeConfig(length=length, d_head=self.d_head, lanes=self.lanes,
                          positions=self.seq, base=self.rope_base, rounding=self.rounding,
                          in_width=self.width(st.inputs[0]),
                          **self._constants(st, length, calibrated))

    def mul(self, name):
        """The element-wise product of ``mul`` stage ``name`` (LLaMA's ``mul``: SiLU(gate) ⊙
        up), re-quantised to its output's scale and width."""
        st = self._stage(name, "mul")
        length = self.tensor_length(st.inputs[0])
        a, b = st.inputs

        def calibrated(nums):
            s = nums.scales
            return {"a_scale": getattr(s, a), "b_scale": getattr(s, b),
                    "out_scale": getattr(s, st.output)}
        out_width = self.width(st.output)
        # an int16 output wants the finer multiplier (hw/blocks/mul.py)
        return MulConfig(length=length, lanes=self.lanes, rounding=self.rounding,
                         a_width=self.width(a), b_width=self.width(b), out_width=out_width,
                         mult_bits=24 if out_width > 8 else 16,
                         **self._constants(st, length, calibrated))

    def _stage(self, name, kind):
        st = self.description[name]
        if st.kind != kind:
            raise ConfigError(f"stage {name!r} is a {st.kind} stage, not a {kind} stage")
        return st

    def _residual(self, name):
        st = self.description[name]

        def calibrated(nums):
            s = nums.scales
            branch, skip = st.inputs
            return {"x_scale": getattr(s, branch), "r_scale": getattr(s, skip),
                    "out_scale": getattr(s, st.output)}
        branch, skip = st.inputs
        # a residual writing a row-exponent tensor: the skip aligned by its rows' exponents,
        # the sum on out_width + E bits for the row quantiser (:meth:`row_quant`)
        rows = {"e_max": self.stream_exponent} if self.row_exponent(st.output) else {}
        return ResidualConfig(length=self.d_model, lanes=self.lanes, rounding=self.rounding,
                              x_width=self.width(branch), r_width=self.width(skip),
                              out_width=self.width(st.output), **rows,
                              **self._constants(st, self.d_model, calibrated))

    def row_quant(self, name):
        """The row quantiser after residual stage ``name`` when its output carries row
        exponents (:meth:`row_exponent`): the wide sum (``out_width + stream_exponent`` bits)
        to the output's width and its row's exponent ``0..stream_exponent``, exactly the
        per-token quantiser of the dynamic scheme; ``None`` for any other stage."""
        st = self.description[name]
        if st.kind != "residual" or not self.row_exponent(st.output):
            return None
        out = self.width(st.output)
        return DynQuantConfig(length=self.d_model, lanes=self.lanes,
                              in_width=out + self.stream_exponent, out_width=out,
                              rounding=self.rounding)

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
        st = self._stage(name, "quant")
        return DynQuantConfig(length=self.tensor_length(st.inputs[0]), lanes=self.lanes,
                              in_width=self.width(st.inputs[0]), out_width=self.width(st.output),
                              rounding=self.rounding)

    def stage_config(self, name):
        """The block config of stage ``name``: ``(engine, requant)`` for a linear stage (the
        engine of :meth:`linear`), else the block's own config, by its kind."""
        st = self.description[name]
        if st.kind == "linear":
            return self.linear(name), self.requant(name)
        if st.kind == "attention":
            return self.attention
        return {"quant": self.quant, "norm": self._norm, "act": self.activation,
                "residual": self._residual, "rope": self.rope, "mul": self.mul}[st.kind](name)

    @property
    def attention(self):
        """The multi-head attention (its per-head blocks are its properties)."""
        st = self.description["attention"]

        def calibrated(nums):
            s = nums.scales
            q, k, v = (getattr(s, t) for t in st.inputs)
            return {"q_scale": q, "k_scale": k, "v_scale": v, "score_scale": s.score,
                    "out_scale": getattr(s, st.output)}
        # grouped-query attention (llama): the K and V rows, and the KV cache, have kv_heads
        gqa = {"kv_heads": self.kv_heads_value} if self.kv_heads_value != self.heads else {}
        return AttentionConfig(d_model=self.d_model, heads=self.heads, seq=self.seq,
                               causal=self.causal, lanes=self.lanes, **gqa,
                               qk_rows=self.qk_rows, qk_cols=self.qk_cols,
                               pv_rows=self.pv_rows, pv_cols=self.pv_cols,
                               rounding=self.rounding, head_engines=self.head_engines,
                               out_width=self.width(st.output),
                               **self._constants(st, self.seq, calibrated))

    @property
    def stages(self):
        """``[(name, config)]`` in dataflow order; a linear stage is ``(name, (engine,
        requant))`` with the engine config of :meth:`linear`."""
        return [(st.name, self.stage_config(st.name)) for st in self.description.stages]

    @property
    def kv_cache_bytes(self):
        """On-chip K and V cache: ``seq`` positions × ``kv_heads · d_head`` int8 (``d_model``
        but with grouped-query attention), twice."""
        return 2 * self.seq * self.kv_width


@dataclasses.dataclass(frozen=True, eq=False)
class LayerWeights:
    """The int8 weight matrices of one layer (``x @ W`` orientation: in × out), read-only: one
    per linear stage of its description, named by the stage's ``weight`` (``wq wk wv wo w1 w2``
    for GPT-2 and BERT, ``wq wk wv wo w_gate w_up w_down`` for LLaMA; the others ``None``).

    Biases are not here: they are per-channel constants of the re-quantisers and live in
    :class:`LayerNumbers` (``cfg.numbers.q.bias``, ...), next to the per-channel weight
    scales.
    """

    wq: np.ndarray
    wk: np.ndarray
    wv: np.ndarray
    wo: np.ndarray
    w1: np.ndarray | None = None
    w2: np.ndarray | None = None
    w_gate: np.ndarray | None = None
    w_up: np.ndarray | None = None
    w_down: np.ndarray | None = None

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if getattr(self, f.name) is None:
                continue
            a = np.asarray(getattr(self, f.name))
            if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer) or (
                    a.size and (a.min() < -128 or a.max() > 127)):
                raise ConfigError(f"weight {f.name} must be a 2-D array of int8 values; got "
                                  f"{a.dtype} {a.shape}")
            a = a.astype(np.int8)
            a.setflags(write=False)
            object.__setattr__(self, f.name, a)

    def matrix(self, name):
        """The weights of a linear stage (``q k v o f1 f2``; ``gate up down``)."""
        if name not in WEIGHTS:
            raise ConfigError(f"linear stage {name!r} is not allowed; allowed: "
                              f"{' | '.join(WEIGHTS)}")
        return getattr(self, WEIGHTS[name])

    def check(self, cfg):
        """Raise :class:`ConfigError` unless there is a matrix for each linear stage of
        ``cfg``, of the shape it needs, and none else."""
        own = {WEIGHTS[name] for name in cfg.linears}
        for f in dataclasses.fields(self):
            if f.name not in own and getattr(self, f.name) is not None:
                raise ConfigError(f"weight {f.name} is given, but a {cfg.arch} layer has no "
                                  f"stage reading it; allowed: {', '.join(sorted(own))}")
        for name in cfg.linears:
            want = cfg.linear_shape(name)
            if self.matrix(name) is None:
                raise ConfigError(f"weight {WEIGHTS[name]} is missing; a {cfg.arch} layer "
                                  f"needs {want[0]}×{want[1]}")
            got = self.matrix(name).shape
            if got != want:
                raise ConfigError(f"weight {WEIGHTS[name]} has shape {got[0]}×{got[1]}; "
                                  f"expected {want[0]}×{want[1]} for this layer config")
            m = self.matrix(name)
            if cfg.weight_bits == 4 and m.size and (m.min() < 0 or m.max() > 15):
                raise ConfigError(f"weight {WEIGHTS[name]} holds {int(m.min())}..{int(m.max())};"
                                  " allowed with weight_bits=4: 4-bit codes 0..15")
        return self

    def to_dict(self):
        """``{weight name: matrix}`` of the matrices given."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}
