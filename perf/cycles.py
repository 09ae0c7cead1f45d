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
