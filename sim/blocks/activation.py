"""Harnesses of the table-driven activations: ``x`` (rows×length int8, or ``in_width`` bits in
int16) with ``x_scale`` →
``y`` (int8, or int16 with ``out_width`` 16), ``y_scale``, ``y_float``. Blocks ``gelu`` and
``silu``."""

from __future__ import annotations

from ...hw.blocks.activation import Gelu, GeluConfig, Silu, SiluConfig
from ...hw.numeric import INT8
from ..golden.activation import activation_bitexact, activation_float
from ..harness import TensorSpec, register
from .requant import RowHarness, infer_rows

__all__ = ["GeluHarness", "SiluHarness"]


class _ActivationHarness(RowHarness):
    inputs = (
        TensorSpec("x", "int8|int16", "rows×length", "input rows (int16: in_width > 8)"),
        TensorSpec("x_scale", "float", "scalar", "their scale (into the config)",
                   optional=True),
    )
    outputs = (
        TensorSpec("y", "int8|int16", "rows×length", "activations (int16: out_width=16)"),
        TensorSpec("y_scale", "float", "scalar", "their scale (out_scale)"),
        TensorSpec("y_float", "float64", "rows×length", "y · y_scale"),
    )
    in_ports = {"i": ("x", INT8)}       # the default width; see port_types
    shape_fields = ("length", "x_scale", "out_scale")

    def infer(self, tensors):
        return infer_rows(tensors)

    def port_types(self, cfg):
        return {"i": ("x", cfg.IN)}

    def prepare(self, cfg, tensors):
        return {"x": self.require_rows(tensors, "x", cfg.IN, cfg.length, "in_width")}

    def float_reference(self, cfg, tensors):
        return activation_float(cfg, tensors["x"])

    def golden(self, cfg, tensors):
        return self.outputs_of(cfg, activation_bitexact(cfg, tensors["x"]))


@register
class GeluHarness(_ActivationHarness):
    name = "gelu"
    summary = "GELU (tanh or erf) on int8 by a 256-entry table per lane, exact to 0.5 LSB"
    config_cls = GeluConfig
    component_cls = Gelu


@register
class SiluHarness(_ActivationHarness):
    name = "silu"
    summary = "SiLU on int8 by a 256-entry table per lane, exact to 0.5 LSB"
    config_cls = SiluConfig
    component_cls = Silu
