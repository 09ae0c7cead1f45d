"""Memory contents out of the Verilog (:func:`llmloom.hw.emit.split_memory_init`): weights,
tables and per-channel constants are read at time 0 from files beside the run, so a simulator
model built once serves every set of them, on Icarus and on Verilator alike."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth import Module, Shape, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from llmloom.hw.blocks.activation import GeluConfig
from llmloom.hw.blocks.gemm import Gemm, GemmConfig
from llmloom.hw.emit import emit_verilog, split_memory_init
from llmloom.sim.harness import get_harness
from llmloom.sim.runner import run_block, verilog_for_sim


class _Roms(wiring.Component):
    """Memories of awkward widths and layouts, read combinationally at one address."""

    def __init__(self, inits):
        self.inits = inits
        outs = {f"d{n}": Out(Shape.cast(shape).width) for n, (shape, _) in enumerate(inits)}
        super().__init__(outs | {"a": In(2)})

    def elaborate(self, platform):
        m = Module()
        for n, (shape, init) in enumerate(self.inits):
            m.submodules[f"rom{n}"] = rom = memory.Memory(shape=shape, depth=4, init=init)
            port = rom.read_port(domain="comb")
            m.d.comb += [port.addr.eq(self.a), getattr(self, f"d{n}").eq(port.data)]
        return m


INITS = [(1, [1, 0, 1]), (signed(5), [-16, 15, -1, 3]), (signed(13), [-4096, 4095, 7]),
         (64, [2**64 - 1, 1, 2**63]),
         (data.ArrayLayout(signed(8), 4), [[1, -2, 3, -4], [0, 0, 0, 0], [-128, 127, 5, 6]])]


def test_images_hold_the_memories_words():
    text = emit_verilog(_Roms(INITS))
    split, images = split_memory_init(text)
    assert len(images) == len(INITS) and "initial begin\n    rom" not in split
    assert split.count("$readmemh") == len(INITS)
    by_name = {im.file.split(".")[-2]: im for im in images}
    assert by_name["rom1"].width == 5 and by_name["rom1"].words == (16, 15, 31, 3, 0)[:4]
    assert by_name["rom3"].words[:3] == (2**64 - 1, 1, 2**63)
    word = by_name["rom4"].words[2]             # lanes packed low first, two's complement
    assert [(word >> (8 * j)) & 0xFF for j in range(4)] == [0x80, 0x7F, 5, 6]
    assert by_name["rom3"].text().splitlines()[0] == "f" * 16


def test_unknown_initialiser_is_refused():
    text = "module top(a);\n  reg [7:0] m [1:0];\n  initial begin\n    m[0] = 8'h01;\n" \
           "    m[1] = m[0];\n  end\nendmodule\n"
    with pytest.raises(ValueError, match="initialiser this parser does not know"):
        split_memory_init(text)


def test_one_model_serves_every_table(hdl_sim, rng):
    """Two GELUs at different scales (different tables): the same Verilog, so one build, and
    each bit-exact with its golden model."""
    sim = hdl_sim
    h = get_harness("gelu")
    texts = set()
    for x_scale in (1 / 32, 3 / 64):
        cfg = GeluConfig(length=8, lanes=4, x_scale=x_scale)
        texts.add(split_memory_init(verilog_for_sim(h.component(cfg), sim))[0])
        x = rng.integers(-128, 128, (3, 8)).astype(np.int8)
        res = run_block(h, cfg, {"x": x}, sim=sim)
        want = h.golden(cfg, h.prepare(cfg, {"x": x}))["y"]
        np.testing.assert_array_equal(res.outputs["y"], want)
    assert len(texts) == 1


def test_weights_in_memory_are_not_in_the_verilog(rng):
    cfg = GemmConfig(rows=2, cols=2, k=8, n=4, lanes=2)
    texts = {split_memory_init(emit_verilog(Gemm(cfg, weights=w)))[0]
             for w in rng.integers(-128, 128, (2, 8, 4))}
    assert len(texts) == 1


def _layer_cases():
    from llmloom.sim.blocks.layers import Gpt2BlockHarness

    from ..hw.test_llama_block import llama_case
    from .test_layer_hdl import HEADS, PAR, SEQ, D, _float_weights

    def gpt2(rng, scheme):
        h = Gpt2BlockHarness().options(weights=_float_weights(rng), mode="decode")
        x = rng.normal(0.0, 1.0, (SEQ, D)).astype(np.float32)
        return h, h.config({"heads": HEADS, "seq": SEQ, **PAR}, {"x": x})

    def llama(rng, scheme):
        h, cfg, _ = llama_case(rng, scheme)
        return h, cfg
    return {"gpt2": gpt2, "llama": llama}


@pytest.mark.parametrize("arch, scheme", [("gpt2", "static"), ("llama", "static"),
                                          ("llama", "dynamic")])
def test_two_calibrations_of_a_layer_are_one_build(arch, scheme, rng):
    """Two calibrations of one layer config (other weights, so other scales, multipliers,
    shifts, norm constants and RoPE ratios): their calibrated numbers differ, yet the Verilog
    after :func:`split_memory_init` is the same text, so one Verilator build key (one build
    serves every weight set of the config, issue 15)."""
    from llmloom.sim.verilated import build_key

    make = _layer_cases()[arch]
    (h1, c1), (h2, c2) = make(rng, scheme), make(rng, scheme)
    assert h1.quantized(c1).config != h2.quantized(c2).config    # the calibrations differ
    texts = [split_memory_init(verilog_for_sim(h.component(c), "verilator"))[0]
             for h, c in ((h1, c1), (h2, c2))]
    assert texts[0] == texts[1]
    assert build_key(texts[0], {}, 1) == build_key(texts[1], {}, 1)
