"""From float to integer: W8A8 post-training quantisation of one transformer layer.

:func:`quantize_layer` turns one layer's float weights (canonical names of
:mod:`llmloom.sim.weights`, or a ``.safetensors``/``.npz`` file under Hugging Face names) and
a calibration input into a calibrated :class:`~llmloom.hw.layers.config.LayerConfig` (every
scale and hardware constant) and :class:`~llmloom.hw.layers.config.LayerWeights` (the int8
matrices). The choices, and why:

* **Weights: int8, symmetric, one scale per output channel** (``s_c = max_i |W[i, c]| / 127``,
  ``W_q = round_half_even(W / s_c)`` in −127..127). Per channel because the columns of a
  weight matrix differ in range by orders of magnitude in real models, and a per-channel
  scale costs nothing in hardware: it folds into the re-quantiser's per-channel multiplier
  (``acc_scale[c] = s_in · s_c``). Symmetric (no zero point) so that the GEMM is a plain
  int8 × int8 product.
* **Scale floor.** The re-quantiser aligns its per-channel multipliers to one shift, which
  limits the spread of ``acc_scale`` (:data:`llmloom.hw.blocks.requant.MAX_MULT_WIDTH`, 29
  bits with 16-bit multipliers: a factor 2**13). Channel scales are therefore floored at
  ``max_c s_c · 2**-SCALE_SPREAD_BITS`` (12 bits); only near-dead channels (max |w| below
  1/4096 of the largest channel's) are affected: they get fewer than 127 levels (coarser
  steps, never clipping). An all-zero matrix gets scale 1.
* **Biases: int32 in accumulator units**, ``round_half_even(b[c] / (s_in · s_c))``, added to
  the accumulator before re-quantisation (exact, no extra rounding at the output). A bias
  outside int32 is an error (it would mean a bias 2**31 times the accumulator's unit).
* **Activations: int8, symmetric, one scale per tensor**, calibrated from the **float**
  reference (:func:`llmloom.sim.golden.layers.layer_float_trace`) run on ``x_calib``:
  ``scale = max |t| / 127`` for every intermediate tensor ``t`` (no range wasted: the
  calibration data never saturates; other data may). Per tensor because a per-token or
  per-channel activation scale would need runtime scale arithmetic the blocks do not have.
  The input's own scale (returned as ``input_scale``) is calibrated the same way.
* **Attention scores**: one scale for all heads, from the largest *kept* score (masked scores
  never reach the softmax's max or sum, so they must not widen its range).
* **Softmax output**: fixed scale 1/255 (uint8; 255 is probability 1.0), set by the softmax
  block, not calibrated.
* **Norms**: gamma and beta stay float in the config; the layernorm block quantises them
  (its constants, ``hw/blocks/norm.py``). ``eps`` is the architecture's (GPT-2 1e-5, BERT
  1e-12) unless given.
* **GELU**: a 256-entry table from the input and output scales (``tanh`` formula for GPT-2,
  exact ``erf`` for BERT, as the models define it).
* Every rounding of the pipeline is ``half_even`` (unbiased) unless ``rounding`` is given.
"""

from __future__ import annotations

import numpy as np

from ..hw.layers.config import (
    LINEARS,
    ActScales,
    LayerConfig,
    LayerWeights,
    LinearParams,
    NormParams,
)
from ..hw.numeric import INT8, INT32
from .golden.layers import cosine, dequantize, layer_bitexact, layer_float, layer_float_trace
from .weights import load_layer_weights

__all__ = ["quantize_layer", "quantize_weight", "quantize_input", "calibrate_scale",
           "run_layer_float_and_int", "SCALE_SPREAD_BITS"]

#: Per-channel weight scales are floored at the largest one times 2**-SCALE_SPREAD_BITS.
SCALE_SPREAD_BITS = 12
_W = {"q": "wq", "k": "wk", "v": "wv", "o": "wo", "f1": "w1", "f2": "w2"}
_B = {"q": "bq", "k": "bk", "v": "bv", "o": "bo", "f1": "b1", "f2": "b2"}


def calibrate_scale(t):
    """The per-tensor scale mapping ``max |t|`` onto 127 (1 for an all-zero tensor)."""
    amax = float(np.max(np.abs(np.asarray(t, np.float64)), initial=0.0))
    return amax / INT8.max if amax > 0 else 1.0


def quantize_input(x, scale):
    """Float rows → int8 at ``scale`` (round half to even, saturate)."""
    return INT8.saturate(np.rint(np.asarray(x, np.float64) / scale)).astype(np.int8)


def quantize_weight(w):
    """A float in × out matrix → ``(int8 matrix, per-output-channel scales)`` (see the
    module text: symmetric, −127..127, scales floored at 2**-SCALE_SPREAD_BITS of the
    largest)."""
    w = np.asarray(w, np.float64)
    amax = np.max(np.abs(w), axis=0)
    top = float(amax.max(initial=0.0))
    if top == 0:
        scale = np.ones(w.shape[1])
    else:
        scale = np.maximum(amax, top * 2.0 ** -SCALE_SPREAD_BITS) / INT8.max
    q = np.clip(np.rint(w / scale), -INT8.max, INT8.max).astype(np.int8)
    return q, scale


def _bias(name, b, acc_scale):
    q = np.rint(np.asarray(b, np.float64) / acc_scale)
    if q.min() < INT32.min or q.max() > INT32.max:
        raise ValueError(f"bias of {name} does not fit int32 at its accumulator scale "
                         f"(largest {np.abs(q).max():.3g} units)")
    return tuple(int(v) for v in q)


def quantize_layer(float_weights, x_calib, arch, heads, seq=None, *, lanes=4, eps=None,
                   rounding="half_even", **parallelism):
    """W8A8 quantisation of one layer, calibrated on ``x_calib`` (see the module text).

    Parameters
    ----------
    float_weights : dict or path
        Canonical float weights (``wq bq ... ln2_b``, ``x @ W`` orientation), or a
        ``.safetensors``/``.npz`` file of one layer under Hugging Face names.
    x_calib : float array, rows × d_model
        Calibration input of the float layer.
    arch : "gpt2" | "bert"
    heads : int
    seq : int, optional
        GPT-2: the KV cache capacity; BERT: the sequence length. Default: ``x_calib``'s rows.
    lanes, eps, rounding, **parallelism
        :class:`~llmloom.hw.layers.config.LayerConfig` fields (``engine``, ``linear_rows``,
        ``qk_cols``...), passed through: they shape the hardware, not the numbers (the int8
        weights, scales and biases are the same for every engine and array size).

    Returns ``(cfg, weights, input_scale)``: the calibrated LayerConfig, the int8
    LayerWeights, and the scale to quantise inputs with (:func:`quantize_input`).
    """
    w = float_weights if isinstance(float_weights, dict) else load_layer_weights(
        float_weights, arch)
    x_calib = np.asarray(x_calib, np.float64)
    d_model, d_ff = w["w1"].shape
    if x_calib.ndim != 2 or x_calib.shape[1] != d_model or x_calib.shape[0] < 1:
        raise ValueError(f"x_calib has shape {x_calib.shape}; expected rows×{d_model}")
    trace = layer_float_trace(x_calib, w, arch, heads, eps)
    act = {name: calibrate_scale(trace[name])
           for name in ("x", "n1", "q", "k", "v", "attn", "o", "r1", "n2", "u", "g", "f", "r2")}
    act["score"] = calibrate_scale(trace["scores"][:, trace["keep"]])
    scales = ActScales(**act)

    shape_only = LayerConfig(arch=arch, d_model=d_model, heads=heads, d_ff=d_ff,
                             seq=x_calib.shape[0] if seq is None else seq, lanes=lanes,
                             eps=eps, rounding=rounding, **parallelism)
    mats, linears = {}, {}
    for name in LINEARS:
        q, s_w = quantize_weight(w[_W[name]])
        s_in = act[shape_only.linear_io(name)[0]]
        mats[_W[name]] = q
        linears[name] = LinearParams(w_scale=tuple(float(v) for v in s_w),
                                     bias=_bias(name, w[_B[name]], s_in * s_w))
    norms = {n: NormParams(gamma=tuple(map(float, w[f"{n}_g"])),
                           beta=tuple(map(float, w[f"{n}_b"]))) for n in ("ln1", "ln2")}
    cfg = shape_only.replace(scales=scales, **linears, **norms)
    return cfg, LayerWeights(**mats).check(cfg), scales.x


def run_layer_float_and_int(float_weights, x, arch, heads, *, x_calib=None, **quantize_kw):
    """Quantise a layer (calibrating on ``x_calib``, default ``x``), run the float64 layer on
    ``x`` and the bit-exact one on ``x`` quantised to the input scale, and compare.

    ``quantize_kw`` goes to :func:`quantize_layer` (``seq``, ``lanes``, parallelism...).
    Returns a dict: ``cosine`` and ``max_abs_error`` (of the dequantised int
    output against the float output), ``rel_max_error`` (that over max|y_float|), ``y_float``,
    ``y_int``, ``y_dequant``, ``config`` and ``weights``.
    """
    if not isinstance(float_weights, dict):
        float_weights = load_layer_weights(float_weights, arch)
    x = np.asarray(x, np.float64)
    cfg, weights, x_scale = quantize_layer(float_weights, x if x_calib is None else x_calib,
                                           arch, heads, **quantize_kw)
    y_int, _ = layer_bitexact(cfg, weights, quantize_input(x, x_scale))
    y_float = layer_float(x, float_weights, arch, heads)
    y_deq = dequantize(y_int, cfg.y_scale)
    err = float(np.max(np.abs(y_deq - y_float)))
    return {"cosine": cosine(y_deq, y_float), "max_abs_error": err,
            "rel_max_error": err / float(np.max(np.abs(y_float))), "y_float": y_float,
            "y_int": y_int, "y_dequant": y_deq, "config": cfg, "weights": weights}
