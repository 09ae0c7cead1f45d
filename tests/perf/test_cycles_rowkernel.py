"""The cycle prediction of the row kernels (softmax, layernorm, rmsnorm, dynquant) equals the cycles
measured on Amaranth's simulator (stall-free), for short and long rows: II = 1 beat per cycle
whatever the row length, so each extra row costs exactly ``ceil(length/lanes)`` cycles."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.blocks.dynquant import DynQuantConfig
from llmloom.hw.blocks.norm import LayerNormConfig, RMSNormConfig
from llmloom.hw.blocks.softmax import SoftmaxConfig
from llmloom.perf.cycles import (
    BLOCK_CYCLES,
    dynquant_cycles,
    layernorm_cycles,
    rmsnorm_cycles,
    row_kernel_cycles,
    softmax_cycles,
)
from llmloom.sim.runner import run_block

CONFIGS = {"softmax": SoftmaxConfig, "layernorm": LayerNormConfig, "rmsnorm": RMSNormConfig,
           "dynquant": DynQuantConfig}

# (rows, length, lanes): one beat per row (shorter than every latency), a few beats, many
SHAPES = [(1, 4, 4), (7, 4, 4), (5, 1, 1), (4, 12, 3), (3, 64, 2), (9, 32, 8), (2, 96, 4),
          # lanes not dividing the length: ceil(length/lanes) beats, the last one padded
          (6, 13, 4), (4, 3, 4), (3, 33, 8)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "R{}L{}l{}".format(*s))
@pytest.mark.parametrize("block", sorted(CONFIGS))
def test_prediction_matches_simulation(block, shape, rng):
    rows, length, lanes = shape
    cfg = CONFIGS[block](length=length, lanes=lanes, causal=True) if block == "softmax" \
        else CONFIGS[block](length=length, lanes=lanes)
    x = rng.integers(-128, 128, (rows, length), dtype=np.int8)
    if block == "dynquant":                 # int16 rows
        x = (x.astype(np.int16) << rng.integers(0, 8, (rows, 1))).astype(np.int16)
    result = run_block(block, cfg, {"x": x})
    assert result.cycles == BLOCK_CYCLES[block](cfg, rows)


def test_registered_and_full_rate():
    assert BLOCK_CYCLES["softmax"] is softmax_cycles
    assert BLOCK_CYCLES["layernorm"] is layernorm_cycles
    assert BLOCK_CYCLES["rmsnorm"] is rmsnorm_cycles
    assert BLOCK_CYCLES["dynquant"] is dynquant_cycles
    for cls in CONFIGS.values():
        for length, lanes in [(1, 1), (8, 8), (768, 16), (8192, 64), (13, 4), (3, 64)]:
            cfg = cls(length=length, lanes=lanes)
            assert row_kernel_cycles(cfg, 11) - row_kernel_cycles(cfg, 10) == cfg.beats
            assert row_kernel_cycles(cfg, 1) == cfg.row_latency
    assert SoftmaxConfig(length=64, lanes=4).row_latency == 2 * 16 + 14
    assert LayerNormConfig(length=64, lanes=4).row_latency == 2 * 16 + 15
    assert DynQuantConfig(length=64, lanes=4).row_latency == 2 * 16 + 7
    with pytest.raises(ValueError, match="rows=0"):
        row_kernel_cycles(SoftmaxConfig(), 0)
