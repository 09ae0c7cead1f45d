"""The grid of the systolic GEMM (the Tile/Mesh level of gemmini's PE → Tile → Mesh): the
processing elements of :mod:`.pe` wired into an output-stationary ``rows``×``cols`` array, with
the input skews that feed it a wavefront.

* :class:`Skew` delays lane ``i`` by ``i + 1`` steps: the wavefront that feeds the array.
* :class:`WeightExpander` makes the grouped W4 GEMM's weights ``W' = D·q + M`` in the first
  step of the weight skew (``GemmConfig.weight_groups``).
* :class:`SystolicArray` is the ``rows``×``cols`` grid with its skews, advancing only on ``en``
  (the whole array moves in lock-step, which makes stalls trivially safe). Each PE registers
  what it passes on, so the grid needs no pipeline registers of its own between PEs (gemmini's
  tile of one PE).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .dsp import pack_weight_pair
from .gemm_config import CODE_BITS, GROUP_SCALE_BITS, GemmConfig
from .pe import PackedProcessingElement, ProcessingElement

__all__ = ["Skew", "WeightExpander", "SystolicArray", "group_weight_layout"]


def group_weight_layout():
    """A column's grouped weight as the array takes it: the code and its group's scale and
    minimum (``GemmConfig.weight_groups``)."""
    return data.StructLayout({"q": unsigned(CODE_BITS), "d": signed(GROUP_SCALE_BITS),
                              "m": signed(GROUP_SCALE_BITS)})


class Skew(wiring.Component):
    """Delays lane ``i`` by ``i + first`` enabled steps (``first`` 1 by default): the wavefront
    that feeds the array, with every lane registered so that no array input comes straight
    from a memory (``first`` 0 where the lanes come from registers already)."""

    def __init__(self, shape, lanes, first=1):
        self._lanes = lanes
        self._first = first
        super().__init__({
            "en": In(1),
            "i": In(data.ArrayLayout(shape, lanes)),
            "o": Out(data.ArrayLayout(shape, lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        for lane in range(self._lanes):
            value = self.i[lane]
            for stage in range(lane + self._first):
                reg = Signal.like(self.i[lane], name=f"lane{lane}_d{stage}")
                with m.If(self.en):
                    m.d.sync += reg.eq(value)
                value = reg
            m.d.comb += self.o[lane].eq(value)
        return m


class WeightExpander(wiring.Component):
    """``W' = D·q + M`` of each column, one enabled step late: the products ``D·q`` and the
    minima are registered (the step the weight skew's first register takes) and added after
    the registers, so neither the multiplier nor the adder shares a cycle with the other.
    ``o`` is their sum (combinational): feed it to registers, as the rest of the weight skew
    and a PE's inputs are."""

    def __init__(self, cols, width):
        self._cols = cols
        super().__init__({
            "en": In(1),
            "i": In(data.ArrayLayout(group_weight_layout(), cols)),
            "o": Out(data.ArrayLayout(signed(width), cols)),
        })

    def elaborate(self, platform):
        m = Module()
        for j in range(self._cols):
            w = self.i[j]
            prod = Signal(signed(GROUP_SCALE_BITS + CODE_BITS + 1), name=f"dq{j}")
            minimum = Signal(signed(GROUP_SCALE_BITS), name=f"m{j}")
            with m.If(self.en):
                m.d.sync += [prod.eq(w.d * w.q), minimum.eq(w.m)]
            m.d.comb += self.o[j].eq(prod + minimum)
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

    With ``weight_groups``, ``w`` holds each column's code and group pair
    (:func:`group_weight_layout`), which a :class:`WeightExpander` makes into the multipliers'
    ``mul_w_width``-bit operand in the weight skew's first step (the same wavefront), and
    every sum starts from ``cfg.acc_bias``.

    With ``dsp_packing`` a PE holds columns 2p and 2p+1, the weight skew carries the pairs
    (:func:`pack_weight_pair`) and results are complete ``cols/2`` steps sooner; the window
    above holds all the same.
    """

    def __init__(self, cfg: GemmConfig):
        self.cfg = cfg
        super().__init__({
            "en": In(1),
            "a": In(data.ArrayLayout(signed(cfg.a_width), cfg.rows)),
            "w": In(data.ArrayLayout(group_weight_layout() if cfg.weight_groups
                                     else signed(cfg.mul_w_width), cfg.cols)),
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
        elif cfg.weight_groups:
            # the expander is the skew's first step: lane j's j further steps follow it
            m.submodules.expander = expander = WeightExpander(C, cfg.mul_w_width)
            m.submodules.w_skew = w_skew = Skew(signed(cfg.mul_w_width), C, first=0)
            m.d.comb += [expander.en.eq(self.en), expander.i.eq(self.w),
                         w_skew.i.eq(expander.o)]
        else:
            m.submodules.w_skew = w_skew = Skew(signed(cfg.mul_w_width), C)
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
                    pe = ProcessingElement(cfg.a_width, cfg.mul_w_width, cfg.acc_width,
                                           cfg.acc_bias)
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
