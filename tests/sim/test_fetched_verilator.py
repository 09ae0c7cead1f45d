"""Blocks that fetch their numbers over AXI, on the compiled Verilator driver with its C++ read
slave (:class:`~llmloom.sim.harness.AxiMemory`): a whole LLaMA layer (:class:`FetchedLayer`,
the tiny config of ``test_fetched_layer_hdl.py``) built once runs two layers of a model from
one memory, tensor by tensor, each layer's outputs bit-exact against its own golden model
under every stall pattern (on RVALID and ARREADY too; the dynamic scheme under random
stalls), and, stall-free at a fixed latency, in the perf model's cycles; double-buffered,
each command prefetching the next image, the same and a shorter wait; a session runs the
same tensors one by one with the memory sent once. A :class:`FetchedLinear` gives against the
C++ slave the outputs and the cycles it gives against cocotbext-axi's slave on Icarus."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.layers.fetched import FetchedLinear, kv_cache_config
from llmloom.hw.layers.weights_image import fetched_layer_layout, pack_fetched_layer
from llmloom.perf.cycles import fetched_layer_cycles, fetched_layer_runs, fetched_linear_cycles
from llmloom.sim.blocks.layers import layer_golden
from llmloom.sim.fetched import (
    FetchedLayerHarness,
    FetchedLinearHarness,
    fetched_reader,
    kv_memory,
    layer_memory,
    run_fetched_linear,
)
from llmloom.sim.harness import AxiMemory
from llmloom.sim.runner import open_session, run_block
from llmloom.sim.streams import Stalls

from .test_fetched_layer_hdl import calibrations
from .test_fetched_linear_hdl import BASES, golden, reader_for, two_sets


@pytest.fixture(scope="module")
def models():
    """``scheme`` → a build's calibration and two layers' (their images one after the other in
    memory), each layer's input rows and the tensors' sizes (a prefill, then decode steps);
    each scheme calibrated once per module."""
    made = {}

    def of(scheme):
        if scheme not in made:
            made[scheme] = model_of(scheme)
        return made[scheme]
    return of


@pytest.fixture(scope="module")
def model(models):
    """The static scheme's :func:`model_of`."""
    return models("static")


def model_of(scheme, weight_bits=8, **extra):
    """A build's calibration and two layers' of ``scheme`` (see :func:`models`); ``extra``
    more config fields."""
    layers = calibrations(np.random.default_rng(1414), scheme, 3, weight_bits, **extra)
    memory, bases = layer_memory([pack_fetched_layer(q.config, q.weights)
                                  for q, _, _ in layers[1:]])
    sizes = layers[1][2]
    assert sizes == layers[2][2] and sizes[0] > 1 and len(sizes) >= 3
    return layers[0][0].config, layers[1:], memory, bases, sizes


def interleaved(layers, bases, sizes):
    """Each tensor of layer 0, then the same of layer 1: the tensors, ``(base, layer)`` per
    tensor."""
    xs, szs, runs, start = [], [], [], 0
    for size in sizes:
        for layer, (_, x, _) in enumerate(layers):
            xs.append(x[start:start + size])
            szs.append(size)
            runs.append((bases[layer], layer))
        start += size
    return xs, szs, runs


def check_layers(y, layers, szs, runs, sizes):
    at, got = 0, [[] for _ in layers]
    for size, (_, layer, *_) in zip(szs, runs, strict=True):
        got[layer].append(y[at:at + size])
        at += size
    for layer, (q, x, _) in enumerate(layers):
        np.testing.assert_array_equal(np.concatenate(got[layer]),
                                      layer_golden(q.config, q.weights, x, sizes))


@pytest.mark.parametrize("scheme, stall", [("static", "none"), ("static", "pattern"),
                                           ("static", "random"), ("dynamic", "random")])
def test_fetched_layer_runs_two_layers_from_one_image(verilator_sim, models, scheme, stall,
                                                      rng):
    model = models(scheme)
    cfg, _, _, bases, sizes = model
    reader, runs, szs, r = run_interleaved(verilator_sim, model, stall, rng)
    total, compute = r.tensor_cycles[:len(runs)], r.tensor_cycles[len(runs):]
    assert all(t > c > 0 for t, c in zip(total, compute, strict=True))
    if stall == "none":
        want = [fetched_layer_cycles(cfg, reader, 10, sizes, base) for base in bases]
        assert total == [want[layer][k // 2] for k, (_, layer) in enumerate(runs)]


def run_interleaved(sim, model, stall, rng, banks=None, prefetch=False):
    """Both layers of ``model`` interleaved on one build of ``banks`` banks (``None``: the
    default), each command prefetching the next run's image if ``prefetch``, under
    ``stall`` with an AXI memory of latency 10 (stall-free) or 2..30: ``(reader, runs,
    sizes, result)``, checked bit-exact and each run having fetched every section of its
    layer's image once."""
    cfg, layers, memory, bases, sizes = model
    reader = fetched_reader(cfg, len(memory), max_burst=16, outstanding=2)
    latency = 10 if stall == "none" else (2, 30)
    mem = AxiMemory(memory, reader.data_width, latency, seed=int(rng.integers(1 << 30)))
    h = FetchedLayerHarness(cfg, reader, layers=2, memory=mem, banks=banks)
    xs, szs, runs = interleaved(layers, bases, sizes)
    if prefetch:
        runs = prefetching(runs)
    seed = int(rng.integers(1 << 30))
    r = run_block(h, cfg, {"x_int": np.concatenate(xs), "sizes": szs, "runs": runs},
                  sim=sim, prepared=True, stalls_in=Stalls(stall, seed),
                  stalls_out=Stalls(stall, seed + 1))
    check_layers(r.outputs["y_int"], layers, szs, runs, sizes)
    beats = sum(-(-s.nbytes // reader.lanes) for s in fetched_layer_layout(cfg))
    assert r.axi_beats == {"axi": {"read": len(runs) * beats, "write": 0}}
    return reader, runs, szs, r


def prefetching(runs):
    """``runs`` with each command prefetching the next run's image (the last none)."""
    return [(base, layer, nxt[0]) for (base, layer), nxt in
            zip(runs, [*runs[1:], (None,)], strict=True)]


@pytest.mark.parametrize("stall", ["none", "pattern", "random"])
def test_double_buffered_layer_prefetches_the_next_image(verilator_sim, model, stall, rng):
    """Two banks, each command prefetching the next run's image: bit-exact under every
    stall pattern, each image's bytes read once, and stall-free the model's cycles
    (:func:`fetched_layer_runs`), each run after the first waiting for less than with one
    bank: no longer for the linear sections when the previous run computed at least as
    long as they take to load, only for its constants."""
    cfg = model[0]
    reader, runs, szs, r = run_interleaved(verilator_sim, model, stall, rng, banks=2,
                                          prefetch=True)
    total, compute = r.tensor_cycles[:len(runs)], r.tensor_cycles[len(runs):]
    if stall != "none":
        return
    assert total == fetched_layer_runs(cfg, reader, 10, szs, runs)
    single = fetched_layer_runs(cfg, reader, 10, szs, [run[:2] for run in runs])
    wait = [t - c for t, c in zip(total, compute, strict=True)]
    assert wait[0] == single[0] - compute[0]
    assert all(w < s - c for w, s, c in zip(wait[1:], single[1:], compute[1:], strict=True))
    constants = fetched_layer_layout(cfg)[-1]
    only = reader.cycles(0, constants.nbytes, 10) + 3        # the constants' fetch alone
    linear = reader.sequence_cycles([(s.offset, s.nbytes)
                                     for s in fetched_layer_layout(cfg)[:-1]], 10)
    for k in range(1, len(runs)):
        if compute[k - 1] >= linear:
            assert wait[k] == only
        else:
            assert wait[k] > only


@pytest.fixture(scope="module")
def w4_model():
    """:func:`model_of` at W4 (GGUF Q4_1: every linear stage's 4-bit codes with its groups'
    int16 scales and minima), the static scheme."""
    return model_of("static", weight_bits=4)


@pytest.mark.parametrize("stall", ["none", "pattern", "random"])
def test_w4_layer_fetches_its_codes_and_group_tables(verilator_sim, w4_model, stall, rng):
    """W4A8 through the fetched layer: each linear stage's image sections are the grouped
    GEMM's ``weight`` beats (two rows' codes a bus word) and ``group`` beats (a tile's scales
    and minima, four bus words a beat), loaded into its two banks; two layers interleaved,
    each command prefetching the next image, bit-exact against each layer's golden model
    under every stall pattern, the bytes read those of the images, and stall-free the
    model's cycles (:func:`fetched_layer_runs`). The image is smaller than W8's by the
    codes' half byte a weight less the groups' 4 bytes per 32."""
    cfg = w4_model[0]
    assert cfg.weight_bits == 4
    layout = {(s.stage, s.part): s for s in fetched_layer_layout(cfg)}
    for name in cfg.linears:
        g = cfg.linear(name)
        assert layout[name, "weights"].nbytes == g.k * g.n_tiles * g.cols // 2
        assert layout[name, "groups"].nbytes == g.groups * g.n_tiles * 2 * g.cols * 2
    reader, runs, szs, r = run_interleaved(verilator_sim, w4_model, stall, rng, banks=2,
                                          prefetch=True)
    if stall == "none":
        assert r.tensor_cycles[:len(runs)] == fetched_layer_runs(cfg, reader, 10, szs, runs)


@pytest.fixture(scope="module")
def w8g_model():
    return model_of("dynamic", weight_groups=True)


@pytest.mark.parametrize("stall", ["none", "random"])
def test_w8_grouped_layer_fetches_its_codes_and_group_tables(verilator_sim, w8g_model, stall,
                                                             rng):
    """W8 in groups (``weight_groups``, GGUF's Q8_0: SmolLM2's W8A8) through the fetched
    layer: each linear stage's int8 codes as the per-channel layer's ``weight`` beats, then
    its ``group`` beats (the scales alone), into two banks; two layers interleaved,
    bit-exact against each layer's golden model, stall-free in the model's cycles."""
    w8g = w8g_model
    cfg = w8g[0]
    assert cfg.weight_groups and all(cfg.linear(n).w_width == 8 for n in cfg.linears)
    layout = {(s.stage, s.part): s for s in fetched_layer_layout(cfg)}
    for name in cfg.linears:
        g = cfg.linear(name)
        assert layout[name, "weights"].nbytes == g.k * g.n_tiles * g.cols
        # a group's int16 scale a column, no minimum (Q8_0)
        assert layout[name, "groups"].nbytes == g.groups * g.n_tiles * g.cols * 2
    reader, runs, szs, r = run_interleaved(verilator_sim, w8g, stall, rng, banks=2,
                                          prefetch=True)
    if stall == "none":
        assert r.tensor_cycles[:len(runs)] == fetched_layer_runs(cfg, reader, 10, szs, runs)


def test_one_layer_prefetches_its_own_image(verilator_sim, model):
    """One layer run alone, step after step (the chat demo's fetched layer): each command
    prefetches its own image again, the next run's, into the other banks. Bit-exact, and
    stall-free the model's cycles (:func:`fetched_layer_runs`), each run after the first
    waiting for less than without a prefetch. Layer 1 in slot 1 of the tests' two-layer
    build (the same protocol as a one-layer build, no other build)."""
    cfg, layers, memory, bases, sizes = model
    reader = fetched_reader(cfg, len(memory), max_burst=16, outstanding=2)
    h = FetchedLayerHarness(cfg, reader, layers=2, memory=AxiMemory(memory, reader.data_width,
                                                                     10), banks=2)
    q, x, _ = layers[1]
    runs = [(bases[1], 1, bases[1])] * len(sizes)
    r = run_block(h, cfg, {"x_int": x, "sizes": sizes, "runs": runs}, sim=verilator_sim,
                  prepared=True)
    np.testing.assert_array_equal(r.outputs["y_int"], layer_golden(q.config, q.weights, x,
                                                                   sizes))
    total = r.tensor_cycles[:len(runs)]
    assert total == fetched_layer_runs(cfg, reader, 10, sizes, runs)
    single = fetched_layer_runs(cfg, reader, 10, sizes, [run[:2] for run in runs])
    assert total[0] == single[0] and all(t < s for t, s in zip(total[1:], single[1:],
                                                               strict=True))


@pytest.mark.parametrize("prefetch", [False, True])
def test_session_sends_the_memory_once(verilator_sim, model, prefetch, rng):
    """The same tensors run one by one in a session (the memory in the first run only): the
    same outputs and cycles as the one run of all of them; with each command prefetching
    the next image too (the prefetch goes on across the session's runs)."""
    cfg, layers, memory, bases, sizes = model
    reader = fetched_reader(cfg, len(memory), max_burst=16, outstanding=2)
    mem = AxiMemory(memory, reader.data_width, (2, 30), seed=5)
    xs, szs, runs = interleaved(layers, bases, sizes)
    if prefetch:
        runs = prefetching(runs)
    stalls = Stalls("random", int(rng.integers(1 << 30)))
    whole = run_block(FetchedLayerHarness(cfg, reader, layers=2, memory=mem), cfg,
                      {"x_int": np.concatenate(xs), "sizes": szs, "runs": runs},
                      sim=verilator_sim, prepared=True, stalls_in=stalls, stalls_out=stalls)
    h = FetchedLayerHarness(cfg, reader, layers=2, memory=mem)
    ys, total = [], []
    with open_session(h, cfg, component=h.component(cfg), stalls_in=stalls,
                      stalls_out=stalls) as s:
        for x, size, run in zip(xs, szs, runs, strict=True):
            r = s.run({"x_int": x, "sizes": [size], "runs": [run]}, prepared=True)
            h.memory = None                 # later runs leave the memory out
            ys.append(r.outputs["y_int"])
            total.append(r.tensor_cycles[0])
    np.testing.assert_array_equal(np.concatenate(ys), whole.outputs["y_int"])
    assert total == whole.tensor_cycles[:len(runs)]


@pytest.mark.parametrize("banks", [1, 2])
def test_fetched_linear_cpp_slave_matches_cocotbext_axi(verilator_sim, icarus_sim, banks, rng):
    """Two weight sets through one build: on Verilator against the C++ slave and on Icarus
    against cocotbext-axi's, the same outputs (the golden model's) and, at a fixed latency
    with no stalls, the same cycles per run (the perf model's); under random stalls and
    latency on Verilator, the golden model's outputs still."""
    name = "q"
    (cfg_a, w_a), (cfg_b, w_b), memory = two_sets(rng, name)
    reader = reader_for(cfg_a, name)
    comp = FetchedLinear(cfg_a, name, reader, weight_banks=banks)
    xs = [rng.integers(-128, 128, (rows, cfg_a.linear(name).k)) for rows in (4, 2)]
    runs = [(BASES[1], xs[0]), (BASES[0], xs[1])]
    want = [golden(c, w, name, x) for (c, w), x in zip([(cfg_b, w_b), (cfg_a, w_a)], xs,
                                                        strict=True)]
    latency = 10
    cocotb = run_fetched_linear(comp, memory, runs, sim=icarus_sim, latency=(latency, latency))
    h = FetchedLinearHarness(comp, AxiMemory(memory, reader.data_width, latency))
    cpp = run_block(h, cfg_a, {"runs": runs}, sim=verilator_sim, prepared=True)
    for got_c, got_v, w in zip(cocotb.outputs, cpp.outputs["y"], want, strict=True):
        np.testing.assert_array_equal(got_c, w)
        np.testing.assert_array_equal(got_v, w)
    assert cpp.tensor_cycles == cocotb.cycles
    model = [fetched_linear_cycles(cfg_a, name, reader, latency, len(x), base, banks)
             for base, x in runs]
    assert cpp.tensor_cycles == model if banks == 1 else cpp.tensor_cycles[0] == model[0]
    h = FetchedLinearHarness(comp, AxiMemory(memory, reader.data_width, (3, 40), seed=9))
    seed = int(rng.integers(1 << 30))
    cpp = run_block(h, cfg_a, {"runs": runs}, sim=verilator_sim, prepared=True,
                    stalls_in=Stalls("random", seed), stalls_out=Stalls("random", seed + 1))
    for got_v, w in zip(cpp.outputs["y"], want, strict=True):
        np.testing.assert_array_equal(got_v, w)


def test_a_burst_the_slave_refuses_fails_the_run(verilator_sim, rng):
    """A memory on a wider bus than the reader's: its 8-byte beats are not the reader's
    4-byte ARSIZE, and the run fails with the port named, not with wrong numbers."""
    name = "q"
    (cfg_a, _), _, memory = two_sets(rng, name)
    reader = reader_for(cfg_a, name)
    comp = FetchedLinear(cfg_a, name, reader)
    x = rng.integers(-128, 128, (2, cfg_a.linear(name).k))
    h = FetchedLinearHarness(comp, AxiMemory(memory, reader.data_width, 4))
    with pytest.raises(ValueError, match="32 bits wide, its memory data_width=64"):
        run_block(FetchedLinearHarness(comp, AxiMemory(memory, 64, 4)), cfg_a,
                  {"runs": [(BASES[0], x)]}, sim=verilator_sim, prepared=True)
    # the Python engine's slave refuses what the C++ one does: a misaligned burst
    from llmloom.sim.engine import StreamEngine
    engine = StreamEngine(h.drive(cfg_a, {"runs": [(BASES[0], x)]}))
    with pytest.raises(AssertionError, match="a burst the slave refuses"):
        engine.axi[0].accept(2, 4, 2, 1, 0)


@pytest.mark.slow
@pytest.mark.parametrize("prefetch, w4", [(False, False), (True, False), (True, True)])
def test_icarus_and_amaranth_run_the_same_cycles(icarus_sim, request, prefetch, w4, rng):
    """The engine's read slave on every back end: Icarus (through cocotb) and Amaranth's
    simulator give the outputs and cycles, tensor by tensor, that Verilator's compiled driver
    gives, under random stalls and latency, each command prefetching the next image or not;
    at W4 too (its codes and group tables fetched; Icarus only: Amaranth's simulator adds
    minutes and nothing W4 has that the W8 runs do not). Icarus ~2.5 min, Amaranth ~4.5 min
    loaded."""
    cfg, layers, memory, bases, sizes = request.getfixturevalue("w4_model" if w4 else "model")
    reader = fetched_reader(cfg, len(memory), max_burst=16, outstanding=2)
    mem = AxiMemory(memory, reader.data_width, (2, 30), seed=11)
    xs, szs, runs = interleaved(layers, bases, sizes)
    if prefetch:
        runs = prefetching(runs)
    stalls = Stalls("random", int(rng.integers(1 << 30)))
    results = [run_block(FetchedLayerHarness(cfg, reader, layers=2, memory=mem), cfg,
                         {"x_int": np.concatenate(xs), "sizes": szs, "runs": runs},
                         sim=sim, prepared=True, stalls_in=stalls, stalls_out=stalls)
               for sim in ("verilator", icarus_sim, *(() if w4 else ("amaranth",)))]
    check_layers(results[0].outputs["y_int"], layers, szs, runs, sizes)
    for r in results[1:]:
        np.testing.assert_array_equal(r.outputs["y_int"], results[0].outputs["y_int"])
        assert r.tensor_cycles == results[0].tensor_cycles
        assert r.axi_beats == results[0].axi_beats


def test_structure_keys_every_calibration_alike_and_each_structure_apart(model):
    """The structural build key (:func:`structure_of`): one text for every calibration of a
    config (whose Verilog is one text), another for other layers, another reader, another
    config; none for a baked layer (its memories hold its weights)."""
    import dataclasses

    from llmloom.hw.emit import split_memory_init
    from llmloom.sim.runner import structure_of, verilog_for_sim

    cfg, layers, memory, _, _ = model
    reader = fetched_reader(cfg, len(memory), max_burst=16, outstanding=2)

    def of(c, r=reader, n=2):
        return structure_of(FetchedLayerHarness(c, r, layers=n).component(c))

    key = of(cfg)
    assert key is not None
    assert all(of(q.config) == key for q, _, _ in layers)      # other calibrations
    assert layers[0][0].config != cfg
    assert of(cfg, n=3) != key
    assert of(cfg, r=dataclasses.replace(reader, outstanding=4)) != key
    assert of(dataclasses.replace(cfg, rounding="half_up")) != key
    assert structure_of(FetchedLayerHarness(cfg, reader).component(cfg), "ecp5") != \
        structure_of(FetchedLayerHarness(cfg, reader).component(cfg))
    # the claim the key rests on: the calibrations' Verilog is one text
    texts = {split_memory_init(verilog_for_sim(FetchedLayerHarness(c, reader, layers=2)
                                               .component(c), "verilator"))[0]
             for c in (cfg, layers[0][0].config)}
    assert len(texts) == 1
    from llmloom.hw.layers.layer import Layer
    from llmloom.sim.harness import ControlStreams

    q = layers[0][0]
    baked = ControlStreams(Layer(q.config, q.weights))
    baked._MustUse__silence = baked.inner._MustUse__silence = True     # asked, never built
    assert structure_of(baked) is None


def test_cached_structural_build_emits_no_verilog(verilator_sim, model, monkeypatch, rng):
    """Once a fetched layer's build is cached, a run of another calibration of its config (a
    new component, as a new process makes) emits no Verilog, and is bit-exact."""
    from llmloom.sim import runner

    cfg, layers, memory, bases, sizes = model
    reader = fetched_reader(cfg, len(memory), max_burst=16, outstanding=2)
    mem = AxiMemory(memory, reader.data_width, (2, 30), seed=3)
    xs, szs, runs = interleaved(layers, bases, sizes)
    tensors = {"x_int": np.concatenate(xs), "sizes": szs, "runs": runs}
    first = run_block(FetchedLayerHarness(cfg, reader, layers=2, memory=mem), cfg, tensors,
                      sim=verilator_sim, prepared=True)          # builds, if not cached
    emitted = []
    monkeypatch.setattr(runner, "emit_verilog",
                        lambda *a, **k: emitted.append(a) or pytest.fail("emitted Verilog"))
    monkeypatch.setattr(runner, "_EMITTED", type(runner._EMITTED)())
    other = layers[1][0].config                             # another calibration, one structure
    h = FetchedLayerHarness(other, reader, layers=2, memory=mem)
    again = run_block(h, other, tensors, sim=verilator_sim, prepared=True)
    assert emitted == []
    check_layers(again.outputs["y_int"], layers, szs, runs, sizes)
    assert again.tensor_cycles == first.tensor_cycles


def run_kv_in_memory(sim, model, stall, seed, banks=None, prefetch=False):
    """:func:`run_interleaved` with the KV cache in AXI memory (``kv="axi"``, the regions after
    the images): ``(reader, kv base, runs, sizes, result)``, checked bit-exact."""
    cfg, layers, memory, bases, sizes = model
    mem, kv_base = kv_memory(cfg, memory, len(layers))
    reader = fetched_reader(cfg, len(mem), kv="axi", max_burst=16, outstanding=2)
    latency = 10 if stall == "none" else (2, 30)
    am = AxiMemory(mem, reader.data_width, latency, seed=seed, write=True)
    h = FetchedLayerHarness(cfg, reader, layers=len(layers), memory=am, banks=banks, kv="axi",
                            kv_base=kv_base)
    xs, szs, runs = interleaved(layers, bases, sizes)
    if prefetch:
        runs = prefetching(runs)
    r = run_block(h, cfg, {"x_int": np.concatenate(xs), "sizes": szs, "runs": runs}, sim=sim,
                  prepared=True, stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    check_layers(r.outputs["y_int"], layers, szs, runs, sizes)
    return reader, kv_base, runs, szs, r, am


@pytest.mark.parametrize("stall, prefetch", [("none", False), ("none", True),
                                             ("random", True)])
def test_kv_cache_in_axi_memory(verilator_sim, model, stall, prefetch, rng):
    """``kv="axi"``: one working cache on chip, each layer's rows read from its region before
    its tensor and its new rows written back. Two layers interleaved, a prefill then decode
    steps, so each decode attends over rows that came back from memory (the other layer's
    run filled the working cache in between): bit-exact under random stalls (on the write
    channels too); every new row written once (``spill_beats`` W beats each); the rows read
    are each layer's earlier ones; stall-free, the perf model's cycles, and each run after a
    layer's first waiting longer than with the cache on chip by exactly the rows' read."""
    cfg, layers, _, _, sizes = model
    reader, kv_base, runs, szs, r, mem = run_kv_in_memory(
        verilator_sim, model, stall, int(rng.integers(1 << 30)), prefetch=prefetch)
    kv = kv_cache_config(cfg)
    assert r.axi_beats["axi"]["write"] == sum(szs) * kv.spill_beats
    pos = np.cumsum([0, *sizes[:-1]])          # rows each layer holds before each step
    read_rows = len(layers) * int(pos.sum())
    image = sum(s.nbytes for s in fetched_layer_layout(cfg))
    chip_reader = fetched_reader(cfg, len(model[2]), max_burst=16, outstanding=2)
    if stall != "none":
        return
    total = r.tensor_cycles[:len(runs)]
    assert total == fetched_layer_runs(cfg, reader, 10, szs, runs, kv_base=kv_base)
    chip = fetched_layer_runs(cfg, chip_reader, 10, szs, runs)
    assert total[:len(layers)] == chip[:len(layers)]       # the prefill: nothing to read
    assert all(t > c for t, c in zip(total[len(layers):], chip[len(layers):], strict=True))
    if not prefetch:
        # every image read whole each run, and the rows on top
        assert r.axi_beats["axi"]["read"] * reader.lanes == len(runs) * image + \
            read_rows * kv.spill_bytes + _padding(reader, cfg, runs)


def _padding(reader, cfg, runs):
    """Bytes a reader reads past each image section's end (its last word's padding)."""
    return len(runs) * sum(reader.out_beats(s.nbytes) * reader.lanes - s.nbytes
                           for s in fetched_layer_layout(cfg))


def test_kv_mode_is_checked(model):
    """A bad ``kv`` is one ConfigError naming it; ``axi`` needs a bus of ``lanes`` bytes."""
    from llmloom.hw.config import ConfigError
    from llmloom.hw.layers.fetched import FetchedLayer
    cfg = model[0]
    reader = fetched_reader(cfg, 1 << 16, kv="axi")
    with pytest.raises(ConfigError, match="kv='disk'"):
        FetchedLayer(cfg, reader, layers=2, kv="disk")
    with pytest.raises(ConfigError, match="max_bytes"):
        FetchedLayer(cfg, reader.replace(max_bytes=64), layers=2, kv="axi")


@pytest.mark.slow
def test_kv_in_axi_memory_same_cycles_on_every_back_end(verilator_sim, icarus_sim, model, rng):
    """The write slave on every back end: with the KV cache in AXI memory, Icarus (through
    cocotb) and Amaranth's simulator give the outputs, cycles (tensor by tensor) and R and W
    beats that the compiled driver gives, under random stalls (AWREADY, WREADY too) and
    latency. Slow (Amaranth ~10 min loaded); the default run's Verilator test above is its
    fast equivalent."""
    seed = int(rng.integers(1 << 30))
    results = [run_kv_in_memory(sim, model, "random", seed)[4]
               for sim in ("verilator", icarus_sim, "amaranth")]
    for r in results[1:]:
        np.testing.assert_array_equal(r.outputs["y_int"], results[0].outputs["y_int"])
        assert r.tensor_cycles == results[0].tensor_cycles
        assert r.axi_beats == results[0].axi_beats
