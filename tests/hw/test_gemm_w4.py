"""The systolic GEMM with grouped 4-bit weights (``GemmConfig.weight_groups``, GGUF's Q4_1) on
Amaranth's simulator: bit-exact with ``group_gemm_bitexact`` under stalls, in the plain GEMM's
cycles."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import signed

from llmloom.hw.blocks.gemm import Gemm, GemmConfig
from llmloom.hw.blocks.gemm_config import GROUP_SCALE_BITS, WEIGHT_GROUP
from llmloom.hw.blocks.systolic import SystolicArray
from llmloom.hw.config import ConfigError
from llmloom.hw.layers.config import LayerConfig
from llmloom.hw.stream import row_layout
from llmloom.perf.cycles import gemm_cycles
from llmloom.sim.blocks.gemm import GemmHarness
from llmloom.sim.golden.gemm import group_gemm_bitexact
from llmloom.sim.harness import Drive, TensorError
from llmloom.sim.runner import run_block, simulate
from llmloom.sim.streams import Stalls, pack_rows, unpack_rows

H = GemmHarness()
LO, HI = -(1 << (GROUP_SCALE_BITS - 1)), (1 << (GROUP_SCALE_BITS - 1)) - 1
STALLS = ["none", "pattern", "random"]

# (M, K, N, rows, cols, lanes, rounding): k a multiple of 32; n not a multiple of cols; M not
# a multiple of rows; lanes dividing k or not; K < tile_steps never (k >= 32 > rows, cols)
SHAPES = [
    (5, 32, 7, 2, 3, 4, "half_even"),
    (1, 32, 1, 1, 1, 1, "half_even"),
    (7, 64, 9, 3, 4, 8, "half_up"),
    (9, 96, 5, 4, 2, 5, "floor"),        # lanes=5 does not divide 96: a padded beat per row
    (4, 64, 4, 4, 4, 4, "half_even"),
    (10, 32, 3, 2, 2, 1, "half_even"),   # input-bound: a tile's 64 beats outlast its 64 steps
]


def _gen(cfg, m, rng):
    a = rng.integers(-128, 128, (m, cfg.k), dtype=np.int8)
    q = rng.integers(0, 16, (cfg.k, cfg.n), dtype=np.int8)
    d = rng.integers(LO, HI + 1, (cfg.groups, cfg.n), dtype=np.int16)
    mn = rng.integers(LO, HI + 1, (cfg.groups, cfg.n), dtype=np.int16)
    return {"a": a, "w": q, "group_scale": d, "group_min": mn}


def _golden(cfg, t):
    return group_gemm_bitexact(t["a"], t["w"], t["group_scale"], t.get("group_min"), cfg.shift,
                               cfg.rounding)


def _check(cfg, t, stall, seed=1):
    result = run_block(H, cfg, t, stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    assert result.outputs["c"].dtype == np.int32
    np.testing.assert_array_equal(result.outputs["c"], _golden(cfg, t))
    if stall == "none":
        assert result.cycles == gemm_cycles(cfg, t["a"].shape[0])
    return result


def _cfg(k, n, rows=2, cols=3, lanes=4, **kw):
    return GemmConfig(rows=rows, cols=cols, k=k, n=n, lanes=lanes, w_width=4,
                      weight_groups=True, **kw)


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "M{}K{}N{}_{}x{}_l{}_{}".format(*s))
def test_random_shapes(shape, stall, rng):
    m, k, n, r, c, lanes, rounding = shape
    cfg = _cfg(k, n, r, c, lanes, rounding=rounding)
    _check(cfg, _gen(cfg, m, rng), stall, seed=int(rng.integers(1 << 30)))


# (M, K, N, rows, cols, lanes, rounding) with dsp_packing: even cols
PACKED_SHAPES = [
    (5, 32, 7, 2, 2, 4, "half_even"),
    (7, 64, 9, 3, 4, 8, "half_up"),
    (9, 96, 13, 4, 6, 5, "floor"),
    (3, 64, 32, 2, 32, 4, "half_even"),    # cols = WEIGHT_GROUP: the readout's last step
    (33, 32, 3, 32, 2, 4, "half_even"),    # rows = WEIGHT_GROUP
]


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("shape", PACKED_SHAPES,
                         ids=lambda s: "M{}K{}N{}_{}x{}_l{}_{}".format(*s))
def test_packed_codes_two_per_multiplier(shape, stall, rng):
    """``dsp_packing``: two columns' codes in one multiplier, bit-exact and in the unpacked
    GEMM's cycles, also at the largest rows and cols the group readout allows."""
    m, k, n, r, c, lanes, rounding = shape
    cfg = _cfg(k, n, r, c, lanes, rounding=rounding, dsp_packing=True)
    assert cfg.multipliers == r * c // 2
    _check(cfg, _gen(cfg, m, rng), stall, seed=int(rng.integers(1 << 30)))


@pytest.mark.parametrize("packing", [False, True], ids=["plain", "packed"])
@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("kind", ["most_positive", "most_negative", "alternating", "edges"])
def test_extremes(kind, stall, packing, rng):
    """Scales and minima at the int16 bounds, codes 0 and 15, activations -128 and 127: the
    largest sums come out exactly, at the edge of int32 with the least shift, with and
    without two codes per multiplier."""
    m, k, n = 5, 64, 5
    cfg = _cfg(k, n, rows=2, cols=2, lanes=8, dsp_packing=packing)
    g = cfg.groups
    if kind == "most_positive":    # a·W' = -128·-2**19 every step: the sum bound itself
        t = {"a": np.full((m, k), -128), "w": np.full((k, n), 15),
             "group_scale": np.full((g, n), LO), "group_min": np.full((g, n), LO)}
    elif kind == "most_negative":
        t = {"a": np.full((m, k), 127), "w": np.full((k, n), 15),
             "group_scale": np.full((g, n), LO), "group_min": np.full((g, n), LO)}
    elif kind == "alternating":
        t = {"a": np.where(np.indices((m, k)).sum(0) % 2, 127, -128),
             "w": np.where(np.indices((k, n)).sum(0) % 3, 15, 0),
             "group_scale": np.where(np.indices((g, n)).sum(0) % 2, HI, LO),
             "group_min": np.where(np.indices((g, n)).sum(0) % 2, LO, HI)}
    else:
        t = {"a": rng.choice([-128, 127, 0, 1, -1], (m, k)),
             "w": rng.choice([0, 15], (k, n)),
             "group_scale": rng.choice([LO, HI, 0], (g, n)),
             "group_min": rng.choice([LO, HI, 0], (g, n))}
    t = {"a": t["a"].astype(np.int8), "w": t["w"].astype(np.int8),
         "group_scale": t["group_scale"].astype(np.int16),
         "group_min": t["group_min"].astype(np.int16)}
    result = _check(cfg, t, stall)
    if kind == "most_positive":
        # k · 128 · 2**19 = 2**32, shifted by the least shift (2) with nothing dropped
        assert cfg.shift == cfg.min_group_shift == 2
        assert (result.outputs["c"] == 1 << 30).all()


@pytest.mark.parametrize("packing", [False, True], ids=["plain", "packed"])
@pytest.mark.parametrize("stall", STALLS)
def test_ten_bit_activations(stall, packing, rng):
    """A quant stage's int10 rows (LLaMA's ``narrow``) times codes: random rows beside rows of
    −512 and 511 with codes 15 and the int16 extremes of D and M, the sum bound at the least
    shift, with and without two codes per multiplier (10 + 5 bits below the high field)."""
    m, k, n = 6, 96, 4
    cfg = _cfg(k, n, rows=3, cols=2, lanes=4, a_width=10, dsp_packing=packing)
    t = _gen(cfg, m, rng)
    t["a"] = rng.integers(-512, 512, (m, k)).astype(np.int16)
    t["a"][0], t["a"][1] = -512, 511
    t["w"][:, :2] = 15
    t["group_scale"][:, 0], t["group_min"][:, 0] = LO, LO
    t["group_scale"][:, 1], t["group_min"][:, 1] = HI, HI
    result = _check(cfg, t, stall, seed=int(rng.integers(1 << 30)))
    # row 0, column 0: k · 512 · 2**19 shifted by the least shift, nothing dropped
    assert cfg.shift == cfg.min_group_shift
    assert result.outputs["c"][0, 0] == (k * 512 * (1 << 19)) >> cfg.shift


@pytest.mark.parametrize("rounding", ["half_even", "half_up", "floor"])
def test_ties_round_as_the_golden_model(rounding, rng):
    """A larger shift than needed (8) and sums chosen to land on ties and either side of them."""
    k, n, m = 32, 4, 6
    cfg = _cfg(k, n, rows=3, cols=4, lanes=4, group_shift=8, rounding=rounding)
    t = _gen(cfg, m, rng)
    t["group_min"][:] = 0
    t["w"][:] = 0
    t["w"][0] = 1
    t["a"][:, 0] = 1
    # sum = D: ties at D ≡ 128 (mod 256), even and odd quotients, both signs
    t["group_scale"][0] = [128, 384, -128, -384]
    t["a"][1, 0] = -1
    t["a"][2, 0] = 0
    result = _check(cfg, t, "random")
    got = result.outputs["c"]
    if rounding == "half_even":
        assert list(got[0]) == [0, 2, 0, -2]


def test_weights_and_tables_at_elaboration_then_reloaded(rng):
    """Codes and tables as the memories' initial contents (no stream needed); then the same
    contents replaced by new codes and tables through ``weight`` and ``group``."""
    cfg = _cfg(64, 5, rows=2, cols=2, lanes=4)
    t1, t2 = _gen(cfg, 3, rng), _gen(cfg, 4, rng)
    comp = Gemm(cfg, weights=t1["w"], group_scale=t1["group_scale"],
                group_min=t1["group_min"])
    act = comp.act.payload.shape()
    drive = Drive(preload={}, timed={"act": pack_rows(act, t1["a"])},
                  expect={"o": 3 * cfg.n_tiles})
    beats, cycles, *_ = simulate(comp, drive)
    c, _, _ = unpack_rows(row_layout(signed(32), cfg.cols), beats["o"], cfg.n)
    np.testing.assert_array_equal(c, _golden(cfg, t1))
    assert cycles == gemm_cycles(cfg, 3)

    # the same initial contents, replaced through the streams before the product
    comp = Gemm(cfg, weights=t1["w"], group_scale=t1["group_scale"],
                group_min=t1["group_min"])
    drive = Drive(
        preload={"group": pack_rows(comp.group.payload.shape(),
                                    Gemm.group_rows(cfg, t2["group_scale"], t2["group_min"])),
                 "weight": pack_rows(comp.weight.payload.shape(),
                                     Gemm.weight_rows(cfg, t2["w"]))},
        timed={"act": pack_rows(act, t1["a"])}, expect={"o": 3 * cfg.n_tiles})
    beats, *_ = simulate(comp, drive, stalls_in=Stalls("random", 5),
                         stalls_out=Stalls("random", 6))
    c, _, _ = unpack_rows(row_layout(signed(32), cfg.cols), beats["o"], cfg.n)
    np.testing.assert_array_equal(c, _golden(cfg, dict(t2, a=t1["a"])))


def test_reload_between_products(rng):
    """Two tensors in one run, the codes and tables loaded before them through the streams."""
    cfg = _cfg(32, 3, rows=3, cols=2, lanes=4, rounding="half_up")
    t = _gen(cfg, 5, rng)
    a2 = rng.integers(-128, 128, (2, 32), dtype=np.int8)
    comp = Gemm(cfg)
    act = comp.act.payload.shape()
    drive = Drive(
        preload={"weight": pack_rows(comp.weight.payload.shape(),
                                     Gemm.weight_rows(cfg, t["w"])),
                 "group": pack_rows(comp.group.payload.shape(),
                                    Gemm.group_rows(cfg, t["group_scale"], t["group_min"]))},
        timed={"act": pack_rows(act, t["a"]) + pack_rows(act, a2)},
        expect={"o": 7 * cfg.n_tiles})
    beats, *_ = simulate(comp, drive, stalls_in=Stalls("random", 3),
                         stalls_out=Stalls("random", 4))
    c, _, end = unpack_rows(row_layout(signed(32), cfg.cols), beats["o"], cfg.n)
    np.testing.assert_array_equal(c, np.vstack([_golden(cfg, t), _golden(cfg, dict(t, a=a2))]))
    assert list(np.flatnonzero(end)) == [5 * cfg.n_tiles - 1, 7 * cfg.n_tiles - 1]


@pytest.mark.parametrize("stall", STALLS)
def test_two_banks_pair_each_tensor_with_its_load(stall, rng):
    """Two weight banks (the fetched layer's double buffering): three tensors, each with its
    own codes and tables, the loads offered from the start alongside the activations; each
    load fills the bank its tensor will use (the third waits for the first tensor's bank), a
    product waits for both its codes and its tables. A weight beat is two rows' codes of a
    tile (``cols`` bytes)."""
    cfg = _cfg(64, 5, rows=2, cols=2, lanes=4)
    ts = [_gen(cfg, m, rng) for m in (3, 1, 2)]
    comp = Gemm(cfg, weight_banks=2)
    assert comp.weight.payload.shape().size == 2 + 8 * cfg.cols      # last, end, cols bytes
    act, wl, gl = (getattr(comp, p).payload.shape() for p in ("act", "weight", "group"))
    drive = Drive(
        preload={},
        timed={"act": sum((pack_rows(act, t["a"]) for t in ts), []),
               "weight": sum((pack_rows(wl, Gemm.weight_rows(cfg, t["w"])) for t in ts), []),
               "group": sum((pack_rows(gl, Gemm.group_rows(cfg, t["group_scale"],
                                                          t["group_min"])) for t in ts), [])},
        expect={"o": 6 * cfg.n_tiles})
    beats, *_ = simulate(comp, drive, stalls_in=Stalls(stall, 5), stalls_out=Stalls(stall, 6))
    c, _, end = unpack_rows(row_layout(signed(32), cfg.cols), beats["o"], cfg.n)
    np.testing.assert_array_equal(c, np.vstack([_golden(cfg, t) for t in ts]))
    assert list(np.flatnonzero(end)) == [n * cfg.n_tiles - 1 for n in (3, 4, 6)]


def test_weight_rows_pair_two_rows_of_a_tile():
    cfg = _cfg(32, 3, rows=1, cols=2, lanes=4)
    q = np.arange(32 * 3).reshape(32, 3) % 16
    rows = Gemm.weight_rows(cfg, q)
    assert rows.shape == (16, 2 * 2 * 2)
    # pair r: tile 0 (cols 0, 1) of rows 2r and 2r+1, then tile 1 (col 2, a zero lane)
    r = 5
    assert list(rows[r]) == [q[10, 0], q[10, 1], q[11, 0], q[11, 1], q[10, 2], 0, q[11, 2], 0]


def test_widths_and_shift_are_derived():
    cfg = _cfg(64, 8)
    assert cfg.expanded_range() == (-(1 << 19), (1 << 19) - 16)
    # the multipliers take the codes (signed 5 bits), a group's sums fit 8 + 5 + 5 bits; the
    # scaled sums are as wide as sums of a·(D·q + M) (20-bit weights)
    assert cfg.mul_w_width == 5 and cfg.sum_w_width == 20
    assert cfg.group_sum_width == cfg.pe_acc_width == 8 + 5 + 5
    assert cfg.acc_width == 8 + 20 + 6
    assert cfg.pe_stages == GemmConfig.PE_STAGES - GemmConfig.GROUP_STAGES
    assert cfg.readout_step == cfg.cols + cfg.pe_stages
    assert cfg.write_step == cfg.cols + GemmConfig.PE_STAGES == _cfg(64, 8).replace(
        weight_groups=False, w_width=8).readout_step     # the plain GEMM's write: its timing
    assert cfg.group_multipliers == 2 * cfg.cols and cfg.multipliers == cfg.rows * cfg.cols
    assert _cfg(64, 8, cols=4, dsp_packing=True).multipliers == 2 * 4 // 2
    assert cfg.min_group_shift == 2 and cfg.shift == 2 and cfg.obuf_width == 32
    big = _cfg(4096, 8, a_width=9)
    assert big.acc_width == 41 and big.min_group_shift == 9
    assert _cfg(32, 8, rounding="floor").acc_bias == 0
    assert _cfg(32, 8, group_shift=5).acc_bias == 16


@pytest.mark.parametrize("k", [32, 64, 96, 768, 2048, 3072, 8192])
@pytest.mark.parametrize("a_width", [8, 9, 10])
def test_least_shift_is_tight_and_below_the_layers(k, a_width):
    """The least shift keeps the sum bound in int32 and one less does not; the layer's own
    shift (``LayerConfig.group_shift``, with a bit to spare) is never below it."""
    cfg = _cfg(k, 4, a_width=a_width)
    s = cfg.min_group_shift
    assert -(-cfg.sum_bound >> s) <= 2**31 - 1
    assert s == 0 or -(-cfg.sum_bound >> (s - 1)) > 2**31 - 1
    layer = LayerConfig(arch="gpt2", d_model=64, heads=4, d_ff=k, seq=4, weight_bits=4)
    if a_width == 8:
        assert layer.group_shift("f2") >= _cfg(k, 4).min_group_shift


def test_group_tables_checked():
    cfg = _cfg(64, 4)
    with pytest.raises(ValueError, match=r"group_scale has shape \(3, 4\); expected"):
        Gemm(cfg, weights=np.zeros((64, 4)), group_scale=np.zeros((3, 4)),
             group_min=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="group_min outside int16"):
        Gemm(cfg, group_scale=np.zeros((2, 4)), group_min=np.full((2, 4), 1 << 15))
    with pytest.raises(ValueError, match="codes outside 0..15"):
        Gemm(cfg, weights=np.full((64, 4), 16))
    with pytest.raises(ValueError, match="go together"):
        Gemm(cfg, group_scale=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="weight_groups is false"):
        Gemm(GemmConfig(k=64, n=4), group_scale=np.zeros((2, 4)), group_min=np.zeros((2, 4)))


@pytest.mark.parametrize("bad, message", [
    (dict(k=48), f"k=48 with weight_groups; allowed: a multiple of {WEIGHT_GROUP}"),
    (dict(dsp_packing=True, cols=3), "cols=3 is odd, but dsp_packing pairs"),
    (dict(rows=33), f"rows=33 with weight_groups: .* allowed: rows <= {WEIGHT_GROUP}"),
    (dict(cols=40), f"cols=40 with weight_groups: .* allowed: cols <= {WEIGHT_GROUP}"),
    (dict(group_shift=1), "overflow int32; allowed: group_shift >= 2"),
    (dict(group_shift=33), "allowed: group_shift <= 32"),
    (dict(rounding="nearest"), "rounding='nearest' is not allowed"),
])
def test_config_rejects(bad, message):
    fields = dict(k=64, n=8, w_width=4, weight_groups=True) | bad
    with pytest.raises(ConfigError, match=message):
        GemmConfig(**fields)


def test_shift_without_groups_rejected():
    with pytest.raises(ConfigError, match="group_shift=3 is given, but weight_groups is false"):
        GemmConfig(k=64, n=8, group_shift=3)


# W8 codes in groups (GGUF's Q8_0: int8 codes and a scale per group, no minimum)
@pytest.mark.parametrize("packing", [False, True], ids=["plain", "packed"])
@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("shape", [(5, 32, 7, 2, 2, 4, "half_even"),
                                   (9, 96, 5, 4, 2, 5, "floor"),
                                   (7, 64, 9, 3, 4, 8, "half_up")],
                         ids=lambda s: "M{}K{}N{}_{}x{}_l{}_{}".format(*s))
@pytest.mark.parametrize("a_width", [9, 10])
def test_w8_codes_in_groups(shape, stall, packing, a_width, rng):
    m, k, n, r, c, lanes, rounding = shape
    cfg = GemmConfig(rows=r, cols=c, k=k, n=n, lanes=lanes, w_width=8, weight_groups=True,
                     rounding=rounding, dsp_packing=packing, a_width=a_width)
    assert cfg.k_per_word == 1 and cfg.mul_w_width == 8 and cfg.sum_w_width == 24
    half = 1 << (a_width - 1)
    t = {"a": rng.integers(-half, half, (m, k)).astype(np.int16),
         "w": rng.integers(-127, 128, (k, n), dtype=np.int8),
         "group_scale": rng.integers(LO, HI + 1, (cfg.groups, n), dtype=np.int16)}
    t["w"][0] = -128                           # the int8 extreme, beyond Q8_0's codes
    t["group_scale"][-1] = LO                  # and the scale's
    t["a"][0] = -half                          # and the activations' (a·w = 2**(a_width+6))
    _check(cfg, t, stall, seed=int(rng.integers(1 << 30)))
    assert cfg.group_tables == ("group_scale",) and cfg.group_multipliers == c
    array = SystolicArray(cfg)
    array._MustUse__silence = True             # only its ports are looked at
    assert "row_sum" not in array.signature.members


def test_w8_groups_have_no_minimum():
    """Q8_0's groups carry a scale only: a minimum is refused, by the block and its harness,
    and the group stream and memory words are a tile's scales."""
    cfg = GemmConfig(k=64, n=8, cols=4, w_width=8, weight_groups=True)
    d = np.ones((2, 8), np.int16)
    with pytest.raises(ValueError, match="group_min given, but w_width=8 groups have "
                                         "group_scale only"):
        Gemm(cfg, group_scale=d, group_min=np.zeros((2, 8)))
    with pytest.raises(ValueError, match="group_scale is missing"):
        Gemm(_cfg(64, 8), group_min=d)
    assert Gemm.group_layout(cfg)["data"].shape.length == cfg.cols
    assert Gemm.group_rows(cfg, d).shape == (2, 2 * cfg.cols)
    with pytest.raises(TensorError, match="tensor 'group_min' is given, but w_width=8"):
        H.prepare(cfg, {"a": np.zeros((1, 64), np.int8), "w": np.zeros((64, 8), np.int8),
                        "group_scale": d, "group_min": d})


def test_w8_range_and_shift():
    cfg = GemmConfig(k=64, n=8, w_width=8, weight_groups=True)
    lo, hi = cfg.expanded_range()
    assert (lo, hi) == (-(1 << 22) - (1 << 15) + 128, (1 << 22) + (1 << 15) - 1)
    assert lo >= -(1 << 23) and hi < 1 << 23          # a signed 24-bit W'
    assert cfg.sum_bound == 64 * 128 * -lo
    with pytest.raises(ValueError, match="weights outside int8"):
        Gemm(cfg, weights=np.full((64, 8), 128))
