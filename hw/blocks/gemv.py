"""The decode-path GEMV: y = x·W for one token at a time, at full use of its multipliers.

In decode a token is a single row, so an output-stationary array (which reuses each weight over
``rows`` tokens) would leave all but one of its rows idle. A GEMV instead splits the inner
dimension over ``rows`` lanes and the outputs over ``cols``: every cycle it reads ``rows×cols``
weights (one wide memory word), multiplies them by ``rows`` activations and adds each column's
``rows`` products in a tree into ``cols`` accumulators. Each weight is used once per token, so
its throughput is set by how many weights per cycle the memory delivers, as in the paper's
decode analysis (``perf``'s GEMV engine).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import BlockConfig, Choice, ConfigError, Range, spec
from ..stream import row_layout
from .gemm_config import LinearSizes

__all__ = ["GemvConfig", "Gemv"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class GemvConfig(LinearSizes, BlockConfig):
    """A GEMV engine: ``rows`` inner-dimension lanes × ``cols`` output lanes."""

    rows: int = spec(4, Range(1, 64), "inner-dimension (k) lanes: products summed per column")
    cols: int = spec(4, Range(1, 64), "output lanes: output features computed at once")
    k: int = spec(64, Range(1, 65536), "inner dimension K (input features)")
    n: int = spec(64, Range(1, 65536), "output features N")
    lanes: int = spec(4, Range(1, 64), "activation elements per input beat; divides rows "
                      "(any k: the last beat of a row is padded)")
    a_width: int = spec(8, Choice((8, 9, 10)),
                        "activation bits (signed); 9, 10: the quant stages' rows (a layer "
                        "description's narrow)")
    w_width: int = spec(8, Choice((4, 8)), "weight bits (signed)")

    #: The GEMV has no grouped 4-bit weights (GGUF's Q4_1 runs on the GEMM's
    #: ``GemmConfig.weight_groups``); its harness shares the GEMM's, which asks.
    weight_groups = False

    def _validate(self):
        # A beat fills lanes of one memory word, so lanes must divide rows; k is free (the
        # last beat of a row is padded, and the weights past k are zero).
        if self.rows % self.lanes:
            raise ConfigError(f"lanes={self.lanes} does not divide rows={self.rows}; "
                              f"allowed: a divisor of rows")
        self._check_accumulator()

    @property
    def k_words(self):
        """Steps per output tile: the inner dimension in words of ``rows``."""
        return -(-self.k // self.rows)

    # Timing (one home: perf.cycles, perf.kernels and perf.spatial call these) -----------------
    @staticmethod
    def cycles_np(rows, cols, k, n, lanes, m):
        """``(total, first)`` cycles for ``m`` token rows: first activation beat accepted to the
        last output beat, and to the first output tile (what a consumer waits for); weights
        preloaded, input every cycle, output ready. All arguments broadcast (ints or numpy
        arrays of candidate designs); int64 arrays out.

        A row can start once its ``k_beats = ceil(k/lanes)`` beats have arrived; it then
        issues ``n_tiles × k_words`` steps, and rows follow each other back to back unless
        their input is slower. Results leave two cycles after their last step (memory read,
        accumulate)."""
        rows, cols, k, n, lanes, m = (np.asarray(x, dtype=np.int64)
                                      for x in (rows, cols, k, n, lanes, m))
        beats = -(-k // lanes)
        k_words = -(-k // rows)
        steps = k_words * -(-n // cols)
        total = beats + (m - 1) * np.maximum(steps, beats) + steps + 2
        return total, beats + k_words + 2

    def cycles(self, m):
        """Cycles of this engine for ``m`` token rows (see :meth:`cycles_np`)."""
        if m < 1:
            raise ValueError(f"m={m} must be >= 1")
        total, _ = self.cycles_np(self.rows, self.cols, self.k, self.n, self.lanes, m)
        return int(total)


class Gemv(wiring.Component):
    """y = x·W, one token row at a time; W on chip.

    Parameters
    ----------
    cfg : GemvConfig
    weights : ndarray (k, n), optional
        Initial weights; they can also be (re)loaded through ``weight``.

    Members
    -------
    act : In(stream.Signature(row_layout(signed(8), lanes)))
        Token rows of k, ``k_beats = ceil(k / lanes)`` beats each, ``end`` on a tensor's
        last beat. The lanes of a row's last beat past k are multiplied by the zero weights
        that pad W to ``k_words·rows`` rows, so whatever they hold adds nothing.
    weight : In(stream.Signature(row_layout(signed(w_width), cols)))
        W row by row (k rows of ``n_tiles`` beats), ``end`` on the last beat; accepted only
        while the engine is idle.
    o : Out(stream.Signature(row_layout(signed(32), cols)))
        y rows, ``n_tiles`` beats each (lanes past n are zero).

    Timing: a row starts once its input has arrived (the next row's input is taken while the
    current one computes); each row then takes ``n_tiles × k_words`` cycles, and results leave
    two cycles after their last step. Backpressure on ``o`` stalls the engine only when a
    result is due and the output register is still full.
    """

    def __init__(self, cfg: GemvConfig, *, weights=None):
        self._MustUse__silence = True
        if not isinstance(cfg, GemvConfig):
            raise TypeError(f"cfg must be a GemvConfig, not {cfg!r}")
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
        """W (k×n) as memory words: one per (feature tile, k word), ``rows×cols`` weights each,
        row-major by k lane; padding (k and n beyond the matrix) is zero."""
        w = cfg.check_weights(weights)
        padded = np.zeros((cfg.k_words * cfg.rows, cfg.n_tiles * cfg.cols), dtype=np.int64)
        padded[:cfg.k, :cfg.n] = w
        words = padded.reshape(cfg.k_words, cfg.rows, cfg.n_tiles, cfg.cols).transpose(2, 0, 1, 3)
        return [list(map(int, word.reshape(-1))) for word in words.reshape(-1, cfg.rows, cfg.cols)]

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        R, C, KT, NT = cfg.rows, cfg.cols, cfg.k_words, cfg.n_tiles
        LN, KB = cfg.lanes, cfg.k_beats
        per_word = R // LN

        m.submodules.xbuf = xbuf = memory.Memory(
            shape=data.ArrayLayout(signed(cfg.a_width), R), depth=2 * KT, init=[])
        x_wr = xbuf.write_port(granularity=LN)
        x_rd = xbuf.read_port()
        m.submodules.wmem = wmem = memory.Memory(
            shape=data.ArrayLayout(signed(cfg.w_width), R * C), depth=NT * KT,
            init=self._weights or [])
        w_wr = wmem.write_port(granularity=C)
        w_rd = wmem.read_port()

        busy = Signal()          # a row is being computed (or its last results are in flight)

        # ---- weight loader: the stream gives W row by row; a beat fills one k lane of a word
        wl_nt = Signal(range(NT))
        loading = Signal()
        wl_word = Signal(range(KT))
        wl_lane = Signal(range(R))
        m.d.comb += [
            self.weight.ready.eq(~busy),
            w_wr.addr.eq(wl_nt * KT + wl_word),
            w_wr.data.eq(self.weight.payload.data.as_value().replicate(R)),
        ]
        with m.If(self.weight.valid & self.weight.ready):
            m.d.comb += w_wr.en.eq(1 << wl_lane)
            m.d.sync += loading.eq(~self.weight.payload.end)
            with m.If(self.weight.payload.end):
                m.d.sync += [wl_nt.eq(0), wl_word.eq(0), wl_lane.eq(0)]
            with m.Elif(wl_nt == NT - 1):
                m.d.sync += wl_nt.eq(0)
                with m.If(wl_lane == R - 1):
                    m.d.sync += [wl_lane.eq(0), wl_word.eq(wl_word + 1)]
                with m.Else():
                    m.d.sync += wl_lane.eq(wl_lane + 1)
            with m.Else():
                m.d.sync += wl_nt.eq(wl_nt + 1)

        # ---- activation writer: one token row per bank, two banks --------------------------
        bank_full = Signal(2)
        bank_end = Signal(2)
        in_bank = Signal()
        in_word = Signal(range(KT))
        in_sub = Signal(range(max(2, per_word)))     # never zero-width (Verilog [-1:0])
        in_beat = Signal(range(KB))
        m.d.comb += [
            self.act.ready.eq(~bank_full.bit_select(in_bank, 1)),
            x_wr.addr.eq(in_bank * KT + in_word),
            x_wr.data.eq(self.act.payload.data.as_value().replicate(per_word)),
        ]
        with m.If(self.act.valid & self.act.ready):
            m.d.comb += x_wr.en.eq(1 << in_sub)
            with m.If(in_beat == KB - 1):
                m.d.sync += [in_beat.eq(0), in_word.eq(0), in_sub.eq(0), in_bank.eq(~in_bank)]
                for b in range(2):
                    with m.If(in_bank == b):
                        m.d.sync += [bank_full[b].eq(1), bank_end[b].eq(self.act.payload.end)]
            with m.Else():
                m.d.sync += in_beat.eq(in_beat + 1)
                with m.If(in_sub == per_word - 1):
                    m.d.sync += [in_sub.eq(0), in_word.eq(in_word + 1)]
                with m.Else():
                    m.d.sync += in_sub.eq(in_sub + 1)

        # ---- engine: issue (addresses) → stage 1 (memory data, dot products) → result -------
        e_bank = Signal()
        e_kt = Signal(range(KT))
        e_nt = Signal(range(NT))
        s1_valid = Signal()
        s1_first = Signal()
        s1_last = Signal()
        s1_row_last = Signal()
        s1_end = Signal()
        acc = [Signal(signed(cfg.acc_width), name=f"acc{j}") for j in range(C)]
        res_valid = Signal()
        res = Signal(data.ArrayLayout(signed(cfg.OUT_WIDTH), C))
        res_last = Signal()
        res_end = Signal()

        # the pipeline advances unless a result is due and the output register stays full
        advance = ~(s1_valid & s1_last & res_valid & ~self.o.ready)
        have = bank_full.bit_select(e_bank, 1) & ~loading & ~self.weight.valid
        issue = advance & have
        m.d.comb += busy.eq(have | s1_valid)
        m.d.comb += [
            x_rd.addr.eq(e_bank * KT + e_kt), x_rd.en.eq(issue),
            w_rd.addr.eq(e_nt * KT + e_kt), w_rd.en.eq(issue),
        ]
        with m.If(advance):
            m.d.sync += [s1_valid.eq(issue), s1_first.eq(e_kt == 0), s1_last.eq(e_kt == KT - 1),
                         s1_row_last.eq(e_nt == NT - 1),
                         s1_end.eq(bank_end.bit_select(e_bank, 1))]
        with m.If(issue):
            with m.If(e_kt == KT - 1):
                m.d.sync += e_kt.eq(0)
                with m.If(e_nt == NT - 1):
                    m.d.sync += [e_nt.eq(0), e_bank.eq(~e_bank)]
                    for b in range(2):
                        with m.If(e_bank == b):
                            m.d.sync += bank_full[b].eq(0)
                with m.Else():
                    m.d.sync += e_nt.eq(e_nt + 1)
            with m.Else():
                m.d.sync += e_kt.eq(e_kt + 1)

        # column j's dot product of this step: the sum of rows products (an adder tree)
        for j in range(C):
            products = [x_rd.data[i] * w_rd.data[i * C + j] for i in range(R)]
            while len(products) > 1:
                products = [products[t] + products[t + 1] if t + 1 < len(products)
                            else products[t] for t in range(0, len(products), 2)]
            dot = Signal(signed(cfg.acc_width), name=f"dot{j}")
            m.d.comb += dot.eq(products[0])
            total = Mux(s1_first, 0, acc[j]) + dot
            with m.If(advance & s1_valid):
                m.d.sync += acc[j].eq(total)
                with m.If(s1_last):
                    m.d.sync += res[j].eq(total)

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += res_valid.eq(0)
        with m.If(advance & s1_valid & s1_last):
            m.d.sync += [res_valid.eq(1), res_last.eq(s1_row_last),
                         res_end.eq(s1_row_last & s1_end)]
        m.d.comb += [
            self.o.valid.eq(res_valid), self.o.payload.data.eq(res),
            self.o.payload.last.eq(res_last), self.o.payload.end.eq(res_end),
        ]
        return m
