"""Cycle formulas of single kernels, vectorised over design points (numpy arrays).

The formulas are the block configs' own (``GemmConfig.cycles_np``, ``GemvConfig.cycles_np``:
the same closed forms that :mod:`llmloom.perf.cycles` evaluates for one config, held to the
RTL's simulated cycles); this module adds what the explorer chooses around them (input lanes,
padding) and :func:`two_pass_row_cycles_np`, the paper's row-reduction unit.
"""

from __future__ import annotations

import numpy as np

from ..hw.blocks.gemm_config import GemmConfig
from ..hw.blocks.gemv import GemvConfig

__all__ = ["gemm_cycles_np", "gemm_parts_np", "gemv_cycles_np", "gemm_lanes", "gemm_lanes_np",
           "pv_lanes_np", "pad_to", "divisors_upto", "two_pass_row_cycles_np"]


def _cdiv(a, b):
    return -(-a // b)


def gemm_parts_np(rows, cols, k, n, lanes, m):
    """``(fill, compute, tail)`` of the output-stationary GEMM for an m×k by k×n product:
    :meth:`~llmloom.hw.blocks.gemm_config.GemmConfig.parts_np`.

    All arguments broadcast; integers. ``fill + compute + tail`` equals
    :func:`llmloom.perf.cycles.gemm_cycles`. ``compute`` is what repeats when the same array
    runs several independent products back to back (attention heads).
    """
    return GemmConfig.parts_np(rows, cols, k, n, lanes, m)


def gemm_cycles_np(rows, cols, k, n, lanes, m):
    """Cycles of the ``hw`` GEMM (see :func:`llmloom.perf.cycles.gemm_cycles`), vectorised:
    :meth:`~llmloom.hw.blocks.gemm_config.GemmConfig.cycles_np`."""
    return GemmConfig.cycles_np(rows, cols, k, n, lanes, m)


def gemv_cycles_np(rows, cols, k, n, m=1, lanes=None):
    """Cycles of the ``hw`` GEMV (:func:`llmloom.perf.cycles.gemv_cycles`), vectorised, for
    ``m`` vectors of length k on ``rows``×``cols`` MACs
    (:meth:`~llmloom.hw.blocks.gemv.GemvConfig.cycles_np`).

    The engine splits K over its rows (an adder tree sums them) and N over its columns, so one
    vector takes ``ceil(k/rows)·ceil(n/cols)`` steps at full use of every MAC, after its
    ``ceil(k/lanes)`` input beats; ``lanes`` defaults to gcd(rows, k).

    Returns
    -------
    (total, first) : arrays
        All cycles, and cycles to the first output chunk (what a consumer waits for).
    """
    lanes = (np.gcd(np.asarray(rows, dtype=np.int64), np.asarray(k, dtype=np.int64))
             if lanes is None else lanes)
    return GemvConfig.cycles_np(rows, cols, k, n, lanes, m)


def two_pass_row_cycles_np(length, lanes):
    """Cycles of one row of ``length`` through the spatial model's row-reduction unit (softmax,
    norm): the paper's two passes over the row, ``ceil(length/lanes)`` beats each (statistics,
    then scale), plus 8 cycles of pipeline. This is the paper's unit, not our row kernel
    (:meth:`~llmloom.hw.blocks.rowkernel.RowKernelConfig.cycles_np`, which overlaps one
    row's output pass with the next row's input and has its own stage counts); the spatial
    model keeps it. Arguments broadcast."""
    return 2 * _cdiv(length, lanes) + 8


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
    work = _cdiv(int(n), cols) * GemmConfig.tile_steps_of(rows, cols, int(k))
    out = np.full(np.broadcast(rows, cols).shape, divs[-1], dtype=np.int64)
    chosen = np.zeros(out.shape, dtype=bool)
    for d in divs:
        ok = ~chosen & (rows * (int(k) // d) <= work)
        out = np.where(ok, d, out)
        chosen |= ok
    return out
