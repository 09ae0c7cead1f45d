"""A real SmolLM2 layer with row exponents on its residual stream (``stream_exponent`` 15, as
the bit-exact model runs the model) on Verilator: layer 2 (whose input rows already have
exponents up to 4: the first token's activation) on the chat prompt "Hi", a prefill then a
decode step, bit-exact with ``layer_bitexact`` in values and row exponents, in the cycles of
the pipeline model."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.layers.layer import Layer
from llmloom.perf.cycles import layer_timing
from llmloom.sim import runner
from llmloom.sim.blocks.layers import LlamaBlockHarness
from llmloom.sim.checkpoint import chat_prompt
from llmloom.sim.golden.layers import layer_bitexact
from llmloom.sim.harness import ControlStreams
from llmloom.sim.llm import STREAM_EXPONENT, LlamaSession, quantize_llama

LAYER = 2


@pytest.mark.slow
def test_smollm2_layer_with_row_exponents_on_verilator(smollm2, verilator_sim):
    qm = quantize_llama(smollm2, num_layers=LAYER + 1, stream_exponent=STREAM_EXPONENT)
    ids = qm.tokenizer.encode(chat_prompt("Hi"))
    qm = qm.with_seq(len(ids) + 1)
    seen = {"x": [], "y": []}

    def step(n, cfg, weights, x_int, mode, cache):
        y, cache = layer_bitexact(cfg, weights, x_int, mode, cache)
        if n == LAYER:
            seen["x"].append(x_int)
            seen["y"].append(y)
            seen["layer"] = cfg, weights
        return y, cache

    session = LlamaSession(qm, step)
    session.forward(ids)
    session.forward([ids[-1]])
    cfg, weights = seen["layer"]
    x_e = np.concatenate([x.e for x in seen["x"]])
    assert x_e.max() > 0
    sizes = [len(x.e) for x in seen["x"]]
    prepared = {"x_int": np.concatenate([x.values for x in seen["x"]]).astype(np.int64),
                "x_e": x_e, "sizes": sizes}
    result = runner.run_block(LlamaBlockHarness(), cfg, prepared, sim=verilator_sim,
                              prepared=True, component=ControlStreams(Layer(cfg, weights)))
    np.testing.assert_array_equal(result.outputs["y_int"],
                                  np.concatenate([y.values for y in seen["y"]]))
    np.testing.assert_array_equal(result.outputs["y_e"], np.concatenate([y.e for y in seen["y"]]))
    assert list(result.tensor_cycles) == layer_timing(cfg, sizes).tensor_cycles
