"""The Verilog emission's compact memory contents (``hw.emit._emit_memory``, in place of
Amaranth's own): the same Verilog text as Amaranth writes, for memories of negative, wide,
short (fewer words than the depth) and zero contents, and for a whole fetched layer."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from amaranth.hdl import Module, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from llmloom.hw import emit


class _Memories(wiring.Component):
    def __init__(self):
        super().__init__({"addr": In(4), "a": Out(signed(7)), "b": Out(70),
                          "c": Out(data.ArrayLayout(signed(3), 2))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.a = a = memory.Memory(shape=signed(7), depth=16,
                                           init=[-64, 63, -1, 0, 5])
        m.submodules.b = b = memory.Memory(shape=70, depth=16,
                                           init=[(1 << 70) - 1, 1 << 69, 12345])
        m.submodules.c = c = memory.Memory(shape=data.ArrayLayout(signed(3), 2), depth=16,
                                           init=[])
        for mem, out in ((a, self.a), (b, self.b), (c, self.c)):
            port = mem.read_port()
            m.d.comb += [port.addr.eq(self.addr), out.eq(port.data)]
        return m


def _amaranths(monkeypatch, make):
    """``emit_verilog(make())`` with Amaranth's own memory emitter."""
    monkeypatch.setattr(emit, "_compact_memory_init", contextlib.nullcontext)
    try:
        return emit.emit_verilog(make())
    finally:
        monkeypatch.undo()


def test_memories_emit_as_amaranth_emits_them(monkeypatch):
    ours = emit.emit_verilog(_Memories())
    assert ours == _amaranths(monkeypatch, _Memories)
    assert "initial begin" in ours                         # the contents are there


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_fetched_layer_emits_as_amaranth_emits_it(monkeypatch):
    from llmloom.sim.fetched import FetchedLayerHarness, fetched_reader

    from ..sim.test_fetched_layer_hdl import calibrations

    q = calibrations(np.random.default_rng(5), "static", 1)[0][0]
    cfg = q.config

    def make():
        return FetchedLayerHarness(cfg, fetched_reader(cfg, 1 << 16), layers=2).component(cfg)

    assert emit.emit_verilog(make()) == _amaranths(monkeypatch, make)
