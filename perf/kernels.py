"""Cycle formulas of single kernels, vectorised over design points (numpy arrays).

:func:`gemm_cycles_np` is :func:`llmloom.perf.cycles.gemm_cycles` (which is held to the RTL's
simulated cycles) written over arrays; a test holds the two equal. :func:`gemv_cycles_np`
models the decode GEMV engine of the paper's library (allo ``gemv.py``), which ``hw/`` does not
have yet: its constants are ours, not measured.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gemm_cycles_np", "gemm_parts_np", "gemv_cycles_np", "gemm_lanes", "gemm_lanes_np",
           "pv_lanes_np", "pad_to", "divisors_upto"]

_PIPELINE = 4   # GEMV pipeline: weight read, multiply, adder-tree register, output register
_GEMM_TAIL = None


def _gemm_tail_offset():
    """The constant part of the GEMM's tail (pipeline registers, memory reads) beyond
    ``cols + rows + last_rows·n_tiles``, read off :func:`llmloom.perf.cycles.gemm_cycles` so
    that a change of pipeline depth there carries over here (a test holds the rest equal)."""
    global _GEMM_TAIL
    if _GEMM_TAIL is None:
        from ..hw.blocks.gemm_config import GemmConfig
        from .cycles import gemm_cycles
        cfg = GemmConfig(rows=2, cols=3, k=4, n=5, lanes=1)
        # m = 1: fill k, one tile of n_tiles * tile_steps, then the tail
        _GEMM_TAIL = gemm_cycles(cfg, 1) - (4 + 2 * 4 + 3 + 2 + 1 * 2)
    return _GEMM_TAIL


def _cdiv(a, b):
    return -(-a // b)


def gemm_parts_np(rows, cols, k, n, lanes, m):
    """``(fill, compute, tail)`` of the output-stationary GEMM for an m×k by k×n product.

    All arguments broadcast; integers. ``fill + compute + tail`` equals
    :func:`llmloom.perf.cycles.gemm_cycles`. ``compute`` is what repeats when the same array
    runs several independent products back to back (attention heads).
    """
    rows, cols, k, n, lanes, m = (np.asarray(x, dtype=np.int64)
                                  for x in (rows, cols, k, n, lanes, m))
    nt = _cdiv(n, cols)
    kb = _cdiv(k, lanes)
    steps = np.maximum(np.maximum(k, cols), rows)
    tiles = _cdiv(m, rows)
    last_rows = m - (tiles - 1) * rows
    fill = np.minimum(m, rows) * kb
    tile_work = nt * steps
    per_tile = np.maximum(tile_work, rows * kb)
    compute = (tiles - 1) * per_tile + tile_work
    # the last, shorter tile's input arrives sooner when input is the bottleneck
    input_bound = (tiles > 1) & (rows * kb > tile_work)
    compute = compute - np.where(input_bound, rows * kb - np.maximum(tile_work, last_rows * kb),
                                 0)
    tail = cols + rows + last_rows * nt + _gemm_tail_offset()
    return fill, compute, tail


def gemm_cycles_np(rows, cols, k, n, lanes, m):
    """Cycles of the ``hw`` GEMM (see :func:`llmloom.perf.cycles.gemm_cycles`), vectorised."""
    fill, compute, tail = gemm_parts_np(rows, cols, k, n, lanes, m)
    return fill + compute + tail


def gemv_cycles_np(rows, cols, k, n, m=1, lanes=None):
    """Cycles of the ``hw`` GEMV (:func:`llmloom.perf.cycles.gemv_cycles`), vectorised, for
    ``m`` vectors of length k on ``rows``×``cols`` MACs.

    The engine splits K over its rows (an adder tree sums them) and N over its columns, so one
    vector takes ``ceil(k/rows)·ceil(n/cols)`` steps at full use of every MAC, after its
    ``ceil(k/lanes)`` input beats; ``lanes`` defaults to gcd(rows, k).

    Returns
    -------
    (total, first) : arrays
        All cycles, and cycles to the first output chunk (what a consumer waits for).
    """
    rows, cols, k, n, m = (np.asarray(x, dtype=np.int64) for x in (rows, cols, k, n, m))
    lanes = np.gcd(rows, k) if lanes is None else np.asarray(lanes, dtype=np.int64)
    beats = _cdiv(k, lanes)
    kw = _cdiv(k, rows)
    steps = kw * _cdiv(n, cols)
    total = beats + (m - 1) * np.maximum(steps, beats) + steps + 2
    return total, beats + kw + 2


def pad_to(k, lanes):
    """``k`` rounded up to whole beats of ``lanes`` (arrays broadcast)."""
    lanes = np.asarray(lanes, dtype=np.int64)
    return _cdiv(np.asarray(k, dtype=np.int64), lanes) * lanes


def pv_lanes_np(rows, cols, d_head, gemv):
    """Input lanes of the P·V kernel (``pv``): a width fixed by the design, never by the context.

    P·V's inner dimension is the number of keys, which changes every decode step (and with
    the prompt length), but the hardware's stream width is fixed at elaboration: the ``hw``
    attention builds P·V for its KV capacity ``seq`` (a multiple of its ``lanes``) and
    computes the entries of keys that do not exist yet as masked zero probabilities. So the
    keys are padded to whole beats of these lanes (:func:`pad_to`) and the kernel formulas
    run on the padded length. Choosing lanes among the divisors of the current key count (as
    for the linear kernels, whose k is fixed) would make the input width, and with it the
    time, jump with the count's divisibility: a GEMV on 32 rows got 32 lanes at 512 keys and
    1 lane at 513 (16 heads: 274 → 8,227 cycles).

    - GEMV (``gemv`` true): ``rows`` lanes (the widest the block allows, since the padded
      length is a multiple of rows), so one word of ``rows`` keys arrives per step and the
      engine is never input-bound.
    - GEMM: the fewest divisor L of ``d_head`` (at most 64; the ``hw`` attention's stream
      width divides d_head) with ``L · ceil(d_head/cols) ≥ rows``, i.e. one token tile's
      ``rows·k/L`` beats arrive within its ``n_tiles·k`` steps whatever k is; else the
      largest such divisor.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    divs = divisors_upto(int(d_head))
    nt = _cdiv(int(d_head), cols)
    out = np.full(np.broadcast(rows, cols).shape, divs[-1], dtype=np.int64)
    chosen = np.zeros(out.shape, dtype=bool)
    for d in divs:
        ok = ~chosen & (d * nt >= rows)
        out = np.where(ok, d, out)
        chosen |= ok
    return np.where(np.asarray(gemv, dtype=bool), rows, out)


def divisors_upto(k, limit=64):
    return [d for d in range(1, min(k, limit) + 1) if k % d == 0]


def gemm_lanes(k, rows, cols, n):
    """Input lanes for a GEMM: the fewest (a divisor of k, at most 64) that keep the array fed,
    i.e. one token tile's ``rows·k/lanes`` beats arrive within the tile's compute steps."""
    return int(gemm_lanes_np(k, np.asarray([rows]), np.asarray([cols]), n)[0])


def gemm_lanes_np(k, rows, cols, n):
    """:func:`gemm_lanes` over arrays of rows and cols (k and n scalars)."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    divs = divisors_upto(int(k))
    work = _cdiv(int(n), cols) * np.maximum(np.maximum(int(k), cols), rows)
    out = np.full(np.broadcast(rows, cols).shape, divs[-1], dtype=np.int64)
    chosen = np.zeros(out.shape, dtype=bool)
    for d in divs:
        ok = ~chosen & (rows * (int(k) // d) <= work)
        out = np.where(ok, d, out)
        chosen |= ok
    return out
