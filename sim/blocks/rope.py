"""The RoPE harness: ``x`` (rows×length int8 queries or keys of one tensor, or int16 with
``in_width`` 16) with ``x_scale``
and the position ``pos`` of its first row (one integer, default 0) → ``y`` (int8), ``y_scale``,
``y_float``. Block ``rope``."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Shape

from ...hw.blocks.rope import (
    FRAC_BITS,
    IN_WIDTHS,
    WIDE_ENTRY_BITS,
    Rope,
    RopeConfig,
)
from ...hw.numeric import INT8
from ...hw.stream import row_layout
from ..golden.rope import rope_bitexact, rope_float
from ..harness import ControlStreams, TensorError, TensorSpec, register
from ..streams import pack_rows
from .requant import RowHarness, infer_rows

__all__ = ["RopeHarness"]


@register
class RopeHarness(RowHarness):
    name = "rope"
    summary = ("rotary position embedding of int8 (or int16) rows (adjacent pairs) into int8 "
               "by a position × "
               "frequency cos/sin table; position from the `pos` input")
    config_cls = RopeConfig
    component_cls = Rope
    inputs = (
        TensorSpec("x", "int8|int16", "rows×length", "rows of one tensor (row r at position "
                   "pos + r; int16: in_width=16)"),
        TensorSpec("x_scale", "float", "scalar", "their scale (into the config)",
                   optional=True),
        TensorSpec("pos", "int", "scalar", "position of row 0 (default 0)", optional=True),
    )
    outputs = (
        TensorSpec("y", "int8", "rows×length", "rotated rows"),
        TensorSpec("y_scale", "float", "scalar", "their scale (out_scale)"),
        TensorSpec("y_float", "float64", "rows×length", "y · y_scale"),
    )
    in_ports = {"i": ("x", INT8)}       # the default width; see port_types
    shape_fields = ("length", "x_scale", "out_scale")

    def infer(self, tensors):
        return infer_rows(tensors)

    def config(self, values=None, tensors=None):
        """As the row kernels' (``out_scale`` calibrated from the data when not given); a
        calibrated ratio ``x_scale/out_scale`` may be anything
        :data:`~llmloom.hw.blocks.rope.RATIO_RANGE` allows (a
        lone small input maps far up), so the table's entries are then as wide as that needs
        unless ``entry_width`` is given."""
        values = dict(values or {})
        in_width, frac = values.get("in_width", INT8.width), values.get("frac_bits")
        # (bad values are left to the config's own one-line errors)
        if tensors is not None and values.get("out_scale") is None \
                and values.get("entry_width") is None and in_width in IN_WIDTHS \
                and (frac is None or isinstance(frac, int)):
            frac = FRAC_BITS[in_width] if frac is None else frac
            values["entry_width"] = frac + WIDE_ENTRY_BITS
        return super().config(values, tensors)

    def component(self, cfg):
        return ControlStreams(Rope(cfg), held=("pos",))

    def port_types(self, cfg):
        return {"i": ("x", cfg.IN)}

    def prepare(self, cfg, tensors):
        x = self.require_rows(tensors, "x", cfg.IN, cfg.length, "in_width")
        pos = 0
        if "pos" in tensors:
            value = np.asarray(tensors["pos"])
            if value.size != 1 or not np.issubdtype(value.dtype, np.integer):
                raise TensorError("tensor 'pos' must be one integer (the first row's position)")
            pos = int(value.reshape(-1)[0])
        if pos < 0 or pos + x.shape[0] > cfg.positions:
            raise TensorError(f"rows at positions {pos}..{pos + x.shape[0] - 1} do not fit the "
                              f"table; allowed: 0..{cfg.positions - 1} (set positions)")
        return {"x": x, "pos": pos}

    def drive(self, cfg, tensors):
        drive = super().drive(cfg, tensors)
        shape = Shape.cast(range(cfg.positions))      # the block's `pos` port
        drive.preload["pos"] = pack_rows(row_layout(shape, 1), [[tensors["pos"]]])
        return drive

    def float_reference(self, cfg, tensors):
        return rope_float(cfg, tensors["x"], tensors["pos"])

    def golden(self, cfg, tensors):
        return self.outputs_of(cfg, rope_bitexact(cfg, tensors["x"], tensors["pos"]))

    def float_metrics(self, cfg, tensors, outputs):
        """``max_abs_error_lsb_vs_float`` over the outputs that do not saturate, and the
        config's bound on it."""
        y = np.asarray(outputs["y"], np.int64)
        ref = rope_float(cfg, tensors["x"], tensors["pos"]) / cfg.out_scale_value
        keep = (y > INT8.min) & (y < INT8.max)
        err = float(np.max(np.abs(y - ref)[keep])) if keep.any() else 0.0
        return {"max_abs_error_lsb_vs_float": err, "error_bound_lsb": cfg.error_bound_lsb}
