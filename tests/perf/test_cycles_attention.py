"""The cycle prediction of attention (the pipeline model, ``perf/pipeline.py``) equals the
cycles its RTL takes (stall-free) for every chunk size — decode steps, chunks of one token
tile and chunks of several, where P·V's tiles overlap the softmax's later rows, bidirectional
sentences shorter than seq — across gearbox ratios, head counts, array sizes, V cache write
rates and a seq that lanes does not divide."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.blocks.attention_config import AttentionConfig
from llmloom.perf.cycles import BLOCK_CYCLES, attention_cycles
from llmloom.sim.runner import run_block

BASE = dict(d_model=8, heads=2, seq=8, lanes=2, qk_rows=2, qk_cols=2, pv_rows=2, pv_cols=2,
            causal=True, score_scale=0.05)

# (config changes, rows): rows <= min(qk_rows, pv_rows), each GEMM sees one token tile
ONE_TILE = [
    ({}, 1), ({}, 2),
    (dict(qk_cols=4), 2),                                   # score gearbox narrows
    (dict(qk_cols=1), 1),                                   # score gearbox widens
    (dict(pv_cols=4), 2), (dict(pv_cols=1), 2),             # output gearbox both ways
    (dict(lanes=4, qk_cols=8, pv_cols=2), 1),               # two V cache writes per beat
    (dict(qk_rows=4, pv_rows=4), 3),
    (dict(d_model=12, heads=3, qk_rows=3, qk_cols=8, pv_rows=4, pv_cols=4), 3),
    (dict(causal=False, seq=4, qk_cols=4, qk_rows=4, pv_rows=4), 4),   # bidirectional
    (dict(d_model=16, heads=2, seq=16, lanes=4, qk_cols=4, pv_cols=8, pv_rows=1), 1),
]

# chunks longer than one token tile of Q·Kᵀ or P·V (the former sum of phases over-estimated
# these by up to 21 %)
SEVERAL_TILES = [
    ({}, 5), ({}, 8),
    (dict(qk_rows=4, pv_rows=4), 8),
    (dict(qk_cols=4), 8), (dict(pv_cols=4), 7), (dict(pv_cols=1), 6),
    (dict(qk_cols=8, qk_rows=1), 7),                         # one-row Q·Kᵀ tiles
    (dict(qk_rows=3, pv_rows=1), 8),                         # partial tiles, one-row P·V
    (dict(lanes=4, qk_cols=8, pv_cols=2), 8),
    (dict(d_model=12, heads=3, qk_rows=3, qk_cols=8, pv_rows=4, pv_cols=4), 8),
    (dict(causal=False, seq=8, qk_rows=3, pv_rows=3), 8),   # bidirectional
]

# bidirectional sentences shorter than seq (the keys past them masked: same arrays, fewer
# rows), and a seq that lanes does not divide (score rows with a padded last beat)
SHORT_SENTENCES = [
    (dict(causal=False), 3), (dict(causal=False), 5),
    (dict(causal=False, qk_rows=3, pv_rows=3, qk_cols=4), 7),
    (dict(causal=False, d_model=16, lanes=4, qk_cols=4, pv_cols=4), 5),
    (dict(causal=False, d_model=16, seq=6, lanes=4, qk_cols=4, pv_cols=4), 5),
    (dict(causal=False, d_model=16, seq=6, lanes=4, qk_cols=4, pv_cols=4), 6),
    (dict(causal=True, d_model=16, seq=6, lanes=4, qk_cols=4, pv_cols=2, qk_rows=4), 4),
]


def _measure(cfg, rows, rng):
    t = {n: rng.integers(-128, 128, (rows, cfg.d_model), dtype=np.int8) for n in "qkv"}
    return run_block("attention", cfg, t).cycles


@pytest.mark.parametrize("changes, rows", ONE_TILE + SEVERAL_TILES + SHORT_SENTENCES,
                         ids=lambda v: str(v))
def test_prediction_equals_simulation(changes, rows, rng):
    cfg = AttentionConfig(**{**BASE, **changes})
    assert _measure(cfg, rows, rng) == attention_cycles(cfg, rows)


@pytest.mark.slow
@pytest.mark.parametrize("changes, rows", [
    (dict(d_model=64, heads=4, seq=64, lanes=8, qk_rows=8, qk_cols=8, pv_rows=8, pv_cols=8),
     40),
    (dict(d_model=16, heads=2, seq=64, lanes=2, qk_rows=2, qk_cols=4), 20),
    (dict(d_model=16, heads=1, seq=32, lanes=1, qk_rows=4, qk_cols=8, pv_rows=3, pv_cols=8),
     17),
    (dict(d_model=16, heads=2, seq=32, qk_rows=1, pv_rows=5, pv_cols=4), 13),
], ids=["8x8-l40", "seq64-l20", "lanes1-l17", "pv5-l13"])
def test_long_chunks_equal_simulation(changes, rows, rng):
    cfg = AttentionConfig(**{**BASE, **changes})
    assert _measure(cfg, rows, rng) == attention_cycles(cfg, rows)


def test_registered():
    assert BLOCK_CYCLES["attention"] is attention_cycles
    with pytest.raises(ValueError, match="rows=0"):
        attention_cycles(AttentionConfig(), 0)


@pytest.mark.parametrize("changes, rows", [
    (dict(head_engines=2), 1),
    (dict(head_engines=2), 6),
    (dict(d_model=16, heads=4, head_engines=2, qk_cols=4, pv_cols=1), 5),
    (dict(d_model=16, heads=4, head_engines=4, lanes=4, qk_cols=8, pv_cols=2), 3),
    (dict(causal=False, seq=4, head_engines=2, qk_cols=4, qk_rows=4, pv_rows=4), 4),
    (dict(causal=False, head_engines=2), 3),                # a sentence shorter than seq
], ids=lambda v: str(v))
def test_head_engines_equal_simulation(changes, rows, rng):
    """Heads in parallel (``head_engines`` > 1): rounds of engines in lock step."""
    cfg = AttentionConfig(**{**BASE, **changes})
    assert _measure(cfg, rows, rng) == attention_cycles(cfg, rows)
