"""The byte codes of the board host link, shared by the hardware (:mod:`.hostlink`) and the
host software (:mod:`llmloom.flows.host`, which documents the protocol)."""

import dataclasses

from amaranth.hdl import signed
from amaranth.lib import data

from ..hw.blocks.gemm_config import GemmConfig
from ..hw.stream import row_layout

__all__ = ["LinkGeometry", "beat_bytes", "CMD_IDENT", "CMD_WEIGHTS", "CMD_INPUTS", "CMD_START",
           "CMD_READ", "CMD_CYCLES", "ACK_WEIGHTS", "ACK_INPUTS", "ACK_START", "NAK",
           "IDENT_MAGIC", "IDENT_BYTES", "CYCLE_BYTES"]

CMD_IDENT, CMD_WEIGHTS, CMD_INPUTS, CMD_START, CMD_READ, CMD_CYCLES = (
    ord(c) for c in "IWASRC")
ACK_WEIGHTS, ACK_INPUTS, ACK_START, NAK = (ord(c) for c in "was?")
IDENT_MAGIC = b"LM"
IDENT_BYTES = 16
CYCLE_BYTES = 4


def beat_bytes(layout):
    """Bytes per beat of a stream whose payload is ``layout``."""
    return -(-data.Layout.cast(layout).size // 8)


@dataclasses.dataclass(frozen=True)
class LinkGeometry:
    """The shapes of the link for a GEMM of config ``cfg`` with room for ``max_rows``
    activation rows on chip: what the hardware and the host software must agree on."""

    cfg: GemmConfig
    max_rows: int

    def __post_init__(self):
        if not isinstance(self.max_rows, int) or not 1 <= self.max_rows <= 65535:
            raise ValueError(f"max_rows={self.max_rows!r} is out of range; allowed: 1..65535")

    # -- layouts --------------------------------------------------------------------------------
    @property
    def act_layout(self):
        return row_layout(signed(self.cfg.a_width), self.cfg.lanes)

    @property
    def weight_layout(self):
        return row_layout(signed(self.cfg.w_width), self.cfg.cols)

    @property
    def out_layout(self):
        return row_layout(signed(self.cfg.OUT_WIDTH), self.cfg.cols)

    @property
    def act_bytes(self):
        return beat_bytes(self.act_layout)

    @property
    def weight_bytes(self):
        return beat_bytes(self.weight_layout)

    @property
    def out_bytes(self):
        return beat_bytes(self.out_layout)

    # -- requests -------------------------------------------------------------------------------
    def ident(self):
        """The 16 bytes the board answers to ``I``."""
        c = self.cfg
        return (IDENT_MAGIC + bytes([c.rows, c.cols, c.lanes, c.w_width])
                + c.k.to_bytes(4, "little") + c.n.to_bytes(4, "little")
                + self.max_rows.to_bytes(2, "little"))

