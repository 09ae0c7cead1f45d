"""The softmax harness: ``x`` (rows×length int8 scores) and ``x_scale`` → ``y`` (uint8
probabilities at scale 1/255), ``y_scale``, ``y_float``."""

from __future__ import annotations

from ...hw.blocks.softmax import Softmax, SoftmaxConfig
from ..golden.softmax import softmax_bitexact
from ..harness import TensorSpec, register
from .rowkernel import RowKernelHarness

__all__ = ["SoftmaxHarness"]


@register
class SoftmaxHarness(RowKernelHarness):
    name = "softmax"
    summary = ("row softmax, optional causal mask; exact exp table, online max/sum, "
               "uint8 probabilities at scale 1/255")
    config_cls = SoftmaxConfig
    component_cls = Softmax
    inputs = (
        TensorSpec("x", "int8", "rows×length", "scores; one tensor (causal row r = row index)"),
        TensorSpec("x_scale", "float", "scalar", "scale of the scores", optional=True),
    )
    outputs = (
        TensorSpec("y", "uint8", "rows×length", "probabilities, code/255; 0 where masked"),
        TensorSpec("y_scale", "float64", "scalar", "1/255"),
        TensorSpec("y_float", "float64", "rows×length", "y · y_scale"),
    )

    def out_scale_of(self, cfg):
        return cfg.out_scale

    def golden(self, cfg, tensors):
        return self.outputs_of(cfg, softmax_bitexact(cfg, tensors["x"]))
