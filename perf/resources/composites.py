"""The composite blocks, each the sum of its parts (the leaf estimators of :mod:`.blocks`) and
its own buffers and stream plumbing, with no constant fitted to it: the attention, the layers
(walking their description, one part per stage, queue and fork) and the board core."""

from __future__ import annotations

import numpy as np

from .blocks import (
    activation_parts,
    dynquant_parts,
    estimator,
    fork_bill,
    gearbox_bill,
    gemm_parts,
    gemv_parts,
    kvcache_parts,
    norm_parts,
    queue_bill,
    requant_parts,
    residual_parts,
    softmax_parts,
)
from .logic import logic_bill
from .mapping import (
    Bill,
    family_of,
    map_memory,
    multiplier_dsps,
)

__all__ = ["attention_parts", "rope_parts", "mul_parts", "estimate_hostlink_parts",
           "fetched_memory_parts"]


def _sub(parts, prefix, sub, k=1):
    for key, bill in sub.items():
        parts[f"{prefix}.{key}"] = bill * k if k != 1 else bill
    return parts


def attention_parts(cfg, fam):
    from ...hw.blocks.kvcache import KvCacheConfig
    LN, S, E = cfg.lanes, cfg.seq, getattr(cfg, "head_engines", 1)
    EB = cfg.d_model // E // LN
    parts = {}
    # each engine its bank: 1/E of the heads, and of the KV heads (grouped-query attention)
    kv = KvCacheConfig.of(cfg)
    cache = kv.replace(d_model=cfg.d_model // E, heads=cfg.heads // E,
                       kv_heads=kv.kv_heads and kv.kv_heads // E)
    engine = {}
    _sub(engine, "cache", kvcache_parts(cache, fam))
    _sub(engine, "qk", gemm_parts(cfg.qk_gemm, fam))
    _sub(engine, "pv", gemm_parts(cfg.pv_gemm, fam))
    engine["score_gear"] = gearbox_bill(fam, 32, cfg.qk_cols, LN)
    _sub(engine, "score_requant", requant_parts(cfg.score_requant, fam,
                                                cfg.qk_gemm.acc_width))
    smax = cfg.softmax(0)
    if cfg.causal:
        smax = smax.replace(runtime_offset=True)
    _sub(engine, "softmax", softmax_parts(smax, fam))
    engine["out_gear"] = gearbox_bill(fam, 32, cfg.pv_cols, LN)
    _sub(engine, "out_requant", requant_parts(cfg.out_requant, fam, cfg.pv_gemm.acc_width))
    engine["qbuf"] = map_memory(fam, LN * 8, S * EB).bill()
    engine["obuf"] = map_memory(fam, LN * cfg.out_width, S * EB).bill()     # int8 or int16
    # (the phase control and the Q/output walks are left out: a few hundred cells, within the
    # tolerance; nothing is fitted to the composite, its synthesis checks the sum)
    _sub(parts, "engine", engine, E)
    return parts


@estimator("attention")
def _attention(cfg, fam):
    return attention_parts(cfg, fam)


def _linear(cfg, name, fam):
    """A layer's linear stage: engine (weights fixed at elaboration, so its weight memory is a
    ROM and its loader is gone) → gearbox → requant."""
    g = cfg.linear(name)
    parts = {}
    if cfg.engine == "gemv":
        _sub(parts, "gemv", gemv_parts(g, fam, rom_weights=True))
    else:
        _sub(parts, "gemm", gemm_parts(g, fam, rom_weights=True))
    parts["gear"] = gearbox_bill(fam, 32, g.cols, cfg.lanes)
    # the re-quantiser's input: the accumulators, or at W4 the grouped GEMM's shifted int32
    _sub(parts, "requant", requant_parts(cfg.requant(name), fam, min(g.acc_width,
                                                                    g.OUT_WIDTH)))
    return parts


def fetched_memory_parts(cfg, fam, banks=1):
    """The memories a :class:`~llmloom.hw.layers.fetched.FetchedLayer` of ``cfg`` writes at
    run time in its linear stages, ``banks`` each (``layer_banks``): each engine's weights
    (a RAM, where the baked layer's is a ROM; at W4 the codes and the group tables) and,
    with a channel table, its re-quantiser's
    per-lane multipliers and biases (``banks·beats`` words each field). Two banks charge
    them all twice. The layer's other memories (one bank) and logic are the layer's
    (``estimate_parts("llama-block", ...)``); the reader and loaders are not modelled."""
    parts = {}
    for name in cfg.linears:
        g, rq = cfg.linear(name), cfg.requant(name)
        if cfg.engine == "gemv":
            parts[f"{name}.wmem"] = gemv_parts(g, fam)["wmem"]
        else:
            gemm = gemm_parts(g, fam, weight_banks=banks)
            parts[f"{name}.wmem"] = gemm["wmem"]
            if g.weight_groups:         # W4: the group tables are loaded too
                parts[f"{name}.gmem"] = gemm["gmem"]
        if rq.channel_table:
            fields = {"mult": rq.mult_width_value if rq.per_channel else 0,
                      "bias": rq.ACC.width if rq.bias is not None else 0}
            for field, bits in fields.items():
                if bits:
                    parts[f"{name}.channels_{field}"] = map_memory(
                        fam, rq.lanes * bits, banks * rq.beats).bill()
    return parts


def rope_parts(cfg, fam):
    """:class:`~llmloom.hw.blocks.rope.Rope`: its cos/sin table (a ROM of ``positions ·
    d_head/lanes`` words of ``lanes/2`` (C, S) pairs; only the bit columns that vary count),
    the four products of each pair (the int8 or int16 input × a signed table entry) and its
    fitted logic (its registers, sums, rounding: ``rope`` in :data:`~.logic.LOGIC`, zero
    until synthesis baselines of the block are fitted)."""
    pairs = cfg.lanes // 2
    word = 0
    for table in cfg.table:
        bits = table & ((1 << cfg.table_width) - 1)     # two's complement, as stored
        for j in range(pairs):
            # lane pair j of every word: entries j, j + pairs, ... of each position
            column = bits[:, j::pairs].ravel()
            word += bin(int(np.bitwise_or.reduce(column ^ column[0]))).count("1")
    dsp = 4 * pairs * multiplier_dsps(fam, cfg.IN.width, True, cfg.table_width, True)
    return {"logic": logic_bill("rope", fam, lane=cfg.lanes),
            "multiply": Bill(dsp=dsp),
            "table": map_memory(fam, word, cfg.positions * cfg.head_beats, rom=True).bill()}


def mul_parts(cfg, fam):
    """:class:`~llmloom.hw.blocks.mul.Mul`: per lane the product ``a·b`` and its product by
    the loaded multiplier word (``mult_width_value`` bits, whatever the calibrated value), and
    its fitted logic (``mul`` in :data:`~.logic.LOGIC`, zero until synthesis baselines of the
    block are fitted; ``mul_wide`` for int16 streams)."""
    dsp = (multiplier_dsps(fam, cfg.a_width, True, cfg.b_width, True)
           + multiplier_dsps(fam, cfg.ab_width, True, cfg.mult_width_value, False))
    parts = {"logic": logic_bill("mul", fam, lane=cfg.lanes),
             "multiply": Bill(dsp=cfg.lanes * dsp)}
    wide = cfg.a_width + cfg.b_width + cfg.out_width - 24
    if wide:
        parts["wide_logic"] = logic_bill("mul_wide", fam, lane_bits=cfg.lanes * wide)
    return parts


@estimator("rope")
def _rope(cfg, fam):
    return rope_parts(cfg, fam)


@estimator("mul")
def _mul(cfg, fam):
    return mul_parts(cfg, fam)


@estimator("gpt2-block", "bert-layer", "llama-block")
def _layer(cfg, fam):
    """The layer as its RTL composes it (:mod:`llmloom.hw.layers.layer`, walking the
    description): a part per stage, a queue per skip, a fork per tensor of several readers
    (their beats as wide as the tensor: int16 on the dynamic scheme's residual stream); per
    quant stage (the dynamic scheme) the row exponents to each linear stage reading it, a fork
    when there are several and a queue each; with row exponents on the residual stream
    (``stream_exponent``) each residual's row quantiser (``<residual>_rows``, a DynQuant on
    the wide sum) and each row-exponent tensor's exponents to its readers, a fork when there
    are several and a queue on each skip."""
    from ...hw.layers.common import exponent_depth, row_exponent_depth, skip_depth
    desc = cfg.description

    def beat(tensor):
        return cfg.lanes * cfg.width(tensor) + 2

    parts, queues, forks = {}, {}, Bill()
    for st in desc.stages:
        if st.kind == "linear":
            _sub(parts, st.name, _linear(cfg, st.name, fam))
        else:
            part = {"attention": attention_parts, "norm": norm_parts, "act": activation_parts,
                    "residual": residual_parts, "quant": dynquant_parts, "rope": rope_parts,
                    "mul": mul_parts}[st.kind]
            _sub(parts, st.name, part(cfg.stage_config(st.name), fam))
        if st.kind == "residual":
            # the skip: the residual's second input
            queues[f"skip_{st.name}"] = queue_bill(fam, beat(st.inputs[1]), skip_depth(cfg, st))
            rows_q = cfg.row_quant(st.name)
            if rows_q is not None:
                _sub(parts, f"{st.name}_rows", dynquant_parts(rows_q, fam))
        if st.kind == "quant":
            readers = [r for r, _ in desc.readers(st.output)]
            e_beat = cfg.quant(st.name).e_width + 2
            if len(readers) > 1:
                forks = forks + fork_bill(len(readers))
            for r in readers:
                queues[f"exp_{r.name}"] = queue_bill(fam, e_beat, exponent_depth(cfg, r))
    for tensor in desc.row_exponents:
        if not cfg.row_exponent(tensor):
            continue
        readers = desc.readers(tensor)
        if len(readers) + (tensor == desc.output) > 1:
            forks = forks + fork_bill(len(readers) + (tensor == desc.output))
        for r, _ in readers:
            depth = row_exponent_depth(cfg, r)
            if depth:
                queues[f"rexp_{r.name}"] = queue_bill(
                    fam, cfg.stream_exponent.bit_length() + 2, depth)
    for tensor in desc.tensors:
        readers = len(desc.readers(tensor)) + (tensor == desc.output)
        if readers > 1:
            forks = forks + fork_bill(readers)      # taken-flags only, whatever the beat
    parts |= queues
    parts["forks"] = forks
    return parts


def estimate_hostlink_parts(cfg, max_rows, family):
    """``{part: Bill}`` of ``llmloom.boards.hostlink.HostLink``: the GEMM of ``cfg`` (weights
    loaded through its stream), the on-chip activation and output memories of ``max_rows``
    rows, the UART and the protocol's shift registers (fitted: :data:`LOGIC` ``hostlink``)."""
    fam = family_of(family)
    a_bits = cfg.lanes * cfg.a_width + 2
    w_bits = cfg.cols * cfg.w_width + 2
    o_bits = cfg.cols * 32 + 2
    ab, wb, ob = (-(-b // 8) for b in (a_bits, w_bits, o_bits))
    # the byte shift registers: activation, weight and the transmit one (output beat, 16 bytes
    # of identity or the 4-byte cycle count, the widest)
    sr_bits = 8 * (ab + wb + max(ob, 16, 4))
    parts = {}
    _sub(parts, "gemm", gemm_parts(cfg, fam))
    parts["amem"] = map_memory(fam, a_bits, max_rows * cfg.k_beats).bill()
    parts["omem"] = map_memory(fam, o_bits, max_rows * cfg.n_tiles).bill()
    parts["control"] = logic_bill("hostlink", fam, sr_bits=sr_bits)
    return parts
