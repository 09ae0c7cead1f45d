"""The GPT-2 block (pre-norm, causal) composed of the library's blocks::

    i ─▶ Fork ─┬─▶ LN1 ─▶ Fork ─┬─▶ Q ─▶ attention.q
               │                ├─▶ K ─▶ attention.k        attention.o ─▶ O ─▶ Residual1.x
               │                └─▶ V ─▶ attention.v
               └─▶ Queue (seq rows) ───────────────────────────────────────▶ Residual1.r

    Residual1 ─▶ Fork ─┬─▶ LN2 ─▶ FFN1 ─▶ GELU ─▶ FFN2 ─▶ Residual2.x ─▶ o
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

__all__ = ["Gpt2Block"]


class Gpt2Block(wiring.Component):
    """One GPT-2 transformer block, W8A8, with its KV cache on chip.

    Parameters
    ----------
    cfg : LayerConfig
        Calibrated, ``arch="gpt2"``.
    weights : LayerWeights
        The int8 matrices, held in the linear engines' memories from elaboration.

    Members
    -------
    i : In(stream.Signature(row_layout(signed(8), lanes)))
        Input rows at ``cfg.scales.x`` (``d_model / lanes`` beats each), ``end`` on the last
        beat of a tensor: a prefill chunk of rows at positions ``pos ..``, or one decode row.
    o : Out(stream.Signature(row_layout(signed(8), lanes)))
        Output rows at ``cfg.y_scale``, ``last`` per row, ``end`` on a tensor's last beat.
    clear : In(1)
        Plain strobe: start a new sequence (empties the KV cache). Between tensors only.
    pos : Out(range(seq + 1))
        Rows of the sequence the attention has taken so far.
    overflow : Out(1)
        Sticky: more than ``seq`` positions were offered (the chunk is refused).

    Timing: the attention holds a whole tensor before it emits (its three phases), so a
    tensor's first output row leaves after all its rows went through LN1, the Q/K/V engines
    and the attention's heads; everything else streams row by row at one beat per cycle,
    the engines permitting (a GEMM waits for a token tile; a GEMV takes ``n_tiles × k_words``
    cycles per row). Backpressure on ``o`` propagates back to ``i`` without loss;
    the two bypass queues are sized so that no stall pattern can deadlock the forks
    (:func:`~.common.attention_bypass_depth`, :func:`~.common.ffn_bypass_depth`).
    """

    def __init__(self, cfg: LayerConfig, weights: LayerWeights):
        self._MustUse__silence = True
        check_layer_rtl(cfg, weights)
        if cfg.arch != "gpt2":
            raise ValueError(f"arch={cfg.arch!r}: Gpt2Block needs arch='gpt2'")
        self._MustUse__silence = False
        self.cfg, self.weights = cfg, weights
        beat = stream.Signature(row_layout(INT8.shape, cfg.lanes))
        super().__init__({"i": In(beat), "o": Out(beat), "clear": In(1),
                          "pos": Out(range(cfg.seq + 1)), "overflow": Out(1)})

    def elaborate(self, platform):
        cfg, w = self.cfg, self.weights
        m = Module()
        beat = row_layout(INT8.shape, cfg.lanes)

        m.submodules.fork_x = fork_x = Fork(beat, 2)
        m.submodules.bypass1 = bypass1 = Queue(beat, attention_bypass_depth(cfg))
        m.submodules.norm1 = norm1 = Norm(cfg.norm1)
        m.submodules.fork_n1 = fork_n1 = Fork(beat, 3)
        m.submodules.attention = attn = Attention(cfg.attention)
        m.submodules.o_proj = o_proj = Linear(cfg, w, "o")
        m.submodules.residual1 = res1 = Residual(cfg.residual1)
        m.submodules.fork_r1 = fork_r1 = Fork(beat, 2)
        m.submodules.bypass2 = bypass2 = Queue(beat, ffn_bypass_depth(cfg))
        m.submodules.norm2 = norm2 = Norm(cfg.norm2)
        m.submodules.ffn = ffn = Ffn(cfg, w)
        m.submodules.residual2 = res2 = Residual(cfg.residual2)

        wiring.connect(m, wiring.flipped(self.i), fork_x.i)
        wiring.connect(m, fork_x.o_0, norm1.i)
        wiring.connect(m, fork_x.o_1, bypass1.i)
        wiring.connect(m, norm1.o, fork_n1.i)
        for k, name in enumerate("qkv"):
            m.submodules[f"{name}_proj"] = proj = Linear(cfg, w, name)
            wiring.connect(m, getattr(fork_n1, f"o_{k}"), proj.i)
            wiring.connect(m, proj.o, getattr(attn, name))
        wiring.connect(m, attn.o, o_proj.i)
        # the golden model's convention: the branch is x, the skip r
        wiring.connect(m, o_proj.o, res1.x)
        wiring.connect(m, bypass1.o, res1.r)
        wiring.connect(m, res1.o, fork_r1.i)
        wiring.connect(m, fork_r1.o_0, norm2.i)
        wiring.connect(m, fork_r1.o_1, bypass2.i)
        wiring.connect(m, norm2.o, ffn.i)
        wiring.connect(m, ffn.o, res2.x)
        wiring.connect(m, bypass2.o, res2.r)
        wiring.connect(m, res2.o, wiring.flipped(self.o))
        m.d.comb += [attn.clear.eq(self.clear), self.pos.eq(attn.pos),
                     self.overflow.eq(attn.overflow)]
        return m
