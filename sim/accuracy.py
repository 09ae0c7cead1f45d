"""How far the bit-exact integer layers of a real checkpoint are from its float64 maths, tensor
by tensor and layer by layer.

:func:`model_accuracy` runs a text through a Hugging Face model (:mod:`.hf`) twice:

* **layer by layer**: each layer is quantised (:func:`~llmloom.sim.quantize.quantize_layer`)
  with the float input that a *calibration* text gives that layer, then fed the float input of
  the *judged* text, quantised to its input scale; every intermediate integer tensor,
  dequantised at its scale, is compared with the same tensor of the float64 layer on the same
  input. This isolates each layer's own error (the issue's "cosine per layer").
* **chained**: the layers run on their own integer outputs, as an accelerator runs a model (each
  layer's output dequantised and re-quantised at the next layer's input scale, which the host
  does between layers); the last hidden state and (BERT) the sentence embedding (mean over the
  tokens, L2-normalised) are compared with float.

Errors per tensor: ``cosine``, ``max_abs_error`` and ``sqnr_db``
(``10·log10(Σ ref² / Σ err²)``). Outlier channels: per tensor of the calibration run, the
channels whose largest magnitude exceeds :data:`OUTLIER_RATIO` times the median channel's, the
cause of most int8 loss in trained models.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..hw.layers.config import DESCRIPTIONS
from ..hw.layers.description import SCHEMES
from .golden.layers import (
    cosine,
    dequantize,
    layer_bitexact_trace,
    layer_float_trace,
    sqnr_db,
)
from .hf import load_model
from .model import embed_weights, quantize_model, run_layers, sentence_embedding, weights_text
from .quantize import quantize_input

__all__ = ["model_accuracy", "AccuracyReport", "DEFAULT_CALIB_TEXT", "OUTLIER_RATIO",
           "TARGET_COSINE", "SCHEME_TEXT", "layer_tensors", "outlier_channels", "plot_accuracy"]

#: Calibration text when none is given: plain English prose, unrelated to any test sentence.
DEFAULT_CALIB_TEXT = (
    "The old lighthouse stood at the edge of the cliff, and every evening its keeper climbed "
    "the narrow stairs to light the lamp. Ships far out at sea watched for its beam, which "
    "swept across the dark water twice a minute. In the morning he wrote the weather, the "
    "passing ships and the state of the lamp in a thick leather book.")
#: A channel is an outlier when its largest magnitude is this many times the median channel's.
OUTLIER_RATIO = 6.0


#: The layer cosine against float a scheme must reach on every layer to be chosen (issue 13).
TARGET_COSINE = 0.995
#: What each numerics scheme (``LayerConfig.scheme``) does with the activations, for reports
#: (the weights: :func:`~llmloom.sim.model.weights_text`).
SCHEME_TEXT = {
    "static": "int8 activations, one static scale per tensor",
    "dynamic": "an int16 residual stream: the residual stream, norms and GELU output int16 at "
               "static scales; every linear stage's input int8 (BERT: int9, LLaMA: int10) with "
               "a power-of-two scale per token",
}


def layer_tensors(description):
    """The tensors of a layer that have a scale of their own, in dataflow order: its input,
    then each stage's output (not a quant stage's, which is its input's at each row's
    ``2**e``, nor the attention scores inside the attention)."""
    return ("x", *(st.output for st in description.stages if st.kind != "quant"))


def _metrics(approx, ref):
    return {"cosine": cosine(approx, ref),
            "max_abs_error": float(np.max(np.abs(np.asarray(approx) - ref))),
            "sqnr_db": sqnr_db(approx, ref)}


def outlier_channels(t, ratio=OUTLIER_RATIO, top=8):
    """``[(channel, ratio)]`` of the channels of ``t`` (tokens × channels) whose largest
    magnitude is at least ``ratio`` times the median channel's, largest first (at most
    ``top``)."""
    amax = np.max(np.abs(np.asarray(t, np.float64)), axis=0)
    median = float(np.median(amax))
    if median == 0:
        return []
    r = amax / median
    idx = [int(c) for c in np.argsort(-r) if r[c] >= ratio][:top]
    return [(c, float(r[c])) for c in idx]


@dataclasses.dataclass
class AccuracyReport:
    """What :func:`model_accuracy` found. ``tensors`` lists the layer's tensors in dataflow
    order; ``weights`` says how the int8 weights are scaled; ``layers[n]`` holds, per tensor
    name, the metrics of layer n on the judged text
    (``tensors``), the output's (``y``), its outlier channels (``outliers``, from the
    calibration run) and its input and output scales."""

    model: str
    arch: str
    scheme: str
    scheme_text: str
    weights: str
    tensors: tuple
    tokens: int
    calib_tokens: int
    layers: list
    chained: dict
    #: every scheme measured → its worst layer cosine and chained cosines (the chosen one's
    #: details are the report's)
    schemes: dict = dataclasses.field(default_factory=dict)

    @property
    def worst_layer_cosine(self):
        return min(layer["y"]["cosine"] for layer in self.layers)

    def to_json(self):
        """A JSON-ready dict (an infinite SQNR, of a tensor without error, is ``None``)."""
        return _finite(dataclasses.asdict(self))


def _finite(v):
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def model_accuracy(model, text, calib_text=None, *, scheme=None, per_channel=False,
                   progress=None):
    """Measure ``model`` (a folder, ``.safetensors`` file or installed name, or an
    :class:`~llmloom.sim.hf.HFModel`) on ``text``, calibrated on ``calib_text`` (default
    :data:`DEFAULT_CALIB_TEXT`), its weights quantised as ``llmloom embed``'s
    (:func:`~llmloom.sim.model.embed_weights`: int8 codes with a scale per group of 32 inputs,
    GGUF's Q8_0; ``per_channel``: one scale per output channel), in numerics ``scheme``
    (``static`` | ``dynamic``); without one,
    every scheme is measured and the report is the chosen one's: the first (the cheapest in
    hardware) whose every layer reaches :data:`TARGET_COSINE`, else the one whose worst layer
    is best. ``progress``: a callable taking the number of layers done (all schemes counted),
    or None. Returns an :class:`AccuracyReport`."""
    m = load_model(model) if isinstance(model, str) or hasattr(model, "__fspath__") else model
    calib_text = DEFAULT_CALIB_TEXT if calib_text is None else calib_text
    ids, calib_ids = m.tokens(text), m.tokens(calib_text, "calibration text")
    xs, y_float = m.float_inputs(ids)
    xs_calib, _ = m.float_inputs(calib_ids)
    schemes = SCHEMES if scheme is None else (scheme,)
    if not set(schemes) <= set(SCHEMES):
        raise ValueError(f"scheme={scheme!r} is not allowed; allowed: {' | '.join(SCHEMES)}")
    runs = {}
    for k, name in enumerate(schemes):
        done = (lambda n, k=k: progress(k * m.layers + n)) if progress is not None else None
        runs[name] = _measure(m, name, per_channel, ids, calib_ids, xs, y_float, xs_calib,
                              done)
    chosen = next((r for r in runs.values() if r.worst_layer_cosine >= TARGET_COSINE),
                  max(runs.values(), key=lambda r: r.worst_layer_cosine))
    chosen.schemes = {name: {"worst_layer_cosine": r.worst_layer_cosine,
                             **{k: v["cosine"] if isinstance(v, dict) else v
                                for k, v in r.chained.items()}}
                      for name, r in runs.items()}
    return chosen


def _measure(m, scheme, per_channel, ids, calib_ids, xs, y_float, xs_calib, progress):
    rows = len(ids)
    qm = quantize_model(m, calib_ids, seq=rows, scheme=scheme, **embed_weights(per_channel))
    names = layer_tensors(DESCRIPTIONS[m.arch].for_scheme(scheme))
    layers = []
    for n, (cfg, w8, x_scale) in enumerate(qm.layers):
        fw = m.layer(n)
        ref = layer_float_trace(xs[n], fw, m.arch, m.heads, m.eps)
        got, _ = layer_bitexact_trace(cfg, w8, quantize_input(xs[n], x_scale, cfg.width("x")))
        calib_trace = layer_float_trace(xs_calib[n], fw, m.arch, m.heads, m.eps)
        scales = cfg.numbers.scales
        tensors = {name: _metrics(dequantize(got[name], getattr(scales, name)), ref[name])
                   for name in names}
        layers.append({
            "layer": n, "x_scale": x_scale, "y_scale": cfg.y_scale,
            "y": tensors[cfg.description.output], "tensors": tensors,
            "outliers": {name: found for name in names
                         if (found := outlier_channels(calib_trace[name]))},
        })
        if progress is not None:
            progress(n + 1)
    chain_y = run_layers(qm, xs[0])
    chained = {"y": _metrics(chain_y, y_float)}
    if m.arch == "bert":
        chained["embedding_cosine"] = cosine(sentence_embedding(chain_y),
                                             sentence_embedding(y_float))
    return AccuracyReport(model=m.name, arch=m.arch, scheme=scheme,
                          scheme_text=SCHEME_TEXT[scheme], weights=weights_text(qm.layers[0][0]),
                          tensors=names, tokens=rows,
                          calib_tokens=len(calib_ids), layers=layers, chained=chained)


def plot_accuracy(report, path_or_file, fmt="png"):
    """Per tensor SQNR (dB) of every layer, one line per layer, and each layer's output cosine
    (layer by layer) under it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(2, 1, figsize=(9, 7), height_ratios=(3, 2))
    xs = np.arange(len(report.tensors))
    for layer in report.layers:
        db = [min(layer["tensors"][t]["sqnr_db"], 80.0) for t in report.tensors]
        ax.plot(xs, db, marker="o", label=f"layer {layer['layer']}")
    ax.set_xticks(xs, report.tensors)
    ax.set_ylabel("SQNR vs float (dB)")
    ax.set_title(f"{report.model} ({report.arch}, {report.scheme} scheme), {report.tokens} tokens: "
                 "error per tensor")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=3)
    n = [layer["layer"] for layer in report.layers]
    bx.bar(n, [layer["y"]["cosine"] for layer in report.layers], color="tab:blue")
    bx.set_xticks(n, [f"layer {i}" for i in n])
    bx.set_ylabel("output cosine vs float")
    lo = min(layer["y"]["cosine"] for layer in report.layers)
    bx.set_ylim(max(0.0, lo - 0.05), 1.0)
    bx.axhline(0.995, color="tab:red", lw=1, ls="--", label="0.995 target")
    bx.legend(fontsize=8)
    bx.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path_or_file, format=fmt, dpi=110)
    plt.close(fig)
