"""Generation benchmark: SmolLM2 through the accelerator's bit-exact layers against float, and
tokens/s projected on a U280-class design (issue 14's targets).

Prints one JSON object to stdout::

    .venv/bin/python bench/generate.py [--num-layers N] [--max-tokens T] [--gguf FILE]

``quants`` holds, per quantisation (``--quant``, default both: W8A8, and W4A8 with the GGUF's
4-bit codes kept exactly) and per numerics scheme (``LayerConfig.scheme``), over a held-out text
run teacher-forced (one prefill, every position's next token predicted): ``agreement`` (share
of positions whose greedy next token equals the float model's), ``perplexity`` and
``float_perplexity`` (of the text's own next tokens), ``perplexity_ratio``, ``meets_target``
and ``input_steps`` (per layer, the median token's
RMS on the judged text in steps of the layer's input scale: the resolution the residual stream
leaves ordinary tokens beside the first token's massive activation; with row exponents,
``stream_exponent`` > 0, the first token takes ``e > 0`` and the scale is the median row's).
Each layer is calibrated on :data:`llmloom.sim.llm.CALIB_TEXT`, not the judged text.
(agreement ≥ 95 %, perplexity within 5 % at W8A8; ≥ 90 % and within 10 % at W4A8).
``projection`` holds, for SmolLM2-135M and GPT-2 medium on perf's U280 design, per
quantisation, prefill and decode tokens/s and the decode's share of time the memory bus
streams weights.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from llmloom.flows.model_cli import projection
from llmloom.sim.golden.llama import next_token_agreement, perplexity
from llmloom.sim.llm import QUANTS, STREAM_EXPONENT, quantize_llama, teacher_forced, tokenizer_of

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
#: Issue 14's targets per quantisation: (agreement at least, perplexity ratio at most).
TARGETS = {"W8A8": (0.95, 1.05), "W4A8": (0.90, 1.10)}


def main(argv=None):
    from llmloom.hw.layers.description import SCHEMES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", help="a LLaMA-class GGUF file (default SmolLM2-135M-Instruct)")
    ap.add_argument("--num-layers", type=int, help="the first N layers (default all)")
    ap.add_argument("--max-tokens", type=int, help="judge the first T tokens of the text")
    ap.add_argument("--stream-exponent", type=int, default=STREAM_EXPONENT,
                    help="E of the residual stream's row exponents (LayerConfig."
                         f"stream_exponent; default {STREAM_EXPONENT}; 0: one static scale "
                         "per tensor)")
    ap.add_argument("--quant", choices=QUANTS, action="append",
                    help="a quantisation to measure (repeatable; default all)")
    ap.add_argument("--scheme", choices=SCHEMES, action="append",
                    help="a numerics scheme to measure (repeatable; default all)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    ids = tokenizer_of(args.gguf).encode(TEXT)[:args.max_tokens]
    quants = args.quant or list(QUANTS)
    doc = {"tokens": len(ids), "stream_exponent": args.stream_exponent,
           "targets": {q: {"agreement": a, "perplexity_ratio": p}
                       for q, (a, p) in TARGETS.items() if q in quants},
           "quants": {q: {} for q in quants}}
    for quant, scheme in ((q, s) for q in quants for s in args.scheme or SCHEMES):
        t = time.perf_counter()
        qm = quantize_llama(args.gguf, args.num_layers, quant, scheme,
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
        least, most = TARGETS[quant]
        doc["quants"][quant][scheme] = {
            "agreement": round(agree, 4), "perplexity": round(ppl, 3),
            "float_perplexity": round(ppl_f, 3), "perplexity_ratio": round(ppl / ppl_f, 4),
            "meets_target": agree >= least and ppl / ppl_f <= most,
            "input_steps": steps, "wall_s": round(time.perf_counter() - t, 1)}
    doc["projection"] = {}
    for name, quant in ((n, q) for n in ("smollm2-135m", "gpt2-medium") for q in quants):
        p = projection(name, quant, prompt_tokens=128, context=256)
        doc["projection"].setdefault(name, {})[quant] = {
            k: (round(v, 4) if isinstance(v, float) else v) for k, v in p.items()}
    doc["projection_shape"] = {"prompt_tokens": 128, "context": 256}
    doc["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
