"""A linear stage fetching its numbers at run time (:class:`FetchedLinear`): one build runs two
different weight sets (two calibrations of one layer shape, their images in one AXI memory)
back to back, each bit-exact against the golden model, under random stalls on the activation
and output ports and on the AXI channels; without stalls its cycles are the perf model's."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module, Value
from amaranth.sim import Simulator

from llmloom.hw.blocks.axi_reader import AxiReaderConfig
from llmloom.hw.config import ConfigError
from llmloom.hw.layers.fetched import FetchedLinear, check_fetched
from llmloom.hw.layers.weights_image import image_layout, pack_layer_image
from llmloom.hw.stream import row_layout
from llmloom.perf.cycles import fetched_linear_cycles, fetched_linear_span
from llmloom.sim.fetched import run_fetched_linear
from llmloom.sim.golden.layers import linear_acc
from llmloom.sim.golden.requant import requant_bitexact
from llmloom.sim.streams import check_framing, pack_rows, unpack_rows

from ..hw.test_gpt2_block import quantised

# q on 4 columns (32-bit bus, one int32 a word: 2 words per load beat), f1 on 8 (64-bit bus,
# 2 int32 a word: one per load beat); token tiles of 3 rows (a run of 5 rows ends partial)
PAR = dict(lanes=2, linear_rows=3, linear_cols=4, ffn_rows=3, ffn_cols=8, qk_rows=3,
           qk_cols=4, pv_rows=2, pv_cols=4)
#: the decode GEMV instead (its rows a multiple of the lanes)
GEMV = dict(PAR, engine="gemv", linear_rows=4, ffn_rows=4)
#: bus words wider than the stream's lanes of int32 (f1 on 16 columns: 128-bit words of 4
#: int32, beats of 2; q on 8: as many as the lanes)
NARROW = dict(PAR, linear_cols=8, ffn_cols=16)
BASES = (0, 0x1040)          # the second image across a 4 KB boundary from the first


def reader_for(cfg, name, **kw):
    return AxiReaderConfig(data_width=8 * cfg.linear(name).cols, max_burst=8, outstanding=2,
                           max_bytes=1 << 12, addr_width=16, **kw)


def run(comp, memory, runs, *, latency, stall=0.0, seed=0, max_cycles=20_000,
        extra=lambda addr: 0):
    """Drive ``runs`` (``[(base, x_int rows)]``) through ``comp`` with an AXI slave over
    ``memory`` (first beat of a burst ``latency`` cycles after its AR, a range drawn per
    burst, plus ``extra(byte address)``); ``stall``: probability per cycle of no activation
    offered, no output ready, no ARREADY, no RVALID. Returns (per run: output rows, cycles
    from command to last beat)."""
    cfg, name = comp.cfg, comp.name
    rng = np.random.default_rng(seed)
    lanes_in = row_layout(comp.act.payload.data.shape().elem_shape, cfg.lanes)
    out_layout = comp.o.payload.shape()
    n = cfg.linear(name).n
    act_words = []
    for _, x, *_ in runs:
        act_words.append(pack_rows(lanes_in, x))
    # row exponents (a stage whose input carries them): all runs' in turn, one beat a row
    e_words = []
    if hasattr(comp, "e"):
        e_layout = comp.e.payload.shape()
        for _, _, e in runs:
            e_words += pack_rows(e_layout, np.asarray(e)[:, None])
    bus = comp.reader.lanes
    mem = bytes(memory)
    result = {"words": [[] for _ in runs], "start": [], "end": []}

    async def bench(ctx):
        axi = comp.axi
        cmds = list(range(len(runs)))
        act_run, act_at = 0, 0
        out_run = 0
        bursts = []           # (due cycle, word address, beats)
        cur = None            # [word address, beats left]
        cycle = 0
        while out_run < len(runs):
            if cycle > max_cycles:
                raise TimeoutError(f"{out_run} of {len(runs)} runs out after {cycle} cycles")
            go = rng.random() >= stall
            # command
            ctx.set(comp.cmd.valid, int(bool(cmds)))
            if cmds:
                ctx.set(comp.cmd.payload.addr, runs[cmds[0]][0])
            # activations, run after run (the stage takes a run's once its command is in)
            offer = act_run < len(runs) and go
            ctx.set(comp.act.valid, int(offer))
            if offer:
                ctx.set(Value.cast(comp.act.payload), act_words[act_run][act_at])
            e_offer = bool(e_words) and rng.random() >= stall
            if e_words:
                ctx.set(comp.e.valid, int(e_offer))
                if e_offer:
                    ctx.set(Value.cast(comp.e.payload), e_words[0])
            ctx.set(comp.o.ready, int(rng.random() >= stall))
            # AXI slave: AR
            ctx.set(axi.arready, int(rng.random() >= stall))
            if cur is None and bursts and bursts[0][0] <= cycle:
                _, word, beats = bursts.pop(0)
                cur = [word, beats]
            r_on = cur is not None and rng.random() >= stall
            ctx.set(axi.rvalid, int(r_on))
            if r_on:
                a = cur[0] * bus
                ctx.set(axi.rdata, int.from_bytes(mem[a:a + bus].ljust(bus, b"\0"), "little"))
                ctx.set(axi.rlast, int(cur[1] == 1))
                ctx.set(axi.rresp, 0)
            # transfers
            if cmds and ctx.get(comp.cmd.ready):
                result["start"].append(cycle)
                cmds.pop(0)
            if offer and ctx.get(comp.act.ready):
                act_at += 1
                if act_at == len(act_words[act_run]):
                    act_run, act_at = act_run + 1, 0
            if e_offer and ctx.get(comp.e.ready):
                e_words.pop(0)
            if ctx.get(axi.arvalid) and ctx.get(axi.arready):
                lo, hi = latency
                assert ctx.get(axi.arsize) == (bus - 1).bit_length()
                addr = ctx.get(axi.araddr)
                bursts.append((cycle + int(rng.integers(lo, hi + 1)) + extra(addr),
                               addr // bus, ctx.get(axi.arlen) + 1))
            if r_on and ctx.get(axi.rready):
                cur[0] += 1
                cur[1] -= 1
                if cur[1] == 0:
                    cur = None
            if ctx.get(comp.o.valid) and ctx.get(comp.o.ready):
                word = ctx.get(Value.cast(comp.o.payload))
                result["words"][out_run].append(word)
                if out_layout.from_bits(word).end:
                    result["end"].append(cycle)
                    out_run += 1
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
    outs = []
    for w in result["words"]:
        rows, last, end = unpack_rows(out_layout, w, n)
        check_framing(last, end, -(-n // cfg.lanes))
        outs.append(rows)
    cycles = [e - s + 1 for s, e in zip(result["start"], result["end"], strict=True)]
    run.span = result["end"][-1] - result["start"][0] + 1     # all runs, first command on
    return outs, cycles


def two_sets(rng, name, par=PAR):
    """Two calibrations of one layer shape (layer l and l+1), their images in one memory."""
    (cfg_a, w_a, *_), (cfg_b, w_b, *_) = quantised(rng, par=par), quantised(rng, par=par)
    assert cfg_a.requant(name).multipliers != cfg_b.requant(name).multipliers
    cfg_a.requant(name).check_loadable(cfg_b.requant(name))
    memory = bytearray(BASES[1] + 4096)
    for base, (c, w) in zip(BASES, ((cfg_a, w_a), (cfg_b, w_b)), strict=True):
        image = pack_layer_image(c, w)
        memory[base:base + len(image)] = image
    return (cfg_a, w_a), (cfg_b, w_b), bytes(memory)


def golden(cfg, w, name, x):
    return requant_bitexact(cfg.requant(name), linear_acc(cfg, w, name, x))


@pytest.mark.parametrize("name, par, banks", [("q", PAR, 1), ("f1", PAR, 1), ("f1", GEMV, 1),
                                              ("q", PAR, 2), ("f1", PAR, 2), ("f1", NARROW, 1),
                                              ("q", NARROW, 2), ("f1", NARROW, 2)],
                         ids=["q", "f1", "f1-gemv", "q-2banks", "f1-2banks", "f1-narrow",
                              "q-8cols-2banks", "f1-narrow-2banks"])
def test_two_weight_sets_one_build_random_stalls(name, par, banks, rng):
    (cfg_a, w_a), (cfg_b, w_b), memory = two_sets(rng, name, par)
    k = cfg_a.linear(name).k
    xs = [rng.integers(-128, 128, (rows, k)) for rows in (5, 2, 4, 1, 3)]
    # the build's initial numbers are set a's; run b first so that each run needs its load
    sets = [(BASES[1], cfg_b, w_b), (BASES[0], cfg_a, w_a), (BASES[1], cfg_b, w_b),
            (BASES[1], cfg_b, w_b), (BASES[0], cfg_a, w_a)]
    comp = FetchedLinear(cfg_a, name, reader_for(cfg_a, name), weight_banks=banks)
    outs, _ = run(comp, memory, [(b, x) for (b, _, _), x in zip(sets, xs, strict=True)],
                  latency=(3, 30), stall=0.3, seed=int(rng.integers(1 << 30)))
    for (_, c, w), x, got in zip(sets, xs, outs, strict=True):
        np.testing.assert_array_equal(got, golden(c, w, name, x))
    # the two sets do give different results on the same rows
    assert not np.array_equal(golden(cfg_a, w_a, name, xs[0]), golden(cfg_b, w_b, name, xs[0]))


@pytest.mark.parametrize("name, banks", [("q", 1), ("f2", 2)])
def test_row_exponents_dynamic_scheme(name, banks, rng):
    """The dynamic scheme: the stage's input rows carry exponents (``e``), which the loaded
    re-quantiser undoes (f2: int16 outputs); two sets through one build, random stalls."""
    par = dict(PAR, scheme="dynamic")
    (cfg_a, w_a), (cfg_b, w_b), memory = two_sets(rng, name, par)
    rq = cfg_a.requant(name)
    assert rq.row_exponent
    comp = FetchedLinear(cfg_a, name, reader_for(cfg_a, name), weight_banks=banks)
    k = cfg_a.linear(name).k
    lo = -(1 << (cfg_a.width(cfg_a.description[name].inputs[0]) - 1))
    runs, want = [], []
    for base, (c, w), rows in ((BASES[1], (cfg_b, w_b), 3), (BASES[0], (cfg_a, w_a), 4)):
        x = rng.integers(lo, -lo, (rows, k))
        e = rng.integers(0, rq.e_max + 1, rows)
        runs.append((base, x, e))
        want.append(requant_bitexact(c.requant(name), linear_acc(c, w, name, x), e))
    outs, _ = run(comp, memory, runs, latency=(3, 20), stall=0.3,
                  seed=int(rng.integers(1 << 30)))
    for got, y in zip(outs, want, strict=True):
        np.testing.assert_array_equal(got, y)


def test_results_wait_for_late_constants(rng):
    """The constants' bursts come back long after the engine's results: the results wait at
    the re-quantiser's input (computed with the build's initial numbers, set a's, they would
    be wrong for set b)."""
    name = "q"
    (cfg_a, w_a), (cfg_b, w_b), memory = two_sets(rng, name)
    weights = [s for s in image_layout(cfg_a) if s.stage == name and s.part == "weights"][0]

    def extra(addr):
        return 0 if any(b + weights.offset <= addr < b + weights.end for b in BASES) else 300

    comp = FetchedLinear(cfg_a, name, reader_for(cfg_a, name))
    x = rng.integers(-128, 128, (4, cfg_a.linear(name).k))
    (got,), (cycles,) = run(comp, memory, [(BASES[1], x)], latency=(4, 4), extra=extra)
    np.testing.assert_array_equal(got, golden(cfg_b, w_b, name, x))
    assert cycles > 300


@pytest.mark.parametrize("name, rows, latency, par", [("q", 5, 12, PAR), ("f1", 1, 40, PAR),
                                                      ("f1", 7, 5, PAR), ("q", 3, 9, GEMV),
                                                      ("f1", 3, 10, NARROW)],
                         ids=["q", "f1-one-row", "f1", "q-gemv", "f1-narrow"])
def test_cycles_are_the_models(name, rows, latency, par, rng):
    (cfg_a, w_a), (cfg_b, w_b), memory = two_sets(rng, name, par)
    reader = reader_for(cfg_a, name)
    comp = FetchedLinear(cfg_a, name, reader)
    x = rng.integers(-128, 128, (rows, cfg_a.linear(name).k))
    outs, cycles = run(comp, memory, [(BASES[1], x), (BASES[0], x)],
                       latency=(latency, latency))
    np.testing.assert_array_equal(outs[0], golden(cfg_b, w_b, name, x))
    np.testing.assert_array_equal(outs[1], golden(cfg_a, w_a, name, x))
    want = [fetched_linear_cycles(cfg_a, name, reader, latency, rows, base) for base in
            (BASES[1], BASES[0])]
    assert cycles == want


@pytest.mark.parametrize("name, rows, latency, par, tol", [
    ("q", 3, 20, PAR, 0), ("f1", 9, 20, PAR, 0), ("q", 1, 60, PAR, 0), ("f1", 6, 4, NARROW, 0),
    # fetch-bound with bus words narrowed into the load: the reader waits while a word leaves
    # as several beats, which its timeline (the model's fetch term) does not count
    ("f1", 1, 30, NARROW, 0.03)],
    ids=["fetch-bound", "stage-bound", "long-latency", "narrow-stage-bound",
         "narrow-fetch-bound"])
def test_double_buffered_stream_overlaps_fetch_and_compute(name, rows, latency, par, tol,
                                                           rng):
    """Six runs, the two sets in turn: with two weight banks each run's fetch overlaps the
    previous run's compute, and the stream takes the perf model's cycles, as it does (run
    after run) with one bank."""
    (cfg_a, w_a), (cfg_b, w_b), memory = two_sets(rng, name, par)
    reader = reader_for(cfg_a, name)
    x = rng.integers(-128, 128, (rows, cfg_a.linear(name).k))
    runs = [(BASES[j % 2], x) for j in range(6)]
    bases = [b for b, _ in runs]
    span = {}
    for banks in (1, 2):
        comp = FetchedLinear(cfg_a, name, reader, weight_banks=banks)
        outs, _ = run(comp, memory, runs, latency=(latency, latency))
        for j, got in enumerate(outs):
            c, w = ((cfg_a, w_a), (cfg_b, w_b))[j % 2]
            np.testing.assert_array_equal(got, golden(c, w, name, x))
        span[banks] = run.span
        want = fetched_linear_span(cfg_a, name, reader, latency, rows, bases, banks)
        if banks == 1 or not tol:
            assert span[banks] == want
        else:
            assert abs(span[banks] - want) <= tol * want, (span[banks], want)
    assert span[2] < span[1]


def test_bad_reader_is_one_clear_error(rng):
    cfg, *_ = quantised(rng, par=PAR)
    with pytest.raises(ConfigError, match="data_width=32"):
        check_fetched(cfg, "q", AxiReaderConfig(data_width=64))


@pytest.mark.parametrize("banks", [1, 2])
def test_cocotbext_axi_slave_on_icarus(icarus_sim, banks, rng):
    """The smallest case on Icarus against cocotbext-axi's read slave: two weight sets through
    one build, bit-exact, first with random latency and stalls everywhere, then with a fixed
    latency and no stalls, in the model's cycles."""
    name = "q"
    (cfg_a, w_a), (cfg_b, w_b), memory = two_sets(rng, name)
    reader = reader_for(cfg_a, name)
    comp = FetchedLinear(cfg_a, name, reader, weight_banks=banks)
    xs = [rng.integers(-128, 128, (rows, cfg_a.linear(name).k)) for rows in (4, 2)]
    runs = [(BASES[1], xs[0]), (BASES[0], xs[1])]
    sets = [(cfg_b, w_b), (cfg_a, w_a)]
    got = run_fetched_linear(comp, memory, runs, sim=icarus_sim, latency=(3, 40),
                             act_stall=0.3, out_stall=0.3, r_pause=0.3, ar_pause=0.3,
                             seed=int(rng.integers(1 << 30)))
    for (c, w), x, out in zip(sets, xs, got.outputs, strict=True):
        np.testing.assert_array_equal(out, golden(c, w, name, x))
    assert got.error == 0
    latency = 10
    got = run_fetched_linear(comp, memory, runs, sim=icarus_sim, latency=(latency, latency))
    for (c, w), x, out in zip(sets, xs, got.outputs, strict=True):
        np.testing.assert_array_equal(out, golden(c, w, name, x))
    want = [fetched_linear_cycles(cfg_a, name, reader, latency, len(x), base, banks)
            for base, x in runs]
    # (two banks: the second run's command is taken while the first computes, so only the
    # first run stands alone)
    assert got.cycles == want if banks == 1 else got.cycles[0] == want[0]

