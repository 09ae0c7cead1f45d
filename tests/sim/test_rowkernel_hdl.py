"""The row kernels' generated Verilog (softmax, layernorm, rmsnorm, dynquant) on Icarus and
Verilator through cocotb: bit-exact with the golden models under stalls, and the same cycle
count as Amaranth's simulator."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.blocks.dynquant import DynQuantConfig
from llmloom.hw.blocks.norm import LayerNormConfig, RMSNormConfig
from llmloom.hw.blocks.softmax import SoftmaxConfig
from llmloom.perf.cycles import BLOCK_CYCLES
from llmloom.sim.harness import get_harness
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

LENGTH = 12


def _rows(rng, rows, length=LENGTH):
    x = rng.integers(-128, 128, (rows, length))
    x[0] = -128                 # edge rows: all minimum, all equal, one huge value
    x[1] = 9
    x[2] = -100
    x[2, min(7, length - 1)] = 127
    return x.astype(np.int8)


def _norm16(rng, rows, length=LENGTH):
    x = rng.integers(-32768, 32768, (rows, length))
    x[0] = -32768               # edge rows: all minimum, the largest variance, one off the top
    x[1] = np.where(np.arange(length) % 2, 32767, -32768)
    x[2] = 32767
    x[2, min(7, length - 1)] = 32766
    return {"x": x.astype(np.int16), "x_scale": np.float64(3e-4)}


def _wide_affine(length):
    """A trained layernorm's spread: gammas near 1 with one of 10 and one of 0.01, betas up to
    a few units; with out_scale 3e-4 (int16 range ±9.8) gamma 10 saturates at |n| ~ 1."""
    g = np.random.default_rng(12)
    gamma = np.abs(g.lognormal(0.0, 0.6, length))
    gamma[:2] = [10.0, 0.01]
    beta = g.normal(0.0, 0.3, length)
    beta[2] = -4.0
    return dict(gamma=tuple(gamma), beta=tuple(beta), out_scale=3e-4, x_scale=3e-4,
                in_width=16, out_width=16)


def _softmax(rng, rows, length=LENGTH):
    return {"x": _rows(rng, rows, length), "x_scale": np.float64(1 / 8)}


def _norm(rng, rows, length=LENGTH):
    return {"x": _rows(rng, rows, length), "x_scale": np.float64(1 / 32),
            "gamma": rng.normal(1.0, 0.3, length), "beta": rng.normal(0.0, 0.2, length)}


def _dynquant(rng, rows, length=LENGTH):
    """int16 rows of every magnitude, and the edges: all zero, −32768, 32767, 255 (e = 2)."""
    x = rng.integers(-32768, 32768, (rows, length)) >> rng.integers(0, 16, (rows, 1))
    x[0], x[1], x[2], x[3] = 0, -32768, 32767, 0
    x[3, min(7, length - 1)] = 255
    return {"x": x.astype(np.int16)}


def _affine(length):
    g = np.random.default_rng(11)
    return dict(gamma=tuple(g.normal(1.0, 0.3, length)), beta=tuple(g.normal(0.0, 0.2, length)))


BLOCKS = {
    "softmax": (SoftmaxConfig(length=LENGTH, lanes=3, x_scale=1 / 8, causal=True,
                              causal_offset=1), _softmax),
    "layernorm": (LayerNormConfig(length=LENGTH, lanes=4, x_scale=1 / 32, out_scale=0.03,
                                  **_affine(LENGTH)), _norm),
    "rmsnorm": (RMSNormConfig(length=LENGTH, lanes=2, x_scale=1 / 32, out_scale=0.03,
                              **_affine(LENGTH)), _norm),
    # lanes not dividing the length: the last beat of a row is padded, its padding lanes
    # hold random values here (left out of the max and the sums)
    "softmax_L13": (SoftmaxConfig(length=13, lanes=4, x_scale=1 / 8), _softmax),
    "layernorm_L13": (LayerNormConfig(length=13, lanes=4, x_scale=1 / 32, out_scale=0.03,
                                      **_affine(13)), _norm),
    "dynquant_L13": (DynQuantConfig(length=13, lanes=4), _dynquant),
    "rmsnorm_L3": (RMSNormConfig(length=3, lanes=4, x_scale=1 / 32, out_scale=0.03,
                                 **_affine(3)), _norm),
    # int16 in and out (the wide residual stream)
    "layernorm_W16": (LayerNormConfig(length=13, lanes=4, **_wide_affine(13)), _norm16),
    "rmsnorm_W16": (RMSNormConfig(length=LENGTH, lanes=3, eps=1e-12, **_wide_affine(LENGTH)),
                    _norm16),
}


@pytest.mark.parametrize("stall", ["none", "pattern", "random"])
@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_row_kernel_on_hdl_simulators(hdl_sim, name, stall, rng, garbage_padding):
    cfg, make = BLOCKS[name]
    block = name.split("_")[0]
    h = get_harness(block)
    if cfg.length % cfg.lanes:
        h = garbage_padding(h, cfg.length)
    rows = 6
    tensors = make(rng, rows, cfg.length)
    seed = int(rng.integers(1 << 30))
    stalls = dict(stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    result = run_block(h, cfg, tensors, sim=hdl_sim, **stalls)
    golden = h.golden(cfg, h.prepare(cfg, tensors))
    for key in golden:
        assert np.array_equal(result.outputs[key], golden[key]), key
    reference = run_block(h, cfg, tensors, sim="amaranth", **stalls)
    assert result.cycles == reference.cycles
    if stall == "none":
        assert result.cycles == BLOCK_CYCLES[block](cfg, rows)
