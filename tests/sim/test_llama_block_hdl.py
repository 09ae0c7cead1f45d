"""The LLaMA-class block's generated Verilog on Icarus and Verilator, through the
``llama-block`` harness: a prefill then decode steps in one run, static and dynamic schemes,
under random stalls, bit-exact with ``layer_bitexact``, the two simulators in the same cycles;
stall-free, the cycles of the pipeline model (``perf.cycles``), per tensor."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.perf.cycles import BLOCK_CYCLES, layer_timing
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

from ..hw.test_llama_block import llama_case
from ..hw.test_llama_row_exponents import row_exponent_case


# Icarus runs the static scheme by default, and its reference run is the static scheme's run on
# Verilator under these stalls. The dynamic scheme runs on Verilator by default; on Icarus with
# --runslow: its Icarus run was the suite's longest test (about 4 minutes of a loaded CI
# machine), its dynamic blocks run on Icarus under random stalls in the W4 case below, and
# Icarus's cycles equal Verilator's there and for the static scheme.
@pytest.mark.parametrize("hdl_sim, scheme", [
    ("icarus", "static"),
    pytest.param("icarus", "dynamic", marks=pytest.mark.slow), ("verilator", "dynamic"),
], indirect=["hdl_sim"])
def test_llama_block_on_hdl_simulators(hdl_sim, verilator_sim, scheme, rng):
    h, cfg, t = llama_case(rng, scheme)
    stalls = dict(stalls_in=Stalls("random", 11), stalls_out=Stalls("random", 12))
    runs = [run_block(h, cfg, t, sim=hdl_sim, **stalls)]
    if hdl_sim == "icarus":
        # the same stalls on Verilator: bit-exact too, and one cycle count across the
        # simulators, as Amaranth's simulator gives (tests/hw/...)
        runs.append(run_block(h, cfg, t, sim=verilator_sim, **stalls))
        assert runs[0].cycles == runs[1].cycles
        assert runs[0].tensor_cycles == runs[1].tensor_cycles
    golden = h.golden(cfg, h.prepare(cfg, t))
    for result in runs:
        for k in ("y", "y_int"):
            np.testing.assert_array_equal(result.outputs[k], golden[k])


@pytest.mark.parametrize("scheme", ["static", "dynamic"])
def test_llama_block_stall_free_cycles_are_predicted(verilator_sim, scheme, rng):
    h, cfg, t = llama_case(rng, scheme)
    result = run_block(h, cfg, t, sim=verilator_sim)
    golden = h.golden(cfg, h.prepare(cfg, t))
    np.testing.assert_array_equal(result.outputs["y_int"], golden["y_int"])
    sizes = h.shape_args(cfg, h.prepare(cfg, t))[0]
    assert result.cycles == BLOCK_CYCLES["llama-block"](cfg, sizes)
    assert list(result.tensor_cycles) == layer_timing(cfg, sizes).tensor_cycles


def test_w4_llama_block_on_hdl_simulators(hdl_sim, verilator_sim, rng):
    """W4A8 (the GEMMs' grouped 4-bit weights) in the generated Verilog, the smallest case, with
    row exponents on its residual stream as ``generate --quant W4A8`` builds it (so the
    Verilator model is ``tests/flows/test_cli_generate.py``'s W4 one: one build of a W4 block
    for both; W4 without row exponents is ``tests/hw/test_llama_block.py``'s): on Icarus under
    random stalls bit-exact with ``layer_bitexact``, in Verilator's cycles under the same
    stalls; on Verilator stall-free, bit-exact and in the cycles of the pipeline model, per
    tensor (W4 adds no cycle)."""
    h, cfg, t = row_exponent_case(rng, rows=4, prefill=2, weight_bits=4)
    prep = h.prepare(cfg, t)
    golden = h.golden(cfg, prep)
    assert cfg.weight_bits == 4 and golden["y_e"].max() > 0
    if hdl_sim == "icarus":
        stalls = dict(stalls_in=Stalls("random", 13), stalls_out=Stalls("random", 14))
        result = run_block(h, cfg, t, sim=hdl_sim, **stalls)
        reference = run_block(h, cfg, t, sim=verilator_sim, **stalls)
        assert result.tensor_cycles == reference.tensor_cycles
    else:
        result = run_block(h, cfg, t, sim=hdl_sim)
        sizes = h.shape_args(cfg, prep)[0]
        assert list(result.tensor_cycles) == layer_timing(cfg, sizes).tensor_cycles
        assert layer_timing(cfg, sizes).tensor_cycles == \
            layer_timing(cfg.replace(weight_bits=8, numbers=None), sizes).tensor_cycles
    for k in ("y", "y_int", "y_e"):
        np.testing.assert_array_equal(result.outputs[k], golden[k])
