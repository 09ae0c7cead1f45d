"""The GPT-2 block (pre-norm, causal), as one description (:mod:`.description`)::

    x ─▶ norm1 ─▶ n1 ─┬─▶ q ─┐
    │                 ├─▶ k ─┼─▶ attention ─▶ attn ─▶ o ─▶ residual1 ◀─ x (skip) ─▶ r1
    │                 └─▶ v ─┘
    r1 ─▶ norm2 ─▶ n2 ─▶ f1 ─▶ u ─▶ gelu ─▶ g ─▶ f2 ─▶ f ─▶ residual2 ◀─ r1 (skip) ─▶ r2 = y

``n1 = LN1(x)``; ``q, k, v = n1·Wq+bq, n1·Wk+bk, n1·Wv+bv``; ``attn = SDPA(q, k, v)``, causal;
``r1 = attn·Wo+bo + x``; ``u = LN2(r1)·W1+b1``; ``r2 = GELU_tanh(u)·W2+b2 + r1``. The RTL is
:class:`~.layer.Gpt2Block`.
"""

from __future__ import annotations

from .description import LayerDescription, Stage

__all__ = ["GPT2"]

GPT2 = LayerDescription(
    arch="gpt2", output="r2", causal=True, act="gelu_tanh", eps=1e-5,
    stream=("x", "n1", "o", "r1", "n2", "g", "f", "r2"),
    stages=(
        Stage("norm1", "norm", ("x",), "n1", params="ln1"),
        Stage("q", "linear", ("n1",), "q", params="q", weight="wq"),
        Stage("k", "linear", ("n1",), "k", params="k", weight="wk"),
        Stage("v", "linear", ("n1",), "v", params="v", weight="wv"),
        Stage("attention", "attention", ("q", "k", "v"), "attn"),
        Stage("o", "linear", ("attn",), "o", params="o", weight="wo"),
        Stage("residual1", "residual", ("o", "x"), "r1"),
        Stage("norm2", "norm", ("r1",), "n2", params="ln2"),
        Stage("f1", "linear", ("n2",), "u", params="f1", weight="w1", features="d_ff"),
        Stage("gelu", "act", ("u",), "g"),
        Stage("f2", "linear", ("g",), "f", params="f2", weight="w2"),
        Stage("residual2", "residual", ("f", "r1"), "r2"),
    ))
