"""The element-wise product on Amaranth's simulator: bit-exact with the golden model under
stalls, within its bound of float64, int16 streams, bad configs and tensors rejected."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.blocks.mul import MulConfig
from llmloom.hw.config import ConfigError
from llmloom.sim.blocks.mul import MulHarness
from llmloom.sim.golden.mul import mul_bitexact, mul_float
from llmloom.sim.harness import TensorError
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

STALLS = ["none", "pattern", "random"]
H = MulHarness()


# (rows, length, lanes, a_scale, b_scale, extra)
CASES = [
    (5, 16, 4, 0.05, 0.003, {}),
    (3, 12, 3, 0.01, 0.01, {"rounding": "half_up"}),
    (2, 8, 8, 0.02, 0.2, {"rounding": "floor"}),
    (1, 1, 1, 0.03, 0.07, {}),                          # length 1
    (5, 13, 4, 0.05, 0.02, {}),                         # padded last beat
]


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "R{}L{}l{}".format(*c[:3]))
def test_random_rows(case, stall, rng):
    rows, length, lanes, as_, bs, extra = case
    a = rng.integers(-128, 128, (rows, length)).astype(np.int8)
    b = rng.integers(-128, 128, (rows, length)).astype(np.int8)
    cfg = H.config(dict(lanes=lanes, **extra), {"a": a, "b": b, "a_scale": as_, "b_scale": bs})
    seed = int(rng.integers(1 << 30))
    result = run_block(H, cfg, {"a": a, "b": b}, sim="amaranth",
                       stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    assert result.outputs["y"].dtype == np.int8
    assert np.array_equal(result.outputs["y"], mul_bitexact(cfg, a, b))
    if stall == "none":
        assert result.cycles == rows * cfg.beats + cfg.latency == cfg.cycles(rows)


@pytest.mark.parametrize("rounding", ["half_even", "half_up", "floor"])
def test_within_bound_of_float(rounding, rng):
    a = rng.integers(-128, 128, (64, 32)).astype(np.int8)
    b = rng.integers(-128, 128, (64, 32)).astype(np.int8)
    cfg = MulConfig(length=32, a_scale=0.05, b_scale=0.02, out_scale=0.06, rounding=rounding)
    y = mul_bitexact(cfg, a, b).astype(np.float64) * cfg.out_scale
    ref = mul_float(cfg, a, b)
    ok = np.abs(ref) < 127 * cfg.out_scale               # not saturated
    half = 1.0 if rounding == "floor" else 0.5
    bound = half * cfg.out_scale + 2.0 ** -cfg.mult_bits * np.abs(ref)
    assert ok.mean() > 0.5
    assert np.all(np.abs(y - ref)[ok] <= bound[ok] + 1e-12)
    sat = np.abs(ref) > 129 * cfg.out_scale
    assert sat.any()
    assert np.all(mul_bitexact(cfg, a, b)[sat] == np.where(ref[sat] > 0, 127, -128))


def test_default_out_scale_holds_every_product():
    cfg = MulConfig(length=4, a_scale=0.5, b_scale=0.25)
    a = np.array([[-128, 127, -128, 0]], np.int8)
    b = np.array([[-128, -128, 127, 5]], np.int8)
    y = mul_bitexact(cfg, a, b)
    assert y[0, 0] == 127                      # the largest product maps onto 127
    assert -127 <= y[0, 1] < 0 and -127 <= y[0, 2] < 0


def test_int16_streams(rng):
    a = rng.integers(-32768, 32768, (3, 8)).astype(np.int16)
    b = rng.integers(-32768, 32768, (3, 8)).astype(np.int16)
    cfg = MulConfig(length=8, lanes=4, a_scale=1 / 1024, b_scale=1 / 2048, out_scale=1 / 64,
                    mult_bits=24, a_width=16, b_width=16, out_width=16)
    result = run_block(H, cfg, {"a": a, "b": b}, sim="amaranth",
                       stalls_in=Stalls("random", 3), stalls_out=Stalls("random", 4))
    assert result.outputs["y"].dtype == np.int16
    assert np.array_equal(result.outputs["y"], mul_bitexact(cfg, a, b))
    # y = a·b·2**-15: the largest product, 2**30, saturates; (2**15 − 1)·−2**15 does not
    assert np.array_equal(mul_bitexact(cfg, [[-32768, 32767, 3]], [[-32768, -32768, 5]]),
                          [[32767, -32767, 0]])


def test_int24_output(rng):
    """LLaMA's p: int16 factors onto int24, 256 times finer than int16 at the same range."""
    a = rng.integers(-32768, 32768, (3, 8)).astype(np.int16)
    b = rng.integers(-32768, 32768, (3, 8)).astype(np.int16)
    cfg = MulConfig(length=8, lanes=4, a_scale=1 / 1024, b_scale=1 / 2048, out_scale=1 / 2 ** 14,
                    mult_bits=24, a_width=16, b_width=16, out_width=24)
    result = run_block(H, cfg, {"a": a, "b": b}, sim="amaranth",
                       stalls_in=Stalls("random", 5), stalls_out=Stalls("random", 6))
    assert result.outputs["y"].dtype == np.int32
    assert np.array_equal(result.outputs["y"], mul_bitexact(cfg, a, b))
    # y = a·b·2**-7: past int16's range, the largest product still saturates at int24's
    assert np.array_equal(mul_bitexact(cfg, [[-32768, 300, 3, 1]], [[-32768, 300, 5, -128]]),
                          [[2 ** 23 - 1, 703, 0, -1]])


def test_bad_config_and_tensors():
    with pytest.raises(ConfigError, match="a_scale"):
        MulConfig(a_scale=0.0)
    with pytest.raises(ConfigError, match="multiplier"):
        MulConfig(a_scale=1.0, b_scale=1.0, out_scale=1e-12)
    cfg = MulConfig(length=4)
    with pytest.raises(TensorError, match="shape of 'a'"):
        H.prepare(cfg, {"a": np.zeros((2, 4), np.int8), "b": np.zeros((3, 4), np.int8)})
    with pytest.raises(TensorError, match="a_width=16"):
        H.prepare(cfg, {"a": np.zeros((2, 4), np.int16), "b": np.zeros((2, 4), np.int8)})
