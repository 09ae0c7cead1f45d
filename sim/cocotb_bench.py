"""The cocotb test that runs a job written by :mod:`llmloom.sim.runner` (not a pytest file).

It drives the job's beats with :class:`~llmloom.sim.engine.StreamEngine` (so stimulus is the
same as on Amaranth's simulator): values are set on the falling edge, settled values are read
in the read-only phase before the rising edge (cocotb 2 forbids writes after ``ReadOnly``).
"""

from __future__ import annotations

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from llmloom.sim.engine import StreamEngine
from llmloom.sim.harness import AxiMemory, Drive, Gate, Segment
from llmloom.sim.streams import Stalls


class _ProgressFile:
    """The count of output beats so far, rewritten in place at most every ``period`` seconds
    into the file that the runner's progress thread reads (:func:`llmloom.sim.runner.simulate`).
    """

    def __init__(self, path, period=0.1):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644) if path else None
        self.period, self.count, self.last = period, 0, 0.0

    def update(self, n=1):
        self.count += n
        now = time.monotonic()
        if self.fd is not None and now - self.last >= self.period:
            self.last = now
            self._write()

    def _write(self):
        os.pwrite(self.fd, f"{self.count:>20}\n".encode(), 0)

    def close(self):
        if self.fd is not None:
            self._write()
            os.close(self.fd)
            self.fd = None


@cocotb.test()
async def run_job(dut):
    with open(os.environ["LLMLOOM_JOB"]) as fh:
        job = json.load(fh)
    drive = Drive(
        preload={p: [int(w, 16) for w in ws] for p, ws in job["preload"].items()},
        timed={p: [int(w, 16) for w in ws] for p, ws in job["timed"].items()},
        expect=job["expect"],
        gates={p: [Gate(*g) for g in gs] for p, gs in job.get("gates", {}).items()},
        segments=[Segment(*seg) for seg in job.get("segments", [])],
        memory={p: AxiMemory((bytearray if m.get("write") else bytes)(
                                 bytes.fromhex(m["image"])), m["data_width"],
                             tuple(m["latency"]), m["seed"], write=bool(m.get("write")))
                for p, m in job.get("memory", {}).items()},
    )
    progress = _ProgressFile(os.environ.get("LLMLOOM_PROGRESS")) if job.get("progress") \
        else None
    engine = StreamEngine(drive, Stalls(**job["stalls_in"]), Stalls(**job["stalls_out"]),
                          job["max_cycles"], on_output=progress.update if progress else None)
    handles = {}

    def handle(name):
        h = handles.get(name)
        if h is None:
            h = handles[name] = getattr(dut, name)
        return h

    def get(name):
        value = handle(name).value
        # 1-bit ports read as Logic, wider ones as LogicArray
        return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)

    result = {}
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for port in list(drive.preload) + list(drive.timed):
        handle(f"{port}__valid").value = 0
    for port in drive.expect:
        handle(f"{port}__ready").value = 0
    for port, mem in drive.memory.items():
        handle(f"{port}__arready").value = 0
        handle(f"{port}__rvalid").value = 0
        if mem.write:
            for name in ("awready", "wready", "bvalid"):
                handle(f"{port}__{name}").value = 0
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        while not engine.done:
            for name, value in engine.drive():
                handle(name).value = value
            await ReadOnly()
            engine.observe(get)
            await FallingEdge(dut.clk)
        result = {"beats": {p: [hex(w) for w in ws] for p, ws in engine.results().items()},
                  "cycles": engine.cycles, "sim_cycles": engine.cycle,
                  "segment_cycles": engine.segment_cycles, "axi_beats": engine.axi_beats,
                  "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
    except Exception as exc:  # reported to the runner, which raises it in the caller
        result = {"fail": str(exc), "kind": type(exc).__name__}
    finally:
        if progress:
            progress.close()
        with open(os.environ["LLMLOOM_RESULT"], "w") as fh:
            json.dump(result, fh)
