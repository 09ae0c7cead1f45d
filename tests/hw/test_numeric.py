"""Rounding, saturation and fixed-point helpers: the NumPy and the Amaranth forms agree."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Signal, signed
from amaranth.sim import Simulator

from llmloom.hw.config import ConfigError
from llmloom.hw.numeric import (
    INT8,
    FixedPoint,
    IntType,
    QuantParams,
    Rounding,
    quantize_multiplier,
    round_shift,
    round_shift_hw,
    round_shift_split_hw,
    round_shift_var_hw,
    saturate_hw,
)


@pytest.mark.parametrize("mode", list(Rounding))
def test_round_shift_matches_exact_rational_rounding(mode):
    x = np.arange(-300, 301)
    for shift in (1, 2, 3, 5):
        got = round_shift(x, shift, mode)
        exact = x / 2 ** shift
        if mode is Rounding.FLOOR:
            want = np.floor(exact)
        elif mode is Rounding.HALF_UP:
            want = np.floor(exact + 0.5)
        else:
            want = np.rint(exact)       # NumPy rounds half to even
        np.testing.assert_array_equal(got, want.astype(np.int64))


@pytest.mark.parametrize("mode", list(Rounding))
def test_round_shift_hw_equals_numpy(mode):
    shift = 3
    a = Signal(signed(12))
    out = Signal(signed(16))
    sat = Signal(signed(8))
    values = list(range(-2048, 2048, 7)) + [-2048, 2047, -4, -12, 4, 12, 20]
    got = []

    async def bench(ctx):
        for v in values:
            ctx.set(a, v)
            got.append((ctx.get(out), ctx.get(sat)))

    from amaranth.hdl import Module
    m = Module()
    m.d.comb += [out.eq(round_shift_hw(a, shift, mode)),
                 sat.eq(saturate_hw(round_shift_hw(a, shift, mode), INT8))]
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    want = round_shift(np.array(values), shift, mode)
    assert [g[0] for g in got] == list(want)
    assert [g[1] for g in got] == list(INT8.saturate(want))


@pytest.mark.parametrize("mode", list(Rounding))
def test_round_shift_var_hw_equals_numpy_for_every_shift(mode):
    """The variable shift gives, for each shift 0..max, what the constant one gives (ties of
    both signs and the extremes included)."""
    a = Signal(signed(10))
    sh = Signal(range(6))
    out = Signal(signed(12))
    values = list(range(-512, 512, 3)) + [-512, 511, -16, -8, 8, 16, 24, -24, 1, -1]
    got = {}

    async def bench(ctx):
        for s in range(6):
            for v in values:
                ctx.set(a, v)
                ctx.set(sh, s)
                got[s, v] = ctx.get(out)

    from amaranth.hdl import Module
    m = Module()
    m.d.comb += out.eq(round_shift_var_hw(a, sh, 5, mode))
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    for s in range(6):
        want = round_shift(np.array(values), s, mode)
        assert [got[s, v] for v in values] == list(want), s


@pytest.mark.parametrize("const", [1, 2, 4])
@pytest.mark.parametrize("mode", list(Rounding))
def test_round_shift_split_hw_equals_numpy(mode, const):
    """A constant shift with guard and sticky bits, then the variable one: the rounding of the
    whole shift, for every variable part (ties and near-ties of both signs included)."""
    var_max = 3
    a = Signal(signed(10))
    v = Signal(range(var_max + 1))
    out = Signal(signed(12))
    sat = Signal(signed(3))
    values = list(range(-512, 512, 3)) + [-512, 511] + [
        sign * (k << (const + s - 1)) + d for s in range(var_max + 1) for k in (1, 3, 5)
        for d in (-1, 0, 1) for sign in (1, -1)]
    values = [x for x in values if -512 <= x < 512]
    got = {}

    async def bench(ctx):
        for s in range(var_max + 1):
            for x in values:
                ctx.set(a, x)
                ctx.set(v, s)
                got[s, x] = ctx.get(out), ctx.get(sat)

    from amaranth.hdl import Module
    m = Module()
    m.d.comb += [out.eq(round_shift_split_hw(a, const, v, var_max, mode)),
                 sat.eq(saturate_hw(round_shift_split_hw(a, const, v, var_max, mode,
                                                         sat_width=3), IntType(3)))]
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    for s in range(var_max + 1):
        want = round_shift(np.array(values), const + s, mode)
        assert [got[s, x][0] for x in values] == list(want), s
        # with the clamp before the barrel (to 3 + 3 + 3 bits), saturated the same
        assert [got[s, x][1] for x in values] == list(IntType(3).saturate(want)), s


def test_int_types():
    assert (INT8.min, INT8.max) == (-128, 127)
    assert IntType(8, signed=False).max == 255
    np.testing.assert_array_equal(INT8.saturate([-1000, 5, 1000]), [-128, 5, 127])
    with pytest.raises(ConfigError, match="width=0"):
        IntType(0)


@pytest.mark.parametrize("width, signed, dtype", [
    (1, True, np.int8), (4, True, np.int8), (8, True, np.int8), (9, True, np.int16),
    (16, True, np.int16), (24, True, np.int32), (32, True, np.int32), (33, True, np.int64),
    (64, True, np.int64), (4, False, np.uint8), (8, False, np.uint8), (12, False, np.uint16),
    (64, False, np.uint64)])
def test_int_type_dtype_is_the_smallest_that_holds_it(width, signed, dtype):
    t = IntType(width, signed=signed)
    assert t.dtype == np.dtype(dtype)
    # a wide type (int24 in int32) keeps its extremes: nothing wraps
    ends = np.array([t.min, t.max], dtype=object)
    assert ends.astype(t.dtype).astype(object).tolist() == [t.min, t.max]


def test_quantize_multiplier_is_accurate():
    for real in (0.001234, 0.5, 0.75, 1.0, 3.3, 1e-6, 1234.5):
        mult, shift = quantize_multiplier(real, mult_bits=16)
        assert 1 << 15 <= mult < 1 << 16
        assert abs(mult * 2.0 ** -shift - real) <= real * 2 ** -16
    with pytest.raises(ConfigError, match="not allowed"):
        quantize_multiplier(float("nan"))
    with pytest.raises(ConfigError, match="not allowed"):
        quantize_multiplier(-1.0)


def test_quant_params_and_calibration(rng):
    x = rng.normal(size=(16, 8))
    q = QuantParams.calibrate(x)
    codes = q.quantize(x)
    assert codes.min() >= -127 and codes.max() <= 127 and np.abs(codes).max() == 127
    assert np.max(np.abs(q.dequantize(codes) - x)) <= q.scale / 2 + 1e-12
    per_channel = QuantParams.calibrate(x, axis=0)
    assert len(per_channel.scale) == 8
    with pytest.raises(ConfigError, match="scale="):
        QuantParams(scale=0.0)
    with pytest.raises(ConfigError, match="scale="):
        QuantParams(scale=float("nan"))
    fp = FixedPoint(INT8, 4)
    np.testing.assert_array_equal(fp.quantize([0.5, 100.0, -0.03125]), [8, 127, 0])
