"""The LLaMA-class block composed in RTL (:class:`~llmloom.hw.layers.layer.LlamaBlock`: RMSNorm,
RoPE on q and k, grouped-query attention, SwiGLU through the ``mul`` block) on Amaranth's
simulator, through the ``llama-block`` harness: bit-exact with ``layer_bitexact`` for a prefill
then decode steps, static and dynamic schemes, W8A8 and W4A8 (grouped 4-bit weights), under
stalls; tensors back to back (not gated
on the previous output) rotated at their own positions; stall-free, the cycles of the
pipeline model (``perf.cycles``), per tensor."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.layers.layer import LlamaBlock
from llmloom.sim.blocks.layers import (
    LlamaBlockHarness,
    layer_collect,
    layer_drive,
    layer_golden,
)
from llmloom.sim.harness import ControlStreams
from llmloom.sim.runner import run_block, simulate
from llmloom.sim.streams import Stalls

# the smallest layer that has every feature: 4 query heads on 2 KV heads (d_head 8), RoPE on
# beats of 4, an FFN twice as wide
D, HEADS, KV, FF, SEQ = 32, 4, 2, 64, 8
PAR = dict(heads=HEADS, kv_heads=KV, seq=SEQ, lanes=4, linear_rows=2, linear_cols=4,
           ffn_rows=2, ffn_cols=4, qk_rows=2, qk_cols=4, pv_rows=2, pv_cols=4,
           rope_base=1e5)


def llama_weights(rng, d=D, ff=FF, heads=HEADS, kv_heads=KV):
    """Seeded float weights of one LLaMA-class layer under the canonical names (no biases)."""
    kv = kv_heads * d // heads

    def n(k, m):
        return rng.normal(0.0, k ** -0.5, (k, m))
    return dict(ln1_g=1 + rng.normal(0.0, 0.1, d), ln2_g=1 + rng.normal(0.0, 0.1, d),
                wq=n(d, d), wk=n(d, kv), wv=n(d, kv), wo=n(d, d), w_gate=n(d, ff),
                w_up=n(d, ff), w_down=n(ff, d))


def llama_case(rng, scheme, rows=6, prefill=4, weight_bits=8, **extra):
    """``(harness, cfg, tensors)``: a prefill of ``prefill`` rows, then decode steps; at
    ``weight_bits`` 4 the weights are Q4_1 codes with their groups' scales and minima;
    ``extra`` more config fields."""
    h = LlamaBlockHarness().options(weights=llama_weights(rng), mode="decode", prefill=prefill)
    x = rng.normal(0.0, 1.0, (rows, D)).astype(np.float32)
    fields = {**PAR, "scheme": scheme, "weight_bits": weight_bits, **extra}
    return h, h.config(fields, {"x": x}), {"x": x}


@pytest.mark.parametrize("scheme, stall", [("static", "random"), ("dynamic", "pattern")])
def test_llama_block_prefill_then_decode(scheme, stall, rng):
    """Under stalls on Amaranth's simulator (stall-free cycles against the pipeline model run
    on Verilator, ``tests/sim/test_llama_block_hdl.py``: the same RTL, built once, seconds)."""
    h, cfg, t = llama_case(rng, scheme)
    seed = int(rng.integers(1 << 30))
    result = run_block(h, cfg, t, stalls_in=Stalls(stall, seed),
                       stalls_out=Stalls(stall, seed + 1))
    golden = h.golden(cfg, h.prepare(cfg, t))
    for k in ("y", "y_int"):
        np.testing.assert_array_equal(result.outputs[k], golden[k])
    assert result.outputs["y_int"].dtype == (np.int16 if scheme == "dynamic" else np.int8)
    assert len(result.tensor_cycles) == 3
    fm = h.float_metrics(cfg, h.prepare(cfg, t), result.outputs)
    assert fm["cosine_vs_float"] > 0.999


#: (config fields, cosine to float at least): W4A8 (GGUF Q4_1 codes with each group's 16-bit
#: scale and minimum), plain and packed; W8 in groups (GGUF's Q8_0, SmolLM2's W8A8: int8 codes
#: and group scales, no minima), packed.
GROUPED = {"w4-plain": ({"weight_bits": 4, "dsp_packing": False}, 0.99),
           "w4-packed": ({"weight_bits": 4, "dsp_packing": True}, 0.99),
           "w8-groups-packed": ({"weight_groups": True, "dsp_packing": True}, 0.999)}


@pytest.mark.parametrize("case", list(GROUPED))
def test_grouped_llama_block_is_bit_exact_under_stalls(case, rng):
    """Weights in groups (W4A8, or W8 with ``weight_groups``): every linear stage's GEMM holds
    the codes and group tables, bit-exact with ``layer_bitexact`` (its
    ``group_gemm_bitexact``) under random stalls, prefill then decode (stall-free cycles
    against ``layer_timing`` on Verilator: ``tests/sim/test_llama_block_hdl.py``); with
    ``dsp_packing`` two codes' products in each multiplier. As close to float as the layers
    of their width in test_w4 / test_llama_block."""
    fields, cosine = GROUPED[case]
    h, cfg, t = llama_case(rng, "dynamic", **fields)
    for name in cfg.linears:
        lin = cfg.linear(name)
        assert lin.weight_groups and lin.w_width == cfg.weight_bits
        assert lin.dsp_packing == fields["dsp_packing"]
    seed = int(rng.integers(1 << 30))
    result = run_block(h, cfg, t, stalls_in=Stalls("random", seed),
                       stalls_out=Stalls("random", seed + 1))
    golden = h.golden(cfg, h.prepare(cfg, t))
    for k in ("y", "y_int"):
        np.testing.assert_array_equal(result.outputs[k], golden[k])
    assert len(result.tensor_cycles) == 3
    assert h.float_metrics(cfg, h.prepare(cfg, t), result.outputs)["cosine_vs_float"] > cosine


def test_tensors_back_to_back_are_rotated_at_their_positions(rng):
    """Chunks offered without waiting for the previous output: the next chunk reaches the RoPE
    stages while this one is still in the attention (whose ``pos`` has not moved yet), and is
    still rotated at its own positions (the RoPE stages count their rows)."""
    h, cfg, t = llama_case(rng, "static", rows=6)
    prep = h.prepare(cfg, t)
    sizes = [3, 1, 1, 1]
    layer = h.quantized(cfg)
    drive = layer_drive(cfg, prep["x_int"], sizes, gated=False)
    beats, *_ = simulate(ControlStreams(LlamaBlock(layer.config, layer.weights)), drive,
                         stalls_in=Stalls("random", 5), stalls_out=Stalls("random", 6),
                         max_cycles=200_000)
    y = layer_collect(cfg, beats["o"], sizes)
    np.testing.assert_array_equal(y, layer_golden(cfg, layer.weights, prep["x_int"], sizes))
