"""The host-link core: the GEMM driven from a UART byte stream.

The portable core of every board top (:mod:`llmloom.boards.top` adds only clock, reset and
pins). It implements the protocol of :mod:`llmloom.flows.host`: weights go straight into the
GEMM's ``weight`` stream; activations are stored on chip first and then streamed into ``act``
at one beat per cycle, with every output beat stored on chip as it comes, so that the cycle
count measures the GEMM and not the serial line.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..hw.blocks.gemm import Gemm, GemmConfig
from ..hw.blocks.uart import Uart, UartConfig
from .protocol import (
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
)

__all__ = ["HostLink"]


class HostLink(wiring.Component):
    """A :class:`~llmloom.hw.blocks.gemm.Gemm` behind a UART command protocol.

    Parameters
    ----------
    cfg : GemmConfig
    max_rows : int
        Activation rows (M) held on chip, and output rows stored.
    uart : UartConfig
        Bit timing (``divisor`` = clock frequency / baud rate).

    Members
    -------
    rx : In(1)
        Serial line from the host.
    tx : Out(1)
        Serial line to the host.
    busy : Out(1)
        A command is being served (for a LED).
    error : Out(1)
        Sticky: a received byte was lost (overflow) or had no stop bit.

    Storage: ``max_rows × k/lanes`` activation beats and ``max_rows × n_tiles`` output beats.
    The cycle count is 32 bits and wraps.
    """

    def __init__(self, cfg: GemmConfig, *, max_rows=4, uart=None):
        self.cfg = cfg
        self.protocol = LinkGeometry(cfg, max_rows)
        self.max_rows = max_rows
        self.uart_cfg = uart if uart is not None else UartConfig()
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        cfg, proto = self.cfg, self.protocol
        m = Module()
        m.submodules.gemm = gemm = Gemm(cfg)
        m.submodules.uart = uart = Uart(self.uart_cfg)
        m.d.comb += [uart.rx.eq(self.rx), self.tx.eq(uart.tx)]
        with m.If(uart.overflow | uart.framing_error):
            m.d.sync += self.error.eq(1)

        a_layout = data.Layout.cast(proto.act_layout)
        w_layout = data.Layout.cast(proto.weight_layout)
        o_layout = data.Layout.cast(proto.out_layout)
        AB, WB, OB = proto.act_bytes, proto.weight_bytes, proto.out_bytes
        a_depth = self.max_rows * cfg.k_beats
        o_depth = self.max_rows * cfg.n_tiles

        m.submodules.amem = amem = memory.Memory(shape=a_layout.size, depth=a_depth, init=[])
        a_wr, a_rd = amem.write_port(), amem.read_port()
        m.submodules.omem = omem = memory.Memory(shape=o_layout.size, depth=o_depth, init=[])
        o_wr, o_rd = omem.write_port(), omem.read_port()

        rx_byte = uart.o.payload
        w_sr = Signal(8 * WB)
        a_sr = Signal(8 * AB)
        nbyte = Signal(range(max(AB, WB)))
        tx_sr = Signal(8 * max(OB, IDENT_BYTES, CYCLE_BYTES))
        tx_left = Signal(range(max(OB, IDENT_BYTES, CYCLE_BYTES) + 1))
        back_to_read = Signal()
        a_addr = Signal(range(a_depth))
        n_act = Signal(range(a_depth + 1))
        feed_addr = Signal(range(a_depth + 1))
        o_addr = Signal(range(o_depth))
        n_out = Signal(range(o_depth + 1))
        rd_addr = Signal(range(o_depth + 1))
        cycles = Signal(32)
        counting = Signal()
        started = Signal()

        def send(value, nbytes, then_read=False):
            return [tx_sr.eq(value), tx_left.eq(nbytes), back_to_read.eq(then_read)]

        ident = int.from_bytes(proto.ident(), "little")
        a_end = a_sr[a_layout["end"].offset]

        # Activation feeder: the read port's output register is the stream register (as in
        # the GEMM's drain), so a beat stays put while the GEMM stalls.
        running = Signal()
        advance = ~gemm.act.valid | gemm.act.ready
        m.d.comb += [
            a_rd.addr.eq(feed_addr), a_rd.en.eq(advance),
            gemm.act.payload.eq(a_rd.data),
            a_wr.addr.eq(a_addr), a_wr.data.eq(a_sr[:a_layout.size]),
            gemm.weight.payload.eq(w_sr[:w_layout.size]),
            o_wr.addr.eq(o_addr), o_wr.data.eq(gemm.o.payload),
            o_rd.addr.eq(rd_addr),
            uart.i.payload.eq(tx_sr[:8]),
        ]
        with m.If(running & advance):
            m.d.sync += gemm.act.valid.eq(feed_addr < n_act)
            with m.If(feed_addr < n_act):
                m.d.sync += feed_addr.eq(feed_addr + 1)

        act_taken = gemm.act.valid & gemm.act.ready
        out_taken = gemm.o.valid & gemm.o.ready
        with m.If(running & act_taken & ~started):
            m.d.sync += [cycles.eq(1), counting.eq(1), started.eq(1)]
        with m.Elif(counting):
            m.d.sync += cycles.eq(cycles + 1)

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += uart.o.ready.eq(1)
                with m.If(uart.o.valid), m.Switch(rx_byte):
                    with m.Case(CMD_WEIGHTS):
                        m.d.sync += nbyte.eq(0)
                        m.next = "LOAD_W"
                    with m.Case(CMD_INPUTS):
                        m.d.sync += [nbyte.eq(0), a_addr.eq(0)]
                        m.next = "LOAD_A"
                    with m.Case(CMD_START):
                        m.d.sync += [feed_addr.eq(0), o_addr.eq(0), started.eq(0),
                                     counting.eq(0), cycles.eq(0)]
                        m.next = "RUN"
                    with m.Case(CMD_READ):
                        m.d.sync += rd_addr.eq(0)
                        with m.If(n_out != 0):
                            m.next = "READ"
                    with m.Case(CMD_CYCLES):
                        m.d.sync += send(cycles, CYCLE_BYTES)
                        m.next = "SEND"
                    with m.Case(CMD_IDENT):
                        m.d.sync += send(ident, IDENT_BYTES)
                        m.next = "SEND"
                    with m.Default():
                        m.d.sync += send(NAK, 1)
                        m.next = "SEND"

            with m.State("LOAD_W"):
                m.d.comb += uart.o.ready.eq(1)
                with m.If(uart.o.valid):
                    m.d.sync += [w_sr.eq(Cat(w_sr[8:], rx_byte)), nbyte.eq(nbyte + 1)]
                    with m.If(nbyte == WB - 1):
                        m.next = "PUSH_W"
            with m.State("PUSH_W"):
                # The beat register does not change here, so the stream rules hold.
                m.d.comb += gemm.weight.valid.eq(1)
                with m.If(gemm.weight.ready):
                    m.d.sync += nbyte.eq(0)
                    with m.If(gemm.weight.payload.end):
                        m.d.sync += send(ACK_WEIGHTS, 1)
                        m.next = "SEND"
                    with m.Else():
                        m.next = "LOAD_W"

            with m.State("LOAD_A"):
                m.d.comb += uart.o.ready.eq(1)
                with m.If(uart.o.valid):
                    m.d.sync += [a_sr.eq(Cat(a_sr[8:], rx_byte)), nbyte.eq(nbyte + 1)]
                    with m.If(nbyte == AB - 1):
                        m.next = "STORE_A"
            with m.State("STORE_A"):
                m.d.comb += a_wr.en.eq(1)
                m.d.sync += nbyte.eq(0)
                with m.If(a_end | (a_addr == a_depth - 1)):
                    # A full buffer ends the tensor too: the host refuses M > max_rows, and a
                    # stray byte stream must not write past the memory.
                    m.d.sync += [n_act.eq(a_addr + 1), send(ACK_INPUTS, 1)]
                    m.next = "SEND"
                with m.Else():
                    m.d.sync += a_addr.eq(a_addr + 1)
                    m.next = "LOAD_A"

            with m.State("RUN"):
                m.d.comb += [running.eq(1), gemm.o.ready.eq(1)]
                with m.If(out_taken):
                    m.d.comb += o_wr.en.eq(1)
                    with m.If(o_addr != o_depth - 1):
                        m.d.sync += o_addr.eq(o_addr + 1)
                    with m.If(gemm.o.payload.end):
                        m.d.sync += [counting.eq(0), n_out.eq(o_addr + 1),
                                     send(ACK_START, 1)]
                        m.next = "SEND"

            with m.State("READ"):
                # One cycle for the read port to present omem[rd_addr].
                m.next = "READ_LOAD"
            with m.State("READ_LOAD"):
                m.d.sync += [send(o_rd.data, OB, then_read=rd_addr + 1 < n_out),
                             rd_addr.eq(rd_addr + 1)]
                m.next = "SEND"

            with m.State("SEND"):
                m.d.comb += uart.i.valid.eq(1)
                with m.If(uart.i.ready):
                    m.d.sync += [tx_sr.eq(tx_sr >> 8), tx_left.eq(tx_left - 1)]
                    with m.If(tx_left == 1):
                        with m.If(back_to_read):
                            m.next = "READ"
                        with m.Else():
                            m.next = "IDLE"

        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
