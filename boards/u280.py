"""Xilinx Alveo U280 (xcu280-fsvh2892-2L-e), the card of the paper's measurements.

Pins are from Xilinx's U280 master XDC (alveo-u280-xdc, v2.04; the same pins appear in the
public constraint files of litex-boards and of BSC's U280 projects):

* ``sysclk``: SYSCLK0, 100 MHz LVDS on BJ43 (P) / BJ44 (N), bank 65; ``sysclk`` 1 is SYSCLK1
  on BH6 / BJ6.
* ``uart``: the FPGA UART of the FT4232 USB bridge, port 3 of 4 ("USB_UART"), bank 75,
  LVCMOS18: ``rx`` (FT4232 → FPGA) on A28, ``tx`` (FPGA → FT4232) on B33.
* ``rst``: CPU_RESET_FPGA on L30, active low (a push button also wired to the satellite
  controller). Not the default reset: the platform's power-on reset is enough for the host
  link, and this line is shared with the satellite controller.
* ``hbm_cattrip``: D32. UG1314 requires it driven: the card's satellite controller powers the
  card down when it floats high. A design without the HBM IP must drive it low, which
  :class:`~llmloom.boards.top.BoardTop` does.

Limitations, by design for now: no HBM (the HBM stacks need Vivado's HBM IP and its AXI
ports; our blocks keep weights on chip), no PCIe/XDMA shell (the host link is the UART), no
DDR4. A build needs Vivado: ``llmloom build --board u280`` writes the project (TCL, XDC,
Verilog, ``build_top.sh``) but cannot run it with open tools. The pin list has not been tried
on a card by us.
"""

from __future__ import annotations

from amaranth.build import Attrs, Clock, DiffPairs, Pins, PinsN, Resource
from amaranth.vendor import XilinxPlatform
from amaranth_boards.resources import UARTResource

__all__ = ["AlveoU280Platform"]


class AlveoU280Platform(XilinxPlatform):
    """The Alveo U280 as an Amaranth platform (Vivado toolchain)."""

    device = "xcu280"
    package = "fsvh2892"
    speed = "2L-e"
    default_clk = "sysclk"
    resources = [
        Resource("sysclk", 0, DiffPairs("BJ43", "BJ44", dir="i"), Clock(100e6),
                 Attrs(IOSTANDARD="LVDS")),
        Resource("sysclk", 1, DiffPairs("BH6", "BJ6", dir="i"), Clock(100e6),
                 Attrs(IOSTANDARD="LVDS")),
        Resource("rst", 0, PinsN("L30", dir="i"), Attrs(IOSTANDARD="LVCMOS18")),
        UARTResource(0, rx="A28", tx="B33", attrs=Attrs(IOSTANDARD="LVCMOS18")),
        Resource("hbm_cattrip", 0, Pins("D32", dir="o"),
                 Attrs(IOSTANDARD="LVCMOS18", PULLTYPE="PULLDOWN")),
    ]
    connectors = []

    #: XDC lines every U280 design needs (configuration from the master XDC).
    CONFIG_XDC = "\n".join([
        "set_property CONFIG_VOLTAGE 1.8 [current_design]",
        "set_property BITSTREAM.CONFIG.CONFIGFALLBACK Enable [current_design]",
        "set_property BITSTREAM.GENERAL.COMPRESS TRUE [current_design]",
        "set_property CONFIG_MODE SPIx4 [current_design]",
        "set_property BITSTREAM.CONFIG.SPI_BUSWIDTH 4 [current_design]",
        "set_property BITSTREAM.CONFIG.CONFIGRATE 85.0 [current_design]",
        "set_property BITSTREAM.CONFIG.EXTMASTERCCLK_EN disable [current_design]",
        "set_property BITSTREAM.CONFIG.SPI_FALL_EDGE YES [current_design]",
        "set_property BITSTREAM.CONFIG.UNUSEDPIN Pullup [current_design]",
        "set_property BITSTREAM.CONFIG.SPI_32BIT_ADDR Yes [current_design]",
    ])

    def prepare(self, elaboratable, name="top", **kwargs):
        extra = kwargs.pop("add_constraints", "")
        return super().prepare(elaboratable, name,
                               add_constraints="\n".join(filter(None, [self.CONFIG_XDC, extra])),
                               **kwargs)
