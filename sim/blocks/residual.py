"""The residual add's harness: ``x`` and ``r`` (rows×length int8, or int16 with ``x_width``
/ ``r_width`` 16) with ``x_scale`` and ``r_scale`` → ``y`` (int8, or int16 with
``out_width`` 16), ``y_scale``, ``y_float``."""

from __future__ import annotations

from ...hw.blocks.residual import Residual, ResidualConfig
from ...hw.numeric import INT8
from ..golden.residual import residual_bitexact, residual_float
from ..harness import TensorError, TensorSpec, register
from .requant import RowHarness, scale_of

__all__ = ["ResidualHarness"]


@register
class ResidualHarness(RowHarness):
    name = "residual"
    summary = ("int8 x + int8 r with their own scales → int8 at out_scale, rounded, saturated "
               "(int16 streams: x_width, r_width, out_width)")
    config_cls = ResidualConfig
    component_cls = Residual
    inputs = (
        TensorSpec("x", "int8|int16", "rows×length", "main path (int16: x_width=16)"),
        TensorSpec("x_scale", "float", "scalar", "its scale (into the config)", optional=True),
        TensorSpec("r", "int8|int16", "rows×length", "residual (skip) path (int16: "
                   "r_width=16)"),
        TensorSpec("r_scale", "float", "scalar", "its scale (into the config)", optional=True),
    )
    outputs = (
        TensorSpec("y", "int8|int16", "rows×length", "sums (int16: out_width=16)"),
        TensorSpec("y_scale", "float", "scalar", "their scale (out_scale)"),
        TensorSpec("y_float", "float64", "rows×length", "y · y_scale"),
    )
    in_ports = {"x": ("x", INT8), "r": ("r", INT8)}    # the default widths; see port_types
    shape_fields = ("length", "x_scale", "r_scale", "out_scale")

    def infer(self, tensors):
        out = {}
        x = tensors.get("x")
        if x is not None and getattr(x, "ndim", 0) == 2:
            out["length"] = int(x.shape[1])
        for name in ("x_scale", "r_scale"):
            if name in tensors:
                out[name] = scale_of(tensors, name)
        return out

    def port_types(self, cfg):
        return {"x": ("x", cfg.X), "r": ("r", cfg.R)}

    def prepare(self, cfg, tensors):
        x = self.require_rows(tensors, "x", cfg.X, cfg.length, "x_width")
        r = self.require_rows(tensors, "r", cfg.R, cfg.length, "r_width")
        if r.shape != x.shape:
            raise TensorError(f"tensor 'r' has shape {'×'.join(map(str, r.shape))}; expected "
                              f"the shape of 'x', {'×'.join(map(str, x.shape))}")
        return {"x": x, "r": r}

    def float_reference(self, cfg, tensors):
        return residual_float(cfg, tensors["x"], tensors["r"])

    def golden(self, cfg, tensors):
        return self.outputs_of(cfg, residual_bitexact(cfg, tensors["x"], tensors["r"]))
