"""The element-wise product's harness: ``a`` and ``b`` (rows×length int8, or int16 with
``a_width`` / ``b_width`` 16) with ``a_scale`` and ``b_scale`` → ``y`` (int8, or int16 with
``out_width`` 16), ``y_scale``, ``y_float``."""

from __future__ import annotations

from ...hw.blocks.mul import Mul, MulConfig
from ...hw.numeric import INT8
from ..golden.mul import mul_bitexact, mul_float
from ..harness import TensorError, TensorSpec, register
from .requant import RowHarness, scale_of

__all__ = ["MulHarness"]


@register
class MulHarness(RowHarness):
    name = "mul"
    summary = ("int8 a ⊙ int8 b with their own scales → int8 at out_scale, rounded, saturated "
               "(int16 streams: a_width, b_width, out_width)")
    config_cls = MulConfig
    component_cls = Mul
    inputs = (
        TensorSpec("a", "int8|int16", "rows×length", "first factor (int16: a_width=16)"),
        TensorSpec("a_scale", "float", "scalar", "its scale (into the config)", optional=True),
        TensorSpec("b", "int8|int16", "rows×length", "second factor (int16: b_width=16)"),
        TensorSpec("b_scale", "float", "scalar", "its scale (into the config)", optional=True),
    )
    outputs = (
        TensorSpec("y", "int8|int16", "rows×length", "products (int16: out_width=16)"),
        TensorSpec("y_scale", "float", "scalar", "their scale (out_scale)"),
        TensorSpec("y_float", "float64", "rows×length", "y · y_scale"),
    )
    in_ports = {"a": ("a", INT8), "b": ("b", INT8)}    # the default widths; see port_types
    shape_fields = ("length", "a_scale", "b_scale", "out_scale")

    def infer(self, tensors):
        out = {}
        a = tensors.get("a")
        if a is not None and getattr(a, "ndim", 0) == 2:
            out["length"] = int(a.shape[1])
        for name in ("a_scale", "b_scale"):
            if name in tensors:
                out[name] = scale_of(tensors, name)
        return out

    def port_types(self, cfg):
        return {"a": ("a", cfg.A), "b": ("b", cfg.B)}

    def prepare(self, cfg, tensors):
        a = self.require_rows(tensors, "a", cfg.A, cfg.length, "a_width")
        b = self.require_rows(tensors, "b", cfg.B, cfg.length, "b_width")
        if b.shape != a.shape:
            raise TensorError(f"tensor 'b' has shape {'×'.join(map(str, b.shape))}; expected "
                              f"the shape of 'a', {'×'.join(map(str, a.shape))}")
        return {"a": a, "b": b}

    def float_reference(self, cfg, tensors):
        return mul_float(cfg, tensors["a"], tensors["b"])

    def golden(self, cfg, tensors):
        return self.outputs_of(cfg, mul_bitexact(cfg, tensors["a"], tensors["b"]))
