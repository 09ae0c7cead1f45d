"""What the AXI4 masters (:mod:`.axi_reader`, :mod:`.axi_writer`) share: the AMBA rules their
bursts obey, the config fields of a master (bus, addresses, bursts, how many in flight), and
the command a sequencer queues ("``bytes`` bytes at ``addr``"), and the RTL that issues a
command's bursts on the address channel (:func:`issue_bursts`). One home for each fact, so the
read and write paths, their timing models and their tests cannot disagree about a burst."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from amaranth.hdl import Mux, Signal
from amaranth.lib import data

from ..config import BlockConfig, Choice, ConfigError, Range, spec

__all__ = ["AXI_BOUNDARY", "INCR", "OKAY", "bursts", "AxiMasterConfig", "command_layout",
           "Issuer", "issue_bursts"]

#: An AXI4 burst never crosses a 4 KB address boundary (AMBA AXI4, A3.4.1).
AXI_BOUNDARY = 4096
#: ARBURST/AWBURST code of an incrementing burst.
INCR = 0b01
#: RRESP/BRESP code of a normal access (anything else is an error response).
OKAY = 0b00


def bursts(addr, nbytes, bus_bytes, max_burst):
    """The bursts that cover ``nbytes`` from byte address ``addr`` on a bus of ``bus_bytes``
    bytes: ``[(word-aligned byte address, beats)]``, each at most ``max_burst`` beats and never
    crossing a 4 KB boundary. The RTL issues exactly these; the timing models walk them."""
    if nbytes <= 0:
        return []
    per_4k = AXI_BOUNDARY // bus_bytes
    word = addr // bus_bytes
    words = -(-(addr % bus_bytes + nbytes) // bus_bytes)
    out = []
    while words:
        beats = min(words, max_burst, per_4k - word % per_4k)
        out.append((word * bus_bytes, beats))
        word += beats
        words -= beats
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class AxiMasterConfig(BlockConfig):
    """The fields every AXI4 master here has: INCR bursts of full-width beats, one ID."""

    data_width: int = spec(64, Choice((32, 64, 128, 256, 512)),
                           "AXI data bus bits; a stream beat carries data_width/8 bytes")
    addr_width: int = spec(32, Range(13, 64), "AXI address bits")
    id_width: int = spec(1, Range(1, 16), "AxID/xID bits (ID 0 only: bursts complete in "
                         "order)")
    max_burst: int = spec(256, Range(1, 256), "beats per burst at most (AXI4 INCR allows 256; "
                          "a burst also stops at each 4 KB boundary)")
    outstanding: int = spec(4, Range(1, 64), "bursts issued and not yet complete, at most: "
                            "how much memory latency the master hides")
    max_bytes: int = spec(1 << 24, Range(1, 1 << 40), "largest byte count of one command "
                          "(sizes the counters)")

    def _validate(self):
        if self.max_bytes >= 1 << self.addr_width:
            raise ConfigError(f"max_bytes={self.max_bytes} does not fit addr_width="
                              f"{self.addr_width}; allowed: max_bytes < 2**addr_width")

    @property
    def lanes(self):
        """Bytes per bus word and per stream beat."""
        return self.data_width // 8

    @property
    def size(self):
        """AxSIZE: log2 of the bytes per beat (every beat is full width)."""
        return (self.lanes - 1).bit_length()

    @property
    def max_words(self):
        """Bus words one command may touch (an unaligned start adds one)."""
        return -(-(self.lanes - 1 + self.max_bytes) // self.lanes)

    def out_beats(self, nbytes):
        """Stream beats of a command of ``nbytes``: ``ceil(nbytes / lanes)``."""
        return -(-nbytes // self.lanes)


def command_layout(cfg):
    """A command of a master of ``cfg``: ``bytes`` bytes at byte address ``addr``."""
    return data.StructLayout({"addr": cfg.addr_width, "bytes": range(cfg.max_bytes + 1)})


class Issuer(NamedTuple):
    """What :func:`issue_bursts` elaborated, for the rest of a master to read."""

    #: Words of the current command not yet in an issued burst (0: a command may be loaded).
    words_left: Signal
    #: Beats of the burst that would be issued now (at most ``max_burst``, to the 4 KB line).
    beats: Signal
    #: A burst is issued this cycle (its address and length enter the channel registers).
    issue: Signal
    #: Bursts issued and not yet freed (at most ``outstanding``).
    in_flight: Signal


def issue_bursts(m, cfg, axi, prefix, *, load, addr, words, free, room=1):
    """Elaborate into ``m`` the address side of an AXI4 master of ``cfg``: the :func:`bursts`
    rules in RTL, one burst per cycle onto the ``{prefix}addr``, ``{prefix}len``,
    ``{prefix}valid``... members of ``axi`` (``prefix`` is ``"ar"`` or ``"aw"``).

    ``load`` (only while ``words_left`` is 0) takes a command of ``words`` bus words from the
    word of byte address ``addr``; then a burst of ``beats`` words is issued each cycle in
    which words are left, fewer than ``outstanding`` bursts are in flight (or ``free``, one of
    them completing this cycle, frees a slot), the channel register is empty or being taken,
    and ``room`` (the caller's own condition) holds. ID 0, full-width INCR bursts; the
    channel's valid and payload hold until its ready (AXI A3.2.1). A burst's address and
    length are registered: it transfers the cycle after ``issue`` at the earliest."""
    B, SZ, N = cfg.lanes, cfg.size, cfg.outstanding
    per_4k = AXI_BOUNDARY // B
    ch = {name: getattr(axi, prefix + name)
          for name in ("id", "addr", "len", "size", "burst", "valid", "ready")}

    word_addr = Signal(cfg.addr_width - SZ, name=f"{prefix}_word_addr")     # next burst's
    words_left = Signal(range(cfg.max_words + 1), name=f"{prefix}_words_left")
    in_flight = Signal(range(N + 1), name=f"{prefix}_in_flight")
    with m.If(load):
        m.d.sync += [word_addr.eq(addr[SZ:]), words_left.eq(words)]

    to_4k = per_4k - (word_addr & (per_4k - 1))
    beats = Signal(range(max(cfg.max_burst, per_4k) + 1), name=f"{prefix}_beats")
    capped = Mux(words_left > cfg.max_burst, cfg.max_burst, words_left)
    m.d.comb += beats.eq(Mux(to_4k < capped, to_4k, capped))
    issue = Signal(name=f"{prefix}_issue")
    m.d.comb += issue.eq((words_left != 0) & ((in_flight != N) | free)
                         & (~ch["valid"] | ch["ready"]) & room)
    m.d.comb += [ch["id"].eq(0), ch["size"].eq(SZ), ch["burst"].eq(INCR)]
    with m.If(issue):
        m.d.sync += [ch["addr"].eq(word_addr << SZ), ch["len"].eq(beats - 1),
                     ch["valid"].eq(1), word_addr.eq(word_addr + beats),
                     words_left.eq(words_left - beats)]
    with m.Elif(ch["ready"]):
        m.d.sync += ch["valid"].eq(0)
    m.d.sync += in_flight.eq(in_flight + issue - free)
    return Issuer(words_left, beats, issue, in_flight)
