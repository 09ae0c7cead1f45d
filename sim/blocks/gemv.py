"""The GEMV's harness: the GEMM's tensors (``a`` M×k, ``w`` k×n → ``c``), one row at a time."""

from __future__ import annotations

from ...hw.blocks.gemv import Gemv, GemvConfig
from ..golden.gemm import gemm_bitexact
from ..harness import register
from .gemm import GemmHarness

__all__ = ["GemvHarness"]


@register
class GemvHarness(GemmHarness):
    name = "gemv"
    summary = "decode-path GEMV, y = x·W: k split over rows, outputs over cols, weights on chip"
    config_cls = GemvConfig
    component_cls = Gemv

    def golden(self, cfg, tensors):
        # the same exact product as the GEMM: only the schedule differs
        return {"c": gemm_bitexact(cfg, tensors["a"], tensors["w"])}
