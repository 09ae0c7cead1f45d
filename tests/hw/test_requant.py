"""Re-quantisation on Amaranth's simulator: bit-exact with the golden model under stalls, the
golden model within its stated bound of float64, and bad configs rejected in one line."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmloom.hw.blocks.requant import RequantConfig, aligned_multipliers
from llmloom.hw.config import ConfigError
from llmloom.hw.numeric import quantize_multiplier, round_shift
from llmloom.sim.blocks.requant import RequantHarness
from llmloom.sim.golden.requant import requant_bitexact, requant_float
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

STALLS = ["none", "pattern", "random"]
H = RequantHarness()
I32 = np.iinfo(np.int32)


def _check(cfg, acc, stall, seed=1):
    result = run_block(H, cfg, {"acc": acc}, sim="amaranth", stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    y = result.outputs["y"]
    assert y.dtype == np.int8
    assert np.array_equal(y, requant_bitexact(cfg, acc))
    golden = H.golden(cfg, {"acc": np.asarray(acc, dtype=np.int64)})
    for key in golden:
        assert np.array_equal(result.outputs[key], golden[key]), key
    return result


def _cfg(rng, kind, length, lanes, **kw):
    if kind == "per_tensor":
        return RequantConfig(length=length, lanes=lanes, acc_scale=3.1e-5, out_scale=0.02, **kw)
    scales = tuple(rng.uniform(1e-5, 2e-4, length))
    bias = tuple(int(b) for b in rng.integers(-(1 << 16), 1 << 16, length))
    return RequantConfig(length=length, lanes=lanes, acc_scale=scales, bias=bias,
                         out_scale=0.02, **kw)


# (kind, rows, length, lanes, extra config)
CASES = [
    ("per_tensor", 5, 16, 4, {}),
    ("per_channel", 4, 12, 3, {}),
    ("per_channel", 3, 8, 8, {"rounding": "half_up"}),
    ("per_channel", 6, 6, 1, {"rounding": "floor", "mult_bits": 12}),
    ("per_tensor", 1, 1, 1, {}),                               # length 1
    # lanes not dividing the length: the last beat of a row is padded
    ("per_channel", 5, 13, 4, {}),                             # channel table, padded beat
    ("per_tensor", 4, 10, 8, {}),
    ("per_channel", 3, 3, 4, {}),                              # length < lanes: one beat
]


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}_R{c[1]}L{c[2]}l{c[3]}")
def test_random_rows(case, stall, rng):
    kind, rows, length, lanes, extra = case
    cfg = _cfg(rng, kind, length, lanes, **extra)
    acc = rng.integers(-(1 << 20), 1 << 20, (rows, length)).astype(np.int32)
    result = _check(cfg, acc, stall, seed=int(rng.integers(1 << 30)))
    if stall == "none":
        assert result.cycles == rows * cfg.beats + cfg.latency


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("kind", ["all_equal", "all_min", "all_max", "one_huge", "zeros",
                                  "saturating"])
def test_edge_values(kind, stall, rng):
    rows, length = 4, 8
    cfg = _cfg(rng, "per_channel", length, 2)
    if kind == "all_equal":
        acc = np.full((rows, length), 12345)
    elif kind == "all_min":
        acc = np.full((rows, length), I32.min)
    elif kind == "all_max":
        acc = np.full((rows, length), I32.max)
    elif kind == "one_huge":
        acc = rng.integers(-1000, 1000, (rows, length))
        acc[1, 5] = I32.max
    elif kind == "zeros":
        acc = np.zeros((rows, length))
    else:
        acc = np.where(np.indices((rows, length)).sum(0) % 2, 1 << 24, -(1 << 24))
    _check(cfg, acc.astype(np.int32), stall)


def test_extremes_with_extreme_bias_and_default_scale():
    # int32 min plus the most negative bias: the 33-bit sum, and out_scale from the fallback
    length = 4
    cfg = RequantConfig(length=length, lanes=2, bias=(I32.min, I32.max, 0, -1))
    acc = np.array([[I32.min, I32.max, I32.min, I32.max]] * 2, dtype=np.int32)
    y = _check(cfg, acc, "random").outputs["y"]
    assert y[0, 0] == -127 and y[0, 1] == 127   # ±2**32 maps onto ±127


@pytest.mark.parametrize("mode, expected", [
    ("half_even", [-2, -2, -1, 0, 0, 1, 2, 2]),
    ("half_up", [-2, -1, -1, 0, 1, 1, 2, 3]),
    ("floor", [-3, -2, -1, -1, 0, 1, 1, 2]),
])
def test_rounding_modes_on_ties(mode, expected):
    """acc_scale/out_scale = 1/2 exactly: odd accumulators land on ties."""
    cfg = RequantConfig(length=8, lanes=4, acc_scale=0.5, out_scale=1.0, rounding=mode)
    acc = np.array([[-5, -3, -2, -1, 1, 2, 3, 5]], dtype=np.int32)
    y = _check(cfg, acc, "pattern").outputs["y"]
    assert y.tolist() == [expected]


def test_aligned_multipliers_equal_per_channel_rounding(rng):
    """One common shift gives exactly what each channel's own (mult, shift) gives."""
    reals = list(rng.uniform(1e-6, 3.0, 40))
    mults, s = aligned_multipliers(reals, 16)
    v = rng.integers(-(1 << 32), 1 << 32, 2000)
    for real, big in zip(reals, mults, strict=True):
        mult, shift = quantize_multiplier(real, 16)
        assert big == mult << (s - shift)
        for mode in ("half_even", "half_up", "floor"):
            assert np.array_equal(round_shift(v * big, s, mode), round_shift(v * mult, shift,
                                                                             mode))


@pytest.mark.parametrize("kind", ["per_tensor", "per_channel"])
def test_error_bound_against_float(kind, rng):
    """|y·out_scale − (acc+bias)·acc_scale| ≤ (0.5 + 128·2**-mult_bits)·out_scale unless
    saturated; saturated outputs are the int8 bound with the float value beyond it."""
    length = 32
    worst = 0.0
    for mult_bits in (8, 16):
        cfg = _cfg(rng, kind, length, 4, mult_bits=mult_bits)
        acc = rng.integers(-(1 << 23), 1 << 23, (400, length))
        # an output scale that leaves about a third of the values saturating
        cfg = cfg.replace(out_scale=np.abs(requant_float(cfg, acc)).max() / (1.5 * 127))
        real = requant_float(cfg, acc)
        y = requant_bitexact(cfg, acc).astype(np.int64)
        out = cfg.out_scale_value
        inside = (real / out >= -128.5) & (real / out <= 127.5)
        err = np.abs(y * out - real)[inside] / out
        bound = 0.5 + 128 * 2.0 ** -mult_bits
        assert err.max() <= bound + 1e-9
        assert inside.mean() > 0.3 and (~inside).any()
        assert np.all(y[~inside & (real > 0)] == 127) and np.all(y[~inside & (real < 0)] == -128)
        if mult_bits == 16:
            worst = err.max()
    assert worst <= 0.5021   # the figure quoted in hw/blocks/requant.py


def test_calibrated_out_scale_uses_the_whole_range(rng):
    acc = rng.integers(-(1 << 20), 1 << 20, (6, 8)).astype(np.int32)
    bias = rng.integers(-1000, 1000, 8).astype(np.int32)
    cfg = H.config({"lanes": 4}, {"acc": acc, "acc_scale": np.float32(2e-5), "bias": bias})
    assert cfg.length == 8 and cfg.bias == tuple(bias.tolist())
    real = requant_float(cfg, acc)
    assert cfg.out_scale == pytest.approx(np.abs(real).max() / 127)
    assert np.abs(requant_bitexact(cfg, acc)).max() == 127
    # a per-channel acc_scale vector becomes a tuple in the config
    cfg = H.config({}, {"acc": acc, "acc_scale": np.full(8, 1e-4)})
    assert cfg.per_channel and cfg.acc_scale == (1e-4,) * 8


@pytest.mark.parametrize("bad, message", [
    (dict(lanes=65), "lanes=65 is out of range"),
    (dict(length=0), "length=0 is out of range"),
    (dict(acc_scale=0.0), "acc_scale=0.0 is not allowed; allowed: finite and > 0"),
    (dict(acc_scale=-1e-3), "acc_scale=-0.001 is not allowed"),
    (dict(acc_scale=math.nan), "acc_scale=nan is not allowed"),
    (dict(acc_scale=math.inf), "acc_scale=inf is not allowed"),
    (dict(acc_scale="big"), "acc_scale='big' is not a number"),
    (dict(acc_scale=(1e-3, 2e-3)), "acc_scale has 2 entries; expected one per channel"),
    (dict(length=2, lanes=1, acc_scale=(1e-3, math.nan)), r"acc_scale\[1\]=nan is not allowed"),
    (dict(out_scale=0), "out_scale=0 is not allowed"),
    (dict(out_scale=math.nan), "out_scale=nan is not allowed"),
    (dict(length=2, lanes=2, bias=(1,)), "bias has 1 entries; expected length=2"),
    (dict(length=2, lanes=2, bias=(1, 1 << 31)), r"bias\[1\]=2147483648 is not allowed"),
    (dict(length=2, lanes=2, bias=(1, 0.5)), r"bias\[1\]=0.5 is not allowed"),
    (dict(rounding="nearest"), "rounding='nearest' is not allowed"),
    (dict(mult_bits=25), "mult_bits=25 is out of range"),
    (dict(length=2, lanes=1, acc_scale=(1.0, 1e-6), out_scale=1.0),
     "acc_scale spans a factor of 1e\\+06, which needs 36-bit aligned multipliers"),
])
def test_config_rejects(bad, message):
    with pytest.raises(ConfigError, match=message) as info:
        RequantConfig(**bad)
    assert "\n" not in str(info.value)


def test_config_round_trips_through_json_values():
    cfg = RequantConfig(length=2, lanes=1, acc_scale=[1e-3, 2e-3], bias=[np.int32(5), -5])
    assert cfg.acc_scale == (1e-3, 2e-3) and cfg.bias == (5, -5)
    assert RequantConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("length, lanes", [(13, 4), (3, 4)])
def test_padding_lanes_are_dropped(length, lanes, stall, rng, garbage_padding):
    """Random values in the padding lanes of each row's last beat: the row's results are
    unchanged, the padding lanes' results dropped."""
    cfg = _cfg(rng, "per_channel", length, lanes)
    acc = rng.integers(-(1 << 20), 1 << 20, (5, length)).astype(np.int32)
    seed = int(rng.integers(1 << 30))
    result = run_block(garbage_padding(H, length), cfg, {"acc": acc},
                       stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    np.testing.assert_array_equal(result.outputs["y"], requant_bitexact(cfg, acc))
