"""The on-chip KV cache: K and V rows appended token by token, read out per head as the weight
streams of attention's two GEMMs.

Attention multiplies by K_hᵀ (Q·Kᵀ, ``GemmConfig(k=d_head, n=seq, cols=qk_cols)``) and by
V_h (P·V, ``GemmConfig(k=seq, n=d_head, cols=pv_cols)``); both arrays load their weights
through their ``weight`` stream, one word of ``cols`` lanes per cycle. The cache stores K and V
so that each of those words is one memory read:

* **K in ``qk_cols`` banks by position**: bank ``c`` holds the positions ``p ≡ c (mod
  qk_cols)``, one word per input beat (``lanes`` features of one position) at address
  ``(p // qk_cols)·(d_model/lanes) + beat``. An appended K beat is one write (full rate); a
  K_hᵀ word (one feature, ``qk_cols`` consecutive positions) reads the same address in every
  bank and picks one lane of each.
* **V in the P·V weight format**: one word of ``pv_cols`` features per (position, head,
  feature tile), ``heads·ceil(d_head/pv_cols)`` words per position, written with one enable per
  element. An appended V beat is split into the runs of its elements that fall into one word
  (a table computed at elaboration, :attr:`KvCacheConfig.v_segments`); each run is one write,
  so a V beat takes one cycle when ``pv_cols`` and ``lanes`` line up (``lanes`` divides
  ``pv_cols``, which divides ``d_head``, or ``pv_cols`` = ``lanes``) and up to ``lanes`` cycles
  otherwise. That is the cost of reading V_h at one word per cycle for any array width.

**Grouped-query attention** (``kv_heads`` < ``heads``): the rows appended are ``kv_width =
kv_heads·d_head`` wide (the cache holds ``kv_heads`` heads) and a read request names a query
head ``h``, which reads KV head ``h // (heads / kv_heads)``; every size above is then that of
``kv_width`` (``d_model/lanes`` becomes ``kv_width/lanes``, ``heads`` in the V words
``kv_heads``).

Positions at or beyond the length at the time of a read request read as zero, so a readout is
exactly the zero-padded weight matrix the golden model (:mod:`llmloom.sim.golden.kvcache`)
builds. Appending beyond ``seq`` is an error, never a wrap: the input is refused (``ready``
stays low) and the sticky ``overflow`` flag rises until ``clear``.
"""

from __future__ import annotations

import dataclasses
import functools

from amaranth.hdl import Array, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import BlockConfig, ConfigError, Range, spec
from ..numeric import INT8
from ..stream import row_layout
from .attention_config import HeadGeometry
from .rowkernel import MAX_LENGTH

__all__ = ["KvCacheConfig", "KvCache"]


def _counter(n):
    """The shape of a counter over ``0..n−1``, never zero bits wide (Verilog ``[-1:0]``)."""
    return range(max(2, n))


def _next_position(m, bank, base, banks, words):
    """Step a K row's ``bank`` and ``base`` on to the next position's: positions go round the
    ``banks`` banks, and each round moves the base on by a row's ``words`` (position p's row
    is at ``(p // banks)·words`` in bank ``p mod banks``). The append and the fill both count
    so; only the spill computes it from p."""
    with m.If(bank == banks - 1):
        m.d.sync += [bank.eq(0), base.eq(base + words)]
    with m.Else():
        m.d.sync += bank.eq(bank + 1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class KvCacheConfig(HeadGeometry, BlockConfig):
    """K and V of ``seq`` positions × ``d_model`` int8, read out per head."""

    d_model: int = spec(64, Range(1, 65536), "model width d (features of each K and V row)")
    heads: int = spec(4, Range(1, 4096), "attention heads h; divides d_model")
    kv_heads: int = spec(0, Range(0, 4096), "K and V heads held (grouped-query attention: a "
                         "read of query head h reads KV head h // (heads/kv_heads)); divides "
                         "heads; 0: heads")
    seq: int = spec(64, Range(1, MAX_LENGTH), "capacity in positions")
    lanes: int = spec(4, Range(1, 64), "elements per beat of the k and v inputs; divides "
                      "d_head")
    qk_cols: int = spec(4, Range(1, 64), "lanes of the K_hᵀ readout (Q·Kᵀ array columns)")
    pv_cols: int = spec(4, Range(1, 64), "lanes of the V_h readout (P·V array columns)")

    def _validate(self):
        if self.d_model % self.heads:
            raise ConfigError(f"heads={self.heads} does not divide d_model={self.d_model}; "
                              "allowed: a divisor of d_model")
        if self.heads % self.kv_heads_value:
            raise ConfigError(f"kv_heads={self.kv_heads} does not divide heads={self.heads}; "
                              "allowed: a divisor of heads, or 0 (= heads)")
        if self.d_head % self.lanes:
            raise ConfigError(f"lanes={self.lanes} does not divide d_head={self.d_head} "
                              "(d_model/heads); allowed: a divisor of d_head")

    @classmethod
    def of(cls, attention):
        """The cache of an :class:`~llmloom.hw.blocks.attention_config.AttentionConfig`."""
        return cls(d_model=attention.d_model, heads=attention.heads,
                   kv_heads=attention.kv_heads, seq=attention.seq, lanes=attention.lanes,
                   qk_cols=attention.qk_cols, pv_cols=attention.pv_cols)

    # Derived sizes (the head geometry: d_head, kv_heads_value, kv_group, kv_width) -----------
    @property
    def beats(self):
        """Input beats per K or V row."""
        return self.kv_width // self.lanes

    @property
    def pos_tiles(self):
        """Words per K_hᵀ row: ``ceil(seq / qk_cols)`` (the Q·Kᵀ GEMM's ``n_tiles``)."""
        return -(-self.seq // self.qk_cols)

    @property
    def head_tiles(self):
        """Words per V_h row: ``ceil(d_head / pv_cols)`` (the P·V GEMM's ``n_tiles``)."""
        return -(-self.d_head // self.pv_cols)

    @property
    def kt_beats(self):
        """Beats of one K_hᵀ readout."""
        return self.d_head * self.pos_tiles

    @property
    def vh_beats(self):
        """Beats of one V_h readout."""
        return self.seq * self.head_tiles

    @property
    def head_bits(self):
        return max(1, (self.heads - 1).bit_length())

    @functools.cached_property
    def v_segments(self):
        """The writes of one V row: ``(beat, first lane, count, word, first column)`` for each
        run of a beat's elements that falls into one word (word = ``head·head_tiles + tile``
        within the position, column = the first element's lane in that word)."""
        segs = []
        for b in range(self.beats):
            run = None
            for e in range(self.lanes):
                f = b * self.lanes + e
                h, fh = divmod(f, self.d_head)
                t, c = divmod(fh, self.pv_cols)
                w = h * self.head_tiles + t
                if run is not None and run[3] == w:
                    run[2] += 1
                else:
                    run = [b, e, 1, w, c]
                    segs.append(run)
        return tuple(tuple(s) for s in segs)

    @property
    def v_row_cycles(self):
        """Cycles to append one V row (one per segment)."""
        return len(self.v_segments)

    @property
    def spill_beats(self):
        """Beats of one position's row in a working cache's region in memory
        (:class:`KvCache` with ``spill``): its K row's ``beats`` input beats, then its V row's
        ``kv_heads·head_tiles`` words of the V memory (``lanes`` = ``pv_cols`` wide)."""
        return self.beats + self.kv_heads_value * self.head_tiles

    @property
    def spill_bytes(self):
        """Bytes of one position's row in a region (:attr:`spill_beats` of ``lanes`` bytes)."""
        return self.spill_beats * self.lanes

    def check_spill(self):
        """:class:`ConfigError` unless a working cache can fill and spill rows as beats of
        ``lanes`` int8: ``pv_cols`` = ``lanes`` (a V memory word is one beat)."""
        if self.pv_cols != self.lanes:
            raise ConfigError(f"pv_cols={self.pv_cols} with lanes={self.lanes}: a working "
                              "cache moves V words as beats; allowed: pv_cols = lanes")

    @property
    def row_cycles(self):
        """Cycles per appended position (K and V in parallel): ``max(beats, v_row_cycles)``."""
        return max(self.beats, self.v_row_cycles)


class KvCache(wiring.Component):
    """K and V of up to ``seq`` positions, appended row by row, read out per head.

    Parameters
    ----------
    cfg : KvCacheConfig

    Members
    -------
    k, v : In(stream.Signature(row_layout(signed(8), lanes)))
        One row per token, in position order, ``kv_width / lanes`` beats each (beats are
        counted; ``last`` and ``end`` are not read). K and V are appended independently; a K
        beat is taken every cycle, a V beat in ``v_row_cycles / beats`` cycles on average.
        Refused (``ready`` low) once ``seq`` positions are held.
    rd : In(stream.Signature(row_layout(unsigned(head_bits), 1)))
        Read requests, ``data[0]`` the (query) head h, which reads KV head
        ``h // kv_group``. Taken when both readouts are idle; the
        readouts then use the K and V lengths of that cycle.
    o_kt : Out(stream.Signature(row_layout(signed(8), qk_cols)))
        K_hᵀ: ``d_head`` rows (features) of ``pos_tiles`` beats of ``qk_cols`` positions,
        positions at or past the length zero: the ``weight`` stream of
        ``GemmConfig(k=d_head, n=seq, cols=qk_cols)``; ``last`` per row, ``end`` on the last.
    o_vh : Out(stream.Signature(row_layout(signed(8), pv_cols)))
        V_h: ``seq`` rows of ``head_tiles`` beats of ``pv_cols`` features, zero past the length
        and past ``d_head``: the ``weight`` stream of ``GemmConfig(k=seq, n=d_head,
        cols=pv_cols)``.
    clear : In(1)
        Plain control strobe: forget every position (lengths and ``overflow`` to 0). Assert it
        between sequences, when no row is half appended and no readout runs.
    overflow : Out(1)
        Sticky: a K or V beat was offered with ``seq`` positions already held.
    length : Out(range(seq + 1))
        Positions whose K and V rows are both complete.
    layer : In(range(layers))
        Only with ``layers`` > 1 (the cache of every layer of a model run through one layer's
        hardware): the layer whose region (its own ``seq`` positions of both memories, its own
        lengths) appends and readouts use. Change it only between tensors, when no row is half
        appended and no readout runs; ``clear`` empties every layer's.

    With ``spill`` (an off-chip KV cache, ``layers`` ≥ 1): the memories hold one layer's
    region only, the working cache of the layer now selected, while the lengths (and write
    positions) stay per layer; the layer's rows come in from memory through ``fill`` before
    its tensor and its new rows go out through ``o_spill`` (:attr:`KvCacheConfig.spill_beats`
    beats a position: the K row's input beats, then the position's V memory words, each
    ``lanes`` int8; ``pv_cols`` = ``lanes``).

    fill : In(stream.Signature(row_layout(signed(8), lanes)))
        Only with ``spill``: the rows of positions 0, 1, ... in that format, written at their
        positions without changing any length (``end`` on the last beat starts the next fill
        at position 0). Always ready; appends wait (``ready`` low) while a fill beat is
        offered.
    spill : In(stream.Signature(row_layout(unsigned(range(seq)), 1)))
        Only with ``spill``: "send position ``data[0]``'s row" (a complete row of the working
        cache); taken when the spill readout is idle.
    o_spill : Out(stream.Signature(row_layout(signed(8), lanes)))
        Only with ``spill``: the requested row, one beat a cycle from the cycle after the
        request while taken, ``last`` and ``end`` on its last beat; its own read ports, so it
        runs beside appends and readouts.

    Timing: a read request taken in cycle 0 puts its first beats on ``o_kt`` and ``o_vh`` in
    cycle 2, one per cycle while the consumer takes them; the next request is taken in the
    cycle after both readouts issued their last read (one idle cycle between readouts), so
    ``R`` back-to-back requests take ``R·(max(kt_beats, vh_beats) + 1) + 1`` cycles from the
    first request to the last beat (:func:`llmloom.perf.cycles.kvcache_cycles`). Appending
    ``n`` rows takes ``n·row_cycles`` cycles. Backpressure on an output holds that readout
    only (its read port and output register hold); the other runs on.
    """

    def __init__(self, cfg: KvCacheConfig, *, layers=1, spill=False):
        if not isinstance(cfg, KvCacheConfig):
            raise TypeError(f"cfg must be a KvCacheConfig, not {cfg!r}")
        if not isinstance(layers, int) or layers < 1:
            raise ValueError(f"layers={layers!r}; allowed: an int >= 1")
        if spill:
            self._MustUse__silence = True
            cfg.check_spill()
        self.cfg, self.layers, self.spill_rows = cfg, layers, bool(spill)
        extra = {"layer": In(range(layers))} if layers > 1 else {}
        if spill:
            extra |= {"fill": In(stream.Signature(row_layout(INT8.shape, cfg.lanes))),
                      "spill": In(stream.Signature(row_layout(
                          unsigned(max(1, (cfg.seq - 1).bit_length())), 1))),
                      "o_spill": Out(stream.Signature(row_layout(INT8.shape, cfg.lanes)))}
        super().__init__({**extra,
            "k": In(stream.Signature(row_layout(INT8.shape, cfg.lanes))),
            "v": In(stream.Signature(row_layout(INT8.shape, cfg.lanes))),
            "rd": In(stream.Signature(row_layout(unsigned(cfg.head_bits), 1))),
            "o_kt": Out(stream.Signature(row_layout(INT8.shape, cfg.qk_cols))),
            "o_vh": Out(stream.Signature(row_layout(INT8.shape, cfg.pv_cols))),
            "clear": In(1),
            "overflow": Out(1),
            "length": Out(range(cfg.seq + 1)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        C, PC, DB, PT, DT = cfg.qk_cols, cfg.pv_cols, cfg.beats, cfg.pos_tiles, cfg.head_tiles
        LN, S, dh = cfg.lanes, cfg.seq, cfg.d_head
        KH, G = cfg.kv_heads_value, cfg.kv_group
        WPP = KH * DT                              # V words per position

        NL = self.layers
        NR = 1 if self.spill_rows else NL           # regions held on chip
        # With layers: one region of both memories per layer, and the lengths (and the write
        # addresses that follow them) per layer, all at the layer now selected.
        def per_layer(shape, name):
            if NL == 1:
                return Signal(shape, name=name), [None]
            regs = [Signal(shape, name=f"{name}_l{n}") for n in range(NL)]
            return Array(regs)[self.layer], regs

        k_len, k_lens = per_layer(range(S + 1), "k_len")
        v_len, v_lens = per_layer(range(S + 1), "v_len")
        overflow = Signal()
        m.d.comb += [self.length.eq(Mux(k_len < v_len, k_len, v_len)),
                     self.overflow.eq(overflow)]

        # ---- K: qk_cols banks by position; one input beat per word ---------------------------
        beat_shape = data.ArrayLayout(INT8.shape, LN)
        k_banks = []
        for c in range(C):
            mem = memory.Memory(shape=beat_shape, depth=NR * PT * DB, init=[])
            m.submodules[f"k_bank{c}"] = mem
            k_banks.append((mem.write_port(), mem.read_port(),
                            mem.read_port() if self.spill_rows else None))
        k_beat = Signal(_counter(DB))
        k_bank, k_banks_l = per_layer(_counter(C), "k_bank")          # k_len mod C
        k_base, k_bases = per_layer(range(PT * DB + 1), "k_base")     # (k_len // C)·DB

        def k_at(addr):         # in the layer's region
            return addr if NR == 1 else self.layer * (PT * DB) + addr

        def v_at(addr):
            return addr if NR == 1 else self.layer * (S * WPP) + addr
        k_room = k_len != S
        filling = self.fill.valid if self.spill_rows else Const(0, 1)   # a fill comes first
        m.d.comb += self.k.ready.eq(k_room & ~filling)
        k_take = self.k.valid & k_room & ~filling
        for c, (wr, *_) in enumerate(k_banks):
            m.d.comb += [wr.addr.eq(k_at(k_base + k_beat)), wr.data.eq(self.k.payload.data),
                         wr.en.eq(k_take & (k_bank == c))]
        with m.If(k_take):
            with m.If(k_beat == DB - 1):
                m.d.sync += [k_beat.eq(0), k_len.eq(k_len + 1)]
                _next_position(m, k_bank, k_base, C, DB)
            with m.Else():
                m.d.sync += k_beat.eq(k_beat + 1)

        # ---- V: words of the P·V weight format, one segment of a beat per cycle ---------------
        segs = cfg.v_segments
        NS = len(segs)
        v_mem = memory.Memory(shape=data.ArrayLayout(INT8.shape, PC), depth=NR * S * WPP,
                              init=[])
        m.submodules.v_mem = v_mem
        v_wr = v_mem.write_port(granularity=1)         # one enable per element
        v_rd = v_mem.read_port()
        v_sp = v_mem.read_port() if self.spill_rows else None
        v_seg = Signal(_counter(NS))
        v_base, v_bases = per_layer(range(S * WPP + 1), "v_base")    # v_len·WPP
        v_room = v_len != S
        v_go = self.v.valid & v_room & ~filling
        seg_word = Signal(_counter(WPP))
        seg_end = Signal()                         # the segment is its beat's last
        with m.Switch(v_seg):
            for s, (b, e0, n, w, c0) in enumerate(segs):
                with m.Case(s):
                    m.d.comb += [seg_word.eq(w),
                                 seg_end.eq(s == NS - 1 or segs[s + 1][0] != b),
                                 v_wr.en.eq(Mux(v_go, ((1 << n) - 1) << c0, 0))]
                    m.d.comb += [v_wr.data[c0 + j].eq(self.v.payload.data[e0 + j])
                                 for j in range(n)]
        m.d.comb += [v_wr.addr.eq(v_at(v_base + seg_word)),
                     self.v.ready.eq(v_room & seg_end & ~filling)]
        with m.If(v_go):
            with m.If(v_seg == NS - 1):
                m.d.sync += [v_seg.eq(0), v_len.eq(v_len + 1), v_base.eq(v_base + WPP)]
            with m.Else():
                m.d.sync += v_seg.eq(v_seg + 1)

        with m.If((self.k.valid & ~k_room) | (self.v.valid & ~v_room)):
            m.d.sync += overflow.eq(1)

        if self.spill_rows:
            self._fill(m, k_banks, v_wr, WPP)
            self._spill(m, k_banks, v_sp, WPP)

        # ---- read requests -----------------------------------------------------------------
        k_active = Signal()
        v_active = Signal()
        head_fb = Signal(range(KH * (dh // LN) + 1))           # h·d_head/lanes
        head_vw = Signal(range(WPP + 1))                       # h·head_tiles
        rd_klen = Signal(range(S + 1))
        rd_vlen = Signal(range(S + 1))
        m.d.comb += self.rd.ready.eq(~k_active & ~v_active)
        h = self.rd.payload.data[0]
        if G > 1:
            # the KV head of query head h: h // G, a table of the heads
            h, qh = Signal(_counter(KH), name="kv_head"), h
            with m.Switch(qh):
                for n in range(cfg.heads - 1):
                    with m.Case(n):
                        m.d.comb += h.eq(n // G)
                with m.Default():
                    m.d.comb += h.eq(KH - 1)
        with m.If(self.rd.valid & self.rd.ready):
            m.d.sync += [k_active.eq(1), v_active.eq(1), head_fb.eq(h * (dh // LN)),
                         head_vw.eq(h * DT), rd_klen.eq(k_len), rd_vlen.eq(v_len)]

        # ---- K_hᵀ readout: (feature r, position tile pt); all banks read one address ---------
        kr_fb = Signal(_counter(dh // LN))    # r // lanes
        kr_sel = Signal(_counter(LN))                 # r % lanes
        kr_pt = Signal(_counter(PT))
        kr_last_row = Signal()
        k_adv = ~self.o_kt.valid | self.o_kt.ready
        ko_sel = Signal(_counter(LN))
        ko_keep = Signal(C)
        ko_last, ko_end = Signal(), Signal()
        for _, rd, _ in k_banks:
            m.d.comb += [rd.addr.eq(k_at(kr_pt * DB + head_fb + kr_fb)), rd.en.eq(k_adv)]
        m.d.comb += kr_last_row.eq((kr_fb == dh // LN - 1) & (kr_sel == LN - 1))
        with m.If(k_adv):
            m.d.sync += [self.o_kt.valid.eq(k_active), ko_sel.eq(kr_sel),
                         ko_last.eq(kr_pt == PT - 1),
                         ko_end.eq((kr_pt == PT - 1) & kr_last_row)]
            m.d.sync += [ko_keep[c].eq(kr_pt * C + c < rd_klen) for c in range(C)]
            with m.If(k_active):
                with m.If(kr_pt == PT - 1):
                    m.d.sync += kr_pt.eq(0)
                    with m.If(kr_last_row):
                        m.d.sync += [kr_fb.eq(0), kr_sel.eq(0), k_active.eq(0)]
                    with m.Elif(kr_sel == LN - 1):
                        m.d.sync += [kr_sel.eq(0), kr_fb.eq(kr_fb + 1)]
                    with m.Else():
                        m.d.sync += kr_sel.eq(kr_sel + 1)
                with m.Else():
                    m.d.sync += kr_pt.eq(kr_pt + 1)
        m.d.comb += [self.o_kt.payload.last.eq(ko_last), self.o_kt.payload.end.eq(ko_end)]
        for c, (_, rd, _) in enumerate(k_banks):
            m.d.comb += self.o_kt.payload.data[c].eq(Mux(ko_keep[c], rd.data[ko_sel], 0))

        # ---- V_h readout: (position p, feature tile t), one word each --------------------------
        vr_p = Signal(_counter(S))
        vr_t = Signal(_counter(DT))
        vr_addr = Signal(range(S * WPP + 1))       # p·WPP
        v_adv = ~self.o_vh.valid | self.o_vh.ready
        vo_keep, vo_last, vo_end = Signal(), Signal(), Signal()
        m.d.comb += [v_rd.addr.eq(v_at(vr_addr + head_vw + vr_t)), v_rd.en.eq(v_adv)]
        with m.If(v_adv):
            m.d.sync += [self.o_vh.valid.eq(v_active), vo_keep.eq(vr_p < rd_vlen),
                         vo_last.eq(vr_t == DT - 1),
                         vo_end.eq((vr_t == DT - 1) & (vr_p == S - 1))]
            with m.If(v_active):
                with m.If(vr_t == DT - 1):
                    m.d.sync += vr_t.eq(0)
                    with m.If(vr_p == S - 1):
                        m.d.sync += [vr_p.eq(0), vr_addr.eq(0), v_active.eq(0)]
                    with m.Else():
                        m.d.sync += [vr_p.eq(vr_p + 1), vr_addr.eq(vr_addr + WPP)]
                with m.Else():
                    m.d.sync += vr_t.eq(vr_t + 1)
        m.d.comb += [self.o_vh.payload.last.eq(vo_last), self.o_vh.payload.end.eq(vo_end)]
        m.d.comb += [self.o_vh.payload.data[c].eq(Mux(vo_keep, v_rd.data[c], 0))
                     for c in range(PC)]

        # ---- clear: a new sequence (after everything else, so it wins) -----------------------
        with m.If(self.clear):
            m.d.sync += [overflow.eq(0), k_beat.eq(0), v_seg.eq(0)]
            if NL == 1:
                m.d.sync += [k_len.eq(0), v_len.eq(0), k_bank.eq(0), k_base.eq(0),
                             v_base.eq(0)]
            else:       # every layer's sequence
                m.d.sync += [r.eq(0) for regs in (k_lens, v_lens, k_banks_l, k_bases, v_bases)
                             for r in regs]
        return m

    def _fill(self, m, k_banks, v_wr, WPP):
        """Rows of positions 0, 1, ... from ``fill``: a K row's beats into its bank (as an
        append would write them), then the position's V words whole; no length changes."""
        cfg, fill = self.cfg, self.fill
        C, DB = cfg.qk_cols, cfg.beats
        f_v = Signal()                                  # in the row's V words
        f_beat = Signal(_counter(max(DB, WPP)))
        f_bank = Signal(_counter(C))
        f_base = Signal(range(cfg.pos_tiles * DB + 1))  # (p // C)·DB
        f_vaddr = Signal(range(cfg.seq * WPP + 1))      # p·WPP + word
        m.d.comb += fill.ready.eq(1)
        with m.If(fill.valid):
            for c, (wr, *_) in enumerate(k_banks):
                m.d.comb += [wr.addr.eq(f_base + f_beat), wr.data.eq(fill.payload.data),
                             wr.en.eq(~f_v & (f_bank == c))]
            m.d.comb += [v_wr.addr.eq(f_vaddr), v_wr.data.eq(fill.payload.data),
                         v_wr.en.eq(Mux(f_v, (1 << cfg.pv_cols) - 1, 0))]
            with m.If(~f_v):
                with m.If(f_beat == DB - 1):
                    m.d.sync += [f_beat.eq(0), f_v.eq(1)]
                with m.Else():
                    m.d.sync += f_beat.eq(f_beat + 1)
            with m.Else():
                m.d.sync += f_vaddr.eq(f_vaddr + 1)
                with m.If(f_beat == WPP - 1):
                    m.d.sync += [f_beat.eq(0), f_v.eq(0)]
                    _next_position(m, f_bank, f_base, C, DB)
                with m.Else():
                    m.d.sync += f_beat.eq(f_beat + 1)
            with m.If(fill.payload.end):
                m.d.sync += [f_v.eq(0), f_beat.eq(0), f_bank.eq(0), f_base.eq(0),
                             f_vaddr.eq(0)]

    def _spill(self, m, k_banks, v_sp, WPP):
        """Position ``spill.data[0]``'s row out of ``o_spill``: its K row's beats from its
        bank, then its V words, through the spill read ports (latency 1, as the readouts)."""
        cfg, req, o = self.cfg, self.spill, self.o_spill
        C, DB = cfg.qk_cols, cfg.beats
        NB = DB + WPP
        active = Signal()
        s_bank = Signal(_counter(C))
        s_kaddr = Signal(range(cfg.pos_tiles * DB + 1))     # (p // C)·DB + beat
        s_vaddr = Signal(range(cfg.seq * WPP + 1))          # p·WPP + word
        s_beat = Signal(_counter(NB))
        so_v, so_last, so_bank = Signal(), Signal(), Signal(_counter(C))
        m.d.comb += req.ready.eq(~active)
        p = req.payload.data[0]
        with m.If(req.valid & req.ready):
            m.d.sync += [active.eq(1), s_beat.eq(0), s_bank.eq(p % C),
                         s_kaddr.eq((p // C) * DB), s_vaddr.eq(p * WPP)]
        adv = ~o.valid | o.ready
        in_v = s_beat >= DB
        for _, _, rd in k_banks:
            m.d.comb += [rd.addr.eq(s_kaddr), rd.en.eq(adv)]
        m.d.comb += [v_sp.addr.eq(s_vaddr), v_sp.en.eq(adv)]
        with m.If(adv):
            m.d.sync += [o.valid.eq(active), so_v.eq(in_v), so_bank.eq(s_bank),
                         so_last.eq(s_beat == NB - 1)]
            with m.If(active):
                m.d.sync += s_beat.eq(s_beat + 1)
                with m.If(in_v):
                    m.d.sync += s_vaddr.eq(s_vaddr + 1)
                with m.Else():
                    m.d.sync += s_kaddr.eq(s_kaddr + 1)
                with m.If(s_beat == NB - 1):
                    m.d.sync += active.eq(0)
        k_word = Array(rd.data for _, _, rd in k_banks)[so_bank]
        m.d.comb += [o.payload.data.eq(Mux(so_v, v_sp.data.as_value(), k_word.as_value())),
                     o.payload.last.eq(so_last), o.payload.end.eq(so_last)]
