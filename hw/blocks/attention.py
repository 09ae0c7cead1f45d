"""Multi-head attention with its KV cache, composed of the library's blocks.

Per tensor (a prefill chunk of ``l`` rows at positions ``pos .. pos + l − 1``, or a decode step
of one row at ``pos``) the block works in three phases:

1. **Input.** K and V rows are appended to the KV cache (the paper's synchronisation point: K
   and V complete before attention) while Q rows are written into a Q buffer of ``seq`` rows ×
   ``d_model``. The phase ends when all three streams have carried their ``end`` beat.
2. **Heads**, ``head_engines`` (E) at once in ``head_rounds = heads / E`` rounds. Engine ``e``
   owns the contiguous head group ``e·R .. e·R + R − 1`` (R = ``head_rounds``), i.e. the
   features ``e·d_model/E ..`` of Q and the output and ``e·kv_width/E ..`` of K and V (with
   grouped-query attention, ``kv_heads/E`` KV heads: those its query heads read, query head
   ``h`` reading KV head ``h // kv_group``; E divides ``kv_heads``), and computes head
   ``e·R + r`` in round ``r``. Each engine has its own :class:`~.kvcache.KvCache` (the cache
   banked by head group: an input beat lies in one head, so it is routed whole to its
   group's cache, and each bank is the cache of a ``d_model/E``-wide, R-head attention), its
   own bank of the Q buffer
   and of the head-output buffer, and its own copy of the blocks of one head. In a round
   every engine's cache reads K_hᵀ into its Q·Kᵀ :class:`~.gemm.Gemm` and V_h into its P·V
   one through their ``weight`` streams; once both are loaded (so that no activation ever
   waits for weights) the Q_h rows stream from the engine's Q bank through::

       qk_gemm ─▶ Gearbox(qk_cols → lanes) ─▶ Requant(score) ─▶ Softmax(offset = pos)
               ─▶ Cast(uint10 → signed(11)) ─▶ pv_gemm ─▶ Gearbox(pv_cols → lanes)
               ─▶ Requant(out) ─▶ the engine's output bank (columns of head h)

   The next round starts when every engine has the last output row of its head in its bank,
   so a weight load never meets a running array. The engines are identical and start
   together, so they run in lock step: a round takes exactly one head's time, whatever E.
3. **Output**: the buffered rows leave on ``o``, heads concatenated (each row's beats from
   the engines' banks in turn); then ``pos`` advances by ``l`` (causal), or the caches
   empty themselves (bidirectional: a tensor is a whole sentence of ``l <= seq`` tokens,
   whose queries attend to its ``l`` keys through the softmax's key padding mask).

Every block is configured from :class:`~.attention_config.AttentionConfig` (the softmax is
its ``softmax_block``: ``runtime_offset`` or ``runtime_keys``), so the result equals
:func:`llmloom.sim.golden.attention.attention_bitexact` ``(cfg, q, cache.k, cache.v,
q_offset=pos)`` bit for bit, ``cache`` holding every row appended since the last ``clear``
(bidirectional: the tensor's own rows), for every ``head_engines``. With one engine the RTL
is the heads-in-sequence design (its submodules keep their names: ``cache``, ``qk``, ...;
with more they are ``e0_cache``, ...).
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import ConfigError
from ..numeric import INT8
from ..stream import Cast, Gearbox, row_layout
from .attention_config import AttentionConfig
from .gemm import Gemm
from .kvcache import KvCache, KvCacheConfig
from .loadable import constants_of
from .requant import Requant
from .softmax import PROB, Softmax

__all__ = ["Attention", "cache_config", "check_rtl", "check_spill"]


def _counter(n):
    return range(max(2, n))


def _any(signals):
    signals = list(signals)
    return signals[0] if len(signals) == 1 else Cat(*signals).any()


def _all(signals):
    signals = list(signals)
    return signals[0] if len(signals) == 1 else Cat(*signals).all()


def _select(m, sel, target, sources):
    """``target = sources[sel]`` as a complete case (the last source is the default, so
    Verilator sees no incomplete case; with one source, a wire)."""
    if len(sources) == 1:
        m.d.comb += target.eq(sources[0])
        return
    with m.Switch(sel):
        for e, src in enumerate(sources[:-1]):
            with m.Case(e):
                m.d.comb += target.eq(src)
        with m.Default():
            m.d.comb += target.eq(sources[-1])


def check_rtl(cfg):
    """:class:`ConfigError` unless the RTL can be built for ``cfg``: its gearboxes need
    ``qk_cols`` to divide ``seq`` and ``pv_cols`` to divide ``d_head`` (no padding lanes in
    the GEMM outputs), each one a multiple or a divisor of ``lanes``. Where ``qk_cols`` equals
    ``lanes`` the score gearbox is a wire and ``seq`` may be any length (the Q·Kᵀ output rows
    and the score rows then share their padded last beat); a ``seq`` that ``lanes`` does not
    divide needs that."""
    if cfg.seq % cfg.lanes and cfg.qk_cols != cfg.lanes:
        raise ConfigError(f"qk_cols={cfg.qk_cols} with seq={cfg.seq} not a multiple of "
                          f"lanes={cfg.lanes}; allowed: qk_cols={cfg.lanes} (= lanes: the "
                          "score rows keep the Q·Kᵀ array's padded last beat)")
    for name, cols, length, what in (("qk_cols", cfg.qk_cols, cfg.seq, "seq"),
                                     ("pv_cols", cfg.pv_cols, cfg.d_head, "d_head")):
        if length % cols and cols != cfg.lanes:
            raise ConfigError(f"{name}={cols} does not divide {what}={length}; allowed: a "
                              f"divisor of {what}, or {name}={cfg.lanes} (= lanes; the "
                              "attention RTL)")
        if max(cols, cfg.lanes) % min(cols, cfg.lanes):
            raise ConfigError(f"{name}={cols} and lanes={cfg.lanes}: allowed: one a multiple "
                              "of the other (the attention RTL)")


def cache_config(cfg):
    """The :class:`~.kvcache.KvCacheConfig` of each head engine's cache of attention ``cfg``
    (its head group's: ``engine_width`` wide, ``head_rounds`` heads)."""
    return KvCacheConfig.of(cfg).replace(d_model=cfg.engine_width, heads=cfg.head_rounds,
                                         kv_heads=cfg.kv_heads // cfg.head_engines)


def check_spill(cfg):
    """:class:`ConfigError` unless attention ``cfg`` can keep its KV cache off chip (a
    working cache, :class:`Attention` with ``spill``): causal (a bidirectional cache lives
    one sentence), one head engine (one cache), and the cache's fill/spill beats
    (:meth:`~.kvcache.KvCacheConfig.check_spill`)."""
    if not cfg.causal:
        raise ConfigError("causal=False: a bidirectional attention's cache holds one sentence; "
                          "allowed: an off-chip KV cache with causal attention only")
    if cfg.head_engines != 1:
        raise ConfigError(f"head_engines={cfg.head_engines}: an off-chip KV cache fills one "
                          "working cache; allowed: head_engines=1")
    KvCacheConfig.of(cfg).check_spill()


class Attention(wiring.Component):
    """Multi-head scaled dot-product attention over an on-chip KV cache.

    Parameters
    ----------
    cfg : AttentionConfig
    loads : ConstantScope, optional
        The score and output re-quantisers' and the softmax's numbers written at run time
        (:meth:`constants`, :mod:`~.loadable`).
    layers : int
        KV caches of this many layers (one region each, :class:`~.kvcache.KvCache`), and a
        ``pos`` per layer: one block serves every layer of a model in turn.
    spill : bool
        The KV cache lives off chip: the cache holds one layer's region, the working cache
        (``KvCache(spill=True)``), with lengths per layer; its ``fill``, ``spill`` and
        ``o_spill`` are this block's, and ``kv_length`` its ``length``. Causal, one head
        engine, ``pv_cols`` = ``lanes``.

    Members
    -------
    q, k, v : In(stream.Signature(row_layout(signed(8), lanes)))
        The tensor's rows (``d_model / lanes`` beats each for q, ``kv_width / lanes`` for k
        and v; beats counted), ``end`` on the last beat of each; the three carry the same
        number of rows ``l``. K and V rows are
        appended to the cache at positions ``pos ..``; a chunk that would pass ``seq`` is
        refused (ready stays low) and raises ``overflow``.
    o : Out(stream.Signature(row_layout(signed(out_width), lanes)))
        The attention output rows at ``out_scale`` (int8, or int16 with ``out_width`` 16),
        ``last`` per row, ``end`` on the last.
    clear : In(1)
        Plain control strobe: a new sequence (``pos`` and the cache emptied). Assert it
        between tensors only.
    pos : Out(range(seq + 1))
        Causal: the position of the next tensor's first row (rows seen since ``clear``).
        Bidirectional: 0 (every tensor is a whole sentence).
    overflow : Out(1)
        Sticky, from the cache: more than ``seq`` positions were offered.
    layer : In(range(layers))
        Only with ``layers`` > 1: the layer whose cache and ``pos`` the tensor uses; held
        from the tensor's first beat in until its last beat has left ``o``. ``clear``
        starts every layer's sequence anew.

    What a tensor may be is :meth:`AttentionConfig.check_call`'s contract (the RTL does not
    check it). Bidirectional, a tensor of ``n <= seq`` rows is a sentence: its queries attend
    to its ``n`` keys (the softmax's key padding mask, fed the row count), and the caches
    empty themselves in the cycle its last output row is read, ready for the next sentence.

    The three phases do not overlap (inputs are refused outside the input phase), so a
    tensor's cycles are the sum of its phases (:func:`llmloom.perf.cycles.attention_cycles`).
    Backpressure on ``o`` holds the output phase only.

    Timing (stall-free, cycles from the first input beat, measured on the simulator): the
    caches' read requests are taken ``max(l·d_model/lanes, l·v_row_cycles) + 1`` cycles in
    (the input phase); the K_hᵀ / V_h loads of a round run in parallel in every engine, as in
    one :class:`~.kvcache.KvCache` (``kt_beats``, ``vh_beats``: both independent of E); the
    round then runs one head's chain, and the next round's requests are taken the cycle after
    its last output row is written, so every round takes one head's time ``T`` (for 4 heads,
    d_model 16, seq 8, lanes 2, 2×4 Q·Kᵀ and 2×2 P·V arrays: ``T`` = 96, 134, 152 cycles for
    ``l`` = 1, 5, 8); the first output beat follows 3 cycles after the last round, then
    ``l·d_model/lanes`` beats, one per cycle. So a tensor takes the heads-in-sequence cycles
    minus ``(heads − head_rounds)·T``: the timing of one engine with ``head_rounds`` heads.
    """

    def __init__(self, cfg: AttentionConfig, *, loads=None, layers=1, spill=False):
        self._MustUse__silence = True
        if not isinstance(cfg, AttentionConfig):
            raise TypeError(f"cfg must be an AttentionConfig, not {cfg!r}")
        check_rtl(cfg)
        if spill:
            check_spill(cfg)
        self._MustUse__silence = False
        if not isinstance(layers, int) or layers < 1:
            raise ValueError(f"layers={layers!r}; allowed: an int >= 1")
        self.cfg, self._loads, self.layers, self.spill_rows = cfg, loads, layers, bool(spill)
        beat = stream.Signature(row_layout(INT8.shape, cfg.lanes))
        out_beat = stream.Signature(row_layout(signed(cfg.out_width), cfg.lanes))
        extra = {"layer": In(range(layers))} if layers > 1 else {}
        if spill:
            cache = KvCache(self.cache_config(), layers=layers, spill=True)
            cache._MustUse__silence = True          # only its signature is used here
            ports = cache.signature.members
            extra |= {n: ports[n] for n in ("fill", "spill", "o_spill")}
            extra["kv_length"] = Out(range(cfg.seq + 1))
        super().__init__({**extra,
            "q": In(beat), "k": In(beat), "v": In(beat), "o": Out(out_beat),
            "clear": In(1),
            "pos": Out(range(cfg.seq + 1)),
            "overflow": Out(1),
        })

    def cache_config(self):
        """The :class:`~.kvcache.KvCacheConfig` of each head engine's cache
        (:func:`cache_config`)."""
        return cache_config(self.cfg)

    def _parts(self):
        """The blocks holding calibrated numbers, by submodule name (each engine has its own,
        all loaded alike)."""
        cfg = self.cfg
        return {"score_requant": lambda loads: Requant(cfg.score_requant, loads=loads),
                "softmax": lambda loads: Softmax(cfg.softmax_block, loads=loads),
                "out_requant": lambda loads: Requant(cfg.out_requant, loads=loads)}

    def constants(self):
        """The calibrated memories (:class:`~.loadable.Constant`) of the score and output
        re-quantisers and the softmax's exp table, named ``score_requant.consts``..., each
        written into every head engine's copy at once with ``loads``."""
        return [dataclasses.replace(c, name=f"{name}.{c.name}")
                for name, make in self._parts().items() for c in constants_of(make(None))]

    def _part(self, name):
        loads = None if self._loads is None else self._loads.scope(name)
        return self._parts()[name](loads)

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        LN, S, E, R = cfg.lanes, cfg.seq, cfg.head_engines, cfg.head_rounds
        EB = cfg.engine_width // LN      # beats per row of one engine's head group
        HB = cfg.d_head // LN            # beats per head's columns
        KB = cfg.kv_width // E // LN     # beats per K or V row of one engine's KV heads
        beat_shape = data.ArrayLayout(INT8.shape, LN)
        out_shape = data.ArrayLayout(signed(cfg.out_width), LN)
        cache_cfg = self.cache_config()

        if self.layers == 1:
            pos = Signal(range(S + 1))
            positions = [pos]
        else:       # each layer's sequence position, the selected layer's in use
            positions = [Signal(range(S + 1), name=f"pos_l{n}") for n in range(self.layers)]
            pos = Array(positions)[self.layer]
        rows = Signal(range(S + 1))      # l, rows of the current tensor
        phase_in = Signal(init=1)
        phase_heads = Signal()
        phase_out = Signal()
        rnd = Signal(_counter(R))        # the round: engine e computes head e·R + rnd
        head_base = Signal(range(R * HB + 1))      # rnd·HB: the head's beats in a group row
        m.d.comb += self.pos.eq(pos)

        def splitter(take, EB=EB):
            """The engine (``bank``) and the beat within that engine's group (``sub``) of a row
            stream's current beat (``EB`` beats per group), and whether it is the row's last;
            advanced on ``take``."""
            bank, sub, row_end = Signal(_counter(E)), Signal(_counter(EB)), Signal()
            m.d.comb += row_end.eq((sub == EB - 1) & (bank == E - 1))
            with m.If(take):
                with m.If(sub == EB - 1):
                    m.d.sync += [sub.eq(0), bank.eq(Mux(bank == E - 1, 0, bank + 1))]
                with m.Else():
                    m.d.sync += sub.eq(sub + 1)
            return bank, sub, row_end

        # ---- the engines: each its head group's cache, Q and output banks, and blocks ------
        engines = [self._engine(m, e, cache_cfg, beat_shape, out_shape, phase_heads, rnd,
                                head_base, rows, pos) for e in range(E)]
        m.d.comb += self.overflow.eq(_any(en.cache.overflow for en in engines))

        # ---- phase 1: input ---------------------------------------------------------------
        q_done, k_done, v_done = Signal(), Signal(), Signal()
        splitters = []
        for port, done, name in ((self.k, k_done, "k"), (self.v, v_done, "v")):
            open_ = phase_in & ~done
            bank, _, _ = split = splitter(port.valid & port.ready, KB)
            splitters.append(split)
            for e, en in enumerate(engines):
                dst = getattr(en.cache, name)
                m.d.comb += [dst.valid.eq(port.valid & open_ & (bank == e)),
                             dst.payload.eq(port.payload)]
            _select(m, bank, port.ready,
                    [getattr(en.cache, name).ready & open_ for en in engines])
            with m.If(port.valid & port.ready & port.payload.end):
                m.d.sync += done.eq(1)

        q_take = self.q.valid & self.q.ready
        q_bank, q_sub, q_row_end = splitter(q_take)
        q_base = Signal(range(S * EB + 1))
        q_open = phase_in & ~q_done
        m.d.comb += self.q.ready.eq(q_open & (rows != S))
        for e, en in enumerate(engines):
            m.d.comb += [en.q_wr.addr.eq(q_base + q_sub), en.q_wr.data.eq(self.q.payload.data),
                         en.q_wr.en.eq(q_take & (q_bank == e))]
        with m.If(q_take & q_row_end):
            m.d.sync += [q_base.eq(q_base + EB), rows.eq(rows + 1)]
            with m.If(self.q.payload.end):
                m.d.sync += q_done.eq(1)

        # ---- phase 2: heads, in rounds of E (the engines' own control is in _engine) -------
        with m.If(phase_in & q_done & k_done & v_done):
            m.d.sync += [phase_in.eq(0), phase_heads.eq(1), q_done.eq(0), k_done.eq(0),
                         v_done.eq(0)]
        # the round ends when every engine has its head's last output row in its bank
        round_done = Signal()
        m.d.comb += round_done.eq(_all(en.finished | en.head_done for en in engines))
        with m.If(round_done):
            m.d.sync += [flag.eq(0) for en in engines for flag in en.flags]
            with m.If(rnd == R - 1):
                m.d.sync += [rnd.eq(0), head_base.eq(0), phase_heads.eq(0), phase_out.eq(1)]
            with m.Else():
                m.d.sync += [rnd.eq(rnd + 1), head_base.eq(head_base + HB)]

        # ---- phase 3: output, each row's beats from the engines' banks in turn --------------
        e_active = Signal()
        e_row = Signal(range(S + 1))
        e_bank = Signal(_counter(E))
        e_sub = Signal(_counter(EB))
        e_base = Signal(range(S * EB + 1))
        with m.If(phase_out & ~e_active):
            m.d.sync += [e_active.eq(1), phase_out.eq(0)]
        e_adv = ~self.o.valid | self.o.ready
        eo_last, eo_end = Signal(), Signal()
        eo_bank = Signal(_counter(E))            # the bank of the beat on o (read latency 1)
        e_finish = Signal()
        for en in engines:
            m.d.comb += [en.o_rd.addr.eq(e_base + e_sub), en.o_rd.en.eq(e_adv)]
        _select(m, eo_bank, self.o.payload.data, [en.o_rd.data for en in engines])
        m.d.comb += [self.o.payload.last.eq(eo_last), self.o.payload.end.eq(eo_end)]
        with m.If(e_adv):
            row_end = (e_sub == EB - 1) & (e_bank == E - 1)
            m.d.sync += [self.o.valid.eq(e_active), eo_last.eq(row_end),
                         eo_end.eq(row_end & (e_row == rows - 1)), eo_bank.eq(e_bank)]
            with m.If(e_active):
                with m.If(e_sub == EB - 1):
                    m.d.sync += e_sub.eq(0)
                    with m.If(e_bank == E - 1):
                        m.d.sync += [e_bank.eq(0), e_base.eq(e_base + EB)]
                        with m.If(e_row == rows - 1):
                            m.d.sync += [e_row.eq(0), e_base.eq(0), e_active.eq(0)]
                            m.d.comb += e_finish.eq(1)
                        with m.Else():
                            m.d.sync += e_row.eq(e_row + 1)
                    with m.Else():
                        m.d.sync += e_bank.eq(e_bank + 1)
                with m.Else():
                    m.d.sync += e_sub.eq(e_sub + 1)
        # the next tensor may come in as soon as the last row is being read out
        with m.If(e_finish):
            m.d.sync += [rows.eq(0), q_base.eq(0), phase_in.eq(1)]
            if cfg.causal:
                m.d.sync += pos.eq(pos + rows)
        # Bidirectional: every tensor is a whole sentence, so the caches empty themselves as
        # it leaves (no K/V beat is taken in that cycle: the input phase is closed) and pos
        # stays 0.
        auto_clear = e_finish if not cfg.causal else 0

        with m.If(self.clear):
            m.d.sync += [p.eq(0) for p in positions]
            # (rows are whole between tensors; reset anyway, as the cache resets its own)
            m.d.sync += [sig.eq(0) for split in splitters for sig in split[:2]]
        for en in engines:
            m.d.comb += en.cache.clear.eq(self.clear | auto_clear)
        return m

    def _engine(self, m, e, cache_cfg, beat_shape, out_shape, phase_heads, rnd, head_base,
                rows, pos):
        """Engine ``e``: its head group's cache, Q bank and output bank, the blocks of one
        head, the request of the round's K_hᵀ / V_h and the Q_h / output walks. Its
        submodules are prefixed ``e{e}_`` (no prefix with one engine)."""
        cfg = self.cfg
        LN, S = cfg.lanes, cfg.seq
        EB = cfg.engine_width // LN
        HB = cfg.d_head // LN
        pre = "" if cfg.head_engines == 1 else f"e{e}_"

        def add(name, block):
            m.submodules[pre + name] = block
            return block

        cache = add("cache", KvCache(cache_cfg, layers=self.layers, spill=self.spill_rows))
        if self.layers > 1:
            m.d.comb += cache.layer.eq(self.layer)
        if self.spill_rows:
            wiring.connect(m, wiring.flipped(self.fill), cache.fill)
            wiring.connect(m, wiring.flipped(self.spill), cache.spill)
            wiring.connect(m, cache.o_spill, wiring.flipped(self.o_spill))
            m.d.comb += self.kv_length.eq(cache.length)
        qk = add("qk", Gemm(cfg.qk_gemm))
        pv = add("pv", Gemm(cfg.pv_gemm))
        g1 = add("score_gear", Gearbox(signed(32), cfg.qk_cols, LN, S))
        sreq = add("score_requant", self._part("score_requant"))
        smax = add("softmax", self._part("softmax"))
        cast = add("cast", Cast(PROB.shape, signed(PROB.width + 1), LN))
        g2 = add("out_gear", Gearbox(signed(32), cfg.pv_cols, LN, cfg.d_head))
        oreq = add("out_requant", self._part("out_requant"))
        wiring.connect(m, cache.o_kt, qk.weight)
        wiring.connect(m, cache.o_vh, pv.weight)
        wiring.connect(m, qk.o, g1.i)
        wiring.connect(m, g1.o, sreq.i)
        wiring.connect(m, sreq.o, smax.i)
        wiring.connect(m, smax.o, cast.i)
        wiring.connect(m, cast.o, pv.act)
        wiring.connect(m, pv.o, g2.i)
        wiring.connect(m, g2.o, oreq.i)
        if cfg.causal:
            m.d.comb += smax.offset.eq(pos)
        else:
            # the key padding mask: the tensor's rows are all the keys there are
            m.d.comb += smax.keys.eq(rows)

        qbuf = add("qbuf", memory.Memory(shape=beat_shape, depth=S * EB, init=[]))
        obuf = add("obuf", memory.Memory(shape=out_shape, depth=S * EB, init=[]))
        q_wr, q_rd = qbuf.write_port(), qbuf.read_port()
        o_wr, o_rd = obuf.write_port(), obuf.read_port()

        # the round's K_hᵀ and V_h: request, then both loads
        requested, kt_loaded, vh_loaded = Signal(), Signal(), Signal()
        m.d.comb += [cache.rd.valid.eq(phase_heads & ~requested),
                     cache.rd.payload.data[0].eq(rnd)]
        with m.If(cache.rd.valid & cache.rd.ready):
            m.d.sync += requested.eq(1)
        with m.If(qk.weight.valid & qk.weight.ready & qk.weight.payload.end):
            m.d.sync += kt_loaded.eq(1)
        with m.If(pv.weight.valid & pv.weight.ready & pv.weight.payload.end):
            m.d.sync += vh_loaded.eq(1)

        # Q_h rows from the Q bank into qk's activations, once K_hᵀ and V_h are in
        # (V_h first too, so that P never waits at pv's input: see the module text)
        qr_active, qr_started = Signal(), Signal()
        qr_row = Signal(range(S + 1))
        qr_base = Signal(range(S * EB + 1))
        qr_j = Signal(_counter(HB))
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
                        m.d.sync += [qr_row.eq(qr_row + 1), qr_base.eq(qr_base + EB)]
                with m.Else():
                    m.d.sync += qr_j.eq(qr_j + 1)

        # the head's output rows into the output bank, at the head's columns
        ow_row = Signal(range(S + 1))
        ow_base = Signal(range(S * EB + 1))
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
                    m.d.sync += [ow_row.eq(ow_row + 1), ow_base.eq(ow_base + EB)]
            with m.Else():
                m.d.sync += ow_j.eq(ow_j + 1)
        finished = Signal()            # this round's head is done; others may still run
        with m.If(head_done):
            m.d.sync += finished.eq(1)
        return SimpleNamespace(cache=cache, q_wr=q_wr, o_rd=o_rd, head_done=head_done,
                               finished=finished,
                               flags=(requested, kt_loaded, vh_loaded, qr_started, finished))
