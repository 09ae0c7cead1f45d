"""The LLaMA-class block (pre-norm RMSNorm, rotary positions, grouped-query attention, SwiGLU,
no biases; SmolLM2, LLaMA 2/3), as one description (:mod:`.description`)::

    x ─▶ norm1 ─▶ n1 ─┬─▶ q ─▶ rope_q ─▶ qr ─┐
    │                 ├─▶ k ─▶ rope_k ─▶ kr ─┼─▶ attention ─▶ attn ─▶ o ─▶ residual1 ◀─ x ─▶ r1
    │                 └─▶ v ─────────────────┘
    r1 ─▶ norm2 ─▶ n2 ─┬─▶ gate ─▶ hg ─▶ silu ─▶ s ─┐
                       └─▶ up ─▶ hu ────────────────┴─▶ mul ─▶ p ─▶ down ─▶ f
    f ─▶ residual2 ◀─ r1 (skip) ─▶ r2 = y

``n1 = RMSNorm(x)``; ``q = rope(n1·Wq)``, ``k = rope(n1·Wk)``, ``v = n1·Wv`` (K and V of
``kv_heads`` heads: ``d_model × kv_heads·d_head``); ``attn = SDPA(q, k, v)``, causal, query
head ``h`` reading KV head ``h // (heads / kv_heads)``; ``r1 = attn·Wo + x``;
``r2 = (silu(RMSNorm(r1)·W_gate) ⊙ (RMSNorm(r1)·W_up))·W_down + r1``. RoPE rotates adjacent
pairs of each head (GGUF's permuted ``attn_q``/``attn_k`` rows) by the row's position. No
biases: the linear stages' re-quantisers still have their int32 bias constants, all zero.
The float reference of a whole model is :mod:`llmloom.sim.golden.llama`.

The dynamic scheme's residual stream adds ``p``, the down projection's input, to the
tensors GPT-2 widens: the gate-times-up product is where LLaMA's massive activations
appear (a few channels of a few tokens thousands of times the median), which int8 at one
scale cannot hold beside the rest; the product of two int8 tensors has 16 bits of range
anyway, so ``mul`` writes it int16 and the down projection reads it per token. Its factors,
``s`` (SiLU's output, a 256-entry table of int16) and ``hu`` (the up projection's
re-quantiser writes int16), are wide too: at int8 they cost SmolLM2 a fifth of its
next-token agreement (bench/generate.py, 64 tokens: 72 % at int8, 92 % at int16).

The attention's output ``attn`` is wide too (the attention block's ``out_width`` 16: its
P·V accumulators re-quantised onto int16 instead of int8), and the output projection reads it
per token (``quant_attn``): SmolLM2's ``attn`` kept 16–24 dB SQNR at int8 (half a dB to
4 dB more at int16; what is left comes from int8 Q, K and V), and (bench/generate.py, 137
tokens, 30 layers, row exponents on) next-token agreement rises from 87.6 % to 91.2 %,
perplexity from 1.093× float's to 1.048×. Without row exponents the residual stream's
resolution dominates and the figures move by a few tokens (80.3 % → 78.8 %, 1.10× → 1.18×).

The linear stages' per-token inputs (the quant stages' outputs ``n1_i8 attn_i8 n2_i8 p_i8``)
are **int10** (``narrow=10``; BERT's are int9, :mod:`.bert`): a power-of-two scale per row
wastes up to a bit of the range, and the engines take 10-bit activations as they are, two
products a DSP48E2 still (``GemmConfig.dsp_packing``: the low product, at most 2**16, stays
within the 18 bits below the high one). int8 → int9 (bench/generate.py, 137 tokens, 30 layers,
row exponents on): perplexity 1.048× → 1.040× float's at W8A8, agreement 91.2 % either way;
W4A8 1.066× → 1.015×, agreement 93.4 % → 91.2 % (two tokens). int9 → int10, with all below in
place (bench/generate.py, every text, ``--all-texts``, 1 213 tokens): W8A8 agreement 93.8 % →
94.5 %, perplexity 1.010× → 1.003× float's, mean KL 0.0110 → 0.0084 (the two texts alone,
408 tokens: 94.9 % → 94.1 %, Amazon 97.1 % → 94.2 %, reef 93.7 % → 94.1 %; 1.006× → 1.005×);
W4A8 93.7 % → 94.6 %, 1.003× → 1.004×, KL 0.0137 → 0.0083 (two texts 94.9 % → 96.1 %, 1.010× →
1.005×). The cost (SmolLM2's layer on xcup, perf.resources): +312 LUT, +810 FF, +4 BRAM
(the GEMMs' activation buffers; 51 441 LUT, 37 831 FF, 462 DSP, 1 016.5 BRAM in all), no DSP;
the cycles are unchanged.

``p`` and ``f``, the down projection's input and output, are **int24**
(:attr:`~.description.LayerDescription.wide`; ``mul`` and down's re-quantiser write 24 bits,
``quant_p`` narrows int24 rows to int10 with exponents 0..14, residual2 reads an int24 branch),
each at one static scale with 16× headroom (``WIDE_HEADROOM``, :mod:`llmloom.sim.quantize`):
held-out text takes ``p`` up to 3.4× the calibration's largest value (layers 5, 12, 13, 25 of
SmolLM2; ``f`` 2.1×), which int16 at 2× headroom saturated, and ``f``'s largest row is up to
4 900 times its median row (layer 11), which int16 left 3 steps. At int16 these two held most
of the FFN's loss (bench/llama_attribution.py, each alone: ``p`` and ``p_i8`` KL 0.021 each,
``f`` 0.008, of 0.062 in all). bench/generate.py (408 tokens, 30 layers, dynamic, E = 15):
W8A8 agreement 91.4 % → 92.4 %, perplexity 1.026× → 1.017× float's; W4A8 89.5 % → 90.9 %,
1.009× → 1.011×. The cost (SmolLM2's layer on xcup, perf.resources): +343 LUT, +117 FF,
+4 DSP (residual2's wider branch product), +0.5 BRAM (quant_p's row buffer), of 46 900 LUT,
431 DSP, 1 110 BRAM; the cycles are unchanged (the same beats). Not kept: the SiLU input
``hg`` clipped at the 99.5th percentile instead of the 98th (fake-quant KL 0.062 → 0.043 with
int16 ``p``, but the bit-exact model's agreement fell to 90.2 %, perplexity 1.035×); with
int24 ``p`` and ``f``, the 99th: W8A8 92.4 % (unchanged), perplexity 1.017× → 1.000×
(one run; W4A8 not measured).

The SiLU's input ``hg`` is **int10** (the description's ``act_width``: the gate's re-quantiser
writes 10 bits, the table has 1024 entries of int16), at one static scale, the calibration's
largest value, unclipped (:mod:`llmloom.sim.quantize`). With int24 ``p`` and ``f`` it was the
largest loss left (bench/llama_attribution.py, each tensor alone: ``hg`` at int8 clipped to
the 98th percentile KL 0.0146; then ``prob`` 0.0042, ``p_i8`` 0.0023, ``k`` 0.0017, ``kr``
0.0016, the rest below 0.001; the weights ~0.0016 each). Every tensor quantised (fake-quant),
KL 0.033 at int10 clipped to the 98th percentile, 0.018 unclipped. bench/generate.py (408
tokens, 30 layers, dynamic, E = 15): W8A8 agreement 92.4 % → 93.1 % (Amazon text 94.9 % →
94.2 %, reef 91.1 % → 92.6 %), perplexity 1.017× → 1.020× float's; W4A8 90.9 % → 93.4 %,
1.011× → 1.026×. The cost (SmolLM2's layer on xcup, perf.resources, 4 lanes): +893 LUT
(the table in logic, 1 126 LUT where 256 entries took 282), +6 FF, no DSP or BRAM; the
cycles are unchanged. Not kept (yet): ``hg`` int12 (``act_width`` 12, a 4096-entry table):
W8A8 93.6 % (Amazon 94.9 %, reef 93.0 %), 1.014×; W4A8 94.4 %, 1.017× (one run each), for
a table of ~4 500 LUT at 4 lanes (+3 400 LUT over int10) or block RAM.

W8A8's weights (SmolLM2 through ``sim.llm.quantize_llama``) are int8 codes with a scale per
group of 32 inputs, GGUF's Q8_0 (``LayerConfig.weight_groups``: the grouped GEMM of W4 with
int8 codes and the scales alone), not one scale per output channel: re-quantising the Q4_1 weights
per channel cost ~0.011 KL in all, the largest single loss at W8A8, which left W8A8 below W4A8.
bench/generate.py (408 tokens, 30 layers, dynamic, E = 15): W8A8 agreement 93.1 % → 94.6 %
(Amazon 94.2 % → 97.1 %, reef 92.6 % → 93.4 %), perplexity 1.020× → 1.013× float's; W4A8
unchanged. The cost (SmolLM2's layer on xcup, perf.resources, baked, 4 lanes): 49 444 →
54 381 LUT, 34 935 → 40 004 FF, 434 → 490 DSP (two group multipliers a column), 950 → 1 065
BRAM (the group tables, their minima all zero); the image 3.61 → 4.06 MB a layer; the cycles
unchanged. Without the minima (the scales alone, the results and cycles the same): 50 991 LUT,
36 766 FF, 462 DSP (one group multiplier a column), 1 012.5 BRAM, the image 3.83 MB.
Measured with Q8_0 weights, bit-exact, and not kept then: ``hg`` int12 94.1 %, 1.016×; the
linear stages' per-token inputs (``narrow``) int10 93.6 %, 1.022× (kept since, with the 10-bit
probabilities, on every text: above); both 93.4 %, 1.017× (one run each; over 408 tokens a
token is 0.25 points, and the wider tensors moved agreement down as often as up).

The softmax's probabilities are **10-bit** (scale 1/1023, ``hw.blocks.softmax.PROB_BITS``; P·V reads
them on 11-bit lanes): at 1/255 they were the largest single loss of the activations
(bench/llama_attribution.py, W8A8, each tensor alone exact: ``prob`` KL 0.0153 → 0.0113, then
``p_i8`` 0.0127, ``v`` 0.0134, ``score`` nothing; fake-quant with 1/1023 0.0115, 1/4095 0.0117,
1/65535 0.0107: ten bits take what there is). bench/generate.py (dynamic, 30 layers; the two texts,
408 tokens / every text, ``--all-texts``, 1 213 tokens): W8A8 agreement 94.6 % → 94.9 % / 93.5 % →
93.8 %, perplexity 1.013× → 1.006× / 1.017× → 1.010× float's, mean KL 0.0144 → 0.0111 / 0.0151 →
0.0110; W4A8 93.4 % → 94.9 %, 1.026× → 1.010× (every text: 93.7 %, 1.003×; not measured at 1/255).
The cost (SmolLM2's layer on xcup, perf.resources): +112 LUT, +247 FF (P·V's wider activations;
51 129 LUT, 37 021 FF, 462 DSP, 1 013 BRAM in all), no DSP or BRAM; the cycles are unchanged.

The queries and keys before RoPE, ``q`` and ``k``, are **int16** (stream tensors at the
stream's 2× headroom: their re-quantisers write int16, :class:`~..blocks.rope.Rope` reads it
with ``in_width`` 16 and writes the int8 ``qr`` and ``kr``; no quant stage, as no linear
stage reads them): at int8 each was rounded twice, by its re-quantiser and again by RoPE,
the largest loss left at W8A8 (bench/llama_attribution.py, fake-quant, every tensor
quantised: KL 0.00925 from float, 0.00655 with ``q`` and ``k`` exact). The KV cache and
Q·Kᵀ are unchanged (``kr`` stays int8). The RoPE table takes seven more fraction bits
(F = 21, :data:`~..blocks.rope.FRAC_BITS`) for the ~256× smaller ratio of scales (SmolLM2:
0.0078), so its entries stay 16 bits, as do the layer image's words; an int16 by a 16-bit
entry is still one DSP48E2. bench/generate.py (dynamic, 30 layers, every text,
``--all-texts``, 1 213 tokens): before the queries were balanced against the keys
(:mod:`llmloom.sim.quantize`) and with int9 GEMM inputs, W8A8 agreement 93.8 % → 94.6 %,
perplexity 1.010× → 1.005× float's, KL 0.0110 → 0.0098; W4A8 93.7 % → 94.3 %, 1.003× →
1.013×, KL 0.0137 → 0.0125. With both and int10 inputs: W8A8 94.3 % → 94.6 %, 1.008× →
1.006×, KL 0.0075 → 0.0062; W4A8 94.9 % either way, 1.008× → 1.004×, KL 0.0082 → 0.0069.
The cost (SmolLM2's layer on xcup, perf.resources): −26 LUT, +57 FF (the q and k
re-quantisers' int16 output; 51 391 LUT, 37 881 FF, 462 DSP, 1 016.5 BRAM in all), no DSP
or BRAM, and RoPE's own logic, which the model does not fit yet: Yosys (xcup) gives +57
LUT, +96 FF a RoPE (4 lanes, 294 → 351 LUT, 285 → 381 FF: the wider input register,
products and sums); the cycles are unchanged.

The residual stream proper, ``x r1 r2``, may carry a power-of-two exponent per row (the layer
config's ``stream_exponent``; :attr:`~.description.LayerDescription.row_exponents`): from
about layer 12 of SmolLM2 on, the first token's row reaches 22 500 beside an RMS of ~6 in the
others, which one static scale per tensor leaves 4–15 steps.
"""

from __future__ import annotations

from .description import LayerDescription, Stage

__all__ = ["LLAMA"]

LLAMA = LayerDescription(
    arch="llama", output="r2", causal=True, act="silu", eps=1e-5, norm="rmsnorm",
    stream=("x", "n1", "q", "k", "attn", "o", "r1", "n2", "hu", "s", "p", "f", "r2"),
    row_exponents=("x", "r1", "r2"), narrow=10, wide=(("p", 24), ("f", 24)), act_width=10,
    stages=(
        Stage("norm1", "norm", ("x",), "n1", params="ln1"),
        Stage("q", "linear", ("n1",), "q", params="q", weight="wq"),
        Stage("k", "linear", ("n1",), "k", params="k", weight="wk", features="kv"),
        Stage("v", "linear", ("n1",), "v", params="v", weight="wv", features="kv"),
        Stage("rope_q", "rope", ("q",), "qr"),
        Stage("rope_k", "rope", ("k",), "kr"),
        Stage("attention", "attention", ("qr", "kr", "v"), "attn"),
        Stage("o", "linear", ("attn",), "o", params="o", weight="wo"),
        Stage("residual1", "residual", ("o", "x"), "r1"),
        Stage("norm2", "norm", ("r1",), "n2", params="ln2"),
        Stage("gate", "linear", ("n2",), "hg", params="gate", weight="w_gate", features="d_ff"),
        Stage("up", "linear", ("n2",), "hu", params="up", weight="w_up", features="d_ff"),
        Stage("silu", "act", ("hg",), "s"),
        Stage("mul", "mul", ("s", "hu"), "p"),
        Stage("down", "linear", ("p",), "f", params="down", weight="w_down"),
        Stage("residual2", "residual", ("f", "r1"), "r2"),
    ))
