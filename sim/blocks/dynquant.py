"""The dynamic-quantisation harness: ``x`` (rows×length, int``in_width``) → ``y`` (rows×length
int``out_width``), ``e`` (one exponent per row) and ``y_float`` (``y · 2**e``, in units of
``x``)."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import unsigned

from ...hw.blocks.dynquant import DynQuant, DynQuantConfig
from ...hw.numeric import IntType
from ...hw.stream import row_layout
from ..golden.dynquant import dynquant_bitexact
from ..harness import Drive, TensorSpec, register
from ..streams import check_framing, pack_rows, unpack_rows
from .rowkernel import RowKernelHarness

__all__ = ["DynQuantHarness"]


@register
class DynQuantHarness(RowKernelHarness):
    name = "dynquant"
    summary = ("int16 rows → int8 rows and one power-of-two exponent per row (the smallest "
               "that fits the row's max |x|), rounded")
    config_cls = DynQuantConfig
    component_cls = DynQuant
    inputs = (
        TensorSpec("x", "int16", "rows×length", "input rows (int of in_width bits)"),
    )
    outputs = (
        TensorSpec("y", "int8", "rows×length", "round_shift(x, e) per row (int of out_width "
                   "bits)"),
        TensorSpec("e", "uint8", "rows", "each row's exponent, 0..in_width−out_width"),
        TensorSpec("y_float", "float64", "rows×length", "y · 2**e (in units of x)"),
    )
    shape_fields = ("length",)

    def infer(self, tensors):
        # the rows' length only: the block has no scale (its output is in units of x)
        return {k: v for k, v in super().infer(tensors).items() if k == "length"}

    def drive(self, cfg, tensors):
        x = tensors["x"]
        return Drive(preload={}, timed={"i": pack_rows(row_layout(cfg.IN.shape, cfg.lanes), x)},
                     expect={"o_y": x.shape[0] * cfg.beats, "o_e": x.shape[0]})

    def collect(self, cfg, tensors, beats):
        y, last, end = unpack_rows(row_layout(cfg.OUT.shape, cfg.lanes), beats["o_y"],
                                   cfg.length)
        e, e_last, e_end = unpack_rows(row_layout(unsigned(cfg.e_width), 1), beats["o_e"], 1)
        check_framing(last, end, cfg.beats)
        check_framing(e_last, e_end, 1)
        return self.outputs_of(cfg, y, e[:, 0])

    def outputs_of(self, cfg, y, e):
        """``y``, ``e`` and ``y_float``, computed the same way for the RTL's outputs and the
        golden model's."""
        y = np.asarray(y).astype(cfg.OUT.dtype)
        e = np.asarray(e).astype(IntType(cfg.e_width, signed=False).dtype)
        return {"y": y, "e": e,
                "y_float": y.astype(np.float64) * np.exp2(e.astype(np.float64))[:, None]}

    def golden(self, cfg, tensors):
        return self.outputs_of(cfg, *dynquant_bitexact(cfg, tensors["x"]))

    def shape_args(self, cfg, tensors):
        return (int(tensors["x"].shape[0]),)
