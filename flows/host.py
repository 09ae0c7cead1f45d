"""The host side of the board link: the byte protocol of :class:`~llmloom.boards.hostlink.HostLink`.

The protocol is request/response over a UART (8N1). Each request is one command byte, some
with a payload; the payloads are stream beats of the GEMM's own ports, each beat sent as its
packed payload in ``ceil(width / 8)`` bytes, little-endian (the same packing as
:func:`llmloom.sim.streams.pack_rows`, so the ``last``/``end`` bits travel with the data).

========  ======================================  ===========================================
command   payload                                 reply
========  ======================================  ===========================================
``I``     none                                    16 bytes: ``LM``, rows, cols, lanes,
                                                  w_width, k (4 B), n (4 B), max_rows (2 B)
``W``     weight beats up to the one with ``end`` ``w`` once the GEMM has taken them
``A``     activation beats up to ``end``         ``a`` once stored on chip (M <= max_rows)
``S``     none                                    ``s`` when the last output row is stored
``R``     none                                    the stored output beats, M × n_tiles of them
``C``     none                                    4 bytes: cycles of the last ``S``, from the
                                                  first activation beat taken by the GEMM to
                                                  its last output beat, inclusive
other     none                                    ``?``
========  ======================================  ===========================================

The module is sans-I/O: :meth:`GemmProtocol.session` is a generator of ``(bytes to send,
number of reply bytes)`` steps, driven by :func:`run_session` over any blocking transport (a
``serial.Serial`` from pyserial has the ``write``/``read`` it needs) or by a simulation
testbench.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..boards.protocol import (
    ACK_INPUTS,
    ACK_START,
    ACK_WEIGHTS,
    CMD_CYCLES,
    CMD_IDENT,
    CMD_INPUTS,
    CMD_READ,
    CMD_START,
    CMD_WEIGHTS,
    CYCLE_BYTES,
    IDENT_BYTES,
    NAK,
    LinkGeometry,
    beat_bytes,
)
from ..sim.streams import pack_rows, unpack_rows

__all__ = ["CMD_IDENT", "CMD_WEIGHTS", "CMD_INPUTS", "CMD_START", "CMD_READ", "CMD_CYCLES",
           "ACK_WEIGHTS", "ACK_INPUTS", "ACK_START", "NAK", "IDENT_BYTES", "CYCLE_BYTES",
           "HostError", "GemmProtocol", "run_session", "SerialHost", "beat_bytes"]



class HostError(RuntimeError):
    """The board answered something other than what the protocol says."""


def _to_bytes(words, nbytes):
    return b"".join(int(w).to_bytes(nbytes, "little") for w in words)


def _from_bytes(buf, nbytes):
    if len(buf) % nbytes:
        raise HostError(f"{len(buf)} bytes are not whole beats of {nbytes} bytes")
    return [int.from_bytes(buf[i:i + nbytes], "little") for i in range(0, len(buf), nbytes)]


@dataclasses.dataclass(frozen=True)
class GemmProtocol(LinkGeometry):
    """Encoder and decoder of the protocol for a GEMM of config ``cfg`` with room for
    ``max_rows`` activation rows on chip."""

    def encode_weights(self, w):
        """``W`` and the k × n weights as beats."""
        w = np.asarray(w)
        if w.shape != (self.cfg.k, self.cfg.n):
            raise ValueError(f"weights have shape {w.shape}; expected (k, n) = "
                             f"({self.cfg.k}, {self.cfg.n})")
        lo, hi = -(1 << (self.cfg.w_width - 1)), (1 << (self.cfg.w_width - 1)) - 1
        if w.size and (w.min() < lo or w.max() > hi):
            raise ValueError(f"weights outside int{self.cfg.w_width} range {lo}..{hi}")
        words = pack_rows(self.weight_layout, w)
        return bytes([CMD_WEIGHTS]) + _to_bytes(words, self.weight_bytes)

    def encode_inputs(self, a):
        """``A`` and the M × k activations as beats (M <= max_rows)."""
        a = np.asarray(a)
        if a.ndim != 2 or a.shape[1] != self.cfg.k or not 1 <= a.shape[0] <= self.max_rows:
            raise ValueError(f"activations have shape {a.shape}; expected M × {self.cfg.k} "
                             f"with 1 <= M <= {self.max_rows}")
        if a.size and (a.min() < -128 or a.max() > 127):
            raise ValueError("activations outside int8 range -128..127")
        return bytes([CMD_INPUTS]) + _to_bytes(pack_rows(self.act_layout, a), self.act_bytes)

    def result_bytes(self, m):
        return m * self.cfg.n_tiles * self.out_bytes

    # -- replies --------------------------------------------------------------------------------
    def decode_results(self, buf, m):
        """The M × n int32 product from the ``R`` reply."""
        words = _from_bytes(buf, self.out_bytes)
        if len(words) != m * self.cfg.n_tiles:
            raise HostError(f"got {len(words)} output beats; expected {m * self.cfg.n_tiles}")
        c, last, end = unpack_rows(self.out_layout, words, self.cfg.n)
        if not end[-1] or end[:-1].any():
            raise HostError("output framing is wrong: `end` is not on the last beat only")
        return c.astype(np.int32)

    @staticmethod
    def decode_cycles(buf):
        if len(buf) != CYCLE_BYTES:
            raise HostError(f"cycle count has {len(buf)} bytes; expected {CYCLE_BYTES}")
        return int.from_bytes(buf, "little")

    @staticmethod
    def _expect(reply, ack, what):
        if bytes(reply) != bytes([ack]):
            raise HostError(f"{what}: expected {chr(ack)!r}, got {bytes(reply)!r}")

    # -- a whole job ----------------------------------------------------------------------------
    def session(self, a, w=None):
        """Generator of ``(request bytes, reply length)`` steps running C = A·W on the board:
        check the identity, load W (skipped when ``None``: weights already loaded), load A,
        start, read C and the cycle count. Its return value is ``(C, cycles)``."""
        a = np.asarray(a)
        got = yield bytes([CMD_IDENT]), IDENT_BYTES
        if bytes(got) != self.ident():
            raise HostError(f"the board's identity {bytes(got).hex()} does not match this "
                            f"config ({self.ident().hex()})")
        if w is not None:
            self._expect((yield self.encode_weights(w), 1), ACK_WEIGHTS, "weights")
        self._expect((yield self.encode_inputs(a), 1), ACK_INPUTS, "inputs")
        self._expect((yield bytes([CMD_START]), 1), ACK_START, "start")
        m = a.shape[0]
        c = self.decode_results((yield bytes([CMD_READ]), self.result_bytes(m)), m)
        cycles = self.decode_cycles((yield bytes([CMD_CYCLES]), CYCLE_BYTES))
        return c, cycles


def run_session(session, write, read):
    """Drive a :meth:`GemmProtocol.session` with blocking ``write(bytes)`` and
    ``read(n) -> bytes``; returns the session's result."""
    reply = None
    try:
        while True:
            request, n = session.send(reply)
            write(request)
            reply = read(n) if n else b""
            if len(reply) != n:
                raise HostError(f"timed out: got {len(reply)} of {n} reply bytes")
    except StopIteration as stop:
        return stop.value


class SerialHost:
    """The protocol over a serial port (needs pyserial, which is not a dependency: install it
    to talk to a board)."""

    def __init__(self, port, cfg, max_rows, baud=115200, timeout=5.0):
        try:
            import serial
        except ImportError:
            raise HostError("talking to a board needs pyserial: pip install pyserial") from None
        self.protocol = GemmProtocol(cfg, max_rows)
        self.port = serial.Serial(port, baudrate=baud, timeout=timeout)

    def run(self, a, w=None):
        """C = A·W on the board; returns ``(C, cycles)``."""
        return run_session(self.protocol.session(a, w), self.port.write, self.port.read)

    def close(self):
        self.port.close()
