"""A layer's RTL, composed by walking its description (:mod:`.description`): one block per stage,
a :class:`~llmloom.hw.stream.Fork` where a tensor has several readers, a
:class:`~llmloom.hw.stream.Queue` on every skip (:func:`~.common.skip_depth`).

The blocks of the kinds (:data:`BLOCKS`): ``norm`` → :class:`~llmloom.hw.blocks.norm.Norm`
(layernorm or rmsnorm, by the description's ``norm``), ``act`` → GELU or SiLU (its ``act``),
``attention`` (grouped-query where ``kv_heads`` < ``heads``), ``residual``, ``quant``
(:class:`~llmloom.hw.blocks.dynquant.DynQuant`), ``rope``
(:class:`~llmloom.hw.blocks.rope.Rope`, its position: the rows it has taken since ``clear``,
i.e. the row's index in its tensor plus the sequence position the attention starts that
tensor at), ``mul`` (:class:`~llmloom.hw.blocks.mul.Mul`) and ``linear``
(:class:`~.common.Linear`). With row exponents on the residual stream (``stream_exponent``)
a residual writing a row-exponent tensor is a :class:`~.common.RowResidual` (the sum, then
the row's exponent picked as the dynamic scheme's quant stages pick theirs), whose exponents
travel beside the rows to the norms (their epsilon) and the next residual's skip.

Each linear stage is an engine (weights at elaboration) → gearbox → re-quantiser
(:class:`~.common.Linear`): the output-stationary GEMM, or with ``engine="gemv"`` the decode
GEMV (every multiplier busy on one token row). Every block is configured from the one
:class:`~.config.LayerConfig` (:meth:`~.config.LayerConfig.stage_config`), so the output
equals :func:`llmloom.sim.golden.layers.layer_bitexact` bit for bit, whatever the engine.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..blocks.activation import Gelu, Silu
from ..blocks.attention import Attention
from ..blocks.dynquant import DynQuant
from ..blocks.loadable import constants_of
from ..blocks.mul import Mul
from ..blocks.norm import Norm
from ..blocks.residual import Residual
from ..blocks.rope import Rope
from ..stream import Fork, Queue, row_layout
from .common import (
    Linear,
    RowResidual,
    check_layer_rtl,
    exponent_depth,
    row_exponent_depth,
    skip_depth,
)
from .config import LayerConfig, LayerWeights

__all__ = ["Layer", "Gpt2Block", "BertLayer", "LlamaBlock", "BLOCKS", "stage_block",
           "layer_constants"]

#: The block of each kind but ``linear`` (:class:`~.common.Linear`) and ``act`` (the
#: description's activation: :data:`ACTIVATIONS`), built on the stage's config.
BLOCKS = {"norm": Norm, "attention": Attention, "residual": Residual, "quant": DynQuant,
          "rope": Rope, "mul": Mul}
#: The block of an ``act`` stage, by the description's ``act``.
ACTIVATIONS = {"gelu_tanh": Gelu, "gelu_erf": Gelu, "silu": Silu}


def stage_block(cfg, stage, loads=None, layers=1):
    """The block of ``stage``, any kind but ``linear``, built on ``cfg.stage_config`` (a
    :class:`~.common.RowResidual` where the residual writes row exponents); with ``loads``
    (a :class:`~llmloom.hw.blocks.loadable.ConstantScope`) its calibrated memories are
    written at run time (a ``quant`` stage has none); the attention with KV caches of
    ``layers`` layers."""
    if cfg.row_quant(stage.name) is not None:
        return RowResidual(cfg, stage.name, loads=loads)
    if stage.kind == "quant":
        return DynQuant(cfg.stage_config(stage.name))
    if stage.kind == "attention":
        return Attention(cfg.stage_config(stage.name), loads=loads, layers=layers)
    block = ACTIVATIONS[cfg.description.act] if stage.kind == "act" else BLOCKS[stage.kind]
    return block(cfg.stage_config(stage.name), loads=loads)


def layer_constants(cfg):
    """``[(key, Constant)]``: the calibrated memories of the layer's stages but the linear
    ones (whose numbers are a fetched stage's sections), in description order, keyed
    ``stage.name`` (``norm1.gamma``, ``attention.softmax.exp``): what a
    :class:`~llmloom.hw.blocks.loadable.ConstantBus` of the layer carries."""
    out = []
    for st in cfg.description.stages:
        if st.kind in ("linear", "quant"):
            continue
        out += [(f"{st.name}.{c.name}", c) for c in constants_of(stage_block(cfg, st))]
    return out


class Layer(wiring.Component):
    """One transformer layer of ``cfg.arch``, W8A8, with its KV cache on chip.

    Parameters
    ----------
    cfg : LayerConfig
        Calibrated (its numbers are the blocks' constants).
    weights : LayerWeights
        The int8 matrices, held in the linear engines' memories from elaboration.

    Members
    -------
    i : In(stream.Signature(row_layout(signed(8), lanes)))
        Input rows at ``cfg.x_scale`` (``d_model / lanes`` beats each), ``end`` on the last
        beat of a tensor: a prefill chunk of rows at positions ``pos ..``, or (causal
        layers) one decode row.
    o : Out(stream.Signature(row_layout(signed(8), lanes)))
        Output rows at ``cfg.y_scale``, ``last`` per row, ``end`` on a tensor's last beat.
    clear : In(1)
        Plain strobe: start a new sequence (empties the KV cache). Between tensors only.
    pos : Out(range(seq + 1))
        Causal layers: rows of the sequence the attention has taken so far. (A
        bidirectional layer's tensor is a whole sentence of 1..seq rows: its cache empties
        itself once the tensor has left the attention.)
    overflow : Out(1)
        Sticky: more than ``seq`` positions were offered (the chunk is refused).
    i_e : In(stream.Signature(row_layout(unsigned(e_width), 1)))
        Only with row exponents on the residual stream (``cfg.stream_exponent`` E > 0): each
        input row's exponent ``0..E`` (the row at ``cfg.x_scale · 2**e``), one beat a row, taken
        with the row's first beat by the first norm (offer it with the row or before).
    o_e : Out(stream.Signature(row_layout(unsigned(e_width), 1)))
        Likewise each output row's exponent, offered before the row leaves ``o``; take it
        (a row does not leave while two exponents wait here).

    Timing: the attention holds a whole tensor before it emits (its three phases), so a
    tensor's first output row leaves after all its rows went through the stages before it and
    the attention's heads; everything else streams row by row at one beat per cycle, the
    engines permitting (a GEMM waits for a token tile; a GEMV takes ``n_tiles × k_words``
    cycles per row). Backpressure on ``o`` propagates back to ``i`` without loss; the queues
    on the skips are sized so that no stall pattern can deadlock the forks
    (:func:`~.common.skip_rows`).
    """

    arch = None        # a subclass for one architecture checks it
    #: KV caches (and positions) of this many layers; with more than one, ``_layer`` (a
    #: signal a subclass drives) selects the one in use
    _layers = 1

    def __init__(self, cfg: LayerConfig, weights: LayerWeights, *, loads=None):
        self._MustUse__silence = True
        check_layer_rtl(cfg, weights)
        if self.arch is not None and cfg.arch != self.arch:
            raise ValueError(f"arch={cfg.arch!r}: {type(self).__name__} needs "
                             f"arch={self.arch!r}")
        self._MustUse__silence = False
        self.cfg, self.weights, self._loads = cfg, weights, loads
        super().__init__(self._members())

    def _members(self):
        """The layer's ports (the signature's members)."""
        cfg = self.cfg
        members = {"i": In(stream.Signature(self._beat("x"))),
                   "o": Out(stream.Signature(self._beat(cfg.description.output))),
                   "clear": In(1), "overflow": Out(1)}
        if cfg.causal:
            members["pos"] = Out(range(cfg.seq + 1))
        if cfg.row_exponent("x"):
            members["i_e"] = In(stream.Signature(self._exponent_beat()))
        if cfg.row_exponent(cfg.description.output):
            members["o_e"] = Out(stream.Signature(self._exponent_beat()))
        return members

    def _input(self, m, name):
        """The stream the layer's input port ``name`` (``i`` or ``i_e``) feeds its stages."""
        return wiring.flipped(getattr(self, name))

    def _exponent_beat(self):
        """The beat of a row-exponent stream: one exponent ``0..stream_exponent``."""
        return row_layout(unsigned(self.cfg.stream_exponent.bit_length()), 1)

    def _beat(self, tensor):
        """The stream beat of ``tensor``: ``lanes`` elements of its width."""
        return row_layout(signed(self.cfg.width(tensor)), self.cfg.lanes)

    def _block(self, stage):
        cfg = self.cfg
        if stage.kind == "linear":
            return Linear(cfg, self.weights, stage.name)
        loads = None if self._loads is None else self._loads.scope(stage.name)
        return stage_block(cfg, stage, loads, self._layers)

    def elaborate(self, platform):
        return self._compose()[0]

    def _compose(self):
        """``(m, blocks)``: the module of the composed layer and its blocks by stage name."""
        cfg, desc = self.cfg, self.cfg.description
        m = Module()
        blocks = {}
        for st in desc.stages:
            m.submodules[st.name] = blocks[st.name] = self._block(st)
        sources = {"x": self._input(m, "i")}
        sources |= {st.output: blocks[st.name].o_y if st.kind == "quant" else blocks[st.name].o
                    for st in desc.stages}
        for st in desc.of_kind("quant"):
            self._exponents(m, st, blocks)
        for tensor in desc.row_exponents:
            if cfg.row_exponent(tensor):
                self._row_exponents(m, tensor, blocks)
        for tensor in desc.tensors:
            beat = self._beat(tensor)
            readers = desc.readers(tensor)
            if tensor == desc.output:
                readers = readers + [(None, None)]          # the layer's output port
            outs = [sources[tensor]]
            if len(readers) > 1:
                m.submodules[f"fork_{tensor}"] = fork = Fork(beat, len(readers))
                wiring.connect(m, sources[tensor], fork.i)
                outs = [getattr(fork, f"o_{n}") for n in range(len(readers))]
            for out, (st, port) in zip(outs, readers, strict=True):
                if st is None:
                    wiring.connect(m, out, wiring.flipped(self.o))
                    continue
                sink = getattr(blocks[st.name], port)
                if desc.is_skip(st, port):
                    m.submodules[f"skip_{st.name}"] = queue = Queue(beat, skip_depth(cfg, st))
                    wiring.connect(m, out, queue.i)
                    out = queue.o
                wiring.connect(m, out, sink)
        for st in desc.of_kind("rope"):
            self._positions(m, st.name, blocks[st.name])
        attn = blocks[desc.of_kind("attention")[0].name]
        m.d.comb += self.overflow.eq(attn.overflow)
        # (a bidirectional attention empties its cache itself once a sentence has left it)
        m.d.comb += attn.clear.eq(self.clear)
        if cfg.causal:
            m.d.comb += self.pos.eq(attn.pos)
        if self._layers > 1:
            m.d.comb += attn.layer.eq(self._layer)
        return m, blocks

    def _positions(self, m, name, rope):
        """The position of the rows entering ``rope`` (a RoPE block): the rows it has taken
        since ``clear``. The block samples it at a tensor's first beat, so row ``r`` of a
        tensor is at the tensor's start position plus ``r`` — the position the attention's
        causal mask gives it (its ``pos``, which advances only once the tensor has left the
        attention, so a count of its own lets the next tensor be rotated while this one is
        still in the attention). Past ``seq`` the attention refuses the rows (``overflow``)."""
        cfg = self.cfg
        counts = [Signal(range(cfg.seq + 1), name=f"{name}_rows_l{n}" if self._layers > 1
                         else f"{name}_rows") for n in range(self._layers)]
        rows = counts[0] if self._layers == 1 else Array(counts)[self._layer]
        i = rope.i
        with m.If(i.valid & i.ready & i.payload.last & (rows != cfg.seq)):
            m.d.sync += rows.eq(rows + 1)
        with m.If(self.clear):       # every layer's sequence
            m.d.sync += [c.eq(0) for c in counts]
        m.d.comb += rope.pos.eq(Mux(rows == cfg.seq, 0, rows))

    def _row_exponents(self, m, tensor, blocks):
        """The row exponents of ``tensor`` (the residual stream's, with ``stream_exponent``:
        from the layer's ``i_e`` for the input, else from the residual writing it) to every
        reader of the tensor — a norm's ``e``, a residual's skip exponents ``r_e``, the
        layer's ``o_e`` — through a fork when there are several, a queue on a skip's
        (:func:`~.common.row_exponent_depth`)."""
        desc = self.cfg.description
        prod = desc.producer(tensor)
        src = self._input(m, "i_e") if prod is None else blocks[prod.name].o_e
        readers = desc.readers(tensor)
        if tensor == desc.output:
            readers = readers + [(None, None)]
        beat = self._exponent_beat()
        outs = [src]
        if len(readers) > 1:
            m.submodules[f"fork_{tensor}_e"] = fork = Fork(beat, len(readers))
            wiring.connect(m, src, fork.i)
            outs = [getattr(fork, f"o_{n}") for n in range(len(readers))]
        for out, (st, port) in zip(outs, readers, strict=True):
            if st is None:
                wiring.connect(m, out, wiring.flipped(self.o_e))
                continue
            sink = blocks[st.name].r_e if desc.is_skip(st, port) else blocks[st.name].e
            depth = row_exponent_depth(self.cfg, st)
            if depth:
                m.submodules[f"rexp_{st.name}"] = queue = Queue(beat, depth)
                wiring.connect(m, out, queue.i)
                out = queue.o
            wiring.connect(m, out, sink)

    def _exponents(self, m, quant, blocks):
        """The row exponents of ``quant`` (a quant stage) to the re-quantiser of every linear
        stage reading its output: a fork when there are several, a queue on each
        (:func:`~.common.exponent_depth`)."""
        cfg, desc = self.cfg, self.cfg.description
        readers = [st for st, _ in desc.readers(quant.output)]
        src = blocks[quant.name].o_e
        beat = row_layout(unsigned(cfg.quant(quant.name).e_width), 1)
        outs = [src]
        if len(readers) > 1:
            m.submodules[f"fork_{quant.output}_e"] = fork = Fork(beat, len(readers))
            wiring.connect(m, src, fork.i)
            outs = [getattr(fork, f"o_{n}") for n in range(len(readers))]
        for out, st in zip(outs, readers, strict=True):
            m.submodules[f"exp_{st.name}"] = queue = Queue(beat, exponent_depth(cfg, st))
            wiring.connect(m, out, queue.i)
            wiring.connect(m, queue.o, blocks[st.name].e)


class Gpt2Block(Layer):
    """The GPT-2 block (:data:`~.gpt2.GPT2`): a :class:`Layer` that takes ``arch="gpt2"``."""

    arch = "gpt2"


class BertLayer(Layer):
    """The BERT encoder layer (:data:`~.bert.BERT`): a :class:`Layer` that takes
    ``arch="bert"``."""

    arch = "bert"


class LlamaBlock(Layer):
    """The LLaMA-class block (:data:`~.llama.LLAMA`): a :class:`Layer` that takes
    ``arch="llama"``."""

    arch = "llama"
