"""From float to integer: W8A8 post-training quantisation of one transformer layer.

:func:`calibrate` turns the hardware of one layer (a shape-only
:class:`~llmloom.hw.layers.config.LayerConfig`), its float weights (canonical names of
:mod:`llmloom.sim.weights`, or a ``.safetensors``/``.npz`` file under Hugging Face names) and
a calibration input into a :class:`QuantizedLayer`: the config with its numbers
(:class:`~llmloom.hw.layers.config.LayerNumbers`: every scale and hardware constant), the
int8 matrices (:class:`~llmloom.hw.layers.config.LayerWeights`) and the float weights they
come from. The calibration input is an argument of its own, not the data a run is then given
(a harness calibrates on its run's input by default). :func:`quantize_layer` does the same
from the weights' own dimensions; :func:`quantize_placeholder` on seeded random weights, for
what needs a layer's structure and not its numbers (Verilog, lint, synthesis). The choices,
and why:

* **Weights: int8, symmetric, one scale per output channel** (``s_c = max_i |W[i, c]| / 127``,
  ``W_q = round_half_even(W / s_c)`` in −127..127). Per channel because the columns of a
  weight matrix differ in range by orders of magnitude in real models, and a per-channel
  scale costs nothing in hardware: it folds into the re-quantiser's per-channel multiplier
  (``acc_scale[c] = s_in · s_c``). Symmetric (no zero point) so that the GEMM is a plain
  int8 × int8 product.
* **W4 weights** (``LayerConfig.weight_bits`` 4, ``generate --quant W4A8``): 4-bit codes
  ``q`` in 0..15 with a scale ``d`` and a minimum ``m`` per group of 32 inputs of each output
  channel, ``w = d·q + m`` — GGUF's Q4_1, whose codes are kept exactly (other float weights are
  quantised to it, :func:`q4_1_of`). ``d`` and ``m`` become 16-bit integers in a unit per
  output channel (:func:`group_multipliers`); the engine sums ``x·q`` and ``x`` per group and
  weighs them by those integers (:func:`~llmloom.sim.golden.gemm.group_gemm_bitexact`), so the
  layer's linear stages are the file's weights to about 2**-15 of each channel's largest
  scale. Smoothing (below) then takes one factor per group of 32 input channels, which moves
  into the groups' ``d`` and ``m``, the codes unchanged.
* **W8 weights in groups** (``LayerConfig.weight_groups``; ``generate``'s W8A8 and ``embed``'s
  weights, ``--w8-per-channel`` in ``bench/generate.py`` and ``embed`` for one scale per channel):
  GGUF's Q8_0 (:func:`q8_0_of`): int8 codes −127..127 with a scale ``d`` per group of 32
  inputs of each output channel and no minimum (its groups' tables the scales alone). The
  float weights (at W8A8 those the GGUF's Q4_1 codes stand for, smoothed per channel) are then
  kept to ``d/2`` of each group's own range instead of each channel's: SmolLM2's per-channel
  int8 re-quantisation of its Q4_1 weights costs ~0.011 KL, the largest single loss at W8A8.
* **Scale floor.** The re-quantiser aligns its per-channel multipliers to one shift, which
  limits the spread of ``acc_scale`` to what the hardware's multiplier words hold
  (:data:`llmloom.hw.blocks.requant.CHANNEL_SPREAD_BITS`: 10 bits over the 16-bit
  multipliers, one build serving every calibration). Channel scales are therefore floored at
  ``max_c s_c · 2**-SCALE_SPREAD_BITS`` (the same 10 bits); only near-dead channels (max |w|
  below 1/1024 of the largest channel's) are affected: they get fewer than 127 levels (coarser
  steps, never clipping). An all-zero matrix gets scale 1.
* **Biases: int32 in accumulator units**, ``round_half_even(b[c] / (s_in · s_c))``, added to
  the accumulator before re-quantisation (exact, no extra rounding at the output). A bias
  outside int32 is an error (it would mean a bias 2**31 times the accumulator's unit).
* **Activations** (the config's ``scheme``):

  - ``static``: **int8, symmetric, one scale per tensor**, calibrated from the **float**
    reference (:func:`llmloom.sim.golden.layers.layer_float_trace`) run on ``x_calib``:
    ``scale = max |t| / 127`` for every intermediate tensor ``t`` (no range wasted: the
    calibration data never saturates; other data may). The input's own scale (returned as
    ``input_scale``) is calibrated the same way. Right on random weights (cosine ≥ 0.9995),
    wrong on trained ones: their residual stream, FFN2 output and GELU output carry outlier
    channels of 100× the median magnitude (all-MiniLM-L6-v2: layer cosine 0.77–0.96).
  - ``dynamic``: the residual stream (:attr:`~llmloom.hw.layers.description.LayerDescription.
    stream`) is **int16 at one static scale** with :data:`STREAM_HEADROOM` (4×) above the
    calibration's largest value, since inputs other than the calibration data reach further
    and 16 bits can spare two; the other tensors are int8 as above. The linear stages read
    the wide tensors through per-token quantisers (int8, a power-of-two exponent per row),
    whose exponents the re-quantisers undo. On MiniLM every layer's cosine is ≥ 0.997 on
    held-out sentences. LLaMA (SmolLM2) widens the down projection's input ``p`` and the
    attention's output ``attn`` too (``hw/layers/llama.py``), and its residual stream has 2×
    headroom, not 4× (:data:`STREAM_HEADROOMS`): its largest value is the first token's massive
    activation (22 000 in layer 20, beside ~130 in every other token), the same whatever the
    text to within +30 % (measured over four texts), so two bits of headroom would cost the
    other tokens two bits of resolution for nothing (layer 20, tokens after the first, held-out
    text: output cosine 0.990 at 4×, 0.997 at 2×; what the layer adds, 0.916 and 0.974;
    ``bench/llama_layers.py``).
    LLaMA's ``p`` and ``f`` are int24 (the description's ``wide``) with
    :data:`WIDE_HEADROOM` (16×): on held-out text SmolLM2's ``p`` reaches 3.4× the
    calibration's largest value (``f`` 2.1×), and 24 bits can spare four for it
    (``hw/layers/llama.py``). Its ``q`` and ``k`` are int16 too, at the stream's 2× headroom:
    RoPE reads them and rounds once onto the int8 ``qr`` and ``kr`` (their ratio of scales,
    ~2·127/32767 = 0.0078, well inside the 2**−6 its 16-bit table entries hold,
    ``hw/blocks/rope.py``).
    BERT's per-token inputs are int9 (its description's ``narrow``, ``hw/layers/bert.py``),
    and it takes 3× headroom: MiniLM's held-out sentences reach at most 1.6× the calibration's
    largest value in any stream tensor (0.39 of int16 at 4×), and the 0.4 bit gained
    lifts the chained sentence embedding (worst of 12 held-out sentences 0.9941 → 0.9955 with
    one weight scale per output channel, 0.9948 → 0.9958 with ``embed``'s Q8_0 groups;
    ``bench/embed.py``, 10-bit probabilities).
* **Row exponents** (``LayerConfig.stream_exponent`` E > 0, LLaMA's ``x r1 r2``: block
  floating point per token, :class:`~llmloom.sim.golden.layers.RowScaled`): the static scale
  is the **median row's** largest magnitude onto the largest value
  (:func:`calibrate_row_scale`), not the largest row's; a row above it takes an exponent
  ``e`` in ``1..E`` and keeps at least half the range of its own. SmolLM2's first token
  (|x| ≈ 22 500 from layer ~12 on, beside an RMS of ~6) then takes ``e`` ≈ 9 instead of
  leaving every other token 4–15 steps of one static scale.
* **Smoothing** (LLaMA, :data:`SMOOTHING`; SmoothQuant, Xiao et al. 2023): before the
  weights are quantised, each input channel of a linear stage is divided by
  ``f_j = amax_j**0.5 / wmax_j**0.5`` where it is made — the norm's gain (n1, n2), the up
  projection's output column (p = silu(hg) ⊙ hu) — and the readers' weight row ``j``
  multiplied by it (:func:`smooth_weights`): the same layer in float, at no cost in
  hardware, whose per-token int8 GEMM inputs no longer give their range to a few channels
  (SmolLM2's gains have channels tens of times the median). The attention's queries and
  keys are **balanced** the same way (:func:`smooth_weights`): ``q·k`` is unchanged when
  channel ``j`` of every query head is divided by ``g_j`` and the same channel of the KV
  head they read multiplied by it, so ``g_j = sqrt(amax(q_j) / amax(k_j))`` (one factor a
  rotated pair, the largest over the query heads sharing the KV head) gives each channel
  the same range in ``q`` and ``k``; it is made in the projections' output columns,
  which Q8_0's and Q4_1's per-column scales take exactly. SmolLM2's q and k channels
  reach 4–7× their median (layer 0 to 27), in different channels; balanced, the
  attribution's fake-quant model (``bench/llama_attribution.py``, W8A8, int10 GEMM
  inputs, 408 tokens) goes from KL 0.0093 to 0.0077 from float, and the bit-exact model
  (``bench/generate.py --all-texts``, 1 213 tokens) from 0.0084 to 0.0075 (agreement
  94.5 % → 94.3 %, perplexity 1.003× → 1.008× float's: a few near-tied tokens). The float
  reference keeps the
  weights as given.
* **LLaMA's SiLU input** (the gate projection's output ``hg``): in the dynamic scheme it is
  **int10** (the description's ``act_width``; a 1024-entry table, ``hw/layers/llama.py``) at
  one static scale, the calibration's largest value (no headroom: it is not a stream tensor).
  At int8 the one or two rows of the massive activation (the first token, a special token)
  set the largest and left every other row 2–6 steps of RMS in some of SmolLM2's layers
  (2, 11, 28), so it was clipped (:data:`CLIP_QUANTILES`, :func:`calibrate_clipped_scale`) to
  the 98th percentile of the calibration rows' largest magnitudes (W8A8 with int9 inputs,
  ``bench/generate.py``'s 137 tokens 91.2 % → 92.7 %, 1.040× → 1.021×; at the 90th
  percentile it lost again). With four times the steps the clipping costs more than it
  gains: ``bench/llama_attribution.py``'s fake-quant model, every tensor quantised, KL from
  float 0.033 at int10 clipped to the 98th percentile, 0.018 at int10 unclipped (hg alone at
  int8, clipped: 0.0146, the largest single tensor's).
* **Attention scores**: one scale for all heads, from the largest *kept* score (masked scores
  never reach the softmax's max or sum, so they must not widen its range).
* **Softmax output**: fixed scale 1/1023 (10 bits; 1023 is probability 1.0), set by the
  softmax block, not calibrated.
* **Norms**: gamma and beta stay float in the config; the layernorm block quantises them
  (its constants, ``hw/blocks/norm.py``). ``eps`` is the architecture's (GPT-2 1e-5, BERT
  1e-12) unless given.
* **GELU**: a 256-entry table from the input and output scales (``tanh`` formula for GPT-2,
  exact ``erf`` for BERT, as the models define it).
* Every rounding of the pipeline is ``half_even`` (unbiased) unless ``rounding`` is given.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..hw.blocks.requant import CHANNEL_SPREAD_BITS
from ..hw.config import ConfigError
from ..hw.layers.config import (
    DESCRIPTIONS,
    GROUP_SCALE_BITS,
    NORMS,
    WEIGHT_GROUP,
    ActScales,
    LayerConfig,
    LayerNumbers,
    LayerWeights,
    LinearParams,
    NormParams,
)
from ..hw.numeric import INT8, INT32, IntType
from .checkpoint import Q4_1Weights
from .golden.layers import (
    RowScaled,
    cosine,
    dequantize,
    layer_bitexact,
    layer_float,
    layer_float_trace,
)
from .golden.residual import exponents_of
from .weights import load_layer_weights

__all__ = ["QuantizedLayer", "calibrate", "quantize_layer", "quantize_placeholder",
           "quantize_weight", "quantize_input", "calibrate_scale", "run_layer_float_and_int",
           "calibrate_row_scale", "smooth_weights", "smoothed_q4", "q4_1_of", "q8_0_of",
           "group_multipliers",
           "calibrate_clipped_scale", "SMOOTHING", "CLIP_QUANTILES", "SCALE_SPREAD_BITS",
           "STREAM_HEADROOM", "STREAM_HEADROOMS", "WIDE_HEADROOM"]

#: Per-channel weight scales are floored at the largest one times 2**-SCALE_SPREAD_BITS.
SCALE_SPREAD_BITS = CHANNEL_SPREAD_BITS
#: The dynamic scheme's wide tensors are calibrated to this many times the calibration's
#: largest magnitude (two of int16's bits spent on inputs that reach further).
STREAM_HEADROOM = 4
#: Architectures whose wide tensors take another headroom (see the module text).
STREAM_HEADROOMS = {"llama": 2, "bert": 3}
#: The headroom of the tensors wider than int16 (:attr:`~llmloom.hw.layers.description.
#: LayerDescription.wide`, LLaMA's ``p`` and ``f``; see the module text).
WIDE_HEADROOM = 16
#: Architectures whose float weights are smoothed before they are quantised, with
#: SmoothQuant's migration strength (:func:`smooth_weights`; see the module text).
SMOOTHING = {"llama": 0.5}
#: Architectures whose static tensors named here are calibrated, in the dynamic scheme, to a
#: quantile of their rows' largest magnitudes (:func:`calibrate_clipped_scale`), not to the
#: largest (see the module text: LLaMA's int8 ``hg`` was, at the 98th percentile; at int10 none).
CLIP_QUANTILES = {}


def calibrate_scale(t, bits=8, headroom=1.0):
    """The per-tensor scale mapping ``headroom · max |t|`` onto the largest ``bits``-bit value
    (127 for int8; 1 for an all-zero tensor)."""
    amax = float(np.max(np.abs(np.asarray(t, np.float64)), initial=0.0))
    return amax * headroom / (2 ** (bits - 1) - 1) if amax > 0 else 1.0


def calibrate_clipped_scale(t, quantile, bits=8):
    """The per-tensor scale mapping the ``quantile`` of the rows' largest magnitudes onto the
    largest ``bits``-bit value (:data:`CLIP_QUANTILES`): the few rows above it saturate."""
    amax = np.max(np.abs(np.asarray(t, np.float64)), axis=-1)
    top = float(np.quantile(amax, quantile)) if amax.size else 0.0
    return top / (2 ** (bits - 1) - 1) if top > 0 else calibrate_scale(t, bits)


def calibrate_row_scale(t, bits=8):
    """The static scale of a tensor with row exponents (block floating point per row): the
    median row's largest magnitude onto the largest ``bits``-bit value. Rows above it take an
    exponent ``e > 0`` and keep at least half the range, ``Q/2`` steps of their own largest
    value; the few rows thousands of times the others' (LLaMA's first token) no longer set
    the scale of every row."""
    amax = np.max(np.abs(np.asarray(t, np.float64)), axis=-1)
    med = float(np.median(amax)) if amax.size else 0.0
    return med / (2 ** (bits - 1) - 1) if med > 0 else calibrate_scale(t, bits)


def quantize_input(x, scale, bits=8, e_max=0):
    """Float rows → ``bits``-bit integers at ``scale`` (round half to even, saturate), held in
    ``IntType(bits).dtype`` (int8; int16 for the dynamic scheme's wide input).

    ``e_max > 0`` (a layer's ``stream_exponent``): block floating point per row, a
    :class:`~llmloom.sim.golden.layers.RowScaled`: row ``i``'s exponent is the smallest ``e``
    in ``0..e_max`` with ``max |rint(x_i/scale)| ≤ Q·2**e``, its values
    ``rint(x_i/(scale·2**e))``, saturated (only rows beyond ``Q·2**e_max`` steps)."""
    if e_max:
        q = (1 << (bits - 1)) - 1
        x = np.asarray(x, np.float64)
        wide = np.clip(np.rint(x / scale), -(q + 1) << e_max, q << e_max)
        e = exponents_of(wide.astype(np.int64), q, e_max)
        v = np.clip(np.rint(x / (scale * np.exp2(e)[:, None])), -q - 1, q)
        return RowScaled(v.astype(IntType(bits).dtype), e)
    q = np.clip(np.rint(np.asarray(x, np.float64) / scale), -2 ** (bits - 1),
                2 ** (bits - 1) - 1)
    return q.astype(IntType(bits).dtype)


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


def q4_1_of(w):
    """A float in × out matrix as GGUF's Q4_1 would store it (:class:`~llmloom.sim.checkpoint.
    Q4_1Weights`, out × in): per group of :data:`~llmloom.hw.layers.config.WEIGHT_GROUP`
    inputs of an output channel, ``m`` its minimum, ``d = (max − m)/15`` (as float16, as the
    file holds them) and ``q = round((w − m)/d)`` in 0..15 (ggml's ``quantize_row_q4_1``)."""
    w = np.asarray(w, np.float64).T
    out, k = w.shape
    g = w.reshape(out, k // WEIGHT_GROUP, WEIGHT_GROUP)
    m = g.min(axis=2).astype(np.float16).astype(np.float64)
    d = ((g.max(axis=2) - m) / 15).astype(np.float16).astype(np.float64)
    safe = np.where(d > 0, d, 1.0)
    q = np.clip(np.rint((g - m[:, :, None]) / safe[:, :, None]), 0, 15)
    return Q4_1Weights(codes=q.reshape(out, k).astype(np.uint8), scales=d.astype(np.float32),
                       mins=m.astype(np.float32))


def q8_0_of(w):
    """A float in × out matrix as GGUF's Q8_0 would store it, in :class:`~llmloom.sim.
    checkpoint.Q4_1Weights`' form (out × in, ``mins`` zero): per group of
    :data:`~llmloom.hw.layers.config.WEIGHT_GROUP` inputs of an output channel
    ``d = max |w| / 127`` (as float16, as the file holds it) and ``q = round(w/d)`` in
    −127..127, signed (ggml's ``quantize_row_q8_0``)."""
    w = np.asarray(w, np.float64).T
    out, k = w.shape
    g = w.reshape(out, k // WEIGHT_GROUP, WEIGHT_GROUP)
    d = (np.abs(g).max(axis=2) / INT8.max).astype(np.float16).astype(np.float64)
    safe = np.where(d > 0, d, 1.0)
    q = np.clip(np.rint(g / safe[:, :, None]), -INT8.max, INT8.max)
    return Q4_1Weights(codes=q.reshape(out, k).astype(np.int8), scales=d.astype(np.float32),
                       mins=np.zeros(d.shape, np.float32))


def group_multipliers(q4):
    """The integer form of a Q4_1 matrix's group scales and minima (:class:`LinearParams`'s
    ``group_scale``, ``group_min``, in × out orientation: groups × out) and the unit ``u[c]``
    they count in per output channel: ``u = max(|d|, |m|) / (2**(GROUP_SCALE_BITS−1) − 1)``
    over the channel's groups (floored at the largest channel's 2**-SCALE_SPREAD_BITS, as
    int8 weight scales are), ``D = round(d/u)``, ``M = round(m/u)``."""
    d = np.asarray(q4.scales, np.float64).T
    m = np.asarray(q4.mins, np.float64).T
    top = (1 << (GROUP_SCALE_BITS - 1)) - 1
    amax = np.maximum(np.abs(d), np.abs(m)).max(axis=0)
    peak = float(amax.max(initial=0.0))
    unit = np.ones(d.shape[1]) if peak == 0 else np.maximum(
        amax, peak * 2.0 ** -SCALE_SPREAD_BITS) / top
    return (np.rint(d / unit).astype(np.int32), np.rint(m / unit).astype(np.int32), unit)


def _bias(name, b, acc_scale):
    q = np.rint(np.asarray(b, np.float64) / acc_scale)
    if q.min() < INT32.min or q.max() > INT32.max:
        raise ValueError(f"bias of {name} does not fit int32 at its accumulator scale "
                         f"(largest {np.abs(q).max():.3g} units)")
    return tuple(int(v) for v in q)


@dataclasses.dataclass(frozen=True, eq=False)
class QuantizedLayer:
    """One layer quantised W8A8: what :func:`calibrate` gives.

    Attributes
    ----------
    config : LayerConfig
        The hardware with its numbers (``config.numbers``).
    weights : LayerWeights
        The int8 matrices, of the shapes ``config`` needs.
    float_weights : dict
        The canonical float weights given (the float reference's): the int8 matrices are
        those of their smoothed equivalent where the architecture is smoothed
        (:data:`SMOOTHING`).
    """

    config: LayerConfig
    weights: LayerWeights
    float_weights: dict

    @property
    def input_scale(self):
        """The scale to quantise the layer's input with (:func:`quantize_input`)."""
        return self.config.x_scale


def calibrate(cfg, float_weights, x_calib, q4_weights=None):
    """W8A8 quantisation of the layer ``cfg`` describes, calibrated on ``x_calib`` (see the
    module text).

    Parameters
    ----------
    cfg : LayerConfig
        The hardware: arch, dimensions, parallelism, eps, rounding (numbers it has are
        replaced). Each weight matrix must have the shape its linear stage has in ``cfg``.
    float_weights : dict or path
        Canonical float weights (``wq bq ... ln2_b``, ``x @ W`` orientation; LLaMA: ``ln1_g wq
        wk wv wo ln2_g w_gate w_up w_down``, a bias or a norm offset that is not there is
        zero), or a ``.safetensors``/``.npz`` file of one GPT-2 or BERT layer under Hugging
        Face names.
    x_calib : float array, rows × d_model
        Calibration input of the float layer (any rows: not the layer's ``seq``).
    q4_weights : dict, optional
        ``cfg.weight_bits`` 4: weight name → the matrix's Q4_1 codes, scales and minima
        (:class:`~llmloom.sim.checkpoint.Q4_1Weights`, out × in, as a GGUF file holds them),
        kept exactly; a matrix not given is quantised Q4_1 from its float weights
        (:func:`q4_1_of`). Ignored at W8.

    Returns a :class:`QuantizedLayer`. The int8 weights, scales and biases are the same for
    every engine and array size: only ``arch``, ``heads``, ``kv_heads``, ``rope_base``,
    ``eps`` and ``rounding``'s effect on the float reference shape them.
    """
    w = float_weights if isinstance(float_weights, dict) else load_layer_weights(
        float_weights, cfg.arch)
    linears = cfg.description.of_kind("linear")
    for st in linears:
        got, want = tuple(np.shape(w[st.weight])), cfg.linear_shape(st.name)
        if got != want:
            raise ConfigError(f"weight {st.weight} is {'×'.join(map(str, got))}; the config "
                              f"(d_model={cfg.d_model}, d_ff={cfg.d_ff}, kv_heads="
                              f"{cfg.kv_heads_value}) needs {want[0]}×{want[1]}")
    x_calib = np.asarray(x_calib, np.float64)
    if x_calib.ndim != 2 or x_calib.shape[1] != cfg.d_model or x_calib.shape[0] < 1:
        raise ValueError(f"x_calib has shape {x_calib.shape}; expected rows×{cfg.d_model}")
    trace = layer_float_trace(x_calib, w, cfg.arch, cfg.heads, cfg.eps,
                              kv_heads=cfg.kv_heads_value, rope_base=cfg.rope_base)
    given, alpha = w, SMOOTHING.get(cfg.arch)
    w4 = cfg.weight_bits == 4
    q4 = {st.weight: (q4_weights or {}).get(st.weight) or q4_1_of(w[st.weight])
          for st in linears} if w4 else {}
    for st in linears if w4 else ():
        got, want = q4[st.weight].codes.shape[::-1], cfg.linear_shape(st.name)
        if got != want:
            raise ConfigError(f"Q4_1 weight {st.weight} is {got[1]}×{got[0]} (out × in); the "
                              f"config needs {want[1]}×{want[0]}")
    if alpha is not None:       # the same layer, its input channels' outliers in the weights
        factors = {}
        w = smooth_weights(DESCRIPTIONS[cfg.arch], w, trace, alpha,
                           group=WEIGHT_GROUP if w4 else 1, factors=factors)
        q4 = {name: smoothed_q4(m, *factors.get(name, (None, None))) for name, m in q4.items()}
        trace = layer_float_trace(x_calib, w, cfg.arch, cfg.heads, cfg.eps,
                                  kv_heads=cfg.kv_heads_value, rope_base=cfg.rope_base)
    act = {}
    for name in cfg.scale_names:
        if name == "score":
            act[name] = calibrate_scale(trace["scores"][:, trace["keep"]])
            continue
        bits = cfg.width(name)
        if cfg.row_exponent(name):
            act[name] = calibrate_row_scale(trace[name], bits)
            continue
        wide = bits > 8 and name in cfg.description.stream    # (not LLaMA's int10 hg)
        headroom = STREAM_HEADROOMS.get(cfg.arch, STREAM_HEADROOM) if wide else 1.0
        if bits > 16:
            headroom = WIDE_HEADROOM
        quantile = CLIP_QUANTILES.get(cfg.arch, {}).get(name)
        if quantile is not None and cfg.scheme == "dynamic":
            act[name] = calibrate_clipped_scale(trace[name], quantile, bits)
            continue
        act[name] = calibrate_scale(trace[name], bits, headroom)
    mats, params = {}, {}
    for st in linears:
        groups = {}
        if cfg.grouped:
            m4 = q4[st.weight] if cfg.weight_bits == 4 else q8_0_of(w[st.weight])
            q = m4.codes.T.astype(np.int8)
            scale, minimum, unit = group_multipliers(m4)
            s_w = unit * 2.0 ** cfg.group_shift(st.name)
            groups = {"group_scale": scale}
            if cfg.weight_bits == 4:                # Q8_0's groups have no minimum
                groups["group_min"] = minimum
        else:
            q, s_w = quantize_weight(w[st.weight])
        s_in = act[cfg.description.base(st.inputs[0])]
        mats[st.weight] = q
        bias = w.get(st.bias, np.zeros(q.shape[1]))     # LLaMA: no biases
        params[st.name] = LinearParams(w_scale=tuple(float(v) for v in s_w),
                                       bias=_bias(st.name, bias, s_in * s_w), **groups)
    for name in NORMS:
        beta = w.get(f"{name}_b")                       # rmsnorm: a gain only
        params[name] = NormParams(gamma=tuple(map(float, w[f"{name}_g"])),
                                  beta=None if beta is None else tuple(map(float, beta)))
    cfg = cfg.replace(numbers=LayerNumbers(scales=ActScales(**act), **params))
    return QuantizedLayer(cfg, LayerWeights(**mats).check(cfg), given)


def smooth_weights(desc, w, trace, alpha, group=1, factors=None):
    """The same layer's float weights with the per-channel outliers of its linear stages'
    inputs migrated into their weights (SmoothQuant, Xiao et al. 2023), exactly equivalent in
    float: for each input channel ``j`` a factor ``f_j = amax_j**alpha / wmax_j**(1 − alpha)``
    (``amax_j`` the calibration's largest ``|input[:, j]|``, ``wmax_j`` the largest weight of
    row ``j`` over every linear stage reading that input) divides the channel where it is
    made and multiplies the weights' row ``j``. Where it is made, at no cost in hardware:

    * a norm's output (``n1`` → q, k, v; ``n2`` → gate, up): its gain (and shift) ``/ f``;
    * an element-wise product one of whose factors is a linear stage's output (LLaMA's ``p =
      silu(hg) ⊙ hu`` → down): that linear stage's output columns (and bias) ``/ f``.

    And an attention's queries and keys balanced against each other (the module text): the
    query projection's output columns ``/ g``, the key projection's ``· g``.

    ``desc`` the layer's description, ``w`` canonical float weights, ``trace`` the float
    trace of the calibration input (:func:`layer_float_trace`). ``group`` > 1: one factor per
    group of that many consecutive channels, from the group's largest ``amax`` and ``wmax``
    (W4: a group's rows share a Q4_1 scale and minimum, which then take the factor, the 4-bit
    codes unchanged). ``factors``: a dict to fill with weight name → ``(rows, columns)``, the
    factors its rows are multiplied and its columns divided by (``None``: not). Returns a new
    dict."""
    w = dict(w)

    def factor(tensor, readers):
        a = np.max(np.abs(trace[tensor]), axis=0)
        m = np.max(np.concatenate([np.abs(w[st.weight]) for st in readers], axis=1), axis=1)
        if group > 1:
            a = np.repeat(a.reshape(-1, group).max(axis=1), group)
            m = np.repeat(m.reshape(-1, group).max(axis=1), group)
        ok = (a > 0) & (m > 0)
        f = np.ones(a.shape)
        f[ok] = a[ok] ** alpha / m[ok] ** (1 - alpha)
        return f

    def note(weight, rows=None, cols=None):
        if factors is not None:
            old_rows, old_cols = factors.get(weight, (None, None))
            factors[weight] = (rows if rows is not None else old_rows,
                               cols if cols is not None else old_cols)

    for st in desc.stages:
        if st.kind == "attention":
            _balance_qk(desc, w, trace, st, note)
        readers = [r for r, _ in desc.readers(st.output) if r.kind == "linear"]
        if not readers:
            continue
        if st.kind == "norm":
            f = factor(st.output, readers)
            for key in (f"{st.params}_g", f"{st.params}_b"):
                if key in w:
                    w[key] = np.asarray(w[key], np.float64) / f
        elif st.kind == "mul":
            src = next((desc.producer(t) for t in st.inputs
                        if desc.producer(t) is not None and desc.producer(t).kind == "linear"),
                       None)
            if src is None:
                continue
            f = factor(st.output, readers)
            w[src.weight] = np.asarray(w[src.weight], np.float64) / f[None, :]
            note(src.weight, cols=f)
            if src.bias in w:
                w[src.bias] = np.asarray(w[src.bias], np.float64) / f
        else:
            continue
        for r in readers:
            w[r.weight] = np.asarray(w[r.weight], np.float64) * f[:, None]
            note(r.weight, rows=f)
    return w


def _projection(desc, tensor):
    """The linear stage that makes ``tensor``, through any rope stage between (``None``:
    another kind); and whether a rope stage was passed."""
    st, rotated = desc.producer(tensor), False
    while st is not None and st.kind == "rope":
        st, rotated = desc.producer(st.inputs[0]), True
    return (st if st is not None and st.kind == "linear" else None), rotated


def _balance_qk(desc, w, trace, st, note):
    """Attention ``st``'s query and key projections' output columns divided and multiplied
    by ``g_j = sqrt(amax(q_j) / amax(k_j))`` (see the module text): ``q·k`` unchanged, each
    channel's range the same in both. A rotated pair takes one factor (RoPE commutes with
    scaling both of a pair alike); query head ``h`` reads KV head ``h // (heads / kv_heads)``."""
    (qn, kn), (lq, rot_q), (lk, rot_k) = st.inputs[:2], *map(
        lambda t: _projection(desc, t), st.inputs[:2])
    if lq is None or lk is None:
        return
    wq, wk = np.asarray(w[lq.weight], np.float64), np.asarray(w[lk.weight], np.float64)
    heads = trace["scores"].shape[0]
    dh = wq.shape[1] // heads
    col = np.arange(wq.shape[1])
    to_k = col // dh // (heads // (wk.shape[1] // dh)) * dh + col % dh
    aq = np.zeros(wk.shape[1])
    np.maximum.at(aq, to_k, np.max(np.abs(trace[qn]), axis=0))
    ak = np.max(np.abs(trace[kn]), axis=0)
    if rot_q or rot_k:
        aq, ak = (np.repeat(a.reshape(-1, 2).max(axis=1), 2) for a in (aq, ak))
    ok = (aq > 0) & (ak > 0)
    g = np.ones(ak.shape)
    g[ok] = np.sqrt(aq[ok] / ak[ok])
    w[lq.weight], w[lk.weight] = wq / g[to_k][None, :], wk * g[None, :]
    note(lq.weight, cols=g[to_k])
    note(lk.weight, cols=1 / g)
    for lin, f in ((lq, g[to_k]), (lk, 1 / g)):
        if lin.bias in w:
            w[lin.bias] = np.asarray(w[lin.bias], np.float64) / f


def smoothed_q4(q4, rows, cols):
    """A Q4_1 matrix (out × in) with its rows (inputs: one factor per group) multiplied and its
    columns (outputs) divided as :func:`smooth_weights` did the float matrix: the scales and
    minima change, the codes do not."""
    f = np.ones(q4.scales.shape)
    if rows is not None:
        f = f * np.asarray(rows, np.float64)[::WEIGHT_GROUP][None, :]
    if cols is not None:
        f = f / np.asarray(cols, np.float64)[:, None]
    return Q4_1Weights(codes=q4.codes, scales=q4.scales * f, mins=q4.mins * f)


def _ffn_dims(w, arch):
    """``(d_model, d_ff)`` of float weights: the shape of the description's first linear stage
    into ``d_ff`` (GPT-2, BERT ``w1``; LLaMA ``w_gate``)."""
    if arch not in DESCRIPTIONS:
        raise ConfigError(f"arch={arch!r} is not allowed; allowed: {' | '.join(DESCRIPTIONS)}")
    st = next(st for st in DESCRIPTIONS[arch].of_kind("linear") if st.features == "d_ff")
    return tuple(np.shape(w[st.weight]))


def quantize_layer(float_weights, x_calib, arch, heads, seq=None, *, lanes=4, eps=None,
                   rounding="half_even", q4_weights=None, **parallelism):
    """:func:`calibrate` of the layer of ``arch`` and ``heads`` whose ``d_model`` and ``d_ff``
    are the weights'.

    Parameters
    ----------
    float_weights, x_calib
        As :func:`calibrate`'s.
    arch : "gpt2" | "bert" | "llama"
    heads : int
    seq : int, optional
        GPT-2: the KV cache capacity; BERT: the sequence length. Default: ``x_calib``'s rows.
    lanes, eps, rounding, **parallelism
        :class:`~llmloom.hw.layers.config.LayerConfig` fields (``engine``, ``linear_rows``,
        ``qk_cols``..., and LLaMA's ``kv_heads``, ``rope_base``), passed through: the
        parallelism shapes the hardware, not the numbers (the int8 weights, scales and biases
        are the same for every engine and array size).

    Returns ``(cfg, weights, input_scale)``: the calibrated LayerConfig, the int8
    LayerWeights, and the scale to quantise inputs with (:func:`quantize_input`).
    """
    w = float_weights if isinstance(float_weights, dict) else load_layer_weights(
        float_weights, arch)
    d_model, d_ff = _ffn_dims(w, arch)
    x_calib = np.asarray(x_calib, np.float64)
    if x_calib.ndim != 2 or x_calib.shape[1] != d_model or x_calib.shape[0] < 1:
        raise ValueError(f"x_calib has shape {x_calib.shape}; expected rows×{d_model}")
    cfg = LayerConfig(arch=arch, d_model=d_model, heads=heads, d_ff=d_ff,
                      seq=x_calib.shape[0] if seq is None else seq, lanes=lanes, eps=eps,
                      rounding=rounding, **parallelism)
    layer = calibrate(cfg, w, x_calib, q4_weights)
    return layer.config, layer.weights, layer.input_scale


def quantize_placeholder(cfg):
    """:func:`calibrate` of the layer ``cfg`` describes on seeded random float weights (zero
    biases and betas, unit gains) and ``seq`` seeded random calibration rows: a layer of the
    right structure whose numbers mean nothing, for what needs the structure and not the
    numbers (``llmloom verilog`` without weights, lint, naming and synthesis checks). The same
    ``cfg`` gives the same layer."""
    rng = np.random.default_rng(0)
    d = cfg.d_model
    fw = {}
    for st in cfg.description.of_kind("linear"):
        k, n = cfg.linear_shape(st.name)
        fw[st.weight] = rng.normal(0.0, k ** -0.5, (k, n))
        fw[st.bias] = np.zeros(n)
    for name in NORMS:
        fw[f"{name}_g"] = np.ones(d)
        if cfg.description.norm == "layernorm":
            fw[f"{name}_b"] = np.zeros(d)
    return calibrate(cfg, fw, rng.normal(0.0, 1.0, (cfg.seq, d)))


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
    y_int, _ = layer_bitexact(cfg, weights, quantize_input(x, x_scale, cfg.width("x"),
                                                           cfg.stream_exponent))
    y_float = layer_float(x, float_weights, arch, heads, eps=cfg.eps,
                          kv_heads=cfg.kv_heads_value, rope_base=cfg.rope_base)
    y_deq = dequantize(y_int, cfg.y_scale)
    err = float(np.max(np.abs(y_deq - y_float)))
    return {"cosine": cosine(y_deq, y_float), "max_abs_error": err,
            "rel_max_error": err / float(np.max(np.abs(y_float))), "y_float": y_float,
            "y_int": y_int, "y_dequant": y_deq, "config": cfg, "weights": weights}
