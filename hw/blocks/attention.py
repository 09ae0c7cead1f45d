"""Multi-head attention with its KV cache, composed of the library's blocks.

Per tensor (a prefill chunk of ``l`` rows at positions ``pos .. pos + l − 1``, or a decode step
of one row at ``pos``) the block works in three phases:

1. **Input.** K and V rows are appended to the :class:`~.kvcache.KvCache` (the paper's
   synchronisation point: K and V complete before attention) while Q rows are written into a
   Q buffer of ``seq`` rows × ``d_model``. The phase ends when all three streams have carried
   their ``end`` beat.
2. **Heads**, one after the other. For head h the cache reads K_hᵀ into the Q·Kᵀ
   :class:`~.gemm.Gemm` and V_h into the P·V one through their ``weight`` streams; once both
   are loaded (so that no activation ever waits for weights) the Q_h rows stream from the Q
   buffer through::

       qk_gemm ─▶ Gearbox(qk_cols → lanes) ─▶ Requant(score) ─▶ Softmax(offset = pos)
               ─▶ Cast(uint8 → signed(9)) ─▶ pv_gemm ─▶ Gearbox(pv_cols → lanes)
               ─▶ Requant(out) ─▶ head-output buffer (columns of head h)

   The next head starts when the last output row of this one is in the buffer, so a weight
   load never meets a running array.
3. **Output**: the buffered rows, all heads concatenated, leave on ``o``; then ``pos``
   advances by ``l``.

Every block is configured from :class:`~.attention_config.AttentionConfig` (the softmax with
``runtime_offset``), so the result equals
:func:`llmloom.sim.golden.attention.attention_bitexact` ``(cfg, q, cache.k, cache.v,
q_offset=pos)`` bit for bit, ``cache`` holding every row appended since the last ``clear``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import ConfigError
from ..numeric import INT8
from ..stream import Cast, Gearbox, row_layout
from .attention_config import AttentionConfig
from .gemm import Gemm
from .kvcache import KvCache, KvCacheConfig
from .requant import Requant
from .softmax import Softmax

__all__ = ["Attention", "check_rtl"]


def _counter(n):
    return range(max(2, n))


def check_rtl(cfg):
    """:class:`ConfigError` unless the RTL can be built for ``cfg``: its gearboxes need
    ``qk_cols`` to divide ``seq`` and ``pv_cols`` to divide ``d_head`` (no padding lanes in
    the GEMM outputs), each one a multiple or a divisor of ``lanes``."""
    for name, cols, length, what in (("qk_cols", cfg.qk_cols, cfg.seq, "seq"),
                                     ("pv_cols", cfg.pv_cols, cfg.d_head, "d_head")):
        if length % cols:
            raise ConfigError(f"{name}={cols} does not divide {what}={length}; allowed: a "
                              f"divisor of {what} (the attention RTL)")
        if max(cols, cfg.lanes) % min(cols, cfg.lanes):
            raise ConfigError(f"{name}={cols} and lanes={cfg.lanes}: allowed: one a multiple "
                              "of the other (the attention RTL)")


class Attention(wiring.Component):
    """Multi-head scaled dot-product attention over an on-chip KV cache.

    Parameters
    ----------
    cfg : AttentionConfig

    Members
    -------
    q, k, v : In(stream.Signature(row_layout(signed(8), lanes)))
        The tensor's rows (``d_model / lanes`` beats each, beats counted), ``end`` on the
        last beat of each; the three carry the same number of rows ``l``. K and V rows are
        appended to the cache at positions ``pos ..``; a chunk that would pass ``seq`` is
        refused (ready stays low) and raises ``overflow``.
    o : Out(stream.Signature(row_layout(signed(8), lanes)))
        The attention output rows at ``out_scale``, ``last`` per row, ``end`` on the last.
    clear : In(1)
        Plain control strobe: a new sequence (``pos`` and the cache emptied). Assert it
        between tensors only.
    pos : Out(range(seq + 1))
        The position of the next tensor's first row (rows seen since ``clear``).
    overflow : Out(1)
        Sticky, from the cache: more than ``seq`` positions were offered.

    What a tensor may be is :meth:`AttentionConfig.check_call`'s contract: the RTL does not
    check it, and a bidirectional tensor of fewer than ``seq`` rows attends to the zero keys
    past the length as well (the golden model refuses that call).

    The three phases do not overlap (inputs are refused outside the input phase), so a
    tensor's cycles are the sum of its phases (:func:`llmloom.perf.cycles.attention_cycles`).
    Backpressure on ``o`` holds the output phase only.
    """

    def __init__(self, cfg: AttentionConfig):
        self._MustUse__silence = True
        if not isinstance(cfg, AttentionConfig):
            raise TypeError(f"cfg must be an AttentionConfig, not {cfg!r}")
        check_rtl(cfg)
        self._MustUse__silence = False
        self.cfg = cfg
        beat = stream.Signature(row_layout(INT8.shape, cfg.lanes))
        super().__init__({
            "q": In(beat), "k": In(beat), "v": In(beat), "o": Out(beat),
            "clear": In(1),
            "pos": Out(range(cfg.seq + 1)),
            "overflow": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        LN, S, H = cfg.lanes, cfg.seq, cfg.heads
        DB = cfg.d_model // LN           # beats per row
        HB = cfg.d_head // LN            # beats per head's columns

        # ---- the blocks ------------------------------------------------------------------
        m.submodules.cache = cache = KvCache(KvCacheConfig.of(cfg))
        m.submodules.qk = qk = Gemm(cfg.qk_gemm)
        m.submodules.pv = pv = Gemm(cfg.pv_gemm)
        m.submodules.score_gear = g1 = Gearbox(signed(32), cfg.qk_cols, LN, S)
        m.submodules.score_requant = sreq = Requant(cfg.score_requant)
        smax_cfg = cfg.softmax(0)
        if cfg.causal:
            smax_cfg = smax_cfg.replace(runtime_offset=True)
        m.submodules.softmax = smax = Softmax(smax_cfg)
        m.submodules.cast = cast = Cast(unsigned(8), signed(9), LN)
        m.submodules.out_gear = g2 = Gearbox(signed(32), cfg.pv_cols, LN, cfg.d_head)
        m.submodules.out_requant = oreq = Requant(cfg.out_requant)
        wiring.connect(m, cache.o_kt, qk.weight)
        wiring.connect(m, cache.o_vh, pv.weight)
        wiring.connect(m, qk.o, g1.i)
        wiring.connect(m, g1.o, sreq.i)
        wiring.connect(m, sreq.o, smax.i)
        wiring.connect(m, smax.o, cast.i)
        wiring.connect(m, pv.o, g2.i)
        wiring.connect(m, g2.o, oreq.i)

        pos = Signal(range(S + 1))
        rows = Signal(range(S + 1))      # l, rows of the current tensor
        m.d.comb += [self.pos.eq(pos), self.overflow.eq(cache.overflow)]
        if cfg.causal:
            m.d.comb += smax.offset.eq(pos)

        # ---- phase 1: input ---------------------------------------------------------------
        phase_in = Signal(init=1)
        q_done, k_done, v_done = Signal(), Signal(), Signal()
        for port, done, dst in ((self.k, k_done, cache.k), (self.v, v_done, cache.v)):
            open_ = phase_in & ~done
            m.d.comb += [dst.valid.eq(port.valid & open_), dst.payload.eq(port.payload),
                         port.ready.eq(dst.ready & open_)]
            with m.If(port.valid & port.ready & port.payload.end):
                m.d.sync += done.eq(1)

        beat_shape = data.ArrayLayout(INT8.shape, LN)
        m.submodules.qbuf = qbuf = memory.Memory(shape=beat_shape, depth=S * DB, init=[])
        q_wr = qbuf.write_port()
        q_rd = qbuf.read_port()
        q_beat = Signal(_counter(DB))
        q_base = Signal(range(S * DB + 1))
        q_open = phase_in & ~q_done
        m.d.comb += [self.q.ready.eq(q_open & (rows != S)), q_wr.addr.eq(q_base + q_beat),
                     q_wr.data.eq(self.q.payload.data),
                     q_wr.en.eq(self.q.valid & self.q.ready)]
        with m.If(self.q.valid & self.q.ready):
            with m.If(q_beat == DB - 1):
                m.d.sync += [q_beat.eq(0), q_base.eq(q_base + DB), rows.eq(rows + 1)]
                with m.If(self.q.payload.end):
                    m.d.sync += q_done.eq(1)
            with m.Else():
                m.d.sync += q_beat.eq(q_beat + 1)

        # ---- phase 2: heads ----------------------------------------------------------------
        phase_heads = Signal()
        head = Signal(_counter(H))
        requested = Signal()
        kt_loaded = Signal()
        vh_loaded = Signal()
        with m.If(phase_in & q_done & k_done & v_done):
            m.d.sync += [phase_in.eq(0), phase_heads.eq(1), q_done.eq(0), k_done.eq(0),
                         v_done.eq(0)]
        m.d.comb += [cache.rd.valid.eq(phase_heads & ~requested),
                     cache.rd.payload.data[0].eq(head)]
        with m.If(cache.rd.valid & cache.rd.ready):
            m.d.sync += requested.eq(1)
        with m.If(qk.weight.valid & qk.weight.ready & qk.weight.payload.end):
            m.d.sync += kt_loaded.eq(1)
        with m.If(pv.weight.valid & pv.weight.ready & pv.weight.payload.end):
            m.d.sync += vh_loaded.eq(1)

        # Q_h rows from the Q buffer into qk's activations, once K_hᵀ and V_h are in
        qr_active = Signal()
        qr_started = Signal()
        qr_row = Signal(range(S + 1))
        qr_base = Signal(range(S * DB + 1))
        qr_j = Signal(_counter(HB))
        head_base = Signal(range(H * HB + 1))
        # (V_h first too, so that P never waits at pv's input: see the module text)
        with m.If(kt_loaded & vh_loaded & ~qr_started):
            m.d.sync += [qr_active.eq(1), qr_started.eq(1)]
        q_adv = ~qk.act.valid | qk.act.ready
        qa_last, qa_end = Signal(), Signal()
        m.d.comb += [q_rd.addr.eq(qr_base + head_base + qr_j), q_rd.en.eq(q_adv),
                     qk.act.payload.data.eq(q_rd.data), qk.act.payload.last.eq(qa_last),
                     qk.act.payload.end.eq(qa_end)]
        with m.If(q_adv):
            row_end = qr_j == HB - 1
            m.d.sync += [qk.act.valid.eq(qr_active), qa_last.eq(row_end),
                         qa_end.eq(row_end & (qr_row == rows - 1))]
            with m.If(qr_active):
                with m.If(row_end):
                    m.d.sync += qr_j.eq(0)
                    with m.If(qr_row == rows - 1):
                        m.d.sync += [qr_row.eq(0), qr_base.eq(0), qr_active.eq(0)]
                    with m.Else():
                        m.d.sync += [qr_row.eq(qr_row + 1), qr_base.eq(qr_base + DB)]
                with m.Else():
                    m.d.sync += qr_j.eq(qr_j + 1)

        wiring.connect(m, cast.o, pv.act)

        # head outputs into the output buffer, at the head's columns
        m.submodules.obuf = obuf = memory.Memory(shape=beat_shape, depth=S * DB, init=[])
        o_wr = obuf.write_port()
        o_rd = obuf.read_port()
        ow_row = Signal(range(S + 1))
        ow_base = Signal(range(S * DB + 1))
        ow_j = Signal(_counter(HB))
        m.d.comb += [oreq.o.ready.eq(1), o_wr.addr.eq(ow_base + head_base + ow_j),
                     o_wr.data.eq(oreq.o.payload.data), o_wr.en.eq(oreq.o.valid)]
        head_done = Signal()
        with m.If(oreq.o.valid):
            with m.If(ow_j == HB - 1):
                m.d.sync += ow_j.eq(0)
                with m.If(ow_row == rows - 1):
                    m.d.sync += [ow_row.eq(0), ow_base.eq(0)]
                    m.d.comb += head_done.eq(1)
                with m.Else():
                    m.d.sync += [ow_row.eq(ow_row + 1), ow_base.eq(ow_base + DB)]
            with m.Else():
                m.d.sync += ow_j.eq(ow_j + 1)

        phase_out = Signal()
        with m.If(head_done):
            m.d.sync += [requested.eq(0), kt_loaded.eq(0), vh_loaded.eq(0), qr_started.eq(0)]
            with m.If(head == H - 1):
                m.d.sync += [head.eq(0), head_base.eq(0), phase_heads.eq(0),
                             phase_out.eq(1)]
            with m.Else():
                m.d.sync += [head.eq(head + 1), head_base.eq(head_base + HB)]

        # ---- phase 3: output ---------------------------------------------------------------
        e_active = Signal()
        e_row = Signal(range(S + 1))
        e_beat = Signal(_counter(DB))
        e_addr = Signal(range(S * DB + 1))
        with m.If(phase_out & ~e_active):
            m.d.sync += [e_active.eq(1), phase_out.eq(0)]
        e_adv = ~self.o.valid | self.o.ready
        eo_last, eo_end = Signal(), Signal()
        e_finish = Signal()
        m.d.comb += [o_rd.addr.eq(e_addr), o_rd.en.eq(e_adv),
                     self.o.payload.data.eq(o_rd.data), self.o.payload.last.eq(eo_last),
                     self.o.payload.end.eq(eo_end)]
        with m.If(e_adv):
            row_end = e_beat == DB - 1
            m.d.sync += [self.o.valid.eq(e_active), eo_last.eq(row_end),
                         eo_end.eq(row_end & (e_row == rows - 1))]
            with m.If(e_active):
                m.d.sync += e_addr.eq(e_addr + 1)
                with m.If(row_end):
                    m.d.sync += e_beat.eq(0)
                    with m.If(e_row == rows - 1):
                        m.d.sync += [e_row.eq(0), e_addr.eq(0), e_active.eq(0)]
                        m.d.comb += e_finish.eq(1)
                    with m.Else():
                        m.d.sync += e_row.eq(e_row + 1)
                with m.Else():
                    m.d.sync += e_beat.eq(e_beat + 1)
        # the next tensor may come in as soon as the last row is being read out
        with m.If(e_finish):
            m.d.sync += [pos.eq(pos + rows), rows.eq(0), q_base.eq(0), phase_in.eq(1)]

        with m.If(self.clear):
            m.d.sync += pos.eq(0)
        m.d.comb += cache.clear.eq(self.clear)
        return m

