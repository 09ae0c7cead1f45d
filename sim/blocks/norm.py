"""The layernorm and rmsnorm harnesses: ``x`` (rows×length int8, or int16 with ``in_width``
16), ``x_scale``, ``gamma`` and ``beta`` (float vectors of length) → ``y`` (int8 at
``y_scale``, or int16 with ``out_width`` 16), ``y_scale``, ``y_float``."""

from __future__ import annotations

import numpy as np

from ...hw.blocks.norm import LayerNormConfig, Norm, RMSNormConfig
from ...hw.numeric import QuantParams
from ..golden.norm import norm_bitexact, norm_float
from ..harness import TensorError, TensorSpec, register
from .rowkernel import RowKernelHarness

__all__ = ["LayerNormHarness", "RMSNormHarness"]


class _NormHarness(RowKernelHarness):
    component_cls = Norm
    inputs = (
        TensorSpec("x", "int8|int16", "rows×length", "input rows (int16: in_width=16)"),
        TensorSpec("x_scale", "float", "scalar", "scale of x", optional=True),
        TensorSpec("gamma", "float", "length", "per-element scale (default ones)",
                   optional=True),
        TensorSpec("beta", "float", "length", "per-element offset (default zeros)",
                   optional=True),
    )
    outputs = (
        TensorSpec("y", "int8|int16", "rows×length", "normalised rows (int16: out_width=16)"),
        TensorSpec("y_scale", "float64", "scalar", "the output scale (out_scale)"),
        TensorSpec("y_float", "float64", "rows×length", "y · y_scale"),
    )
    shape_fields = ("length", "x_scale", "gamma", "beta", "out_scale")

    def infer(self, tensors):
        out = super().infer(tensors)
        for name in ("gamma", "beta"):
            if name in tensors:
                v = np.asarray(tensors[name])
                if v.ndim != 1 or not np.issubdtype(v.dtype, np.number) \
                        or np.issubdtype(v.dtype, np.complexfloating):
                    raise TensorError(f"tensor {name!r} must be a vector of floats; got shape "
                                      f"{'×'.join(map(str, v.shape)) or 'scalar'} of {v.dtype}")
                out[name] = tuple(float(f) for f in v)
        return out

    def config(self, values=None, tensors=None):
        """As the base, then, when ``out_scale`` is not set and the tensors are given, the
        scale that maps the float reference's largest magnitude onto the output's largest value
        (127, int16: 32767; calibrated with the config being built, so user overrides of eps
        or gamma are honoured)."""
        cfg = super().config(values, tensors)
        if tensors is not None and cfg.out_scale is None:
            try:
                x = self.prepare(cfg, tensors)["x"]
            except (TensorError, ValueError):
                return cfg           # run_block's prepare reports the problem
            scale = QuantParams.calibrate(norm_float(cfg, x), cfg.OUT).scale
            cfg = cfg.replace(out_scale=float(scale))
        return cfg

    def prepare(self, cfg, tensors):
        try:
            return super().prepare(cfg, tensors)
        except TensorError as e:
            if cfg.in_width == 8 and getattr(tensors.get("x"), "dtype", None) == np.int16:
                raise TensorError(f"{e} (in_width=16 takes int16)") from None
            raise

    def out_scale_of(self, cfg):
        return cfg.out_scale_value

    def golden(self, cfg, tensors):
        return self.outputs_of(cfg, norm_bitexact(cfg, tensors["x"]))


@register
class LayerNormHarness(_NormHarness):
    name = "layernorm"
    summary = ("layernorm: exact integer Σx, Σx², rsqrt table + Newton, gamma/beta; "
               "int8 out (int16 in/out: in_width, out_width)")
    config_cls = LayerNormConfig


@register
class RMSNormHarness(_NormHarness):
    name = "rmsnorm"
    summary = ("rmsnorm: exact integer Σx², rsqrt table + Newton, gamma/beta; int8 out "
               "(int16 in/out: in_width, out_width)")
    config_cls = RMSNormConfig
