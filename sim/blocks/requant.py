"""The re-quantisation harness: ``acc`` (rows×length int32) with ``acc_scale`` (a float, or
one per channel), an optional per-channel ``bias`` and, with ``row_exponent``, an optional
per-row exponent ``e`` (default zeros) → ``y`` (int8, or int16 with ``out_width`` 16),
``y_scale``, ``y_float``.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import unsigned

from ...hw.blocks.requant import Requant, RequantConfig
from ...hw.numeric import INT8, QuantParams
from ...hw.stream import row_layout
from ..golden.requant import requant_bitexact, requant_float
from ..harness import BlockHarness, Drive, TensorError, TensorSpec, register
from ..streams import check_framing, pack_rows, unpack_rows

__all__ = ["RequantHarness", "RowHarness", "scale_of", "infer_rows", "calibrated_scale"]


def scale_of(tensors, name):
    """A scale from an npz entry: a float when it holds one number, else a list (one per
    channel, or something the config check rejects by name); None when absent."""
    if name not in tensors:
        return None
    v = np.asarray(tensors[name])
    if v.size == 1 and v.ndim <= 1 and np.issubdtype(v.dtype, np.number):
        return float(v.reshape(()))
    return v.tolist()


def infer_rows(tensors, name="x"):
    """What rows of tensor ``name`` and its scale ``<name>_scale`` tell of a row kernel's
    config: ``length`` (the rows' width) and ``<name>_scale``, where given."""
    out = {}
    x = tensors.get(name)
    if x is not None and getattr(x, "ndim", 0) == 2:
        out["length"] = int(x.shape[1])
    if f"{name}_scale" in tensors:
        out[f"{name}_scale"] = scale_of(tensors, f"{name}_scale")
    return out


def calibrated_scale(reference, itype=INT8):
    """The per-tensor output scale that maps the float reference's largest magnitude onto
    ``itype.max`` (127 for int8; no range wasted; an all-zero or empty reference gets scale
    1)."""
    ref = np.asarray(reference, dtype=np.float64)
    if ref.size == 0:
        return 1.0
    return float(QuantParams.calibrate(ref, itype).scale)


class RowHarness(BlockHarness):
    """Shared plumbing of the element-wise row kernels (int8/int32 rows in, int8 rows out).

    Subclasses give ``in_ports`` (port → (tensor name, IntType); or :meth:`port_types` when
    the types follow the config) and ``float_reference``; ``config`` calibrates ``out_scale``
    from the data when the user did not set it, using the float reference of the config being
    built (so user overrides of scales or of the approximation are honoured), onto the
    largest value of the config's output type ``cfg.OUT``.
    """

    in_ports: dict = {}
    shape_fields = ("length", "out_scale")

    def config(self, values=None, tensors=None):
        cfg = super().config(values, tensors)
        if tensors is not None and cfg.out_scale is None:
            try:
                prepared = self.prepare(cfg, tensors)
            except (TensorError, ValueError):
                return cfg          # run_block's prepare reports the problem
            cfg = cfg.replace(out_scale=calibrated_scale(self.float_reference(cfg, prepared),
                                                         cfg.OUT))
        return cfg

    def float_reference(self, cfg, tensors):
        raise NotImplementedError

    def port_types(self, cfg):
        """port → (tensor name, IntType) of the timed inputs under ``cfg``."""
        return self.in_ports

    def _first(self, tensors):
        return next(iter(self.in_ports.values()))[0]

    def drive(self, cfg, tensors):
        timed = {port: pack_rows(row_layout(itype.shape, cfg.lanes), tensors[name])
                 for port, (name, itype) in self.port_types(cfg).items()}
        rows = tensors[self._first(tensors)].shape[0]
        return Drive(preload={}, timed=timed, expect={"o": rows * cfg.beats})

    def collect(self, cfg, tensors, beats):
        layout = row_layout(cfg.OUT.shape, cfg.lanes)
        y, last, end = unpack_rows(layout, beats["o"], cfg.length)
        check_framing(last, end, cfg.beats)
        return self.outputs_of(cfg, y)

    def outputs_of(self, cfg, y):
        """``y`` (``cfg.OUT``: int8, or int16 for a wide block), ``y_scale`` and ``y_float``,
        computed the same way for the RTL's output and the golden model's."""
        y = np.asarray(y).astype(cfg.OUT.dtype)
        scale = np.float64(cfg.out_scale_value)
        return {"y": y, "y_scale": scale, "y_float": y.astype(np.float64) * scale}

    def shape_args(self, cfg, tensors):
        return (int(tensors[self._first(tensors)].shape[0]),)

    def require_rows(self, tensors, name, itype, length, wide_field=None):
        """``tensors[name]`` as rows of ``length`` ``itype`` integers; ``wide_field``: the
        config field that would take int16 rows, named in the error when they come to an
        int8 input."""
        try:
            x = self.require_int(tensors, name, itype, (None, length))
        except TensorError as e:
            if wide_field and itype.width == 8 and getattr(tensors.get(name), "dtype",
                                                          None) == np.int16:
                raise TensorError(f"{e} ({wide_field}=16 takes int16)") from None
            raise
        if x.shape[0] < 1:
            raise TensorError(f"tensor {name!r} has no rows; expected at least one")
        return x


@register
class RequantHarness(RowHarness):
    name = "requant"
    summary = ("int32 accumulators (+ bias) → int8 or int16: per-tensor or per-channel "
               "fixed-point scale, optional per-row exponent, rounded and saturated")
    config_cls = RequantConfig
    component_cls = Requant
    inputs = (
        TensorSpec("acc", "int32", "rows×length", "accumulators (a GEMM's output)"),
        TensorSpec("acc_scale", "float", "scalar or length",
                   "their scale, per tensor or per channel (into the config)"),
        TensorSpec("bias", "int32", "length", "per-channel bias (into the config)",
                   optional=True),
        TensorSpec("e", "int", "rows", "each row's exponent 0..e_max (row_exponent only; "
                   "default zeros): acc of row r is in units of acc_scale·2**e[r]",
                   optional=True),
    )
    outputs = (
        TensorSpec("y", "int8", "rows×length", "re-quantised values (int16 with out_width "
                   "16)"),
        TensorSpec("y_scale", "float", "scalar", "their scale (out_scale)"),
        TensorSpec("y_float", "float64", "rows×length", "y · y_scale"),
    )
    in_ports = {"i": ("acc", RequantConfig.ACC)}
    shape_fields = ("length", "acc_scale", "bias", "out_scale", "row_exponent")

    def infer(self, tensors):
        out = {}
        acc = tensors.get("acc")
        if acc is not None and np.ndim(acc) == 2:
            out["length"] = int(np.shape(acc)[1])
        if "acc_scale" in tensors:
            out["acc_scale"] = scale_of(tensors, "acc_scale")
        if "bias" in tensors:
            bias = np.asarray(tensors["bias"])
            if not np.issubdtype(bias.dtype, np.integer):
                raise TensorError(f"tensor 'bias' has dtype {bias.dtype}; expected int32")
            out["bias"] = bias.reshape(-1).tolist()
        if "e" in tensors:
            out["row_exponent"] = True
        return out

    def prepare(self, cfg, tensors):
        acc = self.require_rows(tensors, "acc", cfg.ACC, cfg.length)
        if not cfg.row_exponent:
            if "e" in tensors:
                raise TensorError("tensor 'e' needs row_exponent=true")
            return {"acc": acc}
        if "e" not in tensors:
            return {"acc": acc, "e": np.zeros(acc.shape[0], dtype=np.int64)}
        e = np.asarray(tensors["e"])
        if not np.issubdtype(e.dtype, np.integer) or e.shape != (acc.shape[0],) or not (
                e.min() >= 0 and e.max() <= cfg.e_max):
            raise TensorError(f"tensor 'e' must hold one integer in 0..{cfg.e_max} (e_max) per "
                              f"row of 'acc' ({acc.shape[0]}); got shape "
                              f"{'×'.join(map(str, e.shape)) or 'scalar'} of {e.dtype}")
        return {"acc": acc, "e": e.astype(np.int64)}

    def drive(self, cfg, tensors):
        if not cfg.row_exponent:
            return super().drive(cfg, tensors)
        acc, e = tensors["acc"], tensors["e"]
        return Drive(preload={}, timed={
            "acc": pack_rows(row_layout(cfg.ACC.shape, cfg.lanes), acc),
            "e": pack_rows(row_layout(unsigned(cfg.e_width), 1), e[:, None])},
            expect={"o": acc.shape[0] * cfg.beats})

    def float_reference(self, cfg, tensors):
        return requant_float(cfg, tensors["acc"], tensors.get("e"))

    def golden(self, cfg, tensors):
        return self.outputs_of(cfg, requant_bitexact(cfg, tensors["acc"], tensors.get("e")))
