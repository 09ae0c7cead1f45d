"""What a layer is, written once: its stages, the tensors between them, and the architecture's
constants. Everything that builds, simulates, times or costs a layer walks this description.

A :class:`LayerDescription` is a list of :class:`Stage` in dataflow order. Each stage is an
operator of one *kind* (what block it is), reads named tensors and writes one; a tensor's name
is also the name of its activation scale (:class:`~.config.ActScales`), and ``x`` is the
layer's input. From the description alone follow the edges (who reads what), where a tensor
fans out (a fork in the hardware), and which edges are *skips*: a residual's second input,
which waits in a queue while its first input goes the long way round.

Who walks it:

* :mod:`.config` — every stage's block config: a stage's scales are those of the tensors it
  reads and writes; the layer's output scale is that of :attr:`LayerDescription.output`.
* :mod:`.layer` — the RTL: one block per stage, a :class:`~llmloom.hw.stream.Fork` where a
  tensor has several readers, a :class:`~llmloom.hw.stream.Queue` on every skip, sized by
  :func:`~.layer.skip_rows`.
* :mod:`llmloom.sim.golden.layers` — the float64 layer and the bit-exact one.
* :mod:`llmloom.perf.pipeline` — the beat-level timing; :mod:`llmloom.perf.resources` — the
  resource model (one part per stage, queue and fork).

The kinds: ``norm`` (the architecture's norm, :attr:`LayerDescription.norm`: layernorm or
rmsnorm, of one input), ``linear`` (engine → requant; its weight and bias are ``weight`` and
``b…``; its output features :attr:`Stage.features`), ``attention`` (reads q, k, v; holds a
whole tensor before it emits; query head ``h`` reads KV head ``h // (heads / kv_heads)``),
``act`` (the element-wise activation, ``LayerDescription.act``), ``residual`` (reads the
branch, then the skip), ``quant`` (a wide tensor to int8 with one power-of-two exponent per
row, which travels beside the row to the re-quantisers of the linear stages that read it),
``rope`` (rotates the adjacent pairs of each head of q or k by the token's position: the row's
index plus the runtime offset the attention has for decode), ``mul`` (the element-wise product
of two tensors of one shape, re-quantised to the output's scale).

Numerics schemes (:data:`SCHEMES`; :meth:`LayerDescription.for_scheme`): ``static`` is the
description as written, every tensor int8 at one calibrated scale. ``dynamic`` widens the
tensors of the residual stream (:attr:`LayerDescription.stream`: the layer's input and
output, the residual sums, the norms' inputs and outputs, the activation's output) to int16,
each still at one static scale, and puts a ``quant`` stage before the linear stages that read
one: a linear's input is then int8 at a per-token scale (the wide tensor's scale times
``2**e``, ``e`` chosen per row so that the row's largest value fits). Trained models put
outliers of 100× the typical magnitude into a few channels of exactly these tensors; int8 at
one scale cannot hold both.

A description may make some stream tensors wider than int16 (:attr:`LayerDescription.wide`,
at most :data:`WIDEST` bits): LLaMA's gate-times-up product and the down projection's output,
whose rows differ in range by more than int16 holds at one static scale.

Row exponents (:attr:`LayerDescription.row_exponents`; the layer config's ``stream_exponent``
``E``, 0 = off): the tensors of the residual stream proper (the layer's input and the
residual sums, LLaMA's ``x r1 r2``) may carry one power-of-two exponent per row, block
floating point per token: a row's real value is ``t_int · s_t · 2**e``, ``e`` in ``0..E``,
chosen after each residual add from the row's largest value. A few tokens (LLaMA's first
token, its "attention sink") carry activations thousands of times the others'; with one
static scale the others keep a handful of steps. Such a tensor is read only by norms (scale
invariant: the exponent scales their epsilon only) and as a residual's skip (aligned to the
branch by ``2**e``); a residual writing one picks the exponent.
"""

from __future__ import annotations

import dataclasses

from ..blocks.activation import IN_WIDTHS

__all__ = ["KINDS", "SCHEMES", "TRAINED_SCHEME", "NARROW", "WIDEST", "ACT_WIDTHS", "NORMS",
           "ACTS", "FEATURES", "Stage", "LayerDescription"]

#: The numerics schemes a description comes in (see the module text).
SCHEMES = ("static", "dynamic")
#: The scheme that holds on trained weights (see the module text): the one the model flows run
#: by default (``llmloom generate``, ``embed``) and the one ``perf`` projects llmloom's own
#: designs in.
TRAINED_SCHEME = "dynamic"

#: The kinds of stage and the names of their input ports, in the order of ``Stage.inputs``.
KINDS = {
    "norm": ("i",),
    "linear": ("i",),
    "attention": ("q", "k", "v"),
    "act": ("i",),
    "residual": ("x", "r"),
    "quant": ("i",),
    "rope": ("i",),
    "mul": ("a", "b"),
}
#: Bits a ``quant`` stage's output may have (:attr:`LayerDescription.narrow`): what the
#: linear engines read (``GemmConfig.a_width``).
NARROW = (8, 9, 10)
#: The most bits a :attr:`LayerDescription.wide` tensor may have: the per-token quantiser's
#: input (:class:`~llmloom.hw.blocks.dynquant.DynQuantConfig`) takes 31, and a 24-bit one
#: keeps the re-quantisers' and the residual's products within their words.
WIDEST = 24
#: Bits the ``act`` stage's input may have in the ``dynamic`` scheme
#: (:attr:`LayerDescription.act_width`): the activation table's address bits.
ACT_WIDTHS = IN_WIDTHS
#: The norms a layer's ``norm`` stages can be (:attr:`LayerDescription.norm`).
NORMS = ("layernorm", "rmsnorm")
#: The activations of an ``act`` stage (:attr:`LayerDescription.act`).
ACTS = ("gelu_tanh", "gelu_erf", "silu")
#: A linear stage's output features (:attr:`Stage.features`), by the layer config's dimension:
#: ``d_model``, ``d_ff``, or ``kv`` (``kv_heads · d_head``: the K and V projections).
FEATURES = ("d_model", "d_ff", "kv")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One operator of a layer.

    Parameters
    ----------
    name : str
        The stage's one name, in the RTL (its submodule), the golden models, the timing and
        resource models and every report.
    kind : str
        A key of :data:`KINDS`.
    inputs : tuple of str
        The tensors it reads, one per input port of its kind.
    output : str
        The tensor it writes.
    params : str
        Where its constants come from: a linear stage's field of
        :class:`~.config.LayerNumbers` (its per-channel scales and bias), a norm's gain and
        shift (``ln1`` → ``ln1_g``, ``ln1_b`` among the float weights, ``cfg.numbers.ln1``
        once calibrated).
    weight : str
        A linear stage's weight matrix (canonical name, ``x @ W``); its bias is ``b`` and the
        rest of the name.
    features : str
        A linear stage's output features, a key of :data:`FEATURES` (``d_model`` unless said);
        its input features are its input tensor's.
    """

    name: str
    kind: str
    inputs: tuple
    output: str
    params: str = ""
    weight: str = ""
    features: str = "d_model"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"stage {self.name}: kind {self.kind!r} is not allowed; allowed: "
                             f"{', '.join(KINDS)}")
        if len(self.inputs) != len(KINDS[self.kind]):
            raise ValueError(f"stage {self.name}: a {self.kind} reads {len(KINDS[self.kind])} "
                             f"tensor(s), not {len(self.inputs)}")
        if self.kind == "linear" and not self.weight.startswith("w"):
            raise ValueError(f"stage {self.name}: a linear stage names its weight (w...)")
        if self.features not in FEATURES or (self.kind != "linear" and
                                             self.features != "d_model"):
            raise ValueError(f"stage {self.name}: features={self.features!r} is not allowed; "
                             f"allowed: {' | '.join(FEATURES)} (linear stages only)")

    @property
    def bias(self):
        """A linear stage's bias (canonical name)."""
        return "b" + self.weight[1:]

    @property
    def ports(self):
        """``[(input port, tensor)]``."""
        return list(zip(KINDS[self.kind], self.inputs, strict=True))


@dataclasses.dataclass(frozen=True)
class LayerDescription:
    """One architecture's layer.

    Parameters
    ----------
    arch : str
        Its name (``LayerConfig.arch``).
    stages : tuple of Stage
        In dataflow order: every tensor a stage reads is ``x`` or written by an earlier one.
    output : str
        The layer's output tensor.
    causal : bool
        Whether the attention masks future positions (and so whether decode is possible).
    act : str
        The activation of the ``act`` stage (:data:`ACTS`): ``gelu_tanh``, ``gelu_erf`` or
        ``silu``.
    eps : float
        The norms' epsilon (the Hugging Face default of the architecture).
    stream : tuple of str
        The tensors of the residual stream, int16 in the ``dynamic`` scheme (or as
        :attr:`wide` says).
    narrow : int
        Bits of the ``dynamic`` scheme's per-token linear inputs (the ``quant`` stages'
        outputs, ``<t>_i8``; :data:`NARROW`): 8, or 9 or 10, one or two more bits of every row
        for the same multipliers (the engines' ``GemmConfig.a_width``, packed two products a
        DSP48E2 up to 10 bits; BERT int9, :mod:`.bert`; LLaMA int10, :mod:`.llama`).
    scheme : str
        The numerics scheme this description is in (:data:`SCHEMES`); written as ``static``,
        the others made by :meth:`for_scheme`.
    norm : str
        What every ``norm`` stage is (:data:`NORMS`): ``layernorm`` (gain and shift, params
        ``<p>_g`` and ``<p>_b``) or ``rmsnorm`` (gain only, ``<p>_g``).
    row_exponents : tuple of str
        The tensors that carry a power-of-two exponent per row when the layer config's
        ``stream_exponent`` is not 0 (see the module text): the input ``x`` or a residual's
        output, each read only by norms and as a residual's skip.
    wide : tuple of (str, int)
        Stream tensors wider than int16 in the ``dynamic`` scheme, with their bits (at most
        :data:`WIDEST`): a tensor whose rows differ in range by more than int16 holds at one
        static scale (LLaMA's ``p`` and ``f``, :mod:`.llama`). Each is written by a ``mul``
        or a linear stage and read by a ``quant`` stage or as a residual's branch.
    act_width : int
        Bits of the ``act`` stage's input in the ``dynamic`` scheme (:data:`ACT_WIDTHS`; a
        table of ``2**act_width`` entries, one static scale): 8, or more where the input's
        rows differ in range by more than int8 holds (LLaMA's ``hg``, :mod:`.llama`).
    """

    arch: str
    stages: tuple
    output: str
    causal: bool
    act: str
    eps: float
    stream: tuple = ()
    narrow: int = 8
    scheme: str = "static"
    norm: str = "layernorm"
    row_exponents: tuple = ()
    wide: tuple = ()
    act_width: int = 8

    def __post_init__(self):
        seen = {"x"}
        names = set()
        for st in self.stages:
            if st.name in names:
                raise ValueError(f"{self.arch}: stage {st.name!r} appears twice")
            names.add(st.name)
            missing = [t for t in st.inputs if t not in seen]
            if missing:
                raise ValueError(f"{self.arch}: stage {st.name} reads {', '.join(missing)} "
                                 "before any stage writes it")
            if st.output in seen:
                raise ValueError(f"{self.arch}: tensor {st.output!r} is written twice")
            seen.add(st.output)
        if self.output not in seen:
            raise ValueError(f"{self.arch}: output {self.output!r} is not written")
        unknown = [t for t in self.stream if t not in seen]
        if unknown:
            raise ValueError(f"{self.arch}: stream tensor(s) {', '.join(unknown)} not written")
        if self.scheme not in SCHEMES:
            raise ValueError(f"{self.arch}: scheme {self.scheme!r} is not allowed; allowed: "
                             f"{' | '.join(SCHEMES)}")
        if self.narrow not in NARROW:
            raise ValueError(f"{self.arch}: narrow={self.narrow!r} is not allowed; allowed: "
                             f"{' | '.join(map(str, NARROW))}")
        for t in self.row_exponents:
            prod = self.producer(t)
            if t not in seen or (prod is not None and prod.kind != "residual"):
                raise ValueError(f"{self.arch}: row-exponent tensor {t!r} is not the input or "
                                 "a residual's output")
            if any(st.kind != "norm" and not self.is_skip(st, port)
                   for st, port in self.readers(t)):
                raise ValueError(f"{self.arch}: row-exponent tensor {t!r} is read by a stage "
                                 "other than a norm or a residual's skip")
        for t, bits in self.wide:
            prod = self.producer(t)
            if t not in self.stream or prod is None or prod.kind not in ("mul", "linear"):
                raise ValueError(f"{self.arch}: wide tensor {t!r} is not a stream tensor "
                                 "written by a mul or a linear stage")
            if not 16 < bits <= WIDEST:
                raise ValueError(f"{self.arch}: wide tensor {t!r} of {bits!r} bits is not "
                                 f"allowed; allowed: 17..{WIDEST}")
            # (a linear stage reads it through the quant stage the dynamic scheme puts there)
            if any(st.kind not in ("quant", "linear") and
                   (st.kind != "residual" or self.is_skip(st, port))
                   for st, port in self.readers(t)):
                raise ValueError(f"{self.arch}: wide tensor {t!r} is read by a stage other "
                                 "than a per-token quantiser or a residual's branch")
        if self.act_width not in ACT_WIDTHS:
            raise ValueError(f"{self.arch}: act_width={self.act_width!r} is not allowed; "
                             f"allowed: {' | '.join(map(str, ACT_WIDTHS))}")
        if self.act_width != 8 and any(t in self.stream for st in self.of_kind("act")
                                       for t in st.inputs):
            raise ValueError(f"{self.arch}: act_width={self.act_width} on an activation "
                             "whose input is a stream tensor (its width is the stream's)")
        for field, value, allowed in (("norm", self.norm, NORMS), ("act", self.act, ACTS)):
            if value not in allowed:
                raise ValueError(f"{self.arch}: {field}={value!r} is not allowed; allowed: "
                                 f"{' | '.join(allowed)}")

    def for_scheme(self, scheme):
        """This layer in numerics ``scheme`` (see the module text): itself for ``static``; for
        ``dynamic`` a ``quant`` stage ``quant_<t>`` writing ``<t>_i8`` before the first linear
        stage reading each stream tensor ``t``, and those linear stages reading ``<t>_i8``."""
        if scheme not in SCHEMES:
            raise ValueError(f"scheme={scheme!r} is not allowed; allowed: {' | '.join(SCHEMES)}")
        if scheme == self.scheme:
            return self
        if self.scheme != "static":
            raise ValueError(f"{self.arch}: a {self.scheme} description has no other scheme")
        stages, narrow = [], {}
        for st in self.stages:
            t = st.inputs[0]
            if st.kind == "linear" and t in self.stream:
                if t not in narrow:
                    narrow[t] = f"{t}_i8"
                    stages.append(Stage(f"quant_{t}", "quant", (t,), narrow[t]))
                st = dataclasses.replace(st, inputs=(narrow[t],))
            stages.append(st)
        return dataclasses.replace(self, stages=tuple(stages), scheme=scheme)

    def width(self, tensor):
        """Bits of ``tensor``: in the ``dynamic`` scheme 16 for a stream tensor (or its bits in
        :attr:`wide`), :attr:`narrow` for a ``quant`` stage's output and :attr:`act_width`
        for the ``act`` stage's input; else 8."""
        if self.scheme != "dynamic":
            return 8
        if tensor in self.stream:
            return dict(self.wide).get(tensor, 16)
        if any(tensor in st.inputs for st in self.of_kind("act")):
            return self.act_width
        return self.narrow if self.row_exponent(tensor) else 8

    def base(self, tensor):
        """The tensor whose static scale ``tensor`` is at: itself, or for a ``quant`` stage's
        output the wide tensor it narrows (times the row's ``2**e``)."""
        prod = self.producer(tensor)
        return prod.inputs[0] if prod is not None and prod.kind == "quant" else tensor

    def row_exponent(self, tensor):
        """Whether ``tensor`` travels with a per-row exponent (a ``quant`` stage's output)."""
        return self.base(tensor) != tensor

    def __getitem__(self, name):
        for st in self.stages:
            if st.name == name:
                return st
        raise KeyError(f"{self.arch} has no stage {name!r}")

    def of_kind(self, kind):
        """The stages of ``kind``, in order."""
        return [st for st in self.stages if st.kind == kind]

    @property
    def tensors(self):
        """Every tensor: ``x``, then each stage's output."""
        return ["x", *(st.output for st in self.stages)]

    def producer(self, tensor):
        """The stage writing ``tensor`` (``None`` for the input ``x``)."""
        return next((st for st in self.stages if st.output == tensor), None)

    def readers(self, tensor):
        """``[(stage, port)]`` reading ``tensor``, in stage order."""
        return [(st, port) for st in self.stages for port, t in st.ports if t == tensor]

    def is_skip(self, stage, port):
        """Whether input ``port`` of ``stage`` is a skip: a residual's second input."""
        return stage.kind == "residual" and port == KINDS["residual"][1]

    def branch(self, stage):
        """The stages a skip's tensor passes on the long way round to ``stage`` (a residual):
        every stage on a path from the skip's tensor to the residual's first input."""
        skip = stage.inputs[1]
        on_path = {}

        def reaches(tensor):
            # does ``tensor`` depend on the skip's tensor? (memoised over producers)
            if tensor == skip:
                return True
            if tensor in on_path:
                return on_path[tensor]
            prod = self.producer(tensor)
            # every input visited (no short cut): each one on a path is marked
            on_path[tensor] = prod is not None and any([reaches(t) for t in prod.inputs])
            return on_path[tensor]

        reaches(stage.inputs[0])
        return [st for st in self.stages if on_path.get(st.output)]
