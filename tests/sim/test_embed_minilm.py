"""Issue 14's MiniLM target on the real all-MiniLM-L6-v2 weights: sentence embeddings through
all six bit-exact integer layers chained (as ``llmloom embed`` runs them, its weights in Q8_0's
groups of 32: ``embed_weights``), calibrated on another text, against float64. The benchmark
with more sentences is ``bench/embed.py``."""

import itertools

import numpy as np
import pytest

from llmloom.sim.accuracy import DEFAULT_CALIB_TEXT
from llmloom.sim.golden.layers import cosine
from llmloom.sim.hf import load_model
from llmloom.sim.model import embed_weights, quantize_model, run_layers, sentence_embedding

#: Held-out sentences (neither the calibration text nor bench/embed.py's): three paraphrase
#: pairs, (0, 1), (2, 3), (4, 5), and two sentences unrelated to any other.
SENTENCES = (
    "The committee will meet next Tuesday to discuss the budget.",
    "Next Tuesday the board gathers to talk about spending.",
    "Our flight was delayed by three hours because of fog.",
    "Thick fog held the plane on the ground for three hours.",
    "How many legs does a spider have?",
    "What is the number of legs on a spider?",
    "Photosynthesis converts sunlight, water and carbon dioxide into sugar.",
    "I would like a cup of black coffee, please.",
)
PARAPHRASES = {(0, 1), (2, 3), (4, 5)}


@pytest.fixture(scope="module")
def embeddings():
    m = load_model("all-minilm-l6-v2")
    ids = [m.tokens(s) for s in SENTENCES]
    qm = quantize_model(m, m.tokens(DEFAULT_CALIB_TEXT), seq=max(map(len, ids)),
                        scheme="dynamic", **embed_weights())
    got, want = [], []
    for i in ids:
        xs, y = m.float_inputs(i)
        got.append(sentence_embedding(run_layers(qm, xs[0])))
        want.append(sentence_embedding(y))
    return got, want


def _pairs(e):
    return {p: float(e[p[0]] @ e[p[1]]) for p in itertools.combinations(range(len(e)), 2)}


def test_every_held_out_embedding_is_within_cosine_0995_of_float(embeddings):
    got, want = embeddings
    cos = [cosine(a, b) for a, b in zip(got, want, strict=True)]
    assert min(cos) >= 0.995, cos


def test_pair_similarities_keep_float_order_down_to_their_measured_resolution(embeddings):
    # The strict order of every pair is not held: float's pair similarities lie as little as
    # ~1e-4 apart, and the integer model moves each by up to ~0.02 (bench/embed.py measures
    # the order it keeps: pairs further apart than ~0.03 in float are never swapped). What
    # a user of the embedding sees is held here.
    got, want = embeddings
    s_int, s_float = _pairs(got), _pairs(want)
    pairs = list(s_float)
    f = np.array([s_float[p] for p in pairs])
    q = np.array([s_int[p] for p in pairs])
    assert np.max(np.abs(q - f)) < 0.03
    i, j = np.triu_indices(len(pairs), 1)
    far = np.abs(f[i] - f[j]) > 0.05
    assert np.array_equal(np.sign(f[i] - f[j])[far], np.sign(q[i] - q[j])[far])
    # every paraphrase pair is more similar than every unrelated pair, in both models, and
    # the paraphrases among themselves keep float's order
    unrelated = [p for p in pairs if p not in PARAPHRASES]
    for s in (s_float, s_int):
        assert min(s[p] for p in PARAPHRASES) > max(s[p] for p in unrelated)
    assert sorted(PARAPHRASES, key=s_int.get) == sorted(PARAPHRASES, key=s_float.get)
    # each paraphrased sentence's nearest sentence is its paraphrase, as in float
    for a, b in PARAPHRASES:
        for x, y in ((a, b), (b, a)):
            assert max((c for c in range(len(got)) if c != x),
                       key=lambda c: s_int[min(x, c), max(x, c)]) == y
