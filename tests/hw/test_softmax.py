"""The row softmax on Amaranth's simulator: bit-exact with the golden model under stalls; the
golden model within 1/1250 of float64 softmax; bad configs rejected."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmloom.hw.blocks.softmax import OUT_LEVELS, PROB, R_BITS, Softmax, SoftmaxConfig
from llmloom.hw.config import ConfigError
from llmloom.hw.stream import row_layout
from llmloom.sim.blocks.softmax import SoftmaxHarness
from llmloom.sim.golden.attention import SOFTMAX_PROB_ERROR
from llmloom.sim.golden.softmax import softmax_bitexact, softmax_float
from llmloom.sim.harness import Drive
from llmloom.sim.runner import run_block, simulate
from llmloom.sim.streams import Stalls, pack_rows, unpack_rows

STALLS = ["none", "pattern", "random"]
H = SoftmaxHarness()

#: Worst |p − p_float| in output codes (1/1023) of the bit-exact model, measured over the
#: sweeps below: 0.652 (length 64; 0.626 at length 1024). The bound is 0.5 (rounding) +
#: 1023·0.5·length/2**exp_frac <= 1/4 (exp table rounding) + ~0.04 (SOFTMAX_PROB_ERROR).
WORST_CODES = 0.68


def _check(cfg, x, stall, seed=1):
    result = run_block(H, cfg, {"x": x}, stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    expected = softmax_bitexact(cfg, x)
    assert result.outputs["y"].dtype == PROB.dtype
    np.testing.assert_array_equal(result.outputs["y"], expected)
    return result


# (rows, length, lanes, causal, causal_offset, x_scale)
SHAPES = [
    (5, 16, 4, True, 0, 1 / 16),
    (7, 12, 3, True, 2, 1 / 8),
    (4, 32, 8, False, 0, 1 / 32),
    (9, 8, 1, True, 0, 0.5),
    (3, 5, 5, False, 0, 1.0),
    (6, 4, 4, True, 1, 1 / 64),
    # lanes not dividing the length: the last beat of a row is padded
    (5, 13, 4, False, 0, 1 / 16),
    (6, 13, 4, True, 1, 1 / 8),
    (4, 3, 4, False, 0, 1 / 4),
    (4, 3, 4, True, 0, 1 / 4),
    (3, 10, 8, False, 0, 1 / 32),
]


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "R{}L{}l{}c{}o{}".format(*s[:5]))
def test_random_rows(shape, stall, rng):
    rows, length, lanes, causal, offset, xs = shape
    cfg = SoftmaxConfig(length=length, lanes=lanes, causal=causal, causal_offset=offset,
                        x_scale=xs)
    x = rng.integers(-128, 128, (rows, length), dtype=np.int8)
    _check(cfg, x, stall, seed=int(rng.integers(1 << 30)))


def _edge(kind, rng):
    if kind == "all_equal":
        return SoftmaxConfig(length=8, lanes=2), np.full((3, 8), 17)
    if kind == "one_huge":
        x = np.full((4, 8), -128)
        x[np.arange(4), [0, 3, 5, 7]] = 127
        return SoftmaxConfig(length=8, lanes=4, x_scale=1 / 8), x
    if kind == "all_min":
        return SoftmaxConfig(length=6, lanes=3, causal=True), np.full((4, 6), -128)
    if kind == "all_max":
        return SoftmaxConfig(length=6, lanes=2, x_scale=2.0), np.full((2, 6), 127)
    if kind == "length_1":
        return SoftmaxConfig(length=1, lanes=1), rng.integers(-128, 128, (5, 1))
    if kind == "causal_first_row":
        # row 0 keeps only key 0 (probability exactly 1.0 = OUT_LEVELS), row 1 two keys, ...
        return SoftmaxConfig(length=4, lanes=4, causal=True), rng.integers(-128, 128, (2, 4))
    if kind == "ascending":
        # the running max moves on every beat: the rescaled sum is exercised at each step
        return SoftmaxConfig(length=16, lanes=2, x_scale=1 / 4), np.tile(
            np.arange(-120, 120, 15), (2, 1))
    raise AssertionError(kind)


EDGES = ["all_equal", "one_huge", "all_min", "all_max", "length_1", "causal_first_row",
         "ascending"]


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("kind", EDGES)
def test_edge_cases(kind, stall, rng):
    cfg, x = _edge(kind, rng)
    result = _check(cfg, x.astype(np.int8), stall)
    y = result.outputs["y"]
    if kind == "causal_first_row":
        assert list(y[0]) == [OUT_LEVELS, 0, 0, 0]
        assert np.all(y[1, 2:] == 0)
    if kind == "all_equal":
        assert np.all(np.abs(y.astype(int) - OUT_LEVELS / 8) <= 0.5)
    if kind == "one_huge":
        assert np.all(y.max(axis=1) == OUT_LEVELS) and np.all(np.sort(y, axis=1)[:, -2] == 0)


def test_end_resets_the_causal_row_counter(rng):
    """Two tensors in one simulation: the second starts again at row 0 after `end`."""
    cfg = SoftmaxConfig(length=6, lanes=2, causal=True, causal_offset=1)
    comp = Softmax(cfg)
    x1 = rng.integers(-128, 128, (4, 6))
    x2 = rng.integers(-128, 128, (3, 6))
    layout = comp.i.payload.shape()
    assert layout == row_layout(comp.i.payload.shape()["data"].shape.elem_shape, cfg.lanes)
    drive = Drive(preload={}, timed={"i": pack_rows(layout, x1) + pack_rows(layout, x2)},
                  expect={"o": 7 * cfg.beats})
    beats, *_ = simulate(comp, drive, stalls_in=Stalls("random", 5),
                         stalls_out=Stalls("random", 6))
    y, _, end = unpack_rows(comp.o.payload.shape(), beats["o"], cfg.length)
    np.testing.assert_array_equal(y, np.vstack([softmax_bitexact(cfg, x1),
                                                softmax_bitexact(cfg, x2)]))
    assert list(np.flatnonzero(end)) == [4 * cfg.beats - 1, 7 * cfg.beats - 1]
    assert np.all(y[4, 2:] == 0) and abs(int(y[4, :2].sum()) - OUT_LEVELS) <= 1


# ---- the bit-exact model against float64 maths -------------------------------------------------
def _sweep_rows(kind, rows, length, rng):
    if kind == "uniform":
        return rng.integers(-128, 128, (rows, length))
    if kind == "normal":
        return np.clip(np.round(rng.normal(0, 30, (rows, length))), -128, 127)
    if kind == "one_max_rest_at_d":
        # one key at 127, the others all at 127 − d: every exp table entry, L−1 times over
        d = np.arange(0, 256, max(1, 256 // rows))[:rows]
        x = np.repeat((127 - d)[:, None], length, axis=1)
        x[:, rng.integers(0, length)] = 127
        return np.clip(x, -128, 127)
    if kind == "ascending":
        return np.tile(np.clip(np.round(np.linspace(-128, 127, length)), -128, 127), (rows, 1))
    raise AssertionError(kind)


@pytest.mark.parametrize("length, lanes", [(1, 1), (7, 7), (64, 4), (1024, 16), (8192, 64)])
def test_bitexact_within_bound_of_float(length, lanes, rng):
    worst = 0.0
    rows = 8 if length > 1000 else 64
    for xs in (1 / 128, 1 / 16, 1 / 4, 2.0):
        for causal in (False, True):
            cfg = SoftmaxConfig(length=length, lanes=lanes, x_scale=xs, causal=causal,
                                causal_offset=int(rng.integers(0, 3)))
            for kind in ("uniform", "normal", "one_max_rest_at_d", "ascending"):
                x = _sweep_rows(kind, rows, length, rng)
                p = softmax_bitexact(cfg, x).astype(np.float64) / OUT_LEVELS
                ref = softmax_float(x, xs, causal, cfg.causal_offset)
                worst = max(worst, float(np.abs(p - ref).max()))
                # masked keys are exactly 0, and kept ones sum to 1 within rounding
                if causal:
                    assert np.all(p[ref == 0] == 0)
    assert worst * OUT_LEVELS <= WORST_CODES
    assert worst <= SOFTMAX_PROB_ERROR


def test_exp_table_and_reciprocal_constants():
    cfg = SoftmaxConfig(length=64, lanes=4, x_scale=0.1)
    assert cfg.exp_frac == 17 and cfg.prob_shift == 25 and R_BITS == 18
    assert cfg.exp_table[0] == 1 << cfg.exp_frac
    assert cfg.exp_table[10] == round(math.exp(-1.0) * 2 ** 17)
    assert SoftmaxConfig(length=8192, lanes=64).exp_frac == 24
    assert SoftmaxConfig(length=16, lanes=4).exp_frac == 15
    assert cfg.out_scale == 1 / 1023 and OUT_LEVELS == 1023 and PROB.width == 10


@pytest.mark.parametrize("bad, message", [
    (dict(length=0), "length=0 is out of range"),
    (dict(length=16384), "length=16384 is out of range"),
    (dict(lanes=65), "lanes=65 is out of range"),
    (dict(x_scale=0.0), "x_scale=0.0 is not allowed; allowed: finite and > 0"),
    (dict(x_scale=-1.0), "x_scale=-1.0 is not allowed"),
    (dict(x_scale=float("nan")), "x_scale=nan is not allowed"),
    (dict(x_scale=float("inf")), "x_scale=inf is not allowed"),
    (dict(x_scale="big"), "x_scale='big' is not a number"),
    (dict(x_scale=float("-inf")), "x_scale=-inf is not allowed"),
    (dict(causal="yes"), "causal='yes' must be true or false"),
    (dict(causal_offset=-1), "causal_offset=-1 is out of range"),
    (dict(approximation="poly"), "unknown config field 'approximation'"),
])
def test_config_rejects(bad, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as info:
        if "approximation" in bad:
            SoftmaxConfig().replace(**bad)
        else:
            SoftmaxConfig(**bad)
    assert "\n" not in str(info.value)



@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("length, lanes, causal", [(13, 4, False), (13, 4, True),
                                                   (3, 4, False), (10, 8, False)])
def test_padding_lanes_are_left_out_of_max_and_sum(length, lanes, causal, stall, rng,
                                                   garbage_padding):
    """Random values in the padding lanes of each row's last beat change nothing: the running
    max and Σexp leave them out."""
    from llmloom.perf.cycles import softmax_cycles

    cfg = SoftmaxConfig(length=length, lanes=lanes, causal=causal, x_scale=1 / 8)
    x = rng.integers(-128, 128, (6, length), dtype=np.int8)
    x[0] = -128                 # any padding lane above -128 would become the max
    x[1] = 50
    seed = int(rng.integers(1 << 30))
    result = run_block(garbage_padding(H, length), cfg, {"x": x},
                       stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    np.testing.assert_array_equal(result.outputs["y"], softmax_bitexact(cfg, x))
    if stall == "none":
        assert result.cycles == softmax_cycles(cfg, 6)
