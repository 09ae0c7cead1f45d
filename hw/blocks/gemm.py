"""The output-stationary systolic GEMM: C = A·W with W held on chip.

Structure (after gemmini's PE → Tile → Mesh and allo's ``systolic.py``):

* :class:`ProcessingElement` multiplies and accumulates one output; a ``flag`` travelling with
  the activation marks the first step of a new tile, at which the PE hands its finished sum to
  an output register and starts the next one, so tiles follow each other with no bubble.
* :class:`Skew` delays lane ``i`` by ``i`` steps: the wavefront that feeds the array.
* :class:`SystolicArray` is the ``rows``×``cols`` grid with its skews, advancing only on
  ``step`` (the whole array moves in lock-step, which makes stalls trivially safe).
* :class:`Gemm` adds the on-chip memories (double-buffered activation tiles, the weights,
  double-buffered output rows), the feeder that walks the tiles and the drain that emits rows.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..stream import row_layout
from .gemm_config import GemmConfig

__all__ = ["GemmConfig", "ProcessingElement", "Skew", "SystolicArray", "Gemm"]


class ProcessingElement(wiring.Component):
    """One multiply-accumulate cell of an output-stationary array.

    Members
    -------
    en : In(1)
        Advance one step.
    a_i, w_i, flag_i : In
        Activation (from the left), weight (from above), first-step-of-tile flag.
    a_o, w_o, flag_o : Out
        The same, registered, for the right and lower neighbours.
    result : Out(signed(acc_width))
        The sum of the previous tile, valid from two steps after ``flag_i`` (the product is
        registered first) until two steps after the next flag.
    """

    def __init__(self, a_width, w_width, acc_width):
        self._acc_width = acc_width
        super().__init__({
            "en": In(1),
            "a_i": In(signed(a_width)), "w_i": In(signed(w_width)), "flag_i": In(1),
            "a_o": Out(signed(a_width)), "w_o": Out(signed(w_width)), "flag_o": Out(1),
            "result": Out(signed(acc_width)),
        })

    def elaborate(self, platform):
        m = Module()
        acc = Signal(signed(self._acc_width))
        # The product is registered (in the multiplier's own output register where the fabric
        # has one) and accumulated a step later, so no path runs through both the multiplier
        # and the accumulator's carry chain. The flag is delayed with it.
        product = Signal(signed(len(self.a_i) + len(self.w_i)))
        first = Signal()
        with m.If(self.en):
            m.d.sync += [self.a_o.eq(self.a_i), self.w_o.eq(self.w_i),
                         self.flag_o.eq(self.flag_i),
                         product.eq(self.a_i * self.w_i), first.eq(self.flag_i)]
            with m.If(first):
                m.d.sync += [self.result.eq(acc), acc.eq(product)]
            with m.Else():
                m.d.sync += acc.eq(acc + product)
        return m


class Skew(wiring.Component):
    """Delays lane ``i`` by ``i + 1`` enabled steps: the wavefront that feeds the array, with
    every lane registered so that no array input comes straight from a memory."""

    def __init__(self, shape, lanes):
        self._lanes = lanes
        super().__init__({
            "en": In(1),
            "i": In(data.ArrayLayout(shape, lanes)),
            "o": Out(data.ArrayLayout(shape, lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        for lane in range(self._lanes):
            value = self.i[lane]
            for stage in range(lane + 1):
                reg = Signal.like(self.i[lane], name=f"lane{lane}_d{stage}")
                with m.If(self.en):
                    m.d.sync += reg.eq(value)
                value = reg
            m.d.comb += self.o[lane].eq(value)
        return m


class SystolicArray(wiring.Component):
    """A ``rows``×``cols`` output-stationary grid with its input skews.

    Row ``i`` takes ``a[i]`` (activation of token ``i`` at inner index k) and column ``j`` takes
    ``w[j]`` (weight of output feature ``j`` at the same k), both for the same step; the skews
    make PE(i, j) see index k at step k + i + j + 1. ``flag`` marks k = 0 of a tile.

    Members
    -------
    en : In(1)
    a : In(ArrayLayout(signed(a_width), rows)); w : In(ArrayLayout(signed(w_width), cols));
    flag : In(1)
    sel : In(range(rows))
        Row whose results appear on ``row``.
    row : Out(ArrayLayout(signed(acc_width), cols))
        ``result`` of PE(sel, 0..cols-1). Row i of a tile whose successor's flag entered at
        step S is complete from step S + cols + i + 2 until step S + L + i + 2 (L >= cols the
        tile length).
    """

    def __init__(self, cfg: GemmConfig):
        self.cfg = cfg
        super().__init__({
            "en": In(1),
            "a": In(data.ArrayLayout(signed(cfg.a_width), cfg.rows)),
            "w": In(data.ArrayLayout(signed(cfg.w_width), cfg.cols)),
            "flag": In(1),
            "sel": In(range(cfg.rows)),
            "row": Out(data.ArrayLayout(signed(cfg.acc_width), cfg.cols)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        m.submodules.a_skew = a_skew = Skew(signed(cfg.a_width), cfg.rows)
        m.submodules.f_skew = f_skew = Skew(1, cfg.rows)
        m.submodules.w_skew = w_skew = Skew(signed(cfg.w_width), cfg.cols)
        for skew, src in ((a_skew, self.a), (w_skew, self.w)):
            m.d.comb += [skew.en.eq(self.en), skew.i.eq(src)]
        m.d.comb += [f_skew.en.eq(self.en)]
        m.d.comb += [f_skew.i[i].eq(self.flag) for i in range(cfg.rows)]

        pes = [[None] * cfg.cols for _ in range(cfg.rows)]
        for i in range(cfg.rows):
            for j in range(cfg.cols):
                pe = ProcessingElement(cfg.a_width, cfg.w_width, cfg.acc_width)
                m.submodules[f"pe_{i}_{j}"] = pes[i][j] = pe
                left = pes[i][j - 1] if j else None
                up = pes[i - 1][j] if i else None
                m.d.comb += [
                    pe.en.eq(self.en),
                    pe.a_i.eq(left.a_o if left else a_skew.o[i]),
                    pe.flag_i.eq(left.flag_o if left else f_skew.o[i]),
                    pe.w_i.eq(up.w_o if up else w_skew.o[j]),
                ]
        with m.Switch(self.sel):
            for i in range(cfg.rows):
                with m.Case(i):
                    m.d.comb += [self.row[j].eq(pes[i][j].result) for j in range(cfg.cols)]
        return m


class Gemm(wiring.Component):
    """C = A·W: int8 activations streamed in rows, weights on chip, int32 results in rows.

    Parameters
    ----------
    cfg : GemmConfig
    weights : ndarray of shape (k, n), optional
        Initial weights (memory contents at configuration). Weights can also be (re)loaded
        through the ``weight`` stream.

    Members
    -------
    act : In(stream.Signature(row_layout(signed(a_width), lanes)))
        A, row by row: ``k / lanes`` beats per row, ``last`` on a row's last beat, ``end`` on
        the last beat of the last row of A (``end`` is read only on a row's last beat). Any
        number of rows M; ``end`` flushes a partial token tile.
    weight : In(stream.Signature(row_layout(signed(w_width), cols)))
        W, row by row (k rows of ``n_tiles`` beats, lanes past n zero-padded), ``end`` on the
        last beat. Accepted only while no tile is being computed, and computation waits while
        a load is under way, so a load never mixes with a product.
    o : Out(stream.Signature(row_layout(signed(32), cols)))
        C, row by row: ``n_tiles`` beats per row, lanes past n are zero; ``last`` and ``end``
        as on ``act``.

    Timing: a token tile of ``rows`` rows starts when all its input has arrived; token tiles
    then run back to back, each taking ``n_tiles × tile_steps`` cycles, with their fill and
    drain overlapped; ``perf.cycles.gemm_cycles`` gives the exact count. Backpressure on ``o``
    stalls the array only when both output row buffers are full; input gaps stall it between
    token tiles only.
    """

    def __init__(self, cfg: GemmConfig, *, weights=None):
        self._MustUse__silence = True       # until the checks below have passed
        if not isinstance(cfg, GemmConfig):
            raise TypeError(f"cfg must be a GemmConfig, not {cfg!r}")
        self.cfg = cfg
        self._weights = None if weights is None else self.weight_words(cfg, weights)
        self._MustUse__silence = False
        super().__init__({
            "act": In(stream.Signature(row_layout(signed(cfg.a_width), cfg.lanes))),
            "weight": In(stream.Signature(row_layout(signed(cfg.w_width), cfg.cols))),
            "o": Out(stream.Signature(row_layout(signed(cfg.OUT_WIDTH), cfg.cols))),
        })

    @staticmethod
    def weight_words(cfg, weights):
        """W (k×n) as the weight memory's rows: one per (feature tile, k), ``cols`` lanes each."""
        w = cfg.check_weights(weights)
        padded = np.zeros((cfg.k, cfg.n_tiles * cfg.cols), dtype=np.int64)
        padded[:, :cfg.n] = w
        tiles = padded.reshape(cfg.k, cfg.n_tiles, cfg.cols).transpose(1, 0, 2)
        return [list(map(int, row)) for row in tiles.reshape(-1, cfg.cols)]

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        R, C, K, NT, L = cfg.rows, cfg.cols, cfg.k, cfg.n_tiles, cfg.tile_steps
        KB, LN = cfg.k_beats, cfg.lanes

        # ---- memories ------------------------------------------------------------------------
        # Activation tiles: one word per (bank, beat) holds that beat for all rows of the tile;
        # a write fills one row's group of lanes (granularity), a read gives a column of A.
        m.submodules.abuf = abuf = memory.Memory(
            shape=data.ArrayLayout(signed(cfg.a_width), R * LN), depth=2 * KB, init=[])
        a_wr = abuf.write_port(granularity=LN)
        a_rd = abuf.read_port()
        m.submodules.wmem = wmem = memory.Memory(
            shape=data.ArrayLayout(signed(cfg.w_width), C), depth=NT * K,
            init=self._weights or [])
        w_wr = wmem.write_port()
        w_rd = wmem.read_port()
        m.submodules.obuf = obuf = memory.Memory(
            shape=data.ArrayLayout(signed(cfg.acc_width), C), depth=2 * R * NT, init=[])
        o_wr = obuf.write_port()
        o_rd = obuf.read_port()
        m.submodules.array = array = SystolicArray(cfg)

        # ---- weight loader -------------------------------------------------------------------
        wl_k = Signal(range(K))
        wl_nt = Signal(range(NT))
        loading = Signal()       # between the first and the end beat of a weight load
        running = Signal()       # inside a token tile
        flushing = Signal()
        m.d.comb += [
            self.weight.ready.eq(~running & ~flushing),
            w_wr.addr.eq(wl_nt * K + wl_k),
            w_wr.data.eq(self.weight.payload.data),
        ]
        with m.If(self.weight.valid & self.weight.ready):
            m.d.comb += w_wr.en.eq(1)
            m.d.sync += loading.eq(~self.weight.payload.end)
            with m.If(self.weight.payload.end):
                m.d.sync += [wl_k.eq(0), wl_nt.eq(0)]
            with m.Elif(wl_nt == NT - 1):
                m.d.sync += [wl_nt.eq(0), wl_k.eq(wl_k + 1)]
            with m.Else():
                m.d.sync += wl_nt.eq(wl_nt + 1)

        # ---- activation writer: fills token tiles into two banks ------------------------------
        bank_full = Signal(2)
        bank_rows = [Signal(range(1, R + 1), name=f"bank{b}_rows") for b in range(2)]
        bank_end = Signal(2)
        in_bank = Signal()
        in_row = Signal(range(R))
        in_beat = Signal(range(KB))
        m.d.comb += [
            self.act.ready.eq(~bank_full.bit_select(in_bank, 1)),
            a_wr.addr.eq(in_bank * KB + in_beat),
            a_wr.data.eq(self.act.payload.data.as_value().replicate(R)),
        ]
        with m.If(self.act.valid & self.act.ready):
            m.d.comb += a_wr.en.eq(1 << in_row)
            with m.If(in_beat == KB - 1):
                m.d.sync += in_beat.eq(0)
                with m.If((in_row == R - 1) | self.act.payload.end):
                    for b in range(2):
                        with m.If(in_bank == b):
                            m.d.sync += [bank_full[b].eq(1), bank_rows[b].eq(in_row + 1),
                                         bank_end[b].eq(self.act.payload.end)]
                    m.d.sync += [in_row.eq(0), in_bank.eq(~in_bank)]
                with m.Else():
                    m.d.sync += in_row.eq(in_row + 1)
            with m.Else():
                m.d.sync += in_beat.eq(in_beat + 1)

        # ---- feeder: walks (feature tile, k) over the current token tile ---------------------
        f_bank = Signal()
        f_k = Signal(range(L))
        f_beat = Signal(range(KB))
        f_lane = Signal(range(LN))
        f_nt = Signal(range(NT))
        f_wbase = Signal(range(NT * K))
        flush_cnt = Signal(range(cfg.flush_steps))
        cur_full = bank_full.bit_select(f_bank, 1)
        cur_end = bank_end.bit_select(f_bank, 1)
        cur_rows = Mux(f_bank, bank_rows[1], bank_rows[0])
        start_ok = cur_full & ~loading & ~self.weight.valid
        active = running | flushing | start_ok
        conflict = Signal()
        step = Signal()
        m.d.comb += step.eq(active & ~conflict)
        is_real = ~flushing & (f_k < K)

        m.d.comb += [
            a_rd.addr.eq(f_bank * KB + f_beat), a_rd.en.eq(step),
            w_rd.addr.eq(f_wbase + f_k), w_rd.en.eq(step),
        ]
        with m.If(step):
            with m.If(flushing):
                m.d.sync += flush_cnt.eq(flush_cnt + 1)
                with m.If(flush_cnt == cfg.flush_steps - 1):
                    m.d.sync += [flushing.eq(0), flush_cnt.eq(0)]
            with m.Else():
                with m.If(f_k == L - 1):
                    m.d.sync += [f_k.eq(0), f_beat.eq(0), f_lane.eq(0)]
                    with m.If(f_nt == NT - 1):
                        m.d.sync += [f_nt.eq(0), f_wbase.eq(0), running.eq(0),
                                     f_bank.eq(~f_bank), flushing.eq(cur_end)]
                        for b in range(2):
                            with m.If(f_bank == b):
                                m.d.sync += bank_full[b].eq(0)
                    with m.Else():
                        m.d.sync += [f_nt.eq(f_nt + 1), f_wbase.eq(f_wbase + K), running.eq(1)]
                with m.Else():
                    m.d.sync += [f_k.eq(f_k + 1), running.eq(1)]
                    with m.If(f_lane == LN - 1):
                        m.d.sync += [f_lane.eq(0), f_beat.eq(f_beat + 1)]
                    with m.Else():
                        m.d.sync += f_lane.eq(f_lane + 1)

        # Tile descriptor, carried from issue to the readout of the tile's results.
        meta = data.StructLayout({
            "real": 1, "bank": 1, "nt": range(NT), "rows": range(1, R + 1), "end": 1,
            "last_nt": 1,
        })
        issue_meta = Signal(meta)
        m.d.comb += [
            issue_meta.real.eq(is_real), issue_meta.bank.eq(f_bank), issue_meta.nt.eq(f_nt),
            issue_meta.rows.eq(cur_rows), issue_meta.end.eq(cur_end),
            issue_meta.last_nt.eq(f_nt == NT - 1),
        ]

        # ---- stage 1: memory data, aligned with the registered issue information --------------
        s1_real = Signal()
        s1_flag = Signal()
        s1_lane = Signal(range(LN))
        s1_meta = Signal(meta)
        with m.If(step):
            m.d.sync += [s1_real.eq(is_real), s1_lane.eq(f_lane), s1_meta.eq(issue_meta),
                         s1_flag.eq(Mux(flushing, flush_cnt == 0, f_k == 0))]
        for i in range(R):
            lane_val = a_rd.data[i * LN:(i + 1) * LN]
            m.d.comb += array.a[i].eq(Mux(s1_real, lane_val[s1_lane] if LN > 1 else lane_val[0],
                                          0))
        for j in range(C):
            m.d.comb += array.w[j].eq(Mux(s1_real, w_rd.data[j], 0))
        m.d.comb += [array.en.eq(step), array.flag.eq(s1_flag)]

        # ---- readout schedule: a tile's rows are complete `cols + i + 2` steps after the flag
        # of the tile that follows it (or of the flush): skew register, product register, then
        # one step per column. A shift register of descriptors times it.
        prev = Signal(meta)          # the tile in the array whose flag came last
        depth = C + R + 1
        sched = [Signal(meta, name=f"sched{d}") for d in range(depth)]
        with m.If(step):
            with m.If(s1_flag):
                m.d.sync += [sched[0].eq(prev), prev.eq(s1_meta)]
            with m.Else():
                m.d.sync += sched[0].eq(0)
            m.d.sync += [sched[d].eq(sched[d - 1]) for d in range(1, depth)]

        out_full = Signal(2)
        out_rows = [Signal(range(1, R + 1), name=f"out{b}_rows") for b in range(2)]
        out_end = Signal(2)
        due = Signal()
        due_row = Signal(range(R))
        due_meta = Signal(meta)
        for i in range(R):
            with m.If(sched[C + i + 1].real):
                m.d.comb += [due.eq(1), due_row.eq(i), due_meta.eq(sched[C + i + 1])]
        m.d.comb += [
            conflict.eq(due & out_full.bit_select(due_meta.bank, 1)),
            array.sel.eq(due_row),
            o_wr.addr.eq((due_meta.bank * R + due_row) * NT + due_meta.nt),
            o_wr.data.eq(array.row),
            o_wr.en.eq(due & step),
        ]
        with m.If(due & step & (due_row == R - 1) & due_meta.last_nt):
            for b in range(2):
                with m.If(due_meta.bank == b):
                    m.d.sync += [out_full[b].eq(1), out_rows[b].eq(due_meta.rows),
                                 out_end[b].eq(due_meta.end)]

        # ---- drain: output rows in order; the read port's register is the output register ----
        d_bank = Signal()
        d_row = Signal(range(R))
        d_nt = Signal(range(NT))
        d_rows = Mux(d_bank, out_rows[1], out_rows[0])
        have = out_full.bit_select(d_bank, 1)
        advance = ~self.o.valid | self.o.ready
        o_last = Signal()
        o_end = Signal()
        m.d.comb += [
            o_rd.addr.eq((d_bank * R + d_row) * NT + d_nt), o_rd.en.eq(advance),
            self.o.payload.last.eq(o_last), self.o.payload.end.eq(o_end),
        ]
        m.d.comb += [self.o.payload.data[j].eq(o_rd.data[j]) for j in range(C)]
        with m.If(advance):
            row_done = d_nt == NT - 1
            bank_done = row_done & (d_row == d_rows - 1)
            m.d.sync += [self.o.valid.eq(have), o_last.eq(row_done),
                         o_end.eq(bank_done & out_end.bit_select(d_bank, 1))]
            with m.If(have):
                with m.If(bank_done):
                    m.d.sync += [d_nt.eq(0), d_row.eq(0), d_bank.eq(~d_bank)]
                    for b in range(2):
                        with m.If(d_bank == b):
                            m.d.sync += out_full[b].eq(0)
                with m.Elif(row_done):
                    m.d.sync += [d_nt.eq(0), d_row.eq(d_row + 1)]
                with m.Else():
                    m.d.sync += d_nt.eq(d_nt + 1)
        return m
