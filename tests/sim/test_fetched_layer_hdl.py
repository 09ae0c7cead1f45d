"""A whole LLaMA layer fetching all its numbers at run time (:class:`FetchedLayer`): one build
(of one calibration) runs two other layers' calibrated images from one AXI memory — the
weights, the linear stages' re-quantisers and every other stage's memories (norm gains, RoPE
tables, attention's re-quantisers and exp table, SiLU table, mul and residual multipliers) —
as layers 0 and 1 of a model, alternating tensor by tensor (a prefill of each, then decode
steps), each layer with its own KV cache region and position; every output bit-exact against
``layer_bitexact`` of its own calibration, under random stalls on the rows and the AXI
channels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module, Value
from amaranth.sim import Simulator

from llmloom.hw.blocks.axi_reader import AxiReaderConfig
from llmloom.hw.config import ConfigError
from llmloom.hw.layers.fetched import FetchedLayer, layer_fetch_commands
from llmloom.hw.layers.weights_image import fetched_layer_layout, pack_fetched_layer
from llmloom.perf.cycles import fetched_layer_cycles
from llmloom.sim.blocks.layers import layer_collect, layer_golden
from llmloom.sim.fetched import layer_memory
from llmloom.sim.streams import pack_rows

from ..hw.test_llama_block import llama_case


def reader_for(cfg):
    return AxiReaderConfig(data_width=8 * cfg.linear("q").cols, max_burst=16, outstanding=2,
                           max_bytes=1 << 14, addr_width=16)


def calibrations(rng, scheme, n, weight_bits=8, **extra):
    """``n`` calibrated layers of one config (their quantised layer and input rows); ``extra``
    more config fields."""
    out = []
    for _ in range(n):
        h, cfg, t = llama_case(rng, scheme, weight_bits=weight_bits, **extra)
        prep = h.prepare(cfg, t)
        out.append((h.quantized(cfg), prep["x_int"], prep["sizes"]))
    return out


def run_layer(comp, memory, runs, *, stall, seed, latency=(2, 12), max_cycles=400_000):
    """Drive ``runs`` (``[(base, layer, x_int rows of one tensor, clear before)]``) through
    ``comp``: a command and the tensor's rows per run, ``clear`` strobed before a run that asks
    for it (while the layer is idle); an AXI slave over ``memory`` (a burst's first beat
    ``latency`` cycles after its AR, a range drawn per burst); ``stall``: probability per
    cycle of no row offered, no output ready, no ARREADY, no RVALID. Returns each run's output
    beats; and ``run_layer.cycles``, each run's from its command's transfer to its last output
    beat."""
    cfg = comp.cfg
    rng = np.random.default_rng(seed)
    beat = comp.i.payload.shape()
    act = [pack_rows(beat, x) for _, _, x, _ in runs]
    bus = comp.reader.lanes
    outs = [[] for _ in runs]
    starts, ends = [], []

    async def bench(ctx):
        axi = comp.axi
        cmd_at, act_run, act_at, out_run = 0, 0, 0, 0
        bursts, cur, cycle = [], None, 0
        while out_run < len(runs):
            assert cycle < max_cycles, f"{out_run} of {len(runs)} runs after {cycle} cycles"
            # a run's command once the previous run is all out (and its clear, if asked)
            idle = cmd_at == out_run and act_run == out_run
            clear = idle and cmd_at < len(runs) and runs[cmd_at][3] == "clear"
            ctx.set(comp.clear, int(clear))
            if clear:
                runs[cmd_at] = runs[cmd_at][:3] + (None,)
            offer_cmd = idle and not clear and cmd_at < len(runs)
            ctx.set(comp.cmd.valid, int(offer_cmd))
            if offer_cmd:
                ctx.set(comp.cmd.payload.addr, runs[cmd_at][0])
                ctx.set(comp.cmd.payload.layer, runs[cmd_at][1])
            offer = act_run < cmd_at and rng.random() >= stall
            ctx.set(comp.i.valid, int(offer))
            if offer:
                ctx.set(Value.cast(comp.i.payload), act[act_run][act_at])
            ctx.set(comp.o.ready, int(rng.random() >= stall))
            ctx.set(axi.arready, int(rng.random() >= stall))
            if cur is None and bursts and bursts[0][0] <= cycle:
                _, word, beats = bursts.pop(0)
                cur = [word, beats]
            r_on = cur is not None and rng.random() >= stall
            ctx.set(axi.rvalid, int(r_on))
            if r_on:
                a = cur[0] * bus
                ctx.set(axi.rdata, int.from_bytes(memory[a:a + bus], "little"))
                ctx.set(axi.rlast, int(cur[1] == 1))
                ctx.set(axi.rresp, 0)
            if offer_cmd and ctx.get(comp.cmd.ready):
                cmd_at += 1
                starts.append(cycle)
            if offer and ctx.get(comp.i.ready):
                act_at += 1
                if act_at == len(act[act_run]):
                    act_run, act_at = act_run + 1, 0
            if ctx.get(axi.arvalid) and ctx.get(axi.arready):
                addr = ctx.get(axi.araddr)
                bursts.append((cycle + int(rng.integers(latency[0], latency[1] + 1)),
                               addr // bus,
                               ctx.get(axi.arlen) + 1))
            if r_on and ctx.get(axi.rready):
                cur[0] += 1
                cur[1] -= 1
                if cur[1] == 0:
                    cur = None
            if ctx.get(comp.o.valid) and ctx.get(comp.o.ready):
                outs[out_run].append(ctx.get(Value.cast(comp.o.payload)))
                if comp.o.payload.shape().from_bits(outs[out_run][-1]).end:
                    out_run += 1
                    ends.append(cycle)
            await ctx.tick()
            cycle += 1
        assert not ctx.get(comp.error)

    top = Module()
    top.domains.sync = ClockDomain()
    top.submodules.dut = comp
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    del cfg
    run_layer.cycles = [e - s + 1 for s, e in zip(starts, ends, strict=True)]
    return outs


def memory_of(layers):
    """The layers' images in one memory (:func:`~llmloom.sim.fetched.layer_memory`):
    ``(memory, bases)``."""
    return layer_memory([pack_fetched_layer(q.config, q.weights) for q, _, _ in layers])


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["static", "dynamic"])
def test_two_layers_alternating_one_build_random_stalls(scheme, rng):
    """Built from calibration 0, the layer runs calibrations 1 and 2 as layers 0 and 1:
    layer 0's prefill, layer 1's, then a decode step of each in turn; each layer's outputs
    bit-exact against its own golden model (its own KV cache). Slow on Amaranth's simulator
    (minutes); the fast equivalent, the same runs on Verilator under every stall pattern, is
    ``test_fetched_verilator.py::test_fetched_layer_runs_two_layers_from_one_image``."""
    layers = calibrations(rng, scheme, 3)
    memory, bases = memory_of(layers)
    comp = FetchedLayer(layers[0][0].config, reader_for(layers[0][0].config), layers=2)
    sizes = layers[1][2]
    assert sizes == layers[2][2] and len(sizes) >= 3 and sizes[0] > 1
    runs, which, start = [], [], 0
    for k, size in enumerate(sizes):
        for layer, n in enumerate((1, 2)):
            x = layers[n][1]
            runs.append((bases[n], layer, x[start:start + size],
                         "clear" if k == layer == 0 else None))
            which.append(layer)
        start += size
    outs = run_layer(comp, memory, runs, stall=0.3, seed=int(rng.integers(1 << 30)))
    for layer, n in enumerate((1, 2)):
        q, x, _ = layers[n]
        words = sum((o for o, w in zip(outs, which, strict=True) if w == layer), [])
        got = layer_collect(q.config, words, sizes)
        np.testing.assert_array_equal(got, layer_golden(q.config, q.weights, x, sizes))
    # the two layers' calibrations do give different results on one input
    assert not np.array_equal(layer_golden(layers[1][0].config, layers[1][0].weights,
                                           layers[1][1], sizes),
                              layer_golden(layers[2][0].config, layers[2][0].weights,
                                           layers[1][1], sizes))


def test_image_is_the_fetch_order(rng):
    """The run fetches the whole image in memory order, the constants section last."""
    (q, _, _), = calibrations(rng, "static", 1)
    cmds = layer_fetch_commands(q.config, 0x100)
    layout = fetched_layer_layout(q.config)
    assert [c[0] for c in cmds] == [0x100 + s.offset for s in layout]
    assert cmds[-1][2:] == ("layer", "constants")
    assert len(pack_fetched_layer(q.config, q.weights)) == layout[-1].end


@pytest.mark.slow
def test_cycles_are_the_models(rng):
    """Stall-free, a fixed memory latency: each run (a prefill, then a decode step) takes the
    cycles of ``perf.cycles.fetched_layer_cycles``: the whole image fetched, then the tensor.
    Slow on Amaranth's simulator; its fast equivalent is the stall-free case of
    ``test_fetched_verilator.py::test_fetched_layer_runs_two_layers_from_one_image``."""
    (q, x, sizes), = calibrations(rng, "static", 1)
    sizes = sizes[:2]
    memory, (base,) = memory_of([(q, x, sizes)])
    reader = reader_for(q.config)
    comp = FetchedLayer(q.config, reader)
    runs, start = [], 0
    for size in sizes:
        runs.append((base, 0, x[start:start + size], None))
        start += size
    outs = run_layer(comp, memory, runs, stall=0.0, seed=1, latency=(10, 10))
    got = layer_collect(q.config, sum(outs, []), sizes)
    np.testing.assert_array_equal(got, layer_golden(q.config, q.weights, x[:start], sizes))
    assert run_layer.cycles == fetched_layer_cycles(q.config, reader, 10, sizes, base)


def test_misfitting_bus_or_config_is_one_config_error(rng):
    (q, _, _), = calibrations(rng, "static", 1)
    cfg = q.config
    with pytest.raises(ConfigError, match="allowed: data_width=32"):
        FetchedLayer(cfg, AxiReaderConfig(data_width=64, max_bytes=1 << 14, addr_width=16))
    with pytest.raises(ConfigError, match="within max_bytes"):
        FetchedLayer(cfg, AxiReaderConfig(data_width=32, max_bytes=1 << 12, addr_width=16))
    with pytest.raises(ConfigError, match="calibrated"):
        FetchedLayer(dataclasses.replace(cfg, numbers=None), reader_for(cfg))
