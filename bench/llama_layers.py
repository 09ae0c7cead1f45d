"""Accuracy of SmolLM2's real layers, one by one: each layer's bit-exact integer output against
float64 on held-out text, calibrated on a different text, in each numerics scheme.

Prints one JSON object to stdout::

    .venv/bin/python bench/llama_layers.py [--layers 0,1,2,3,10,20,29] [--num-layers N]

Every layer is fed the float model's hidden state (the float reference
:class:`~llmloom.sim.golden.llama.LlamaFloat`, float64) of the text; its calibration, of the
calibration text. ``schemes[s].layers[n]`` holds, over the held-out texts, the worst
``cosine`` of the layer's output (``y``, dominated by the residual stream it passes on) and
the worst ``delta_cosine``, of what the layer adds (``y − x``: its attention and SwiGLU),
which is where quantisation error shows; ``rest_cosine`` and ``rest_delta_cosine`` the same
over the tokens after the first (whose massive activation, thousands of times the others',
dominates the whole tensor's figures); ``worst`` is the minimum over the layers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

#: Calibration text, and held-out texts (none a part of it).
CALIB_TEXT = ("The history of the Roman Empire spans many centuries, from the founding of the "
              "city to the fall of Constantinople. Its roads, laws and language shaped Europe "
              "for ever.")
TEXTS = (
    "Photosynthesis is the process by which green plants use sunlight, water and carbon "
    "dioxide to make glucose and oxygen. It takes place mainly in the leaves.",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n",
)

FIGURES = ("cosine", "delta_cosine", "rest_cosine", "rest_delta_cosine")


def main(argv=None):
    from llmloom.hw.layers.config import LayerConfig
    from llmloom.hw.layers.description import SCHEMES
    from llmloom.sim.checkpoint import open_gguf
    from llmloom.sim.golden.layers import cosine, dequantize, layer_bitexact, layer_float
    from llmloom.sim.golden.llama import LlamaFloat
    from llmloom.sim.quantize import calibrate, quantize_input

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default="0,1,2,3,10,20,29",
                    help="comma-separated layer numbers")
    ap.add_argument("--stream-exponent", type=int, default=15,
                    help="E of the residual stream's row exponents (0: one static scale)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    model = open_gguf()
    spec, tok = model.spec, model.tokenizer()
    layers = sorted({int(n) for n in args.layers.split(",")})
    ref = LlamaFloat(model, np.float64, num_layers=max(layers) + 1)

    def hidden(text):
        """Every layer's float input for ``text`` (from position 0)."""
        x, cache, out = ref.embed(tok.encode(text)), ref.new_cache(), []
        for i in range(ref.num_layers):
            out.append(x)
            x = ref.layer(i, x, 0, cache)
        return out

    calib = hidden(CALIB_TEXT)
    held = [hidden(t) for t in TEXTS]
    seq = max(h[0].shape[0] for h in [calib, *held])
    doc = {"model": spec.name, "layers": layers, "stream_exponent": args.stream_exponent,
           "calib_tokens": calib[0].shape[0],
           "tokens": [h[0].shape[0] for h in held], "schemes": {}}
    for scheme in SCHEMES:
        rows = {}
        for n in layers:
            w = ref.layers[n]
            cfg = LayerConfig(arch="llama", d_model=spec.d_model, heads=spec.heads,
                              kv_heads=spec.kv_heads, d_ff=spec.d_ff, seq=seq,
                              rope_base=spec.rope_base, eps=spec.rms_eps, scheme=scheme,
                              stream_exponent=args.stream_exponent)
            layer = calibrate(cfg, w, calib[n])
            c = layer.config
            figs = []
            for h in held:
                x = h[n]
                y, _ = layer_bitexact(c, layer.weights, quantize_input(
                    x, c.x_scale, c.width("x"), c.stream_exponent))
                yq = dequantize(y, c.y_scale)
                yf = layer_float(x, w, "llama", spec.heads, eps=spec.rms_eps,
                                 kv_heads=spec.kv_heads, rope_base=spec.rope_base)
                figs.append((cosine(yq, yf), cosine(yq - x, yf - x),
                             cosine(yq[1:], yf[1:]), cosine(yq[1:] - x[1:], yf[1:] - x[1:])))
            worst = np.min(np.array(figs), axis=0)
            rows[n] = {k: round(float(v), 5) for k, v in zip(FIGURES, worst, strict=True)}
            print(f"{scheme} layer {n}: {rows[n]}", file=sys.stderr, flush=True)
        doc["schemes"][scheme] = {
            "stream": list(c.description.stream) if scheme == "dynamic" else [],
            "layers": rows,
            "worst": {k: min(r[k] for r in rows.values()) for k in FIGURES}}
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
