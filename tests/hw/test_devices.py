"""The device catalogue (``llmloom.hw.devices``): one source for perf and flows, its packing
rule the one hw's GEMM builds."""

import pytest

from llmloom.flows import synth_targets as synth
from llmloom.flows.resources import FIT_TARGETS
from llmloom.hw import devices as D
from llmloom.hw.blocks.gemm_config import GemmConfig
from llmloom.perf import devices as PD
from llmloom.perf import resources as R


def test_packing_rule_is_what_the_gemm_builds():
    # a packed PE multiplies a × (w_hi·2^18 + w_lo): 8 × 27 bits. One DSP48E2 (27×18) or DSP58
    # takes it; Yosys splits it over two MULT18X18D / SB_MAC16 (measured: a packed 2×2 GEMM is
    # 4 MULT18X18D on ecp5-85f, 4 SB_MAC16 on ice40-up5k, 2 DSP48E2 on xcup), so packing saves
    # no multiplier there.
    assert GemmConfig.PACK_SHIFT == D.PACK_SHIFT
    assert D.products_per_dsp("DSP48E2") == 2 and D.products_per_dsp("DSP58") == 2
    assert D.products_per_dsp("MULT18X18D") == 1 and D.products_per_dsp("SB_MAC16") == 1
    assert D.products_per_dsp("DSP48E1") == 1 and D.products_per_dsp("DSP48E1", 8, 4) == 2
    for fam in ("ice40", "ecp5", "xcup"):
        packed = GemmConfig(rows=2, cols=2, k=16, n=4, dsp_packing=True)
        plain = GemmConfig(rows=2, cols=2, k=16, n=4)
        dsp = {c: R.estimate_block("gemm", c, fam)["dsp"] for c in (packed, plain)}
        assert dsp[plain] / dsp[packed] == D.products_per_dsp(fam)


def test_perf_reads_the_catalogue():
    assert PD.get_fpga("ecp5-85f").max_packing["W8A8"] == 1
    assert PD.get_fpga("ice40-up5k").max_packing["W8A8"] == 1
    assert PD.get_fpga("u280").max_packing == {"W8A8": 2, "W4A8": 2, "W8A8-channel": 2,
                                              "W4A8-channel": 2, "W4A16": 1, "fp16": 1}
    assert PD.get_fpga("artix7-100t").max_packing["W4A8"] == 2
    assert PD.FPGAS["u280"] is D.DEVICES["u280"]
    for fam in R.FAMILIES.values():
        assert fam.device is D.FAMILIES[fam.name] and fam.mult is D.FAMILIES[fam.name].mult


@pytest.mark.parametrize("old", ["ice40up5k", "up5k", "ICE40UP5K"])
def test_old_spellings_are_aliases(old):
    assert PD.get_fpga(old).name == "ice40-up5k"
    assert synth.get_target(old).name == "ice40-up5k"
    assert R.family_of(old).name == "ice40"


def test_flows_reads_the_catalogue():
    for name, t in synth.TARGETS.items():
        dev = D.DEVICES[D.SYNTH_TARGETS[name].device]
        assert t.family == dev.family and t.capacity == dev.capacity
        assert synth.CELL_MAP[t.family] is D.FAMILIES[t.family].cells
    assert FIT_TARGETS == {"ice40": "ice40-up5k", "ecp5": "ecp5-85f", "xcup": "xcup"}
    assert synth.TARGETS["xcup"].capacity == PD.get_fpga("u280").capacity
