"""The grid of the systolic GEMM (the Tile/Mesh level of gemmini's PE → Tile → Mesh): the
processing elements of :mod:`.pe` wired into an output-stationary ``rows``×``cols`` array, with
the input skews that feed it a wavefront.

* :class:`Skew` delays lane ``i`` by ``i + 1`` steps: the wavefront that feeds the array.
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
from .gemm_config import GemmConfig
from .pe import PackedProcessingElement, ProcessingElement, RowSum

__all__ = ["Skew", "SystolicArray"]


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


class SystolicArray(wiring.Component):
    """A ``rows``×``cols`` output-stationary grid with its input skews.

    Row ``i`` takes ``a[i]`` (activation of token ``i`` at inner index k) and column ``j`` takes
    ``w[j]`` (weight of output feature ``j`` at the same k), both for the same step; the skews
    make PE(i, j) see index k at step k + i + j + 1. ``flag`` marks k = 0 of a tile.

    Members
    -------
    en : In(1)
    a : In(ArrayLayout(signed(a_width), rows));
    w : In(ArrayLayout(signed(mul_w_width), cols));
    flag : In(1)
    sel : In(range(rows))
        Row whose results appear on ``row``.
    row : Out(ArrayLayout(signed(pe_acc_width), cols))
        ``result`` of PE(sel, 0..cols-1). Row i of a tile whose successor's flag entered at
        step S is complete from step S + cols + pe_stages + i + 1 until step
        S + L + pe_stages + i + 1 (L >= cols the tile length).
    row_sum : Out(signed(group_sum_width))
        ``weight_groups`` with a minimum (W4, ``GemmConfig.group_minimum``) only: the sum of
        row ``sel``'s activations over the tile, beside ``row`` (a :class:`~.pe.RowSum` by
        each row's first PE), which the minimum multiplies.

    With ``weight_groups`` a tile is one group of the GEMM's (the flag comes every
    ``WEIGHT_GROUP`` steps), ``w`` holds the codes (zero-extended) and the PEs sum
    ``a·q`` into ``group_sum_width`` bits, ``pe_stages`` deep: the group's scale and minimum
    are applied after the array.

    With ``dsp_packing`` a PE holds columns 2p and 2p+1, the weight skew carries the pairs
    (:func:`pack_weight_pair`) and results are complete ``cols/2`` steps sooner; the window
    above holds all the same.
    """

    def __init__(self, cfg: GemmConfig):
        self.cfg = cfg
        members = {
            "en": In(1),
            "a": In(data.ArrayLayout(signed(cfg.a_width), cfg.rows)),
            "w": In(data.ArrayLayout(signed(cfg.mul_w_width), cfg.cols)),
            "flag": In(1),
            "sel": In(range(cfg.rows)),
            "row": Out(data.ArrayLayout(signed(cfg.pe_acc_width), cfg.cols)),
        }
        if cfg.group_minimum:
            members["row_sum"] = Out(signed(cfg.group_sum_width))
        super().__init__(members)

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
            m.submodules.w_skew = w_skew = Skew(unsigned(2 * cfg.mul_w_width + 1), pcols)
            m.d.comb += [w_skew.i[p].eq(pack_weight_pair(self.w[2 * p], self.w[2 * p + 1]))
                         for p in range(pcols)]
        else:
            m.submodules.w_skew = w_skew = Skew(signed(cfg.mul_w_width), C)
            m.d.comb += w_skew.i.eq(self.w)
        m.d.comb += [a_skew.en.eq(self.en), a_skew.i.eq(self.a),
                     w_skew.en.eq(self.en), f_skew.en.eq(self.en)]
        m.d.comb += [f_skew.i[i].eq(self.flag) for i in range(R)]

        pes = [[None] * pcols for _ in range(R)]
        results = [[None] * C for _ in range(R)]
        sums = [None] * R
        acc_w, stages = cfg.pe_acc_width, cfg.pe_stages
        for i in range(R):
            if cfg.group_minimum:
                m.submodules[f"row_sum_{i}"] = rs = RowSum(cfg.a_width, cfg.group_sum_width,
                                                           stages)
                m.d.comb += [rs.en.eq(self.en), rs.a_i.eq(a_skew.o[i]),
                             rs.flag_i.eq(f_skew.o[i])]
                sums[i] = rs.result
            for j in range(pcols):
                if cfg.dsp_packing:
                    pe = PackedProcessingElement(cfg.a_width, cfg.mul_w_width, acc_w, stages)
                    results[i][2 * j:2 * j + 2] = pe.result_lo, pe.result_hi
                else:
                    pe = ProcessingElement(cfg.a_width, cfg.mul_w_width, acc_w, stages=stages)
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
                    if cfg.group_minimum:
                        m.d.comb += self.row_sum.eq(sums[i])
        return m
