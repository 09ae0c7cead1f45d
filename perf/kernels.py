"""Cycle formulas of single kernels, vectorised over design points (numpy arrays).

The formulas are the block configs' own (``GemmConfig.cycles_np``, ``GemvConfig.cycles_np``:
the same closed forms that :mod:`llmloom.perf.cycles` evaluates for one config, held to the
RTL's simulated cycles); this module adds what the explorer chooses around them (input lanes,
padding) and :func:`two_pass_row_cycles_np`, the row-reduction units' one-row latency.
"""

from __future__ import annotations

import numpy as np

from ..hw.blocks.gemm_config import GemmConfig
from ..hw.blocks.gemv import GemvConfig
from ..hw.blocks.norm import NormConfig
from ..hw.blocks.softmax import SoftmaxConfig

__all__ = ["gemm_cycles_np", "gemm_parts_np", "gemv_cycles_np", "gemm_lanes", "gemm_lanes_np",
           "pv_lanes_np", "pad_to", "divisors_upto", "two_pass_row_cycles_np",
           "ROW_UNITS", "row_drain_cycles"]


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


#: The ``hw`` row kernel of each row-reduction unit of the spatial model.
ROW_UNITS = {"softmax": SoftmaxConfig, "norm": NormConfig}


def row_drain_cycles(unit):
    """The drain latency of a row-reduction unit (``softmax``, ``norm``): cycles from a row's
    last input beat to its last output beat beyond the output pass's own beats, from the
    ``hw`` block's config: the statistics latency and the record queue
    (:meth:`~llmloom.hw.blocks.rowkernel.RowKernelConfig.row_gap`), the output stages
    (``EMIT_STAGES``) and the output register. Softmax 10 + 2 + 1 + 1 = 14, norm 8 + 2 + 4 +
    1 = 15 cycles (the same for LayerNorm and RMSNorm)."""
    cfg = ROW_UNITS[unit]
    return cfg.row_gap() + cfg.EMIT_STAGES + 1


def two_pass_row_cycles_np(length, lanes, unit):
    """Cycles of one row of ``length`` through a row-reduction unit (softmax, norm) on its
    own: two passes over the row, ``ceil(length/lanes)`` beats each (statistics, then
    scale), plus the unit's drain latency (:func:`row_drain_cycles`). This is the ``hw``
    row kernel's one-row latency (``RowKernelConfig.cycles_np(length, lanes, 1)``); the
    spatial model adds it once to the unit's stream of beats. Arguments broadcast."""
    return 2 * _cdiv(length, lanes) + row_drain_cycles(unit)


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
