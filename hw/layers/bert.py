"""The BERT encoder layer (post-norm, bidirectional), as one description
(:mod:`.description`)::

    x ─┬─▶ q ─┐
       ├─▶ k ─┼─▶ attention ─▶ attn ─▶ o ─▶ residual1 ◀─ x (skip) ─▶ r1 ─▶ norm1 ─▶ n1
       └─▶ v ─┘
    n1 ─▶ f1 ─▶ u ─▶ gelu ─▶ g ─▶ f2 ─▶ f ─▶ residual2 ◀─ n1 (skip) ─▶ r2 ─▶ norm2 ─▶ n2 = y

``q, k, v = x·Wq+bq, ...``; ``attn = SDPA(q, k, v)``, every key seen; ``n1 = LN1(attn·Wo+bo +
x)``; ``u = n1·W1+b1``; ``n2 = LN2(GELU_erf(u)·W2+b2 + n1)``. The RTL is
:class:`~.layer.BertLayer`.

In the ``dynamic`` scheme the linear stages read their per-token inputs (``x``, ``n1``, ``g``
narrowed by the quant stages) as **int9** (``narrow=9``): a trained BERT's LayerNorm outputs
and GELU output carry outlier channels (MiniLM: tens of times the median), and one row's
power-of-two scale set by them left the others too few steps. Measured on all-MiniLM-L6-v2
(``bench/embed.py``, 12 held-out sentences, all six layers chained; at c2208c1, 10-bit
probabilities): the sentence embedding's worst cosine against float with one weight scale per
output channel 0.9924 at int8, 0.9941 at int9 (0.9955 with the 3× stream headroom of
:data:`llmloom.sim.quantize.STREAM_HEADROOMS`), with ``embed``'s Q8_0 groups 0.9926, 0.9948,
0.9958 (discordant pair comparisons 111, 73, 68 of 2,145); a float model quantising one
point at a time put ``x``'s narrowing first (alone 0.9963), ``n1``'s and ``g``'s next
(0.9987, 0.9986). The engines take 9-bit activations as they are (``GemmConfig.a_width``;
a 9×8 product fits the same multiplier, packed or not): no DSP more, a few percent more
flip-flops for the wider activation buffers.
"""

from __future__ import annotations

from .description import LayerDescription, Stage

__all__ = ["BERT"]

BERT = LayerDescription(
    arch="bert", output="n2", causal=False, act="gelu_erf", eps=1e-12,
    stream=("x", "o", "r1", "n1", "g", "f", "r2", "n2"), narrow=9,
    stages=(
        Stage("q", "linear", ("x",), "q", params="q", weight="wq"),
        Stage("k", "linear", ("x",), "k", params="k", weight="wk"),
        Stage("v", "linear", ("x",), "v", params="v", weight="wv"),
        Stage("attention", "attention", ("q", "k", "v"), "attn"),
        Stage("o", "linear", ("attn",), "o", params="o", weight="wo"),
        Stage("residual1", "residual", ("o", "x"), "r1"),
        Stage("norm1", "norm", ("r1",), "n1", params="ln1"),
        Stage("f1", "linear", ("n1",), "u", params="f1", weight="w1", features="d_ff"),
        Stage("gelu", "act", ("u",), "g"),
        Stage("f2", "linear", ("g",), "f", params="f2", weight="w2"),
        Stage("residual2", "residual", ("f", "n1"), "r2"),
        Stage("norm2", "norm", ("r2",), "n2", params="ln2"),
    ))
