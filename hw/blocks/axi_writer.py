"""An AXI4 write master that writes a stream of row beats to a range of off-chip memory: the
path by which a layer's new K and V rows reach its KV cache region when the cache lives in
AXI memory (:mod:`llmloom.hw.layers.fetched`). The mirror of :mod:`.axi_reader`: the same
config fields, burst rules and command (:mod:`.axi`)."""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..stream import row_layout
from .axi import OKAY, AxiMasterConfig, bursts, command_layout, issue_bursts

__all__ = ["AxiWriterConfig", "AxiWriteSignature", "AxiWriter"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class AxiWriterConfig(AxiMasterConfig):
    """An AXI4 write master (AW, W and B channels, INCR bursts of full-width beats, one ID)
    that writes ``bytes`` bytes at a word-aligned ``addr`` from beats of ``data_width/8``
    byte lanes (the fields: :class:`~.axi.AxiMasterConfig`; ``outstanding`` counts bursts
    whose write response has not come)."""

    #: Cycles from a command's transfer to its first burst's AW transfer (a ready slave), and
    #: to its first W beat's: the command is registered, the AW computed into the AW
    #: registers and the burst queued for the W side, whose output register the first data
    #: beat enters the cycle after.
    ISSUE = 2
    W_ISSUE = 3

    def bursts(self, addr, nbytes):
        """The bursts of one command (:func:`~.axi.bursts` from the word at or below
        ``addr``)."""
        return bursts(addr - addr % self.lanes, nbytes, self.lanes, self.max_burst)

    def strobes(self, nbytes):
        """WSTRB of a command's last beat: its first ``nbytes mod lanes`` bytes (all when
        that is 0); every other beat writes all its bytes."""
        tail = nbytes % self.lanes or self.lanes
        return (1 << tail) - 1


def AxiWriteSignature(cfg):
    """The AW, W and B channels of an AXI4 master (directions as seen from the master); ports
    come out as ``axi__awaddr``, ``axi__wdata``, ``axi__bresp``... (the AXI names)."""
    return wiring.Signature({
        "awid": Out(cfg.id_width), "awaddr": Out(cfg.addr_width), "awlen": Out(8),
        "awsize": Out(3), "awburst": Out(2), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(cfg.data_width), "wstrb": Out(cfg.lanes), "wlast": Out(1),
        "wvalid": Out(1), "wready": In(1),
        "bid": In(cfg.id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
    })


class AxiWriter(wiring.Component):
    """Writes byte ranges over AXI4 from a stream of beats, ``lanes`` bytes each.

    Parameters
    ----------
    cfg : AxiWriterConfig

    Members
    -------
    cmd : In(stream.Signature(command_layout(cfg)))
        Commands, one beat each: ``addr`` (word aligned) and ``bytes`` (0 is taken and does
        nothing). A command is taken once the previous one's last AW is out, so consecutive
        commands' bursts overlap (up to ``outstanding`` unacknowledged in all).
    data : In(stream.Signature(row_layout(signed(8), lanes)))
        The bytes, ``ceil(bytes / lanes)`` beats per command in command order, lane ``j`` of
        beat ``b`` written to ``addr + b·lanes + j``; the last beat's lanes past ``bytes`` are
        not written (WSTRB low). ``last`` and ``end`` are not read (beats are counted). A beat
        is taken only once its burst's AW has been issued.
    axi : Out(AxiWriteSignature(cfg))
        The AXI4 write channels: INCR bursts of full-width beats (AWSIZE = log2 lanes) of at
        most ``max_burst`` beats, none crossing a 4 KB boundary, ID 0, at most
        ``outstanding`` without their write response; BREADY always high.
    busy : Out(1)
        A command was taken whose writes are not all acknowledged (their B response): while
        it is high, a read of the range may see old bytes.
    error : Out(1)
        Set by a non-OKAY BRESP, or by a command whose ``addr`` is not word aligned (then
        written from the word-aligned address below); held until reset.

    Latency and rate: the first AW transfers ``ISSUE`` cycles after the command and the first
    W beat ``W_ISSUE`` cycles after it (to a ready slave, the data offered); then one W beat
    per cycle while the slave takes them, across bursts and commands. Backpressure: AWVALID
    and WVALID hold, with their payloads, until AWREADY / WREADY (AXI A3.2.1); the data input
    waits (``ready`` low) while the W register is full and not taken, or no burst is issued
    for it. Nothing is buffered beyond one W register and the queue of ``outstanding`` burst
    descriptors (beats, whether the burst ends a command, that beat's WSTRB).
    """

    def __init__(self, cfg: AxiWriterConfig):
        if not isinstance(cfg, AxiWriterConfig):
            self._MustUse__silence = True
            raise TypeError(f"cfg must be an AxiWriterConfig, not {cfg!r}")
        self.cfg = cfg
        super().__init__({
            "cmd": In(stream.Signature(command_layout(cfg))),
            "data": In(stream.Signature(row_layout(signed(8), cfg.lanes))),
            "axi": Out(AxiWriteSignature(cfg)),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        B, SZ, N = cfg.lanes, cfg.size, cfg.outstanding
        axi, cmd, d = self.axi, self.cmd, self.data

        tail = Signal(B)                                 # WSTRB of the command's last beat
        # A burst for the W side: its beats, and whether it ends its command (then its last
        # beat's strobes are `strb`).
        desc = data.StructLayout({"beats": range(cfg.max_burst + 1), "final": 1,
                                  "strb": B})
        m.submodules.queue = queue = fifo.SyncFIFO(width=desc.size, depth=N)

        # ---- commands → write address channel --------------------------------------------------
        b_fire = axi.bvalid & axi.bready
        take = cmd.valid & cmd.ready
        nbytes = cmd.payload.bytes
        # a burst is issued only with room for its descriptor in the W side's queue
        aw = issue_bursts(m, cfg, axi, "aw", load=take, addr=cmd.payload.addr,
                          words=(nbytes + (B - 1)) >> SZ, free=b_fire, room=queue.w_rdy)
        m.d.comb += cmd.ready.eq(aw.words_left == 0)
        with m.If(take):
            rem = nbytes[:SZ] if SZ else 0
            m.d.sync += tail.eq(Cat(*((rem == 0) | (k < rem) for k in range(B))))
            if SZ:
                with m.If((cmd.payload.addr[:SZ] != 0) & (nbytes != 0)):
                    m.d.sync += self.error.eq(1)
        entry = Signal(desc)
        m.d.comb += [entry.beats.eq(aw.beats), entry.final.eq(aw.beats == aw.words_left),
                     entry.strb.eq(tail), queue.w_data.eq(entry), queue.w_en.eq(aw.issue)]

        # ---- data → write data register ------------------------------------------------------
        head = Signal(desc)
        m.d.comb += head.eq(queue.r_data)
        beat = Signal(range(max(cfg.max_burst, 2)))
        advance = ~axi.wvalid | axi.wready
        m.d.comb += d.ready.eq(advance & queue.r_rdy)
        at_last = beat == head.beats - 1
        with m.If(axi.wvalid & axi.wready):
            m.d.sync += axi.wvalid.eq(0)
        with m.If(d.valid & d.ready):
            m.d.sync += [axi.wdata.eq(d.payload.data.as_value()), axi.wvalid.eq(1),
                         axi.wlast.eq(at_last),
                         axi.wstrb.eq(Mux(at_last & head.final, head.strb, (1 << B) - 1)),
                         beat.eq(Mux(at_last, 0, beat + 1))]
            m.d.comb += queue.r_en.eq(at_last)

        # ---- write responses -----------------------------------------------------------------
        m.d.comb += axi.bready.eq(1)
        with m.If(b_fire & (axi.bresp != OKAY)):
            m.d.sync += self.error.eq(1)
        m.d.comb += self.busy.eq((aw.words_left != 0) | (aw.in_flight != 0))
        return m

