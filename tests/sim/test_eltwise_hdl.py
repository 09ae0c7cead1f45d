"""The element-wise blocks' generated Verilog (requant, residual, mul, gelu, silu) on Icarus and
Verilator through cocotb: bit-exact with the golden models under stalls, and the same cycle
count as Amaranth's simulator. One config per block keeps the Verilator builds to four."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.blocks.activation import GeluConfig, SiluConfig
from llmloom.hw.blocks.mul import MulConfig
from llmloom.hw.blocks.requant import RequantConfig
from llmloom.hw.blocks.residual import ResidualConfig
from llmloom.perf.cycles import BLOCK_CYCLES
from llmloom.sim.harness import get_harness
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

LENGTH = 12
I32 = np.iinfo(np.int32)


def _requant(rng, rows, length=LENGTH):
    acc = rng.integers(-(1 << 21), 1 << 21, (rows, length))
    acc[0] = I32.min            # edge rows: all minimum, all maximum, one huge value
    acc[1] = I32.max
    acc[2, min(5, length - 1)] = I32.max
    return {"acc": acc.astype(np.int32)}


def _requant_exp(rng, rows, length=LENGTH):
    """As :func:`_requant`, with one exponent per row: 0, e_max, then random."""
    tensors = _requant(rng, rows, length)
    e = rng.integers(0, 9, rows)
    e[:2] = 0, 8
    tensors["e"] = e
    return tensors


def _residual(rng, rows, length=LENGTH):
    x = rng.integers(-128, 128, (rows, length))
    r = rng.integers(-128, 128, (rows, length))
    x[0], r[0] = -128, -128
    x[1], r[1] = 127, 127
    return {"x": x.astype(np.int8), "r": r.astype(np.int8)}


def _residual16(rng, rows, length=LENGTH):
    x = rng.integers(-32768, 32768, (rows, length))
    r = rng.integers(-128, 128, (rows, length))
    x[0], r[0] = -32768, -128            # edge rows: both extremes, saturating at int16
    x[1], r[1] = 32767, 127
    x[2, :4] = [1, 3, 5, -7]             # odd x, zero r: exact ties at out_scale = 2·x_scale
    r[2, :4] = 0
    return {"x": x.astype(np.int16), "r": r.astype(np.int8)}


def _mul(rng, rows, length=LENGTH):
    a = rng.integers(-128, 128, (rows, length))
    b = rng.integers(-128, 128, (rows, length))
    a[0], b[0] = -128, -128              # edge rows: the largest product, the most negative
    a[1], b[1] = 127, -128
    a[2, :4] = [1, 3, 5, -7]             # products on exact ties at out_scale = 2·a_scale·b_scale
    b[2, :4] = 1
    return {"a": a.astype(np.int8), "b": b.astype(np.int8)}


def _mul16(rng, rows, length=LENGTH):
    a = rng.integers(-32768, 32768, (rows, length))
    b = rng.integers(-128, 128, (rows, length))
    a[0], b[0] = -32768, -128            # both extremes, saturating at int16
    a[1], b[1] = 32767, 127
    a[2, :4] = [1, 3, 5, -7]
    b[2, :4] = 1
    return {"a": a.astype(np.int16), "b": b.astype(np.int8)}


def _activation(rng, rows, length=LENGTH):
    x = rng.integers(-128, 128, (rows, length))
    x[0] = -128
    x[1] = 127
    x[2] = 0
    x[3, min(4, length - 1)] = 127
    return {"x": x.astype(np.int8)}


def _activation10(rng, rows, length=LENGTH):
    """int10 inputs (LLaMA's SiLU input hg), the extreme codes included."""
    x = rng.integers(-512, 512, (rows, length))
    x[0, :4] = [-512, 511, 0, -1]
    return {"x": x.astype(np.int16)}


_scales = np.random.default_rng(5).uniform(1e-5, 1e-4, LENGTH)
_scales13 = np.random.default_rng(6).uniform(1e-5, 1e-4, 13)
BLOCKS = {
    "requant": (RequantConfig(length=LENGTH, lanes=4, acc_scale=tuple(_scales),
                              bias=tuple(range(-600, 600, 100)), out_scale=0.05), _requant),
    "residual": (ResidualConfig(length=LENGTH, lanes=3, x_scale=0.05, r_scale=0.02,
                                out_scale=0.06), _residual),
    "mul": (MulConfig(length=LENGTH, lanes=3, a_scale=0.05, b_scale=0.02,
                      out_scale=2 * 0.05 * 0.02), _mul),
    "mul_L13": (MulConfig(length=13, lanes=4, a_scale=0.05, b_scale=0.02, out_scale=0.01,
                          rounding="half_up"), _mul),
    # the dynamic scheme's widths: a int16, b int8, out int16
    "mul_W16": (MulConfig(length=LENGTH, lanes=3, a_scale=1 / 1024, b_scale=1 / 64,
                          out_scale=2 / 1024 / 64, mult_bits=24, a_width=16, out_width=16),
                _mul16),
    "gelu": (GeluConfig(length=LENGTH, lanes=4, x_scale=0.04, approximation="erf"),
             _activation),
    "silu": (SiluConfig(length=LENGTH, lanes=6, x_scale=0.05), _activation),
    # lanes not dividing the length: the last beat of a row is padded, its padding lanes
    # hold random values here
    "requant_L13": (RequantConfig(length=13, lanes=4, acc_scale=tuple(_scales13),
                                  bias=tuple(range(-650, 650, 100)), out_scale=0.05), _requant),
    # a per-row exponent stream and int16 outputs, padded last beat
    "requant_exp": (RequantConfig(length=13, lanes=4, acc_scale=tuple(_scales13),
                                  bias=tuple(range(-650, 650, 100)), out_scale=0.05 / 256,
                                  out_width=16, row_exponent=True, e_max=8), _requant_exp),
    "residual_L13": (ResidualConfig(length=13, lanes=4, x_scale=0.05, r_scale=0.02,
                                    out_scale=0.06), _residual),
    "gelu_L13": (GeluConfig(length=13, lanes=4, x_scale=0.04), _activation),
    "silu_L3": (SiluConfig(length=3, lanes=4, x_scale=0.05), _activation),
    # int16 streams (the wide residual stream): x int16, r int8, out int16
    "residual_W16": (ResidualConfig(length=LENGTH, lanes=3, x_scale=1 / 1024, r_scale=0.5,
                                    out_scale=1 / 512, mult_bits=24, x_width=16,
                                    out_width=16), _residual16),
    "gelu_W16": (GeluConfig(length=13, lanes=4, x_scale=0.04, out_width=16), _activation),
    # LLaMA's hg: int10 in (a 1024-entry table), int16 out, padded last beat
    "silu_W10": (SiluConfig(length=13, lanes=4, in_width=10, out_width=16, x_scale=8.0 / 511,
                            out_scale=8.0 / 32767), _activation10),
}


@pytest.mark.parametrize("stall", ["none", "pattern", "random"])
@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_eltwise_on_hdl_simulators(hdl_sim, name, stall, rng, garbage_padding):
    cfg, make = BLOCKS[name]
    block = name.split("_")[0]
    h = get_harness(block)
    if cfg.length % cfg.lanes:
        h = garbage_padding(h, cfg.length)
    rows = 7
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
        assert result.cycles == cfg.cycles(rows)
        if block in BLOCK_CYCLES:
            assert result.cycles == BLOCK_CYCLES[block](cfg, rows)
