"""The AXI read master's config: validation, the bursts it issues (AXI4 rules), its timing
model's shape. The RTL is held to all of it in ``tests/sim/test_axi_reader_hdl.py``."""

from __future__ import annotations

import pytest

from llmloom.hw.blocks.axi_reader import AxiReader, AxiReaderConfig, bursts
from llmloom.hw.config import ConfigError


@pytest.mark.parametrize("fields, match", [
    ({"data_width": 48}, "data_width"),
    ({"max_burst": 257}, "max_burst"),
    ({"outstanding": 0}, "outstanding"),
    ({"addr_width": 16, "max_bytes": 1 << 16}, "max_bytes"),
])
def test_bad_config_is_one_clear_error(fields, match):
    with pytest.raises(ConfigError, match=match):
        AxiReaderConfig(**fields)


def test_bad_cfg_type():
    with pytest.raises(TypeError):
        AxiReader("not a config")


@pytest.mark.parametrize("bus, max_burst", [(4, 16), (8, 256), (64, 256), (16, 7)])
def test_bursts_cover_the_range_by_axi4_rules(rng, bus, max_burst):
    for _ in range(300):
        addr = int(rng.integers(0, 3 * 4096))
        n = int(rng.integers(1, 3 * 4096))
        bl = bursts(addr, n, bus, max_burst)
        word = addr // bus * bus
        for a, beats in bl:
            assert a == word and a % bus == 0           # contiguous, aligned
            assert 1 <= beats <= max_burst
            assert a // 4096 == (a + beats * bus - 1) // 4096
            word += beats * bus
        assert bl[0][0] <= addr and word >= addr + n > word - bus
    assert bursts(0, 0, 8, 256) == []


def test_timing_model_shape():
    cfg = AxiReaderConfig(data_width=128, outstanding=4)
    assert cfg.cycles(0, 1, 10) == cfg.ISSUE + 10 + 2      # one word: issue, latency, out
    # one more cycle for an unaligned start whose last output beat needs no new word
    assert cfg.cycles(1, 15, 10) == cfg.cycles(0, 15, 10) + 1
    assert cfg.cycles(1, 16, 10) == cfg.cycles(0, 16, 10) + 1      # two words for one beat
    for n in (1, 100, 5000, 70000):
        lat = [cfg.cycles(3, n, L) for L in (1, 10, 100, 400)]
        assert lat == sorted(lat)                                 # longer latency: slower
    with pytest.raises(ValueError):
        cfg.cycles(0, 0, 10)
    with pytest.raises(ValueError):
        cfg.cycles(0, 10, 0)


@pytest.mark.parametrize("outstanding, latency", [(1, 50), (2, 50), (4, 100), (8, 300),
                                                  (16, 40)])
def test_bandwidth_is_the_long_transfer_rate(outstanding, latency):
    cfg = AxiReaderConfig(data_width=256, outstanding=outstanding, max_burst=64,
                          max_bytes=1 << 24)
    n = 1 << 22
    rate = n / cfg.cycles(0, n, latency)
    assert rate == pytest.approx(cfg.bytes_per_cycle(latency), rel=0.01)
    assert cfg.bytes_per_cycle(latency) <= cfg.lanes


def test_a_command_offered_late_starts_late():
    """``timeline``'s ``offered``: a command offered after the reader could take it starts
    then (the same bursts, shifted); one offered earlier waits for the reader as back to
    back."""
    cfg = AxiReaderConfig(data_width=32, max_burst=16, outstanding=2)
    cmds = [(0, 256), (4096, 64)]
    back = cfg.timeline(cmds, 10)
    assert cfg.timeline(cmds, 10, [0, 0]) == back
    late = back[0][1] + 50
    got = cfg.timeline(cmds, 10, [0, late])
    assert got[0] == back[0]
    assert got[1] == (late, late + cfg.cycles(4096, 64, 10) - 1)
    assert cfg.timeline(cmds, 10, [7, 0])[1] == tuple(t + 7 for t in back[1])


def test_writer_config_shares_the_reader_rules():
    """One home for the burst rules: the writer's bursts are the shared function's, its
    config errors the shared config's, and its last beat's strobes cover exactly the tail."""
    from llmloom.hw.blocks.axi_writer import AxiWriter, AxiWriterConfig
    w = AxiWriterConfig(data_width=64, max_burst=16)
    assert w.bursts(4088, 100) == bursts(4088, 100, 8, 16)
    assert w.strobes(8) == 0xff and w.strobes(3) == 0b111 and w.strobes(17) == 1
    with pytest.raises(ConfigError, match="max_bytes"):
        AxiWriterConfig(addr_width=16, max_bytes=1 << 16)
    with pytest.raises(TypeError):
        AxiWriter(AxiReaderConfig())
