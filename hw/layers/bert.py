"""The BERT encoder layer (post-norm, bidirectional) composed of the library's blocks::

    i ─▶ Fork ─┬─▶ Q ─▶ attention.q
               ├─▶ K ─▶ attention.k        attention.o ─▶ O ─▶ Residual1.x
               ├─▶ V ─▶ attention.v
               └─▶ Queue (seq rows) ─────────────────────────▶ Residual1.r

    Residual1 ─▶ LN1 ─▶ Fork ─┬─▶ FFN1 ─▶ GELU ─▶ FFN2 ─▶ Residual2.x ─▶ LN2 ─▶ o
                              └─▶ Queue (FFN rows in flight) ──▶ Residual2.r

Each linear stage is an engine (weights at elaboration) → gearbox → re-quantiser
(:class:`~.common.Linear`): the output-stationary GEMM, or with ``engine="gemv"`` the decode
GEMV (every multiplier busy on one token row). Every block is configured from the one
:class:`LayerConfig`, so the output equals :func:`llmloom.sim.golden.layers.layer_bitexact`
bit for bit, whatever the engine.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..blocks.attention import Attention
from ..blocks.norm import Norm
from ..blocks.residual import Residual
from ..numeric import INT8
from ..stream import Fork, Queue, row_layout
from .common import Ffn, Linear, attention_bypass_depth, check_layer_rtl, ffn_bypass_depth
from .config import LayerConfig, LayerWeights

__all__ = ["BertLayer"]


class BertLayer(wiring.Component):
    """One BERT encoder layer, W8A8.

    Parameters
    ----------
    cfg : LayerConfig
        Calibrated, ``arch="bert"``.
    weights : LayerWeights
        The int8 matrices, held in the linear engines' memories from elaboration.

    Members
    -------
    i : In(stream.Signature(row_layout(signed(8), lanes)))
        Input rows at ``cfg.scales.x``, ``d_model / lanes`` beats each; a tensor is exactly
        ``seq`` rows (bidirectional attention attends to all ``seq`` keys), ``end`` on its last
        beat.
    o : Out(stream.Signature(row_layout(signed(8), lanes)))
        Output rows at ``cfg.y_scale``, ``last`` per row, ``end`` on a tensor's last beat.
    clear : In(1)
        Plain strobe: empties the attention's key/value cache. Every tensor is a new sequence,
        so the layer clears it itself once a tensor has left the attention; this strobe is
        for a reset between tensors only.
    overflow : Out(1)
        Sticky: more than ``seq`` rows were offered to the attention.

    Timing and backpressure as :class:`~.gpt2.Gpt2Block`: the attention holds the whole
    tensor, the rest streams; the bypass queues make any stall pattern deadlock-free.
    """

    def __init__(self, cfg: LayerConfig, weights: LayerWeights):
        self._MustUse__silence = True
        check_layer_rtl(cfg, weights)
        if cfg.arch != "bert":
            raise ValueError(f"arch={cfg.arch!r}: BertLayer needs arch='bert'")
        self._MustUse__silence = False
        self.cfg, self.weights = cfg, weights
        beat = stream.Signature(row_layout(INT8.shape, cfg.lanes))
        super().__init__({"i": In(beat), "o": Out(beat), "clear": In(1), "overflow": Out(1)})

    def elaborate(self, platform):
        cfg, w = self.cfg, self.weights
        m = Module()
        beat = row_layout(INT8.shape, cfg.lanes)

        m.submodules.fork_x = fork_x = Fork(beat, 4)
        m.submodules.bypass1 = bypass1 = Queue(beat, attention_bypass_depth(cfg))
        m.submodules.attention = attn = Attention(cfg.attention)
        m.submodules.o_proj = o_proj = Linear(cfg, w, "o")
        m.submodules.residual1 = res1 = Residual(cfg.residual1)
        m.submodules.norm1 = norm1 = Norm(cfg.norm1)
        m.submodules.fork_n1 = fork_n1 = Fork(beat, 2)
        m.submodules.bypass2 = bypass2 = Queue(beat, ffn_bypass_depth(cfg))
        m.submodules.ffn = ffn = Ffn(cfg, w)
        m.submodules.residual2 = res2 = Residual(cfg.residual2)
        m.submodules.norm2 = norm2 = Norm(cfg.norm2)

        wiring.connect(m, wiring.flipped(self.i), fork_x.i)
        for k, name in enumerate("qkv"):
            m.submodules[f"{name}_proj"] = proj = Linear(cfg, w, name)
            wiring.connect(m, getattr(fork_x, f"o_{k}"), proj.i)
            wiring.connect(m, proj.o, getattr(attn, name))
        wiring.connect(m, fork_x.o_3, bypass1.i)
        wiring.connect(m, attn.o, o_proj.i)
        # the golden model's convention: the branch is x, the skip r
        wiring.connect(m, o_proj.o, res1.x)
        wiring.connect(m, bypass1.o, res1.r)
        wiring.connect(m, res1.o, norm1.i)
        wiring.connect(m, norm1.o, fork_n1.i)
        wiring.connect(m, fork_n1.o_0, ffn.i)
        wiring.connect(m, fork_n1.o_1, bypass2.i)
        wiring.connect(m, ffn.o, res2.x)
        wiring.connect(m, bypass2.o, res2.r)
        wiring.connect(m, res2.o, norm2.i)
        wiring.connect(m, norm2.o, wiring.flipped(self.o))

        # Every tensor is a whole sequence: empty the cache once a tensor has left the
        # attention, i.e. while `pos` reads seq. A K/V beat offered in that cycle is refused
        # (the cache is full) and its overflow flag is reset by the same clear, which wins.
        m.d.comb += [attn.clear.eq(self.clear | (attn.pos == cfg.seq)),
                     self.overflow.eq(attn.overflow)]
        return m
