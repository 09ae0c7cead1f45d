"""Generation benchmark: SmolLM2 through the accelerator's bit-exact layers against float, and
tokens/s projected on a U280-class design (issue 14's targets).

Prints one JSON object to stdout::

    .venv/bin/python bench/generate.py [--num-layers N] [--max-tokens T] [--gguf FILE]
        [--quant W8A8|W4A8] [--scheme S] [--stream-exponent E] [--w8-per-channel]
        [--all-texts]

``quants`` holds, per quantisation (``--quant``, default both: W8A8, int8 codes with a scale
per group of 32 as GGUF's Q8_0, or with ``--w8-per-channel`` one scale per output channel; and
W4A8 with the GGUF's 4-bit codes kept exactly) and per numerics scheme
(``LayerConfig.scheme``), over a held-out text run teacher-forced (one prefill per text, every
position's next token predicted), pooled over the :data:`TEXTS` (``--all-texts``: :data:`ALL_TEXTS`;
each judged on its own, then every position counted once): ``agreement`` (share of positions whose
greedy next token equals the float model's), ``perplexity`` and ``float_perplexity`` (of the texts'
own next tokens), ``perplexity_ratio``, ``kl`` (mean KL divergence of the next-token distribution
from float's, smooth where agreement moves by whole tokens), ``meets_target``, ``texts`` (the same
per text: a single text of ~150 tokens moves by a few points with any change) and ``input_steps``
(per layer, the median token's RMS on the first text in steps of the layer's input scale: the
resolution the residual stream leaves ordinary tokens beside the first token's massive activation;
with row exponents, ``stream_exponent`` > 0, the first token takes ``e > 0`` and the scale is the
median row's).
Each layer is calibrated on :data:`llmloom.sim.llm.CALIB_TEXT`, not the judged text. (agreement
≥ 95 %, perplexity within 5 % at W8A8; ≥ 90 % and within 10 % at W4A8). ``projection`` holds,
for SmolLM2-135M and GPT-2 medium on perf's U280 design, per quantisation, prefill and decode
tokens/s and the decode's share of time the memory bus streams weights.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from llmloom.flows.model_cli import projection
from llmloom.perf.workload import layer_quant
from llmloom.sim.golden.llama import mean_kl, next_token_agreement, perplexity
from llmloom.sim.llm import QUANTS, STREAM_EXPONENT, quantize_llama, teacher_forced, tokenizer_of

#: Held-out texts: encyclopaedic prose, none of it in the calibration text.
AMAZON = (
    "The Amazon rainforest covers much of the Amazon basin of South America. The basin "
    "encompasses seven million square kilometres, of which five and a half million are covered "
    "by the rainforest. The region includes territory belonging to nine nations and 3,344 "
    "indigenous territories. The majority of the forest is contained within Brazil, with 60% "
    "of the rainforest, followed by Peru with 13% and Colombia with 10%. Rainforests have "
    "been in decline in recent decades, mostly because of deforestation for cattle ranching "
    "and farming. Scientists study the forest to understand how it stores carbon, how rain "
    "falls over it, and how the many species that live there depend on one another.")
REEF = (
    "The Great Barrier Reef is the world's largest coral reef system, composed of over "
    "2,900 individual reefs and 900 islands stretching for over 2,300 kilometres over an area "
    "of approximately 344,400 square kilometres. The reef is located in the Coral Sea, off the "
    "coast of Queensland, Australia. It can be seen from outer space and is the world's biggest "
    "single structure made by living organisms. This reef structure is composed of and built by "
    "billions of tiny organisms, known as coral polyps. It supports a wide diversity of life and "
    "was selected as a World Heritage Site in 1981. A large part of the reef is protected by "
    "the Great Barrier Reef Marine Park, which helps to limit the impact of human use, such as "
    "fishing and tourism. Other environmental pressures on the reef and its ecosystem include "
    "runoff, climate change accompanied by mass coral bleaching, dumping of dredging sludge and "
    "cyclic population outbreaks of the crown-of-thorns starfish. The reef has long been known "
    "to and used by the Aboriginal Australian and Torres Strait Islander peoples, and is an "
    "important part of local groups' cultures and spirituality. Captain James Cook sailed along "
    "its length in 1770, and his ship ran aground on it, which nearly ended the voyage before "
    "it had properly begun.")
#: More held-out text in other genres (a story, instructions, a letter), written for this
#: benchmark, to cut the noise of ~400 tokens (one token a quarter of a point).
STORY = (
    "When the last bus left the valley, Mira was still standing at the stop with her violin "
    "case. She had missed it by a minute, perhaps less, because the old man at the bakery had "
    "insisted on wrapping her bread in paper and tying it with string. The next bus would not "
    "come until morning. She looked up the road, where the houses thinned out into fields, and "
    "then down towards the river, where a light was burning in the window of the ferry house. "
    "Her aunt lived on the other side. If the ferryman was still awake, she could be there "
    "before dark. She walked quickly, the case knocking against her knee, and by the time she "
    "reached the water the sky had turned the colour of ash. The ferryman was sitting on an "
    "upturned crate, mending a net. He did not look up when she asked whether he would take "
    "her across, but after a while he put the net down, stood, and untied the boat without a "
    "word. Halfway over, he asked what she played. She told him, and he nodded as if he had "
    "known all along. When they reached the far bank he would not take her money. Instead he "
    "asked her to play something, just one tune, before she went. So she opened the case on "
    "the wet planks of the landing and played the only song she knew by heart, a slow one her "
    "grandmother used to hum while she cooked.")
BREAD = (
    "To bake a simple loaf of bread, start by mixing five hundred grams of strong white flour "
    "with ten grams of salt and seven grams of dried yeast in a large bowl. Keep the salt and "
    "the yeast apart at first, because salt can slow the yeast down. Pour in about three "
    "hundred and fifty millilitres of warm water and stir with a wooden spoon until the dough "
    "comes together. Tip it onto a lightly floured surface and knead it for ten minutes, "
    "pushing it away with the heel of your hand and folding it back, until it feels smooth and "
    "springs back when you press it. Put the dough back into the bowl, cover it with a damp "
    "cloth, and leave it somewhere warm for an hour, or until it has doubled in size. Then "
    "knock it back, shape it into a round, and place it on a baking tray dusted with flour. "
    "Leave it to rise again for another forty minutes while the oven heats to two hundred and "
    "twenty degrees. Just before baking, cut a cross in the top with a sharp knife so that the "
    "loaf can open as it grows. Bake for thirty to thirty five minutes. The bread is ready when "
    "it is golden brown and sounds hollow when you tap the bottom. Let it cool on a wire rack "
    "for at least half an hour before slicing, or the inside will be gummy.")
LETTER = (
    "Dear Tom, thank you for your letter, which arrived on Tuesday and made the whole week "
    "better. I am sorry it has taken me so long to reply. The move went well in the end, "
    "although the van was two hours late and we had to carry the piano up the stairs "
    "ourselves. The new flat is smaller than the old one, but it gets the sun in the morning "
    "and there is a market at the end of the street every Saturday. Anna has started at her "
    "new school and seems to like it, mostly because her teacher keeps chickens and lets the "
    "children collect the eggs. I have gone back to work three days a week, which is about "
    "right for now. How is your knee? You said in your letter that the doctor wanted you to "
    "rest it for a month, and I know how much you hate sitting still. Please do what he says "
    "this time. We are hoping to come and see you in the spring, once the evenings are longer "
    "and the roads are better. If that suits you, let me know which weekend would be best, and "
    "I will book the train tickets. Give my love to Sarah and the boys. Write again soon, even "
    "if it is only a few lines. With love, Helen.")
#: The texts judged by default: the first two (408 tokens), the figures of earlier stops.
TEXTS = {"amazon": AMAZON, "reef": REEF}
#: Every held-out text (``--all-texts``): the two above and three more genres.
ALL_TEXTS = {**TEXTS, "story": STORY, "bread": BREAD, "letter": LETTER}
#: Issue 14's targets per quantisation: (agreement at least, perplexity ratio at most).
TARGETS = {"W8A8": (0.95, 1.05), "W4A8": (0.90, 1.10)}


def main(argv=None):
    from llmloom.hw.layers.description import SCHEMES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", help="a LLaMA-class GGUF file (default SmolLM2-135M-Instruct)")
    ap.add_argument("--num-layers", type=int, help="the first N layers (default all)")
    ap.add_argument("--max-tokens", type=int, help="judge the first T tokens of each text")
    ap.add_argument("--all-texts", action="store_true",
                    help="judge every held-out text (ALL_TEXTS), not only the first two")
    ap.add_argument("--stream-exponent", type=int, default=STREAM_EXPONENT,
                    help="E of the residual stream's row exponents (LayerConfig."
                         f"stream_exponent; default {STREAM_EXPONENT}; 0: one static scale "
                         "per tensor)")
    ap.add_argument("--quant", choices=QUANTS, action="append",
                    help="a quantisation to measure (repeatable; default all)")
    ap.add_argument("--scheme", choices=SCHEMES, action="append",
                    help="a numerics scheme to measure (repeatable; default all)")
    ap.add_argument("--w8-per-channel", action="store_true",
                    help="W8A8's weights int8 with one scale per output channel (before issue "
                         "14's Q8_0 groups; LayerConfig.weight_groups false)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    tok = tokenizer_of(args.gguf)
    texts = {k: tok.encode(v)[:args.max_tokens]
             for k, v in (ALL_TEXTS if args.all_texts else TEXTS).items()}
    ids = texts["amazon"]
    quants = args.quant or list(QUANTS)
    doc = {"tokens": sum(len(t) for t in texts.values()),
           "text_tokens": {k: len(t) for k, t in texts.items()},
           "stream_exponent": args.stream_exponent, "w8_per_channel": args.w8_per_channel,
           "targets": {q: {"agreement": a, "perplexity_ratio": p}
                       for q, (a, p) in TARGETS.items() if q in quants},
           "quants": {q: {} for q in quants}}
    formats = {}        # perf's name of each quant's weight format, the layers' own
    for quant, scheme in ((q, s) for q in quants for s in args.scheme or SCHEMES):
        t = time.perf_counter()
        groups = {"weight_groups": False} if args.w8_per_channel and quant == "W8A8" else {}
        qm = quantize_llama(args.gguf, args.num_layers, quant, scheme,
                            stream_exponent=args.stream_exponent, **groups)
        formats[quant] = layer_quant(qm.layers[0][0])
        per_text, pooled = {}, np.zeros(6)    # positions, agreeing, predicted, -log ppl's, KL
        for name, t_ids in texts.items():
            logits, ref = teacher_forced(qm, t_ids)
            a, p, pf, kl = (next_token_agreement(logits, ref), perplexity(logits, t_ids),
                            perplexity(ref, t_ids), mean_kl(logits, ref))
            per_text[name] = {"tokens": len(t_ids), "agreement": round(a, 4),
                              "perplexity_ratio": round(p / pf, 4), "kl": round(kl, 5)}
            n = len(t_ids) - 1
            pooled += (len(t_ids), a * len(t_ids), n, n * np.log(p), n * np.log(pf),
                       kl * len(t_ids))
        agree = pooled[1] / pooled[0]
        ppl, ppl_f = np.exp(pooled[3] / pooled[2]), np.exp(pooled[4] / pooled[2])
        steps = []
        host, cache, x = qm.host, qm.host.new_cache(), qm.host.embed(ids)
        for n, (_, _, x_scale) in enumerate(qm.layers):
            rms = np.sqrt(np.mean(np.asarray(x, np.float64) ** 2, axis=1))
            steps.append(round(float(np.median(rms)) / x_scale, 1))
            x = host.layer(n, x, 0, cache)
        doc["model"], doc["num_layers"] = qm.spec.name, qm.num_layers
        least, most = TARGETS[quant]
        doc["quants"][quant][scheme] = {
            "agreement": round(float(agree), 4), "perplexity": round(float(ppl), 3),
            "float_perplexity": round(float(ppl_f), 3),
            "perplexity_ratio": round(float(ppl / ppl_f), 4),
            "kl": round(float(pooled[5] / pooled[0]), 5),
            "meets_target": bool(agree >= least and ppl / ppl_f <= most),
            "texts": per_text, "input_steps": steps, "wall_s": round(time.perf_counter() - t, 1)}
    doc["projection"] = {}
    for name, quant in ((n, q) for n in ("smollm2-135m", "gpt2-medium") for q in quants):
        p = projection(name, formats[quant], prompt_tokens=128, context=256)
        doc["projection"].setdefault(name, {})[quant] = {
            k: (round(v, 4) if isinstance(v, float) else v) for k, v in p.items()}
    doc["projection_shape"] = {"prompt_tokens": 128, "context": 256}
    doc["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
