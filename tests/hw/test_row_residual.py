"""The residual stream's row exponents in RTL, on Amaranth's simulator under stalls: the
residual add with the skip's exponents and its row quantiser
(:class:`~llmloom.hw.layers.common.RowResidual`) bit-exact with
:func:`~llmloom.sim.golden.residual.residual_rows_bitexact`, and the norm taking each row's
exponent for its epsilon bit-exact with :func:`~llmloom.sim.golden.norm.norm_bitexact`."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from llmloom.hw.blocks.norm import Norm, RMSNormConfig
from llmloom.hw.blocks.residual import Residual, ResidualConfig
from llmloom.hw.layers.common import RowResidual
from llmloom.hw.layers.config import LayerConfig
from llmloom.hw.stream import row_layout
from llmloom.sim.golden.norm import norm_bitexact
from llmloom.sim.golden.residual import residual_bitexact, residual_rows_bitexact
from llmloom.sim.harness import Drive
from llmloom.sim.quantize import quantize_placeholder
from llmloom.sim.runner import simulate
from llmloom.sim.streams import Stalls, pack_rows, unpack_rows


def _e_words(e, e_max):
    return pack_rows(row_layout(unsigned(e_max.bit_length()), 1),
                     np.asarray(e, np.int64).reshape(-1, 1))


def _e_rows(words, e_max):
    e, _, _ = unpack_rows(row_layout(unsigned(e_max.bit_length()), 1), words, 1)
    return e[:, 0]



def _row_cfg(e_max, d=16, lanes=4):
    cfg = LayerConfig(arch="llama", d_model=d, heads=2, d_ff=32, seq=4, lanes=lanes,
                      scheme="dynamic", stream_exponent=e_max)
    return quantize_placeholder(cfg).config


@pytest.mark.parametrize("e_max, stall", [(3, "random"), (15, "pattern"), (1, "none")])
def test_row_residual_is_bit_exact(e_max, stall, rng):
    cfg = _row_cfg(e_max)
    res, quant = cfg.stage_config("residual1"), cfg.row_quant("residual1")
    assert res.e_max == e_max and quant.e_max == e_max
    rows, d = 9, cfg.d_model
    x = rng.integers(-2 ** (res.x_width - 1), 2 ** (res.x_width - 1), (rows, d))
    r = rng.integers(-2 ** 15, 2 ** 15, (rows, d)) >> rng.integers(0, 15, (rows, 1))
    r_e = rng.integers(0, e_max + 1, rows)
    r_e[:2] = [0, e_max]
    want_y, want_e = residual_rows_bitexact(res, x, r, r_e, e_max)
    assert want_e.max() > 0
    beat = row_layout(signed(16), cfg.lanes)
    drive = Drive(preload={}, timed={"x": pack_rows(row_layout(signed(res.x_width), cfg.lanes),
                                                    x),
                                     "r": pack_rows(beat, r), "r_e": _e_words(r_e, e_max)},
                  expect={"o": rows * d // cfg.lanes, "o_e": rows})
    beats, *_ = simulate(RowResidual(cfg, "residual1"), drive,
                         stalls_in=Stalls(stall, 3), stalls_out=Stalls(stall, 4))
    y, _, _ = unpack_rows(beat, beats["o"], d)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(_e_rows(beats["o_e"], e_max), want_e)


def test_residual_without_row_exponents_is_unchanged(rng):
    """``e_max = 0``: no ``r_e`` port and the plain sum."""
    c = ResidualConfig(length=8, lanes=4, x_scale=0.01, r_scale=0.02, out_scale=0.03)
    block = Residual(c)
    assert "r_e" not in block.signature.members
    x, r = (rng.integers(-128, 128, (3, 8)) for _ in range(2))
    beat = row_layout(signed(8), 4)
    drive = Drive(preload={}, timed={"x": pack_rows(beat, x), "r": pack_rows(beat, r)},
                  expect={"o": 6})
    beats, *_ = simulate(block, drive)
    np.testing.assert_array_equal(unpack_rows(beat, beats["o"], 8)[0],
                                  residual_bitexact(c, x, r))


@pytest.mark.parametrize("stall", ["random", "none"])
def test_norm_takes_the_row_exponent_for_epsilon(stall, rng):
    e_max, d, lanes, rows = 15, 16, 4, 10
    # a large eps so that its shift by 2e shows in every row's output
    c = RMSNormConfig(length=d, lanes=lanes, x_scale=1.0, eps=40.0, in_width=16, out_width=16,
                      gamma=tuple(rng.uniform(0.5, 1.5, d)), e_max=e_max)
    x = rng.integers(-8, 9, (rows, d))
    e = rng.integers(0, e_max + 1, rows)
    e[:3] = [0, 1, e_max]
    want = norm_bitexact(c, x, e)
    assert not np.array_equal(want, norm_bitexact(c, x))
    beat = row_layout(signed(16), lanes)
    drive = Drive(preload={}, timed={"i": pack_rows(beat, x), "e": _e_words(e, e_max)},
                  expect={"o": rows * d // lanes})
    beats, *_ = simulate(Norm(c), drive, stalls_in=Stalls(stall, 7),
                         stalls_out=Stalls(stall, 8))
    np.testing.assert_array_equal(unpack_rows(beat, beats["o"], d)[0], want)
