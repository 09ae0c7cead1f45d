"""Every board: a smoke test of its build plan (no tool runs), the U280's pins and
constraints, and the board registry's errors."""

from __future__ import annotations

import pytest
from amaranth.hdl import Fragment

from llmloom.boards.platforms import BOARDS, get_board
from llmloom.boards.top import BoardTop
from llmloom.boards.u280 import AlveoU280Platform
from llmloom.flows.build import build, parse_nextpnr_fmax
from llmloom.hw.blocks.gemm_config import GemmConfig

SMALL = GemmConfig(rows=2, cols=2, k=8, n=8, lanes=4)

EXPECTED_FILES = {
    "ulx3s-85f": {"top.ys", "top.lpf", "build_top.sh"},
    "icebreaker": {"top.ys", "top.pcf", "build_top.sh"},
    "arty-a7-100t": {"top.tcl", "top.xdc", "top.v", "build_top.sh"},
    "u280": {"top.tcl", "top.xdc", "top.v", "build_top.sh"},
}


@pytest.mark.parametrize("name", list(BOARDS))
def test_smoke_build_plan(name):
    """``build(..., do_build=False)``: the default design elaborates for the board and
    Amaranth writes its complete build plan."""
    res = build(name, do_build=False)
    assert EXPECTED_FILES[name] <= set(res.files)
    assert res.vendor is (not get_board(name).open_toolchain)
    assert res.bitstream is None
    uart_pins = {"ulx3s-85f": ("M1", "L4"), "icebreaker": ("6", "9"),
                 "arty-a7-100t": ("A9", "D10"), "u280": ("A28", "B33")}[name]
    constraints = next(text for f, text in res.plan.files.items()
                       if f.endswith((".lpf", ".pcf", ".xdc")))
    for pin in uart_pins:
        assert pin in constraints


@pytest.mark.parametrize("name", list(BOARDS))
def test_vendor_project_or_plan_is_written(name, tmp_path):
    out = tmp_path / "out"
    res = build(name, SMALL, out, do_build=False, max_rows=2)
    assert sorted(p.name for p in out.iterdir()) == res.files
    assert "hbm_cattrip" in (out / "top.xdc").read_text() if name == "u280" else True


def test_u280_platform():
    p = AlveoU280Platform()
    assert p._part == "xcu280-fsvh2892-2L-e"
    assert p.family == "ultrascaleplus"
    assert p.default_clk_frequency == 100e6
    res = build("u280", SMALL, do_build=False, max_rows=2)
    xdc = res.plan.files["top.xdc"]
    for pin in ("BJ43", "BJ44", "A28", "B33", "D32"):
        assert f"LOC {pin}" in xdc
    assert "CONFIG_VOLTAGE 1.8" in xdc
    assert "xcu280-fsvh2892-2L-e" in res.plan.files["top.tcl"]
    # HBM_CATTRIP must be driven low, or the card's controller powers it down
    verilog = res.plan.files["top.v"]
    assert "hbm_cattrip" in verilog


def test_board_errors():
    with pytest.raises(ValueError, match="unknown board 'nope'; valid boards: ulx3s-85f, "
                                         "icebreaker, arty-a7-100t, u280"):
        get_board("nope")
    with pytest.raises(ValueError, match="needs a board platform"):
        Fragment.get(BoardTop(SMALL), None)
    with pytest.raises(ValueError, match="baud=6000000 is too fast"):
        build("icebreaker", SMALL, do_build=False, baud=6_000_000)
    with pytest.raises(ValueError, match="baud=2000000 is 4.2% off"):
        build("ulx3s-85f", SMALL, do_build=False, baud=2_000_000)
    with pytest.raises(TypeError, match="must be a GemmConfig"):
        build("icebreaker", {"rows": 2}, do_build=False)


def test_parse_nextpnr_fmax():
    log = ("Info: Max frequency for clock 'clk': 40.10 MHz (PASS at 12.00 MHz)\n"
           "Info: Max frequency for clock 'clk': 38.50 MHz (PASS at 12.00 MHz)\n"
           "Info: Max frequency for clock 'other': 90.00 MHz (PASS at 12.00 MHz)\n")
    assert parse_nextpnr_fmax(log) == 38.5
    assert parse_nextpnr_fmax("nothing") is None
