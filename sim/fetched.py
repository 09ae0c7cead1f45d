"""Blocks that fetch their numbers over AXI, simulated.

* :func:`run_fetched_linear`: a :class:`~llmloom.hw.layers.fetched.FetchedLinear` on Icarus
  or Verilator against cocotbext-axi's read slave (:mod:`.fetched_bench`).
* :class:`FetchedLayerHarness`: a :class:`~llmloom.hw.layers.fetched.FetchedLayer` (one
  layer's hardware running every layer of a model, each layer's image in one AXI memory) as a
  harness of :func:`~llmloom.sim.runner.run_block` and
  :func:`~llmloom.sim.runner.open_session`, the AXI memory on the engine's read slave
  (:class:`~llmloom.sim.harness.AxiMemory`): the same run on Amaranth's simulator, Icarus and
  the compiled Verilator driver. :func:`layer_memory` lays the layers' images out.
* :class:`FetchedLinearHarness`: the same for a :class:`FetchedLinear`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..hw.blocks.axi_reader import AxiReaderConfig
from ..hw.layers.fetched import (
    FetchedLayer,
    command_fields,
    command_layout,
    fetch_commands,
    kv_region,
    kv_region_bytes,
    layer_banks,
    prefetched_runs,
)
from ..hw.layers.weights_image import ALIGN, fetched_layer_layout
from .blocks.layers import layer_collect, layer_collect_exponents, layer_drive, layer_outputs
from .harness import ControlStreams, Drive, Gate, Segment
from .runner import run_cocotb_test
from .streams import check_framing, pack_rows, unpack_rows

__all__ = ["FetchedRun", "run_fetched_linear", "layer_memory", "kv_memory", "fetched_reader",
           "FetchedLayerHarness", "FetchedLinearHarness"]


def layer_memory(images):
    """The byte images one after another, each on an :data:`ALIGN` boundary: ``(memory,
    bases)``."""
    bases, at = [], 0
    for im in images:
        bases.append(at)
        at += -(-len(im) // ALIGN) * ALIGN
    mem = bytearray(at)
    for b, im in zip(bases, images, strict=True):
        mem[b:b + len(im)] = im
    return bytes(mem), bases


def kv_memory(cfg, memory, layers):
    """``memory`` (the layers' images, :func:`layer_memory`) with ``layers`` KV regions after
    it (``kv="axi"``, :func:`~llmloom.hw.layers.fetched.kv_region`), zero: ``(bytearray,
    kv base)``."""
    base = -(-len(memory) // ALIGN) * ALIGN
    out = bytearray(base + layers * kv_region_bytes(cfg))
    out[:len(memory)] = memory
    return out, base


def fetched_reader(cfg, memory_bytes, *, kv="chip", **fields):
    """The reader of a :class:`FetchedLayer` of ``cfg`` over a memory of ``memory_bytes``:
    a bus of the linear engines' ``cols`` bytes, commands up to one layer image (or, with
    ``kv="axi"``, one KV region if larger), addresses over the whole memory; ``fields``:
    other :class:`AxiReaderConfig` fields."""
    image = fetched_layer_layout(cfg)[-1].end
    if kv == "axi":
        image = max(image, kv_region_bytes(cfg))
    return AxiReaderConfig(data_width=8 * cfg.linear(cfg.linears[0]).cols, max_bytes=image,
                           addr_width=max(13, max(memory_bytes, image + 1).bit_length()),
                           unaligned=False, **fields)


class FetchedLayerHarness:
    """Runs of a :class:`FetchedLayer` (``layers`` layers, reader ``reader``) as
    :func:`~llmloom.sim.runner.run_block` takes a harness. Its tensors are a
    :class:`~llmloom.sim.blocks.layers.LayerHarness`'s prepared ones (``x_int``, ``sizes``,
    ``x_e`` with row exponents) and ``runs``: per tensor of ``sizes``, ``(image base,
    layer)`` or, with two banks, ``(image base, layer, next)``
    (:func:`~llmloom.hw.layers.fetched.command_fields`), the command
    sent with it (a run after one that prefetched must be of the prefetched image);
    ``memory`` (an :class:`AxiMemory`, the images) goes with each drive, unless ``None`` (a
    session's later runs: the model keeps its memory). ``banks``: the layer's
    (:func:`~llmloom.hw.layers.fetched.layer_banks`).

    Each tensor's command and rows wait for the previous tensor's last output beat (as
    autoregressive decode does; so a session fed tensor by tensor runs cycle for cycle as one
    run of them all). Each tensor's cycles (``tensor_cycles``) are two lists' worth: first
    from its command's transfer to its last output beat (the fetch included), then from its
    first input row's transfer (once its image is all loaded) to the same beat."""

    def __init__(self, cfg, reader, layers=1, memory=None, banks=None, kv="chip", kv_base=None):
        self.cfg, self.reader, self.layers, self.memory = cfg, reader, layers, memory
        self.banks = layer_banks(cfg, banks)
        if kv == "axi" and kv_base is None:
            raise ValueError("kv='axi' needs kv_base, the address of the KV regions")
        self.kv, self.kv_base = kv, kv_base
        self._component = None

    def component(self, cfg):
        if self._component is None:
            self._component = ControlStreams(FetchedLayer(cfg, self.reader, layers=self.layers,
                                                          banks=self.banks, kv=self.kv))
        return self._component

    def prepare(self, cfg, tensors):
        return tensors

    def drive(self, cfg, tensors):
        d = layer_drive(cfg, tensors["x_int"], tensors["sizes"], x_e=tensors.get("x_e"))
        layout = command_layout(self.reader, self.layers, self.banks, self.kv)
        runs = list(tensors["runs"])
        if len(runs) != len(tensors["sizes"]):
            raise ValueError(f"{len(runs)} commands for {len(tensors['sizes'])} tensors")
        cmds = [layout.const(command_fields(
                    self.banks, run, None if self.kv == "chip"
                    else kv_region(cfg, self.kv_base, run[1]))).as_bits()
                for run in prefetched_runs(runs, self.banks)]
        segments = [Segment("cmd", k, seg.out, seg.beats) for k, seg in enumerate(d.segments)]
        # a tensor's command waits for the previous tensor's output, as its rows do
        gates = dict(d.gates)
        if "i" in d.gates:
            gates["cmd"] = [Gate(k + 1, g.after, g.beats) for k, g in enumerate(d.gates["i"])]
        memory = {} if self.memory is None else {"axi": self.memory}
        return Drive(preload={}, timed={"cmd": cmds, **d.timed}, expect=d.expect,
                     gates=gates, segments=segments + d.segments, memory=memory)

    def collect(self, cfg, tensors, beats):
        y = layer_collect(cfg, beats["o"], tensors["sizes"])
        if "o_e" in beats:
            from .golden.layers import RowScaled
            y = RowScaled(y, layer_collect_exponents(cfg, beats["o_e"], tensors["sizes"]))
        return layer_outputs(cfg, y)

    def macs(self, cfg, tensors):
        """The tensors' multiply-accumulates, and the image's bytes of each run at one MAC
        a byte (each run's fetch, for the run's deadline)."""
        rows, d = int(tensors["x_int"].shape[0]), cfg.d_model
        linear = rows * sum(k * n for k, n in map(cfg.linear_shape, cfg.linears))
        image = fetched_layer_layout(cfg)[-1].end
        return linear + 2 * rows * cfg.seq * d + len(tensors["sizes"]) * image

    def peak_macs_per_cycle(self, cfg):
        return self.reader.lanes


class FetchedLinearHarness:
    """Runs of a :class:`~llmloom.hw.layers.fetched.FetchedLinear` ``comp`` (no row
    exponents) as :func:`~llmloom.sim.runner.run_block` takes a harness, ``memory`` (an
    :class:`AxiMemory`) on its AXI port. Tensors: ``runs``, ``[(image base, activation rows)]``,
    a command and the tensor's rows each; outputs: ``y`` (per run its result rows). Each run's
    cycles (``tensor_cycles``): from its command's transfer to its last output beat."""

    def __init__(self, comp, memory):
        self.comp, self.memory = comp, memory

    def component(self, cfg):
        return self.comp

    def prepare(self, cfg, tensors):
        return tensors

    def _per_row(self):
        return -(-self.comp.cfg.linear(self.comp.name).n // self.comp.cfg.lanes)

    def drive(self, cfg, tensors):
        comp = self.comp
        cmds, acts, segments, outs = [], [], [], 0
        for k, (base, x) in enumerate(tensors["runs"]):
            cmds.append(comp.cmd.payload.shape().const({"addr": base}).as_bits())
            acts += pack_rows(comp.act.payload.shape(), np.asarray(x))
            outs += len(x) * self._per_row()
            segments.append(Segment("cmd", k, "o", outs))
        return Drive(preload={}, timed={"cmd": cmds, "act": acts}, expect={"o": outs},
                     segments=segments, memory={"axi": self.memory})

    def collect(self, cfg, tensors, beats):
        comp, per = self.comp, self._per_row()
        out, at = [], 0
        for _, x in tensors["runs"]:
            take = beats["o"][at:at + len(x) * per]
            at += len(take)
            rows, last, end = unpack_rows(comp.o.payload.shape(), take,
                                          comp.cfg.linear(comp.name).n)
            check_framing(last, end, per)
            out.append(rows)
        return {"y": out}

    def macs(self, cfg, tensors):
        k, n = self.comp.cfg.linear_shape(self.comp.name)
        return sum(len(x) for _, x in tensors["runs"]) * k * n + len(tensors["runs"]) * sum(
            nbytes for _, nbytes in fetch_commands(self.comp.cfg, self.comp.name, 0))

    def peak_macs_per_cycle(self, cfg):
        return self.comp.reader.lanes
@dataclasses.dataclass
class FetchedRun:
    outputs: list         # per run: the output rows (rows × n)
    cycles: list          # per run: command transfer .. last output beat, inclusive
    span: int             # first command's transfer .. last run's last output beat, inclusive
    error: int            # the reader's error flag at the end


def run_fetched_linear(comp, memory, runs, *, sim="icarus", latency=(8, 8), act_stall=0.0,
                       out_stall=0.0, r_pause=0.0, ar_pause=0.0, seed=0, max_cycles=None):
    """Run ``runs`` (``[(image base, activation rows)]``, in order) through ``comp`` (a
    :class:`FetchedLinear`) with ``memory`` (bytes at address 0) behind cocotbext-axi's read
    slave: per-burst latency drawn from the inclusive range ``latency``; the activations not
    offered with probability ``act_stall`` per cycle, the output not ready with
    ``out_stall``, RVALID and ARREADY paused with ``r_pause``, ``ar_pause`` (seeded)."""
    cfg, name = comp.cfg, comp.name
    act_layout, out_layout = comp.act.payload.shape(), comp.o.payload.shape()
    memory = bytes(memory)
    for base, _ in runs:
        for addr, nbytes in fetch_commands(cfg, name, base):
            if addr + nbytes > len(memory):
                raise ValueError(f"the image at {base} runs past the memory's {len(memory)} "
                                 "bytes")
    acts = [[hex(w) for w in pack_rows(act_layout, x)] for _, x in runs]
    bursts = sum(len(comp.reader.bursts(a, n)) for base, _ in runs
                 for a, n in fetch_commands(cfg, name, base))
    if max_cycles is None:
        stall = max(act_stall, out_stall, r_pause, ar_pause)
        beats = sum(len(a) for a in acts) + sum(n for base, _ in runs for _, n in
                                                fetch_commands(cfg, name, base))
        max_cycles = int((1000 + 20 * beats + bursts * latency[1]) / (1 - stall))
    end_bit = out_layout["end"].offset
    job = {"memory": memory.hex(), "bases": [b for b, _ in runs], "acts": acts,
           "latency": list(latency), "bursts": bursts, "seed": seed, "act_stall": act_stall,
           "out_stall": out_stall, "r_pause": r_pause, "ar_pause": ar_pause,
           "max_cycles": max_cycles, "end_bit": end_bit}
    result = run_cocotb_test(comp, sim, "llmloom.sim.fetched_bench", job)
    if "words" not in result:
        raise AssertionError(result.get("fail") or "the simulation ended without a result")
    n = cfg.linear(name).n
    outputs = []
    for words in result["words"]:
        rows, last, end = unpack_rows(out_layout, [int(w, 16) for w in words], n)
        check_framing(last, end, -(-n // cfg.lanes))
        outputs.append(rows)
    return FetchedRun(outputs=outputs, cycles=result["cycles"], span=result["span"],
                      error=result["error"])
