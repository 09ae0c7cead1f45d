"""The cycle predictions of the element-wise blocks equal the cycles their RTL takes
(stall-free): ``rows × ceil(length/lanes)`` beats at one per cycle plus the pipeline latency."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.blocks.activation import GeluConfig, SiluConfig
from llmloom.hw.blocks.requant import RequantConfig
from llmloom.hw.blocks.residual import ResidualConfig
from llmloom.perf.cycles import (
    BLOCK_CYCLES,
    gelu_cycles,
    requant_cycles,
    residual_cycles,
    silu_cycles,
)
from llmloom.sim.runner import run_block

# (rows, length, lanes)
SHAPES = [(1, 1, 1), (3, 8, 2), (6, 16, 16), (17, 12, 3), (2, 40, 4),
          (5, 13, 4), (4, 3, 8)]       # lanes not dividing the length: ceil(length/lanes) beats


def _tensors(block, rng, rows, length):
    if block == "requant":
        return {"acc": rng.integers(-(1 << 30), 1 << 30, (rows, length)).astype(np.int32)}
    x = rng.integers(-128, 128, (rows, length)).astype(np.int8)
    if block == "residual":
        return {"x": x, "r": rng.integers(-128, 128, (rows, length)).astype(np.int8)}
    return {"x": x}


CONFIGS = {"requant": RequantConfig, "residual": ResidualConfig, "gelu": GeluConfig,
           "silu": SiluConfig}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "R{}L{}l{}".format(*s))
@pytest.mark.parametrize("block", sorted(CONFIGS))
def test_prediction_equals_simulation(block, shape, rng):
    rows, length, lanes = shape
    cfg = CONFIGS[block](length=length, lanes=lanes)
    result = run_block(block, cfg, _tensors(block, rng, rows, length), sim="amaranth")
    assert result.cycles == BLOCK_CYCLES[block](cfg, rows)


def test_registered_by_name_and_full_rate():
    assert BLOCK_CYCLES["requant"] is requant_cycles
    assert BLOCK_CYCLES["residual"] is residual_cycles
    assert BLOCK_CYCLES["gelu"] is gelu_cycles
    assert BLOCK_CYCLES["silu"] is silu_cycles
    # steady state: one beat (lanes elements) per cycle, whatever the latency
    cfg = GeluConfig(length=768, lanes=8)
    assert gelu_cycles(cfg, 1001) - gelu_cycles(cfg, 1000) == 768 // 8
    with pytest.raises(ValueError, match="rows=0 must be >= 1"):
        requant_cycles(RequantConfig(), 0)


@pytest.mark.parametrize("rows, length, lanes, bias", [(4, 12, 3, True), (5, 8, 8, True),
                                                      (3, 16, 4, False), (4, 13, 4, True)])
def test_requant_with_channel_table(rows, length, lanes, bias, rng):
    """Per-channel constants that change from beat to beat come from a ROM: one more stage."""
    cfg = RequantConfig(length=length, lanes=lanes, acc_scale=tuple(rng.uniform(1e-4, 1e-3,
                                                                                length)),
                        bias=tuple(range(length)) if bias else None)
    assert cfg.latency == 3 + (cfg.beats > 1)
    result = run_block("requant", cfg, _tensors("requant", rng, rows, length), sim="amaranth")
    assert result.cycles == requant_cycles(cfg, rows)


@pytest.mark.parametrize("block", sorted(CONFIGS))
def test_closed_form_over_arrays(block):
    """The configs' closed form (what the explorer evaluates over arrays of designs) gives, for
    each shape, the cycles of that shape's config; before calibration the latency is the
    shape's (a requantiser with a channel table whenever a row has more than one beat)."""
    rows, length, lanes = (np.array(x) for x in zip(*SHAPES, strict=True))
    cls = CONFIGS[block]
    got = cls.cycles_np(length, lanes, rows)
    assert got.shape == rows.shape
    for i, (r, n, la) in enumerate(SHAPES):
        cfg = cls(length=n, lanes=la)
        want = BLOCK_CYCLES[block](cfg, r)
        if block == "requant":      # per-tensor by default: no channel table
            want += int(-(-n // la) > 1)
            assert cfg.latency == cls.shape_latency(n, la, per_channel=False)
        else:
            assert cfg.latency == cls.shape_latency(n, la)
        assert got[i] == want
