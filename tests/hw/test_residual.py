"""The residual add on Amaranth's simulator: bit-exact with the golden model under stalls
(each input stalled on its own), within its bound of float64, bad configs rejected."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from llmloom.hw.blocks.residual import ResidualConfig
from llmloom.hw.config import ConfigError
from llmloom.hw.numeric import quantize_multiplier
from llmloom.sim.blocks.residual import ResidualHarness
from llmloom.sim.golden.residual import residual_bitexact, residual_float
from llmloom.sim.harness import TensorError
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

STALLS = ["none", "pattern", "random"]
H = ResidualHarness()


def _check(cfg, x, r, stall, seed=1):
    result = run_block(H, cfg, {"x": x, "r": r}, sim="amaranth",
                       stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    assert result.outputs["y"].dtype == np.int8
    assert np.array_equal(result.outputs["y"], residual_bitexact(cfg, x, r))
    golden = H.golden(cfg, {"x": np.asarray(x, np.int64), "r": np.asarray(r, np.int64)})
    for key in golden:
        assert np.array_equal(result.outputs[key], golden[key]), key
    return result


# (rows, length, lanes, x_scale, r_scale, extra)
CASES = [
    (5, 16, 4, 0.05, 0.003, {}),
    (3, 12, 3, 0.01, 0.01, {"rounding": "half_up"}),
    (2, 8, 8, 0.02, 0.2, {"rounding": "floor"}),
    (4, 6, 1, 1 / 16, 1 / 32, {"mult_bits": 8}),
    (1, 1, 1, 0.03, 0.07, {}),                          # length 1
    # lanes not dividing the length: the last beat of a row is padded
    (5, 13, 4, 0.05, 0.02, {}),
    (3, 3, 4, 0.01, 0.03, {}),                          # length < lanes: one beat
]


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "R{}L{}l{}".format(*c[:3]))
def test_random_rows(case, stall, rng):
    rows, length, lanes, xs, rs, extra = case
    x = rng.integers(-128, 128, (rows, length)).astype(np.int8)
    r = rng.integers(-128, 128, (rows, length)).astype(np.int8)
    cfg = H.config(dict(lanes=lanes, **extra), {"x": x, "r": r, "x_scale": xs, "r_scale": rs})
    result = _check(cfg, x, r, stall, seed=int(rng.integers(1 << 30)))
    if stall == "none":
        assert result.cycles == rows * cfg.beats + cfg.latency


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("kind", ["all_equal", "all_min", "all_max", "one_huge", "cancel",
                                  "saturating"])
def test_edge_values(kind, stall, rng):
    rows, length = 4, 8
    shape = (rows, length)
    cfg = ResidualConfig(length=length, lanes=2, x_scale=0.04, r_scale=0.01)
    if kind == "all_equal":
        x, r = np.full(shape, 77), np.full(shape, -3)
    elif kind == "all_min":
        x, r = np.full(shape, -128), np.full(shape, -128)
    elif kind == "all_max":
        x, r = np.full(shape, 127), np.full(shape, 127)
    elif kind == "one_huge":
        x, r = rng.integers(-2, 3, shape), rng.integers(-2, 3, shape)
        x[3, 7] = 127
    elif kind == "cancel":
        x = rng.integers(-31, 32, shape)
        r = -4 * x
    else:
        cfg = cfg.replace(out_scale=0.01)
        x = np.where(np.indices(shape).sum(0) % 2, 127, -128)
        r = rng.integers(-128, 128, shape)
    result = _check(cfg, x.astype(np.int8), r.astype(np.int8), stall)
    y = result.outputs["y"]
    if kind == "cancel":
        assert np.all(y == 0)
    if kind == "saturating":          # |x·x_scale| alone is >= 3.8 times the int8 range
        assert np.array_equal(y, np.where(x > 0, 127, -128))


def test_inputs_arriving_apart():
    """x offered in bursts and r every cycle (different salts of the same pattern): the block
    still pairs beat n of x with beat n of r."""
    rng = np.random.default_rng(7)
    cfg = ResidualConfig(length=8, lanes=4, x_scale=0.03, r_scale=0.05)
    x = rng.integers(-128, 128, (6, 8)).astype(np.int8)
    r = rng.integers(-128, 128, (6, 8)).astype(np.int8)
    _check(cfg, x, r, "random", seed=11)
    result = run_block(H, cfg, {"x": x, "r": r}, stalls_in=Stalls("random", 12, p=0.7),
                       stalls_out=Stalls("none"))
    assert np.array_equal(result.outputs["y"], residual_bitexact(cfg, x, r))


def test_multipliers_are_aligned_exactly():
    cfg = ResidualConfig(x_scale=0.05, r_scale=0.003, out_scale=0.04)
    mx, mr, s = cfg.multipliers
    for real, big in ((0.05 / 0.04, mx), (0.003 / 0.04, mr)):
        mult, shift = quantize_multiplier(real, cfg.mult_bits)
        assert big == mult << (s - shift)


def test_error_bound_against_float(rng):
    """|y·out − (x·xs + r·rs)| ≤ 0.5·out + 2**-mult_bits·(|x|·xs + |r|·rs), unless saturated."""
    worst = 0.0
    for xs, rs in ((0.05, 0.003), (0.01, 0.01), (1 / 16, 1 / 32), (0.2, 0.001)):
        for mult_bits in (8, 16):
            x = rng.integers(-128, 128, (200, 32))
            r = rng.integers(-128, 128, (200, 32))
            cfg = ResidualConfig(length=32, x_scale=xs, r_scale=rs, mult_bits=mult_bits)
            real = residual_float(cfg, x, r)
            # calibrated so that about a third of the sums saturate
            cfg = cfg.replace(out_scale=np.abs(real).max() / (1.5 * 127))
            out = cfg.out_scale_value
            y = residual_bitexact(cfg, x, r).astype(np.int64)
            inside = (real / out >= -128.5) & (real / out <= 127.5)
            err = np.abs(y * out - real) / out
            bound = 0.5 + 2.0 ** -mult_bits * (np.abs(x) * xs + np.abs(r) * rs) / out
            assert np.all(err[inside] <= bound[inside] + 1e-9)
            assert np.all(y[~inside & (real > 0)] == 127)
            assert np.all(y[~inside & (real < 0)] == -128)
            if mult_bits == 16:
                worst = max(worst, err[inside].max())
    assert worst <= 0.502   # the figure quoted in hw/blocks/residual.py


def test_calibrated_out_scale_and_tensor_checks(rng):
    x = rng.integers(-128, 128, (3, 8)).astype(np.int8)
    r = rng.integers(-128, 128, (3, 8)).astype(np.int8)
    cfg = H.config({}, {"x": x, "r": r, "x_scale": np.float32(0.5), "r_scale": 0.25})
    assert (cfg.length, cfg.x_scale, cfg.r_scale) == (8, 0.5, 0.25)
    assert cfg.out_scale == pytest.approx(np.abs(residual_float(cfg, x, r)).max() / 127)
    with pytest.raises(TensorError, match="tensor 'r' has shape 2×8; expected the shape of "
                                          "'x', 3×8"):
        H.prepare(cfg, {"x": x, "r": r[:2]})
    with pytest.raises(TensorError, match="missing input tensor 'r'"):
        H.prepare(cfg, {"x": x})


@pytest.mark.parametrize("bad, message", [
    (dict(lanes=65), "lanes=65 is out of range"),
    (dict(length=0), "length=0 is out of range"),
    (dict(x_scale=0.0), "x_scale=0.0 is not allowed; allowed: finite and > 0"),
    (dict(r_scale=-2.0), "r_scale=-2.0 is not allowed"),
    (dict(r_scale=math.nan), "r_scale=nan is not allowed"),
    (dict(x_scale="1/32"), "x_scale='1/32' is not a number"),
    (dict(out_scale=0.0), "out_scale=0.0 is not allowed"),
    (dict(rounding="up"), "rounding='up' is not allowed"),
    (dict(mult_bits=1), "mult_bits=1 is out of range"),
    (dict(x_scale=1.0, r_scale=1e-9, out_scale=1.0),
     "x_scale=1.0 and r_scale=1e-09 are 1e\\+09 apart, which needs 46-bit aligned"),
])
def test_config_rejects(bad, message):
    with pytest.raises(ConfigError, match=message) as info:
        ResidualConfig(**bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("stall", STALLS)
def test_padding_lanes_are_dropped(stall, rng, garbage_padding):
    """Random values in the padding lanes of both inputs' last beats change no result."""
    x = rng.integers(-128, 128, (5, 13)).astype(np.int8)
    r = rng.integers(-128, 128, (5, 13)).astype(np.int8)
    cfg = ResidualConfig(length=13, lanes=4, x_scale=0.05, r_scale=0.02, out_scale=0.06)
    seed = int(rng.integers(1 << 30))
    result = run_block(garbage_padding(H, 13), cfg, {"x": x, "r": r},
                       stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    np.testing.assert_array_equal(result.outputs["y"], residual_bitexact(cfg, x, r))


# ---- int16 streams (the wide residual stream) --------------------------------------------------
def _ints(rng, width, shape):
    hi = 1 << (width - 1)
    return rng.integers(-hi, hi, shape).astype({8: np.int8, 16: np.int16, 24: np.int32}[width])


# (x_width, r_width, out_width); an int24 branch: LLaMA's f
WIDTHS = [(16, 16, 16), (8, 16, 16), (16, 8, 16), (16, 16, 8), (8, 8, 16), (24, 16, 16)]


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("widths", WIDTHS, ids=lambda w: "x{}r{}o{}".format(*w))
def test_wide_random_rows(widths, stall, rng):
    """Each stream int8 or int16 by config: bit-exact under stalls, dtype by out_width, the
    timing unchanged."""
    xw, rw, ow = widths
    for rows, length, lanes in ((5, 16, 4), (3, 13, 4)):
        x, r = _ints(rng, xw, (rows, length)), _ints(rng, rw, (rows, length))
        tensors = {"x": x, "r": r, "x_scale": {8: 0.05, 16: 3e-4, 24: 3e-4 / 256}[xw],
                   "r_scale": 2e-4 if rw == 16 else 0.03}
        cfg = H.config(dict(lanes=lanes, x_width=xw, r_width=rw, out_width=ow, mult_bits=24),
                       tensors)
        seed = int(rng.integers(1 << 30))
        result = run_block(H, cfg, {"x": x, "r": r}, stalls_in=Stalls(stall, seed),
                           stalls_out=Stalls(stall, seed + 1))
        assert result.outputs["y"].dtype == (np.int16 if ow == 16 else np.int8)
        golden = H.golden(cfg, H.prepare(cfg, {"x": x, "r": r}))
        for key in golden:
            assert np.array_equal(result.outputs[key], golden[key]), key
        if stall == "none":
            assert result.cycles == rows * cfg.beats + cfg.latency


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("kind", ["all_min", "all_max", "saturating", "cancel", "ties"])
def test_wide_edge_values(kind, stall, rng):
    shape = (4, 8)
    cfg = ResidualConfig(length=8, lanes=2, x_scale=1 / 1024, r_scale=1 / 2048, x_width=16,
                         r_width=16, out_width=16, mult_bits=24)
    if kind == "all_min":
        x, r = np.full(shape, -32768), np.full(shape, -32768)
    elif kind == "all_max":
        x, r = np.full(shape, 32767), np.full(shape, 32767)
    elif kind == "saturating":        # |x·x_scale| alone is up to 4 times the int16 range
        cfg = cfg.replace(out_scale=1 / 4096)
        x = np.where(np.indices(shape).sum(0) % 2, 32767, -32768)
        r = rng.integers(-32768, 32768, shape)
    elif kind == "cancel":
        x = rng.integers(-8000, 8000, shape)
        r = -2 * x
    else:                             # sums exactly half-way between two outputs
        cfg = cfg.replace(out_scale=1 / 512)
        x = np.arange(-16, 16).reshape(shape)
        r = np.zeros(shape, dtype=np.int64)
    x, r = x.astype(np.int16), r.astype(np.int16)
    result = _check_wide(cfg, x, r, stall)
    y = result.outputs["y"].astype(np.int64)
    if kind == "saturating":
        real = residual_float(cfg, x, r) / cfg.out_scale_value
        assert np.array_equal(y[real > 32767.5], np.full((real > 32767.5).sum(), 32767))
        assert np.array_equal(y[real < -32768.5], np.full((real < -32768.5).sum(), -32768))
        assert (real > 32767.5).any() and (real < -32768.5).any()
    if kind == "cancel":
        assert np.all(y == 0)
    if kind == "all_min":             # the default out_scale maps the extreme sum onto ∓32767
        assert np.all(y == -32767)
    if kind == "ties":                # x/2 with x odd: half_even rounds to the even output
        want = np.rint(x.astype(np.float64) / 2).astype(np.int64)
        assert np.array_equal(y, want)


def _check_wide(cfg, x, r, stall, seed=1):
    result = run_block(H, cfg, {"x": x, "r": r}, sim="amaranth",
                       stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    assert result.outputs["y"].dtype == cfg.OUT.dtype
    assert np.array_equal(result.outputs["y"], residual_bitexact(cfg, x, r))
    return result


#: Worst measured error of an int16 output with mult_bits=24: 0.5009 (rounding alone: 0.5).
WIDE_WORST = 0.501


@pytest.mark.parametrize("widths", WIDTHS, ids=lambda w: "x{}r{}o{}".format(*w))
def test_wide_error_bound_against_float(widths, rng):
    """The module's bound, ``0.5 + 2**-mult_bits·(|x|·xs + |r|·rs)/out``, with int16 streams;
    at mult_bits=24 its second term is ~2**-24·2**15 LSB and the error within 0.501."""
    xw, rw, ow = widths
    worst = 0.0
    for xs, rs in ((3e-4, 1e-4), (1e-3, 1e-3), (1 / 16, 1 / 4096), (0.2, 0.001)):
        for mult_bits in (16, 24):
            x, r = _ints(rng, xw, (200, 32)), _ints(rng, rw, (200, 32))
            cfg = ResidualConfig(length=32, x_scale=xs, r_scale=rs, mult_bits=mult_bits,
                                 x_width=xw, r_width=rw, out_width=ow)
            real = residual_float(cfg, x, r)
            hi = cfg.OUT.max
            cfg = cfg.replace(out_scale=np.abs(real).max() / (1.5 * hi))
            out = cfg.out_scale_value
            y = residual_bitexact(cfg, x, r).astype(np.int64)
            assert residual_bitexact(cfg, x, r).dtype == cfg.OUT.dtype
            inside = (real / out >= -hi - 1.5) & (real / out <= hi + 0.5)
            err = np.abs(y * out - real) / out
            ax, ar = np.abs(x.astype(np.int64)), np.abs(r.astype(np.int64))
            bound = 0.5 + 2.0 ** -mult_bits * (ax * xs + ar * rs) / out
            assert np.all(err[inside] <= bound[inside] + 1e-9)
            assert np.all(y[~inside & (real > 0)] == hi)
            assert np.all(y[~inside & (real < 0)] == -hi - 1)
            if mult_bits == 24:
                worst = max(worst, err[inside].max())
    assert worst <= (WIDE_WORST if ow == 16 else 0.502)


def test_wide_defaults_and_checks(rng):
    """The default out_scale covers the extreme int16 sums; a wrong dtype or range for the
    configured width is one TensorError line."""
    cfg = ResidualConfig(x_scale=0.01, r_scale=0.03, x_width=16, r_width=8, out_width=16)
    assert cfg.out_scale_value == pytest.approx((32768 * 0.01 + 128 * 0.03) / 32767)
    assert ResidualConfig(x_width=16, r_width=16).out_scale_value == pytest.approx(
        32768 * (1 / 16) / 127)
    x16 = _ints(rng, 16, (2, 64))
    with pytest.raises(TensorError, match=re.escape("tensor 'x' has dtype int16; expected "
                                                    "int8 (x_width=16 takes int16)")):
        H.prepare(ResidualConfig(), {"x": x16, "r": x16.astype(np.int8)})
    with pytest.raises(TensorError, match="tensor 'r' has dtype int32; expected int16"):
        H.prepare(ResidualConfig(x_width=16, r_width=16), {"x": x16, "r": x16.astype(np.int32)})
    with pytest.raises(ConfigError, match="out_width=12 is not allowed; allowed: 8 | 16"):
        ResidualConfig(out_width=12)
