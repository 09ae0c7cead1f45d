"""What the AXI4 masters (:mod:`.axi_reader`, :mod:`.axi_writer`) share: the AMBA rules their
bursts obey, the config fields of a master (bus, addresses, bursts, how many in flight), and
the command a sequencer queues ("``bytes`` bytes at ``addr``"). One home for each fact, so the
read and write paths, their timing models and their tests cannot disagree about a burst."""

from __future__ import annotations

import dataclasses

from amaranth.lib import data

from ..config import BlockConfig, Choice, ConfigError, Range, spec

__all__ = ["AXI_BOUNDARY", "INCR", "OKAY", "bursts", "AxiMasterConfig", "command_layout"]

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
