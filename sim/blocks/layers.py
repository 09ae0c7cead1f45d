"""Harnesses of the composed layers: ``gpt2-block``, ``bert-layer`` and ``llama-block``.

Tensors: ``x`` (rows × d_model float32, the layer input) → ``y`` (rows × d_model float32, the
int8 output dequantised at ``cfg.y_scale``) and ``y_int`` (int8; int16 in the dynamic scheme,
whose layer input and output are wide).

The float weights are not a tensor of the run: they come from a ``.safetensors``/``.npz`` file
(Hugging Face names) or a dict under canonical names, given to :meth:`LayerHarness.options`
(which returns a configured copy of the harness). :meth:`LayerHarness.config` has the
quantiser calibrate the layer (:func:`llmloom.sim.quantize.calibrate`) on ``x`` itself and
holds the :class:`~llmloom.sim.quantize.QuantizedLayer` it gives, so the config a run uses is
calibrated and the int8 weights are elaborated into the GEMMs. A shape-only config (no
weights) is elaborated on the quantiser's placeholder layer
(:func:`~llmloom.sim.quantize.quantize_placeholder`).

Modes: ``prefill`` (default): the rows are one tensor at positions ``0 .. rows−1``.
``decode`` (causal layers: GPT-2, LLaMA): a prefill of the first ``prefill`` rows (default
``rows − 1``), then each remaining row as a decode step, all through the same instance (its
KV cache persists);
``y`` holds every row's output. Each tensor is offered once the previous one's output is out
(:func:`layer_drive`), and the run reports each tensor's cycles (``tensor_cycles``).
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import signed, unsigned

from ...hw.config import ConfigError
from ...hw.layers.config import DESCRIPTIONS, LayerConfig
from ...hw.layers.layer import BertLayer, Gpt2Block, LlamaBlock
from ...hw.numeric import IntType
from ...hw.stream import row_layout
from ..golden.layers import RowScaled, cosine, dequantize, layer_bitexact, layer_float
from ..harness import (
    BlockHarness,
    ControlStreams,
    Drive,
    Gate,
    Segment,
    TensorError,
    TensorSpec,
    register,
)
from ..quantize import QuantizedLayer, calibrate, quantize_input, quantize_placeholder
from ..streams import check_framing, pack_rows, unpack_rows

__all__ = ["LayerHarness", "Gpt2BlockHarness", "BertLayerHarness", "LlamaBlockHarness",
           "MODES", "split_rows", "layer_golden", "layer_drive", "layer_collect_exponents",
           "layer_outputs"]

MODES = ("prefill", "decode")


def split_rows(rows, mode, prefill=None):
    """The tensors (row counts) a run of ``rows`` rows is cut into."""
    if mode == "prefill":
        return [rows]
    p = rows - 1 if prefill is None else prefill
    if not 0 <= p < rows:
        raise TensorError(f"--prefill {p} is out of range; allowed: 0 .. {rows - 1} (rows of "
                          "x minus at least one decode row)")
    return ([p] if p else []) + [1] * (rows - p)


def layer_golden(cfg, weights, x_int, sizes, x_e=None):
    """``layer_bitexact`` over the tensors of ``sizes``: a prefill, then decode steps. With
    the input rows' exponents ``x_e`` (a layer with row exponents on its residual stream) a
    :class:`~llmloom.sim.golden.layers.RowScaled` of the output rows and their exponents."""
    out, exps, cache, start = [], [], None, 0
    for n, size in enumerate(sizes):
        chunk = x_int[start:start + size]
        if x_e is not None:
            chunk = RowScaled(chunk, np.asarray(x_e)[start:start + size])
        if n == 0:
            y, cache = layer_bitexact(cfg, weights, chunk, "prefill")
        else:
            y, cache = layer_bitexact(cfg, weights, chunk, "decode", cache)
        if isinstance(y, RowScaled):
            y, e = y.values, y.e
            exps.append(e)
        out.append(y)
        start += size
    y = np.concatenate(out).astype(_dtype(cfg, cfg.description.output))
    return RowScaled(y, np.concatenate(exps)) if exps else y


def _dtype(cfg, tensor):
    return IntType(cfg.width(tensor)).dtype


def _beat(cfg, tensor):
    return row_layout(signed(cfg.width(tensor)), cfg.lanes)


def _e_beat(cfg):
    """The beat of a row-exponent stream (the layer's ``i_e`` and ``o_e``)."""
    return row_layout(unsigned(cfg.stream_exponent.bit_length()), 1)


def layer_drive(cfg, x_int, sizes, gated=True, x_e=None):
    """The input beats of the tensors of ``sizes`` (``end`` on each one's last beat), one
    segment per tensor (the run's ``tensor_cycles``); with ``x_e`` (row exponents on the
    residual stream) one exponent beat per row on ``i_e``, gated as the rows, and one
    expected per output row on ``o_e``.

    With ``gated`` (the default) each tensor after the first is held back until the previous
    one's output is all out, as in autoregressive decode, where the next token needs this
    one's output through the model; so every tensor meets an empty pipeline and the run's
    cycles are the sum of its tensors'. Without it the tensors follow each other back to
    back and overlap in the pipeline."""
    beat = _beat(cfg, "x")
    per_row = cfg.d_model // cfg.lanes
    words, gates, segments, start = [], [], [], 0
    e_words, e_gates = [], []
    for size in sizes:
        if start and gated:
            gates.append(Gate(len(words), "o", start * per_row))
            e_gates.append(Gate(len(e_words), "o", start * per_row))
        segments.append(Segment("i", len(words), "o", (start + size) * per_row))
        words += pack_rows(beat, x_int[start:start + size])
        if x_e is not None:
            e_words += pack_rows(_e_beat(cfg), np.asarray(x_e[start:start + size],
                                                          np.int64).reshape(-1, 1))
        start += size
    timed, expect = {"i": words}, {"o": x_int.shape[0] * per_row}
    gates = {"i": gates} if gates else {}
    if x_e is not None:
        timed["i_e"], expect["o_e"] = e_words, x_int.shape[0]
        if e_gates:
            gates["i_e"] = e_gates
    return Drive(preload={}, timed=timed, expect=expect, gates=gates, segments=segments)


def layer_collect(cfg, words, sizes):
    """Output beats → rows (int8, or int16 in the dynamic scheme), checking ``last`` per row
    and ``end`` per tensor."""
    beat = _beat(cfg, cfg.description.output)
    per_row = cfg.d_model // cfg.lanes
    y, last, end = unpack_rows(beat, words, cfg.d_model)
    check_framing(last, end, per_row, sizes)
    return y.astype(_dtype(cfg, cfg.description.output))


def layer_collect_exponents(cfg, words, sizes):
    """Output exponent beats (``o_e``, one per row) → the rows' exponents, checking ``end``
    per tensor."""
    e, last, end = unpack_rows(_e_beat(cfg), words, 1)
    check_framing(last, end, 1, sizes)
    return e[:, 0]


def layer_outputs(cfg, y):
    """A layer harness's outputs of its output rows ``y`` (a ``RowScaled`` with row
    exponents): ``y_int`` at the output's dtype, ``y`` dequantised, and ``y_e``."""
    dtype = _dtype(cfg, cfg.description.output)
    if isinstance(y, RowScaled):
        y_int = np.asarray(y.values).astype(dtype)
        return {"y": dequantize(RowScaled(y_int, y.e), cfg.y_scale).astype(np.float32),
                "y_int": y_int, "y_e": np.asarray(y.e, np.int64)}
    y_int = np.asarray(y).astype(dtype)
    return {"y": dequantize(y_int, cfg.y_scale).astype(np.float32), "y_int": y_int}


class LayerHarness(BlockHarness):
    arch = ""
    layer_cls: type
    config_cls = LayerConfig
    inputs = (TensorSpec("x", "float32", "rows×d_model", "layer input (quantised at the "
                         "calibrated input scale; also the calibration data)"),)
    outputs = (
        TensorSpec("y", "float32", "rows×d_model", "layer output, dequantised (y_int · y_scale)"),
        TensorSpec("y_int", "int8", "rows×d_model", "layer output at cfg.y_scale (int16 in the "
                   "dynamic scheme)"),
        TensorSpec("y_e", "int64", "rows", "each output row's exponent (y_int's row at "
                   "cfg.y_scale·2**e), with stream_exponent > 0 only", optional=True),
    )
    shape_fields = ("d_model",)

    def __init__(self, weights=None, mode="prefill", prefill=None, prefix=None, calib=None):
        if mode not in MODES:
            raise ConfigError(f"mode={mode!r} is not allowed; allowed: {' | '.join(MODES)}")
        if mode == "decode" and not DESCRIPTIONS[self.arch].causal:
            raise ConfigError(f"mode=decode needs a causal layer; {self.name} is "
                              "bidirectional")
        if prefill is not None and mode != "decode":
            raise ConfigError("prefill=P is for mode=decode only")
        self.weights, self.mode, self.prefill, self.prefix = weights, mode, prefill, prefix
        self.calib = None if calib is None else np.asarray(calib)
        #: The layer the quantiser calibrated for the last :meth:`config` (a QuantizedLayer).
        self.layer: QuantizedLayer | None = None

    def options(self, *, weights=None, mode="prefill", prefill=None, prefix=None, calib=None):
        """A copy of this harness with the float weights (path or canonical dict), the mode,
        the prefill length, the layer's name prefix in a file of several layers (``h.3.``,
        ``encoder.layer.0.``; found alone when the file holds one layer) and the calibration
        rows (float, rows × d_model; default: the run's own ``x``) set."""
        return type(self)(weights=weights, mode=mode, prefill=prefill, prefix=prefix,
                          calib=calib)

    # -- configuration --------------------------------------------------------------------------
    def infer(self, tensors):
        x = tensors.get("x")
        return {"d_model": int(np.shape(x)[1])} if x is not None and np.ndim(x) == 2 else {}

    def config(self, values=None, tensors=None):
        """The calibrated LayerConfig: the user's fields (``heads``, ``seq``, ``lanes``,
        parallelism...) with ``d_ff`` the weights' (see :meth:`options`), calibrated by the
        quantiser on the calibration rows of :meth:`options`, else on ``x`` (the layer it gives
        is :attr:`layer`). Without weights or ``x``, the shape-only config."""
        from ..weights import load_layer_weights

        values = dict(values or {})
        if values.get("arch", self.arch) != self.arch:
            other = {h.arch: h.name for h in LAYER_HARNESSES}.get(values["arch"])
            hint = f" (or run {other})" if other else ""
            raise ConfigError(f"arch={values['arch']!r} in the config, but {self.name} is a "
                              f"{self.arch} layer; allowed: arch={self.arch}{hint}")
        values["arch"] = self.arch
        cfg = super().config(values, tensors)
        if self.weights is None or tensors is None or "x" not in tensors:
            return cfg
        fw = self.weights
        if not isinstance(fw, dict):
            fw = load_layer_weights(fw, self.arch, prefix=self.prefix)
        x = self._float_x(tensors, cfg.d_model)
        # the FFN width: the output of the first linear stage that is d_ff wide (w1, w_gate)
        ffn = next(st for st in cfg.description.of_kind("linear") if st.features == "d_ff")
        d_ff = np.shape(fw[ffn.weight])[1]
        if "d_ff" in values and values["d_ff"] != d_ff:
            raise ConfigError(f"d_ff={values['d_ff']} but the weights have d_ff={d_ff}")
        if self.calib is not None:
            x = self._float_x({"x": self.calib}, cfg.d_model, "calibration tensor 'x'")
        self.layer = calibrate(cfg.replace(d_ff=d_ff), fw, x)
        return self.layer.config

    def quantized(self, cfg):
        """The :class:`~llmloom.sim.quantize.QuantizedLayer` of calibrated ``cfg``: the one
        :meth:`config` made it with."""
        if self.layer is None or self.layer.config != cfg:
            raise ConfigError("no weights for this config: give the weights (harness."
                              "options(weights=...)) and build the config with harness."
                              "config(values, tensors)")
        return self.layer

    def component(self, cfg):
        layer = self.quantized(cfg) if cfg.calibrated else quantize_placeholder(
            cfg.replace(arch=self.arch))
        # `clear` stays low: one sequence per run, starting from reset
        return ControlStreams(self.layer_cls(layer.config, layer.weights))

    # -- tensors --------------------------------------------------------------------------------
    @staticmethod
    def _float_x(tensors, d_model, what="tensor 'x'"):
        x = np.asarray(tensors["x"])
        if x.ndim != 2 or x.shape[1] != d_model or x.shape[0] < 1:
            raise TensorError(f"{what} has shape {'×'.join(map(str, x.shape))}; expected "
                              f"rows×{d_model}, rows >= 1")
        if not np.issubdtype(x.dtype, np.floating) or not np.all(np.isfinite(x)):
            raise TensorError(f"{what} must hold finite floats; got {x.dtype}")
        return x.astype(np.float64)

    def prepare(self, cfg, tensors):
        if "x" not in tensors:
            raise TensorError("missing input tensor 'x'")
        x = self._float_x(tensors, cfg.d_model)
        rows = x.shape[0]
        if rows > cfg.seq:
            raise TensorError(f"x has {rows} rows, more than the KV cache's seq={cfg.seq}")
        if not cfg.calibrated:
            raise TensorError("the layer is not calibrated: give its float weights (--weights "
                              "W.safetensors|W.npz; harness.options(weights=...))")
        out = {"x": x, "sizes": split_rows(rows, self.mode, self.prefill)}
        # with row exponents on the residual stream: each row at x_scale·2**e
        x_int = quantize_input(x, cfg.x_scale, cfg.width("x"),
                               cfg.stream_exponent if cfg.row_exponent("x") else 0)
        if isinstance(x_int, RowScaled):
            out["x_e"] = x_int.e
            x_int = x_int.values
        out["x_int"] = np.asarray(x_int).astype(np.int64)
        return out

    def drive(self, cfg, tensors):
        return layer_drive(cfg, tensors["x_int"], tensors["sizes"], x_e=tensors.get("x_e"))

    def collect(self, cfg, tensors, beats):
        y = layer_collect(cfg, beats["o"], tensors["sizes"])
        if "o_e" in beats:
            y = RowScaled(y, layer_collect_exponents(cfg, beats["o_e"], tensors["sizes"]))
        return layer_outputs(cfg, y)

    def golden(self, cfg, tensors):
        return layer_outputs(cfg, layer_golden(cfg, self.quantized(cfg).weights,
                                               tensors["x_int"], tensors["sizes"],
                                               tensors.get("x_e")))

    def float_metrics(self, cfg, tensors, outputs):
        """``cosine_vs_float`` and ``max_abs_error_vs_float`` of the output ``y`` against the
        float64 layer on ``x`` (for the run report)."""
        fw = self.quantized(cfg).float_weights
        kw = ({"kv_heads": cfg.kv_heads_value, "rope_base": cfg.rope_base}
              if cfg.description.of_kind("rope") else {})
        y_float = layer_float(tensors["x"], fw, self.arch, cfg.heads, **kw)
        y = np.asarray(outputs["y"], np.float64)
        return {"cosine_vs_float": cosine(y, y_float),
                "max_abs_error_vs_float": float(np.max(np.abs(y - y_float)))}

    def shape_args(self, cfg, tensors):
        """``(sizes,)``: the row counts of the run's tensors (a prefill, then decode steps),
        for ``perf.cycles.gpt2_block_cycles`` / ``bert_layer_cycles``."""
        return (tuple(int(s) for s in tensors["sizes"]),)

    def macs(self, cfg, tensors):
        rows, d = int(tensors["x_int"].shape[0]), cfg.d_model
        linear = rows * sum(k * n for k, n in map(cfg.linear_shape, cfg.linears))
        return linear + 2 * rows * cfg.seq * d      # the attention arrays span all seq keys

    def peak_macs_per_cycle(self, cfg):
        return (sum(cfg.linear(name).rows * cfg.linear(name).cols for name in cfg.linears)
                + cfg.head_engines * (cfg.qk_rows * cfg.qk_cols + cfg.pv_rows * cfg.pv_cols))


@register
class Gpt2BlockHarness(LayerHarness):
    name = "gpt2-block"
    summary = ("GPT-2 block (pre-norm, causal) composed of the blocks, KV cache on chip; "
               "float weights quantised W8A8 and calibrated on x")
    arch = "gpt2"
    layer_cls = Gpt2Block


@register
class BertLayerHarness(LayerHarness):
    name = "bert-layer"
    summary = ("BERT encoder layer (post-norm, bidirectional) composed of the blocks; float "
               "weights quantised W8A8 and calibrated on x")
    arch = "bert"
    layer_cls = BertLayer


@register
class LlamaBlockHarness(LayerHarness):
    name = "llama-block"
    summary = ("LLaMA-class block (pre-norm RMSNorm, RoPE, grouped-query attention, SwiGLU; "
               "causal) composed of the blocks, KV cache on chip; float weights quantised W8A8 "
               "and calibrated on x")
    arch = "llama"
    layer_cls = LlamaBlock


#: The layer harnesses, one per architecture.
LAYER_HARNESSES = (Gpt2BlockHarness, BertLayerHarness, LlamaBlockHarness)
