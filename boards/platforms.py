"""The boards we build for, by name: platform, toolchain, synthesis target and default design.

Open-toolchain boards (Yosys + nextpnr through YoWASP) get a bitstream from ``llmloom build``;
vendor boards get a complete Vivado project to run where Vivado is installed.
"""

from __future__ import annotations

import dataclasses

from ..hw.blocks.gemm_config import GemmConfig

__all__ = ["Board", "BOARDS", "get_board"]


@dataclasses.dataclass(frozen=True)
class Board:
    """A board: how to make its platform and what to put on it by default.

    ``target`` is the :data:`llmloom.flows.synth_targets.TARGETS` entry of its FPGA (``None``
    when we have no open synthesis for the family); ``design`` and ``max_rows`` are the GEMM and the
    on-chip activation rows of the default board design, sized to fit with room to spare.
    """

    name: str
    platform_path: str          # "module:Class", imported on use (vendor imports are slowish)
    open_toolchain: bool
    target: str | None
    design: GemmConfig
    max_rows: int
    summary: str

    def platform(self, **kwargs):
        import importlib
        module, cls = self.platform_path.split(":")
        return getattr(importlib.import_module(module), cls)(**kwargs)


BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", True, "ecp5-85f",
          GemmConfig(rows=4, cols=4, k=64, n=64, lanes=4), 16,
          "Radiona ULX3S, Lattice ECP5 LFE5U-85F, 25 MHz, FTDI UART"),
    Board("icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform", True, "ice40-up5k",
          GemmConfig(rows=2, cols=2, k=16, n=16, lanes=4), 4,
          "1BitSquared iCEBreaker, Lattice iCE40UP5K, 12 MHz, FTDI UART"),
    Board("arty-a7-100t", "amaranth_boards.arty_a7:ArtyA7_100Platform", False, None,
          GemmConfig(rows=8, cols=8, k=64, n=64, lanes=8), 16,
          "Digilent Arty A7-100T, Xilinx xc7a100t, 100 MHz; Vivado project"),
    Board("u280", "llmloom.boards.u280:AlveoU280Platform", False, "xcup",
          GemmConfig(rows=16, cols=16, k=256, n=256, lanes=8), 64,
          "Xilinx Alveo U280, xcu280-fsvh2892-2L-e, 100 MHz, USB UART; Vivado project, no HBM"),
)}


def get_board(name):
    """The :class:`Board` called ``name``, or a one-line ``ValueError`` listing the valid
    ones."""
    if name not in BOARDS:
        raise ValueError(f"unknown board {name!r}; valid boards: {', '.join(BOARDS)}")
    return BOARDS[name]
