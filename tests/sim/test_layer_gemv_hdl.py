"""The composed layers with ``engine="gemv"`` (every linear stage on the decode GEMV): bit-exact
with ``layer_bitexact`` on Amaranth's simulator under stalls (GPT-2 prefill then decode, BERT
prefill) and on Icarus and Verilator (GPT-2 decode after prefill, same cycles as Amaranth); a
decode step is faster than on the GEMM with the same multipliers, and decode after a prefill
of l−1 rows equals the prefill of l bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module, Value
from amaranth.sim import Simulator

from llmloom.hw.blocks.gemv import GemvConfig
from llmloom.hw.layers.layer import BertLayer, Gpt2Block
from llmloom.hw.numeric import INT8
from llmloom.hw.stream import row_layout
from llmloom.sim.blocks.layers import Gpt2BlockHarness, layer_golden
from llmloom.sim.golden.layers import layer_bitexact
from llmloom.sim.quantize import quantize_input, quantize_layer
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls, pack_rows, unpack_rows

from ..hw.test_gpt2_block import (
    FF,
    HEADS,
    SEQ,
    STALLS,
    TINY,
    WIDE,
    D,
    float_weights,
    quantised,
    run_rtl,
)

GEMV = dict(TINY, engine="gemv")
# arrays wider than the lanes (the gearboxes narrow); k words of 6 (k = 8, 16 padded)
GEMV_WIDE = dict(WIDE, engine="gemv", linear_rows=6, ffn_rows=6)
# beats wider than the arrays' columns (the gearboxes widen)
GEMV_NARROW = dict(TINY, engine="gemv", lanes=4, linear_rows=4, linear_cols=2, ffn_rows=8,
                   ffn_cols=2)
# the small config of the decode comparison and of the HDL run
D2, FF2, HEADS2, SEQ2 = 16, 32, 2, 8
SMALL = dict(lanes=2, linear_rows=4, linear_cols=4, ffn_rows=4, ffn_cols=4, qk_rows=2,
             qk_cols=2, pv_rows=2, pv_cols=2)


@pytest.mark.parametrize("par, stall", [(GEMV, s) for s in STALLS]
                         + [(GEMV_WIDE, "random"), (GEMV_NARROW, "pattern")],
                         ids=[f"tiny-{s}" for s in STALLS] + ["wide-random", "narrow-pattern"])
def test_gpt2_gemv_decode_after_prefill_equals_golden(par, stall, rng):
    """A prefill of l−1 rows then a decode row through one instance: equal to the golden
    model's prefill + decode, and to the prefill of all l rows bit for bit."""
    cfg, w8, x, *_ = quantised(rng, par=par)
    assert all(isinstance(cfg.linear(n), GemvConfig) for n in ("q", "o", "f1", "f2"))
    sizes = [SEQ - 1, 1]
    got = run_rtl(cfg, w8, x, sizes, stall, int(rng.integers(1 << 30)))
    np.testing.assert_array_equal(got, layer_golden(cfg, w8, x, sizes))
    np.testing.assert_array_equal(got, layer_bitexact(cfg, w8, x, "prefill")[0])


def test_gpt2_gemv_decode_steps_from_empty_cache(rng):
    """One row at a time from an empty cache to a full one, random stalls."""
    cfg, w8, x, *_ = quantised(rng, par=GEMV_WIDE)
    sizes = [1] * SEQ
    got = run_rtl(cfg, w8, x, sizes, "random", int(rng.integers(1 << 30)))
    np.testing.assert_array_equal(got, layer_bitexact(cfg, w8, x, "prefill")[0])


def test_bert_gemv_prefill_equals_golden(rng):
    cfg, w8, x, *_ = quantised(rng, "bert", GEMV_WIDE)
    got = run_rtl(cfg, w8, x, [SEQ], "random", int(rng.integers(1 << 30)), cls=BertLayer)
    np.testing.assert_array_equal(got, layer_bitexact(cfg, w8, x, "prefill")[0])


# ---- decode step: GEMV against GEMM ---------------------------------------------------------
def tensor_cycles(cfg, weights, x_int, sizes):
    """Run the GPT-2 block on Amaranth's simulator one tensor at a time — each tensor's beats
    offered every cycle once the previous tensor's outputs have all left, output always
    ready — and return ``(y_int, [cycles per tensor])``, a tensor's cycles counted from its
    first input beat taken to its last output beat, inclusive."""
    dut = Gpt2Block(cfg, weights)
    beat = row_layout(INT8.shape, cfg.lanes)
    per_row = cfg.d_model // cfg.lanes
    i_payload, o_payload = Value.cast(dut.i.payload), Value.cast(dut.o.payload)
    out, cycles = [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        start = 0
        for size in sizes:
            words = pack_rows(beat, x_int[start:start + size])
            start += size
            need = len(out) + size * per_row
            first = last = None
            idx = cycle = 0
            while len(out) < need:
                assert cycle < 100_000, "the block stopped producing output"
                offer = idx < len(words)
                ctx.set(dut.i.valid, offer)
                if offer:
                    ctx.set(i_payload, words[idx])
                    if ctx.get(dut.i.ready):
                        first = cycle if first is None else first
                        idx += 1
                if ctx.get(dut.o.valid):
                    out.append(ctx.get(o_payload))
                    last = cycle
                await ctx.tick()
                cycle += 1
            ctx.set(dut.i.valid, 0)
            cycles.append(last - first + 1)
            await ctx.tick().repeat(4)         # idle between tensors

    top = Module()
    top.domains.sync = ClockDomain()
    top.submodules.dut = dut
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    y, _, _ = unpack_rows(beat, out, cfg.d_model)
    return y.astype(np.int8), cycles


def test_gemv_decode_step_is_faster_than_gemm(rng):
    """Same ``rows × cols`` multipliers per linear stage: the decode step (one row after a
    prefill of seq−1) takes fewer cycles on the GEMV, which keeps every multiplier busy on
    the one token, than on the GEMM, which uses one row of its array; both bit-exact."""
    fw = float_weights(rng, D2, FF2)
    xf = rng.normal(0.0, 1.0, (SEQ2, D2))
    sizes = [SEQ2 - 1, 1]
    steps = {}
    for engine in ("gemm", "gemv"):
        cfg, w8, xs = quantize_layer(fw, xf, "gpt2", HEADS2, SEQ2, **SMALL, engine=engine)
        x = quantize_input(xf, xs).astype(np.int64)
        assert cfg.linear_macs_per_cycle == {n: 16 for n in ("q", "k", "v", "o", "f1", "f2")}
        y, cycles = tensor_cycles(cfg, w8, x, sizes)
        np.testing.assert_array_equal(y, layer_bitexact(cfg, w8, x, "prefill")[0])
        steps[engine] = cycles[1]
    # each of the five linear stages on the decode row's path saves (rows − 1)/rows of its
    # GEMM steps at least; measured at this config: 870 (gemm) vs 506 (gemv) cycles
    assert steps["gemv"] < steps["gemm"]
    assert steps["gemm"] - steps["gemv"] > 200


# ---- Icarus and Verilator --------------------------------------------------------------------
# A Verilator build of a whole layer costs about a minute of CPU cold, over this file's
# budget (tests/sim/test_layer_hdl.py builds the GEMM layer by default): Icarus runs the GEMV
# layer by default, Verilator with --runslow (and the GEMV alone: tests/sim/test_gemv_hdl.py).
_SLOW_VERILATOR = ["icarus", pytest.param("verilator", marks=pytest.mark.slow)]


@pytest.mark.parametrize("hdl_sim", _SLOW_VERILATOR, indirect=True)
@pytest.mark.parametrize("dims, par", [
    ((D, FF, HEADS, SEQ), GEMV),
    # d_model=16, seq=8 with 4×4 engines
    pytest.param((D2, FF2, HEADS2, SEQ2), dict(SMALL, engine="gemv"), marks=pytest.mark.slow),
], ids=["d8", "d16"])
def test_gpt2_gemv_on_hdl_simulators(hdl_sim, dims, par, rng):
    """GPT-2 decode after prefill with the GEMV engine, through the ``gpt2-block`` harness (float
    x in): bit-exact with the golden model under stalls, and the same cycle count as
    Amaranth's simulator."""
    d, ff, heads, seq = dims
    h = Gpt2BlockHarness().options(weights=float_weights(rng, d, ff), mode="decode")
    x = rng.normal(0.0, 1.0, (seq, d)).astype(np.float32)
    cfg = h.config({"heads": heads, "seq": seq, **par}, {"x": x})
    assert cfg.engine == "gemv"
    stalls = dict(stalls_in=Stalls("pattern"), stalls_out=Stalls("random", 7))
    result = run_block(h, cfg, {"x": x}, sim=hdl_sim, **stalls)
    prepared = h.prepare(cfg, {"x": x})
    assert prepared["sizes"] == [seq - 1, 1]
    golden = h.golden(cfg, prepared)
    for k in ("y", "y_int"):
        np.testing.assert_array_equal(result.outputs[k], golden[k])
    assert result.cycles == run_block(h, cfg, {"x": x}, **stalls).cycles
