"""The decode GEMV on Amaranth's simulator: bit-exact under stalls, cycles as predicted."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.blocks.gemv import Gemv, GemvConfig
from llmloom.hw.config import ConfigError
from llmloom.perf.cycles import gemv_cycles
from llmloom.sim.blocks.gemv import GemvHarness
from llmloom.sim.golden.gemm import gemm_bitexact
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

H = GemvHarness()
SHAPES = [  # (M, K, N, rows, cols, lanes)
    (1, 8, 4, 4, 4, 4), (3, 6, 7, 2, 3, 2), (1, 1, 1, 1, 1, 1), (4, 10, 9, 4, 2, 2),
    (2, 64, 16, 8, 8, 8), (5, 3, 2, 4, 1, 1), (2, 5, 3, 8, 2, 1),
    # lanes not dividing k: the last beat of a row is padded
    (3, 13, 7, 4, 3, 4), (2, 3, 5, 4, 2, 4), (4, 33, 9, 8, 4, 4), (2, 11, 3, 2, 2, 2),
]


@pytest.mark.parametrize("stall", ["none", "pattern", "random"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "M{}K{}N{}_{}x{}_l{}".format(*s))
def test_random(shape, stall, rng):
    m, k, n, r, c, lanes = shape
    cfg = GemvConfig(rows=r, cols=c, k=k, n=n, lanes=lanes)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (k, n), dtype=np.int8)
    seed = int(rng.integers(1 << 30))
    result = run_block(H, cfg, {"a": a, "w": w}, stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    np.testing.assert_array_equal(result.outputs["c"], gemm_bitexact(cfg, a, w))
    if stall == "none":
        assert result.cycles == gemv_cycles(cfg, m)


@pytest.mark.parametrize("fill", [-128, 127])
def test_extremes(fill):
    cfg = GemvConfig(rows=4, cols=4, k=32, n=5, lanes=4, w_width=8)
    a = np.full((2, 32), fill, dtype=np.int8)
    w = np.full((32, 5), -128, dtype=np.int8)
    result = run_block(H, cfg, {"a": a, "w": w}, stalls_in=Stalls("random", 2),
                       stalls_out=Stalls("random", 3))
    np.testing.assert_array_equal(result.outputs["c"], gemm_bitexact(cfg, a, w))


def test_int4_weights_and_elaboration_weights(rng):
    from amaranth.hdl import signed

    from llmloom.hw.stream import row_layout
    from llmloom.sim.harness import Drive
    from llmloom.sim.runner import simulate
    from llmloom.sim.streams import pack_rows, unpack_rows

    cfg = GemvConfig(rows=3, cols=2, k=7, n=3, lanes=1, w_width=4)
    w = rng.integers(-8, 8, (7, 3))
    a = rng.integers(-128, 128, (2, 7))
    comp = Gemv(cfg, weights=w)
    drive = Drive({}, {"act": pack_rows(comp.act.payload.shape(), a)}, {"o": 2 * cfg.n_tiles})
    beats, *_ = simulate(comp, drive)
    c, _, _ = unpack_rows(row_layout(signed(32), cfg.cols), beats["o"], cfg.n)
    np.testing.assert_array_equal(c, a @ w)


def test_long_rows_use_every_multiplier():
    cfg = GemvConfig(rows=16, cols=16, k=1024, n=1024, lanes=16)
    assert 1024 * 1024 / (gemv_cycles(cfg, 1) * 256) > 0.98


def test_config_rejects():
    with pytest.raises(ConfigError, match="lanes=3 does not divide rows=4"):
        GemvConfig(rows=4, k=12, lanes=3)
    assert GemvConfig(rows=4, k=6, lanes=4).k_beats == 2     # any k: the last beat padded


@pytest.mark.parametrize("stall", ["none", "pattern", "random"])
def test_padding_lanes_are_ignored_whatever_they_hold(stall, rng):
    """The lanes of a row's last beat past k carry garbage (a producer need not zero them);
    they meet the zero weights that pad W, so y is exact."""
    from amaranth.hdl import signed

    from llmloom.hw.stream import row_layout
    from llmloom.sim.harness import Drive
    from llmloom.sim.runner import simulate
    from llmloom.sim.streams import pack_rows, unpack_rows

    cfg = GemvConfig(rows=8, cols=3, k=13, n=5, lanes=4)
    m = 3
    w = rng.integers(-128, 128, (cfg.k, cfg.n))
    a = rng.integers(-128, 128, (m, cfg.k))
    padded = rng.integers(-128, 128, (m, cfg.k_beats * cfg.lanes))
    padded[:, :cfg.k] = a
    comp = Gemv(cfg, weights=w)
    drive = Drive({}, {"act": pack_rows(comp.act.payload.shape(), padded)}, {"o": m * cfg.n_tiles})
    beats, cycles, *_ = simulate(comp, drive, stalls_in=Stalls(stall, 7),
                                 stalls_out=Stalls(stall, 8))
    c, _, _ = unpack_rows(row_layout(signed(32), cfg.cols), beats["o"], cfg.n)
    np.testing.assert_array_equal(c, a @ w)
    if stall == "none":
        assert cycles == gemv_cycles(cfg, m)


def test_vectorised_model_equals_the_block_model(rng):
    from llmloom.perf.kernels import gemv_cycles_np
    for _ in range(200):
        r, c = int(rng.integers(1, 65)), int(rng.integers(1, 65))
        k, n, m = int(rng.integers(1, 3000)), int(rng.integers(1, 3000)), int(rng.integers(1, 9))
        lanes = int(np.gcd(r, k))
        cfg = GemvConfig(rows=r, cols=c, k=k, n=n, lanes=lanes)
        total, _ = gemv_cycles_np(r, c, k, n, m)
        assert int(total) == gemv_cycles(cfg, m)
        # any lanes dividing rows, whether or not it divides k (padded last beat)
        lanes = int(rng.choice([d for d in range(1, r + 1) if r % d == 0]))
        cfg = GemvConfig(rows=r, cols=c, k=k, n=n, lanes=lanes)
        total, _ = gemv_cycles_np(r, c, k, n, m, lanes=lanes)
        assert int(total) == gemv_cycles(cfg, m)


def test_nine_bit_activations(rng):
    cfg = GemvConfig(rows=4, cols=2, k=8, n=3, lanes=2, a_width=9)
    p = rng.integers(0, 256, (2, 8)).astype(np.uint8)
    v = rng.integers(-128, 128, (8, 3), dtype=np.int8)
    result = run_block(H, cfg, {"a": p, "w": v}, stalls_in=Stalls("random", 1),
                       stalls_out=Stalls("random", 2))
    np.testing.assert_array_equal(result.outputs["c"], p.astype(np.int64) @ v)


def test_ten_bit_activations(rng):
    """A quant stage's int10 rows (LLaMA's ``narrow``), the extremes beside random values."""
    cfg = GemvConfig(rows=4, cols=2, k=8, n=3, lanes=2, a_width=10)
    a = rng.integers(-512, 512, (3, 8)).astype(np.int16)
    a[0], a[1] = -512, 511
    v = rng.integers(-128, 128, (8, 3), dtype=np.int8)
    v[:, 0] = -128
    result = run_block(H, cfg, {"a": a, "w": v}, stalls_in=Stalls("random", 1),
                       stalls_out=Stalls("random", 2))
    np.testing.assert_array_equal(result.outputs["c"], a.astype(np.int64) @ v)


def test_weights_checked_like_the_gemm():
    cfg = GemvConfig(rows=2, cols=2, k=4, n=3, lanes=2, w_width=4)
    with pytest.raises(ValueError, match=r"expected \(k, n\) = \(4, 3\)"):
        Gemv(cfg, weights=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="weights outside int4 range -8..7"):
        Gemv(cfg, weights=np.full((4, 3), 8))
    with pytest.raises(ConfigError, match="allowed: k <= 32768"):
        GemvConfig(k=65536, lanes=8, rows=8, a_width=9)
