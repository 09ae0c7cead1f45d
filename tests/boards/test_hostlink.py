"""The board's portable core end to end: the host protocol, as UART frames bit by bit, into
the simulated host-link core; results equal the golden GEMM and the cycle count equals the
stand-alone GEMM's."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.boards.hostlink import HostLink
from llmloom.flows.host import NAK, GemmProtocol, HostError, run_session
from llmloom.flows.simhost import simulate_session
from llmloom.hw.blocks.gemm import GemmConfig
from llmloom.hw.blocks.uart import UartConfig
from llmloom.sim.blocks.gemm import GemmHarness
from llmloom.sim.golden.gemm import gemm_bitexact
from llmloom.sim.runner import run_block

FAST = UartConfig(divisor=4)   # 4 cycles per bit keeps the simulation short


def _tensors(rng, cfg, m):
    lo, hi = -(1 << (cfg.w_width - 1)), 1 << (cfg.w_width - 1)
    a = rng.integers(-128, 128, (m, cfg.k), dtype=np.int8)
    w = rng.integers(lo, hi, (cfg.k, cfg.n), dtype=np.int8)
    return a, w


@pytest.mark.parametrize("cfg, m", [
    (GemmConfig(rows=2, cols=2, k=8, n=6, lanes=4), 3),
    (GemmConfig(rows=3, cols=2, k=6, n=5, lanes=3, w_width=4), 4),
    (GemmConfig(rows=1, cols=1, k=1, n=1, lanes=1), 1),
    (GemmConfig(rows=2, cols=2, k=7, n=5, lanes=4), 3),     # k not a multiple of lanes
], ids=["2x2", "int4", "1x1", "k7-lanes4"])
def test_end_to_end(cfg, m, rng):
    a, w = _tensors(rng, cfg, m)
    link = HostLink(cfg, max_rows=4, uart=FAST)
    proto = GemmProtocol(link.cfg, link.protocol.max_rows)
    (c, cycles), _ = simulate_session(link, proto.session(a, w), max_cycles=400_000)
    np.testing.assert_array_equal(c, gemm_bitexact(cfg, a, w))
    reference = run_block(GemmHarness(), cfg, {"a": a, "w": w})
    assert cycles == reference.cycles


def test_extremes_and_weight_reuse(rng):
    """All -128 (the largest sums), then a second product on the weights already loaded,
    then new weights."""
    cfg = GemmConfig(rows=2, cols=3, k=8, n=4, lanes=2)
    link = HostLink(cfg, max_rows=3, uart=FAST)
    proto = GemmProtocol(link.cfg, link.protocol.max_rows)
    a1 = np.full((3, 8), -128, dtype=np.int8)
    w1 = np.full((8, 4), -128, dtype=np.int8)
    a2, w2 = _tensors(rng, cfg, 2)

    def jobs():
        r1 = yield from proto.session(a1, w1)
        r2 = yield from proto.session(a2)           # weights kept
        r3 = yield from proto.session(a2, w2)
        return r1, r2, r3

    (r1, r2, r3), _ = simulate_session(link, jobs(), max_cycles=600_000)
    np.testing.assert_array_equal(r1[0], gemm_bitexact(cfg, a1, w1))
    assert r1[0][0, 0] == 8 * 128 * 128
    np.testing.assert_array_equal(r2[0], gemm_bitexact(cfg, a2, w1))
    np.testing.assert_array_equal(r3[0], gemm_bitexact(cfg, a2, w2))


def test_unknown_command_is_refused():
    cfg = GemmConfig(rows=1, cols=1, k=1, n=1, lanes=1)
    link = HostLink(cfg, max_rows=1, uart=FAST)

    def job():
        reply = yield b"Z", 1
        ident = yield b"I", 16
        return reply, ident

    (reply, ident), _ = simulate_session(link, job(), max_cycles=50_000)
    assert reply == bytes([NAK])
    assert ident == link.protocol.ident()


def test_identity_mismatch_is_reported(rng):
    board = HostLink(GemmConfig(rows=2, cols=2, k=4, n=4, lanes=2), max_rows=2, uart=FAST)
    other = GemmProtocol(GemmConfig(rows=2, cols=2, k=8, n=4, lanes=2), 2)
    a, w = _tensors(rng, other.cfg, 1)
    with pytest.raises(HostError, match="does not match"):
        simulate_session(board, other.session(a, w), max_cycles=50_000)


def test_protocol_checks_tensors():
    proto = GemmProtocol(GemmConfig(rows=2, cols=2, k=4, n=3, lanes=2), 2)
    with pytest.raises(ValueError, match=r"expected \(k, n\) = \(4, 3\)"):
        proto.encode_weights(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="1 <= M <= 2"):
        proto.encode_inputs(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="int8 range"):
        proto.encode_weights(np.full((4, 3), 200))
    with pytest.raises(ValueError, match="max_rows=0"):
        GemmProtocol(proto.cfg, 0)


def test_protocol_round_trip_over_a_loopback_transport(rng):
    """run_session over a blocking transport (what pyserial gives), against a Python stand-in
    of the board built from the same encoder: the framing is consistent both ways."""
    cfg = GemmConfig(rows=2, cols=2, k=4, n=3, lanes=2)
    proto = GemmProtocol(cfg, 4)
    a, w = _tensors(rng, cfg, 3)
    from amaranth.hdl import signed

    from llmloom.hw.stream import row_layout
    from llmloom.sim.streams import pack_rows

    outbox = bytearray()
    acks = {ord("W"): ord("w"), ord("A"): ord("a"), ord("S"): ord("s")}

    def write(request):
        cmd = request[0]
        if cmd == ord("I"):
            outbox.extend(proto.ident())
        elif cmd in acks:
            outbox.append(acks[cmd])
        elif cmd == ord("R"):
            words = pack_rows(row_layout(signed(32), cfg.cols), a.astype(int) @ w)
            outbox.extend(b"".join(x.to_bytes(proto.out_bytes, "little") for x in words))
        elif cmd == ord("C"):
            outbox.extend((1234).to_bytes(4, "little"))

    def read(n):
        chunk = bytes(outbox[:n])
        del outbox[:n]
        return chunk

    c, cycles = run_session(proto.session(a, w), write, read)
    np.testing.assert_array_equal(c, a.astype(int) @ w)
    assert cycles == 1234
