"""The GEMM's harness: tensors ``a`` (M×k int8), ``w`` (k×n int8 or int4) → ``c`` (M×n int32);
with ``weight_groups``, ``w`` holds 4-bit codes and ``group_scale``/``group_min`` their groups'
int16 scales and minima."""

from __future__ import annotations

import numpy as np

from ...hw.blocks.gemm import Gemm, GemmConfig
from ...hw.blocks.gemm_config import CODE_BITS, GROUP_SCALE_BITS, WEIGHT_GROUP
from ...hw.numeric import INT32, IntType
from ...hw.stream import row_layout
from ..golden.gemm import gemm_bitexact, group_gemm_bitexact
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
        TensorSpec("w", "int8", "k×n", "weights (int4 values when w_width=4; with weight_groups "
                   "the 4-bit codes 0..15), loaded first"),
        TensorSpec("group_scale", "int16", f"(k/{WEIGHT_GROUP})×n",
                   "weight_groups: each group's scale D (w = D·q + M)", optional=True),
        TensorSpec("group_min", "int16", f"(k/{WEIGHT_GROUP})×n",
                   "weight_groups at w_width 4: each group's minimum M (Q8_0's groups, "
                   "w_width 8, have none)", optional=True),
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
        if a.shape[0] < 1:
            raise TensorError("tensor 'a' has no rows; expected M >= 1")
        if not cfg.weight_groups:
            for name in ("group_scale", "group_min"):
                if name in tensors:
                    raise TensorError(f"tensor {name!r} is given, but weight_groups is false")
            w = self.require_int(tensors, "w", IntType(cfg.w_width), (cfg.k, cfg.n))
            return {"a": a, "w": w}
        code = IntType(CODE_BITS, signed=False) if cfg.k_per_word == 2 else IntType(cfg.w_width)
        w = self.require_int(tensors, "w", code, (cfg.k, cfg.n))
        extra = [name for name in ("group_scale", "group_min")
                 if name in tensors and name not in cfg.group_tables]
        if extra:
            raise TensorError(f"tensor {extra[0]!r} is given, but w_width={cfg.w_width} "
                              f"groups have {' and '.join(cfg.group_tables)} only")
        tables = {name: self.require_int(tensors, name, IntType(GROUP_SCALE_BITS),
                                         (cfg.groups, cfg.n))
                  for name in cfg.group_tables}
        return {"a": a, "w": w, **tables}

    def drive(self, cfg, tensors):
        comp_act = row_layout(IntType(cfg.a_width).shape, cfg.lanes)
        m = tensors["a"].shape[0]
        preload = {"weight": pack_rows(Gemm.weight_layout(cfg),
                                       Gemm.weight_rows(cfg, tensors["w"]))}
        if cfg.weight_groups:
            preload["group"] = pack_rows(Gemm.group_layout(cfg), Gemm.group_rows(
                cfg, **{name: tensors[name] for name in cfg.group_tables}))
        return Drive(
            preload=preload,
            timed={"act": pack_rows(comp_act, tensors["a"])},
            expect={"o": m * cfg.n_tiles},
        )

    def collect(self, cfg, tensors, beats):
        layout = row_layout(INT32.shape, cfg.cols)
        c, last, end = unpack_rows(layout, beats["o"], cfg.n)
        per_row = cfg.n_tiles
        check_framing(last, end, per_row)
        return {"c": c.astype(INT32.dtype)}

    def golden(self, cfg, tensors):
        if cfg.weight_groups:
            return {"c": group_gemm_bitexact(tensors["a"], tensors["w"], tensors["group_scale"],
                                             tensors.get("group_min"), cfg.shift, cfg.rounding)}
        return {"c": gemm_bitexact(cfg, tensors["a"], tensors["w"])}

    def macs(self, cfg, tensors):
        return int(tensors["a"].shape[0]) * cfg.k * cfg.n

    def shape_args(self, cfg, tensors):
        return (int(tensors["a"].shape[0]),)

    def peak_macs_per_cycle(self, cfg):
        return cfg.peak_macs_per_cycle
