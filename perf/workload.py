"""The workload of a transformer layer: per-operator MACs, weight, activation and KV-cache bytes,
for prefill (prompt of l tokens) and decode (one new token against a context of s cached tokens),
for any batch and quantisation.

Operators of one layer, in dataflow order, named as the ``hw`` layer names its stages:
``q k v`` projections, ``qk`` = Q·Kᵀ, ``softmax``, ``pv`` = softmax·V, ``o`` output projection,
``norm1`` (residual add + norm), ``f1`` (and ``fg``, the gate of a gated FFN), the activation
named after its function (``gelu``, ``relu`` or ``silu``: the model's
:attr:`~llmloom.perf.models.ModelSpec.activation`), ``f2``, ``norm2``. Embeddings and the LM
head are outside the N layers and left out (see README).
"""

from __future__ import annotations

import dataclasses

from ..hw.blocks.gemm_config import WEIGHT_GROUP, group_bits
from .errors import ConfigError, unknown
from .models import get_model

__all__ = ["Quant", "QUANTS", "get_quant", "layer_quant", "Op", "Workload", "layer_ops", "workload",
           "LINEAR", "ATTENTION", "NONLINEAR"]

LINEAR = ("q", "k", "v", "o", "f1", "fg", "f2")
ATTENTION = ("qk", "pv")
#: The non-linear operators; a layer has one of the activations gelu, relu, silu (its model's).
NONLINEAR = ("softmax", "norm1", "gelu", "relu", "silu", "norm2")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Quant:
    """Bits of weights, activations and KV cache, and what the arithmetic is.

    ``w_bits`` is a weight's code; with ``grouped`` weights every group of :attr:`group`
    inputs of an output channel carries tables too (its scale, and at W4 its minimum), which
    are read with the weights: :attr:`weight_bits` is what a weight costs in memory, the bits
    that size weight bytes everywhere (off-chip traffic, capacity, on-chip storage, a GPU's
    reads). The group's size and tables are ``hw``'s (``hw.blocks.gemm_config``), which are
    GGUF's: Q4_1 (4 + 32/32 = 5 bits a weight) and Q8_0 (what a GPU running llama.cpp's
    Q4_1/Q8_0 kernels reads too)."""

    name: str
    w_bits: int
    a_bits: int
    kv_bits: int
    integer: bool
    gpu_compute: str        # the GPU tensor-core type that runs it: "int8" or "fp16"
    source: str
    grouped: bool = False   # weights in hw's groups (GGUF Q8_0/Q4_1), else per channel

    @property
    def group(self):
        """Weights a group (``hw``'s ``WEIGHT_GROUP``), or ``None`` per channel."""
        return WEIGHT_GROUP if self.grouped else None

    @property
    def group_bits(self):
        """Bits of one group's tables (``hw``'s ``group_bits``); 0 per channel."""
        return group_bits(self.w_bits) if self.grouped else 0

    @property
    def weight_bits(self):
        """Bits a weight costs in memory: its code plus its share of its group's tables."""
        return self.w_bits + (self.group_bits / self.group if self.grouped else 0)


QUANTS = {q.name: q for q in (
    Quant(name="W8A8", w_bits=8, a_bits=8, kv_bits=8, integer=True, gpu_compute="int8",
          grouped=True,
          source="int8 weights in groups of 32 with a scale (GGUF's Q8_0) and int8 "
                 "activations, as hw builds them and `llmloom generate` runs"),
    Quant(name="W4A8", w_bits=4, a_bits=8, kv_bits=8, integer=True, gpu_compute="int8",
          grouped=True,
          source="4-bit weights in groups of 32 with a scale and a minimum (GGUF's Q4_1) and "
                 "int8 activations, as hw builds them"),
    Quant(name="W8A8-channel", w_bits=8, a_bits=8, kv_bits=8, integer=True,
          gpu_compute="int8",
          source="int8 weights with a scale per output channel (SmoothQuant-style) and int8 "
                 "activations, as the paper's GPT-2 (hw: weight_groups=false)"),
    Quant(name="W4A8-channel", w_bits=4, a_bits=8, kv_bits=8, integer=True,
          gpu_compute="int8",
          source="int4 weights with a scale per output channel, int8 activations, as the "
                 "paper's BERT and its group's published designs"),
    Quant(name="W4A16", w_bits=4, a_bits=16, kv_bits=16, integer=True, gpu_compute="fp16",
          source="int4 weights, 16-bit activations (GPTQ/AWQ-style; fp16 math on GPUs)"),
    Quant(name="fp16", w_bits=16, a_bits=16, kv_bits=16, integer=False, gpu_compute="fp16",
          source="IEEE half precision throughout"),
)}


def get_quant(name):
    if isinstance(name, Quant):
        return name
    for key, q in QUANTS.items():
        if key.lower() == str(name).lower():
            return q
    raise unknown("quantisation", name, QUANTS)


def layer_quant(cfg):
    """The name of the quantisation in :data:`QUANTS` that ``cfg`` (an ``hw`` ``LayerConfig``)
    builds, so perf reads what the hardware reads, the groups' tables included: its weights'
    bits and grouping (``cfg.grouped``: W4 as GGUF's Q4_1, W8 with ``weight_groups`` as Q8_0,
    else a scale per channel) with hw's int8 activations: ``W4A8``, ``W8A8`` or
    ``W8A8-channel``."""
    found = [q.name for q in QUANTS.values()
             if (q.w_bits, q.a_bits, q.grouped) == (cfg.weight_bits, 8, cfg.grouped)]
    if len(found) != 1:
        raise ConfigError(f"weight_bits={cfg.weight_bits} grouped={cfg.grouped}: perf has "
                          f"{len(found)} quantisations for it; allowed: one of "
                          + ", ".join(q.name for q in QUANTS.values() if q.a_bits == 8))
    return found[0]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Op:
    """One operator of one layer.

    A GEMM-like operator is ``count`` independent products of an ``m``×``k`` by a ``k``×``n``
    matrix (``count`` = batch × heads for attention, 1 for linear kernels whose ``m`` already
    folds in the batch). A non-linear operator touches ``elements`` values.
    """

    name: str
    kind: str                  # "linear" | "attention" | "nonlinear"
    m: int = 0
    k: int = 0
    n: int = 0
    count: int = 1
    elements: int = 0
    weight_bytes: float = 0.0  # weights read (linear kernels)
    act_in_bytes: float = 0.0
    act_out_bytes: float = 0.0
    kv_bytes: float = 0.0      # KV cache written (prefill) or read (decode)

    @property
    def macs(self):
        return self.count * self.m * self.k * self.n

    @property
    def flops(self):
        return 2 * self.macs if self.kind != "nonlinear" else 0


def _check_lengths(model, mode, seq, context, batch):
    if mode not in ("prefill", "decode"):
        raise ConfigError(f"mode={mode!r} is not allowed; allowed: prefill | decode")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch={batch!r} must be an integer >= 1")
    if mode == "prefill":
        if not isinstance(seq, int) or not 1 <= seq <= model.max_positions:
            raise ConfigError(f"seq={seq!r} is out of range for {model.name}; allowed: "
                              f"1..{model.max_positions}")
    else:
        if not model.decoder:
            raise ConfigError(f"model {model.name} is an encoder and has no decode phase; "
                              "allowed: --mode prefill")
        if not isinstance(context, int) or not 0 <= context < model.max_positions:
            raise ConfigError(f"context={context!r} is out of range for {model.name}; allowed: "
                              f"0..{model.max_positions - 1}")


def layer_ops(model, mode="prefill", *, seq=512, context=512, batch=1, quant="W8A8"):
    """The operators of one transformer layer.

    Parameters
    ----------
    model : ModelSpec or str
    mode : {"prefill", "decode"}
    seq : int
        Prompt length l (prefill).
    context : int
        Tokens s already in the KV cache (decode); the new token attends to s + 1 keys.
    batch : int
        Independent sequences B.
    quant : Quant or str

    Returns
    -------
    list of Op, in dataflow order.
    """
    model, q = get_model(model), get_quant(quant)
    _check_lengths(model, mode, seq, context, batch)
    d, dkv, dff, h, dh = model.d_model, model.d_kv, model.d_ff, model.n_heads, model.d_head
    wb, ab, kvb = q.weight_bits / 8, q.a_bits / 8, q.kv_bits / 8
    rows = batch * seq if mode == "prefill" else batch
    keys = seq if mode == "prefill" else context + 1

    def lin(name, k, n):
        return Op(name=name, kind="linear", m=rows, k=k, n=n, weight_bytes=k * n * wb,
                  act_in_bytes=rows * k * ab, act_out_bytes=rows * n * ab)

    def nl(name, elements):
        return Op(name=name, kind="nonlinear", elements=elements,
                  act_in_bytes=elements * ab, act_out_bytes=elements * ab)

    qrows = seq if mode == "prefill" else 1
    kv_cache = 2 * batch * keys * dkv * kvb if mode == "decode" else 2 * rows * dkv * kvb
    ops = [lin("q", d, d), lin("k", d, dkv), lin("v", d, dkv),
           Op(name="qk", kind="attention", m=qrows, k=dh, n=keys, count=batch * h,
              act_in_bytes=batch * h * qrows * dh * ab, act_out_bytes=batch * h * qrows * keys * ab,
              kv_bytes=kv_cache / 2 if mode == "decode" else kv_cache),
           nl("softmax", batch * h * qrows * keys),
           Op(name="pv", kind="attention", m=qrows, k=keys, n=dh, count=batch * h,
              act_in_bytes=batch * h * qrows * keys * ab, act_out_bytes=rows * d * ab,
              kv_bytes=kv_cache / 2 if mode == "decode" else 0.0),
           lin("o", d, d), nl("norm1", rows * d), lin("f1", d, dff)]
    if model.gated_ffn:
        ops.append(lin("fg", d, dff))
    ops += [nl(model.activation, rows * dff), lin("f2", dff, d), nl("norm2", rows * d)]
    return ops


@dataclasses.dataclass(frozen=True, kw_only=True)
class Workload:
    """Totals of a whole model (N layers) for one prefill or one decode step."""

    model: str
    mode: str
    seq: int
    context: int
    batch: int
    quant: str
    ops: tuple                 # one layer's ops
    n_layers: int

    @property
    def macs_per_layer(self):
        return sum(o.macs for o in self.ops)

    @property
    def macs(self):
        return self.n_layers * self.macs_per_layer

    @property
    def weight_bytes(self):
        return self.n_layers * sum(o.weight_bytes for o in self.ops)

    @property
    def kv_bytes(self):
        return self.n_layers * sum(o.kv_bytes for o in self.ops)

    @property
    def activation_bytes(self):
        """Bytes crossing between operators (on chip in a spatial design)."""
        return self.n_layers * sum(o.act_out_bytes for o in self.ops)

    def by_op(self):
        """``{name: (macs, weight_bytes, act_out_bytes, kv_bytes)}`` per layer."""
        return {o.name: (o.macs, o.weight_bytes, o.act_out_bytes, o.kv_bytes) for o in self.ops}


def workload(model, mode="prefill", *, seq=512, context=512, batch=1, quant="W8A8"):
    """Per-operator and total work of the model for one prefill or one decode step."""
    model, q = get_model(model), get_quant(quant)
    ops = layer_ops(model, mode, seq=seq, context=context, batch=batch, quant=q)
    return Workload(model=model.name, mode=mode, seq=seq, context=context, batch=batch,
                    quant=q.name, ops=tuple(ops), n_layers=model.n_layers)
