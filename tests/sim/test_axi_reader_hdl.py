"""The AXI4 read master against cocotbext-axi's read slave, on Icarus and Verilator: the bytes
out equal memory exactly, the bursts obey AXI4 (INCR, at most max_burst beats, never across
4 KB, at most ``outstanding`` in flight), and the cycles are the config's prediction (exact for
a fixed latency, bounded for random latency and stalls)."""

from __future__ import annotations

import pytest

from llmloom.hw.blocks.axi_reader import INCR, AxiReaderConfig
from llmloom.sim.axi import random_image, run_axi_reader

#: (config, commands): a narrow bus with short bursts and few of them in flight, so that the
#: outstanding limit, the 4 KB split and many bursts show in a short run; a wide one with
#: full-length bursts. Commands: aligned multi-burst, 1 byte, unaligned both ends, across
#: 4 KB, more bursts than `outstanding`, a word-sized one at an unaligned start.
CASES = {
    "w32": (AxiReaderConfig(data_width=32, max_burst=16, outstanding=2, max_bytes=1 << 14),
            [(0, 64), (3, 1), (5, 30), (4090, 20), (1, 200), (4095, 1), (8188, 4), (100, 0),
             (4000, 700)]),
    "w128": (AxiReaderConfig(data_width=128, max_burst=256, outstanding=3, max_bytes=1 << 16),
             [(0, 16), (7, 1), (4093, 40), (0, 4096 * 3), (33, 4096 + 100), (16 * 250, 4100)]),
}


def _check(cfg, mem, cmds, run):
    for (addr, nbytes), got, pad in zip(cmds, run.data, run.padding, strict=True):
        assert got == mem[addr:addr + nbytes], (addr, nbytes)
        assert pad == bytes(len(pad)), "the last beat's padding is not zero"
    # last/end on each command's final beat only
    assert run.ends == [[cfg.out_beats(n) - 1] if n else [] for _, n in cmds]
    want = [(a, b, cfg.size, INCR) for addr, n in cmds for a, b in cfg.bursts(addr, n)]
    assert run.bursts == want
    for addr, beats, _, _ in run.bursts:
        assert 1 <= beats <= cfg.max_burst
        assert addr // 4096 == (addr + beats * cfg.lanes - 1) // 4096
    assert run.max_in_flight <= cfg.outstanding
    assert run.error == 0


@pytest.mark.parametrize("case", sorted(CASES))
def test_fixed_latency_cycles_are_exact(hdl_sim, case, rng):
    cfg, cmds = CASES[case]
    mem = random_image(rng, 3 * 4096 + 4096)
    latency = 11
    run = run_axi_reader(cfg, mem, cmds, sim=hdl_sim, latency=(latency, latency))
    _check(cfg, mem, cmds, run)
    assert min(run.latencies) == latency        # what the slave model gives, on the bus
    # commands back to back: each one's transfer to its last beat, and the whole span
    timeline = cfg.timeline(cmds, latency)
    assert run.cycles == [e - t + 1 if n else 0 for (t, e), (_, n) in zip(timeline, cmds,
                                                                          strict=True)]
    assert run.span == cfg.sequence_cycles(cmds, latency)
    # and each command alone
    for addr, nbytes in cmds[:4]:
        if nbytes:
            alone = run_axi_reader(cfg, mem, [(addr, nbytes)], sim=hdl_sim,
                                   latency=(latency, latency))
            assert alone.cycles == [cfg.cycles(addr, nbytes, latency)]
    # with more bursts than `outstanding` the limit is reached
    assert run.max_in_flight == cfg.outstanding


@pytest.mark.parametrize("case", sorted(CASES))
def test_random_latency_and_backpressure(hdl_sim, case, rng):
    cfg, cmds = CASES[case]
    mem = random_image(rng, 4 * 4096)
    lo, hi = 3, 40
    # random latency alone: between the predictions at the shortest and the longest latency
    run = run_axi_reader(cfg, mem, cmds, sim=hdl_sim, latency=(lo, hi), seed=int(rng.integers(
        1 << 30)))
    _check(cfg, mem, cmds, run)
    assert lo <= min(run.latencies) and max(run.latencies) >= hi // 2
    assert cfg.sequence_cycles(cmds, lo) <= run.span <= cfg.sequence_cycles(cmds, hi)
    # and with the output, RVALID and ARREADY stalled at random: same bytes, only slower
    run = run_axi_reader(cfg, mem, cmds, sim=hdl_sim, latency=(lo, hi), out_stall=0.4,
                         r_pause=0.3, ar_pause=0.3, seed=int(rng.integers(1 << 30)))
    _check(cfg, mem, cmds, run)
    assert run.span >= cfg.sequence_cycles(cmds, lo)


def test_word_aligned_only(hdl_sim, rng):
    """Without ``unaligned`` (no realignment logic) aligned commands stream exactly, with the
    same timing; an unaligned one reads from the word below and raises ``error``."""
    cfg = AxiReaderConfig(data_width=64, max_burst=32, outstanding=2, max_bytes=1 << 13,
                          unaligned=False)
    mem = random_image(rng, 8192)
    cmds = [(8, 100), (4000, 300), (0, 8)]
    run = run_axi_reader(cfg, mem, cmds, sim=hdl_sim, latency=(6, 6))
    _check(cfg, mem, cmds, run)
    assert run.span == cfg.sequence_cycles(cmds, 6)
    run = run_axi_reader(cfg, mem, [(19, 10)], sim=hdl_sim, latency=(6, 6))
    assert run.data == [mem[16:26]] and run.error == 1
    assert run.bursts == [(16, 2, cfg.size, INCR)] and run.cycles == [cfg.cycles(19, 10, 6)]
