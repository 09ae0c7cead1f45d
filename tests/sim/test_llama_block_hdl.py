"""The LLaMA-class block's generated Verilog on Icarus and Verilator, through the
``llama-block`` harness: a prefill then decode steps in one run, static and dynamic schemes,
under random stalls, bit-exact with ``layer_bitexact`` and with the cycles of Amaranth's
simulator."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

from ..hw.test_llama_block import llama_case


@pytest.mark.parametrize("scheme", ["static", "dynamic"])
def test_llama_block_on_hdl_simulators(hdl_sim, scheme, rng):
    h, cfg, t = llama_case(rng, scheme)
    stalls = dict(stalls_in=Stalls("random", 11), stalls_out=Stalls("random", 12))
    result = run_block(h, cfg, t, sim=hdl_sim, **stalls)
    golden = h.golden(cfg, h.prepare(cfg, t))
    for k in ("y", "y_int"):
        np.testing.assert_array_equal(result.outputs[k], golden[k])
    reference = run_block(h, cfg, t, **stalls)
    assert result.cycles == reference.cycles
    assert result.tensor_cycles == reference.tensor_cycles
