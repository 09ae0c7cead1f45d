"""The float layer references against a second, loop-by-loop formulation of the same maths."""

from __future__ import annotations

import math

import numpy as np

from llmloom.sim.golden.layers import bert_layer_float, gpt2_block_float


def _weights(rng, d, f):
    w = {n: rng.normal(scale=0.3, size=(d, d)) for n in ("wq", "wk", "wv", "wo")}
    w |= {n: rng.normal(scale=0.1, size=d) for n in ("bq", "bk", "bv", "bo", "b2", "ln1_b",
                                                     "ln2_b")}
    w |= {"ln1_g": 1 + rng.normal(scale=0.1, size=d), "ln2_g": 1 + rng.normal(scale=0.1, size=d),
          "w1": rng.normal(scale=0.3, size=(d, f)), "b1": rng.normal(scale=0.1, size=f),
          "w2": rng.normal(scale=0.3, size=(f, d))}
    return w


def _ln(v, g, b, eps):
    mu = sum(v) / len(v)
    var = sum((x - mu) ** 2 for x in v) / len(v)
    return np.array([(x - mu) / math.sqrt(var + eps) * gi + bi
                     for x, gi, bi in zip(v, g, b, strict=True)])


def _attn_token_by_token(q, k, v, heads, causal):
    l, d = q.shape
    dh = d // heads
    out = np.zeros((l, d))
    for h in range(heads):
        for r in range(l):
            keys = range(r + 1) if causal else range(l)
            s = [sum(q[r, h * dh + i] * k[j, h * dh + i] for i in range(dh)) / math.sqrt(dh)
                 for j in keys]
            mx = max(s)
            e = [math.exp(x - mx) for x in s]
            for i in range(dh):
                out[r, h * dh + i] = sum(e[n] * v[j, h * dh + i] for n, j in enumerate(keys)) \
                    / sum(e)
    return out


def test_gpt2_block(rng):
    d, f, heads, l = 8, 16, 2, 5
    w = _weights(rng, d, f)
    x = rng.normal(size=(l, d))
    h = np.array([_ln(r, w["ln1_g"], w["ln1_b"], 1e-5) for r in x])
    a = _attn_token_by_token(h @ w["wq"] + w["bq"], h @ w["wk"] + w["bk"],
                             h @ w["wv"] + w["bv"], heads, causal=True)
    x1 = x + a @ w["wo"] + w["bo"]
    h2 = np.array([_ln(r, w["ln2_g"], w["ln2_b"], 1e-5) for r in x1])
    u = h2 @ w["w1"] + w["b1"]
    gelu = 0.5 * u * (1 + np.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u ** 3)))
    want = x1 + gelu @ w["w2"] + w["b2"]
    np.testing.assert_allclose(gpt2_block_float(x, w, heads), want, rtol=1e-10, atol=1e-10)


def test_gpt2_block_is_causal(rng):
    d, f, heads = 8, 16, 2
    w = _weights(rng, d, f)
    x = rng.normal(size=(6, d))
    full = gpt2_block_float(x, w, heads)
    np.testing.assert_allclose(gpt2_block_float(x[:4], w, heads), full[:4], atol=1e-12)


def test_bert_layer(rng):
    d, f, heads, l = 8, 16, 4, 4
    w = _weights(rng, d, f)
    x = rng.normal(size=(l, d))
    a = _attn_token_by_token(x @ w["wq"] + w["bq"], x @ w["wk"] + w["bk"],
                             x @ w["wv"] + w["bv"], heads, causal=False)
    x1 = np.array([_ln(r, w["ln1_g"], w["ln1_b"], 1e-12) for r in x + a @ w["wo"] + w["bo"]])
    u = x1 @ w["w1"] + w["b1"]
    gelu = np.array([[0.5 * t * (1 + math.erf(t / math.sqrt(2))) for t in row] for row in u])
    want = np.array([_ln(r, w["ln2_g"], w["ln2_b"], 1e-12)
                     for r in x1 + gelu @ w["w2"] + w["b2"]])
    np.testing.assert_allclose(bert_layer_float(x, w, heads), want, rtol=1e-9, atol=1e-9)
