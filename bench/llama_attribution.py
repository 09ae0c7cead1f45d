"""Where SmolLM2's accuracy goes: next-token agreement and perplexity against float on
bench/generate.py's held-out texts when one quantised tensor (or weight) is left
exact and every other one is quantised.

Prints one JSON object to stdout::

    .venv/bin/python bench/llama_attribution.py [--quant W8A8] [--alone] [--max-tokens T]
        [--num-layers N] [--only NAME,NAME+NAME]

Each entry holds the pooled ``agreement`` and ``perplexity_ratio`` (as bench/generate.py's)
and ``kl``, the mean KL divergence of the model's next-token distribution from float's: over
408 tokens agreement and perplexity move by a point or two with any change (a few
near-tied or unlikely tokens decide them), the KL divergence is smooth and nearly additive, so
it is the attribution's measure. Progress lines go to stderr.

The model is a fake-quantised float model of the calibrated layers (each tensor rounded to its
calibrated scale, width and row exponents, as the bit-exact model keeps it: the residual stream's
block floating point per token, the quant stages' per-row exponents, the clipped SiLU input, the
10-bit probabilities at 1/1023, each linear stage's dequantised int8 or W4 weights) whose blocks
compute in float (no integer rsqrt, exp table or re-quantiser multipliers: ``none`` beside
``bitexact`` shows what those cost). Each entry leaves one of them exact (``--alone``: the one
quantised, every other exact): a tensor's name (``score`` and ``prob`` the attention's internals),
``w_<stage>`` a linear stage's weights (exact: the smoothed float weights).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from generate import TEXTS

from llmloom.hw.blocks.softmax import OUT_LEVELS
from llmloom.hw.layers.config import DESCRIPTIONS, WEIGHT_GROUP
from llmloom.sim.golden.dynquant import row_exponents
from llmloom.sim.golden.layers import dequantize, layer_float_trace, linear_acc
from llmloom.sim.golden.llama import (
    mean_kl,
    next_token_agreement,
    perplexity,
    rms_norm,
    rope_adjacent,
    silu,
)
from llmloom.sim.llm import (
    CALIB_TEXT,
        host_logits,
    quantize_llama,
    teacher_forced,
    tokenizer_of,
)
from llmloom.sim.quantize import SMOOTHING, quantize_input, smooth_weights


def _fq(t, scale, bits):
    q = (1 << (bits - 1)) - 1
    return np.clip(np.rint(t / scale), -q - 1, q) * scale


def _fq_rows(t, scale, bits, e_max):
    return dequantize(quantize_input(t, scale, bits, e_max), scale)


def _weights(cfg, weights, name):
    """Linear stage ``name``'s real weight matrix (in × out) as the engine applies it."""
    d_in = weights.matrix(name).shape[0]
    k = 128
    acc = linear_acc(cfg, weights, name, np.eye(d_in, dtype=np.int64) * k)
    return acc.astype(np.float64) / k * np.asarray(cfg.numbers.params(name).w_scale)


class FakeQuant:
    """The calibrated layers of a QuantizedLlama in fake-quantised float (see the module
    text); ``exact``: the names left unrounded."""

    def __init__(self, qm):
        self.qm, self.smoothed = qm, None
        self.w = [{st.name: _weights(cfg, w, st.name)
                   for st in cfg.description.of_kind("linear")} for cfg, w, _ in qm.layers]

    def layer(self, n, x, exact):
        cfg, _, x_scale = self.qm.layers[n]
        sc, desc, spec = cfg.numbers.scales, cfg.description, self.qm.spec
        ex = cfg.stream_exponent

        def fq(name, t, scale=None):
            if name in exact:
                return t
            scale = getattr(sc, name) if scale is None else scale
            if cfg.row_exponent(name):
                return _fq_rows(t, scale, cfg.width(name), ex)
            return _fq(t, scale, cfg.width(name))

        t = {"x": fq("x", x, x_scale)}
        for st in desc.stages:
            a = [t[i] for i in st.inputs]
            if st.kind == "norm":
                g = np.asarray(getattr(cfg.numbers, st.params).gamma)
                out = rms_norm(a[0], g, cfg.eps_value)
            elif st.kind == "quant":
                base = desc.base(st.output)
                if st.output in exact:
                    out = a[0]
                else:
                    s = getattr(sc, base)
                    v = np.rint(a[0] / s).astype(np.int64)
                    e = row_exponents(cfg.stage_config(st.name), v)
                    out = _fq(a[0] / np.exp2(e)[:, None], s, desc.narrow) * np.exp2(e)[:, None]
                t[st.output] = out
                continue
            elif st.kind == "linear":
                w = self.w[n][st.name] if f"w_{st.name}" not in exact else \
                    self.float_w(n, st.name)
                out = a[0] @ w
            elif st.kind == "rope":
                rows, width = a[0].shape
                out = rope_adjacent(a[0].reshape(rows, width // spec.d_head, spec.d_head),
                                    np.arange(rows), cfg.rope_base).reshape(rows, width)
            elif st.kind == "attention":
                out = self.attention(cfg, *a, exact)
            elif st.kind == "act":
                out = silu(a[0])
            elif st.kind == "mul":
                out = a[0] * a[1]
            else:
                out = a[0] + a[1]
            t[st.output] = fq(st.output, out)
        return t[desc.output]

    def float_w(self, n, name):
        """The smoothed float weights that linear stage ``name``'s quantised ones stand for
        (the smoothing redone on the calibration text, as :func:`calibrate` does it)."""
        if self.smoothed is None:
            self.smoothed = self._smooth()
        st = self.qm.layers[n][0].description[name]
        return np.asarray(self.smoothed[n][st.weight], np.float64)

    def _smooth(self):
        fm, out = self.qm.host, []
        ids = tokenizer_of().encode(CALIB_TEXT)
        x, cache = fm.embed(ids), fm.new_cache()
        for n, (cfg, _, _) in enumerate(self.qm.layers):
            w = fm.layers[n]
            trace = layer_float_trace(x, w, cfg.arch, cfg.heads, cfg.eps,
                                      kv_heads=cfg.kv_heads_value, rope_base=cfg.rope_base)
            out.append(smooth_weights(DESCRIPTIONS[cfg.arch], w, trace, SMOOTHING[cfg.arch],
                                      group=WEIGHT_GROUP if cfg.weight_bits == 4 else 1))
            x = fm.layer(n, x, 0, cache)
        return out

    def attention(self, cfg, q, k, v, exact):
        sc, dh = cfg.numbers.scales, self.qm.spec.d_head
        heads, group = cfg.heads, cfg.heads // cfg.kv_heads_value
        rows = q.shape[0]
        mask = np.arange(rows)[None, :] > np.arange(rows)[:, None]
        out = np.empty_like(q)
        for h in range(heads):
            cols, kv = slice(h * dh, (h + 1) * dh), slice(h // group * dh, (h // group + 1) * dh)
            s = q[:, cols] @ k[:, kv].T / np.sqrt(dh)
            if "score" not in exact:
                s = _fq(s, sc.score, 8)
            s = np.where(mask, -np.inf, s)
            p = np.exp(s - s.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            if "prob" not in exact:
                p = np.rint(p * OUT_LEVELS) / OUT_LEVELS
            out[:, cols] = p @ v[:, kv]
        return out

    def logits(self, ids, exact=frozenset()):
        x = self.qm.host.embed(ids).astype(np.float64)
        for n in range(self.qm.num_layers):
            x = self.layer(n, x, exact)
        return host_logits(self.qm.host, x)


def _pooled(runs):
    """Agreement and perplexity ratio pooled over texts: ``runs`` [(logits, ref, ids)]."""
    pos = agree = pred = lp = lpf = kl = 0.0
    for logits, ref, ids in runs:
        kl += mean_kl(logits, ref) * len(ids)
        n = len(ids) - 1
        pos += len(ids)
        agree += next_token_agreement(logits, ref) * len(ids)
        pred += n
        lp += n * np.log(perplexity(logits, ids))
        lpf += n * np.log(perplexity(ref, ids))
    return {"kl": round(kl / pos, 5), "agreement": round(agree / pos, 4),
            "perplexity_ratio": round(
        float(np.exp((lp - lpf) / pred)), 4)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quant", default="W8A8")
    ap.add_argument("--max-tokens", type=int)
    ap.add_argument("--num-layers", type=int)
    ap.add_argument("--alone", action="store_true",
                    help="each name quantised alone, every other exact")
    ap.add_argument("--only", help="comma-separated names the entries range over (default every "
                    "tensor and weight; with --alone, the names not given stay quantised)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    tok = tokenizer_of()
    texts = {k: tok.encode(v)[:args.max_tokens] for k, v in TEXTS.items()}
    qm = quantize_llama(None, args.num_layers, args.quant, "dynamic")
    refs = {}
    bitexact = []
    for name, ids in texts.items():
        logits, ref = teacher_forced(qm, ids)
        refs[name] = ref
        bitexact.append((logits, ref, ids))
    doc = {"quant": args.quant, "tokens": sum(map(len, texts.values())),
           "bitexact": _pooled(bitexact)}
    fq = FakeQuant(qm)
    cfg = qm.layers[0][0]
    names = [*cfg.description.tensors, "score", "prob"]
    names = [n for n in names if n != cfg.description.output] + \
        [f"w_{st}" for st in cfg.linears]
    if args.only:
        names = [n.strip() for n in args.only.split(",")]
    doc["tensors"] = {}
    entries = ["none", *names, "all_but_weights", "all"]
    if args.alone:
        entries = [f"only_{n}" for n in names]
    for exact in entries:
        if exact.startswith("only_"):
            ex = frozenset(names) - {exact[5:]}
        elif exact == "all_but_weights":
            ex = frozenset(n for n in names if not n.startswith("w_"))
        elif exact == "all":
            ex = frozenset(names)
        else:
            ex = frozenset() if exact == "none" else frozenset(exact.split("+"))
        runs = [(fq.logits(ids, ex), refs[k], ids) for k, ids in texts.items()]
        doc["tensors"][exact] = _pooled(runs)
        print(exact, doc["tensors"][exact], flush=True, file=sys.stderr)
    doc["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
