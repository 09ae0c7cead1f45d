"""Accuracy benchmark: a real checkpoint's bit-exact integer layers against float64, on held-out
sentences, calibrated on a different text (issue 13's targets).

Prints one JSON object to stdout::

    .venv/bin/python bench/accuracy.py [--model all-minilm-l6-v2] [--calib-text TEXT]

``schemes`` holds, per numerics scheme (``static``, ``dynamic``: ``LayerConfig.scheme``) with
``llmloom accuracy``'s weights (those of ``embed``, :func:`llmloom.sim.model.embed_weights`:
int8 codes with a scale per group of 32 inputs, GGUF's Q8_0), and for ``dynamic_per_channel``
(the dynamic scheme with one weight scale per output channel, ``--w8-per-channel``), its
``weights`` and ``worst_layer_cosine`` (the minimum over the sentences of each layer's output
cosine, each layer fed the float input), ``worst_embedding_cosine`` (BERT: the integer layers
chained, the sentence embedding against float's), ``meets_target`` (every layer ≥
``target_layer_cosine``, the issue's 0.995) and ``sentences[]`` with each sentence's figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from llmloom.sim.accuracy import DEFAULT_CALIB_TEXT, model_accuracy
from llmloom.sim.hf import load_model

#: Held-out sentences: none of them is (or is part of) the calibration text.
SENTENCES = (
    "A man is playing a guitar on the street.",
    "What is the capital city of France?",
    "Spatial FPGA accelerators stream activations between operators on chip.",
    "The weather today is sunny with a light breeze from the west, and temperatures around "
    "21 degrees.",
    "She finished the marathon in just under four hours.",
)
TARGET = 0.995


def main(argv=None):
    from llmloom.hw.layers.description import SCHEMES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all-minilm-l6-v2")
    ap.add_argument("--calib-text", default=DEFAULT_CALIB_TEXT)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    m = load_model(args.model)
    doc = {"model": args.model, "arch": m.arch, "target_layer_cosine": TARGET, "schemes": {}}
    variants = {scheme: (scheme, False) for scheme in SCHEMES}
    variants["dynamic_per_channel"] = ("dynamic", True)
    for name, (scheme, per_channel) in variants.items():
        runs = []
        for text in SENTENCES:
            r = model_accuracy(m, text, args.calib_text, scheme=scheme, per_channel=per_channel)
            runs.append({"text": text, "tokens": r.tokens,
                         "layer_cosine": [layer["y"]["cosine"] for layer in r.layers],
                         "chained": r.chained})
            print(f"{name} {text[:40]!r}: worst layer cosine {r.worst_layer_cosine:.4f}",
                  file=sys.stderr)
        worst = [min(run["layer_cosine"][n] for run in runs) for n in range(m.layers)]
        doc["calib_tokens"] = r.calib_tokens
        doc["schemes"][name] = {
            "text": r.scheme_text, "weights": r.weights, "worst_layer_cosine": worst,
            "meets_target": min(worst) >= TARGET,
            "worst_embedding_cosine": min(run["chained"].get("embedding_cosine", 1.0)
                                          for run in runs),
            "sentences": runs}
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
