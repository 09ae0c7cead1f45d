"""The attention harness: ``q`` (rows × d_model int8), ``k``, ``v`` (rows × kv_width int8;
``kv_width = d_model`` unless ``kv_heads`` groups the queries), one prefill of a new
sequence: positions 0 .. rows−1, and optionally their scales ``q_scale``, ``k_scale``,
``v_scale`` → ``y`` (rows × d_model int8, int16 with ``out_width`` 16, at the config's
``out_scale_value``), ``y_scale``."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import signed

from ...hw.blocks.attention import Attention
from ...hw.blocks.attention_config import AttentionConfig
from ...hw.config import ConfigError
from ...hw.numeric import INT8
from ...hw.stream import row_layout
from ..golden.attention import attention_bitexact
from ..harness import BlockHarness, ControlStreams, Drive, TensorError, TensorSpec, register
from ..streams import pack_rows, unpack_rows
from .rowkernel import scalar_of

__all__ = ["AttentionHarness"]


@register
class AttentionHarness(BlockHarness):
    name = "attention"
    summary = ("multi-head attention with its KV cache: Q·Kᵀ GEMM, requant, softmax, P·V "
               "GEMM, requant, per head")
    config_cls = AttentionConfig
    component_cls = Attention
    inputs = (
        TensorSpec("q", "int8", "rows×d_model", "queries at positions 0 .. rows−1"),
        TensorSpec("k", "int8", "rows×kv_width", "keys, appended to the cache (kv_width = "
                   "kv_heads·d_head)"),
        TensorSpec("v", "int8", "rows×kv_width", "values, appended to the cache"),
        TensorSpec("q_scale", "float", "scalar", "scale of q", optional=True),
        TensorSpec("k_scale", "float", "scalar", "scale of k", optional=True),
        TensorSpec("v_scale", "float", "scalar", "scale of v", optional=True),
    )
    outputs = (
        TensorSpec("y", "int8|int16", "rows×d_model", "attention output, heads concatenated "
                   "(int16: out_width=16)"),
        TensorSpec("y_scale", "float64", "scalar", "out_scale_value"),
    )
    shape_fields = ("d_model", "q_scale", "k_scale", "v_scale")

    def infer(self, tensors):
        out = {}
        q = tensors.get("q")
        if q is not None and np.ndim(q) == 2:
            out["d_model"] = int(np.shape(q)[1])
        for name in ("q_scale", "k_scale", "v_scale"):
            if name in tensors:
                out[name] = scalar_of(tensors, name)
        return out

    def component(self, cfg):
        # `clear` stays low: one sequence per run, starting from reset
        return ControlStreams(Attention(cfg))

    def prepare(self, cfg, tensors):
        q = self.require_int(tensors, "q", INT8, (None, cfg.d_model))
        k = self.require_int(tensors, "k", INT8, (q.shape[0], cfg.kv_width))
        v = self.require_int(tensors, "v", INT8, (q.shape[0], cfg.kv_width))
        try:
            cfg.check_call(q.shape[0], q.shape[0], 0)
        except ConfigError as exc:
            raise TensorError(str(exc)) from None
        return {"q": q, "k": k, "v": v}

    def drive(self, cfg, tensors):
        beat = row_layout(INT8.shape, cfg.lanes)
        rows = tensors["q"].shape[0]
        return Drive(preload={},
                     timed={n: pack_rows(beat, tensors[n]) for n in ("q", "k", "v")},
                     expect={"o": rows * cfg.d_model // cfg.lanes})

    def collect(self, cfg, tensors, beats):
        per_row = cfg.d_model // cfg.lanes
        y, last, end = unpack_rows(row_layout(signed(cfg.out_width), cfg.lanes), beats["o"],
                                   cfg.d_model)
        want_last = np.zeros(len(last), dtype=bool)
        want_last[per_row - 1::per_row] = True
        want_end = np.zeros(len(end), dtype=bool)
        want_end[-1:] = True
        if not (np.array_equal(last, want_last) and np.array_equal(end, want_end)):
            raise AssertionError("output framing (last/end bits) is wrong")
        return self._outputs(cfg, y)

    def _outputs(self, cfg, y):
        dtype = cfg.out_requant.OUT.dtype
        return {"y": np.asarray(y).astype(dtype), "y_scale": np.float64(cfg.out_scale_value)}

    def golden(self, cfg, tensors):
        return self._outputs(cfg, attention_bitexact(cfg, tensors["q"], tensors["k"],
                                                     tensors["v"]))

    def macs(self, cfg, tensors):
        # what the arrays compute: Q·Kᵀ and P·V over all seq key positions, every head
        rows = int(tensors["q"].shape[0])
        return 2 * rows * cfg.seq * cfg.d_model

    def shape_args(self, cfg, tensors):
        return (int(tensors["q"].shape[0]),)

    def peak_macs_per_cycle(self, cfg):
        # both arrays of every head engine
        return cfg.head_engines * (cfg.qk_rows * cfg.qk_cols + cfg.pv_rows * cfg.pv_cols)
