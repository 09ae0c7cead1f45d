"""Cycle predictions for each ``hw`` block from its config and tensor shapes.

This is the cross-check hook: tests in ``tests/perf`` hold these numbers against the cycles the
RTL takes in simulation. The spatial model of a whole layer is built on them.
"""

from __future__ import annotations

__all__ = ["gemm_cycles", "BLOCK_CYCLES", "predicts"]

#: block name → function(cfg, *shape_args) → cycles (shape_args from the block's harness)
BLOCK_CYCLES = {}


def predicts(name):
    """Register a block's cycle prediction under the block's name."""
    def register(fn):
        BLOCK_CYCLES[name] = fn
        return fn
    return register



@predicts("gemm")
def gemm_cycles(cfg, m):
    """Cycles of :class:`~llmloom.hw.blocks.gemm.Gemm` for an ``m``×k by k×n product, from the
    first activation beat accepted to the last output beat, with weights preloaded, inputs
    offered every cycle and the output always ready.

    The array needs a whole token tile (``rows`` rows of ``k``) before it starts; after that
    token tiles follow each other with no bubble, each taking ``n_tiles × tile_steps`` steps, as
    long as the next tile's ``rows·k/lanes`` input beats arrive within that time. After the last
    tile a flush brings the results out, and the last token tile's rows drain at one beat
    (``cols`` outputs) per cycle.
    """
    if m < 1:
        raise ValueError(f"m={m} must be >= 1")
    r, nt, kb = cfg.rows, cfg.n_tiles, cfg.k_beats
    tiles = -(-m // r)
    last_rows = m - (tiles - 1) * r
    first_fill = min(m, r) * kb
    # A token tile can only start once its input has arrived: input is the bottleneck when one
    # tile's beats outnumber the steps of the tile before it.
    per_tile = max(nt * cfg.tile_steps, r * kb)
    compute = (tiles - 1) * per_tile + nt * cfg.tile_steps
    if tiles > 1 and r * kb > nt * cfg.tile_steps:
        # the last tile may be shorter than rows, so its input arrives sooner
        compute -= r * kb - max(nt * cfg.tile_steps, last_rows * kb)
    # Plus one cycle for the activation memory's read and one for the output memory's read.
    return first_fill + compute + cfg.flush_steps + last_rows * nt + 1


@predicts("gemv")
def gemv_cycles(cfg, m):
    """Cycles of :class:`~llmloom.hw.blocks.gemv.Gemv` for ``m`` token rows (first activation
    beat accepted to last output beat; weights preloaded, input every cycle, output ready).

    A row can start once its ``k/lanes`` beats have arrived; it then issues
    ``n_tiles × k_words`` steps, and rows follow each other back to back unless their input
    is slower. Results leave two cycles after their last step (memory read, accumulate).
    """
    if m < 1:
        raise ValueError(f"m={m} must be >= 1")
    steps = cfg.n_tiles * cfg.k_words
    return cfg.k_beats + (m - 1) * max(steps, cfg.k_beats) + steps + 2



def _eltwise_cycles(cfg, rows):
    """Element-wise row kernels (requant, residual, gelu, silu): one beat per cycle through a
    pipeline of ``cfg.latency`` registered stages, so ``rows × beats`` beats take that many
    cycles plus the pipeline's latency (first beat accepted to last beat delivered)."""
    if rows < 1:
        raise ValueError(f"rows={rows} must be >= 1")
    return rows * cfg.beats + cfg.latency


@predicts("requant")
def requant_cycles(cfg, rows):
    """Cycles of :class:`~llmloom.hw.blocks.requant.Requant` on ``rows`` rows (stall-free)."""
    return _eltwise_cycles(cfg, rows)


@predicts("residual")
def residual_cycles(cfg, rows):
    """Cycles of :class:`~llmloom.hw.blocks.residual.Residual` on ``rows`` rows (stall-free,
    both inputs offered every cycle)."""
    return _eltwise_cycles(cfg, rows)


@predicts("gelu")
def gelu_cycles(cfg, rows):
    """Cycles of :class:`~llmloom.hw.blocks.activation.Gelu` on ``rows`` rows (stall-free)."""
    return _eltwise_cycles(cfg, rows)


@predicts("silu")
def silu_cycles(cfg, rows):
    """Cycles of :class:`~llmloom.hw.blocks.activation.Silu` on ``rows`` rows (stall-free)."""
    return _eltwise_cycles(cfg, rows)


def row_kernel_cycles(cfg, rows):
    """Cycles of a row-reduction kernel (:mod:`llmloom.hw.blocks.rowkernel`: softmax,
    layernorm, rmsnorm) on ``rows`` rows of ``B = length/lanes`` beats, from the first input
    beat accepted to the last output beat, inputs offered every cycle, output always ready.

    The input never waits (the row buffer covers the statistics latency), so rows enter at
    one beat per cycle; a row's first beat is read ``gap = STATS_LATENCY + 2`` cycles after
    its last beat entered, and leaves ``EMIT_STAGES + 2`` cycles after that read. The last
    row's last beat therefore leaves ``B + gap + EMIT_STAGES + 1`` cycles after it entered:
    exact for every row length (short rows included: II = 1 always)."""
    if rows < 1:
        raise ValueError(f"rows={rows} must be >= 1")
    return rows * cfg.beats + cfg.beats + cfg.gap + cfg.EMIT_STAGES + 1


@predicts("softmax")
def softmax_cycles(cfg, rows):
    """Cycles of :class:`~llmloom.hw.blocks.softmax.Softmax` (see :func:`row_kernel_cycles`)."""
    return row_kernel_cycles(cfg, rows)


@predicts("layernorm")
def layernorm_cycles(cfg, rows):
    """Cycles of :class:`~llmloom.hw.blocks.norm.Norm` as layernorm."""
    return row_kernel_cycles(cfg, rows)


@predicts("rmsnorm")
def rmsnorm_cycles(cfg, rows):
    """Cycles of :class:`~llmloom.hw.blocks.norm.Norm` as rmsnorm."""
    return row_kernel_cycles(cfg, rows)


@predicts("kvcache")
def kvcache_cycles(cfg, requests):
    """Cycles of :class:`~llmloom.hw.blocks.kvcache.KvCache` for ``requests`` back-to-back
    head readouts (first request taken to last beat out; outputs always ready). K_hᵀ and V_h
    stream out in parallel, one word per cycle each, two cycles after the request (read port,
    output register); the next request is taken one cycle after the longer readout's last
    read."""
    if requests < 1:
        raise ValueError(f"requests={requests} must be >= 1")
    return requests * (max(cfg.kt_beats, cfg.vh_beats) + 1) + 1


def kvcache_append_cycles(cfg, rows):
    """Cycles to append ``rows`` positions to the KV cache (K and V offered every cycle):
    a K beat per cycle, a V row in ``v_row_cycles`` (one per segment)."""
    return rows * cfg.row_cycles


def _gearbox_span(beats, in_lanes, out_lanes):
    """Cycles from a :class:`~llmloom.hw.stream.Gearbox`'s first input beat (of ``beats``
    offered back to back, output always ready) to its last output beat."""
    if in_lanes == out_lanes:
        return beats - 1                       # a wire
    if in_lanes > out_lanes:
        return beats * (in_lanes // out_lanes) + 1
    return beats                               # widening: one register after the last


@predicts("attention")
def attention_cycles(cfg, rows):
    """Cycles of :class:`~llmloom.hw.blocks.attention.Attention` for one tensor of ``rows``
    query rows (a prefill chunk or, with ``rows = 1``, a decode step; the position does not
    change the count), from the first input beat to the last output beat, inputs offered
    every cycle and the output always ready.

    The sum of the phases: the input phase (K, V appended at the cache's rate, Q buffered),
    then per head the weight loads (the longer of K_hᵀ and V_h) and the chain of the blocks'
    own predictions — :func:`gemm_cycles` of Q·Kᵀ, the score gearbox and requant latency,
    the softmax row latency (:func:`row_kernel_cycles`), :func:`gemm_cycles` of P·V, the
    output gearbox and requant latency — plus the control overheads measured on the RTL (4
    cycles from the last weight beat to the first Q beat, 1 from a head's last output to the
    next head's request, 2 from the input phase's last beat to the first request, 3 before
    the first output beat).

    Exact when each GEMM sees one token tile (``rows <= min(qk_rows, pv_rows)``: every decode
    step, and short chunks): the stages then follow each other. For longer chunks the
    P·V GEMM's tiles overlap the softmax's later rows, which this sum does not credit: there
    it is an estimate, above the RTL by 0–13 % in ``tests/perf/test_cycles_attention.py``
    and by 21 % for a 40-row chunk on 8×8 arrays (d_model 64, 4 heads, seq 64).
    """
    from ..hw.blocks.kvcache import KvCacheConfig

    if rows < 1:
        raise ValueError(f"rows={rows} must be >= 1")
    kv = KvCacheConfig.of(cfg)
    qk, pv, sm = cfg.qk_gemm, cfg.pv_gemm, cfg.softmax(0)
    beats = cfg.d_model // cfg.lanes
    request = max(rows * beats, rows * kv.v_row_cycles) + 1      # cycle of the first request
    for _ in range(cfg.heads):
        first_q = request + max(kv.kt_beats, kv.vh_beats) + 4
        qk_out = rows * qk.n_tiles
        scores = (first_q + gemm_cycles(qk, rows) - qk_out
                  + _gearbox_span(qk_out, cfg.qk_cols, cfg.lanes) + cfg.score_requant.latency)
        probs = scores + row_kernel_cycles(sm, 1) - sm.beats          # the last row's latency
        pv_out = rows * pv.n_tiles
        pv_last = probs + gemm_cycles(pv, rows) - rows * pv.k_beats
        done = (pv_last - pv_out + 1 + _gearbox_span(pv_out, cfg.pv_cols, cfg.lanes)
                + cfg.out_requant.latency)
        request = done + 1
    return done + 3 + rows * beats
