"""Calibrated memories written at run time (:mod:`llmloom.hw.blocks.loadable`): every block of
a LLaMA layer but the linear stages (norms, RoPE, attention's re-quantisers and softmax, SiLU,
mul, residuals), built for one calibration and loaded with another's numbers through a
:class:`ConstantLoader`, runs exactly as the block built for the other calibration: the two in
lockstep on the same random tensors under random stalls, every output beat equal."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module, Value
from amaranth.lib import stream
from amaranth.lib.wiring import Flow
from amaranth.sim import Simulator

from llmloom.hw.blocks.loadable import (
    CHUNK,
    Constant,
    ConstantBus,
    ConstantLoader,
    constants_of,
)
from llmloom.hw.layers.layer import layer_constants, stage_block

from .test_llama_block import llama_case

EXPONENTS = ("e", "r_e", "o_e")


def _gpt2_case(rng, scheme):
    from llmloom.sim.blocks.layers import Gpt2BlockHarness

    from ..sim.test_layer_hdl import HEADS, PAR, SEQ, D, _float_weights
    h = Gpt2BlockHarness().options(weights=_float_weights(rng), mode="decode")
    x = rng.normal(0.0, 1.0, (SEQ, D)).astype(np.float32)
    return h, h.config({"heads": HEADS, "seq": SEQ, **PAR, "scheme": scheme}, {"x": x}), None


def _two_calibrations(scheme, seed, arch="llama"):
    rng = np.random.default_rng(seed)
    case = llama_case if arch == "llama" else _gpt2_case
    (ha, ca, _), (hb, cb, _) = case(rng, scheme), case(rng, scheme)
    return ha.quantized(ca).config, hb.quantized(cb).config


def _stream_ports(block, flow):
    return [(name, port) for name, member in block.signature.members.items()
            if member.is_signature and isinstance(member.signature, stream.Signature)
            and member.flow == flow for port in [getattr(block, name)]]


def _lockstep(cfg, stage, loaded, ref, words, rows, seed, max_cycles=20_000):
    """Load ``words`` into ``loaded`` (through a loader on its bus), then run ``rows`` random
    rows into both blocks at once; returns the output beats compared (all equal)."""
    rng = np.random.default_rng(seed)
    m = Module()
    m.submodules.loaded, m.submodules.ref = loaded, ref
    m.submodules.loader = loader = ConstantLoader(loaded._bus)
    ins = dict(_stream_ports(ref, Flow.In))
    outs = [name for name, _ in _stream_ports(ref, Flow.Out)]
    tensors = dict(zip([n for n in ins if n not in EXPONENTS], stage.inputs, strict=True))
    beats = {}
    for name, port in ins.items():
        lanes = len(port.payload.data)
        per_row = 1 if name in EXPONENTS else cfg.tensor_length(tensors[name]) // lanes
        shape = port.payload.data[0].shape()
        lo, hi = (0, 1) if name in EXPONENTS else (
            (-(1 << (shape.width - 1)), 1 << (shape.width - 1)) if shape.signed
            else (0, 1 << shape.width))
        beats[name] = [{"data": [int(v) for v in rng.integers(lo, hi, lanes)],
                        "last": int((b + 1) % per_row == 0),
                        "end": int(b == rows * per_row - 1)}
                       for b in range(rows * per_row)]
    expect = {name: rows * (1 if name in EXPONENTS else
                            cfg.tensor_length(stage.output) // len(getattr(ref, name).payload.data))
              for name in outs}
    seen = {name: [] for name in outs}

    async def bench(ctx):
        for w in words:
            ctx.set(loader.i.valid, 1)
            ctx.set(loader.i.payload, int(w))
            await ctx.tick()
        ctx.set(loader.i.valid, 0)
        for _ in range(3):
            await ctx.tick()
        at = dict.fromkeys(ins, 0)
        for _ in range(max_cycles):
            offer = {}
            for name in ins:
                offer[name] = at[name] < len(beats[name]) and rng.random() < 0.75
                for blk in (loaded, ref):
                    port = getattr(blk, name)
                    ctx.set(port.valid, offer[name])
                    if offer[name]:
                        ctx.set(port.payload, beats[name][at[name]])
            take = {name: bool(rng.random() < 0.75) for name in outs}
            for name in outs:
                for blk in (loaded, ref):
                    ctx.set(getattr(blk, name).ready, take[name])
            for name in ins:
                ready = [ctx.get(getattr(blk, name).ready) for blk in (loaded, ref)]
                assert ready[0] == ready[1], name
                at[name] += int(offer[name] and ready[0])
            for name in outs:
                ports = [getattr(blk, name) for blk in (loaded, ref)]
                valid = [ctx.get(p.valid) for p in ports]
                assert valid[0] == valid[1], name
                if valid[0]:
                    got = [ctx.get(Value.cast(p.payload)) for p in ports]
                    assert got[0] == got[1], (name, len(seen[name]))
                    if take[name]:
                        seen[name].append(got[0])
            await ctx.tick()
            if all(len(seen[n]) == expect[n] for n in outs):
                break
        assert all(len(seen[n]) == expect[n] for n in outs), "timed out"
    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


def _loaded_block(cfg, stage, constants):
    bus = ConstantBus([(f"{stage.name}.{c.name}", c) for c in constants])
    block = stage_block(cfg, stage, bus.scope(stage.name))
    block._bus = bus
    return block


STAGES = ["norm1", "rope_q", "rope_k", "attention", "residual1", "silu", "mul", "residual2"]
#: GPT-2's own: layernorm (its shifts ``beta``) and GELU
GPT2_STAGES = ["norm1", "gelu"]


@pytest.mark.parametrize("scheme", ["static", "dynamic"])
@pytest.mark.parametrize("arch, name", [("llama", n) for n in STAGES] +
                         [("gpt2", n) for n in GPT2_STAGES])
def test_loaded_calibration_runs_as_the_built_one(arch, name, scheme):
    """Block of calibration A, loaded with B's numbers: beat for beat B's block."""
    ca, cb = _two_calibrations(scheme, 7, arch)
    stage = ca.description[name]
    ref = stage_block(cb, stage)
    consts = constants_of(ref)
    words = np.concatenate([c.words() for c in consts])
    before = np.concatenate([c.words() for c in constants_of(stage_block(ca, stage))])
    assert not np.array_equal(before, words)          # the calibrations differ here
    seen = _lockstep(cb, stage, _loaded_block(ca, stage, consts), ref, words, rows=3,
                     seed=11)
    assert seen


def test_layer_constants_are_the_blocks_memories(rng):
    """The layer's list: every calibrated memory of its non-linear stages, keyed by stage,
    each word a whole number of 32-bit chunks; the two calibrations agree on every shape."""
    ca, cb = _two_calibrations("static", 3)
    la, lb = layer_constants(ca), layer_constants(cb)
    assert [k for k, _ in la] == [k for k, _ in lb]
    assert {k.split(".")[0] for k, _ in la} == {
        "norm1", "rope_q", "rope_k", "attention", "residual1", "norm2", "silu", "mul",
        "residual2"}
    for (_, a), (_, b) in zip(la, lb, strict=True):
        assert (a.width, a.depth) == (b.width, b.depth)
        assert a.words().size == a.depth * -(-a.width // CHUNK)


def test_constant_words_are_its_bits_low_chunk_first():
    from amaranth.hdl import signed
    from amaranth.lib import data
    c = Constant("t", data.ArrayLayout(signed(20), 3), ((-1, 0, 1), (5, -6, 7)))
    w = c.words().reshape(2, 2)
    v = int(w[1, 0]) | int(w[1, 1]) << 32
    assert [((v >> (20 * j)) & 0xFFFFF) for j in range(3)] == [5, (1 << 20) - 6, 7]
