"""Shared plumbing of the row-reduction harnesses (softmax, layernorm, rmsnorm); registers no
block itself."""

from __future__ import annotations

import numpy as np

from ...hw.stream import row_layout
from ..harness import BlockHarness, Drive, TensorError
from ..streams import check_framing, pack_rows, unpack_rows

__all__ = ["RowKernelHarness", "scalar_of"]


def scalar_of(tensors, name):
    """``tensors[name]`` as a Python float, or :class:`TensorError` unless it is one number."""
    value = np.asarray(tensors[name])
    if value.size != 1 or not (np.issubdtype(value.dtype, np.floating)
                               or np.issubdtype(value.dtype, np.integer)):
        raise TensorError(f"tensor {name!r} must be one number (a per-tensor scale); got "
                          f"shape {'×'.join(map(str, value.shape)) or 'scalar'} of "
                          f"{value.dtype}")
    return float(value.reshape(-1)[0])


class RowKernelHarness(BlockHarness):
    """Rows of ``x`` (``cfg.IN``: int8, or int16 for a wide norm) in on port ``i``, rows of
    ``cfg.OUT`` out on ``o``: ``y``, ``y_scale`` and ``y_float``."""

    shape_fields = ("length", "x_scale")

    def infer(self, tensors):
        out = {}
        x = tensors.get("x")
        if x is not None and np.ndim(x) == 2:
            out["length"] = int(np.shape(x)[1])
        if "x_scale" in tensors:
            out["x_scale"] = scalar_of(tensors, "x_scale")
        return out

    def prepare(self, cfg, tensors):
        x = self.require_int(tensors, "x", cfg.IN, (None, cfg.length))
        if x.shape[0] < 1:
            raise TensorError("tensor 'x' has no rows; expected at least one")
        return {"x": x}

    def drive(self, cfg, tensors):
        x = tensors["x"]
        return Drive(preload={}, timed={"i": pack_rows(row_layout(cfg.IN.shape, cfg.lanes), x)},
                     expect={"o": x.shape[0] * cfg.beats})

    def collect(self, cfg, tensors, beats):
        y, last, end = unpack_rows(row_layout(cfg.OUT.shape, cfg.lanes), beats["o"],
                                   cfg.length)
        check_framing(last, end, cfg.beats)
        return self.outputs_of(cfg, y)

    def outputs_of(self, cfg, y):
        """``y``, ``y_scale`` and ``y_float``, computed the same way for the RTL's output and
        the golden model's."""
        y = np.asarray(y).astype(cfg.OUT.dtype)
        scale = np.float64(self.out_scale_of(cfg))
        return {"y": y, "y_scale": scale, "y_float": y.astype(np.float64) * scale}

    def out_scale_of(self, cfg):
        raise NotImplementedError

    def shape_args(self, cfg, tensors):
        return (int(tensors["x"].shape[0]),)
