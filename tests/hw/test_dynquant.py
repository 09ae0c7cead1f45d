"""Dynamic per-row quantisation on Amaranth's simulator: bit-exact with the golden model under
stalls (including a consumer that is slow to take the exponents), the golden model's exponent
the smallest that fits, its error within half a step, and bad configs rejected in one line."""

from __future__ import annotations

import re

import numpy as np
import pytest

from llmloom.hw.blocks.dynquant import DynQuantConfig
from llmloom.hw.config import ConfigError
from llmloom.sim.blocks.dynquant import DynQuantHarness
from llmloom.sim.golden.dynquant import dynquant_bitexact, row_exponents
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

STALLS = ["none", "pattern", "random"]
H = DynQuantHarness()


def _rows(rng, rows, length, width=16):
    """Rows of every magnitude (each row scaled down by a random power of two), and the edge
    rows: all zero, all minimum, all maximum, one element at each threshold's edges."""
    lo, hi = -(1 << (width - 1)), 1 << (width - 1)
    x = rng.integers(lo, hi, (rows, length)) >> rng.integers(0, width, (rows, 1))
    edges = [np.zeros(length), np.full(length, lo), np.full(length, hi - 1),
             np.r_[127, -np.ones(length - 1)], np.r_[-128, np.zeros(length - 1)],
             np.r_[np.zeros(length - 1), 254], np.r_[np.zeros(length - 1), 255]]
    for r, row in enumerate(edges[:rows]):
        x[r] = row
    return x.astype(np.int16 if width <= 16 else np.int32)


def _check(cfg, x, stall, seed=1):
    result = run_block(H, cfg, {"x": x}, sim="amaranth", stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    golden = H.golden(cfg, H.prepare(cfg, {"x": x}))
    for key in golden:
        assert np.array_equal(result.outputs[key], golden[key]), key
    return result


# (rows, length, lanes, extra config)
CASES = [
    (9, 16, 4, {}),
    (8, 12, 3, {"rounding": "half_up"}),
    (7, 6, 1, {"rounding": "floor"}),
    (7, 1, 1, {}),                                  # length 1
    (8, 13, 4, {}),                                 # padded last beat
    (7, 3, 4, {}),                                  # one padded beat per row
    (7, 20, 8, {"in_width": 12, "out_width": 4}),
]


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"R{c[0]}L{c[1]}l{c[2]}")
def test_random_rows(case, stall, rng):
    rows, length, lanes, extra = case
    cfg = DynQuantConfig(length=length, lanes=lanes, **extra)
    x = _rows(rng, rows, length, cfg.in_width)
    x = np.clip(x, cfg.IN.min, cfg.IN.max)
    result = _check(cfg, x, stall, seed=int(rng.integers(1 << 20)))
    if stall == "none":
        assert result.cycles == cfg.cycles(rows)


@pytest.mark.parametrize("stall", ["pattern", "random"])
def test_padding_lanes_are_left_out(stall, rng, garbage_padding):
    cfg = DynQuantConfig(length=13, lanes=4)
    x = _rows(rng, 6, 13) >> 8          # small rows: junk in the padding would raise e
    h = garbage_padding(H, cfg.length)
    result = run_block(h, cfg, {"x": x}, stalls_in=Stalls(stall, 3), stalls_out=Stalls(stall, 4))
    golden = H.golden(cfg, H.prepare(cfg, {"x": x}))
    for key in golden:
        assert np.array_equal(result.outputs[key], golden[key]), key


def test_exponent_is_the_smallest_that_fits(rng):
    cfg = DynQuantConfig(length=8, lanes=4)
    x = _rows(rng, 400, 8)
    y, e = dynquant_bitexact(cfg, x)
    amax = np.abs(x.astype(np.int64)).max(axis=1)
    assert e.min() == 0 and e.max() == cfg.e_max == 8
    fits = amax <= 127 << e
    assert np.all(fits | (e == cfg.e_max))
    assert np.all((e == 0) | (amax > 127 << (e - 1)))        # one less would not fit
    # ±127, but −128 for −32768 itself (exactly −128·2**8: no rounding, no saturation)
    assert np.all((np.abs(y) <= 127) | (x == -32768))
    # no saturation where the row fits: every output is the rounding of x / 2**e
    err = np.abs(y * np.exp2(e)[:, None] - x)
    assert np.all(err[fits] <= np.exp2(e - 1)[fits, None])
    # and the rows past 127·2**8 saturate at ±127 (the top 0.8 % of int16)
    top = ~fits[:, None] & (x != -32768)
    assert top.any() and np.abs(y[top]).max() == 127


def test_exponent_edges():
    cfg = DynQuantConfig(length=2, lanes=2)
    x = np.array([[0, 0], [127, -127], [128, 0], [0, -128], [254, 1], [255, 0],
                  [-32768, 0], [32512, 0], [32513, 0]], dtype=np.int16)
    assert row_exponents(cfg, x).tolist() == [0, 0, 1, 1, 1, 2, 8, 8, 8]
    y, _ = dynquant_bitexact(cfg, x)
    assert y[:, 0].tolist() == [0, 127, 64, 0, 127, 64, -128, 127, 127]


@pytest.mark.parametrize("mode, expected", [
    ("half_even", [2, 2, -2, -2, 3]), ("half_up", [2, 3, -1, -2, 3]),
    ("floor", [1, 2, -2, -3, 3])])
def test_rounding_modes_on_ties(mode, expected):
    cfg = DynQuantConfig(length=6, lanes=3, rounding=mode)
    # amax 254 → e = 1: 3/2, 5/2, −3/2, −5/2 are ties; 6/2 is exact
    x = np.array([[3, 5, -3, -5, 6, 254]], dtype=np.int16)
    y, e = dynquant_bitexact(cfg, x)
    assert e.tolist() == [1] and y[0, :5].tolist() == expected
    _check(cfg, x, "random")


def test_slow_exponent_consumer_stalls_nothing_lost(rng):
    """The exponent stream stalled much more often than the rows: rows wait, none is lost."""
    cfg = DynQuantConfig(length=4, lanes=4)
    x = _rows(rng, 12, 4)
    result = run_block(H, cfg, {"x": x}, stalls_in=Stalls("none", 1),
                       stalls_out=Stalls("random", 2))
    golden = H.golden(cfg, H.prepare(cfg, {"x": x}))
    for key in golden:
        assert np.array_equal(result.outputs[key], golden[key]), key


@pytest.mark.parametrize("bad, message", [
    ({"out_width": 16}, "out_width=16 is not allowed with in_width=16"),
    ({"in_width": 32}, "in_width=32"),
    ({"rounding": "up"}, "rounding='up'"),
    ({"length": 0}, "length=0"),
])
def test_config_rejects(bad, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        DynQuantConfig(**bad)
    assert "\n" not in str(info.value)


def test_tensor_checks():
    from llmloom.sim.harness import TensorError
    cfg = DynQuantConfig(length=4, lanes=4, in_width=12)
    with pytest.raises(TensorError, match="outside int12"):
        H.prepare(cfg, {"x": np.full((1, 4), 4000, dtype=np.int16)})
    with pytest.raises(TensorError, match="dtype int32"):
        H.prepare(cfg, {"x": np.zeros((1, 4), dtype=np.int32)})
