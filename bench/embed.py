"""Sentence-embedding benchmark: a BERT checkpoint's bit-exact integer layers, chained as the
accelerator runs them, against float64, on held-out sentences (issue 14's MiniLM target).

Prints one JSON object to stdout::

    .venv/bin/python bench/embed.py [--model all-minilm-l6-v2] [--calib-text TEXT]

Every layer is calibrated once per scheme on ``--calib-text`` (default
:data:`llmloom.sim.accuracy.DEFAULT_CALIB_TEXT`, none of the sentences), then each sentence runs
through all the integer layers end to end (``llmloom embed``'s path: the host re-quantises
each layer's output at the next layer's input scale) and is pooled as sentence-transformers
does. The layers' ``seq`` is ``embed``'s (the next power of two from 16 holding the longest
sentence). ``schemes`` holds, per numerics scheme (``LayerConfig.scheme``) with ``embed``'s
weights (:func:`llmloom.sim.model.embed_weights`: int8 codes with a scale per group of 32
inputs, GGUF's Q8_0, as SmolLM2's W8A8), and for ``dynamic_per_channel`` (the dynamic scheme
with one weight scale per output channel, ``embed --w8-per-channel``), its ``fields`` and:

* ``embedding_cosine``: ``min`` and ``mean`` over the sentences of the embedding's cosine
  against float's, and ``per_sentence``;
* ``pairs``: the cosine similarity of every pair of sentences, integer against float:
  ``spearman`` and ``kendall`` (rank agreement of the integer pair similarities with float's),
  ``same_order`` (the pairs sorted by similarity come out in the same order),
  ``discordant`` (how many of the ``comparisons`` of two pairs the integer model orders
  otherwise than float), ``order_resolution`` (the largest float gap between two pairs it
  orders otherwise: any two pairs further apart keep float's order), ``max_abs_error`` (of a
  pair's similarity), ``nearest_same`` (sentences whose most similar other sentence is
  float's) and ``paraphrases_first`` (every paraphrase pair more similar than every
  unrelated pair, in the integer model);
* ``meets_cosine_target`` (``embedding_cosine.min ≥ targets.embedding_cosine``) and
  ``meets_target`` (that and ``same_order``).

``float_min_gap`` is the smallest gap between two pair similarities in float: the strict order
holds only where every pair similarity is closer to float's than half of it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

import numpy as np

from llmloom.sim.accuracy import DEFAULT_CALIB_TEXT
from llmloom.sim.golden.layers import cosine
from llmloom.sim.hf import load_model
from llmloom.sim.llm import kv_positions
from llmloom.sim.model import embed_weights, quantize_model, run_layers, sentence_embedding

#: Held-out sentences: none of them is (or is part of) the calibration text. Consecutive
#: entries of :data:`PARAPHRASES` say the same thing in other words; the rest are unrelated.
SENTENCES = (
    "A man is playing a guitar on the street.",
    "Someone plays the guitar outside on the sidewalk.",
    "What is the capital city of France?",
    "Which city is the capital of France?",
    "She finished the marathon in just under four hours.",
    "The runner completed the 42-kilometre race in less than four hours.",
    "The stock market fell sharply after the central bank raised interest rates.",
    "Shares dropped steeply when the interest rate increase was announced.",
    "The weather today is sunny with a light breeze from the west.",
    "Spatial FPGA accelerators stream activations between operators on chip.",
    "My cat sleeps on the windowsill all afternoon.",
    "Add two cups of flour and stir until the dough is smooth.",
)
#: Index pairs of :data:`SENTENCES` that are paraphrases.
PARAPHRASES = ((0, 1), (2, 3), (4, 5), (6, 7))
TARGET_COSINE = 0.995


def ranks(v):
    """Rank of each value (0 = smallest; no ties among real-valued similarities)."""
    r = np.empty(len(v))
    r[np.argsort(v, kind="stable")] = np.arange(len(v))
    return r


def spearman(a, b):
    """Spearman's rank correlation of ``a`` and ``b``."""
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def kendall(a, b):
    """Kendall's tau-a: (concordant − discordant) / all pairs of ``a`` and ``b``."""
    a, b = np.asarray(a), np.asarray(b)
    i, j = np.triu_indices(len(a), 1)
    return float(np.mean(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])))


def pair_similarities(embeddings):
    """``{(i, j): cosine}`` of every pair of rows."""
    return {(i, j): float(embeddings[i] @ embeddings[j])
            for i, j in itertools.combinations(range(len(embeddings)), 2)}


def nearest(sims, a, n):
    """The sentence of ``0..n-1`` most similar to sentence ``a`` by pair similarities ``sims``."""
    return max((b for b in range(n) if b != a), key=lambda b: sims[min(a, b), max(a, b)])


def judge(e_int, e_float, sim_float):
    """The integer embeddings ``e_int`` against float's ``e_float`` (whose pair similarities
    are ``sim_float``): the ``embedding_cosine``, ``pairs`` and ``meets_*`` entries."""
    cos = [cosine(a, b) for a, b in zip(e_int, e_float, strict=True)]
    pairs = list(sim_float)
    f = np.array([sim_float[p] for p in pairs])
    unrelated = [p for p in pairs if p not in PARAPHRASES]
    sim_int = pair_similarities(e_int)
    q = np.array([sim_int[p] for p in pairs])
    same = bool(np.array_equal(np.argsort(q, kind="stable"), np.argsort(f, kind="stable")))
    i, j = np.triu_indices(len(pairs), 1)
    disc = np.sign(f[i] - f[j]) != np.sign(q[i] - q[j])
    n = len(e_int)
    return {
        "embedding_cosine": {"min": round(min(cos), 5), "mean": round(float(np.mean(cos)), 5),
                             "per_sentence": [round(c, 5) for c in cos]},
        "pairs": {"count": len(pairs), "spearman": round(spearman(q, f), 5),
                  "kendall": round(kendall(q, f), 5), "same_order": same,
                  "comparisons": len(i), "discordant": int(disc.sum()),
                  "order_resolution": round(float(np.max(np.abs(f[i] - f[j])[disc],
                                                         initial=0.0)), 5),
                  "nearest_same": sum(nearest(sim_int, a, n) == nearest(sim_float, a, n)
                                      for a in range(n)),
                  "max_abs_error": round(float(np.max(np.abs(q - f))), 5),
                  "paraphrases_first": (min(sim_int[p] for p in PARAPHRASES)
                                        > max(sim_int[p] for p in unrelated))},
        "meets_cosine_target": min(cos) >= TARGET_COSINE,
        "meets_target": min(cos) >= TARGET_COSINE and same}


def main(argv=None):
    from llmloom.hw.layers.description import SCHEMES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all-minilm-l6-v2")
    ap.add_argument("--calib-text", default=DEFAULT_CALIB_TEXT)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    m = load_model(args.model)
    if m.arch != "bert":
        ap.error(f"model {args.model} is a {m.arch} model; a sentence embedding needs BERT")
    ids = [m.tokens(s) for s in SENTENCES]
    xs0, e_float = [], []
    for i in ids:
        xs, y = m.float_inputs(i)
        xs0.append(xs[0])
        e_float.append(sentence_embedding(y))
    sim_float = pair_similarities(e_float)
    pairs = list(sim_float)
    f = np.array([sim_float[p] for p in pairs])
    unrelated = [p for p in pairs if p not in PARAPHRASES]
    doc = {"model": args.model, "sentences": list(SENTENCES),
           "tokens": [len(i) for i in ids], "paraphrases": [list(p) for p in PARAPHRASES],
           "targets": {"embedding_cosine": TARGET_COSINE, "same_order": True},
           "float_paraphrases_first": (min(sim_float[p] for p in PARAPHRASES)
                                       > max(sim_float[p] for p in unrelated)),
           "float_min_gap": round(float(np.min(np.diff(np.sort(f)))), 6),
           "schemes": {}}
    calib = m.tokens(args.calib_text, "calibration text")
    seq = kv_positions(max(map(len, ids)), m.positions, "auto")
    doc["seq"] = seq
    variants = {scheme: {"scheme": scheme, **embed_weights()} for scheme in SCHEMES}
    variants["dynamic_per_channel"] = {"scheme": "dynamic", **embed_weights(per_channel=True)}
    for name, fields in variants.items():
        t = time.perf_counter()
        qm = quantize_model(m, calib, seq=seq, **fields)
        e_int = [sentence_embedding(run_layers(qm, x)) for x in xs0]
        doc["calib_tokens"] = qm.calib_tokens
        doc["schemes"][name] = {"fields": fields, **judge(e_int, e_float, sim_float),
                                "wall_s": round(time.perf_counter() - t, 1)}
        r = doc["schemes"][name]
        print(f"{name}: embedding cosine min {r['embedding_cosine']['min']:.4f}, "
              f"{r['pairs']['discordant']} of {r['pairs']['comparisons']} pair comparisons "
              "discordant", file=sys.stderr)
    doc["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
