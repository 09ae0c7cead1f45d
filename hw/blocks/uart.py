"""An 8N1 UART with stream ports: the host link of the board tops.

No parity, one stop bit, least significant bit first, ``divisor`` clock cycles per bit. The
receiver samples the middle of each bit after a two-flip-flop synchroniser; the transmitter
sends back to back with no idle bit between bytes.
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ..config import BlockConfig, ConfigError, Range, spec

__all__ = ["UartConfig", "UartRx", "UartTx", "Uart", "uart_divisor"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class UartConfig(BlockConfig):
    """Bit timing of the UART."""

    divisor: int = spec(104, Range(4, 1 << 20),
                        "clock cycles per bit (clock frequency / baud rate)")


def uart_divisor(clk_hz, baud):
    """``round(clk_hz / baud)``, refused when the rounding error exceeds 2 % (a receiver
    sampling mid-bit tolerates about 4 % over a 10-bit frame, shared by both ends)."""
    if baud <= 0 or clk_hz <= 0:
        raise ConfigError(f"baud={baud!r} and clock {clk_hz!r} Hz must be positive")
    divisor = round(clk_hz / baud)
    if divisor < 4:
        raise ConfigError(f"baud={baud} is too fast for a {clk_hz / 1e6:g} MHz clock; allowed: "
                          f"<= {int(clk_hz // 4)}")
    error = abs(clk_hz / divisor - baud) / baud
    if error > 0.02:
        raise ConfigError(f"baud={baud} is {error:.1%} off at {clk_hz / 1e6:g} MHz (divisor "
                          f"{divisor}); allowed: within 2%")
    return divisor


class UartRx(wiring.Component):
    """UART receiver.

    Members
    -------
    rx : In(1)
        The serial line (idle high); synchronised inside.
    o : Out(stream.Signature(8))
        Received bytes. A byte stays offered until taken.
    overflow : Out(1)
        Pulses for one cycle when a byte is complete while the previous one is still untaken;
        the new byte is dropped (a serial line cannot be stalled).
    framing_error : Out(1)
        Pulses for one cycle when a stop bit is low; that byte is dropped.

    Latency: a byte is offered 9.5 bit times after its start edge (plus 2 cycles of
    synchroniser).
    """

    def __init__(self, cfg: UartConfig = UartConfig()):
        self.cfg = cfg
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "overflow": Out(1),
            "framing_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        div = self.cfg.divisor
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(div + div // 2 + 1))
        bit = Signal(range(10))
        shreg = Signal(8)

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"), m.If(~rx):
                # Wait to the middle of the start bit, then check it is still low.
                m.d.sync += timer.eq(div // 2 - 1)
                m.next = "START"
            with m.State("START"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(rx):
                        m.next = "IDLE"          # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [timer.eq(div - 1), bit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(div - 1), shreg.eq(Cat(shreg[1:], rx)),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(~rx):
                        m.d.comb += self.framing_error.eq(1)
                        # Wait for the line to return high before looking for a start bit.
                        m.next = "BREAK"
                    with m.Else():
                        with m.If(self.o.valid & ~self.o.ready):
                            m.d.comb += self.overflow.eq(1)
                        with m.Else():
                            m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                        m.next = "IDLE"
            with m.State("BREAK"), m.If(rx):
                m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """UART transmitter.

    Members
    -------
    i : In(stream.Signature(8))
        Bytes to send; one is taken when the line is free (the transfer starts its start bit),
        so back-to-back bytes leave with no idle time between them.
    tx : Out(1)
        The serial line (idle high).

    Initiation interval: 10 bit times per byte.
    """

    def __init__(self, cfg: UartConfig = UartConfig()):
        self.cfg = cfg
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        div = self.cfg.divisor
        timer = Signal(range(div))
        frame = Signal(10, init=0x3FF)    # start, 8 data bits LSB first, stop; shifted out
        left = Signal(range(11))
        m.d.comb += [self.tx.eq(frame[0]), self.i.ready.eq(left == 0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [frame.eq(Cat(0, self.i.payload, 1)), left.eq(10), timer.eq(div - 1)]
        with m.Elif(left != 0):
            m.d.sync += timer.eq(timer - 1)
            with m.If(timer == 0):
                m.d.sync += [timer.eq(div - 1), frame.eq((frame >> 1) | (1 << 9)),
                             left.eq(left - 1)]
        return m


class Uart(wiring.Component):
    """Receiver and transmitter sharing one bit timing.

    Members
    -------
    rx : In(1); tx : Out(1)
        The serial lines.
    o : Out(stream.Signature(8))
        Received bytes (see :class:`UartRx`).
    i : In(stream.Signature(8))
        Bytes to send (see :class:`UartTx`).
    overflow, framing_error : Out(1)
        From the receiver.
    """

    def __init__(self, cfg: UartConfig = UartConfig()):
        self.cfg = cfg
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "o": Out(stream.Signature(8)),
            "i": In(stream.Signature(8)),
            "overflow": Out(1),
            "framing_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = UartRx(self.cfg)
        m.submodules.tx = tx = UartTx(self.cfg)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx),
                     self.overflow.eq(rx.overflow), self.framing_error.eq(rx.framing_error)]
        wiring.connect(m, wiring.flipped(self.i), tx.i)
        wiring.connect(m, rx.o, wiring.flipped(self.o))
        return m
