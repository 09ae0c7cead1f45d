"""The output-stationary systolic GEMM: C = A·W with W held on chip.

Structure (after gemmini's PE → Tile → Mesh and allo's ``systolic.py``):

* :class:`ProcessingElement` multiplies and accumulates one output; a ``flag`` travelling with
  the activation marks the first step of a new tile, at which the PE hands its finished sum to
  an output register and starts the next one, so tiles follow each other with no bubble. Its
  multiplier is registered on both sides (``GemmConfig.PE_STAGES``; on ECP5 in the
  MULT18X18D's own registers). :class:`PackedProcessingElement` computes two adjacent output
  columns with one multiplier (``GemmConfig.dsp_packing``).
* :class:`Skew` delays lane ``i`` by ``i + 1`` steps: the wavefront that feeds the array.
* :class:`SystolicArray` is the ``rows``×``cols`` grid with its skews, advancing only on ``en``
  (the whole array moves in lock-step, which makes stalls trivially safe).
* :class:`Gemm` adds the on-chip memories (double-buffered activation tiles, the weights,
  double-buffered output rows), the feeder that walks the tiles and the drain that emits rows.
  It decides each step from registered state and lets the array take it one cycle later, from
  a register, so that no decision has to reach every PE in the cycle it is made.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import (
    Cat,
    ClockSignal,
    Instance,
    Module,
    Mux,
    ResetSignal,
    Signal,
    signed,
    unsigned,
)
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .. import devices
from ..stream import row_layout
from .gemm_config import GemmConfig

__all__ = ["GemmConfig", "ProcessingElement", "PackedProcessingElement", "pack_weight_pair",
           "Skew", "SystolicArray", "Gemm"]


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
        The sum of the previous tile, valid from ``PE_STAGES + 1`` steps after ``flag_i`` (the
        product passes the multiplier's stages first) until as long after the next flag.

    ``platform.family == "ecp5"``: the multiplier is a MULT18X18D using its own registers.
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
        product, first = _multiply(m, self.en, self.a_i, self.w_i, self.flag_i,
                                   platform=platform)
        with m.If(self.en):
            m.d.sync += [self.a_o.eq(self.a_i), self.w_o.eq(self.w_i),
                         self.flag_o.eq(self.flag_i)]
            with m.If(first):
                m.d.sync += [self.result.eq(acc), acc.eq(product)]
            with m.Else():
                m.d.sync += acc.eq(acc + product)
        return m


def _multiply(m, en, a, w, flag, operand=None, platform=None):
    """The registered multiplier of a PE, ``GemmConfig.PE_STAGES`` enabled stages deep:
    operands, product, product again; returns the product and ``flag`` delayed alike.
    ``operand`` makes the multiplier's weight operand from the registered ``w`` (wiring only).

    Portable form: the operand registers copy ``a``/``w`` as the PE's pass-through registers
    do; they have no reset, which keeps Yosys from merging them with those (a merged copy would
    serve the neighbour too, and could not sit by the multiplier). What they hold after a reset
    is flushed before any result is read: the next tile's flag restarts the accumulator.

    On ECP5 (``platform.family == "ecp5"``) the operand and product registers are the
    MULT18X18D's own input and output registers, which Yosys does not infer: the multiplier's
    delay then stays inside the hard block, between registers, wherever the placer puts it.
    """
    if devices.multiplier_registers(getattr(platform, "family", None), len(a), len(w),
                                    packed=operand is not None):
        product = _ecp5_multiplier(m, en, a, w)
    else:
        a_m = Signal.like(a, name="a_mul", reset_less=True)
        w_m = Signal.like(w, name="w_mul", reset_less=True)
        w_op = w_m if operand is None else operand(w_m)
        product = Signal(signed(len(a_m) + len(w_op)), name="product0")
        with m.If(en):
            m.d.sync += [a_m.eq(a), w_m.eq(w), product.eq(a_m * w_op)]
    product1 = Signal.like(product, name="product1")
    flags = [Signal(name=f"flag_d{stage}") for stage in range(GemmConfig.PE_STAGES)]
    with m.If(en):
        m.d.sync += product1.eq(product)
        m.d.sync += [f.eq(prev) for f, prev in zip(flags, [flag, *flags], strict=False)]
    return product1, flags[-1]


#: Operand width of the ECP5 sysDSP multiplier (MULT18X18D), from the device catalogue.
ECP5_MULT_WIDTH = devices.FAMILIES["ecp5"].mult.a


def _ecp5_multiplier(m, en, a, w):
    """A MULT18X18D with input and output registers (clock enable ``en``, synchronous reset
    from the domain's, none in a reset-less domain such as a board's: what they hold is
    flushed like the portable form's operand registers):
    ``a·w`` two enabled steps after its operands, as the portable form's ``product0``."""
    a_ext = Signal(signed(ECP5_MULT_WIDTH), name="mult_a")
    w_ext = Signal(signed(ECP5_MULT_WIDTH), name="mult_b")
    p = Signal(signed(2 * ECP5_MULT_WIDTH), name="mult_p")
    m.d.comb += [a_ext.eq(a), w_ext.eq(w)]
    ports = {f"i_A{k}": a_ext[k] for k in range(ECP5_MULT_WIDTH)}
    ports |= {f"i_B{k}": w_ext[k] for k in range(ECP5_MULT_WIDTH)}
    ports |= {f"i_C{k}": 0 for k in range(ECP5_MULT_WIDTH)}
    ports |= {f"o_P{k}": p[k] for k in range(2 * ECP5_MULT_WIDTH)}
    regs = {}
    for reg, clk in (("INPUTA", "CLK0"), ("INPUTB", "CLK0"), ("PIPELINE", "NONE"),
                     ("OUTPUT", "CLK0"), ("INPUTC", "NONE")):
        regs |= {f"p_REG_{reg}_CLK": clk, f"p_REG_{reg}_CE": "CE0", f"p_REG_{reg}_RST": "RST0"}
    # SOURCEB_MODE is one of B_SHIFT, C_SHIFT, B_C_DYNAMIC, HIGHSPEED (Lattice FPGA-TN-02205;
    # the enum prjtrellis fuzzed and ecppack packs, nothing else). B_SHIFT with SOURCEB low takes
    # the B operand from the B pins, as Yosys's own MULT18X18D mapping does; SOURCEB high would
    # take it from the neighbour's shift chain (SRIB).
    m.submodules.mult = Instance(
        "MULT18X18D", **regs,
        p_GSR="DISABLED", p_RESETMODE="SYNC", p_SOURCEB_MODE="B_SHIFT",
        p_MULT_BYPASS="DISABLED", p_CAS_MATCH_REG="FALSE",
        i_SIGNEDA=1, i_SIGNEDB=1, i_SOURCEA=0, i_SOURCEB=0,
        i_CLK0=ClockSignal(), i_CE0=en, i_RST0=ResetSignal(allow_reset_less=True),
        **ports)
    return p[:len(a) + len(w)].as_signed()


def pack_weight_pair(w_lo, w_hi):
    """The weights of two output columns as the packed PE takes them: ``w_lo`` and
    ``w_hi − sign(w_lo)`` side by side (``2·w_width + 1`` bits).

    Taking the low weight's sign off the high one here, once per column pair, is what lets each
    PE build its multiplier operand ``w_hi·2^PACK_SHIFT + w_lo`` by wiring alone (see
    :class:`PackedProcessingElement`).
    """
    return Cat(w_lo, (w_hi - w_lo[-1])[:len(w_hi) + 1])


class PackedProcessingElement(wiring.Component):
    """Two multiply-accumulate cells in one multiplier (``GemmConfig.dsp_packing``): outputs
    ``lo`` and ``hi`` of two adjacent columns, which share the activation.

    The multiplier computes ``P = a·(w_hi·2^S + w_lo)`` with ``S = GemmConfig.PACK_SHIFT``, a
    ``(w_width + S + 1)``-bit by ``a_width``-bit product: one DSP48E2 (27×18). Both products come
    out exactly: ``a·w_lo`` is the low ``a_width + w_width`` bits of ``P`` read as signed (it
    is smaller than ``2^(S−1)``, so the bits above it up to ``S`` are its sign), and ``a·w_hi``
    is ``P >> S`` plus that sign (the borrow the negative low product took from the high
    field). The operand is ``Cat(w_lo, sign(w_lo) × (S − w_width), w_hi − sign(w_lo))``, pure
    wiring of what :func:`pack_weight_pair` gives. ``tests/hw/test_gemm_packing.py`` checks the
    arithmetic for every a, w_lo, w_hi.

    Members
    -------
    en : In(1)
    a_i, flag_i : In
        Activation (from the left), first-step-of-tile flag.
    w_i : In(unsigned(2·w_width + 1))
        The column pair's weights from :func:`pack_weight_pair` (from above).
    a_o, w_o, flag_o : Out
        The same, registered, for the right and lower neighbours.
    result_lo, result_hi : Out(signed(acc_width))
        The sums of the previous tile of the two columns, with the timing of
        :class:`ProcessingElement`'s ``result``.
    """

    def __init__(self, a_width, w_width, acc_width):
        self._widths = (a_width, w_width, acc_width)
        super().__init__({
            "en": In(1),
            "a_i": In(signed(a_width)), "w_i": In(unsigned(2 * w_width + 1)), "flag_i": In(1),
            "a_o": Out(signed(a_width)), "w_o": Out(unsigned(2 * w_width + 1)), "flag_o": Out(1),
            "result_lo": Out(signed(acc_width)), "result_hi": Out(signed(acc_width)),
        })

    def elaborate(self, platform):
        m = Module()
        aw, ww, accw = self._widths
        S = GemmConfig.PACK_SHIFT

        def operand(pair):
            w_lo = pair[:ww]
            return Cat(w_lo, w_lo[-1].replicate(S - ww), pair[ww:]).as_signed()

        product, first = _multiply(m, self.en, self.a_i, self.w_i, self.flag_i, operand)
        acc_lo = Signal(signed(accw))
        acc_hi = Signal(signed(accw))
        lo = product[:aw + ww].as_signed()
        hi = product[S:].as_signed() + product[S - 1]
        with m.If(self.en):
            m.d.sync += [self.a_o.eq(self.a_i), self.w_o.eq(self.w_i),
                         self.flag_o.eq(self.flag_i)]
            with m.If(first):
                m.d.sync += [self.result_lo.eq(acc_lo), self.result_hi.eq(acc_hi),
                             acc_lo.eq(lo), acc_hi.eq(hi)]
            with m.Else():
                m.d.sync += [acc_lo.eq(acc_lo + lo), acc_hi.eq(acc_hi + hi)]
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
        step S is complete from step S + cols + PE_STAGES + i + 1 until step
        S + L + PE_STAGES + i + 1 (L >= cols the tile length).

    With ``dsp_packing`` a PE holds columns 2p and 2p+1, the weight skew carries the pairs
    (:func:`pack_weight_pair`) and results are complete ``cols/2`` steps sooner; the window
    above holds all the same.
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
        R, C = cfg.rows, cfg.cols
        # With packing, a physical column carries a pair of logical ones: both weights are
        # skewed together, so the pair meets the activation in one multiplier.
        pack = 2 if cfg.dsp_packing else 1
        pcols = C // pack
        m.submodules.a_skew = a_skew = Skew(signed(cfg.a_width), R)
        m.submodules.f_skew = f_skew = Skew(1, R)
        if cfg.dsp_packing:
            m.submodules.w_skew = w_skew = Skew(unsigned(2 * cfg.w_width + 1), pcols)
            m.d.comb += [w_skew.i[p].eq(pack_weight_pair(self.w[2 * p], self.w[2 * p + 1]))
                         for p in range(pcols)]
        else:
            m.submodules.w_skew = w_skew = Skew(signed(cfg.w_width), C)
            m.d.comb += w_skew.i.eq(self.w)
        m.d.comb += [a_skew.en.eq(self.en), a_skew.i.eq(self.a),
                     w_skew.en.eq(self.en), f_skew.en.eq(self.en)]
        m.d.comb += [f_skew.i[i].eq(self.flag) for i in range(R)]

        pes = [[None] * pcols for _ in range(R)]
        results = [[None] * C for _ in range(R)]
        for i in range(R):
            for j in range(pcols):
                if cfg.dsp_packing:
                    pe = PackedProcessingElement(cfg.a_width, cfg.w_width, cfg.acc_width)
                    results[i][2 * j:2 * j + 2] = pe.result_lo, pe.result_hi
                else:
                    pe = ProcessingElement(cfg.a_width, cfg.w_width, cfg.acc_width)
                    results[i][j] = pe.result
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
            for i in range(R):
                with m.Case(i):
                    m.d.comb += [self.row[j].eq(results[i][j]) for j in range(C)]
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
        A, row by row: ``k_beats = ceil(k / lanes)`` beats per row, ``last`` on a row's last
        beat, ``end`` on the last beat of the last row of A (``end`` is read only on a row's
        last beat). Any number of rows M; ``end`` flushes a partial token tile. When ``lanes``
        does not divide k, the lanes of a row's last beat past k are ignored (whatever they
        hold): the feeder stops at inner index k - 1 and feeds zeros beyond it.
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
    token tiles only. Each step is decided (``go``) from registered state and taken by the
    array one cycle later (``step``, a register), with the array's inputs and the readout's
    controls registered alike; a result row is written to its buffer in the array's cycle,
    which may be the cycle after the buffer's last beat was read out.

    With ``dsp_packing`` the array has ``cols/2`` multipliers per row, each computing two
    adjacent output columns; results and timing are those of the unpacked GEMM.
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
        start_ok = cur_full & ~loading & ~self.weight.valid
        active = running | flushing | start_ok
        # `go` decides a step from registered state only (two LUT levels) and drives the few
        # registers of the control: the feeder, the memory reads and the readout schedule. The
        # array and everything it gates run one cycle later on `step`, a register of `go`, so
        # the step decision never has to reach every PE in the same cycle it is made.
        conflict = Signal()
        go = Signal()
        m.d.comb += go.eq(active & ~conflict)
        is_real = ~flushing & (f_k < K)

        m.d.comb += [
            a_rd.addr.eq(f_bank * KB + f_beat), a_rd.en.eq(go),
            w_rd.addr.eq(f_wbase + f_k), w_rd.en.eq(go),
        ]
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
            "real": 1, "bank": 1, "nt": range(NT), "last_row": range(R), "end": 1,
            "last_nt": 1,
        })
        issue_meta = Signal(meta)
        m.d.comb += [
            issue_meta.real.eq(is_real), issue_meta.bank.eq(f_bank), issue_meta.nt.eq(f_nt),
            issue_meta.last_row.eq(cur_last), issue_meta.end.eq(cur_end),
            issue_meta.last_nt.eq(f_nt == NT - 1),
        ]

        # ---- stage 1: memory data, aligned with the registered issue information --------------
        s1_real = Signal()
        s1_flag = Signal()
        s1_lane = Signal(range(LN))
        s1_meta = Signal(meta)
        with m.If(go):
            m.d.sync += [s1_real.eq(is_real), s1_lane.eq(f_lane), s1_meta.eq(issue_meta),
                         s1_flag.eq(Mux(flushing, flush_cnt == 0, f_k == 0))]

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
        for j in range(C):
            m.d.sync += x_w[j].eq(Mux(s1_real, w_rd.data[j], 0))
        m.d.sync += x_flag.eq(s1_flag)
        m.d.comb += [array.en.eq(step), array.a.eq(x_a), array.w.eq(x_w),
                     array.flag.eq(x_flag)]

        # ---- readout schedule: row i of a tile is read `readout_step + i` steps after the flag
        # of the tile that follows it (or of the flush) entered the array. A shift register of
        # descriptors times it; which row is due at the next step is decoded one step ahead
        # into registers, so that the stall decision (an output bank still full) is one LUT
        # from registers.
        prev = Signal(meta)          # the tile in the array whose flag came last
        RS = cfg.readout_step
        depth = RS - 1 + R
        sched = [Signal(meta, name=f"sched{d}") for d in range(depth)]
        due = Signal()               # row `due_row` of `due_meta` is written at this step
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
        m.d.comb += conflict.eq(due & out_full.bit_select(due_meta.bank, 1) & ~emptying)
        # The write itself happens at the array's step, from registered controls.
        wr_en = Signal()
        wr_row = Signal(range(R))
        wr_meta = Signal(meta)
        m.d.sync += [wr_en.eq(due & go), wr_row.eq(due_row), wr_meta.eq(due_meta)]
        m.d.comb += [
            array.sel.eq(wr_row),
            o_wr.addr.eq((wr_meta.bank * R + wr_row) * NT + wr_meta.nt),
            o_wr.data.eq(array.row),
            o_wr.en.eq(wr_en),
        ]
        bank_written = Signal(2)
        with m.If(wr_en & (wr_row == R - 1) & wr_meta.last_nt):
            m.d.comb += bank_written.eq(1 << wr_meta.bank)
        last_next = [Mux(bank_written[b], wr_meta.last_row, out_last[b]) for b in range(2)]
        for b in range(2):
            with m.If(bank_written[b]):
                m.d.sync += [out_full[b].eq(1), out_last[b].eq(wr_meta.last_row),
                             out_end[b].eq(wr_meta.end)]

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
