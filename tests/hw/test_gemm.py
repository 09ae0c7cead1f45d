"""The systolic GEMM on Amaranth's simulator: bit-exact with the golden model under stalls."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.blocks.gemm import Gemm, GemmConfig
from llmloom.hw.config import ConfigError
from llmloom.sim.blocks.gemm import GemmHarness
from llmloom.sim.golden.gemm import gemm_bitexact
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

STALLS = ["none", "pattern", "random"]
H = GemmHarness()

# (M, K, N, rows, cols, lanes): remainders in every dimension, K=1, M=1, N=1, K < rows/cols
SHAPES = [
    (5, 6, 7, 2, 3, 3),
    (1, 1, 1, 1, 1, 1),
    (1, 8, 5, 4, 4, 2),
    (9, 8, 1, 4, 4, 8),
    (3, 1, 9, 2, 4, 1),
    (13, 20, 9, 4, 4, 4),
    (7, 32, 8, 3, 5, 2),
    (20, 32, 4, 4, 4, 1),       # input-bound: the next tile waits for its data
    # lanes not dividing K: the last beat of each row is padded
    (5, 33, 7, 4, 4, 4),        # the default lanes on a 33-column input
    (7, 13, 9, 3, 5, 4),
    (3, 3, 5, 2, 3, 4),         # K < lanes: one padded beat per row
    (9, 9, 2, 4, 2, 2),         # input-bound with a padded beat
]


def _check(cfg, a, w, stall, seed=1, sim="amaranth"):
    result = run_block(H, cfg, {"a": a, "w": w}, sim=sim, stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    expected = gemm_bitexact(cfg, a, w)
    assert result.outputs["c"].dtype == np.int32
    np.testing.assert_array_equal(result.outputs["c"], expected)
    return result


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "M{}K{}N{}_{}x{}_l{}".format(*s))
def test_random_shapes(shape, stall, rng):
    m, k, n, r, c, lanes = shape
    cfg = GemmConfig(rows=r, cols=c, k=k, n=n, lanes=lanes)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (k, n), dtype=np.int8)
    _check(cfg, a, w, stall, seed=int(rng.integers(1 << 30)))


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("kind", ["all_min", "all_max", "alternating", "zeros", "one_hot"])
def test_extreme_values(kind, stall, rng):
    m, k, n = 6, 24, 10
    cfg = GemmConfig(rows=4, cols=4, k=k, n=n, lanes=4)
    if kind == "all_min":
        a, w = np.full((m, k), -128), np.full((k, n), -128)
    elif kind == "all_max":
        a, w = np.full((m, k), 127), np.full((k, n), -128)
    elif kind == "alternating":
        a = np.where(np.indices((m, k)).sum(0) % 2, 127, -128)
        w = np.where(np.indices((k, n)).sum(0) % 2, -128, 127)
    elif kind == "zeros":
        a, w = np.zeros((m, k)), rng.integers(-128, 128, (k, n))
    else:
        a, w = np.zeros((m, k)), np.zeros((k, n))
        a[np.arange(m), rng.integers(0, k, m)] = 1
        w[rng.integers(0, k), :] = rng.integers(-128, 128, n)
    _check(cfg, a.astype(np.int8), w.astype(np.int8), stall)


def test_largest_sums_fit_the_accumulator():
    # -128·-128 summed k times is the largest magnitude; it must come out exactly
    cfg = GemmConfig(rows=2, cols=2, k=64, n=2, lanes=8)
    a = np.full((2, 64), -128, dtype=np.int8)
    w = np.full((64, 2), -128, dtype=np.int8)
    result = _check(cfg, a, w, "none")
    assert result.outputs["c"][0, 0] == 64 * 128 * 128


def test_int4_weights(rng):
    cfg = GemmConfig(rows=3, cols=2, k=12, n=5, lanes=3, w_width=4)
    a = rng.integers(-128, 128, (7, 12), dtype=np.int8)
    w = rng.integers(-8, 8, (12, 5), dtype=np.int8)
    _check(cfg, a, w, "random")


def test_weights_given_at_elaboration(rng):
    """Weights in the memory's initial contents: no weight stream needed."""
    from amaranth.hdl import signed

    from llmloom.hw.stream import row_layout
    from llmloom.sim.harness import Drive
    from llmloom.sim.runner import simulate
    from llmloom.sim.streams import pack_rows, unpack_rows

    cfg = GemmConfig(rows=2, cols=3, k=6, n=5, lanes=2)
    a = rng.integers(-128, 128, (5, 6))
    w = rng.integers(-128, 128, (6, 5))
    comp = Gemm(cfg, weights=w)
    drive = Drive(preload={}, timed={"act": pack_rows(comp.act.payload.shape(), a)},
                  expect={"o": 5 * cfg.n_tiles})
    beats, *_ = simulate(comp, drive)
    c, _, _ = unpack_rows(row_layout(signed(32), cfg.cols), beats["o"], cfg.n)
    np.testing.assert_array_equal(c, a @ w)


def test_back_to_back_tensors_and_weight_reload(rng):
    """Two products in one simulation, the second after new weights: ``end`` flushes the
    first, and a weight load waits for the array to be idle."""
    from amaranth.hdl import signed

    from llmloom.hw.stream import row_layout
    from llmloom.sim.harness import Drive
    from llmloom.sim.runner import simulate
    from llmloom.sim.streams import pack_rows, unpack_rows

    cfg = GemmConfig(rows=3, cols=2, k=4, n=3, lanes=2)
    comp = Gemm(cfg)
    a1, a2 = rng.integers(-128, 128, (4, 4)), rng.integers(-128, 128, (2, 4))
    w1 = rng.integers(-128, 128, (4, 3))
    act_layout = comp.act.payload.shape()
    w_layout = comp.weight.payload.shape()
    drive = Drive(preload={"weight": pack_rows(w_layout, w1)},
                  timed={"act": pack_rows(act_layout, a1) + pack_rows(act_layout, a2)},
                  expect={"o": 6 * cfg.n_tiles})
    beats, *_ = simulate(comp, drive, stalls_in=Stalls("random", 3),
                         stalls_out=Stalls("random", 4))
    c, last, end = unpack_rows(row_layout(signed(32), cfg.cols), beats["o"], cfg.n)
    np.testing.assert_array_equal(c, np.vstack([a1 @ w1, a2 @ w1]))
    # one `end` per tensor: after row 4 and after row 6
    assert list(np.flatnonzero(end)) == [4 * cfg.n_tiles - 1, 6 * cfg.n_tiles - 1]


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("k, lanes", [(33, 4), (13, 4), (3, 4), (10, 8)])
def test_padding_lanes_are_ignored_whatever_they_hold(k, lanes, stall, rng):
    """The lanes of a row's last beat past K carry garbage here (a producer need not zero
    them): the product is still exact, with the cycles of the zero-padded stream."""
    from amaranth.hdl import signed

    from llmloom.hw.stream import row_layout
    from llmloom.perf.cycles import gemm_cycles
    from llmloom.sim.harness import Drive
    from llmloom.sim.runner import simulate
    from llmloom.sim.streams import pack_rows, unpack_rows

    cfg = GemmConfig(rows=3, cols=4, k=k, n=6, lanes=lanes)
    m = 7
    a = rng.integers(-128, 128, (m, k))
    w = rng.integers(-128, 128, (k, cfg.n))
    padded = rng.integers(-128, 128, (m, cfg.k_beats * lanes))
    padded[:, :k] = a
    comp = Gemm(cfg, weights=w)
    drive = Drive(preload={}, timed={"act": pack_rows(comp.act.payload.shape(), padded)},
                  expect={"o": m * cfg.n_tiles})
    seed = int(rng.integers(1 << 30))
    beats, cycles, *_ = simulate(comp, drive, stalls_in=Stalls(stall, seed),
                                 stalls_out=Stalls(stall, seed + 1))
    c, _, _ = unpack_rows(row_layout(signed(32), cfg.cols), beats["o"], cfg.n)
    np.testing.assert_array_equal(c, a @ w)
    if stall == "none":
        assert cycles == gemm_cycles(cfg, m)


def test_k_beats_round_up():
    assert GemmConfig(k=33, lanes=4).k_beats == 9
    assert GemmConfig(k=3, lanes=4).k_beats == 1
    assert GemmConfig(k=32, lanes=4).k_beats == 8


@pytest.mark.parametrize("bad, message", [
    (dict(lanes=65), "lanes=65 is out of range"),
    (dict(rows=0), "rows=0 is out of range"),
    (dict(cols=65), "cols=65 is out of range"),
    (dict(w_width=6), "w_width=6 is not allowed"),
    (dict(k=1 << 17), "k=131072 is out of range"),
    (dict(rows=2.5), "rows=2.5 must be an integer"),
    (dict(rows=True), "rows=True must be an integer"),
])
def test_config_rejects(bad, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        GemmConfig(**bad)


def test_accumulator_width_is_derived():
    assert GemmConfig(k=1, lanes=1).acc_width == 16
    assert GemmConfig(k=768, lanes=8).acc_width == 26
    assert GemmConfig(k=1024, lanes=8, w_width=4).acc_width == 22
    assert GemmConfig(k=65536, lanes=8).acc_width == 32   # the largest k still fits int32


def test_weight_shape_checked():
    with pytest.raises(ValueError, match=r"expected \(k, n\) = \(4, 4\)"):
        Gemm(GemmConfig(k=4, n=4), weights=np.zeros((4, 5)))


@pytest.mark.parametrize("stall", STALLS)
def test_nine_bit_activations_hold_probabilities(stall, rng):
    """a_width=9: uint8 softmax probabilities (0..255) times int8 V, as attention's P·V needs."""
    cfg = GemmConfig(rows=3, cols=4, k=16, n=6, lanes=4, a_width=9)
    p = rng.integers(0, 256, (5, 16)).astype(np.uint8)
    v = rng.integers(-128, 128, (16, 6), dtype=np.int8)
    p[0] = 255
    v[:, 0] = -128
    _check(cfg, p, v, stall)
    with pytest.raises(ConfigError, match="allowed: k <= 32768"):
        GemmConfig(k=65536, lanes=8, a_width=9)


@pytest.mark.parametrize("stall", STALLS)
def test_eleven_bit_activations_hold_probabilities(stall, rng):
    """a_width=11: the softmax's 10-bit probabilities (0..1023) times int8 V, attention's P·V
    (the largest products at both signs); 8192 keys, the longest context, fit int32."""
    cfg = GemmConfig(rows=3, cols=4, k=16, n=6, lanes=4, a_width=11)
    p = rng.integers(0, 1024, (5, 16)).astype(np.uint16)
    v = rng.integers(-128, 128, (16, 6), dtype=np.int8)
    p[0] = 1023
    v[:, 0] = -128
    v[:, 1] = 127
    _check(cfg, p, v, stall)
    assert GemmConfig(k=8192, lanes=8, a_width=11).acc_width == 32
    with pytest.raises(ConfigError, match="allowed: k <= 8192"):
        GemmConfig(k=8193, lanes=8, a_width=11)
