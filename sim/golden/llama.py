"""The float reference of a LLaMA-class model: RMSNorm, rotary position embedding, grouped-query
attention with a KV cache, SwiGLU and a (tied) LM head; greedy generation.

This is the maths the accelerator's LLaMA path is held to, written plainly in NumPy in float64
(or float32, for speed, where a test says so). Per layer, for rows ``x`` (tokens × d) at
positions ``pos .. pos + l − 1``::

    h = x + Wo · attention(rope(RMSNorm(x)·Wq), rope(RMSNorm(x)·Wk), RMSNorm(x)·Wv)
    y = h + W_down · (silu(RMSNorm(h)·W_gate) ⊙ (RMSNorm(h)·W_up))

``RMSNorm(x) = x / sqrt(mean(x²) + eps) · g``. RoPE rotates *adjacent* pairs ``(x[2i],
x[2i+1])`` of each head by the angle ``pos · base**(−2i/d_head)`` — the pairing of GGUF's
permuted ``attn_q``/``attn_k`` rows (see :mod:`llmloom.sim.checkpoint`). Query head ``h`` reads
KV head ``h // (heads / kv_heads)``; scores are scaled by ``1/sqrt(d_head)`` and causally masked
(row ``r`` sees the cache up to its own position). The LM head maps the final RMSNorm's output to
vocabulary logits.
"""

from __future__ import annotations

import numpy as np

__all__ = ["rms_norm", "rope_angles", "rope_adjacent", "silu", "LlamaFloat", "KVCache",
           "next_token_agreement", "perplexity", "mean_kl"]


def rms_norm(x, g, eps):
    """``x / sqrt(mean(x²) + eps) · g`` over the last axis."""
    x = np.asarray(x)
    ms = np.mean(x * x, axis=-1, keepdims=True)
    return x / np.sqrt(ms + eps) * g


def rope_angles(positions, d_head, base, dtype=np.float64):
    """Angles ``pos · base**(−2i/d_head)``, positions × d_head/2 (in float64, then ``dtype``)."""
    i = np.arange(d_head // 2, dtype=np.float64)
    inv_freq = np.power(float(base), -2.0 * i / d_head)
    return (np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]).astype(dtype)


def rope_adjacent(x, positions, base):
    """RoPE on adjacent pairs: ``x`` (rows × heads × d_head), row ``r`` at ``positions[r]``;
    pair ``i`` of each head ``(x[2i], x[2i+1])`` rotated by ``positions[r] · θ_i``."""
    x = np.asarray(x)
    rows, heads, d_head = x.shape
    ang = rope_angles(positions, d_head, base, x.dtype)[:, None, :]    # rows × 1 × d/2
    c, s = np.cos(ang), np.sin(ang)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def silu(x):
    """``x · sigmoid(x)``, without overflow for large ``|x|``."""
    return x * 0.5 * (1.0 + np.tanh(0.5 * x))


class KVCache:
    """Per layer, the rotated keys and the values of every position seen so far
    (kv_heads × positions × d_head each)."""

    def __init__(self, layers):
        self.k = [None] * layers
        self.v = [None] * layers

    @property
    def length(self):
        return 0 if self.k[0] is None else self.k[0].shape[1]

    def append(self, layer, k, v):
        if self.k[layer] is None:
            self.k[layer], self.v[layer] = k, v
        else:
            self.k[layer] = np.concatenate([self.k[layer], k], axis=1)
            self.v[layer] = np.concatenate([self.v[layer], v], axis=1)
        return self.k[layer], self.v[layer]


class LlamaFloat:
    """A LLaMA-class model in float, from a :class:`~llmloom.sim.checkpoint.GgufModel`.

    Parameters
    ----------
    model : GgufModel
    dtype : numpy float type
        Of the weights and of every computation (float64 by default; float32 is ~2× faster
        and gives the same greedy tokens on SmolLM2's chat prompt).
    num_layers : int, optional
        Keep only the first ``num_layers`` blocks (the final norm and LM head stay).
    """

    def __init__(self, model, dtype=np.float64, num_layers=None):
        spec = model.spec
        n = spec.layers if num_layers is None else num_layers
        if not (isinstance(n, int) and 1 <= n <= spec.layers):
            raise ValueError(f"num_layers={num_layers!r} is not allowed; allowed: "
                             f"1..{spec.layers}")
        self.spec, self.dtype, self.num_layers = spec, np.dtype(dtype), n
        self.layers = [model.layer_weights(i, dtype) for i in range(n)]
        self.embedding = model.embedding(dtype)
        self.norm_g = model.output_norm(dtype)
        # tied: the head is the embedding's transpose (a view, not a second copy)
        self.lm_head = self.embedding.T if spec.tied_embeddings else model.lm_head(dtype)

    def astype(self, dtype):
        """The same model computing in ``dtype`` (weights cast, not read again)."""
        other = object.__new__(type(self))
        other.spec, other.dtype, other.num_layers = self.spec, np.dtype(dtype), self.num_layers
        other.layers = [{k: v.astype(dtype) for k, v in w.items()} for w in self.layers]
        other.embedding = self.embedding.astype(dtype)
        other.norm_g = self.norm_g.astype(dtype)
        other.lm_head = other.embedding.T if self.spec.tied_embeddings else \
            self.lm_head.astype(dtype)
        return other

    def new_cache(self):
        return KVCache(self.num_layers)

    def layer(self, i, x, pos, cache):
        """Block ``i`` on rows ``x`` (l × d) at positions ``pos ..``; appends its K and V."""
        s, w = self.spec, self.layers[i]
        l, dh = x.shape[0], s.d_head
        positions = np.arange(pos, pos + l)
        a = rms_norm(x, w["ln1_g"], s.rms_eps)
        q = rope_adjacent((a @ w["wq"]).reshape(l, s.heads, dh), positions, s.rope_base)
        k = rope_adjacent((a @ w["wk"]).reshape(l, s.kv_heads, dh), positions, s.rope_base)
        v = (a @ w["wv"]).reshape(l, s.kv_heads, dh)
        keys, values = cache.append(i, k.transpose(1, 0, 2), v.transpose(1, 0, 2))
        t = keys.shape[1]
        # grouped-query: query head h reads KV head h // group
        qh = q.transpose(1, 0, 2).reshape(s.kv_heads, s.group * l, dh)
        scores = (qh @ keys.transpose(0, 2, 1)).reshape(s.kv_heads, s.group, l, t)
        scores = scores / np.sqrt(dh).astype(self.dtype)
        mask = np.arange(t)[None, :] > (positions[:, None])
        scores = np.where(mask, -np.inf, scores)
        scores = scores - scores.max(axis=-1, keepdims=True)
        p = np.exp(scores)
        p = p / p.sum(axis=-1, keepdims=True)
        ctx = (p.reshape(s.kv_heads, s.group * l, t) @ values).reshape(s.heads, l, dh)
        h = x + ctx.transpose(1, 0, 2).reshape(l, s.d_model) @ w["wo"]
        b = rms_norm(h, w["ln2_g"], s.rms_eps)
        return h + (silu(b @ w["w_gate"]) * (b @ w["w_up"])) @ w["w_down"]

    def forward(self, tokens, cache):
        """Logits (l × vocab) of ``tokens`` placed after the ``cache``'s positions, which
        grows by them."""
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if tokens.size == 0 or tokens.min() < 0 or tokens.max() >= self.spec.vocab:
            raise ValueError(f"token ids must be in 0..{self.spec.vocab - 1} (at least one)")
        pos = cache.length
        if pos + tokens.size > self.spec.context:
            raise ValueError(f"{pos + tokens.size} positions exceed the context of "
                             f"{self.spec.context}")
        x = self.embed(tokens)
        for i in range(self.num_layers):
            x = self.layer(i, x, pos, cache)
        return self.logits(x)

    # The host's share of a model run through the accelerator's layers (issue 14: embedding,
    # final norm and LM head stay in NumPy).
    def embed(self, tokens):
        """The embedding rows of ``tokens`` (l × d)."""
        return self.embedding[np.asarray(tokens, dtype=np.int64).reshape(-1)]

    def logits(self, x):
        """Vocabulary logits (l × vocab) of the last layer's rows ``x``: final RMSNorm, then
        the LM head."""
        return rms_norm(x, self.norm_g, self.spec.rms_eps) @ self.lm_head

    def generate(self, prompt, max_new_tokens, stop=()):
        """Greedy decoding: the prompt's ids in one prefill, then one token at a time until
        ``max_new_tokens`` or a token of ``stop``. Returns the new ids (a stop token
        included)."""
        cache = self.new_cache()
        logits = self.forward(prompt, cache)
        out = []
        for _ in range(max_new_tokens):
            nxt = int(np.argmax(logits[-1]))
            out.append(nxt)
            if nxt in stop or len(out) == max_new_tokens:
                break
            logits = self.forward([nxt], cache)
        return out


def next_token_agreement(logits, reference):
    """Share of positions where the greedy next token of ``logits`` equals that of
    ``reference`` (both positions × vocab): teacher-forced agreement of two models."""
    a, b = np.asarray(logits), np.asarray(reference)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"logits of shapes {a.shape} and {b.shape}; expected the same "
                         "positions × vocab")
    return float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)))


def mean_kl(logits, reference):
    """Mean over positions of the KL divergence of ``logits``' next-token distribution from
    ``reference``'s (both positions × vocab), in nats, computed in float64: unlike agreement
    (a few near-tied tokens decide it), smooth in the error."""
    a, b = np.asarray(logits, np.float64), np.asarray(reference, np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"logits of shapes {a.shape} and {b.shape}; expected the same "
                         "positions × vocab")
    lq = a - a.max(axis=1, keepdims=True)
    lq -= np.log(np.exp(lq).sum(axis=1, keepdims=True))
    lf = b - b.max(axis=1, keepdims=True)
    lf -= np.log(np.exp(lf).sum(axis=1, keepdims=True))
    return float(np.mean(np.sum(np.exp(lf) * (lf - lq), axis=1)))


def perplexity(logits, tokens):
    """``exp`` of the mean negative log-likelihood of ``tokens[1:]`` under ``logits[:-1]``
    (row ``t`` of ``logits`` predicts token ``t + 1``), computed in float64."""
    z = np.asarray(logits, dtype=np.float64)
    tokens = np.asarray(tokens, dtype=np.int64)
    if z.ndim != 2 or z.shape[0] != tokens.size or tokens.size < 2:
        raise ValueError(f"logits of shape {z.shape} for {tokens.size} tokens; expected one "
                         "row per token, at least two")
    z = z[:-1] - z[:-1].max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(np.exp(-np.mean(logp[np.arange(tokens.size - 1), tokens[1:]])))
