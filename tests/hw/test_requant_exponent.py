"""Re-quantisation with a per-row exponent and int16 outputs, on Amaranth's simulator:
bit-exact with the golden model under stalls for random exponents, e = 0 bit for bit the plain
requant, the edges (e_max, int16 saturation, ties), the error bound of the module text, and the
config's and harness's checks."""

from __future__ import annotations

import re

import numpy as np
import pytest

from llmloom.hw.blocks.requant import MAX_MULT_WIDTH, Requant, RequantConfig
from llmloom.hw.config import ConfigError
from llmloom.sim.blocks.requant import RequantHarness
from llmloom.sim.golden.requant import requant_bitexact, requant_float
from llmloom.sim.harness import TensorError
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

STALLS = ["none", "pattern", "random"]
H = RequantHarness()
I32 = np.iinfo(np.int32)


def _check(cfg, acc, e, stall, seed=1):
    tensors = {"acc": np.asarray(acc, dtype=np.int32), "e": np.asarray(e)}
    result = run_block(H, cfg, tensors, sim="amaranth", stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    golden = H.golden(cfg, H.prepare(cfg, tensors))
    for key in golden:
        assert np.array_equal(result.outputs[key], golden[key]), key
    assert result.outputs["y"].dtype == {8: np.int8, 16: np.int16, 24: np.int32}[cfg.out_width]
    return result


def _cfg(rng, length, lanes, per_channel=True, **kw):
    kw.setdefault("out_scale", 0.05 if kw.get("out_width", 8) == 8 else 0.05 / 256)
    if not per_channel:
        return RequantConfig(length=length, lanes=lanes, acc_scale=3.1e-5, row_exponent=True,
                             **kw)
    scales = tuple(rng.uniform(1e-5, 1e-4, length))
    bias = tuple(int(b) for b in rng.integers(-(1 << 16), 1 << 16, length))
    return RequantConfig(length=length, lanes=lanes, acc_scale=scales, bias=bias,
                         row_exponent=True, **kw)


# (rows, length, lanes, per_channel, extra config)
CASES = [
    (9, 16, 4, True, {}),
    (8, 12, 3, True, {"rounding": "half_up", "out_width": 16}),
    (7, 6, 1, True, {"rounding": "floor", "e_max": 3}),
    (7, 8, 8, True, {"out_width": 16, "mult_bits": 22}),       # one beat: constants per lane
    (9, 13, 4, True, {}),                                       # padded last beat, table
    (8, 10, 4, False, {"out_width": 16}),                       # per tensor, no bias
    (7, 1, 1, True, {"e_max": 12}),
    # an int24 tensor's rows onto the int24 f (LLaMA's down projection: int10 rows, e_max 14;
    # here 15, the most a 4-bit exponent holds)
    (9, 13, 4, True, {"out_width": 24, "e_max": 15, "mult_bits": 24,
                      "out_scale": 0.05 / 2 ** 16}),
]


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"R{c[0]}L{c[1]}l{c[2]}")
def test_random_rows_and_exponents(case, stall, rng):
    rows, length, lanes, per_channel, extra = case
    cfg = _cfg(rng, length, lanes, per_channel, **extra)
    acc = rng.integers(-(1 << 20), 1 << 20, (rows, length))
    e = rng.integers(0, cfg.e_max + 1, rows)
    e[:2] = 0, cfg.e_max
    result = _check(cfg, acc, e, stall, seed=int(rng.integers(1 << 20)))
    if stall == "none":
        assert result.cycles == rows * cfg.beats + cfg.latency


@pytest.mark.parametrize("out_width", [8, 16])
def test_zero_exponent_is_the_plain_requant(out_width, rng):
    cfg = _cfg(rng, 13, 4, out_width=out_width)
    plain = cfg.replace(row_exponent=False)
    acc = rng.integers(-(1 << 24), 1 << 24, (6, 13))
    y = _check(cfg, acc, np.zeros(6, dtype=np.int64), "random").outputs["y"]
    assert np.array_equal(y, requant_bitexact(plain, acc))
    # same multipliers (the shift already >= e_max): the same rational number per channel
    assert cfg.multipliers == plain.multipliers
    # and a harness given no exponents drives zeros
    result = run_block(H, cfg, {"acc": acc.astype(np.int32)}, sim="amaranth")
    assert np.array_equal(result.outputs["y"], y)


def test_exponent_scales_the_accumulators_by_powers_of_two(rng):
    """acc·2**e with e = 0 and acc with e: the same real value, so the same output up to the
    bias's rounding to the row's unit (none here: a bias divisible by 2**e_max)."""
    cfg = _cfg(rng, 8, 4, out_width=16)
    cfg = cfg.replace(bias=tuple(b << cfg.e_max for b in rng.integers(-64, 64, 8).tolist()))
    acc = rng.integers(-(1 << 12), 1 << 12, (cfg.e_max + 1, 8))
    e = np.arange(cfg.e_max + 1)
    y = requant_bitexact(cfg, acc, e)
    assert np.array_equal(y, requant_bitexact(cfg, acc << e[:, None], np.zeros_like(e)))
    _check(cfg, acc, e, "pattern")


@pytest.mark.parametrize("stall", ["pattern", "random"])
def test_edges_int16_saturation_negative_values(stall, rng):
    cfg = _cfg(rng, 8, 2, out_width=16, out_scale=1e-7)
    acc = np.stack([np.full(8, I32.max), np.full(8, I32.min), np.full(8, -1),
                    np.full(8, 1), np.zeros(8, dtype=np.int64),
                    rng.integers(-(1 << 20), 1 << 20, 8)])
    e = np.array([cfg.e_max, cfg.e_max, cfg.e_max, 0, 3, 5])
    y = _check(cfg, acc, e, stall).outputs["y"]
    assert np.all(y[0] == 32767) and np.all(y[1] == -32768)
    # saturation against the float reference: the bound of int16 exactly where beyond it
    real = requant_float(cfg, acc, e) / cfg.out_scale_value
    assert np.all(y[real > 32767.5] == 32767) and np.all(y[real < -32768.5] == -32768)


@pytest.mark.parametrize("mode, expected", [
    ("half_even", [-2, -2, -1, 0, 0, 1, 2, 2]),
    ("half_up", [-2, -1, -1, 0, 1, 1, 2, 3]),
    ("floor", [-3, -2, -1, -1, 0, 1, 1, 2]),
])
def test_rounding_ties_with_an_exponent(mode, expected):
    """acc_scale·2**e/out_scale = 1/2: with e = 2 and acc_scale/out_scale = 1/8 the odd
    accumulators land on ties, as they do with e = 0 and a ratio of 1/2; the bias (8 at e = 0)
    is 2 at e = 2, and ties of the bias itself (6/4, −6/4) round by the same mode."""
    for e, ratio in ((0, 0.5), (2, 0.125)):
        cfg = RequantConfig(length=8, lanes=4, acc_scale=ratio, out_scale=1.0, rounding=mode,
                            row_exponent=True, e_max=4)
        acc = np.array([[-5, -3, -2, -1, 1, 2, 3, 5]])
        y = _check(cfg, acc, [e], "pattern").outputs["y"]
        assert y.tolist() == [expected]
    cfg = RequantConfig(length=2, lanes=2, acc_scale=0.25, out_scale=1.0, rounding=mode,
                        bias=(6, -6), row_exponent=True, e_max=2)
    # bias 6/4 = 1.5 and −1.5 → the mode's rounding; times 1 (ratio 1/4 · 4), no further tie
    b = {"half_even": [2, -2], "half_up": [2, -1], "floor": [1, -2]}[mode]
    y = _check(cfg, [[0, 0]], [2], "none").outputs["y"]
    assert y.tolist() == [b]


def test_shift_raised_to_e_max():
    """acc_scale/out_scale = 16 needs no shift at all (s = 0); with row_exponent the
    multiplier is scaled up so that s = e_max, and the results are unchanged at e = 0 (a
    factor of 2**mult_bits or more: the aligned multiplier is wider than mult_bits, which
    ``mult_width`` allows)."""
    plain = RequantConfig(length=4, lanes=2, acc_scale=1.0, out_scale=1 / 16, mult_bits=4,
                          mult_width=12)
    cfg = plain.replace(row_exponent=True, e_max=6, out_width=16)
    assert plain.multipliers[1] == 0 and cfg.multipliers[1] == 6
    assert cfg.multipliers[0][0] == plain.multipliers[0][0] << 6
    acc = np.array([[1, -1, 100, -2000], [1, -1, 100, -2000]])
    y = _check(cfg, acc, [0, 6], "random").outputs["y"]
    assert y.tolist() == [[16, -16, 1600, -32000], [1024, -1024, 32767, -32768]]


@pytest.mark.parametrize("mode", ["half_even", "floor"])
@pytest.mark.parametrize("out_width, mult_bits", [(8, 16), (16, 16), (16, 22)])
def test_error_bound_against_float(out_width, mult_bits, mode, rng):
    """|y·out_scale − (acc·2**e + bias)·acc_scale| ≤ (h + 2**(w−1)·2**-mult_bits +
    h·2**e·acc_scale/out_scale)·out_scale where nothing saturates (h = 0.5, floor: 1)."""
    length, rows = 32, 600
    cfg = _cfg(rng, length, 4, out_width=out_width, mult_bits=mult_bits, rounding=mode)
    acc = rng.integers(-(1 << 23), 1 << 23, (rows, length))
    e = rng.integers(0, cfg.e_max + 1, rows)
    out = np.abs(requant_float(cfg, acc, e)).max() / (1.5 * cfg.OUT.max)
    cfg = cfg.replace(out_scale=out)
    real = requant_float(cfg, acc, e) / out
    y = requant_bitexact(cfg, acc, e).astype(np.int64)
    inside = (real >= cfg.OUT.min - 0.5) & (real <= cfg.OUT.max + 0.5)
    h = 1.0 if mode == "floor" else 0.5
    bound = (h + 2.0 ** (out_width - 1 - mult_bits)
             + h * np.exp2(e)[:, None] * np.asarray(cfg.channel_scales) / out)
    err = np.abs(y - real)
    assert np.all(err[inside] <= np.broadcast_to(bound, err.shape)[inside] + 1e-9)
    assert inside.mean() > 0.3 and (~inside).any()
    assert np.all(y[~inside & (real > 0)] == cfg.OUT.max)
    assert np.all(y[~inside & (real < 0)] == cfg.OUT.min)


def test_calibrated_int16_out_scale_uses_the_whole_range(rng):
    acc = rng.integers(-(1 << 20), 1 << 20, (6, 8)).astype(np.int32)
    e = np.array([0, 1, 2, 3, 4, 5])
    cfg = H.config({"lanes": 4, "out_width": 16, "row_exponent": True},
                   {"acc": acc, "acc_scale": np.float64(2e-5), "e": e})
    real = requant_float(cfg, acc, e)
    assert cfg.out_scale == pytest.approx(np.abs(real).max() / 32767)
    assert np.abs(requant_bitexact(cfg, acc, e)).max() == 32767


def test_ports_by_role():
    comp = Requant(RequantConfig(length=4, lanes=2, row_exponent=True, e_max=8))
    plain = Requant(RequantConfig())
    comp._MustUse__silence = plain._MustUse__silence = True   # only the signatures are read
    assert set(comp.signature.members) == {"acc", "e", "o"}
    assert len(comp.e.payload.data[0]) == 4
    assert set(plain.signature.members) == {"i", "o"}


@pytest.mark.parametrize("bad, message", [
    (dict(out_width=13), "out_width=13 is not allowed"),
    (dict(e_max=0), "e_max=0 is out of range"),
    (dict(row_exponent=1), "row_exponent=1 must be true or false"),
    (dict(length=1, lanes=1, acc_scale=1.0, out_scale=2 ** -12, mult_bits=24,
          row_exponent=True, e_max=24),
     f"e_max=24 needs the multipliers' shift raised to 24, which makes them 37 bits; "
     f"allowed: at most {MAX_MULT_WIDTH} bits"),
])
def test_config_rejects(bad, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        RequantConfig(**bad)
    assert "\n" not in str(info.value)


def test_tensor_checks():
    acc = np.zeros((3, 4), dtype=np.int32)
    cfg = RequantConfig(length=4, lanes=2, row_exponent=True, e_max=5)
    for e, why in ((np.array([0, 6, 0]), "0..5"), (np.array([0, 1]), "per row"),
                   (np.array([0.0, 1.0, 2.0]), "float64"), (np.array([-1, 0, 0]), "0..5")):
        with pytest.raises(TensorError, match=re.escape(why)):
            H.prepare(cfg, {"acc": acc, "e": e})
    with pytest.raises(TensorError, match="needs row_exponent=true"):
        H.prepare(cfg.replace(row_exponent=False), {"acc": acc, "e": np.zeros(3, np.int64)})
