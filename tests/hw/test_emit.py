"""The Verilog emission's replacements of two of Amaranth's methods: the compact memory
contents (``hw.emit._emit_memory``) write the same Verilog text as Amaranth, for memories of
negative, wide, short (fewer words than the depth) and zero contents, and for a whole fetched
layer; the cell-level combinational-cycle check (``hw.emit._check_comb_cycles``) finds a
cycle where Amaranth's finds one, with Amaranth's message, and none where Amaranth finds none,
a cycle of cells that is none of bits included."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal, signed
from amaranth.hdl._nir import CombinationalCycle
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
    """``emit_verilog(make())`` with Amaranth's own methods."""
    monkeypatch.setattr(emit, "_faster_conversion", contextlib.nullcontext)
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


class _Bits(wiring.Component):
    """``y`` a sum of the input and ``y`` itself: combinational through the adder when
    ``loop`` is ``"add"``; through one bit into another of a signal when ``"bits"`` (a cycle
    of cells, none of bits: ``s[1]`` reads ``s[0]``, which reads the input)."""

    def __init__(self, loop):
        self.loop = loop
        super().__init__({"a": In(4), "y": Out(4)})

    def elaborate(self, platform):
        m = Module()
        if self.loop == "add":
            t = Signal(4)
            m.d.comb += [t.eq(self.a + self.y), self.y.eq(t)]
        else:
            s = Signal(4)
            m.d.comb += [s[0].eq(self.a[0]), s[1].eq(s[0]), s[2:].eq(self.a[2:]),
                         self.y.eq(s)]
        return m


def test_a_combinational_cycle_is_amaranths_error(monkeypatch):
    with pytest.raises(CombinationalCycle) as ours:
        emit.emit_verilog(_Bits("add"))
    with pytest.raises(CombinationalCycle) as theirs:
        _amaranths(monkeypatch, lambda: _Bits("add"))
    assert str(ours.value) == str(theirs.value)
    assert "Combinational cycle detected" in str(ours.value)


def test_a_cycle_of_cells_that_is_none_of_bits_converts(monkeypatch):
    assert emit.emit_verilog(_Bits("bits")) == _amaranths(monkeypatch, lambda: _Bits("bits"))


def test_the_cell_level_check_falls_back_only_on_a_cycle_of_cells(monkeypatch):
    """Amaranth's bit-level walk runs for the netlist whose cells form a cycle, not for one
    whose cells form none."""
    calls = []
    amaranths = emit._AMARANTH_CHECK_COMB_CYCLES

    def counted(netlist):
        calls.append(netlist)
        return amaranths(netlist)

    monkeypatch.setattr(emit, "_AMARANTH_CHECK_COMB_CYCLES", counted)
    emit.emit_verilog(_Memories())
    assert calls == []
    emit.emit_verilog(_Bits("bits"))
    assert len(calls) == 1


class _Written(wiring.Component):
    """Memories of zeros with a write port (what :func:`emit._zero_initialised` puts back
    after Yosys) of widths around Yosys's decimal 32 bits, and one ROM of zeros (kept)."""

    WIDTHS = (1, 6, 31, 32, 33, 64)

    def __init__(self):
        super().__init__({"addr": In(3), "d": In(64), "we": In(1),
                          **{f"o{w}": Out(w) for w in self.WIDTHS}, "rom": Out(5)})

    def elaborate(self, platform):
        m = Module()
        for w in self.WIDTHS:
            m.submodules[f"m{w}"] = mem = memory.Memory(shape=w, depth=8, init=[])
            wr, rd = mem.write_port(), mem.read_port()
            m.d.comb += [wr.addr.eq(self.addr), wr.data.eq(self.d[:w]), wr.en.eq(self.we),
                         rd.addr.eq(self.addr), getattr(self, f"o{w}").eq(rd.data)]
        m.submodules.rom = rom = memory.Memory(shape=5, depth=4, init=[])
        rd = rom.read_port()
        m.d.comb += [rd.addr.eq(self.addr[:2]), self.rom.eq(rd.data)]
        return m


def test_written_memories_of_zeros_emit_as_amaranth_emits_them(monkeypatch):
    ours = emit.emit_verilog(_Written())
    assert ours == _amaranths(monkeypatch, _Written)
    assert ours.count("initial begin") >= len(_Written.WIDTHS) + 1


def test_written_memories_of_zeros_skip_yosys():
    """Their contents do not reach Yosys (a ROM's do): the cost was Yosys's."""
    with emit._faster_conversion():
        ours = rtlil.convert(_Written(), name="top", emit_src=False)
    assert ours.count("$meminit_v2") == 1
    assert rtlil.convert(_Written(), name="top", emit_src=False).count("$meminit_v2") == 7
