"""The softmax harness: ``x`` (rows×length int8 scores) and ``x_scale`` → ``y`` (10-bit
probabilities in uint16 at scale 1/1023), ``y_scale``, ``y_float``. With ``runtime_offset`` the
optional tensor ``offset`` (one integer, default 0) is driven on the block's ``offset`` port; with
``runtime_keys`` the optional tensor ``keys`` (one integer, default ``length``) on its ``keys``
port."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import unsigned

from ...hw.blocks.softmax import KEYS_BITS, OFFSET_BITS, Softmax, SoftmaxConfig
from ...hw.stream import row_layout
from ..golden.softmax import softmax_bitexact
from ..harness import ControlStreams, TensorError, TensorSpec, register
from ..streams import pack_rows
from .rowkernel import RowKernelHarness

__all__ = ["SoftmaxHarness"]


@register
class SoftmaxHarness(RowKernelHarness):
    name = "softmax"
    summary = ("row softmax, optional causal mask; exact exp table, online max/sum, "
               "10-bit probabilities at scale 1/1023")
    config_cls = SoftmaxConfig
    component_cls = Softmax
    inputs = (
        TensorSpec("x", "int8", "rows×length", "scores; one tensor (causal row r = row index)"),
        TensorSpec("x_scale", "float", "scalar", "scale of the scores", optional=True),
        TensorSpec("offset", "int", "scalar", "position of row 0 (runtime_offset only; "
                   "default 0)", optional=True),
        TensorSpec("keys", "int", "scalar", "keys every row keeps, j < keys (runtime_keys "
                   "only; default length)", optional=True),
    )
    outputs = (
        TensorSpec("y", "uint16", "rows×length", "probabilities, code/1023 (10 bits); 0 where "
                   "masked"),
        TensorSpec("y_scale", "float64", "scalar", "1/1023"),
        TensorSpec("y_float", "float64", "rows×length", "y · y_scale"),
    )

    def component(self, cfg):
        if cfg.runtime_offset:
            return ControlStreams(Softmax(cfg), held=("offset",))
        if cfg.runtime_keys:
            return ControlStreams(Softmax(cfg), held=("keys",))
        return Softmax(cfg)

    def prepare(self, cfg, tensors):
        out = super().prepare(cfg, tensors)
        if "offset" in tensors:
            if not cfg.runtime_offset:
                raise TensorError("tensor 'offset' needs runtime_offset=true; the config's "
                                  "causal_offset gives the offset otherwise")
            off = np.asarray(tensors["offset"])
            if off.size != 1 or not np.issubdtype(off.dtype, np.integer) or not (
                    0 <= int(off.reshape(-1)[0]) < 1 << OFFSET_BITS):
                raise TensorError("tensor 'offset' must be one integer in "
                                  f"0..{(1 << OFFSET_BITS) - 1}")
            out["offset"] = int(off.reshape(-1)[0])
        elif cfg.runtime_offset:
            out["offset"] = 0
        if "keys" in tensors:
            if not cfg.runtime_keys:
                raise TensorError("tensor 'keys' needs runtime_keys=true (the key padding "
                                  "mask); without it every row keeps every key")
            keys = np.asarray(tensors["keys"])
            if keys.size != 1 or not np.issubdtype(keys.dtype, np.integer) or not (
                    1 <= int(keys.reshape(-1)[0]) <= cfg.length):
                raise TensorError(f"tensor 'keys' must be one integer in 1..{cfg.length}")
            out["keys"] = int(keys.reshape(-1)[0])
        elif cfg.runtime_keys:
            out["keys"] = cfg.length
        return out

    def drive(self, cfg, tensors):
        drive = super().drive(cfg, tensors)
        if cfg.runtime_offset:
            drive.preload["offset"] = pack_rows(row_layout(unsigned(OFFSET_BITS), 1),
                                                [[tensors["offset"]]])
        if cfg.runtime_keys:
            drive.preload["keys"] = pack_rows(row_layout(unsigned(KEYS_BITS), 1),
                                              [[tensors["keys"]]])
        return drive

    def out_scale_of(self, cfg):
        return cfg.out_scale

    def golden(self, cfg, tensors):
        return self.outputs_of(cfg, softmax_bitexact(cfg, tensors["x"], tensors.get("offset"),
                                                      tensors.get("keys")))
