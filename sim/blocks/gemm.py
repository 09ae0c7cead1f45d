"""The GEMM's harness: tensors ``a`` (M×k int8), ``w`` (k×n int8 or int4) → ``c`` (M×n int32)."""

from __future__ import annotations

import numpy as np

from ...hw.blocks.gemm import Gemm, GemmConfig
from ...hw.numeric import INT32, IntType
from ...hw.stream import row_layout
from ..golden.gemm import gemm_bitexact
from ..harness import BlockHarness, Drive, TensorError, TensorSpec, register
from ..streams import check_framing, pack_rows, unpack_rows

__all__ = ["GemmHarness"]


@register
class GemmHarness(BlockHarness):
    name = "gemm"
    summary = "output-stationary systolic GEMM, C = A·W, weights on chip"
    config_cls = GemmConfig
    component_cls = Gemm
    inputs = (
        TensorSpec("a", "int8", "M×k", "activations, streamed in rows"),
        TensorSpec("w", "int8", "k×n", "weights (int4 values when w_width=4), loaded first"),
    )
    outputs = (TensorSpec("c", "int32", "M×n", "products, exact"),)
    shape_fields = ("k", "n")

    def infer(self, tensors):
        out = {}
        w = tensors.get("w")
        if w is not None and np.ndim(w) == 2:
            out["k"], out["n"] = map(int, np.shape(w))
        return out

    def prepare(self, cfg, tensors):
        a = self.require_int(tensors, "a", IntType(cfg.a_width), (None, cfg.k))
        w = self.require_int(tensors, "w", IntType(cfg.w_width), (cfg.k, cfg.n))
        if a.shape[0] < 1:
            raise TensorError("tensor 'a' has no rows; expected M >= 1")
        return {"a": a, "w": w}

    def drive(self, cfg, tensors):
        comp_act = row_layout(IntType(cfg.a_width).shape, cfg.lanes)
        comp_w = row_layout(IntType(cfg.w_width).shape, cfg.cols)
        m = tensors["a"].shape[0]
        return Drive(
            preload={"weight": pack_rows(comp_w, tensors["w"])},
            timed={"act": pack_rows(comp_act, tensors["a"])},
            expect={"o": m * cfg.n_tiles},
        )

    def collect(self, cfg, tensors, beats):
        layout = row_layout(INT32.shape, cfg.cols)
        c, last, end = unpack_rows(layout, beats["o"], cfg.n)
        per_row = cfg.n_tiles
        check_framing(last, end, per_row)
        return {"c": c.astype(np.int32)}

    def golden(self, cfg, tensors):
        return {"c": gemm_bitexact(cfg, tensors["a"], tensors["w"])}

    def macs(self, cfg, tensors):
        return int(tensors["a"].shape[0]) * cfg.k * cfg.n

    def shape_args(self, cfg, tensors):
        return (int(tensors["a"].shape[0]),)

    def peak_macs_per_cycle(self, cfg):
        return cfg.peak_macs_per_cycle
