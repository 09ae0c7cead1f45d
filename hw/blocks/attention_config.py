"""Configuration of multi-head scaled dot-product attention, as the blocks it is made of.

Attention is not a block of its own arithmetic: per head it is the composition

    Q_h (int8) ─▶ qk_gemm (Q_h·K_hᵀ, int32) ─▶ score_requant (int8 at score_scale)
        ─▶ softmax(offset) (10-bit at 1/1023) ─▶ pv_gemm (P·V_h, int32, P on 11-bit signed lanes)
        ─▶ out_requant (int8 at out_scale; int16 with out_width 16)

and the heads' outputs are concatenated along the features (head h owns columns
``h·d_head .. (h+1)·d_head − 1`` of Q and of the output). **Grouped-query attention**
(``kv_heads`` < ``heads``, LLaMA-class models): K and V have ``kv_heads`` heads
(``kv_width = kv_heads·d_head`` features, the KV cache holds those), and query head ``h``
reads KV head ``h // (heads / kv_heads)``; ``kv_heads = heads`` (``0``, the default) is
multi-head attention, where head h owns the same columns of Q, K and V. :class:`AttentionConfig`
derives the exact configuration of each of those blocks; the bit-exact golden model
(:func:`llmloom.sim.golden.attention.attention_bitexact`) and the RTL are built from them, so
every constant (multipliers, exp table, reciprocal) is shared and nothing is re-derived.
``head_engines`` sets how many heads the RTL computes at once (copies of the per-head blocks);
it changes the time and the area, never the result.

Contract (what a call computes; the golden model checks it):

* Queries are rows at positions ``q_offset, q_offset + 1, ...``; keys and values are the rows
  at positions ``0 .. ctx − 1`` (the KV cache), ``ctx <= seq``. The score row of every query has
  ``seq`` entries (the Q·Kᵀ array has ``n = seq`` output columns); the entries of keys that do
  not exist (``j >= ctx``) are computed on whatever the K buffer holds and then **masked**.
* **Causal** (GPT-2): query at position ``p`` keeps keys ``j <= p``; the softmax block masks
  exactly that with ``causal_offset = q_offset`` (row r keeps ``j <= r + causal_offset``). A
  call needs ``q_offset + rows <= ctx`` so that every kept key exists; keys ``>= ctx`` are then
  beyond every query's position and masked by causality, which is why the softmax block's
  causal mask is all the masking a causal attention needs. Prefill of ``l`` tokens is
  ``q_offset = 0, ctx = l``; decode at position ``p`` is one row, ``q_offset = p, ctx = p + 1``.
* **Bidirectional** (BERT): a call is one whole sentence of ``n = ctx`` tokens,
  ``1 <= n <= seq``, ``q_offset == 0``, every query attending to those ``n`` keys (the RTL's
  tensors carry as many queries as keys, ``rows == ctx``; the golden model takes any rows).
  Keys ``n .. seq − 1`` are masked by the softmax's key padding mask (``runtime_keys``, the
  count ``n`` given per tensor): they reach neither its max nor its sum, which padding by
  value could not do (a score of −128 still has a nonzero exp). A sentence of ``n`` tokens
  therefore gives what a config of ``seq = n`` gives (the score rows' first ``n`` entries
  are cut into the same beats), bit for bit where the two softmax lengths share their
  ``exp_frac`` (all up to 16; a longer ``seq`` keeps more exp fraction bits, so it is at
  least as accurate): one design serves sentences of every length.
* Masked probabilities are exactly 0, so the contents of the V rows of masked keys never
  reach the output (the golden model pads K and V with zeros; any padding gives the same bits).

Scales: ``q_scale``, ``k_scale``, ``v_scale`` are the int8 inputs' (per tensor, shared by all
heads). The scores' real value is ``acc · q_scale·k_scale/sqrt(d_head)``, re-quantised to
``score_scale``; probabilities have the fixed scale 1/1023, so ``P·V`` accumulators have scale
``v_scale/1023``, re-quantised to ``out_scale``. Unset (``None``) scales take data-independent
values: ``score_scale`` the bound no score can exceed, ``out_scale = v_scale`` (every output
is a convex combination of V rows, so it stays in V's range); calibrate them from data with
:func:`llmloom.sim.golden.attention.calibrate_attention` (or a layer's quantiser).
"""

from __future__ import annotations

import dataclasses
import math

from ..config import BlockConfig, Choice, ConfigError, Range, spec
from ..numeric import INT8
from .gemm_config import GemmConfig
from .requant import ROUNDINGS, RequantConfig, Scale, check_scale
from .rowkernel import MAX_LENGTH
from .softmax import PROB, SoftmaxConfig

__all__ = ["AttentionConfig", "HeadGeometry"]


class HeadGeometry:
    """The heads of an attention, from ``d_model``, ``heads`` and ``kv_heads`` (0: as many as
    ``heads``): shared by :class:`AttentionConfig`, the KV cache's config and the layer's config."""

    @property
    def d_head(self):
        return self.d_model // self.heads

    @property
    def kv_heads_value(self):
        """The KV heads in use: ``kv_heads``, or ``heads`` (0: multi-head attention)."""
        return self.kv_heads or self.heads

    @property
    def kv_group(self):
        """Query heads per KV head, ``heads / kv_heads``: query head h reads KV head
        ``h // kv_group``."""
        return self.heads // self.kv_heads_value

    @property
    def kv_width(self):
        """Features of a K or V row: ``kv_heads·d_head`` (``d_model`` without grouping)."""
        return self.kv_heads_value * self.d_head


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttentionConfig(HeadGeometry, BlockConfig):
    """Multi-head SDPA on int8 Q, K, V rows; per-head block configs are derived properties."""

    d_model: int = spec(64, Range(1, 65536), "model width d (features of Q, K, V and output)")
    heads: int = spec(4, Range(1, 4096), "attention heads h; divides d_model")
    kv_heads: int = spec(0, Range(0, 4096), "K and V heads (grouped-query attention: query "
                         "head h reads KV head h // (heads/kv_heads)); divides heads; 0: heads")
    seq: int = spec(64, Range(1, MAX_LENGTH), "maximum context length: the score row length "
                    "and the KV cache capacity in positions")
    causal: bool = spec(False, None, "mask keys after each query's position (GPT-2); "
                        "false: bidirectional (BERT), a tensor of n <= seq rows attends to "
                        "its n keys")
    q_scale: float = spec(1.0 / 32, Scale(), "scale of the int8 queries")
    k_scale: float = spec(1.0 / 32, Scale(), "scale of the int8 keys")
    v_scale: float = spec(1.0 / 32, Scale(), "scale of the int8 values")
    score_scale: float | None = spec(
        None, Scale(), "scale of the int8 scores (softmax input); none: the bound no score "
        "can exceed")
    out_scale: float | None = spec(None, Scale(), "scale of the output; none: v_scale")
    out_width: int = spec(8, Choice((8, 16)), "bits of the signed output: 8, or 16 (the "
                          "dynamic scheme's wide attention output, which a per-token "
                          "quantiser narrows before the output projection)")
    lanes: int = spec(4, Range(1, 64), "elements per beat of every stream; divides d_head "
                      "(score rows of seq pad their last beat)")
    qk_rows: int = spec(4, Range(1, 64), "Q·Kᵀ array rows (query rows at once)")
    qk_cols: int = spec(4, Range(1, 64), "Q·Kᵀ array columns (keys at once)")
    pv_rows: int = spec(4, Range(1, 64), "P·V array rows (query rows at once)")
    pv_cols: int = spec(4, Range(1, 64), "P·V array columns (head features at once)")
    rounding: str = spec("half_even", Choice(ROUNDINGS), "rounding of both re-quantisations")
    head_engines: int = spec(1, Range(1, 4096), "head pipelines working at once (each its own "
                             "Q·Kᵀ and P·V arrays); divides heads: 1 = heads in sequence, "
                             "heads = all in parallel")

    def _validate(self):
        if self.d_model % self.heads:
            raise ConfigError(f"heads={self.heads} does not divide d_model={self.d_model}; "
                              "allowed: a divisor of d_model")
        if self.heads % self.head_engines:
            raise ConfigError(f"head_engines={self.head_engines} does not divide "
                              f"heads={self.heads}; allowed: a divisor of heads")
        if self.heads % self.kv_heads_value:
            raise ConfigError(f"kv_heads={self.kv_heads} does not divide heads={self.heads}; "
                              "allowed: a divisor of heads, or 0 (= heads)")
        if self.kv_heads_value % self.head_engines:
            raise ConfigError(f"head_engines={self.head_engines} does not divide "
                              f"kv_heads={self.kv_heads_value}; allowed: a divisor of kv_heads "
                              "(each engine holds the KV heads of its query heads)")
        if self.d_head % self.lanes:
            raise ConfigError(f"lanes={self.lanes} does not divide d_head={self.d_head} "
                              f"(d_model/heads); allowed: a divisor of d_head")
        for name in ("q_scale", "k_scale", "v_scale", "score_scale", "out_scale"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, check_scale(name, getattr(self, name)))
        # Build every derived block config once, so that their own limits (accumulator
        # widths, multiplier widths) are reported at construction, not at first use.
        _ = (self.qk_gemm, self.score_requant, self.softmax_block, self.pv_gemm,
             self.out_requant)

    # Derived sizes ----------------------------------------------------------------------------
    @property
    def head_rounds(self):
        """Rounds of the heads phase: ``heads / head_engines`` (engine ``e`` computes head
        ``e·head_rounds + r`` in round ``r``)."""
        return self.heads // self.head_engines

    @property
    def engine_width(self):
        """Features of one engine's head group: ``d_model / head_engines`` (its
        ``head_rounds`` heads' columns, contiguous)."""
        return self.d_model // self.head_engines

    @property
    def score_acc_scale(self):
        """Real value of one Q·Kᵀ accumulator unit: ``q_scale·k_scale/sqrt(d_head)`` (the
        1/sqrt(d_head) of SDPA is folded into the re-quantisation, not into Q)."""
        return self.q_scale * self.k_scale / math.sqrt(self.d_head)

    @property
    def score_scale_value(self):
        """The score scale in use: ``score_scale``, or the bound ``d_head·128²`` accumulator
        units (every product at its largest) mapped onto 127."""
        if self.score_scale is not None:
            return self.score_scale
        return self.d_head * 128 * 128 * self.score_acc_scale / INT8.max

    @property
    def prob_scale(self):
        """The fixed scale of the softmax's 10-bit probabilities: 1/1023."""
        return self.softmax(0).out_scale

    @property
    def out_scale_value(self):
        """The output scale in use: ``out_scale``, or ``v_scale``."""
        return self.out_scale if self.out_scale is not None else self.v_scale

    @property
    def kv_cache_bytes(self):
        """On-chip K and V storage: ``seq`` positions of ``kv_width`` int8 each, twice."""
        return 2 * self.seq * self.kv_width

    # The blocks of one head -----------------------------------------------------------------
    @property
    def qk_gemm(self):
        """Scores ``Q_h · K_hᵀ``: k = d_head, n = seq (the K rows of the cache are the
        array's weights, padded to ``seq``)."""
        return GemmConfig(rows=self.qk_rows, cols=self.qk_cols, k=self.d_head, n=self.seq,
                          lanes=self.lanes, a_width=8, w_width=8)

    @property
    def score_requant(self):
        """int32 scores → int8 at ``score_scale_value`` (per tensor, no bias)."""
        return RequantConfig(length=self.seq, lanes=self.lanes, acc_scale=self.score_acc_scale,
                             out_scale=self.score_scale_value, rounding=self.rounding)

    def softmax(self, offset=0):
        """Softmax of a tensor of score rows whose first row is the query at position
        ``offset`` (the causal limit of row r is ``r + offset``; ignored when not causal)."""
        return SoftmaxConfig(length=self.seq, lanes=self.lanes, x_scale=self.score_scale_value,
                             causal=self.causal, causal_offset=offset if self.causal else 0)

    @property
    def softmax_block(self):
        """The one softmax instance of the RTL: causal, with the offset from its port
        (``runtime_offset``); bidirectional, with the key count from its port
        (``runtime_keys``). :func:`llmloom.sim.golden.attention.attention_bitexact` runs the
        same config."""
        if self.causal:
            return self.softmax(0).replace(runtime_offset=True)
        return self.softmax(0).replace(runtime_keys=True)

    @property
    def pv_gemm(self):
        """``P · V_h``: k = seq, n = d_head; P (the softmax's unsigned ``PROB_BITS``-bit
        probabilities) rides on signed lanes one bit wider."""
        return GemmConfig(rows=self.pv_rows, cols=self.pv_cols, k=self.seq, n=self.d_head,
                          lanes=self.lanes, a_width=PROB.width + 1, w_width=8)

    @property
    def out_requant(self):
        """int32 ``P·V`` (scale ``v_scale/1023``) → int8 (``out_width`` 16: int16) at
        ``out_scale_value``."""
        return RequantConfig(length=self.d_head, lanes=self.lanes,
                             acc_scale=self.v_scale * self.prob_scale,
                             out_scale=self.out_scale_value, rounding=self.rounding,
                             out_width=self.out_width)

    def check_call(self, rows, ctx, q_offset):
        """Raise :class:`ConfigError` (one line) unless ``rows`` queries at ``q_offset`` against
        ``ctx`` key rows is a call this attention computes (see the module text)."""
        if rows < 1:
            raise ConfigError(f"attention needs at least one query row; got {rows}")
        if not 1 <= ctx <= self.seq:
            raise ConfigError(f"ctx={ctx} key rows is out of range; allowed: 1..{self.seq} "
                              "(seq: the KV cache capacity)")
        if self.causal:
            if q_offset < 0 or q_offset + rows > ctx:
                raise ConfigError(
                    f"queries at positions {q_offset}..{q_offset + rows - 1} need keys up to "
                    f"{q_offset + rows - 1}, but ctx={ctx}; allowed: q_offset + rows <= ctx")
        elif q_offset != 0:
            raise ConfigError(
                f"bidirectional attention takes one whole sentence at q_offset 0; got "
                f"q_offset={q_offset}")
