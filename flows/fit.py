"""What fits: the largest GEMM array each open-toolchain board takes, found by synthesis.

The design measured is the board's portable core, :class:`~llmloom.boards.hostlink.HostLink`
(the GEMM plus UART, on-chip activation and output buffers; four pins, so no measurement
wrapper is needed), with the board's default ``k``, ``n``, ``lanes`` and ``max_rows``. An array
fits when it places and routes on the board's FPGA and its Fmax reaches the board clock.

Candidates are ``rows × cols`` arrays (``rows <= cols``, at most twice as wide as tall) whose
multipliers fit the device, one per MAC; they are tried from the most MACs down, so the first
that fits is the answer and at most a few synthesis runs are needed.
"""

from __future__ import annotations

import dataclasses

from ..boards.hostlink import HostLink
from ..boards.platforms import get_board
from ..hw.blocks.uart import UartConfig, uart_divisor

__all__ = ["FitResult", "candidates", "largest_gemm", "fits_table"]


@dataclasses.dataclass
class FitResult:
    board: str
    target: str
    rows: int | None
    cols: int | None
    config: dict | None
    result: dict | None          # the synthesis result of the winner
    tried: list                  # [(rows, cols, fits, fmax_mhz, reason)]
    clock_mhz: float

    @property
    def macs(self):
        return (self.rows or 0) * (self.cols or 0)


def candidates(dsp_capacity, max_side=64):
    """``(rows, cols)`` with ``rows <= cols <= 2 rows`` and ``rows × cols <= dsp_capacity``,
    most MACs first (squarer first among equals)."""
    out = [(r, c) for r in range(1, max_side + 1) for c in range(r, min(2 * r, max_side) + 1)
           if r * c <= dsp_capacity]
    return sorted(out, key=lambda rc: (-rc[0] * rc[1], rc[1] - rc[0]))


def largest_gemm(board, *, max_tries=6, progress=None, on_try=None):
    """The largest GEMM array that fits ``board`` (an open-toolchain board name).

    Returns a :class:`FitResult`; ``rows`` is ``None`` when none of the ``max_tries`` largest
    candidates fits (then the next ones are smaller: raise ``max_tries``).
    """
    from .synth import get_target, synthesize

    spec = get_board(board)
    if not spec.open_toolchain:
        raise ValueError(f"board {board!r} needs vendor tools; what fits is searched on the "
                         "open-toolchain boards only (ulx3s-85f, icebreaker)")
    target = get_target(spec.target)
    platform = spec.platform()
    clk_hz = platform.default_clk_frequency
    uart = UartConfig(divisor=uart_divisor(clk_hz, 115200))
    tried = []
    for rows, cols in candidates(target.capacity["dsp"])[:max_tries]:
        cfg = spec.design.replace(rows=rows, cols=cols)
        link = HostLink(cfg, max_rows=spec.max_rows, uart=uart)
        res = synthesize(link, target.name, clock_mhz=clk_hz / 1e6, progress=progress)
        fast_enough = res.fmax_mhz is not None and res.fmax_mhz >= clk_hz / 1e6
        reason = res.raw.get("pnr_error") or ("" if fast_enough else
                                              f"Fmax {res.fmax_mhz} < {clk_hz / 1e6:g} MHz")
        tried.append((rows, cols, bool(res.fits and fast_enough), res.fmax_mhz, reason))
        if on_try:
            on_try(tried[-1])
        if res.fits and fast_enough:
            return FitResult(board=spec.name, target=target.name, rows=rows, cols=cols,
                             config=cfg.to_dict(), result=res.to_dict(raw=False), tried=tried,
                             clock_mhz=clk_hz / 1e6)
    return FitResult(board=spec.name, target=target.name, rows=None, cols=None, config=None,
                     result=None, tried=tried, clock_mhz=clk_hz / 1e6)


def fits_table(results):
    """A Markdown table of :func:`largest_gemm` results (for the README)."""
    lines = ["| board | FPGA | largest GEMM array | MACs/cycle | LUT | FF | DSP | BRAM | "
             "Fmax (board clock) |", "|---|---|---|---|---|---|---|---|---|"]
    for f in results:
        if f.rows is None:
            lines.append(f"| {f.board} | {f.target} | none of the tried sizes | | | | | | |")
            continue
        r, c = f.result, f.config
        cap = r["utilization"]
        lines.append(
            f"| {f.board} | {f.target} | {f.rows}×{f.cols} (k={c['k']}, n={c['n']}) | "
            f"{f.macs} | {r['lut']} ({cap['lut']:.0%}) | {r['ff']} ({cap['ff']:.0%}) | "
            f"{r['dsp']} ({cap['dsp']:.0%}) | {r['bram']} ({cap['bram']:.0%}) | "
            f"{r['fmax_mhz']:.1f} MHz ({f.clock_mhz:g} MHz) |")
    return "\n".join(lines)
