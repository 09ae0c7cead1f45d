"""A whole checkpoint through its integer layers, as the accelerator runs it: the host embeds the
tokens, one layer's hardware runs every layer in turn, and between layers the host dequantises
the layer's output and quantises it at the next layer's input scale.

:func:`quantize_model` calibrates every layer on a calibration text (each layer on the float
input that text gives it); :func:`run_layers` runs token rows through the calibrated layers,
each layer through ``run_layer`` (the bit-exact model by default; a simulator of the RTL from
``llmloom.flows``); :func:`sentence_embedding` is sentence-transformers' pooling;
:func:`embed_weights` is how ``llmloom embed`` and ``llmloom accuracy`` quantise a checkpoint's
weights (:func:`weights_text` says it in words).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..hw.blocks.gemm_config import WEIGHT_GROUP
from .golden.layers import dequantize, layer_bitexact
from .quantize import quantize_input, quantize_layer

__all__ = ["QuantizedModel", "quantize_model", "run_layers", "sentence_embedding",
           "golden_layer", "embed_weights", "weights_text"]


@dataclasses.dataclass(frozen=True, eq=False)
class QuantizedModel:
    """A model's layers, each ``(cfg, int8 weights, input scale)``, calibrated on
    ``calib_tokens`` tokens."""

    model: object
    layers: tuple
    calib_tokens: int


def quantize_model(model, calib_ids, seq, *, lanes=1, **layer_fields):
    """Quantise every layer of ``model`` (an :class:`~llmloom.sim.hf.HFModel`), calibrated on
    the float inputs that token ids ``calib_ids`` give each layer. ``seq``: the layers' sequence
    length (GPT-2: KV cache capacity); ``lanes`` and ``layer_fields`` (parallelism) shape the
    hardware, not the numbers."""
    xs, _ = model.float_inputs(calib_ids)
    layers = tuple(quantize_layer(model.layer(n), xs[n], model.arch, model.heads, seq=seq,
                                  lanes=lanes, eps=model.eps, **layer_fields)
                   for n in range(model.layers))
    return QuantizedModel(model=model, layers=layers, calib_tokens=len(calib_ids))


def embed_weights(per_channel=False):
    """The layer fields of ``llmloom embed``'s and ``llmloom accuracy``'s weights (for
    :func:`quantize_model`): int8 codes
    with an integer scale per group of 32 inputs, GGUF's Q8_0 (``LayerConfig.weight_groups``,
    as ``generate``'s W8A8), better than one scale per output channel on every measure of
    ``bench/embed.py``; ``per_channel``: one scale per output channel (the linear stages'
    inputs then need not be a multiple of 32)."""
    return {"weight_groups": not per_channel}


def weights_text(cfg):
    """How the layer config ``cfg`` scales its int8 weights, for reports."""
    return (f"a weight scale per group of {WEIGHT_GROUP} inputs" if cfg.weight_groups else
            "a weight scale per output channel")


def golden_layer(cfg, weights, x_int):
    """One layer's int8 output rows by the bit-exact model (a prefill of ``x_int``)."""
    return layer_bitexact(cfg, weights, x_int)[0]


def run_layers(qmodel, x, run_layer=golden_layer, progress=None):
    """Float rows ``x`` (the first layer's input) through every layer of ``qmodel``:
    quantised at each layer's input scale, run by ``run_layer(cfg, weights, x_int) → y_int``,
    dequantised at its output scale. Returns the last layer's output (float64).
    ``progress(n)`` is called after each layer."""
    for n, (cfg, weights, x_scale) in enumerate(qmodel.layers):
        y_int = run_layer(cfg, weights, quantize_input(x, x_scale, cfg.width("x")))
        x = dequantize(y_int, cfg.y_scale)
        if progress is not None:
            progress(n + 1)
    return x


def sentence_embedding(h):
    """Mean of the rows, L2-normalised (sentence-transformers' pooling)."""
    e = np.mean(np.asarray(h, np.float64), axis=0)
    n = np.linalg.norm(e)
    return e / n if n else e
