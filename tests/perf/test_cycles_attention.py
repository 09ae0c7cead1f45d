"""The cycle prediction of attention equals the cycles its RTL takes (stall-free) whenever each
GEMM sees one token tile (every decode step, short chunks), across gearbox ratios, head counts
and array sizes; longer chunks are over-estimated by a bounded margin."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.blocks.attention_config import AttentionConfig
from llmloom.perf.cycles import BLOCK_CYCLES, attention_cycles
from llmloom.sim.runner import run_block

BASE = dict(d_model=8, heads=2, seq=8, lanes=2, qk_rows=2, qk_cols=2, pv_rows=2, pv_cols=2,
            causal=True, score_scale=0.05)

# (config changes, rows) with rows <= min(qk_rows, pv_rows)
EXACT = [
    ({}, 1), ({}, 2),
    (dict(qk_cols=4), 2),                                   # score gearbox narrows
    (dict(qk_cols=1), 1),                                   # score gearbox widens
    (dict(pv_cols=4), 2), (dict(pv_cols=1), 2),             # output gearbox both ways
    (dict(lanes=4, qk_cols=8, pv_cols=2), 1),
    (dict(qk_rows=4, pv_rows=4), 3),
    (dict(d_model=12, heads=3, qk_rows=3, qk_cols=8, pv_rows=4, pv_cols=4), 3),
    (dict(causal=False, seq=4, qk_cols=4, qk_rows=4, pv_rows=4), 4),   # bidirectional
    (dict(d_model=16, heads=2, seq=16, lanes=4, qk_cols=4, pv_cols=8, pv_rows=1), 1),
]


def _measure(cfg, rows, rng):
    t = {n: rng.integers(-128, 128, (rows, cfg.d_model), dtype=np.int8) for n in "qkv"}
    return run_block("attention", cfg, t).cycles


@pytest.mark.parametrize("changes, rows", EXACT, ids=lambda v: str(v))
def test_prediction_equals_simulation(changes, rows, rng):
    cfg = AttentionConfig(**{**BASE, **changes})
    assert _measure(cfg, rows, rng) == attention_cycles(cfg, rows)


@pytest.mark.parametrize("changes, rows", [({}, 5), ({}, 8), (dict(qk_rows=4, pv_rows=4), 8)],
                         ids=lambda v: str(v))
def test_longer_chunks_are_over_estimated_a_little(changes, rows, rng):
    cfg = AttentionConfig(**{**BASE, **changes})
    measured = _measure(cfg, rows, rng)
    assert measured <= attention_cycles(cfg, rows) <= 1.15 * measured


def test_registered():
    assert BLOCK_CYCLES["attention"] is attention_cycles
    with pytest.raises(ValueError, match="rows=0"):
        attention_cycles(AttentionConfig(), 0)
