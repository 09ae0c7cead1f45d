"""The AXI4 write master against cocotbext-axi's write slave (``AxiRamWrite``), on Icarus and
Verilator: the memory after the writes equals the golden one (each command's range
overwritten, nothing else, the last beat's padding never written), the bursts obey AXI4 (INCR,
at most max_burst beats, never across 4 KB, WLAST on each burst's last beat, at most
``outstanding`` unacknowledged), under random response latency and backpressure on AW, W, B
and the data input; a bad BRESP raises ``error``."""

from __future__ import annotations

import pytest

from llmloom.hw.blocks.axi import INCR
from llmloom.hw.blocks.axi_writer import AxiWriterConfig
from llmloom.sim.axi import random_image, run_axi_writer, written

#: (config, commands): a narrow bus with short bursts and few in flight, so that the
#: outstanding limit and the 4 KB split show in a short run; a wide one with long bursts.
#: Commands: word-aligned starts (as KV rows are), multi-burst, one byte, a partial last
#: word, across 4 KB, zero bytes, and more bursts than `outstanding`.
CASES = {
    "w32": (AxiWriterConfig(data_width=32, max_burst=8, outstanding=2, max_bytes=1 << 14),
            [(0, 64), (4, 1), (8, 30), (4088, 20), (100, 0), (256, 203), (8188, 4)]),
    "w128": (AxiWriterConfig(data_width=128, max_burst=256, outstanding=3, max_bytes=1 << 16),
             [(0, 16), (16, 1), (4080, 40), (4096, 4096 + 100), (3 * 4096 - 32, 70)]),
}


def _payloads(rng, cmds):
    return [random_image(rng, n) for _, n in cmds]


def _check(cfg, mem, cmds, payloads, run):
    assert run.memory == written(mem, cmds, payloads)
    want = [(a, b, cfg.size, INCR) for addr, n in cmds for a, b in cfg.bursts(addr, n)]
    assert run.bursts == want
    for addr, beats, _, _ in run.bursts:
        assert 1 <= beats <= cfg.max_burst
        assert addr // 4096 == (addr + beats * cfg.lanes - 1) // 4096
    # WLAST closes each burst; a command's last beat strobes only its bytes
    lasts = [k for k, (_, last) in enumerate(run.strobes) if last]
    ends, at = [], -1
    for _, beats, _, _ in run.bursts:
        at += beats
        ends.append(at)
    assert lasts == ends
    full = (1 << cfg.lanes) - 1
    strobes, at = [], 0
    for _, n in cmds:
        k = cfg.out_beats(n)
        strobes += [full] * (k - 1) + [cfg.strobes(n)] * (k > 0)
    assert [s for s, _ in run.strobes] == strobes
    assert run.max_in_flight <= cfg.outstanding
    assert run.error == 0


@pytest.mark.parametrize("case", sorted(CASES))
def test_writes_exact_memory(hdl_sim, case, rng):
    cfg, cmds = CASES[case]
    mem = random_image(rng, 4 * 4096)
    payloads = _payloads(rng, cmds)
    run = run_axi_writer(cfg, mem, cmds, payloads, sim=hdl_sim, latency=(1, 1))
    _check(cfg, mem, cmds, payloads, run)
    # back to back and never waiting on the slave: about one W beat a cycle
    words = sum(b for a, n in cmds for _, b in cfg.bursts(a, n))
    assert words + cfg.W_ISSUE <= run.span <= 2 * words + 8 * len(run.bursts) + 20


@pytest.mark.parametrize("case", sorted(CASES))
def test_random_latency_and_backpressure(hdl_sim, case, rng):
    cfg, cmds = CASES[case]
    mem = random_image(rng, 4 * 4096)
    payloads = _payloads(rng, cmds)
    run = run_axi_writer(cfg, mem, cmds, payloads, sim=hdl_sim, latency=(3, 40),
                         seed=int(rng.integers(1 << 30)))
    _check(cfg, mem, cmds, payloads, run)
    # more bursts than `outstanding` and a long response latency: the limit is reached
    assert run.max_in_flight == cfg.outstanding
    run = run_axi_writer(cfg, mem, cmds, payloads, sim=hdl_sim, latency=(3, 40),
                         data_stall=0.4, aw_pause=0.3, w_pause=0.3, b_pause=0.3,
                         seed=int(rng.integers(1 << 30)))
    _check(cfg, mem, cmds, payloads, run)


def test_bad_response_sets_error(hdl_sim, rng):
    """A write the slave fails (SLVERR) raises the sticky ``error``; the other writes land."""
    cfg, cmds = CASES["w32"]
    mem = random_image(rng, 4 * 4096)
    payloads = _payloads(rng, cmds)
    run = run_axi_writer(cfg, mem, cmds, payloads, sim=hdl_sim, bad=(8, 9))
    assert run.error == 1
    good = written(mem, cmds, payloads)
    assert run.memory[:8] == good[:8] and run.memory[40:] == good[40:]


def test_unaligned_start_is_an_error(hdl_sim, rng):
    cfg = AxiWriterConfig(data_width=32, max_burst=8, outstanding=2, max_bytes=1 << 13)
    mem = random_image(rng, 8192)
    run = run_axi_writer(cfg, mem, [(6, 4)], [b"\x01\x02\x03\x04"], sim=hdl_sim)
    assert run.error == 1
    assert run.memory == mem[:4] + b"\x01\x02\x03\x04" + mem[8:]
