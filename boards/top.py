"""The board top: clock, reset and pins around the portable host-link core.

Only this file touches ``platform``; the core (:class:`~llmloom.boards.hostlink.HostLink`) is
what the tests simulate. The clock and reset come from the platform's default domain (its
default clock, a power-on reset, and the board's reset button where the platform names one);
the UART divisor follows from the platform's clock frequency.
"""

from __future__ import annotations

from amaranth.build import ResourceError
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import io

from ..hw.blocks.gemm_config import GemmConfig
from ..hw.blocks.uart import UartConfig, uart_divisor
from .hostlink import HostLink

__all__ = ["BoardTop"]


class BoardTop(Elaboratable):
    """The GEMM behind the UART host link, on a board.

    Parameters
    ----------
    cfg : GemmConfig
    max_rows : int
        Activation rows held on chip.
    baud : int
        UART rate; must be within 2 % of the board clock divided by an integer.

    Pins used: ``uart`` 0 (``rx``, ``tx``); ``led`` 0 shows a command in progress and ``led``
    1 a UART error, where the board has them; ``hbm_cattrip`` is driven low where the board has
    it (Alveo U280).
    """

    def __init__(self, cfg: GemmConfig, *, max_rows=4, baud=115200):
        self.cfg, self.max_rows, self.baud = cfg, max_rows, baud

    def link(self, clk_hz):
        """The core for a given clock (what :meth:`elaborate` instantiates)."""
        uart = UartConfig(divisor=uart_divisor(clk_hz, self.baud))
        return HostLink(self.cfg, max_rows=self.max_rows, uart=uart)

    def elaborate(self, platform):
        if platform is None:
            raise ValueError("BoardTop needs a board platform; simulate HostLink instead")
        link = self.link(platform.default_clk_frequency)   # a bad baud rate fails here
        m = Module()
        m.submodules.link = link

        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [link.rx.eq(rx_buf.i), tx_buf.o.eq(link.tx)]

        for index, signal in ((0, link.busy), (1, link.error)):
            try:
                led = platform.request("led", index, dir="-")
            except ResourceError:
                continue
            m.submodules[f"led{index}"] = buf = io.Buffer("o", led)
            m.d.comb += buf.o.eq(signal)

        try:
            cattrip = platform.request("hbm_cattrip", 0, dir="-")
        except ResourceError:
            pass
        else:
            m.submodules.cattrip = buf = io.Buffer("o", cattrip)
            m.d.comb += buf.o.eq(0)
        return m
