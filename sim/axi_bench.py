"""The cocotb test that runs the AXI read master against cocotbext-axi's read slave (a job
written by :func:`llmloom.sim.axi.run_axi_reader`; not a pytest file).

The slave is :class:`cocotbext.axi.AxiSlaveRead` (which itself asserts that no INCR burst
crosses 4 KB) over a memory with a latency: the first beat of each burst is held until
``latency`` cycles after the burst's AR transfer (drawn per burst from the job's range;
bursts still return in order, so a fast burst behind a slow one waits). Its AR
sink takes every AR at once (unless the job pauses ``ARREADY``), its R source may pause
``RVALID``, and the bench may drop the output's ``ready``: all from the job's seed. Values are
driven on the falling edge and sampled in the read-only phase before the rising edge, as in
:mod:`llmloom.sim.cocotb_bench`.
"""

from __future__ import annotations

import collections
import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiReadBus, AxiSlaveRead

#: Cycles between the falling edge on which the memory hands a burst's first word to the
#: slave and the cycle the bench sees it valid on the bus (the R source drives it on the next
#: rising edge). Subtracted so that ``latency`` is the latency seen on the bus (the tests check
#: the measured one).
MODEL_DELAY = 1


class Clocked:
    """The bench's cycle count, and the time of cycle 0's falling edge (so that any coroutine
    can tell the cycle at a falling edge from the time, whichever of them runs first)."""

    cycle = 0
    t0 = None
    PERIOD_NS = 10

    def at_falling_edge(self):
        return round((get_sim_time("ns") - self.t0) / self.PERIOD_NS)


class LatencyMemory:
    """The slave's target (``AxiSlaveRead(target=...)``, whose ``read`` it awaits for each
    word of a burst, in order): bytes at address 0, and the first word of each burst held
    until its latency after the burst's AR transfer (the AR times and lengths come from the
    bench's monitor, in order)."""

    def __init__(self, memory, clock, clocked, ars, latencies):
        self.mem, self.clock, self.clocked = bytes(memory), clock, clocked
        self.ars, self.latencies, self.beats_left = ars, latencies, 0

    async def read(self, address, length):
        if not self.beats_left:
            while not self.ars:               # the monitor sees the transfer first
                await RisingEdge(self.clock)
            t_ar, self.beats_left = self.ars.popleft()
            due = t_ar + self.latencies.pop(0) - MODEL_DELAY
            # Hand the beat over on a falling edge, always: the R source drives it at the next
            # rising edge whether it was idle or polling (on a rising edge the order of the two
            # coroutines would decide, and the latency would vary by a cycle).
            await FallingEdge(self.clock)
            while self.clocked.at_falling_edge() < due:
                await FallingEdge(self.clock)
        self.beats_left -= 1
        data = self.mem[address:address + length]
        return data + bytes(length - len(data))


def pauses(rng, p):
    """Pause each cycle with probability ``p``: a cocotbext-axi pause generator."""
    while True:
        yield rng.random() < p


def pause(channel, rng, p):
    """Pause ``channel`` (a cocotbext-axi channel) each cycle with probability ``p`` (never
    when 0), from a generator of its own seeded by ``rng``."""
    if p:
        channel.set_pause_generator(pauses(random.Random(rng.random()), p))


def read_job():
    """The job this bench runs (written by :func:`llmloom.sim.runner.run_cocotb_test`) and the
    generator seeded by it, whence all the bench's randomness."""
    with open(os.environ["LLMLOOM_JOB"]) as fh:
        job = json.load(fh)
    return job, random.Random(job["seed"])


async def reset(dut, *idle):
    """Two cycles of reset with the handles ``idle`` (valids, readys) low; returns on the
    falling edge after, reset released: cycle 0, where the benches drive their first
    values."""
    dut.rst.value = 1
    for handle in idle:
        handle.value = 0
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


def write_result(result):
    """Hand ``result`` (a dict) back to :func:`llmloom.sim.runner.run_cocotb_test`."""
    with open(os.environ["LLMLOOM_RESULT"], "w") as fh:
        json.dump(result, fh)


@cocotb.test()
async def run_job(dut):
    job, rng = read_job()
    memory = bytes.fromhex(job["memory"])
    commands = [tuple(c) for c in job["commands"]]
    payloads = [int(w, 16) for w in job["payloads"]]     # the commands, packed by the host
    lo, hi = job["latency"]
    clocked = Clocked()
    ars = collections.deque()                # (AR transfer cycle, beats) for the memory
    bursts_total = job["bursts"]
    latencies = [rng.randint(lo, hi) for _ in range(bursts_total + 1)]

    cocotb.start_soon(Clock(dut.clk, Clocked.PERIOD_NS, unit="ns").start())
    bus = AxiReadBus.from_prefix(dut, "axi", bus_separator="__")
    ram = AxiSlaveRead(bus, dut.clk, dut.rst,
                       target=LatencyMemory(memory, dut.clk, clocked, ars, latencies))
    ram.ar_channel.queue_occupancy_limit = 1 << 16
    pause(ram.ar_channel, rng, job["ar_pause"])
    pause(ram.r_channel, rng, job["r_pause"])
    out_rng = random.Random(rng.random())

    await reset(dut, dut.i__valid, dut.o__ready)
    clocked.t0 = get_sim_time("ns")

    pending = list(commands)
    beats, bursts, first_valid = [], [], []
    cmd_cycles = {}                          # command index → its cycles
    starts = collections.deque()             # (index, transfer cycle) of unfinished commands
    waiting_first = collections.deque()      # AR cycles of bursts whose first beat is due
    in_burst = False
    in_flight = max_in_flight = 0
    first = last_out = None
    held_ar = held_out = None                # a valid offered and not taken last cycle
    result = {}
    try:
        while len(cmd_cycles) < len(commands):
            if clocked.cycle > job["max_cycles"]:
                raise TimeoutError(f"no end after {job['max_cycles']} cycles: "
                                   f"{len(cmd_cycles)} of {len(commands)} commands done")
            if pending:
                dut.i__payload.value = payloads[len(commands) - len(pending)]
                dut.i__valid.value = 1
            else:
                dut.i__valid.value = 0
            ready = out_rng.random() >= job["out_stall"]
            dut.o__ready.value = int(ready)
            await ReadOnly()
            c = clocked.cycle
            # AXI (A3.2.1) and stream rules: a valid not yet taken stays, its payload unchanged
            ar = (int(dut.axi__arvalid.value), int(dut.axi__araddr.value),
                  int(dut.axi__arlen.value))
            out = (int(dut.o__valid.value), dut.o__payload.value.to_unsigned())
            if held_ar is not None and ar != held_ar:
                raise AssertionError(f"cycle {c}: ARVALID/ARADDR/ARLEN changed before ARREADY")
            if held_out is not None and out != held_out:
                raise AssertionError(f"cycle {c}: o.valid or o.payload changed before o.ready")
            held_ar = ar if ar[0] and not int(dut.axi__arready.value) else None
            held_out = out if out[0] and not ready else None
            if int(dut.i__valid.value) and int(dut.i__ready.value):
                index = len(commands) - len(pending)
                first = c if first is None else first
                if pending.pop(0)[1] == 0:
                    cmd_cycles[index] = 0
                    last_out = c if last_out is None else max(last_out, c)
                else:
                    starts.append((index, c))
            if int(dut.axi__arvalid.value) and int(dut.axi__arready.value):
                bursts.append([int(dut.axi__araddr.value), int(dut.axi__arlen.value) + 1,
                               int(dut.axi__arsize.value), int(dut.axi__arburst.value)])
                ars.append((c, bursts[-1][1]))
                waiting_first.append(c)
                in_flight += 1
                max_in_flight = max(max_in_flight, in_flight)
            if int(dut.axi__rvalid.value):
                if not in_burst:
                    first_valid.append(c - waiting_first.popleft())
                    in_burst = True
                if int(dut.axi__rready.value) and int(dut.axi__rlast.value):
                    in_burst = False
                    in_flight -= 1
            if int(dut.o__valid.value) and ready:
                word = dut.o__payload.value.to_unsigned()
                beats.append(hex(word))
                if word >> job["last_bit"] & 1:         # `last`: the command's final beat
                    index, start = starts.popleft()
                    cmd_cycles[index] = c - start + 1
                    last_out = c
            await FallingEdge(dut.clk)
            clocked.cycle += 1
        result = {"beats": beats, "cycles": [cmd_cycles[k] for k in range(len(commands))],
                  "bursts": bursts,
                  "latencies": first_valid, "error": int(dut.error.value),
                  "max_in_flight": max_in_flight, "sim_cycles": clocked.cycle,
                  "span": last_out - first + 1}
    except Exception as exc:  # reported to the caller, which raises it
        result = {"fail": f"{type(exc).__name__}: {exc}"}
    finally:
        write_result(result)
