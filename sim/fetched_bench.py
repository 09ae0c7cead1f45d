"""The cocotb test that runs a :class:`~llmloom.hw.layers.fetched.FetchedLinear` against
cocotbext-axi's read slave (a job written by :func:`llmloom.sim.fetched.run_fetched_linear`;
not a pytest file).

The AXI side is :mod:`.axi_bench`'s: :class:`cocotbext.axi.AxiSlaveRead` over a memory whose
bursts return ``latency`` cycles after their AR (drawn per burst), ARREADY and RVALID paused
at random. The bench offers one command per run (the image's base), the runs' activation beats
one after the other (not offered with probability ``act_stall`` per cycle) and drops the
output's ``ready`` with probability ``out_stall``; values are driven on the falling edge and
sampled in the read-only phase.
"""

from __future__ import annotations

import collections
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiReadBus, AxiSlaveRead

from .axi_bench import Clocked, LatencyMemory, pause, read_job, reset, write_result


@cocotb.test()
async def run_job(dut):
    job, rng = read_job()
    lo, hi = job["latency"]
    clocked = Clocked()
    ars = collections.deque()
    latencies = [rng.randint(lo, hi) for _ in range(job["bursts"] + 1)]

    cocotb.start_soon(Clock(dut.clk, Clocked.PERIOD_NS, unit="ns").start())
    bus = AxiReadBus.from_prefix(dut, "axi", bus_separator="__")
    ram = AxiSlaveRead(bus, dut.clk, dut.rst, target=LatencyMemory(
        bytes.fromhex(job["memory"]), dut.clk, clocked, ars, latencies))
    ram.ar_channel.queue_occupancy_limit = 1 << 16
    pause(ram.ar_channel, rng, job["ar_pause"])
    pause(ram.r_channel, rng, job["r_pause"])
    act_rng, out_rng = random.Random(rng.random()), random.Random(rng.random())

    await reset(dut, dut.cmd__valid, dut.act__valid, dut.o__ready)
    clocked.t0 = get_sim_time("ns")

    bases, acts = job["bases"], [[int(w, 16) for w in run] for run in job["acts"]]
    end_bit = job["end_bit"]
    cmds = list(bases)
    act_run = act_at = 0
    words = [[] for _ in bases]
    starts, ends = [], []
    result = {}
    try:
        while len(ends) < len(bases):
            if clocked.cycle > job["max_cycles"]:
                raise TimeoutError(f"no end after {job['max_cycles']} cycles: {len(ends)} of "
                                   f"{len(bases)} runs out")
            dut.cmd__valid.value = int(bool(cmds))
            if cmds:
                dut.cmd__payload.value = cmds[0]
            offer = act_run < len(acts) and act_rng.random() >= job["act_stall"]
            dut.act__valid.value = int(offer)
            if offer:
                dut.act__payload.value = acts[act_run][act_at]
            ready = out_rng.random() >= job["out_stall"]
            dut.o__ready.value = int(ready)
            await ReadOnly()
            c = clocked.cycle
            if cmds and int(dut.cmd__ready.value):
                starts.append(c)
                cmds.pop(0)
            if offer and int(dut.act__ready.value):
                act_at += 1
                if act_at == len(acts[act_run]):
                    act_run, act_at = act_run + 1, 0
            if int(dut.axi__arvalid.value) and int(dut.axi__arready.value):
                ars.append((c, int(dut.axi__arlen.value) + 1))
            if int(dut.o__valid.value) and ready:
                word = dut.o__payload.value.to_unsigned()
                words[len(ends)].append(hex(word))
                if word >> end_bit & 1:
                    ends.append(c)
            await FallingEdge(dut.clk)
            clocked.cycle += 1
        result = {"words": words, "cycles": [e - s + 1 for s, e in zip(starts, ends,
                                                                        strict=True)],
                  "span": ends[-1] - starts[0] + 1, "error": int(dut.error.value)}
    except Exception as exc:  # reported to the caller, which raises it
        result = {"fail": f"{type(exc).__name__}: {exc}"}
    finally:
        write_result(result)
