"""``llmloom build``: a board design to a bitstream (open toolchain) or a vendor project.

Open-toolchain boards (ULX3S, iCEBreaker) run Amaranth's own build script with the YoWASP
tools (``tool_env``), after warming the WebAssembly cache once. Boards that need Vivado (Arty
A7, Alveo U280) get the complete project Amaranth generates — Verilog, XDC, the TCL script and
``build_top.sh`` — to run where Vivado is installed.

Files appear in the output directory only when the whole build has succeeded: the build runs in
a temporary directory beside it and its files are moved in at the end.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ..boards.platforms import get_board
from ..boards.top import BoardTop
from ..hw.blocks.gemm_config import GemmConfig
from .userio import Outputs

__all__ = ["BuildResult", "build", "parse_nextpnr_fmax"]


@dataclasses.dataclass
class BuildResult:
    board: str
    out: str | None
    vendor: bool                  # True: a project for the vendor tools, nothing was run
    bitstream: str | None
    files: list
    seconds: float
    clock_mhz: float              # the board clock the design runs at
    fmax_mhz: float | None        # nextpnr's achieved Fmax of the board build
    design: dict
    max_rows: int
    baud: int
    next_step: str = ""
    plan: object = dataclasses.field(default=None, repr=False)

    def to_dict(self):
        d = dataclasses.asdict(self)
        d.pop("plan")
        d["seconds"] = round(d["seconds"], 2)
        return d


def parse_nextpnr_fmax(log):
    """The lowest final "Max frequency for clock" of a nextpnr log (the last report per clock
    is the post-route one), or ``None``."""
    found = {}
    for clock, mhz in re.findall(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz", log):
        found[clock] = float(mhz)
    return min(found.values()) if found else None


def build(board, cfg=None, out=None, *, do_build=True, max_rows=None, baud=115200,
          progress=None):
    """Build the host-link GEMM design for ``board``.

    Parameters
    ----------
    board : str
        A key of :data:`~llmloom.boards.platforms.BOARDS`.
    cfg : GemmConfig, optional
        The GEMM (default: the board's ``design``).
    out : path, optional
        Output directory (created). Required when ``do_build``.
    do_build : bool
        ``False``: only prepare Amaranth's build plan (no tool runs; the smoke test), and
        extract it into ``out`` if given. ``True``: run the open toolchain, or, for a vendor
        board, write the project.
    max_rows, baud : int
        On-chip activation rows (default: the board's) and UART rate.

    Returns
    -------
    BuildResult
        ``plan`` holds Amaranth's ``BuildPlan``.
    """
    spec = get_board(board)
    cfg = spec.design if cfg is None else cfg
    if not isinstance(cfg, GemmConfig):
        raise TypeError(f"cfg must be a GemmConfig, not {cfg!r}")
    max_rows = spec.max_rows if max_rows is None else max_rows
    t0 = time.perf_counter()
    platform = spec.platform()
    top = BoardTop(cfg, max_rows=max_rows, baud=baud)
    plan = platform.build(top, name="top", do_build=False)
    result = BuildResult(board=spec.name, out=None if out is None else str(out),
                         vendor=not spec.open_toolchain, bitstream=None, files=sorted(plan.files),
                         seconds=0.0, clock_mhz=platform.default_clk_frequency / 1e6,
                         fmax_mhz=None, design=cfg.to_dict(), max_rows=max_rows, baud=baud,
                         plan=plan)
    if not spec.open_toolchain:
        result.next_step = (f"vendor tools needed: run `sh build_top.sh` in {out} with Vivado "
                            "on PATH (or VIVADO set)")
    if not do_build or not spec.open_toolchain:
        if out is not None:
            _publish(out, lambda tmp: plan.extract(tmp))
        result.seconds = time.perf_counter() - t0
        return result
    if out is None:
        raise ValueError("an output directory is needed to build a bitstream")

    from ..sim.tools import tool_env
    from .synth import SynthError, progress_bar, warm_tools
    warm_tools([spec.target])
    env = tool_env()
    bitstream = {"ecp5": "top.bit", "ice40": "top.bin"}[_family(spec.target)]

    def run(tmp):
        plan.extract(tmp)
        with progress_bar(progress, 1, f"build {spec.name}") as bar, \
                open(Path(tmp) / "build.log", "wb") as log:
            bar.set_postfix_str("yosys, nextpnr, pack")
            proc = subprocess.run(["sh", f"{plan.script}.sh"], cwd=tmp, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, check=False)
            bar.update()
        text = (Path(tmp) / "build.log").read_text(errors="replace")
        if proc.returncode or not (Path(tmp) / bitstream).exists():
            tail = "\n".join(text.strip().splitlines()[-15:])
            # yowasp-ecppack dies with a WebAssembly trap and no message of its own
            hint = (" in ecppack, after place and route (a trap without a message: typically "
                    "a cell parameter value nextpnr accepts and ecppack's database lacks)"
                    if "in run_ecppack" in text else "")
            raise SynthError(f"the {spec.name} build failed{hint}:\n{tail}")
        tim = Path(tmp) / "top.tim"
        result.fmax_mhz = parse_nextpnr_fmax(tim.read_text(errors="replace")) \
            if tim.exists() else None

    _publish(out, run)
    result.bitstream = str(Path(out) / bitstream)
    result.files = sorted(p.name for p in Path(out).iterdir())
    result.seconds = time.perf_counter() - t0
    return result


def _family(target):
    from .synth_targets import get_target
    return get_target(target).family


def _publish(out, fill):
    """Run ``fill(tmpdir)`` in a temporary directory beside ``out``; on success move its files
    into ``out`` (created), else remove it (kept under ``LLMLOOM_KEEP``)."""
    out = Outputs.check_dir(out, "output")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.resolve().parent))
    try:
        fill(str(tmp))
        out.mkdir(exist_ok=True)
        for item in tmp.iterdir():
            dest = out / item.name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            os.replace(item, dest)
    finally:
        if tmp.exists() and not os.environ.get("LLMLOOM_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
