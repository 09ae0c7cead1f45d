"""Calibrated memories written at run time: the blocks' numbers (a norm's gains and constants, a
residual's or mul's multipliers, RoPE's table, an activation's or the softmax's exp table, the
attention's internal re-quantisers) loaded into the memories that hold them, so one build runs
every layer of a model, each with its own calibration.

A block lists its calibrated memories as :class:`Constant` s (``constants()``: one home for
their contents, which its ``elaborate`` builds the memories from). Built with ``loads`` (a
:class:`ConstantScope` of a :class:`ConstantBus`), each of its memories gets a write port on the
bus, selected by the memory's key (the scope's prefix and the constant's name: ``norm1.gamma``,
``attention.softmax.exp``); a constant held in several memories (the softmax's copies of its
exp table, one per lane) is written to all of them at once. :class:`ConstantLoader` walks a
list of ``(key, Constant)`` in order, taking their words as 32-bit chunks
(:meth:`Constant.words`, the image format) from a stream and driving the bus.

Loads are for an idle block: nothing gates them against data in flight (the caller loads
between tensors, :class:`~llmloom.hw.layers.fetched.FetchedLayer`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from amaranth.hdl import Const, Module, Shape, ShapeCastable, Signal, Value, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Constant", "ConstantBus", "ConstantScope", "ConstantLoader", "constant_memories",
           "constants_of", "CHUNK"]

#: Bits of one load beat (and of one image word): a memory word of ``w`` bits is
#: ``ceil(w / CHUNK)`` chunks, low bits first.
CHUNK = 32


@dataclasses.dataclass(frozen=True, eq=False)
class Constant:
    """A calibrated memory of a block: its ``name`` (the memory's submodule, or with
    ``copies`` the submodules holding the same words), the word's ``shape`` (fixed by the
    config, never by the numbers) and its words ``init`` (as :class:`memory.Memory` takes
    them)."""

    name: str
    shape: object
    init: tuple
    copies: tuple = ()

    @property
    def depth(self):
        return len(self.init)

    @property
    def width(self):
        return Shape.cast(self.shape).width

    @property
    def chunks(self):
        """32-bit chunks of one word."""
        return -(-self.width // CHUNK)

    @property
    def submodules(self):
        return self.copies or (self.name,)

    def bits(self):
        """The words as unsigned integers of :attr:`width` bits (the memory's contents)."""
        mask = (1 << self.width) - 1
        if isinstance(self.shape, ShapeCastable):
            return [Const.cast(self.shape.const(v)).value & mask for v in self.init]
        shape = Shape.cast(self.shape)
        return [Const(int(v), shape).value & mask for v in self.init]

    def words(self):
        """The image of the memory: each word as :attr:`chunks` uint32, low bits first."""
        out = np.zeros((self.depth, self.chunks), np.uint32)
        for a, v in enumerate(self.bits()):
            for c in range(self.chunks):
                out[a, c] = (v >> (CHUNK * c)) & 0xFFFF_FFFF
        return out.reshape(-1)

    def memory(self):
        return memory.Memory(shape=self.shape, depth=self.depth, init=list(self.init))


def constants_of(block):
    """``block.constants()`` of a block made only to list them (it is never elaborated)."""
    block._MustUse__silence = True
    return block.constants()


class ConstantBus:
    """The write side of every loaded memory of a design: ``en`` for one cycle writes
    ``data`` (its low bits) at word ``addr`` of the memories of constant ``sel`` (an index
    into ``keys``). Plain signals, driven by one :class:`ConstantLoader`."""

    def __init__(self, constants):
        self.keys = {key: n for n, (key, _) in enumerate(constants)}
        if len(self.keys) != len(constants):
            raise ValueError("two constants of one bus under one key")
        self.constants = tuple(constants)
        width = max((c.width for _, c in constants), default=1)
        depth = max((c.depth for _, c in constants), default=1)
        self.en = Signal(name="cbus_en")
        self.sel = Signal(range(max(1, len(constants))), name="cbus_sel")
        self.addr = Signal(range(max(2, depth)), name="cbus_addr")
        self.data = Signal(width, name="cbus_data")

    def scope(self, prefix):
        return ConstantScope(self, f"{prefix}.")


class ConstantScope:
    """A block's view of a :class:`ConstantBus`: its constants' keys begin with ``prefix``."""

    def __init__(self, bus, prefix):
        self.bus, self.prefix = bus, prefix

    def scope(self, name):
        return ConstantScope(self.bus, f"{self.prefix}{name}.")

    def index(self, name):
        key = self.prefix + name
        if key not in self.bus.keys:
            raise ValueError(f"constant {key!r} is not on the bus")
        return self.bus.keys[key]


def constant_memories(m, constants, loads=None):
    """The memories of ``constants`` as submodules of ``m`` (one per name in each constant's
    :attr:`~Constant.submodules`), with their initial contents; with ``loads`` (a
    :class:`ConstantScope`) each gets a write port on the bus. Returns ``{submodule: memory}``."""
    out = {}
    for c in constants:
        for sub in c.submodules:
            m.submodules[sub] = out[sub] = mem = c.memory()
            if loads is not None:
                bus, idx = loads.bus, loads.index(c.name)
                wr = mem.write_port()
                m.d.comb += [wr.en.eq(bus.en & (bus.sel == idx)),
                             Value.cast(wr.data).eq(bus.data[:c.width])]
                if c.depth > 1:
                    m.d.comb += wr.addr.eq(bus.addr)
    return out


class ConstantLoader(wiring.Component):
    """Takes the words of the bus's constants, in the bus's order, as 32-bit chunks
    (:meth:`Constant.words`) on ``i`` and writes each word once its chunks are in (the bus
    is registered: the write lands two cycles after the word's last chunk). After the last
    constant's last word it starts over. ``done`` is high for one cycle with the last word's
    write."""

    def __init__(self, bus: ConstantBus):
        if not bus.constants:
            raise ValueError("a constant loader needs at least one constant")
        self.bus = bus
        super().__init__({"i": In(stream.Signature(unsigned(CHUNK))), "done": Out(1)})

    @property
    def total_words(self):
        """Chunks of one whole load."""
        return sum(c.depth * c.chunks for _, c in self.bus.constants)

    def elaborate(self, platform):
        m = Module()
        bus, consts = self.bus, [c for _, c in self.bus.constants]
        maxc = max(c.chunks for c in consts)
        sel = Signal(range(len(consts)))
        addr = Signal(range(max(2, max(c.depth for c in consts))))
        chunk = Signal(range(max(2, maxc)))
        buf = Signal(CHUNK * maxc)
        last_chunk, last_addr = Signal(range(max(2, maxc))), Signal.like(addr)
        with m.Switch(sel):
            for n, c in enumerate(consts):
                with m.Case(n):
                    m.d.comb += [last_chunk.eq(c.chunks - 1), last_addr.eq(c.depth - 1)]
        m.d.comb += self.i.ready.eq(1)
        m.d.sync += [bus.en.eq(0), self.done.eq(0)]
        with m.If(self.i.valid):
            word = Signal.like(buf)
            m.d.comb += word.eq(buf)
            m.d.comb += word.word_select(chunk, CHUNK).eq(self.i.payload)
            m.d.sync += buf.eq(word)
            with m.If(chunk == last_chunk):
                m.d.sync += [bus.en.eq(1), bus.sel.eq(sel), bus.addr.eq(addr),
                             bus.data.eq(word[:len(bus.data)]), chunk.eq(0), buf.eq(0)]
                with m.If(addr == last_addr):
                    m.d.sync += addr.eq(0)
                    with m.If(sel == len(consts) - 1):
                        m.d.sync += [sel.eq(0), self.done.eq(1)]
                    with m.Else():
                        m.d.sync += sel.eq(sel + 1)
                with m.Else():
                    m.d.sync += addr.eq(addr + 1)
            with m.Else():
                m.d.sync += chunk.eq(chunk + 1)
        return m
