"""Accuracy benchmark: a real checkpoint's bit-exact integer layers against float64, on held-out
sentences, calibrated on a different text (issue 13's targets).

Prints one JSON object to stdout::

    .venv/bin/python bench/accuracy.py [--model all-minilm-l6-v2] [--calib-text TEXT]

``sentences[]`` holds, per judged sentence, each layer's output cosine (each layer fed the float
input) and the chained result (the integer layers end to end: last hidden state, and for BERT
the sentence embedding); ``worst_layer_cosine`` is the minimum over sentences of each layer's
cosine, ``target_layer_cosine`` the issue's target (0.995), and ``scheme`` the quantisation
measured.
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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all-minilm-l6-v2")
    ap.add_argument("--calib-text", default=DEFAULT_CALIB_TEXT)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    m = load_model(args.model)
    runs = []
    for text in SENTENCES:
        r = model_accuracy(m, text, args.calib_text)
        runs.append({"text": text, "tokens": r.tokens,
                     "layer_cosine": [layer["y"]["cosine"] for layer in r.layers],
                     "chained": r.chained})
        print(f"{text[:40]!r}: worst layer cosine {r.worst_layer_cosine:.4f}", file=sys.stderr)
    worst = [min(run["layer_cosine"][n] for run in runs) for n in range(m.layers)]
    doc = {"model": args.model, "arch": m.arch, "scheme": r.scheme,
           "calib_tokens": r.calib_tokens, "target_layer_cosine": TARGET,
           "worst_layer_cosine": worst, "meets_target": min(worst) >= TARGET,
           "worst_embedding_cosine": min(run["chained"].get("embedding_cosine", 1.0)
                                         for run in runs),
           "sentences": runs, "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
