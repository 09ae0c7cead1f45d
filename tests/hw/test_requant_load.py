"""The re-quantiser's ``load`` stream (``Requant(cfg, load=True)``): a build for one calibration
computes with another's numbers once they are loaded — per-tensor and per-channel, with and
without a bias, with the channel table and without it (one beat per row), with a row
exponent — bit-exact with the golden model of the loaded config, under stalls; and the
numbers that do not fit a build are refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from llmloom.hw.blocks.requant import Requant, RequantConfig
from llmloom.hw.config import ConfigError
from llmloom.hw.stream import row_layout
from llmloom.sim.golden.requant import requant_bitexact
from llmloom.sim.harness import Drive
from llmloom.sim.runner import simulate
from llmloom.sim.streams import Stalls, pack_rows, unpack_rows


def _cfg(rng, length, lanes, per_channel, bias, **kw):
    scale = (tuple(rng.uniform(1e-5, 2e-4, length)) if per_channel
             else float(rng.uniform(1e-5, 2e-4)))
    b = tuple(int(v) for v in rng.integers(-(1 << 16), 1 << 16, length)) if bias else None
    return RequantConfig(length=length, lanes=lanes, acc_scale=scale, bias=b,
                         out_scale=float(rng.uniform(0.01, 0.03)), **kw)


# (length, lanes, per_channel, bias, extra): the consts word alone (per tensor; one beat a
# row), the channel table (per channel, per tensor with a bias, a padded last beat), a row
# exponent with and without the table
CASES = [
    (16, 4, False, False, {}),
    (3, 4, True, True, {}),
    (4, 4, True, True, {"rounding": "floor"}),
    (13, 4, True, True, {}),
    (10, 4, False, True, {}),
    (12, 3, True, True, {"row_exponent": True, "e_max": 4}),
    (6, 2, False, False, {"row_exponent": True, "e_max": 3}),
]


@pytest.mark.parametrize("stall", ["none", "pattern", "random"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"L{c[0]}l{c[1]}"
                         f"{'pc' if c[2] else 'pt'}{'b' if c[3] else ''}"
                         f"{'e' if c[4].get('row_exponent') else ''}")
def test_loaded_numbers_are_used(case, stall, rng):
    length, lanes, per_channel, bias, extra = case
    build, other = (_cfg(rng, length, lanes, per_channel, bias, **extra) for _ in range(2))
    build.check_loadable(other)
    assert build.multipliers != other.multipliers
    rows = 7
    acc = rng.integers(-(1 << 14), 1 << 14, (rows, length))        # mostly unsaturated
    e = rng.integers(0, other.e_max + 1, rows) if other.row_exponent else None
    comp = Requant(build, load=True)
    timed = {"acc": pack_rows(row_layout(signed(32), lanes), acc)}
    if e is not None:
        timed["e"] = pack_rows(row_layout(unsigned(build.e_width), 1), e[:, None])
    load = pack_rows(row_layout(signed(32), lanes), np.asarray(other.load_values()))
    assert len(load) == build.load_beats
    seed = int(rng.integers(1 << 30))
    beats, *_ = simulate(comp, Drive(preload={"load": load}, timed=timed,
                                     expect={"o": rows * build.beats}),
                         stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1),
                         max_cycles=5000)
    got, _, _ = unpack_rows(comp.o.payload.shape(), beats["o"], length)
    np.testing.assert_array_equal(got, requant_bitexact(other, acc, e))
    assert not np.array_equal(got, requant_bitexact(build, acc, e))


def test_numbers_that_do_not_fit_are_refused(rng):
    build = _cfg(rng, 8, 4, True, True)
    with pytest.raises(ConfigError, match="a bias"):
        build.check_loadable(_cfg(rng, 8, 4, True, False))
    with pytest.raises(ConfigError, match="length"):
        build.check_loadable(_cfg(rng, 12, 4, True, True))
    with pytest.raises(ConfigError, match="mult_width"):
        build.replace(mult_width=16).check_loadable(_cfg(rng, 8, 4, True, True,
                                                         mult_bits=16))


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"L{c[0]}l{c[1]}"
                         f"{'pc' if c[2] else 'pt'}{'b' if c[3] else ''}"
                         f"{'e' if c[4].get('row_exponent') else ''}")
def test_two_banks_pair_loads_with_tensors(case, rng):
    """``banks=2``: two loads, then two tensors: the first tensor computes with the first
    load's numbers, the second with the second's (random stalls)."""
    length, lanes, per_channel, bias, extra = case
    build, *sets = (_cfg(rng, length, lanes, per_channel, bias, **extra) for _ in range(3))
    comp = Requant(build, load=True, banks=2)
    layout = row_layout(signed(32), lanes)
    load, acc_words, e_words, want = [], [], [], []
    for c in sets:
        build.check_loadable(c)
        load += pack_rows(layout, np.asarray(c.load_values()))
        acc = rng.integers(-(1 << 14), 1 << 14, (4, length))
        e = rng.integers(0, c.e_max + 1, 4) if c.row_exponent else None
        acc_words += pack_rows(layout, acc)
        if e is not None:
            e_words += pack_rows(row_layout(unsigned(build.e_width), 1), e[:, None])
        want.append(requant_bitexact(c, acc, e))
    timed = {"acc": acc_words} | ({"e": e_words} if e_words else {})
    seed = int(rng.integers(1 << 30))
    beats, *_ = simulate(comp, Drive(preload={"load": load}, timed=timed,
                                     expect={"o": 8 * build.beats}),
                         stalls_in=Stalls("random", seed),
                         stalls_out=Stalls("random", seed + 1), max_cycles=5000)
    got, _, end = unpack_rows(comp.o.payload.shape(), beats["o"], length)
    np.testing.assert_array_equal(got, np.concatenate(want))
    assert end.sum() == 2

