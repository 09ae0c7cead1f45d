"""Generation benchmark: SmolLM2 through the accelerator's bit-exact layers against float, and
tokens/s projected on a U280-class design (issue 14's targets).

Prints one JSON object to stdout::

    .venv/bin/python bench/generate.py [--num-layers N] [--max-tokens T] [--gguf FILE]

``schemes`` holds, per numerics scheme (``LayerConfig.scheme``), at W8A8, over a held-out text
run teacher-forced (one prefill, every position's next token predicted): ``agreement`` (share
of positions whose greedy next token equals the float model's), ``perplexity`` and
``float_perplexity`` (of the text's own next tokens), ``perplexity_ratio``, ``meets_target``
(agreement ≥ 95 %, perplexity within 5 %) and ``input_steps`` (per layer, the median token's
RMS on the judged text in steps of the layer's input scale: the resolution the residual stream
leaves ordinary tokens beside the first token's massive activation; with row exponents,
``stream_exponent`` > 0, the first token takes ``e > 0`` and the scale is the median row's).
Each layer is calibrated on :data:`llmloom.sim.llm.CALIB_TEXT`, not the judged text.
``projection`` holds, for SmolLM2-135M and GPT-2 medium on perf's U280 design, prefill and
decode tokens/s and the decode's share of time the memory bus streams weights. W4A8 is not
measured: the layer holds no 4-bit weights yet.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from llmloom.flows.model_cli import projection
from llmloom.sim.golden.llama import next_token_agreement, perplexity
from llmloom.sim.llm import STREAM_EXPONENT, quantize_llama, teacher_forced, tokenizer_of

#: Held-out text: encyclopaedic prose, none of it in the calibration text.
TEXT = (
    "The Amazon rainforest covers much of the Amazon basin of South America. The basin "
    "encompasses seven million square kilometres, of which five and a half million are covered "
    "by the rainforest. The region includes territory belonging to nine nations and 3,344 "
    "indigenous territories. The majority of the forest is contained within Brazil, with 60% "
    "of the rainforest, followed by Peru with 13% and Colombia with 10%. Rainforests have "
    "been in decline in recent decades, mostly because of deforestation for cattle ranching "
    "and farming. Scientists study the forest to understand how it stores carbon, how rain "
    "falls over it, and how the many species that live there depend on one another.")
TARGET_AGREEMENT = 0.95
TARGET_PPL_RATIO = 1.05


def main(argv=None):
    from llmloom.hw.layers.description import SCHEMES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", help="a LLaMA-class GGUF file (default SmolLM2-135M-Instruct)")
    ap.add_argument("--num-layers", type=int, help="the first N layers (default all)")
    ap.add_argument("--max-tokens", type=int, help="judge the first T tokens of the text")
    ap.add_argument("--stream-exponent", type=int, default=STREAM_EXPONENT,
                    help="E of the residual stream's row exponents (LayerConfig."
                         f"stream_exponent; default {STREAM_EXPONENT}; 0: one static scale, "
                         "as the RTL has it)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    ids = tokenizer_of(args.gguf).encode(TEXT)[:args.max_tokens]
    doc = {"tokens": len(ids), "quant": "W8A8", "stream_exponent": args.stream_exponent,
           "targets": {"agreement": TARGET_AGREEMENT, "perplexity_ratio": TARGET_PPL_RATIO},
           "schemes": {}}
    for scheme in SCHEMES:
        t = time.perf_counter()
        qm = quantize_llama(args.gguf, args.num_layers, "W8A8", scheme,
                            stream_exponent=args.stream_exponent)
        logits, ref = teacher_forced(qm, ids)
        ppl, ppl_f = perplexity(logits, ids), perplexity(ref, ids)
        agree = next_token_agreement(logits, ref)
        steps = []
        host, cache, x = qm.host, qm.host.new_cache(), qm.host.embed(ids)
        for n, (_, _, x_scale) in enumerate(qm.layers):
            rms = np.sqrt(np.mean(np.asarray(x, np.float64) ** 2, axis=1))
            steps.append(round(float(np.median(rms)) / x_scale, 1))
            x = host.layer(n, x, 0, cache)
        doc["model"], doc["num_layers"] = qm.spec.name, qm.num_layers
        doc["schemes"][scheme] = {
            "agreement": round(agree, 4), "perplexity": round(ppl, 3),
            "float_perplexity": round(ppl_f, 3), "perplexity_ratio": round(ppl / ppl_f, 4),
            "meets_target": agree >= TARGET_AGREEMENT and ppl / ppl_f <= TARGET_PPL_RATIO,
            "input_steps": steps, "wall_s": round(time.perf_counter() - t, 1)}
    doc["projection"] = {}
    for name in ("smollm2-135m", "gpt2-medium"):
        p = projection(name, "W8A8", prompt_tokens=128, context=256)
        doc["projection"][name] = {k: (round(v, 4) if isinstance(v, float) else v)
                                   for k, v in p.items()}
    doc["projection_shape"] = {"prompt_tokens": 128, "context": 256}
    doc["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
