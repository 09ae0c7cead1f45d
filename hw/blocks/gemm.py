"""The output-stationary systolic GEMM: C = A·W with W held on chip.

Three levels, after gemmini's PE → Tile → Mesh (and allo's ``systolic.py``), one module each:

* :mod:`.pe`: the processing element, one multiply-accumulate (or two in one multiplier with
  ``GemmConfig.dsp_packing``); its hard multiplier and the packing arithmetic are the vendor
  module :mod:`.dsp`, whose rule of what sits in a DSP (``hw.devices``) ``perf`` reads too.
* :mod:`.systolic`: the ``rows``×``cols`` grid of PEs with the skews that feed it a wavefront,
  advancing in lock-step on one enable.
* here, :class:`Gemm`: the array with its on-chip memories (double-buffered activation tiles,
  the weights, double-buffered output rows), the feeder that walks the tiles and the drain that
  emits rows. It decides each step from registered state and lets the array take it one cycle
  later, from a register, so that no decision has to reach every PE in the cycle it is made.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..stream import row_layout
from .gemm_config import CODE_BITS, GROUP_SCALE_BITS, WEIGHT_GROUP, GemmConfig
from .systolic import SystolicArray

__all__ = ["GemmConfig", "Gemm"]


class Gemm(wiring.Component):
    """C = A·W: int8 activations streamed in rows, weights on chip, int32 results in rows.

    Parameters
    ----------
    cfg : GemmConfig
    weights : ndarray of shape (k, n), optional
        Initial weights (memory contents at configuration), with ``weight_groups`` the codes
        (0..15). Weights can also be (re)loaded through the ``weight`` stream.
    group_scale, group_min : ndarray of shape (k/32, n), optional
        ``weight_groups`` only: the initial group tables (int16, ``cfg.group_tables``: at
        ``w_width`` 8, Q8_0's, the scales alone), loadable through ``group``.
    weight_banks : 1 or 2
        2: the weight memory holds two matrices (with ``weight_groups`` the group memory two
        tables too), so that the next one loads while the array computes with the other
        (double buffering, for weights fetched per tensor from off-chip memory); then each
        activation tensor consumes one load, in order (see ``weight``), and there are no
        initial weights.

    Members
    -------
    act : In(stream.Signature(row_layout(signed(a_width), lanes)))
        A, row by row: ``k_beats = ceil(k / lanes)`` beats per row, ``last`` on a row's last
        beat, ``end`` on the last beat of the last row of A (``end`` is read only on a row's
        last beat). Any number of rows M; ``end`` flushes a partial token tile. When ``lanes``
        does not divide k, the lanes of a row's last beat past k are ignored (whatever they
        hold): the feeder stops at inner index k - 1 and feeds zeros beyond it.
    weight : In(stream.Signature(weight_layout(cfg)))
        W, row by row (k rows of ``n_tiles`` beats of ``cols`` lanes, lanes past n
        zero-padded), ``end`` on the last beat. With ``weight_groups``, the codes two rows at
        a time, as the weight memory holds them (:meth:`weight_rows`): ``k/2`` rows of
        ``n_tiles`` beats of ``2·cols`` codes, a beat a feature tile's ``cols`` codes of row
        ``2r`` then its ``cols`` of row ``2r+1``, so a beat is ``cols`` bytes, as at int8.
        Accepted only while no tile is being computed, and computation waits while a load is
        under way, so a load never mixes with a product. With two weight banks,
        loads fill the banks in turn and tensors use them in turn: a tensor's first token tile
        starts once its bank's load is complete (its ``end`` beat taken the cycle before), a
        load is taken while its bank is free — its previous matrix's tensor has issued its
        last step — whatever the array does with the other bank.
    group : In(stream.Signature(row_layout(signed(16), T * cols)))
        ``weight_groups`` only: the group tables (``T = len(cfg.group_tables)``), ``k/32``
        rows of ``n_tiles`` beats, each beat one feature tile's scales (lanes ``0..cols-1``)
        then at W4 its minima (lanes ``cols..2·cols-1``), lanes past n zero; ``end`` on the
        last beat. Accepted like
        ``weight`` (either may come first, or both at once, into the same bank with two
        banks); a product waits for both.
    o : Out(stream.Signature(row_layout(signed(32), cols)))
        C, row by row: ``n_tiles`` beats per row, lanes past n are zero; ``last`` and ``end``
        as on ``act``.

    Timing: a token tile of ``rows`` rows starts when all its input has arrived; token tiles
    then run back to back, each taking ``n_tiles × tile_steps`` cycles, with their fill and
    drain overlapped; ``perf.cycles.gemm_cycles`` gives the exact count. Backpressure on ``o``
    stalls the array only when both output row buffers are full; input gaps stall it between
    token tiles only. Each step is decided (``go``) from registered state and taken by the
    array one cycle later (``step``, a register), with the array's inputs and the readout's
    controls registered alike; a result row is written to its buffer in the array's cycle,
    which may be the cycle after the buffer's last beat was read out.

    With ``dsp_packing`` the array has ``cols/2`` multipliers per row, each computing two
    adjacent output columns; results and timing are those of the unpacked GEMM.

    With ``weight_groups`` (GGUF's Q4_1) the weight memory holds 4-bit codes ``q``, a word
    the codes of two successive k of a feature tile (half the weight words of int8, each a
    ``cols`` bytes wide beat of ``weight``; a read takes the half of its k), and a group
    table memory one ``(D, M)`` pair per (feature tile, group, column), read alongside. The
    PEs multiply the codes (``a_width × 5`` bits signed, two columns per multiplier with
    ``dsp_packing``) and the array runs each group of 32 k as a tile of its own: its flag
    restarts every PE's ``Σ a·q`` and a row-sum column's ``Σ a``, and the readout takes each
    group's partial sums out, a row a step, while the next group is computed. After the array
    each column scales them, ``D·Σa·q + M·Σa`` (two multipliers a column, shared by the rows;
    at ``w_width`` 8, GGUF's Q8_0, the codes are int8 and a group has no minimum: ``D·Σa·q``,
    one multiplier a column, no row-sum column and no minima in memory),
    and adds them to the row's running sum (from ``acc_bias``) in an accumulator memory; at a
    feature tile's last group the sum (``acc_width`` bits, which may exceed 32) is shifted
    right by ``cfg.shift`` into its output buffer (wiring, and for half-even a tie detector on
    the dropped bits), into int32 that never saturates (``GemmConfig.min_group_shift``). This
    is ``Σ_k a·(D·q + M)`` exactly, and the timing is the plain GEMM's: the PEs are
    ``GROUP_STAGES`` shallower than the scaling after them (``GemmConfig.pe_stages``). It
    needs ``rows`` and ``cols`` of at most 32 (a group's readout within its 32 steps). Exactly
    ``sim.golden.gemm.group_gemm_bitexact``.
    """

    def __init__(self, cfg: GemmConfig, *, weights=None, group_scale=None, group_min=None,
                 weight_banks=1):
        self._MustUse__silence = True       # until the checks below have passed
        if not isinstance(cfg, GemmConfig):
            raise TypeError(f"cfg must be a GemmConfig, not {cfg!r}")
        if weight_banks not in (1, 2):
            raise ValueError(f"weight_banks={weight_banks!r}; allowed: 1 or 2")
        if weight_banks == 2 and any(t is not None for t in (weights, group_scale, group_min)):
            raise ValueError("two weight banks are filled by loads only; allowed: "
                             "weights=None (and no group tables) with weight_banks=2")
        self.cfg, self.weight_banks = cfg, weight_banks
        self._weights = None if weights is None else self.weight_words(cfg, weights)
        tables = {"group_scale": group_scale, "group_min": group_min}
        if not cfg.weight_groups and any(t is not None for t in tables.values()):
            raise ValueError("group_scale/group_min are given, but cfg.weight_groups is false")
        given = any(t is not None for t in tables.values())
        self._groups = self.group_words(cfg, **tables) if given else None
        self._MustUse__silence = False
        members = {
            "act": In(stream.Signature(row_layout(signed(cfg.a_width), cfg.lanes))),
            "weight": In(stream.Signature(self.weight_layout(cfg))),
            "o": Out(stream.Signature(row_layout(signed(cfg.OUT_WIDTH), cfg.cols))),
        }
        if cfg.weight_groups:
            members["group"] = In(stream.Signature(self.group_layout(cfg)))
        super().__init__(members)

    @staticmethod
    def weight_shape(cfg):
        """A weight lane: a signed ``w_width``-bit weight, or with ``weight_groups`` a code
        (unsigned at ``w_width`` 4, Q4_1's; int8 at 8, Q8_0's)."""
        return unsigned(CODE_BITS) if cfg.k_per_word == 2 else signed(cfg.w_width)

    @classmethod
    def weight_layout(cls, cfg):
        """The ``weight`` stream's payload: ``cols`` weights a beat, or with
        ``weight_groups`` the codes of two rows (``2·cols``)."""
        return row_layout(cls.weight_shape(cfg), cfg.k_per_word * cfg.cols)

    @classmethod
    def weight_rows(cls, cfg, weights):
        """The ``weight`` stream's tensor of W (k×n): W itself (cut into beats of ``cols``
        by ``sim.streams.pack_rows``, each row padded to ``n_tiles`` beats), or with
        ``weight_groups`` at ``w_width`` 4 the codes as ``k/2`` rows of ``n_tiles · 2·cols``:
        per feature tile its ``cols`` codes of row ``2r`` then of row ``2r+1``, lanes past n
        zero (at 8, the codes as W)."""
        if cfg.k_per_word == 1:
            return cfg.check_codes(weights) if cfg.weight_groups else cfg.check_weights(weights)
        words = np.asarray(cls.weight_words(cfg, weights), dtype=np.int64)   # tile-major
        nt, half = cfg.n_tiles, cfg.k // 2
        return words.reshape(nt, half, 2 * cfg.cols).transpose(1, 0, 2) \
            .reshape(half, nt * 2 * cfg.cols)

    @staticmethod
    def group_layout(cfg):
        """The ``group`` stream's payload (and a group memory word's lanes): a feature tile's
        ``cols`` entries of each of ``cfg.group_tables``."""
        return row_layout(signed(GROUP_SCALE_BITS), len(cfg.group_tables) * cfg.cols)

    @staticmethod
    def group_words(cfg, group_scale=None, group_min=None):
        """The group tables ((k/32)×n each, ``cfg.group_tables``: at W8 the scales alone) as
        the group memory's rows: one per (feature tile, group), the tile's ``cols`` scales
        then (W4) its ``cols`` minima (the ``group`` stream carries the same beats
        group-major: :meth:`group_rows`)."""
        tables = cfg.check_group_tables({"group_scale": group_scale, "group_min": group_min})
        width = cfg.n_tiles * cfg.cols
        rows = []
        for nt in range(cfg.n_tiles):
            for g in range(cfg.groups):
                row = []
                for t in tables:
                    padded = np.zeros(width, dtype=np.int64)
                    padded[:cfg.n] = t[g]
                    row += list(map(int, padded[nt * cfg.cols:(nt + 1) * cfg.cols]))
                rows.append(row)
        return rows

    @staticmethod
    def group_rows(cfg, group_scale=None, group_min=None):
        """The ``group`` stream's tensor: (k/32) rows of ``n_tiles · T·cols`` int16 (``T``
        tables), each tile's scales then (W4) minima (cut into beats by
        ``sim.streams.pack_rows``)."""
        words = Gemm.group_words(cfg, group_scale, group_min)     # tile-major
        nt, g, w = cfg.n_tiles, cfg.groups, len(cfg.group_tables) * cfg.cols
        return np.asarray(words, dtype=np.int64).reshape(nt, g, w) \
            .transpose(1, 0, 2).reshape(g, nt * w)

    @classmethod
    def weight_words(cls, cfg, weights):
        """W (k×n) as the weight memory's rows: one per (feature tile, k), ``cols`` lanes each;
        with ``weight_groups`` W holds the codes and a row is a (feature tile, k/2): the
        tile's ``cols`` codes of row ``2r``, then of row ``2r+1``."""
        w = cfg.check_codes(weights) if cfg.weight_groups else cfg.check_weights(weights)
        padded = np.zeros((cfg.k, cfg.n_tiles * cfg.cols), dtype=np.int64)
        padded[:, :cfg.n] = w
        tiles = padded.reshape(cfg.k, cfg.n_tiles, cfg.cols).transpose(1, 0, 2)
        width = cfg.k_per_word * cfg.cols
        return [list(map(int, row)) for row in tiles.reshape(-1, width)]

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
        WB = self.weight_banks
        P = cfg.k_per_word               # k per weight word
        KW = K // P                             # weight words per feature tile
        m.submodules.wmem = wmem = memory.Memory(
            shape=data.ArrayLayout(self.weight_shape(cfg), P * C), depth=WB * NT * KW,
            init=self._weights or [])
        w_wr = wmem.write_port()
        w_rd = wmem.read_port()
        grouped = cfg.weight_groups
        if grouped:
            G = cfg.groups
            m.submodules.gmem = gmem = memory.Memory(
                shape=self.group_layout(cfg)["data"].shape, depth=WB * NT * G,
                init=self._groups or [])
            g_wr = gmem.write_port()
            g_rd = gmem.read_port()
        m.submodules.obuf = obuf = memory.Memory(
            shape=data.ArrayLayout(signed(cfg.obuf_width), C), depth=2 * R * NT, init=[])
        o_wr = obuf.write_port()
        o_rd = obuf.read_port()
        m.submodules.array = array = SystolicArray(cfg)

        # ---- weight loader -------------------------------------------------------------------
        # (feature tile, k) in order into the weight memory; with two banks, the bank the next
        # load fills and which banks hold a complete load not yet used up by its tensor
        running = Signal()       # inside a token tile
        flushing = Signal()
        f_wbank = Signal()       # the bank the array computes with
        idle = ~running & ~flushing
        loading, w_ready = self._table_loader(m, self.weight, w_wr, KW, NT, WB, idle,
                                              ("wl_k", "wl_nt", "loading", "wl_bank", "w_ready"))
        # the group tables' loader, alike: (group, feature tile) in the weights' order; with
        # two banks, banks of their own filled and freed in step with the weights'
        if grouped:
            g_loading, g_ready = self._table_loader(
                m, self.group, g_wr, G, NT, WB, idle,
                ("gl_g", "gl_nt", "g_loading", "gl_bank", "g_ready"))

        # ---- activation writer: fills token tiles into two banks ------------------------------
        bank_full = Signal(2)
        bank_last = [Signal(range(R), name=f"bank{b}_last_row") for b in range(2)]
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
                            m.d.sync += [bank_full[b].eq(1), bank_last[b].eq(in_row),
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
        cur_last = Mux(f_bank, bank_last[1], bank_last[0])
        if WB == 1:
            start_ok = cur_full & ~loading & ~self.weight.valid
        else:
            start_ok = cur_full & w_ready.bit_select(f_wbank, 1)
        if grouped and WB == 1:         # nor while the group tables load
            start_ok = start_ok & ~g_loading & ~self.group.valid
        elif grouped:                   # nor before the bank's group tables are in
            start_ok = start_ok & g_ready.bit_select(f_wbank, 1)
        active = running | flushing | start_ok
        # `go` decides a step from registered state only (two LUT levels) and drives the few
        # registers of the control: the feeder, the memory reads and the readout schedule. The
        # array and everything it gates run one cycle later on `step`, a register of `go`, so
        # the step decision never has to reach every PE in the same cycle it is made.
        conflict = Signal()
        go = Signal()
        m.d.comb += go.eq(active & ~conflict)
        is_real = ~flushing & (f_k < K)

        # f_wbase + f_k: the (tile, k) the step reads, nt·K + k (past k the read is not used)
        at = f_wbase + f_k
        w_at = at[P.bit_length() - 1:]          # its weight word (K is even when P = 2)
        m.d.comb += [
            a_rd.addr.eq(f_bank * KB + f_beat), a_rd.en.eq(go),
            w_rd.addr.eq(w_at if WB == 1 else f_wbank * (NT * KW) + w_at),
            w_rd.en.eq(go),
        ]
        if grouped:
            # a group is WEIGHT_GROUP consecutive k of one tile: the address over 32 (k is a
            # multiple of 32)
            gbits = WEIGHT_GROUP.bit_length() - 1
            g_at = at[gbits:]
            m.d.comb += [g_rd.addr.eq(g_at if WB == 1 else f_wbank * (NT * G) + g_at),
                         g_rd.en.eq(go)]
        with m.If(go):
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
                        if WB == 2:
                            # the tensor's last step: its bank is free for the next load
                            with m.If(cur_end):
                                m.d.sync += f_wbank.eq(~f_wbank)
                                for b in range(2):
                                    with m.If(f_wbank == b):
                                        m.d.sync += w_ready[b].eq(0)
                                        if grouped:
                                            m.d.sync += g_ready[b].eq(0)
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
        # With weight groups a "tile" of the array is one group (its flag every WEIGHT_GROUP
        # steps): `first`/`last` say whether it is its feature tile's first or last group.
        fields = {"real": 1, "bank": 1, "nt": range(NT), "last_row": range(R), "end": 1,
                  "last_nt": 1}
        if grouped:
            fields |= {"first": 1, "last": 1}
        meta = data.StructLayout(fields)
        issue_meta = Signal(meta)
        m.d.comb += [
            issue_meta.real.eq(is_real), issue_meta.bank.eq(f_bank), issue_meta.nt.eq(f_nt),
            issue_meta.last_row.eq(cur_last), issue_meta.end.eq(cur_end),
            issue_meta.last_nt.eq(f_nt == NT - 1),
        ]
        if grouped:
            m.d.comb += [issue_meta.first.eq(f_k < WEIGHT_GROUP),
                         issue_meta.last.eq(f_k >= K - WEIGHT_GROUP)]
            new_tile = (f_k[:gbits] == 0) & (f_k < K)
        else:
            new_tile = f_k == 0

        # ---- stage 1: memory data, aligned with the registered issue information --------------
        s1_real = Signal()
        s1_half = Signal()           # W4: the step's k is odd, the read word's upper codes
        s1_flag = Signal()
        s1_lane = Signal(range(LN))
        s1_meta = Signal(meta)
        with m.If(go):
            if P == 2:
                m.d.sync += s1_half.eq(f_k[0])
            m.d.sync += [s1_real.eq(is_real), s1_lane.eq(f_lane), s1_meta.eq(issue_meta),
                         s1_flag.eq(Mux(flushing, flush_cnt == 0, new_tile))]

        # ---- into the array's cycle: its step, inputs and readout controls are registers ------
        # The array steps on `step` = `go` one cycle late. Whatever it reads from the control
        # side is registered in the same cycle as `step` (every cycle, no enable), so at its
        # step it sees exactly what a lock-step array would have seen at `go`.
        step = Signal()
        m.d.sync += step.eq(go)
        x_a = Signal.like(array.a)
        x_w = Signal.like(array.w)
        x_flag = Signal()
        for i in range(R):
            lane_val = a_rd.data[i * LN:(i + 1) * LN]
            m.d.sync += x_a[i].eq(Mux(s1_real, lane_val[s1_lane] if LN > 1 else lane_val[0], 0))
        if grouped:
            # the code (zero on a step without data), a 4-bit one zero-extended into the
            # multipliers' signed operand; the group's pair goes to the group queue
            # (_group_sums)
            for j in range(C):
                code = Mux(s1_half, w_rd.data[C + j], w_rd.data[j]) if P == 2 else w_rd.data[j]
                m.d.sync += x_w[j].eq(Mux(s1_real, code, 0))
        else:
            for j in range(C):
                m.d.sync += x_w[j].eq(Mux(s1_real, w_rd.data[j], 0))
        m.d.sync += x_flag.eq(s1_flag)
        m.d.comb += [array.en.eq(step), array.a.eq(x_a), array.w.eq(x_w),
                     array.flag.eq(x_flag)]

        # ---- readout schedule: row i of a tile is read `readout_step + i` steps after the flag
        # of the tile that follows it (or of the flush) entered the array, and written to its
        # output buffer at `write_step + i` (the same step without weight groups). A shift
        # register of descriptors times it; which row is due at the next step is decoded one
        # step ahead into registers, so that the stall decision (an output bank still full) is
        # one LUT from registers.
        prev = Signal(meta)          # the tile in the array whose flag came last
        RS = cfg.write_step
        RR = cfg.readout_step
        depth = RS - 1 + R
        sched = [Signal(meta, name=f"sched{d}") for d in range(depth)]
        due = Signal()               # row `due_row` of `due_meta` is written at this step
        rd_due = Signal()            # weight groups: row `rd_row` is read out at this step
        rd_row = Signal(range(R))
        due_row = Signal(range(R))
        due_meta = Signal(meta)
        with m.If(go):
            with m.If(s1_flag):
                m.d.sync += [sched[0].eq(prev), prev.eq(s1_meta)]
            with m.Else():
                m.d.sync += sched[0].eq(0)
            m.d.sync += [sched[d].eq(sched[d - 1]) for d in range(1, depth)]
            # after this shift, sched[RS - 1 + i] is at RS + i: due for row i
            m.d.sync += due.eq(0)
            for i in range(R):
                with m.If(sched[RS - 1 + i].real):
                    m.d.sync += [due.eq(1), due_row.eq(i), due_meta.eq(sched[RS - 1 + i])]
            if grouped:
                m.d.sync += rd_due.eq(0)
                for i in range(R):
                    with m.If(sched[RR - 1 + i].real):
                        m.d.sync += [rd_due.eq(1), rd_row.eq(i)]

        out_full = Signal(2)
        out_last = [Signal(range(R), name=f"out{b}_last_row") for b in range(2)]
        out_end = Signal(2)
        # The drain's state (below), needed here: the bank it reads, and whether the beat it
        # reads next is that bank's last.
        d_bank = Signal()
        d_final = Signal(init=int(NT == 1))     # reset state: bank 0, row 0 of 1, tile 0
        advance = ~self.o.valid | self.o.ready
        # A due write waits while its bank still holds results not yet read out. The write
        # comes a cycle after `go`, so a bank whose last beat is read in this cycle is free
        # in time.
        emptying = (d_bank == due_meta.bank) & d_final & advance
        due_out = due & due_meta.last if grouped else due     # due into the output buffer
        m.d.comb += conflict.eq(due_out & out_full.bit_select(due_meta.bank, 1) & ~emptying)
        # The write itself happens at the array's step, from registered controls.
        wr_en = Signal()
        wr_row = Signal(range(R))
        wr_meta = Signal(meta)
        m.d.sync += [wr_en.eq(due & go), wr_row.eq(due_row), wr_meta.eq(due_meta)]
        if grouped:
            rd_en = Signal()
            rd_sel = Signal(range(R))
            m.d.sync += [rd_en.eq(rd_due & go), rd_sel.eq(rd_row)]
            m.d.comb += array.sel.eq(rd_sel)
            ob_en = self._group_sums(m, cfg, array, step, x_flag, s1_real, g_rd.data,
                                     rd_en, rd_sel, wr_en, wr_row, wr_meta, o_wr)
        else:
            ob_en = wr_en
            m.d.comb += [array.sel.eq(wr_row), o_wr.data.eq(array.row)]
        ob_row, ob_meta = wr_row, wr_meta
        m.d.comb += [
            o_wr.addr.eq((ob_meta.bank * R + ob_row) * NT + ob_meta.nt),
            o_wr.en.eq(ob_en),
        ]
        bank_written = Signal(2)
        with m.If(ob_en & (ob_row == R - 1) & ob_meta.last_nt):
            m.d.comb += bank_written.eq(1 << ob_meta.bank)
        last_next = [Mux(bank_written[b], ob_meta.last_row, out_last[b]) for b in range(2)]
        for b in range(2):
            with m.If(bank_written[b]):
                m.d.sync += [out_full[b].eq(1), out_last[b].eq(ob_meta.last_row),
                             out_end[b].eq(ob_meta.end)]

        # ---- drain: output rows in order; the read port's register is the output register ----
        d_row = Signal(range(R))
        d_nt = Signal(range(NT))
        have = out_full.bit_select(d_bank, 1)
        take = advance & have
        o_last = Signal()
        o_end = Signal()
        m.d.comb += [
            o_rd.addr.eq((d_bank * R + d_row) * NT + d_nt), o_rd.en.eq(advance),
            self.o.payload.last.eq(o_last), self.o.payload.end.eq(o_end),
        ]
        m.d.comb += [self.o.payload.data[j].eq(o_rd.data[j]) for j in range(C)]
        row_done = d_nt == NT - 1
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(have), o_last.eq(row_done),
                         o_end.eq(d_final & out_end.bit_select(d_bank, 1))]
        # Next position, written out so that `d_final` can be a register computed from it.
        d_bank_n, d_row_n, d_nt_n = Signal(), Signal(range(R)), Signal(range(NT))
        m.d.comb += [d_bank_n.eq(d_bank), d_row_n.eq(d_row), d_nt_n.eq(d_nt)]
        with m.If(take):
            with m.If(d_final):
                m.d.comb += [d_nt_n.eq(0), d_row_n.eq(0), d_bank_n.eq(~d_bank)]
                for b in range(2):
                    with m.If(d_bank == b):
                        m.d.sync += out_full[b].eq(0)
            with m.Elif(row_done):
                m.d.comb += [d_nt_n.eq(0), d_row_n.eq(d_row + 1)]
            with m.Else():
                m.d.comb += d_nt_n.eq(d_nt + 1)
        m.d.sync += [d_bank.eq(d_bank_n), d_row.eq(d_row_n), d_nt.eq(d_nt_n),
                     d_final.eq((d_nt_n == NT - 1) &
                                (d_row_n == Mux(d_bank_n, last_next[1], last_next[0])))]
        return m

    @staticmethod
    def _table_loader(m, port, wr, depth, NT, banks, idle, names):
        """A loader of ``port``'s beats into memory write port ``wr``: a table of ``depth``
        words per feature tile, beats in (word, feature tile) order (the feature tile
        fastest), to ``feature tile · depth + word``, a load ending on ``end``. With one bank
        it takes beats only while ``idle``; with two, into the bank not holding a
        complete load (its own bank register flips at each load's end). ``names``: its
        signals' (word, feature tile, loading, bank, ready). Returns ``(loading, ready)``:
        between a load's first and end beat; the banks holding a complete load (the caller
        clears a bank's bit when its tensor has used it up)."""
        n_word, n_nt, n_loading, n_bank, n_ready = names
        word = Signal(range(depth), name=n_word)
        nt = Signal(range(NT), name=n_nt)
        loading = Signal(name=n_loading)
        bank, ready = Signal(name=n_bank), Signal(2, name=n_ready)
        if banks == 1:
            m.d.comb += [port.ready.eq(idle), wr.addr.eq(nt * depth + word)]
        else:
            m.d.comb += [port.ready.eq(~ready.bit_select(bank, 1)),
                         wr.addr.eq(bank * (NT * depth) + nt * depth + word)]
        m.d.comb += wr.data.eq(port.payload.data)
        with m.If(port.valid & port.ready):
            m.d.comb += wr.en.eq(1)
            m.d.sync += loading.eq(~port.payload.end)
            if banks == 2:
                with m.If(port.payload.end):
                    m.d.sync += bank.eq(~bank)
                    for b in range(2):
                        with m.If(bank == b):
                            m.d.sync += ready[b].eq(1)
            with m.If(port.payload.end):
                m.d.sync += [word.eq(0), nt.eq(0)]
            with m.Elif(nt == NT - 1):
                m.d.sync += [nt.eq(0), word.eq(word + 1)]
            with m.Else():
                m.d.sync += nt.eq(nt + 1)
        return loading, ready

    @staticmethod
    def _group_sums(m, cfg, array, step, x_flag, s1_real, pair, rd_en, rd_row, wr_en, wr_row,
                    wr_meta, o_wr):
        """The grouped GEMM's scaling of each group's partial sums, after the array.

        A row's partial sums of a group (``Σ a·q`` per column, and ``Σ a`` from the row-sum
        column) are read out at the array's step ``rd_en`` (``GemmConfig.readout_step``); each
        column multiplies its ``Σ a·q`` by the group's scale ``D`` and the row's ``Σ a`` by the
        group's minimum ``M`` into registers held until the next step (``GROUP_STAGES``), at
        which the row is written (``wr_en``, ``GemmConfig.write_step``, the plain GEMM's
        readout step): the products are added to the row's running sum (``acc_bias`` at a
        feature tile's first group), kept in an accumulator memory of ``rows`` words until the
        tile's last group, whose sum is shifted (wiring, and for half-even a tie fix on the
        dropped bits) into the output buffer. The write and its stall decision are the plain
        GEMM's, so the timing is too.

        A group's ``(D, M)`` is read with its codes as it enters the array and queued until
        its last row is read out (a queue of a few entries: groups overlap in the array by
        at most the readout's ``readout_step + rows`` steps), so the group memory's bank is
        free for the next load as soon as the tensor's last step is issued, as the weights'.

        Returns the output buffer's write enable."""
        R, C = cfg.rows, cfg.cols
        depth = cfg.group_queue_depth
        m.submodules.gqueue = gq = memory.Memory(
            shape=Gemm.group_layout(cfg)["data"].shape, depth=depth, init=[])
        gq_wr = gq.write_port()
        gq_rd = gq.read_port(domain="comb")
        wp = Signal(range(depth))
        rp = Signal(range(depth))
        # the pair of the group whose flag enters the array at this step (registered every
        # cycle, as the array's other inputs)
        x_pair = Signal.like(pair)
        x_push = Signal()
        m.d.sync += [x_pair.eq(pair), x_push.eq(s1_real)]
        m.d.comb += [gq_wr.addr.eq(wp), gq_wr.data.eq(x_pair), gq_rd.addr.eq(rp)]
        with m.If(step & x_flag & x_push):
            m.d.comb += gq_wr.en.eq(1)
            m.d.sync += wp.eq(wp + 1)
        with m.If(rd_en & (rd_row == R - 1)):
            m.d.sync += rp.eq(rp + 1)

        # the readout's step: the products, and the row's running sum read
        m.submodules.gacc = gacc = memory.Memory(
            shape=data.ArrayLayout(signed(cfg.acc_width), C), depth=R, init=[])
        ga_wr = gacc.write_port()
        ga_rd = gacc.read_port(transparent_for=())
        dq_w = GROUP_SCALE_BITS + cfg.group_sum_width
        dq = [Signal(signed(dq_w), name=f"dq{j}") for j in range(C)]
        # M·Σa: W4's minima; Q8_0's groups have none (nor the array a row-sum column)
        ms = [Signal(signed(dq_w), name=f"ms{j}") if cfg.group_minimum else 0
              for j in range(C)]
        m.d.comb += [ga_rd.addr.eq(rd_row), ga_rd.en.eq(rd_en)]
        with m.If(rd_en):
            for j in range(C):
                m.d.sync += dq[j].eq(gq_rd.data[j] * array.row[j])
                if cfg.group_minimum:
                    m.d.sync += ms[j].eq(gq_rd.data[C + j] * array.row_sum)
        # the write's step: the sum, into the running sums or (last group) the output buffer
        m.d.comb += [ga_wr.addr.eq(wr_row), ga_wr.en.eq(wr_en & ~wr_meta.last)]
        for j in range(C):
            y = Signal(signed(cfg.acc_width), name=f"sum{j}")
            base = Mux(wr_meta.first, cfg.acc_bias, ga_rd.data[j])
            m.d.comb += [y.eq(base + dq[j] + ms[j]), ga_wr.data[j].eq(y)]
            # each sum started from acc_bias (half a step when rounding to nearest): the floor
            # shift is wiring; half-even turns a tie (no dropped bit set after the bias) to the
            # even neighbour by clearing bit 0
            q = y >> cfg.shift
            if cfg.rounding == "half_even" and cfg.shift:
                tie = y[:cfg.shift] == 0
                q = Cat(q[0] & ~tie, q[1:]).as_signed()
            m.d.comb += o_wr.data[j].eq(q)
        return wr_en & wr_meta.last
