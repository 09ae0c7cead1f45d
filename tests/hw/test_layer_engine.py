"""The layer config's ``engine`` field: the engine config of every linear stage, the GEMM's
config whatever the engine, the GEMV's rules rejected in one line naming the field, the layer
RTL's cols rules applied to the engine in use, the bypass depths derived per engine, and the
linear stage elaborating the engine named."""

from __future__ import annotations

import pytest
from amaranth.hdl import Fragment

from llmloom.hw.blocks.gemm_config import GemmConfig
from llmloom.hw.blocks.gemv import GemvConfig
from llmloom.hw.config import ConfigError
from llmloom.hw.layers.common import (
    Linear,
    check_layer_rtl,
    engine_held_rows,
    ffn_bypass_depth,
    ffn_in_flight_rows,
)
from llmloom.hw.layers.config import ENGINES, LINEARS, LayerConfig
from llmloom.sim.quantize import quantize_layer

from .test_gpt2_block import HEADS, SEQ, TINY, D, float_weights

BASE = dict(d_model=64, heads=4, d_ff=128, seq=16, lanes=4, linear_rows=8, linear_cols=4,
            ffn_rows=4, ffn_cols=16)


def _one_line(info):
    assert "\n" not in str(info.value)


def test_engine_default_and_choices():
    assert ENGINES == ("gemm", "gemv")
    assert LayerConfig().engine == "gemm"
    with pytest.raises(ConfigError, match=r"engine='gemx' is not allowed; allowed: gemm \| "
                       "gemv") as info:
        LayerConfig(engine="gemx")
    _one_line(info)


@pytest.mark.parametrize("engine, cls", [("gemm", GemmConfig), ("gemv", GemvConfig)])
def test_linear_is_the_engine_config(engine, cls):
    cfg = LayerConfig(**BASE, engine=engine)
    want = {"q": (8, 4, 64, 64), "k": (8, 4, 64, 64), "v": (8, 4, 64, 64),
            "o": (8, 4, 64, 64), "f1": (4, 16, 64, 128), "f2": (4, 16, 128, 64)}
    for name in LINEARS:
        lin = cfg.linear(name)
        assert type(lin) is cls
        assert (lin.rows, lin.cols, lin.k, lin.n) == want[name]
        assert (lin.lanes, lin.a_width, lin.w_width) == (4, 8, 8)
        # the GEMM config stays available whatever the engine, with the same fields
        gemm = cfg.gemm(name)
        assert type(gemm) is GemmConfig
        assert (gemm.rows, gemm.cols, gemm.k, gemm.n, gemm.lanes) == (*want[name], 4)
    assert cfg.linear_macs_per_cycle == {"q": 32, "k": 32, "v": 32, "o": 32, "f1": 64,
                                         "f2": 64}
    with pytest.raises(ConfigError, match=r"linear stage 'x' is not allowed; allowed: q \| k \| v"):
        cfg.linear("x")


def test_gemv_stages_are_gemv(rng):
    cfg, _ = _calibrated(rng, dict(TINY, engine="gemv"))
    linears = {name: c[0] for name, c in cfg.stages if name in LINEARS}
    assert sorted(linears) == sorted(LINEARS)
    assert all(type(c) is GemvConfig for c in linears.values())


@pytest.mark.parametrize("fields, message", [
    ({"linear_rows": 6}, "linear_rows=6 is not a multiple of lanes=4; allowed with "
                         "engine=gemv: a multiple of lanes"),
    ({"ffn_rows": 2}, "ffn_rows=2 is not a multiple of lanes=4; allowed with engine=gemv: a "
                      "multiple of lanes"),
])
def test_gemv_rows_must_be_a_multiple_of_lanes(fields, message):
    LayerConfig(**(BASE | fields))          # fine on the GEMM
    with pytest.raises(ConfigError, match=message) as info:
        LayerConfig(**(BASE | fields), engine="gemv")
    _one_line(info)
    with pytest.raises(ConfigError, match=message):
        LayerConfig(**BASE, engine="gemv").replace(**fields)


def _calibrated(rng, par):
    fw = float_weights(rng)
    cfg, w8, _ = quantize_layer(fw, rng.normal(0.0, 1.0, (SEQ, D)), "gpt2", HEADS, SEQ, **par)
    return cfg, w8


@pytest.mark.parametrize("engine", ["gemm", "gemv"])
def test_layer_rtl_checks_the_engine_in_use(engine, rng):
    cfg, w8 = _calibrated(rng, dict(TINY, engine=engine))
    check_layer_rtl(cfg, w8)
    with pytest.raises(ConfigError, match=r"^q: cols=3 does not divide the output width 8"):
        check_layer_rtl(cfg.replace(linear_cols=3), w8)
    # lanes=2, cols 8 and 16 divide n=16 of FFN1; cols=16 does not divide n=8 of FFN2
    with pytest.raises(ConfigError, match=r"^f2: cols=16 does not divide"):
        check_layer_rtl(cfg.replace(ffn_cols=16), w8)


def test_bypass_depths_per_engine():
    gemm = LayerConfig(**BASE)
    gemv = LayerConfig(**BASE, engine="gemv")
    assert engine_held_rows(gemm, 4) == 16 and engine_held_rows(gemv, 4) == 4
    assert ffn_in_flight_rows(gemm) == 8 * 4 + 4
    assert ffn_in_flight_rows(gemv) == 8 + 4
    assert ffn_bypass_depth(gemv) == 12 * 64 // 4
    # the GEMV's depth does not grow with its rows (it never holds a token tile)
    assert ffn_in_flight_rows(gemv.replace(ffn_rows=16)) == ffn_in_flight_rows(gemv)


@pytest.mark.parametrize("engine", ["gemm", "gemv"])
def test_linear_elaborates_the_engine(engine, rng):
    cfg, w8 = _calibrated(rng, dict(TINY, engine=engine))
    frag = Fragment.get(Linear(cfg, w8, "f1"), None)
    names = {name for _, name, _ in frag.subfragments}
    assert engine in names and ({"gemm", "gemv"} - {engine}).isdisjoint(names)
    assert {"gear", "requant"} <= names
