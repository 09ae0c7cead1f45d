"""GELU and SiLU by table on Amaranth's simulator: bit-exact with the golden model under
stalls; the table within 0.5 LSB of float64 maths (plus saturation); bad configs rejected."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from llmloom.hw.blocks.activation import GeluConfig, SiluConfig
from llmloom.hw.config import ConfigError
from llmloom.sim.blocks.activation import GeluHarness, SiluHarness
from llmloom.sim.golden.activation import activation_bitexact, activation_float, gelu_erf, gelu_tanh
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

STALLS = ["none", "pattern", "random"]
HARNESS = {"gelu": GeluHarness(), "silu": SiluHarness()}
ALL_CODES = np.arange(-128, 128)


def _cfg(block, **kw):
    if block == "silu":
        return SiluConfig(**kw)
    return GeluConfig(**kw)


def _check(block, cfg, x, stall, seed=1):
    h = HARNESS[block]
    result = run_block(h, cfg, {"x": x}, sim="amaranth", stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    assert result.outputs["y"].dtype == np.int8
    assert np.array_equal(result.outputs["y"], activation_bitexact(cfg, x))
    golden = h.golden(cfg, {"x": np.asarray(x, dtype=np.int64)})
    for key in golden:
        assert np.array_equal(result.outputs[key], golden[key]), key
    return result


FUNCS = [("gelu", {"approximation": "tanh"}), ("gelu", {"approximation": "erf"}), ("silu", {})]
# (rows, length, lanes)
SHAPES = [(5, 16, 4), (3, 12, 3), (2, 8, 8), (4, 5, 1), (1, 1, 1),
          (5, 13, 4), (3, 3, 4)]       # lanes not dividing the length: a padded last beat


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "R{}L{}l{}".format(*s))
@pytest.mark.parametrize("func", FUNCS, ids=lambda f: f[0] + "_" + f[1].get("approximation",
                                                                              ""))
def test_random_rows(func, shape, stall, rng):
    block, extra = func
    rows, length, lanes = shape
    cfg = _cfg(block, length=length, lanes=lanes, x_scale=float(rng.uniform(0.01, 0.1)),
               out_scale=float(rng.uniform(0.01, 0.05)), **extra)
    x = rng.integers(-128, 128, (rows, length)).astype(np.int8)
    result = _check(block, cfg, x, stall, seed=int(rng.integers(1 << 30)))
    if stall == "none":
        assert result.cycles == rows * cfg.beats + cfg.latency


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("kind", ["all_equal", "all_min", "all_max", "one_huge", "all_codes"])
@pytest.mark.parametrize("block", ["gelu", "silu"])
def test_edge_values(block, kind, stall, rng):
    rows, length = 4, 8
    cfg = _cfg(block, length=length, lanes=4)           # default scales: the 256-code range
    if kind == "all_equal":
        x = np.full((rows, length), -37)
    elif kind == "all_min":
        x = np.full((rows, length), -128)
    elif kind == "all_max":
        x = np.full((rows, length), 127)
    elif kind == "one_huge":
        x = rng.integers(-3, 4, (rows, length))
        x[2, 3] = 127
    else:
        x = ALL_CODES.reshape(32, length)
    _check(block, cfg, x.astype(np.int8), stall)


def _bound_check(cfg, exact):
    """Every code: within 0.5 LSB of float64, or saturated where the float is beyond int8."""
    x = ALL_CODES
    y = activation_bitexact(cfg, x).astype(np.int64)
    real = exact(x * cfg.x_scale)
    out = cfg.out_scale_value
    inside = (real / out >= -128.5) & (real / out <= 127.5)
    err = np.abs(y * out - real)[inside] / out
    assert err.max() <= 0.5 + 1e-9
    assert np.all(y[~inside & (real > 0)] == 127) and np.all(y[~inside & (real < 0)] == -128)
    return err.max(), int((~inside).sum())


@pytest.mark.parametrize("block, approximation, exact", [
    ("gelu", "tanh", gelu_tanh), ("gelu", "erf", gelu_erf),
    ("silu", None, lambda v: v / (1 + np.exp(-v))),
])
def test_table_error_bound_against_float(block, approximation, exact):
    extra = {"approximation": approximation} if approximation else {}
    worst, saturated_any = 0.0, False
    for x_scale in (1 / 64, 1 / 32, 0.05, 0.1, 0.5):
        for out_scale in (None, 1 / 64, 0.01, 0.2):
            cfg = _cfg(block, length=4, x_scale=x_scale, out_scale=out_scale, **extra)
            err, saturated = _bound_check(cfg, exact)
            worst = max(worst, err)
            saturated_any |= saturated > 0
            if out_scale is None:
                assert saturated == 0 and max(cfg.lut) == 127
    assert worst > 0.49 and saturated_any   # the bound is attained, saturation exercised


def test_tanh_formula_is_close_to_exact_gelu():
    """The documented gap between GPT-2's formula and the exact GELU."""
    v = np.linspace(-10, 10, 200001)
    gap = np.abs(gelu_tanh(v) - gelu_erf(v)).max()
    assert 4.6e-4 < gap < 4.8e-4
    cfg_t = GeluConfig(length=4, x_scale=1 / 32, approximation="tanh")
    cfg_e = GeluConfig(length=4, x_scale=1 / 32, approximation="erf",
                       out_scale=cfg_t.out_scale_value)
    assert sum(a != b for a, b in zip(cfg_t.lut, cfg_e.lut, strict=True)) <= 8


def test_float_reference_follows_the_config():
    x = ALL_CODES
    g = GeluConfig(length=4, x_scale=0.05, approximation="erf")
    assert np.array_equal(activation_float(g, x), gelu_erf(x * 0.05))
    s = SiluConfig(length=4, x_scale=0.05)
    assert np.allclose(activation_float(s, x), x * 0.05 / (1 + np.exp(-x * 0.05)), atol=1e-15)


def test_calibrated_out_scale(rng):
    x = rng.integers(-128, 128, (6, 8)).astype(np.int8)
    for block in ("gelu", "silu"):
        h = HARNESS[block]
        values = {"approximation": "erf"} if block == "gelu" else {}
        cfg = h.config(values, {"x": x, "x_scale": np.float64(0.04)})
        assert cfg.length == 8 and cfg.x_scale == 0.04
        ref = activation_float(cfg, x)
        assert cfg.out_scale == pytest.approx(np.abs(ref).max() / 127)
        assert np.abs(activation_bitexact(cfg, x)).max() == 127
        # a user's out_scale is kept
        assert h.config({"out_scale": 0.5}, {"x": x}).out_scale == 0.5


@pytest.mark.parametrize("block", ["gelu", "silu"])
@pytest.mark.parametrize("bad, message", [
    (dict(length=0), "length=0 is out of range"),
    (dict(lanes=65), "lanes=65 is out of range"),
    (dict(x_scale=0.0), "x_scale=0.0 is not allowed; allowed: finite and > 0"),
    (dict(x_scale=-0.5), "x_scale=-0.5 is not allowed"),
    (dict(x_scale=math.nan), "x_scale=nan is not allowed"),
    (dict(x_scale=None), "x_scale=None is not a number"),
    (dict(out_scale=math.inf), "out_scale=inf is not allowed"),
    (dict(out_scale=-1.0), "out_scale=-1.0 is not allowed"),
])
def test_config_rejects(block, bad, message):
    with pytest.raises(ConfigError, match=message) as info:
        _cfg(block, **bad)
    assert "\n" not in str(info.value)


def test_unknown_approximation_rejected():
    with pytest.raises(ConfigError, match=re.escape(
            "approximation='sigmoid' is not allowed; allowed: tanh | erf")):
        GeluConfig(approximation="sigmoid")
    with pytest.raises(TypeError):
        SiluConfig(approximation="tanh")     # SiLU has no approximation to choose


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("block", ["gelu", "silu"])
def test_padding_lanes_are_dropped(block, stall, rng, garbage_padding):
    """Random values in the padding lanes of each row's last beat change no result."""
    cfg = _cfg(block, length=13, lanes=4, x_scale=0.05)
    x = rng.integers(-128, 128, (4, 13)).astype(np.int8)
    seed = int(rng.integers(1 << 30))
    result = run_block(garbage_padding(HARNESS[block], 13), cfg, {"x": x},
                       stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    np.testing.assert_array_equal(result.outputs["y"], activation_bitexact(cfg, x))


# ---- int16 output (the wide residual stream's GELU) --------------------------------------------
@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("func", FUNCS, ids=lambda f: f[0] + "_" + f[1].get("approximation",
                                                                              ""))
def test_wide_random_rows(func, stall, rng):
    """out_width=16: int16 table entries, bit-exact under stalls, int16 outputs, same timing."""
    block, extra = func
    h = HARNESS[block]
    for rows, length, lanes in ((5, 16, 4), (3, 13, 4)):
        x = rng.integers(-128, 128, (rows, length)).astype(np.int8)
        x[0, :3] = [-128, 127, 0]
        cfg = h.config(dict(lanes=lanes, out_width=16, **extra),
                       {"x": x, "x_scale": float(rng.uniform(0.01, 0.1))})
        seed = int(rng.integers(1 << 30))
        result = run_block(h, cfg, {"x": x}, stalls_in=Stalls(stall, seed),
                           stalls_out=Stalls(stall, seed + 1))
        assert result.outputs["y"].dtype == np.int16
        assert np.array_equal(result.outputs["y"], activation_bitexact(cfg, x))
        assert np.abs(result.outputs["y"]).max() == 32767     # calibrated onto the int16 range
        if stall == "none":
            assert result.cycles == rows * cfg.beats + cfg.latency


def _wide_bound_check(cfg, exact):
    """Every code: within 0.5 LSB of float64, or saturated where the float is beyond int16."""
    x = ALL_CODES
    y = activation_bitexact(cfg, x)
    assert y.dtype == np.int16
    y = y.astype(np.int64)
    real = exact(x * cfg.x_scale)
    out = cfg.out_scale_value
    inside = (real / out >= -32768.5) & (real / out <= 32767.5)
    err = np.abs(y * out - real)[inside] / out
    assert err.max() <= 0.5 + 1e-9
    assert np.all(y[~inside & (real > 0)] == 32767)
    assert np.all(y[~inside & (real < 0)] == -32768)
    return err.max(), int((~inside).sum())


@pytest.mark.parametrize("block, approximation, exact", [
    ("gelu", "tanh", gelu_tanh), ("gelu", "erf", gelu_erf),
    ("silu", None, lambda v: v / (1 + np.exp(-v))),
])
def test_wide_table_error_bound_against_float(block, approximation, exact):
    """The int16 table is the nearest int16 to the float function: 256 times finer than
    int8 at the same range (the default out_scale maps max|f| onto 32767)."""
    extra = {"approximation": approximation} if approximation else {}
    saturated_any = False
    for x_scale in (1 / 64, 0.05, 0.5):
        for out_scale in (None, 1 / 4096, 1e-5):
            cfg = _cfg(block, length=4, x_scale=x_scale, out_scale=out_scale, out_width=16,
                       **extra)
            err, saturated = _wide_bound_check(cfg, exact)
            saturated_any |= saturated > 0
            if out_scale is None:
                narrow = _cfg(block, length=4, x_scale=x_scale, **extra)
                assert saturated == 0 and max(cfg.lut) == 32767
                assert cfg.out_scale_value == pytest.approx(narrow.out_scale_value * 127 / 32767)
    assert saturated_any


def test_wide_config_and_tensor_checks(rng):
    with pytest.raises(ConfigError, match=re.escape("out_width=9 is not allowed; allowed: 8 | 16")):
        GeluConfig(out_width=9)
    from llmloom.sim.harness import TensorError

    # the input stays int8 whatever the output width
    with pytest.raises(TensorError, match="tensor 'x' has dtype int16; expected int8"):
        HARNESS["gelu"].prepare(GeluConfig(length=4, out_width=16),
                                {"x": np.zeros((2, 4), dtype=np.int16)})


# ---- a wider input (LLaMA's SiLU input hg, int10: a 1024-entry table) -------------------------
@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("in_width", [9, 10, 12])
def test_wide_input_random_rows(in_width, stall, rng):
    """in_width > 8: a 2**in_width-entry table addressed by the input's code, bit-exact under
    stalls (the extreme codes included), int16 inputs and outputs, the same timing."""
    h = HARNESS["silu"]
    lo, hi = -(1 << (in_width - 1)), (1 << (in_width - 1)) - 1
    x = rng.integers(lo, hi + 1, (5, 13)).astype(np.int16)
    x[0, :4] = [lo, hi, 0, -1]
    cfg = SiluConfig(length=13, lanes=4, in_width=in_width, out_width=16,
                     x_scale=8.0 / hi, out_scale=8.0 / 32767)
    seed = int(rng.integers(1 << 30))
    result = run_block(h, cfg, {"x": x}, stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    assert np.array_equal(result.outputs["y"], activation_bitexact(cfg, x))
    if stall == "none":
        assert result.cycles == 5 * cfg.beats + cfg.latency


@pytest.mark.parametrize("in_width", [9, 10, 12])
def test_wide_input_table_error_bound_against_float(in_width):
    """Every one of the 2**in_width codes is the nearest int16 to SiLU of its real value, and a
    code beyond int8 reads its own entry (not the one of its low byte)."""
    hi = (1 << (in_width - 1)) - 1
    cfg = SiluConfig(length=4, in_width=in_width, out_width=16, x_scale=12.0 / hi)
    x = np.arange(-hi - 1, hi + 1)
    y = activation_bitexact(cfg, x).astype(np.int64)
    real = x * cfg.x_scale / (1 + np.exp(-x * cfg.x_scale))
    assert len(cfg.lut) == 1 << in_width
    assert np.abs(y * cfg.out_scale_value - real).max() / cfg.out_scale_value <= 0.5 + 1e-9
    assert y[x == 128] != y[x == -128]        # code 128 is not read as -128


def test_wide_input_rejects():
    with pytest.raises(ConfigError, match=re.escape(
            "in_width=13 is not allowed; allowed: 8 | 9 | 10 | 11 | 12")):
        SiluConfig(in_width=13)
    from llmloom.sim.harness import TensorError

    with pytest.raises(TensorError, match=re.escape(
            "tensor 'x' has values outside int10 (-512..511)")):
        HARNESS["silu"].prepare(SiluConfig(length=4, in_width=10),
                                {"x": np.full((2, 4), 512, dtype=np.int16)})
