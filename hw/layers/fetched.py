"""A linear stage whose numbers come from off-chip memory at run time: the first step towards
one layer's hardware running every layer (the paper's temporal axis), each layer's weights
fetched from its weight image (:mod:`.weights_image`) before its activations go through.

:class:`FetchedLinear` is an :class:`~llmloom.hw.blocks.axi_reader.AxiReader` and the stage of
:class:`~.common.Linear` (engine → gearbox → re-quantiser), with the engine's memory and the
re-quantiser's constants loaded through their streams (``weight``, ``load``) instead of fixed
at elaboration; one build runs any weight set whose image has this config's layout.
"""

from __future__ import annotations

import dataclasses
import json

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..blocks.attention import Attention, cache_config, check_spill
from ..blocks.axi_reader import AxiReader, AxiReaderConfig, AxiReadSignature
from ..blocks.axi_writer import AxiWriter, AxiWriterConfig, AxiWriteSignature
from ..blocks.gemm import Gemm
from ..blocks.gemv import Gemv
from ..blocks.loadable import ConstantBus, ConstantLoader
from ..blocks.requant import Requant
from ..config import ConfigError
from ..stream import Gearbox, row_layout
from .common import Linear, check_layer_shape
from .config import LayerConfig
from .layer import Layer, layer_constants
from .weights_image import ALIGN, fetched_layer_layout, image_layout

__all__ = ["FetchedLinear", "fetch_commands", "check_fetched", "FetchedLayer", "LoadedLinear",
           "command_layout", "command_fields",
           "layer_fetch_commands", "check_fetched_layer", "layer_banks",
           "prefetched_runs", "KV_MODES", "kv_cache_config", "kv_region_bytes", "kv_region",
           "kv_writer", "check_kv"]

#: Where a :class:`FetchedLayer` keeps the KV cache of its layers: ``chip``, every layer's
#: region on chip; ``axi``, in AXI memory, one working region on chip.
KV_MODES = ("chip", "axi")

#: The sections a run fetches, in order: the engine's weights, then the re-quantiser's load.
SECTIONS = ("weights", "scales", "bias", "shift")


def check_fetched(cfg, name, reader):
    """:class:`ConfigError` unless stage ``name`` of ``cfg`` can fetch its numbers through
    ``reader``: int8 weights, or grouped ones (W4, W8 ``weight_groups``) on the GEMM (its codes
    and tables), the layer
    RTL's shape rules for the stage, a bus of exactly the engine's ``cols`` bytes (a reader
    beat is a ``weight`` beat: ``cols`` int8, or W4 two rows' ``cols`` codes), and the int32
    per bus word and ``lanes`` one a multiple of the other (a bus word of constants widens or
    narrows into the re-quantiser's beats)."""
    if not isinstance(cfg, LayerConfig):
        raise TypeError(f"cfg must be a LayerConfig, not {cfg!r}")
    if not isinstance(reader, AxiReaderConfig):
        raise TypeError(f"reader must be an AxiReaderConfig, not {reader!r}")
    if cfg.grouped and cfg.engine != "gemm":
        what = "weight_groups=true" if cfg.weight_groups else f"weight_bits={cfg.weight_bits}"
        raise ConfigError(f"{what} with engine={cfg.engine!r}: a fetched stage loads grouped "
                          "weights into the GEMM's group tables only; allowed: weight_bits=8 "
                          "without weight_groups, or engine='gemm'")
    g = cfg.linear(name)
    cols = g.cols
    # the layer RTL's rules for this stage (its gearbox carries no padding lanes)
    if g.n % cols or max(cols, cfg.lanes) % min(cols, cfg.lanes):
        raise ConfigError(f"{name}: cols={cols} with n={g.n} and lanes={cfg.lanes}; allowed: "
                          "a divisor of n, and a multiple or divisor of lanes")
    if reader.lanes != cols:
        raise ConfigError(f"{name}: reader data_width={reader.data_width} gives {reader.lanes}"
                          f"-byte beats; the engine's weight beats are cols={cols} bytes; "
                          f"allowed: data_width={8 * cols}")
    per = reader.lanes // 4
    if max(per, cfg.lanes) % max(1, min(per, cfg.lanes)):
        raise ConfigError(f"{name}: a {reader.data_width}-bit bus word holds {per} int32 and "
                          f"a beat lanes={cfg.lanes}; allowed: one a multiple of the other")
    last = max(s.end for s in image_layout(cfg))
    if last > reader.max_bytes or last >= 1 << reader.addr_width:
        raise ConfigError(f"the image is {last} bytes; reader max_bytes={reader.max_bytes}; "
                          "allowed: an image within max_bytes")


def fetch_commands(cfg, name, base):
    """The reader commands of a run of stage ``name`` with the image at byte address ``base``:
    ``[(addr, bytes)]`` of its :data:`SECTIONS`, in order (what the RTL issues and the timing
    model walks)."""
    secs = {s.part: s for s in image_layout(cfg) if s.stage == name}
    return [(base + secs[p].offset, secs[p].nbytes) for p in SECTIONS]


class _Words(wiring.Component):
    """Bytes from the reader (``cols`` lanes of int8, ``last`` on a command's last beat) into
    int32 beats of ``lanes`` lanes, little-endian, for the re-quantiser's ``load``.

    Widening (``per = cols/4`` int32 a reader beat, at most ``lanes``): ``lanes/per`` reader
    beats make one output beat, a command's last one emitted early (zero-padded) on its
    ``last``; one register stage, a beat taken whenever the output register is empty or being
    taken. Narrowing (``per > lanes``): a reader beat is held and leaves as ``per/lanes``
    beats, one a cycle, the input waiting meanwhile; ``count`` (sampled with a command's first
    beat) gives the beats the command must make, and those past it (the zero padding of its
    last reader beat) are dropped."""

    def __init__(self, cols, lanes, max_count):
        self._cols, self._lanes = cols, lanes
        super().__init__({"i": In(stream.Signature(row_layout(signed(8), cols))),
                          "count": In(range(max_count + 1)),
                          "o": Out(stream.Signature(row_layout(signed(32), lanes)))})

    def elaborate(self, platform):
        m = Module()
        per = self._cols // 4                      # int32 per reader beat
        incoming = self.i.payload.data.as_value()
        if per > self._lanes:
            return self._narrow(m, per // self._lanes, incoming)
        r = self._lanes // per
        fill = Signal(range(max(r, 2)))
        word = Signal(32 * self._lanes)
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            done = (fill == r - 1) | self.i.payload.last
            # this beat's int32s go to lanes fill·per ..; earlier parts are kept, later zeroed
            parts = []
            for f in range(r):
                part = word[f * 32 * per:(f + 1) * 32 * per]
                parts.append(Mux(fill == f, incoming, Mux(fill > f, part, 0)))
            new = Cat(*parts)
            with m.If(done):
                m.d.sync += [self.o.payload.data.as_value().eq(new), self.o.valid.eq(1),
                             self.o.payload.last.eq(self.i.payload.last),
                             self.o.payload.end.eq(self.i.payload.end),
                             word.eq(0), fill.eq(0)]
            with m.Else():
                m.d.sync += [word.eq(new), fill.eq(fill + 1)]
        return m

    def _narrow(self, m, r, incoming):
        width = 32 * self._lanes
        buf = Signal(len(incoming))
        have, fresh = Signal(), Signal(init=1)
        sub, nsub = Signal(range(r)), Signal(range(r + 1))
        left = Signal.like(self.count)
        buf_last, buf_end = Signal(), Signal()
        final = sub == nsub - 1
        m.d.comb += [
            self.o.valid.eq(have),
            self.o.payload.data.as_value().eq(buf.word_select(sub, width)),
            self.o.payload.last.eq(final & buf_last),
            self.o.payload.end.eq(final & buf_end),
            self.i.ready.eq(~have | (self.o.ready & final)),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [sub.eq(sub + 1)]
            with m.If(final):
                m.d.sync += [have.eq(0), sub.eq(0)]
        with m.If(self.i.valid & self.i.ready):
            need = Mux(fresh, self.count, left)
            n = Mux(need > r, r, need)
            m.d.sync += [buf.eq(incoming), have.eq(n != 0), sub.eq(0), nsub.eq(n),
                         left.eq(need - n), fresh.eq(self.i.payload.last),
                         buf_last.eq(self.i.payload.last), buf_end.eq(self.i.payload.end)]
        return m


class _Widen(wiring.Component):
    """``ratio`` reader beats (``cols`` bytes each) into one beat of ``layout`` (a
    :func:`~llmloom.hw.stream.row_layout` of ``ratio·cols`` bytes of data), the first beat
    the low bits, ``last`` and ``end`` the ratio-th's: the GEMM's W4 ``group`` beats (a
    section of whole beats). One register stage; a beat taken whenever the output register
    is empty or being taken, so the reader never waits on it while the output is taken."""

    def __init__(self, cols, layout, ratio):
        self._cols, self._ratio = cols, ratio
        super().__init__({"i": In(stream.Signature(row_layout(signed(8), cols))),
                          "o": Out(stream.Signature(layout))})

    def elaborate(self, platform):
        m = Module()
        w, r = 8 * self._cols, self._ratio
        incoming = self.i.payload.data.as_value()
        fill = Signal(range(r))
        held = Signal(w * (r - 1))                 # the beats so far, the newest on top
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            with m.If(fill == r - 1):
                m.d.sync += [self.o.payload.data.as_value().eq(Cat(held, incoming)),
                             self.o.payload.last.eq(self.i.payload.last),
                             self.o.payload.end.eq(self.i.payload.end),
                             self.o.valid.eq(1), fill.eq(0)]
            with m.Else():
                m.d.sync += [held.eq(Cat(held[w:], incoming) if r > 2 else incoming),
                             fill.eq(fill + 1)]
        return m


class FetchedLinear(wiring.Component):
    """Linear stage ``name`` of ``cfg`` (engine → gearbox → re-quantiser, as
    :class:`~.common.Linear`) with its weights, per-channel multipliers, biases and shift read
    at run time from a weight image in AXI memory, so that one build runs the stage of every
    layer in turn.

    Parameters
    ----------
    cfg : LayerConfig
        The shapes (and, for the memories' initial contents, any calibration: the fetched
        numbers replace them). Every weight set run must have this config's image layout and
        numbers that fit the re-quantiser's widths
        (:meth:`~llmloom.hw.blocks.requant.RequantConfig.check_loadable`).
    name : str
        The linear stage (``q``, ``f1``...).
    reader : AxiReaderConfig
        ``data_width = 8·cols`` of the stage's engine (:func:`check_fetched`).
    weight_banks : 1 or 2
        2: double-buffered weights (the GEMM engine only); see below.

    Members
    -------
    cmd : In(stream.Signature(StructLayout({"addr": addr_width})))
        "Run the stage with the weight image at byte ``addr``" (a layer image's base, aligned
        to :data:`~.weights_image.ALIGN`): one beat per activation tensor, in the order the
        tensors come on ``act``; taken when the stage is idle (one bank: the previous run's
        last output beat has left) or once the reader has the previous run's commands (two).
    act : In(stream.Signature(row_layout(signed(a_width), lanes)))
        The runs' activation rows, a tensor per command (``end`` on its last beat, as
        :class:`Linear`'s ``i``); one bank: taken from the cycle after the run's first weight
        beat reached the engine.
    e : In(...)
        Row exponents, as :class:`Linear`'s (only where the stage's input carries them).
    o : Out(stream.Signature(row_layout(signed(out_width), lanes)))
        The result rows, ``end`` on the run's last beat.
    axi : Out(AxiReadSignature(reader))
        The reader's AR and R channels.
    error : Out(1)
        The reader's (a non-OKAY response), sticky.

    A run: the command is registered; then four reader commands (:func:`fetch_commands`:
    weights, scales, bias, shift) are offered back to back, so the constants' bursts go out
    while the weights still stream. The weight beats go straight into the engine's
    ``weight`` stream; the constants' bytes become int32 beats (``_Words``: a bus word
    of more int32 than ``lanes`` leaves as several beats, holding the reader meanwhile) into
    the re-quantiser's ``load``; the tensor's results wait at its input until they are in.

    What overlaps, with one weight bank (``weight_banks=1``, any engine): the activations
    fill the engine's input banks while the weights stream in (from the cycle after the first
    weight beat; the engine starts its first tile once its load is complete, by its own
    rule), and the constants' fetch overlaps the weights' tail and the engine's first tiles.
    Runs do not overlap: the next command is taken once this run's last output beat has
    left, so each run pays its whole fetch.

    With two (``weight_banks=2``, the GEMM: :class:`~llmloom.hw.blocks.gemm.Gemm` and
    :class:`~llmloom.hw.blocks.requant.Requant` with two banks each, twice their memories):
    double buffering. The next command is taken as soon as the reader has taken this run's
    four, so run l+1's weights and numbers stream into the other banks while run l computes;
    the engine and the re-quantiser each pair tensors with their banks' loads, in order. What
    stays serial: a run's weights wait for the bank of run l−1 to be free (its tensor's last
    step in the array), its numbers for run l−1's last result to leave the re-quantiser. Timing:
    ``perf.cycles.fetched_linear_cycles`` (a run alone, exact) and
    ``perf.cycles.fetched_linear_span`` (a stream of runs).
    """

    def __init__(self, cfg: LayerConfig, name, reader: AxiReaderConfig, *, weight_banks=1):
        self._MustUse__silence = True
        check_fetched(cfg, name, reader)
        if cfg.grouped:
            raise ConfigError(f"weight_bits={cfg.weight_bits} weight_groups="
                              f"{cfg.weight_groups}: a FetchedLinear loads int8 weights per "
                              "channel (grouped stages run fetched in a FetchedLayer); "
                              "allowed: weight_bits=8 without weight_groups")
        if weight_banks not in (1, 2):
            raise ValueError(f"weight_banks={weight_banks!r}; allowed: 1 or 2")
        if weight_banks == 2 and cfg.engine != "gemm":
            raise ConfigError(f"engine={cfg.engine!r} has one weight bank; allowed: "
                              "weight_banks=2 with engine='gemm'")
        self._MustUse__silence = False
        self.cfg, self.name, self.reader = cfg, name, reader
        self.weight_banks = weight_banks
        st = cfg.description[name]
        req = cfg.requant(name)
        members = {
            "cmd": In(stream.Signature(data.StructLayout({"addr": reader.addr_width}))),
            "act": In(stream.Signature(row_layout(signed(cfg.width(st.inputs[0])),
                                                  cfg.lanes))),
        }
        if req.row_exponent:
            members["e"] = In(stream.Signature(row_layout(unsigned(req.e_width), 1)))
        members |= {"o": Out(stream.Signature(row_layout(signed(cfg.width(st.output)),
                                                         cfg.lanes))),
                    "axi": Out(AxiReadSignature(reader)), "error": Out(1)}
        super().__init__(members)

    def elaborate(self, platform):
        cfg, name, rcfg = self.cfg, self.name, self.reader
        g = cfg.linear(name)
        m = Module()
        m.submodules.reader = reader = AxiReader(rcfg)
        banked = self.weight_banks == 2
        m.submodules[cfg.engine] = engine = (Gemv(g) if cfg.engine == "gemv"
                                             else Gemm(g, weight_banks=self.weight_banks))
        m.submodules.gear = gear = Gearbox(signed(g.OUT_WIDTH), g.cols, cfg.lanes, g.n)
        m.submodules.requant = req = Requant(cfg.requant(name), load=True,
                                             banks=self.weight_banks)
        rq = req.cfg
        m.submodules.words = words = _Words(g.cols, cfg.lanes, rq.beats)
        wiring.connect(m, wiring.flipped(self.axi), reader.axi)
        m.d.comb += self.error.eq(reader.error)

        # ---- the run's state -------------------------------------------------------------
        busy = Signal()              # one bank: a command taken, its last output not yet out
        base = Signal(rcfg.addr_width)
        # reader commands of the newest run taken (none pending at reset)
        issued = Signal(range(len(SECTIONS) + 1), init=len(SECTIONS))
        section = Signal(range(len(SECTIONS)))        # what the reader's output carries
        w_started = Signal()         # one bank: the run's first weight beat is in the engine
        act_done = Signal()          # one bank: the run's last activation beat is in
        # the re-quantiser holds the numbers of the tensor now passing through it: set by a
        # load's last beat, cleared by the tensor's last beat into it (loads and tensors
        # alternate, so a load never overtakes the previous tensor's results)
        loaded = Signal()
        load_at = Signal(range(req.cfg.load_beats))

        # One bank: a run at a time. Two: the next command as soon as the reader has taken
        # this run's commands (its weights then fill the other bank while this run computes).
        m.d.comb += self.cmd.ready.eq(issued == len(SECTIONS) if banked else ~busy)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [busy.eq(1), base.eq(self.cmd.payload.addr), issued.eq(0),
                         w_started.eq(0), act_done.eq(0)]

        # ---- reader commands: the four sections, back to back ----------------------------
        cmds = fetch_commands(cfg, name, 0)
        offset = Signal(rcfg.addr_width)
        nbytes = Signal(range(rcfg.max_bytes + 1))
        with m.Switch(issued):
            for k, (off, n) in enumerate(cmds):
                with m.Case(k):
                    m.d.comb += [offset.eq(off), nbytes.eq(n)]
        m.d.comb += [reader.i.valid.eq(issued != len(SECTIONS)),
                     reader.i.payload.addr.eq(base + offset),
                     reader.i.payload.bytes.eq(nbytes)]
        with m.If(reader.i.valid & reader.i.ready):
            m.d.sync += issued.eq(issued + 1)

        # ---- the reader's beats: weights to the engine, the rest to the re-quantiser -------
        to_engine = section == 0
        m.d.comb += [
            engine.weight.payload.data.as_value().eq(reader.o.payload.data.as_value()),
            engine.weight.payload.last.eq(reader.o.payload.last),
            engine.weight.payload.end.eq(reader.o.payload.end),
            engine.weight.valid.eq(reader.o.valid & to_engine),
            words.i.payload.eq(reader.o.payload),
            words.count.eq(Mux(section == len(SECTIONS) - 1, 1, rq.beats)),
            words.i.valid.eq(reader.o.valid & ~to_engine),
            reader.o.ready.eq(Mux(to_engine, engine.weight.ready, words.i.ready)),
        ]
        with m.If(reader.o.valid & reader.o.ready):
            with m.If(reader.o.payload.last):
                m.d.sync += section.eq(section + 1)
            with m.If(to_engine):
                m.d.sync += w_started.eq(1)
        # One bank: the numbers load between tensors (`loaded`). Two: the re-quantiser's
        # second bank takes the next run's numbers while this run's tensor passes.
        gate = 1 if banked else ~loaded
        m.d.comb += [req.load.payload.eq(words.o.payload),
                     req.load.valid.eq(words.o.valid & gate),
                     words.o.ready.eq(req.load.ready & gate)]
        with m.If(req.load.valid & req.load.ready):
            with m.If(load_at == req.cfg.load_beats - 1):
                m.d.sync += [load_at.eq(0), loaded.eq(1)]
            with m.Else():
                m.d.sync += load_at.eq(load_at + 1)

        # ---- activations in (once the weights have begun), results out (once loaded) ------
        # one bank: the activations wait for the run's weights to begin (the engine then
        # holds its first tile until they are all in); two: the engine pairs each tensor
        # with its own bank's load
        act_open = 1 if banked else busy & w_started & ~act_done
        m.d.comb += [engine.act.payload.eq(self.act.payload),
                     engine.act.valid.eq(self.act.valid & act_open),
                     self.act.ready.eq(engine.act.ready & act_open)]
        with m.If(self.act.valid & self.act.ready & self.act.payload.last & self.act.payload.end):
            m.d.sync += act_done.eq(1)
        wiring.connect(m, engine.o, gear.i)
        acc = req.acc
        ready = 1 if banked else loaded
        m.d.comb += [acc.payload.eq(gear.o.payload), acc.valid.eq(gear.o.valid & ready),
                     gear.o.ready.eq(acc.ready & ready)]
        with m.If(acc.valid & acc.ready & acc.payload.last & acc.payload.end):
            m.d.sync += loaded.eq(0)
        if req.cfg.row_exponent:
            wiring.connect(m, wiring.flipped(self.e), req.e)
        wiring.connect(m, req.o, wiring.flipped(self.o))
        with m.If(self.o.valid & self.o.ready & self.o.payload.end):
            m.d.sync += busy.eq(0)
        return m


class LoadedLinear(wiring.Component):
    """A linear stage of a :class:`FetchedLayer`: :class:`~.common.Linear`'s engine → gearbox
    → re-quantiser, its engine's memory written through ``weight`` and the re-quantiser's
    numbers through ``load`` (``Requant(load=True)``), both fed by the layer's reader: with
    ``banks=1`` between tensors, with ``banks=2`` (the GEMM's two weight banks and the
    re-quantiser's two banks of numbers) the next tensor's load while this one passes.

    Members: ``i``, ``o``, ``e`` as :class:`~.common.Linear`'s; ``weight``, the engine's
    (``cols`` int8 a beat, or at W4 two rows' ``cols`` codes: :meth:`Gemm.weight_layout`);
    with grouped weights (W4, W8 ``weight_groups``) ``group``, the GEMM's group tables;
    ``load``, the re-quantiser's."""

    def __init__(self, cfg: LayerConfig, name, banks=1):
        self._cfg, self._name, self._banks = cfg, name, banks
        g = cfg.linear(name)
        weight = (Gemm.weight_layout(g) if cfg.engine == "gemm"
                  else row_layout(signed(8), g.cols))
        members = {**Linear.stage_members(cfg, name),
                   "weight": In(stream.Signature(weight)),
                   "load": In(stream.Signature(row_layout(signed(32), cfg.lanes)))}
        if cfg.grouped:
            members["group"] = In(stream.Signature(Gemm.group_layout(g)))
        super().__init__(members)

    def elaborate(self, platform):
        cfg, name = self._cfg, self._name
        g = cfg.linear(name)
        m = Module()
        m.submodules[cfg.engine] = engine = (Gemv(g) if cfg.engine == "gemv"
                                             else Gemm(g, weight_banks=self._banks))
        m.submodules.gear = gear = Gearbox(signed(g.OUT_WIDTH), g.cols, cfg.lanes, g.n)
        m.submodules.requant = req = Requant(cfg.requant(name), load=True, banks=self._banks)
        wiring.connect(m, wiring.flipped(self.i), engine.act)
        wiring.connect(m, wiring.flipped(self.weight), engine.weight)
        if self._cfg.grouped:
            wiring.connect(m, wiring.flipped(self.group), engine.group)
        wiring.connect(m, wiring.flipped(self.load), req.load)
        wiring.connect(m, engine.o, gear.i)
        wiring.connect(m, gear.o, req.acc)
        if req.cfg.row_exponent:
            wiring.connect(m, wiring.flipped(self.e), req.e)
        wiring.connect(m, req.o, wiring.flipped(self.o))
        return m


def layer_fetch_commands(cfg, base):
    """The reader commands of one run of a :class:`FetchedLayer` with the layer's image at
    byte ``base``: ``[(addr, bytes, stage, part)]``, the whole image
    (:func:`~.weights_image.fetched_layer_layout`) in memory order."""
    return [(base + s.offset, s.nbytes, s.stage, s.part) for s in fetched_layer_layout(cfg)]


def check_fetched_layer(cfg, reader):
    """:class:`ConfigError` unless ``cfg``'s layer can run fetched through ``reader``: each
    linear stage's :func:`check_fetched` rules (one bus width for all: their engines'
    ``cols`` equal), the layer RTL's shape rules, and its image within the reader's reach."""
    if not isinstance(cfg, LayerConfig):
        raise TypeError(f"cfg must be a LayerConfig, not {cfg!r}")
    if not cfg.calibrated:
        raise ConfigError("a fetched layer's memories take a calibrated config's shapes; "
                          "calibrate it with llmloom.sim.quantize")
    check_layer_shape(cfg)
    for name in cfg.linears:
        check_fetched(cfg, name, reader)
    last = fetched_layer_layout(cfg)[-1].end
    if last > reader.max_bytes or last >= 1 << reader.addr_width:
        raise ConfigError(f"the layer image is {last} bytes; reader max_bytes="
                          f"{reader.max_bytes}; allowed: an image within max_bytes")


def layer_banks(cfg, banks=None):
    """The banks of a :class:`FetchedLayer` of ``cfg`` asked for ``banks``: ``None`` gives 2
    where the linear engine has two weight banks (the GEMM), else 1; 1 or 2 are checked
    (:class:`ConfigError` naming the value and what is allowed)."""
    if banks is None:
        return 2 if cfg.engine == "gemm" else 1
    if isinstance(banks, bool) or banks not in (1, 2):
        raise ConfigError(f"banks={banks!r}; allowed: 1 (fetch, then compute) or 2 "
                          "(double-buffered)")
    if banks == 2 and cfg.engine != "gemm":
        raise ConfigError(f"banks=2 with engine={cfg.engine!r}: the GEMV has one weight bank; "
                          "allowed: banks=1, or engine='gemm'")
    return banks


def prefetched_runs(runs, banks):
    """``runs`` (a host's commands to a :class:`FetchedLayer` of ``banks`` banks, in order:
    ``(image base, layer)`` or ``(image base, layer, next)``, ``next`` the image prefetched
    or ``None``) as ``(base, layer, next)`` each; :class:`ConfigError` for a prefetch with
    one bank or a run not of the image the run before prefetched."""
    out = []
    for k, run in enumerate(runs):
        base, layer, nxt = (*run, None)[:3]
        if nxt is not None and banks != 2:
            raise ConfigError(f"run {k} prefetches the image at {nxt} with banks={banks}; "
                              "allowed: no prefetch, or banks=2")
        if out and out[-1][2] is not None and base != out[-1][2]:
            raise ConfigError(f"run {k} is of the image at {base}; the run before prefetched "
                              f"the image at {out[-1][2]}; allowed: {out[-1][2]}")
        out.append((base, layer, nxt))
    return out


def kv_cache_config(cfg):
    """The :class:`~llmloom.hw.blocks.kvcache.KvCacheConfig` of layer ``cfg``'s attention
    cache (one head engine's)."""
    attn = cfg.description.of_kind("attention")[0].name
    return cache_config(cfg.stage_config(attn))


def kv_region_bytes(cfg):
    """Bytes of one layer's KV region in AXI memory (``kv="axi"``): ``seq`` positions' rows
    (:attr:`~llmloom.hw.blocks.kvcache.KvCacheConfig.spill_bytes` each, the format of
    :func:`llmloom.sim.golden.kvcache.spill_rows`), rounded up to :data:`ALIGN`. Position
    ``p`` of layer ``l`` is at ``kv_region(cfg, base, l) + p·spill_bytes``."""
    kv = kv_cache_config(cfg)
    return -(-kv.seq * kv.spill_bytes // ALIGN) * ALIGN


def kv_region(cfg, base, layer):
    """Byte address of layer ``layer``'s KV region, the regions from ``base`` (aligned to
    :data:`ALIGN`) one after another: the ``kv`` field of its runs' commands."""
    return base + layer * kv_region_bytes(cfg)


def kv_writer(cfg, reader):
    """The :class:`~llmloom.hw.blocks.axi_writer.AxiWriterConfig` that writes a layer's new
    rows back: ``reader``'s bus, addresses, bursts and depth, one row a command."""
    return AxiWriterConfig(data_width=reader.data_width, addr_width=reader.addr_width,
                           id_width=reader.id_width, max_burst=reader.max_burst,
                           outstanding=reader.outstanding,
                           max_bytes=kv_cache_config(cfg).spill_bytes)


def check_kv(cfg, reader, kv):
    """:class:`ConfigError` unless ``kv`` is one of :data:`KV_MODES` and, for ``axi``, the
    layer can keep its KV cache in AXI memory through ``reader``: the attention's
    :func:`~llmloom.hw.blocks.attention.check_spill` rules, a bus word of ``lanes`` bytes
    (a region's beats are the cache's), and a whole region within one command."""
    if kv not in KV_MODES:
        raise ConfigError(f"kv={kv!r}; allowed: {' | '.join(KV_MODES)}")
    if kv == "chip":
        return
    attn = cfg.description.of_kind("attention")[0].name
    check_spill(cfg.stage_config(attn))
    if reader.lanes != cfg.lanes:
        raise ConfigError(f"kv='axi' with a {reader.data_width}-bit bus and lanes={cfg.lanes}: "
                          "a region's beats are the cache's; allowed: data_width = 8·lanes")
    region = kv_region_bytes(cfg)
    if region > reader.max_bytes:
        raise ConfigError(f"kv='axi': a layer's KV region is {region} bytes; reader "
                          f"max_bytes={reader.max_bytes}; allowed: max_bytes >= {region}")


def command_layout(reader, layers, banks, kv="chip"):
    """The layout of a :class:`FetchedLayer`'s ``cmd`` beat (``layers`` layers, ``banks``
    banks, addresses of ``reader``): the image's byte address ``addr`` and the model layer's
    slot ``layer`` (its KV cache region); with two banks also ``next``, the image to prefetch
    while this run computes, and ``prefetch``, whether to (:func:`command_fields`); with
    ``kv="axi"`` also ``kv``, the byte address of the layer's KV region (:func:`kv_region`)."""
    fields = {"addr": reader.addr_width, "layer": range(max(2, layers))}
    if banks == 2:
        fields |= {"next": reader.addr_width, "prefetch": 1}
    if kv == "axi":
        fields |= {"kv": reader.addr_width}
    return data.StructLayout(fields)


def command_fields(banks, run, kv=None):
    """The values of :func:`command_layout`'s fields for ``run``, ``(image base, layer,
    next)`` (``next`` ``None``: no prefetch; :func:`prefetched_runs`); ``kv``: the layer's
    KV region address (``kv="axi"``)."""
    base, layer, nxt = run
    fields = {"addr": int(base), "layer": int(layer)}
    if banks == 2:
        fields |= {"next": 0 if nxt is None else int(nxt), "prefetch": int(nxt is not None)}
    if kv is not None:
        fields |= {"kv": int(kv)}
    return fields


class _Gate(wiring.Component):
    """A stream passed on only while ``open``."""

    def __init__(self, layout):
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout)),
                          "open": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.o.payload.eq(self.i.payload),
                     self.o.valid.eq(self.i.valid & self.open),
                     self.i.ready.eq(self.o.ready & self.open)]
        return m


class FetchedLayer(Layer):
    """A whole layer (:class:`~.layer.Layer`'s stages and wiring) whose numbers all come from
    a layer image in AXI memory at run time: every linear stage's weights, multipliers,
    biases and shift (:class:`LoadedLinear`) and every other stage's calibrated memories
    (their ``loads``, one :class:`~llmloom.hw.blocks.loadable.ConstantBus`), fetched by one
    :class:`~llmloom.hw.blocks.axi_reader.AxiReader` in image order
    (:func:`layer_fetch_commands`), so one build runs every layer of a model in turn.

    Parameters
    ----------
    cfg : LayerConfig
        Calibrated (the memories' shapes, and their contents until the first run; every
        image run must come from a calibration of the same config whose numbers fit its
        widths).
    reader : AxiReaderConfig
        ``data_width = 8·cols`` of the linear engines (:func:`check_fetched_layer`).
    layers : int
        The model's layers: the attention keeps a KV cache region and a position per layer
        (on chip, ``layers`` times one layer's cache), as do the RoPE stages.
    banks : 1, 2 or None
        2: double-buffered, every linear stage's weights (the GEMM's two weight banks) and
        re-quantiser numbers (two banks) twice on chip, so a command can prefetch the next
        run's image; 1: fetch, then compute. ``None``: 2 on the GEMM, 1 on the GEMV (one
        weight bank); see :func:`layer_banks`.
    kv : "chip" or "axi"
        Where the layers' KV caches live (:data:`KV_MODES`). ``chip``: every layer's region on
        chip (``layers`` times one layer's cache). ``axi``: each layer's region in the AXI
        memory (:func:`kv_region`, rows in :func:`~llmloom.sim.golden.kvcache.spill_rows`'s
        format), one working cache on chip (:class:`~llmloom.hw.blocks.kvcache.KvCache` with
        ``spill``): a run's command names its region (``kv``); after its constants the reader
        brings the layer's ``pos`` earlier rows into the working cache, the input opens once
        they are in, and each new row goes back through an
        :class:`~llmloom.hw.blocks.axi_writer.AxiWriter` (config :func:`kv_writer`) as soon
        as the cache has it, on ``axi``'s write channels; the run ends once its output is out
        and its rows are written (:func:`check_kv`: causal, one head engine, ``lanes``-byte
        bus words and V words).

    Members
    -------
    cmd : In(stream.Signature(StructLayout({"addr": addr_width, "layer": range(layers)})))
        "Run layer ``layer``, whose image is at byte ``addr``" (aligned to
        :data:`~.weights_image.ALIGN`): one beat per input tensor on ``i``, in order; taken
        when the layer is idle (the previous tensor's last output beat has left ``o``). The
        tensor appends to and attends over that layer's cache, at that layer's position
        (``pos`` shows the running layer's). With two banks also ``next`` (an image's base)
        and ``prefetch``: "then fetch the linear sections of the image at ``next``, for the
        next command", which must then be of that image (its ``addr`` names its constants;
        its linear sections are taken as prefetched). The host knows the next run's layer
        when it sends this one's (a model's layers in turn, step after step), so the next
        image loads while this run computes, though the next command comes only once this
        run's output is out.
    axi : Out(AxiReadSignature(reader)), error : Out(1)
        The reader's.
    i, o, clear, pos, overflow, i_e, o_e
        As :class:`~.layer.Layer`'s; ``i`` (and ``i_e``) taken only once the command's image
        is all loaded, until the tensor's ``end`` beat.

    A run: the command is registered, the image's sections are requested back to back
    (weights to their engine's ``weight`` stream, at W4 its ``groups`` four bus words a beat
    into the GEMM's ``group`` stream (``_Widen``), a linear stage's constants as int32 beats
    into its re-quantiser's ``load``, the ``constants`` section as 32-bit chunks into a
    :class:`~llmloom.hw.blocks.loadable.ConstantLoader`); once the loader has written the
    last word the input opens; the run ends with the tensor's last output beat. With one
    bank nothing overlaps across runs. With two and ``prefetch``, the next image's linear
    sections follow this run's constants on the reader into the other banks (free: their
    run has ended) while this tensor runs; the next run then fetches only its constants
    (once the prefetch is all issued), the other stages' memories having one bank (they are
    written between tensors). Timing: ``perf.cycles.fetched_layer_runs`` (exact).
    """

    def __init__(self, cfg: LayerConfig, reader: AxiReaderConfig, *, layers=1, banks=None,
                 kv="chip"):
        self._MustUse__silence = True
        check_fetched_layer(cfg, reader)
        if not isinstance(layers, int) or layers < 1:
            raise ValueError(f"layers={layers!r}; allowed: an int >= 1")
        banks = layer_banks(cfg, banks)
        check_kv(cfg, reader, kv)
        self._MustUse__silence = False
        self.cfg, self.weights, self.reader, self._layers = cfg, None, reader, layers
        self.banks, self.kv = banks, kv
        self.writer = kv_writer(cfg, reader) if kv == "axi" else None
        self._loads = ConstantBus(layer_constants(cfg))
        bus = AxiReadSignature(reader)
        if self.writer is not None:       # one AXI port: reads and the KV rows' writes
            bus = wiring.Signature(dict(bus.members) | dict(
                AxiWriteSignature(self.writer).members))
        members = self._members() | {
            "cmd": In(stream.Signature(command_layout(reader, layers, banks, kv))),
            "axi": Out(bus), "error": Out(1)}
        wiring.Component.__init__(self, members)

    def structure(self):
        """What this layer's Verilog (its memories' contents split out,
        :func:`~llmloom.hw.emit.split_memory_init`) is a function of, besides the code
        (:func:`~llmloom.hw.emit.emitter_identity`), as text: the config without its numbers,
        the reader, the layers, and what the numbers decide of the hardware's shape, each
        linear stage's re-quantiser (:data:`~llmloom.hw.blocks.requant.RequantConfig.STRUCTURE`,
        per-channel table or not, bias, multiplier width, shift range) and every other stage's
        loaded memories (name, word shape, depth, copies) with the image's layout. The numbers
        themselves only fill memories (loaded at run time), so every calibration of one
        structure has one Verilog text; a simulator build keyed by this text needs no emission
        when cached."""
        self._MustUse__used = True      # keyed by it, a cached build never elaborates it
        cfg = self.cfg
        requant = {}
        for name in cfg.linears:
            rq = cfg.requant(name)
            requant[name] = {**{f: getattr(rq, f) for f in rq.STRUCTURE},
                             "per_channel": rq.per_channel, "bias": rq.bias is not None,
                             "mult_width": rq.mult_width_value, "shift_max": rq.shift_max}
        return json.dumps({
            "block": type(self).__qualname__,
            "config": dataclasses.replace(cfg, numbers=None).to_dict(),
            "reader": dataclasses.asdict(self.reader), "layers": self._layers,
            "banks": self.banks, **({"kv": self.kv} if self.kv != "chip" else {}),
            "requant": requant,
            "constants": [(k, repr(c.shape), c.depth, c.copies)
                          for k, c in self._loads.constants],
            "image": [(s.stage, s.part, s.offset, s.nbytes) for s in fetched_layer_layout(cfg)],
        }, sort_keys=True, default=repr)

    def _block(self, stage):
        if stage.kind == "linear":
            return LoadedLinear(self.cfg, stage.name, self.banks)
        if stage.kind == "attention" and self.kv == "axi":
            return Attention(self.cfg.stage_config(stage.name),
                             loads=self._loads.scope(stage.name), layers=self._layers,
                             spill=True)
        return super()._block(stage)

    def _input(self, m, name):
        gate = _Gate(getattr(self, name).payload.shape())
        m.submodules[f"gate_{name}"] = gate
        wiring.connect(m, wiring.flipped(getattr(self, name)), gate.i)
        m.d.comb += gate.open.eq(self._open)
        return gate.o

    def elaborate(self, platform):
        cfg, rcfg = self.cfg, self.reader
        self._open = Signal()
        self._layer = Signal(range(max(2, self._layers)))      # the run's, from its command
        m, blocks = self._compose()
        m.submodules.reader = reader = AxiReader(rcfg)
        m.submodules.loader = loader = ConstantLoader(self._loads)
        axi = self.kv == "axi"
        if not axi:
            wiring.connect(m, wiring.flipped(self.axi), reader.axi)
            m.d.comb += self.error.eq(reader.error)
        else:
            m.submodules.writer = writer = AxiWriter(self.writer)
            for master in (reader.axi, writer.axi):
                for name, member in master.signature.members.items():
                    mine, theirs = getattr(self.axi, name), getattr(master, name)
                    m.d.comb += (mine.eq(theirs) if member.flow == Out else theirs.eq(mine))
            m.d.comb += self.error.eq(reader.error | writer.error)
        cols = rcfg.lanes
        cmds = layer_fetch_commands(cfg, 0)
        n = len(cmds)

        # The reader's commands are one stream over the image's sections (`cmds`, the
        # constants last): `issued` walks it from `base` up to `stop` (idle when equal). A run
        # issues its whole image (0 .. n), or, when the previous command prefetched it, only
        # its constants (n-1 .. n); then, asked to prefetch, the next image's linear sections
        # (0 .. n-1) into the other banks, which the next command finds there. Either way
        # the reader's output carries the sections in image order, round and round, so
        # `section` wraps instead of starting over with each command.
        busy, loaded, in_done = Signal(), Signal(), Signal()
        attn = blocks[cfg.description.of_kind("attention")[0].name]
        if axi:
            # the layer's KV rows: read into the working cache after the constants (the
            # reader's section n), its new rows written back once appended (the spill)
            kv_addr = Signal(rcfg.addr_width)
            kv_pending, kv_loaded = Signal(), Signal()
            row_bytes = kv_cache_config(cfg).spill_bytes
        base = Signal(rcfg.addr_width)
        issued = Signal(range(n + 1), init=n)
        stop = Signal(range(n + 1), init=n)
        section = Signal(range(n))                 # whose data the reader's output carries
        m.d.comb += self.cmd.ready.eq(~busy)
        if self.banks == 2:
            ahead = Signal()                       # the banks hold the next image's sections
            after, after_base = Signal(), Signal(rcfg.addr_width)   # a prefetch to start
            c_wait, c_base = Signal(), Signal(rcfg.addr_width)      # constants to issue
            idle = issued == stop
            with m.If(idle & c_wait):
                m.d.sync += [issued.eq(n - 1), stop.eq(n), base.eq(c_base), c_wait.eq(0)]
            with m.Elif(idle & after & (~kv_pending if axi else 1)):
                m.d.sync += [issued.eq(0), stop.eq(n - 1), base.eq(after_base), after.eq(0)]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [busy.eq(1), loaded.eq(0), in_done.eq(0)]
            if axi:
                m.d.sync += [kv_addr.eq(self.cmd.payload.kv), kv_pending.eq(1),
                             kv_loaded.eq(0)]
            if self._layers > 1:
                m.d.sync += self._layer.eq(self.cmd.payload.layer)
            full = [issued.eq(0), stop.eq(n), base.eq(self.cmd.payload.addr)]
            if self.banks == 1:
                m.d.sync += full
            else:
                p = self.cmd.payload
                m.d.sync += [ahead.eq(p.prefetch), after.eq(p.prefetch),
                             after_base.eq(p.next)]
                with m.If(~ahead):
                    m.d.sync += full
                with m.Elif(idle):          # the prefetch is all issued: the constants now
                    m.d.sync += [issued.eq(n - 1), stop.eq(n), base.eq(p.addr)]
                with m.Else():              # after the prefetch's last section
                    m.d.sync += [c_wait.eq(1), c_base.eq(p.addr)]

        offset = Signal(rcfg.addr_width)
        nbytes = Signal(range(rcfg.max_bytes + 1))
        with m.Switch(issued):
            for k, (off, nb, _, _) in enumerate(cmds):
                with m.Case(k):
                    m.d.comb += [offset.eq(off), nbytes.eq(nb)]
        m.d.comb += [reader.i.valid.eq(issued != stop), reader.i.payload.addr.eq(base + offset),
                     reader.i.payload.bytes.eq(nbytes)]
        if axi:
            # the KV command once this run's image commands are out (before a prefetch); its
            # layer (and so `pos`) is set from the cycle after the run's command
            kv_go = kv_pending & (issued == stop) & (~c_wait if self.banks == 2 else 1)
            with m.If(kv_go):
                m.d.comb += [reader.i.valid.eq(attn.pos != 0),
                             reader.i.payload.addr.eq(kv_addr),
                             reader.i.payload.bytes.eq(attn.pos * row_bytes)]
                with m.If(attn.pos == 0):
                    m.d.sync += [kv_pending.eq(0), kv_loaded.eq(1)]
                with m.Elif(reader.i.ready):
                    m.d.sync += kv_pending.eq(0)
        with m.If(reader.i.valid & reader.i.ready & (issued != stop)):
            m.d.sync += issued.eq(issued + 1)

        # the reader's beats, by section: weights to the engine, a linear stage's numbers
        # through its own int32 packer to its re-quantiser, the constants to the loader
        packers = {}
        for name in cfg.linears:
            rq = cfg.requant(name)
            m.submodules[f"words_{name}"] = packers[name] = w = _Words(cols, cfg.lanes,
                                                                        rq.beats)
            wiring.connect(m, w.o, blocks[name].load)
        widen = {}                       # grouped: reader beats into group beats
        for name in (cfg.linears if cfg.grouped else ()):
            group = blocks[name].group
            m.submodules[f"groups_{name}"] = widen[name] = wd = _Widen(
                cols, group.payload.shape(), len(group.payload.data.as_value()) // (8 * cols))
            wiring.connect(m, wd.o, group)
        total = sum(c.depth * c.chunks for _, c in self._loads.constants)
        m.submodules.words_constants = cw = _Words(cols, 1, total)
        m.d.comb += [loader.i.valid.eq(cw.o.valid), loader.i.payload.eq(cw.o.payload.data[0]),
                     cw.o.ready.eq(loader.i.ready)]
        ready = Signal()
        section_of = {k: (stage, part) for k, (_, _, stage, part) in enumerate(cmds)}
        if axi:
            section_of[n] = ("kv", "rows")
        with m.Switch(section):
            for k, (stage, part) in section_of.items():
                with m.Case(k):
                    if stage == "kv":
                        sink = attn.fill
                    elif part == "weights":
                        sink = blocks[stage].weight
                    elif part == "groups":
                        sink = widen[stage].i
                    elif stage == "layer":
                        sink = cw.i
                        m.d.comb += cw.count.eq(total)
                    else:
                        sink = packers[stage].i
                        m.d.comb += packers[stage].count.eq(
                            1 if part == "shift" else cfg.requant(stage).beats)
                    m.d.comb += [sink.payload.data.as_value().eq(
                                     reader.o.payload.data.as_value()),
                                 sink.payload.last.eq(reader.o.payload.last),
                                 sink.payload.end.eq(reader.o.payload.end),
                                 sink.valid.eq(reader.o.valid), ready.eq(sink.ready)]
        m.d.comb += reader.o.ready.eq(ready)
        with m.If(reader.o.valid & reader.o.ready & reader.o.payload.last):
            if not axi:
                m.d.sync += section.eq(Mux(section == n - 1, 0, section + 1))
            else:       # the run's KV rows follow its constants when it has any
                with m.If(section == n):
                    m.d.sync += [section.eq(0), kv_loaded.eq(1)]
                with m.Elif(section == n - 1):
                    m.d.sync += section.eq(Mux(attn.pos != 0, n, 0))
                with m.Else():
                    m.d.sync += section.eq(section + 1)
        with m.If(loader.done):
            m.d.sync += loaded.eq(1)

        m.d.comb += self._open.eq(busy & loaded & ~in_done & (kv_loaded if axi else 1))
        with m.If(self.i.valid & self.i.ready & self.i.payload.last & self.i.payload.end):
            m.d.sync += in_done.eq(1)
        if not axi:
            with m.If(self.o.valid & self.o.ready & self.o.payload.end):
                m.d.sync += busy.eq(0)
            return m
        # The spill: each new row of the layer (positions pos.. as the cache completes them)
        # to its place in the region, a writer command and a cache request per row; the run
        # ends once its output is out and every row is written (acknowledged).
        S = cfg.seq
        sp = Signal(range(S + 1))
        sp_ok, cmd_sent, req_sent, out_done = Signal(), Signal(), Signal(), Signal()
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [sp_ok.eq(0), out_done.eq(0)]
        with m.Elif(busy & ~sp_ok):
            m.d.sync += [sp.eq(attn.pos), sp_ok.eq(1)]
        want = sp_ok & (sp < attn.kv_length)
        m.d.comb += [writer.cmd.valid.eq(want & ~cmd_sent),
                     writer.cmd.payload.addr.eq(kv_addr + sp * row_bytes),
                     writer.cmd.payload.bytes.eq(row_bytes),
                     attn.spill.valid.eq(want & ~req_sent),
                     attn.spill.payload.data[0].eq(sp)]
        wiring.connect(m, attn.o_spill, writer.data)
        cmd_fire = writer.cmd.valid & writer.cmd.ready
        req_fire = attn.spill.valid & attn.spill.ready
        with m.If((cmd_sent | cmd_fire) & (req_sent | req_fire)):
            m.d.sync += [sp.eq(sp + 1), cmd_sent.eq(0), req_sent.eq(0)]
        with m.Else():
            with m.If(cmd_fire):
                m.d.sync += cmd_sent.eq(1)
            with m.If(req_fire):
                m.d.sync += req_sent.eq(1)
        spilled = sp_ok & ~want & ~cmd_sent & ~req_sent & attn.spill.ready & \
            ~attn.o_spill.valid & ~writer.busy
        # as on chip, the next command may come the cycle after the last output beat, if
        # the rows are all written by then (else once they are)
        with m.If(self.o.valid & self.o.ready & self.o.payload.end):
            m.d.sync += out_done.eq(1)
        with m.If(spilled & (out_done | (self.o.valid & self.o.ready & self.o.payload.end))):
            m.d.sync += [busy.eq(0), out_done.eq(0)]
        return m
