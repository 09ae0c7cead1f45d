"""Does the softmax's probability precision decide MiniLM's sentence embeddings? bench/embed.py's
measures (embed's weights, the dynamic scheme) with the attention's probabilities as the
bit-exact model has them (10-bit, 1/1023) and with them replaced by exact float ones, or float
ones rounded to 1/255 or 1/1023; and per layer the attention's own SQNR against float (the
float attention of the same int8 q, k, v: the attention's error alone).

Prints one JSON object to stdout::

    .venv/bin/python bench/embed_probs.py [--w8-per-channel]

In the replaced variants every other step is the bit-exact model's: the scores re-quantised
to int8 as the block does, ``P·V`` on the int8 values in float, its output rounded (half to
even) and saturated at ``out_scale`` as the out re-quantiser does. The variants differ only in
how the probabilities round; their spread is what any change of rounding moves the 12
sentences' figures by (measured at c2208c1: the worst cosine 0.9954..0.9960 with Q8_0
groups, discordant pair comparisons 59..72 of 2,145, exact probabilities not the best of
them), while the attention's own SQNR is higher at 1/1023 than at 1/255 in every layer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from unittest import mock

import numpy as np
from embed import SENTENCES, judge, pair_similarities

from llmloom.sim.accuracy import DEFAULT_CALIB_TEXT
from llmloom.sim.golden import layers as golden_layers
from llmloom.sim.golden.attention import attention_float, softmax
from llmloom.sim.golden.gemm import gemm_bitexact
from llmloom.sim.golden.layers import dequantize, layer_bitexact_trace
from llmloom.sim.golden.requant import requant_bitexact
from llmloom.sim.hf import load_model
from llmloom.sim.llm import kv_positions
from llmloom.sim.model import embed_weights, quantize_model, sentence_embedding
from llmloom.sim.quantize import quantize_input

#: The probabilities of each variant: None is the bit-exact model's; else the levels float
#: probabilities are rounded to (0: exact).
VARIANTS = {"bitexact": None, "float": 0, "float_1/255": 255, "float_1/1023": 1023}


def attention_with_probs(levels):
    """An ``attention_bitexact`` (bidirectional) whose probabilities are float, rounded to
    ``1/levels`` unless ``levels`` is 0."""
    def attention(cfg, q, k, v, q_offset=0):
        ctx, dh, lim = k.shape[0], cfg.d_head, 2 ** (cfg.out_width - 1)
        kp = np.zeros((cfg.seq, k.shape[1]), np.int64)
        kp[:ctx] = k
        out = np.empty((q.shape[0], cfg.d_model), np.int64)
        for h in range(cfg.heads):
            c = slice(h * dh, (h + 1) * dh)
            s = requant_bitexact(cfg.score_requant, gemm_bitexact(cfg.qk_gemm, q[:, c],
                                                                  kp[:, c].T))[:, :ctx]
            p = softmax(s * cfg.score_scale_value)
            if levels:
                p = np.rint(p * levels) / levels
            y = p @ (v[:, c] * cfg.v_scale) / cfg.out_scale_value
            out[:, c] = np.clip(np.rint(y), -lim, lim - 1)
        return out
    return attention


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--w8-per-channel", action="store_true")
    args = ap.parse_args(argv)
    m = load_model("all-minilm-l6-v2")
    ids = [m.tokens(s) for s in SENTENCES]
    seq = kv_positions(max(map(len, ids)), m.positions, "auto")
    qm = quantize_model(m, m.tokens(DEFAULT_CALIB_TEXT, "calibration text"), seq=seq,
                        scheme="dynamic", **embed_weights(args.w8_per_channel))
    inputs = [m.float_inputs(i) for i in ids]
    e_float = [sentence_embedding(y) for _, y in inputs]
    doc = {"weights": embed_weights(args.w8_per_channel), "variants": {}}
    for name, levels in VARIANTS.items():
        patch = (contextlib.nullcontext() if levels is None else
                 mock.patch.object(golden_layers, "attention_bitexact",
                                   attention_with_probs(levels)))
        err, ref = np.zeros(len(qm.layers)), np.zeros(len(qm.layers))
        e_int = []
        with patch:
            for xs, _ in inputs:
                x = xs[0]
                for n, (cfg, w, x_scale) in enumerate(qm.layers):
                    t, _ = layer_bitexact_trace(cfg, w, quantize_input(x, x_scale,
                                                                        cfg.width("x")))
                    a = cfg.attention
                    y = attention_float(a, t["q"], t["k"], t["v"])
                    err[n] += np.sum((t["attn"] * a.out_scale_value - y) ** 2)
                    ref[n] += np.sum(y ** 2)
                    x = dequantize(t[cfg.description.output], cfg.y_scale)
                e_int.append(sentence_embedding(x))
        r = judge(e_int, e_float, pair_similarities(e_float))
        doc["variants"][name] = {
            "attention_sqnr_db": [round(10 * math.log10(s / e), 2) for s, e in
                                  zip(ref, err, strict=True)],
            "embedding_cosine": {k: r["embedding_cosine"][k] for k in ("min", "mean")},
            "discordant": r["pairs"]["discordant"], "spearman": r["pairs"]["spearman"],
            "order_resolution": r["pairs"]["order_resolution"]}
        print(f"{name}: cosine min {r['embedding_cosine']['min']:.5f}, "
              f"{r['pairs']['discordant']} discordant", file=sys.stderr)
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
