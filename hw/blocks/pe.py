"""The processing elements of the systolic GEMM (the PE level of gemmini's PE → Tile → Mesh).

* :class:`ProcessingElement` multiplies and accumulates one output; a ``flag`` travelling with
  the activation marks the first step of a new tile, at which the PE hands its finished sum to
  an output register and starts the next one, so tiles follow each other with no bubble. Its
  multiplier is registered on both sides (``GemmConfig.PE_STAGES``; on ECP5 in the
  MULT18X18D's own registers, :mod:`.dsp`).
* :class:`PackedProcessingElement` computes two adjacent output columns with one multiplier
  (``GemmConfig.dsp_packing``).
* :class:`RowSum` sums its row's activations with a PE's timing, no multiplier: the grouped
  W4 GEMM's ``Σ a`` per group (``GemmConfig.weight_groups``).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .dsp import operand_product_registers, packed_operand, unpack_products
from .gemm_config import GemmConfig

__all__ = ["ProcessingElement", "PackedProcessingElement", "RowSum"]


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

    ``bias``: what each sum starts from (a constant; ``GemmConfig.acc_bias``, the half step
    of a rounded shift of the results), 0 for the plain sum.

    ``stages``: the enabled stages from the inputs to the accumulator (``GemmConfig.pe_stages``:
    2 or 3; the third registers the product again).

    ``platform.family == "ecp5"``: the multiplier is a MULT18X18D using its own registers.
    """

    def __init__(self, a_width, w_width, acc_width, bias=0, stages=GemmConfig.PE_STAGES):
        self._acc_width = acc_width
        self._bias = bias
        self._stages = stages
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
                                   platform=platform, stages=self._stages)
        with m.If(self.en):
            m.d.sync += [self.a_o.eq(self.a_i), self.w_o.eq(self.w_i),
                         self.flag_o.eq(self.flag_i)]
            with m.If(first):
                m.d.sync += [self.result.eq(acc),
                             acc.eq(product + self._bias if self._bias else product)]
            with m.Else():
                m.d.sync += acc.eq(acc + product)
        return m


def _multiply(m, en, a, w, flag, operand=None, platform=None, stages=GemmConfig.PE_STAGES):
    """The registered multiplier of a PE, ``stages`` (2 or 3) enabled stages deep: operands,
    product (:func:`.dsp.operand_product_registers`), with 3 the product again; returns the
    product and ``flag`` delayed alike."""
    product = operand_product_registers(m, en, a, w, operand, platform)
    flags = [Signal(name=f"flag_d{stage}") for stage in range(stages)]
    with m.If(en):
        m.d.sync += [f.eq(prev) for f, prev in zip(flags, [flag, *flags], strict=False)]
    if stages == 2:
        return product, flags[-1]
    assert stages == 3, stages
    product1 = Signal.like(product, name="product1")
    with m.If(en):
        m.d.sync += product1.eq(product)
    return product1, flags[-1]


class PackedProcessingElement(wiring.Component):
    """Two multiply-accumulate cells in one multiplier (``GemmConfig.dsp_packing``): outputs
    ``lo`` and ``hi`` of two adjacent columns, which share the activation.

    The multiplier computes ``P = a·(w_hi·2^S + w_lo)`` with ``S = GemmConfig.PACK_SHIFT``, a
    ``(w_width + S + 1)``-bit by ``a_width``-bit product: one DSP48E2 (27×18). Both products come
    out exactly (:func:`.dsp.unpack_products`); the operand is pure wiring of what
    :func:`.dsp.pack_weight_pair` gives (:func:`.dsp.packed_operand`).
    ``tests/hw/test_gemm_packing.py`` checks the arithmetic for every a, w_lo, w_hi.

    Members
    -------
    en : In(1)
    a_i, flag_i : In
        Activation (from the left), first-step-of-tile flag.
    w_i : In(unsigned(2·w_width + 1))
        The column pair's weights from :func:`.dsp.pack_weight_pair` (from above).
    a_o, w_o, flag_o : Out
        The same, registered, for the right and lower neighbours.
    result_lo, result_hi : Out(signed(acc_width))
        The sums of the previous tile of the two columns, with the timing of
        :class:`ProcessingElement`'s ``result``.
    """

    def __init__(self, a_width, w_width, acc_width, stages=GemmConfig.PE_STAGES):
        self._widths = (a_width, w_width, acc_width)
        self._stages = stages
        super().__init__({
            "en": In(1),
            "a_i": In(signed(a_width)), "w_i": In(unsigned(2 * w_width + 1)), "flag_i": In(1),
            "a_o": Out(signed(a_width)), "w_o": Out(unsigned(2 * w_width + 1)), "flag_o": Out(1),
            "result_lo": Out(signed(acc_width)), "result_hi": Out(signed(acc_width)),
        })

    def elaborate(self, platform):
        m = Module()
        aw, ww, accw = self._widths
        product, first = _multiply(m, self.en, self.a_i, self.w_i, self.flag_i,
                                   lambda pair: packed_operand(pair, ww), stages=self._stages)
        acc_lo = Signal(signed(accw))
        acc_hi = Signal(signed(accw))
        lo, hi = unpack_products(product, aw, ww)
        with m.If(self.en):
            m.d.sync += [self.a_o.eq(self.a_i), self.w_o.eq(self.w_i),
                         self.flag_o.eq(self.flag_i)]
            with m.If(first):
                m.d.sync += [self.result_lo.eq(acc_lo), self.result_hi.eq(acc_hi),
                             acc_lo.eq(lo), acc_hi.eq(hi)]
            with m.Else():
                m.d.sync += [acc_lo.eq(acc_lo + lo), acc_hi.eq(acc_hi + hi)]
        return m


class RowSum(wiring.Component):
    """The sum of a row's activations over a tile, with :class:`ProcessingElement`'s timing
    (``a_i`` delayed ``stages`` enabled steps, then accumulated) but no multiplier: beside
    the row's first PE it gives the grouped W4 GEMM each group's ``Σ a``
    (``GemmConfig.weight_groups``), read out with the row's partial sums.

    Members
    -------
    en, a_i, flag_i : In
        As the row's first PE's.
    result : Out(signed(acc_width))
        The sum of the previous tile, with ``ProcessingElement.result``'s timing.
    """

    def __init__(self, a_width, acc_width, stages):
        self._stages = stages
        super().__init__({
            "en": In(1), "a_i": In(signed(a_width)), "flag_i": In(1),
            "result": Out(signed(acc_width)),
        })

    def elaborate(self, platform):
        m = Module()
        acc = Signal.like(self.result)
        a, first = self.a_i, self.flag_i
        for stage in range(self._stages):
            a_d = Signal.like(self.a_i, name=f"a_d{stage}")
            f_d = Signal(name=f"flag_d{stage}")
            with m.If(self.en):
                m.d.sync += [a_d.eq(a), f_d.eq(first)]
            a, first = a_d, f_d
        with m.If(self.en):
            with m.If(first):
                m.d.sync += [self.result.eq(acc), acc.eq(a)]
            with m.Else():
                m.d.sync += acc.eq(acc + a)
        return m
