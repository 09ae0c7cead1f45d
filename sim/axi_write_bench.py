"""The cocotb test that runs the AXI write master against cocotbext-axi's write slave (a job
written by :func:`llmloom.sim.axi.run_axi_writer`; not a pytest file).

The slave is :class:`cocotbext.axi.AxiRamWrite` (which itself asserts that no INCR burst
crosses 4 KB and that WLAST marks exactly each burst's last beat) over the job's memory. Each
burst's write response is held until ``latency`` cycles after the slave has it (drawn per
burst from the job's range, in order: a later burst's response never passes an earlier
one's), while the slave goes on taking the next bursts; its AW and W sinks may pause
``AWREADY`` and ``WREADY``, the bench the response's ``BVALID`` (through the same delay) and
the data input's ``valid``: all from the job's seed. A write to a byte in the job's ``bad``
range fails, and the slave answers SLVERR. Values are driven on the falling edge and sampled
in the read-only phase before the rising edge, as in :mod:`llmloom.sim.axi_bench`.
"""

from __future__ import annotations

import collections
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
from cocotbext.axi import AxiRamWrite, AxiWriteBus

from .axi_bench import pause, read_job, reset, write_result

PERIOD_NS = 10


class FaultyRam(AxiRamWrite):
    """An AXI RAM whose writes into ``bad`` (a byte range) fail (the slave answers SLVERR)."""

    def __init__(self, *args, bad=(0, 0), **kwargs):
        super().__init__(*args, **kwargs)
        self.bad = bad

    async def _write(self, address, data):
        lo, hi = self.bad
        if address < hi and address + len(data) > lo:
            raise ValueError(f"write of {len(data)} bytes at {address} hits the bad range")
        await super()._write(address, data)


@cocotb.test()
async def run_job(dut):
    job, rng = read_job()
    memory = bytes.fromhex(job["memory"])
    commands = [tuple(c) for c in job["commands"]]
    payloads = [int(w, 16) for w in job["payloads"]]     # the commands, packed by the host
    words = [int(w, 16) for w in job["words"]]
    lo, hi = job["latency"]

    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    bus = AxiWriteBus.from_prefix(dut, "axi", bus_separator="__")
    ram = FaultyRam(bus, dut.clk, dut.rst, size=len(memory), bad=tuple(job["bad"]))
    ram.write(0, memory)
    pause(ram.aw_channel, rng, job["aw_pause"])
    pause(ram.w_channel, rng, job["w_pause"])
    # The write responses go out in order, each ``latency`` cycles after the slave has it.
    cycle = [0]
    responses = collections.deque()
    send = ram.b_channel.send
    lat_rng = random.Random(rng.random())

    async def delayed(b):
        responses.append((cycle[0] + lat_rng.randint(lo, hi), b))

    async def responder():
        while True:
            if responses and responses[0][0] <= cycle[0]:
                await send(responses.popleft()[1])
            else:
                await RisingEdge(dut.clk)

    ram.b_channel.send = delayed
    cocotb.start_soon(responder())
    pause(ram.b_channel, rng, job["b_pause"])
    in_rng = random.Random(rng.random())

    await reset(dut, dut.cmd__valid, dut.data__valid)

    pending_cmds, pending_words = list(commands), list(words)
    bursts, beats = [], []
    in_flight = max_in_flight = 0
    first = None
    offered = False                   # a data beat offered and not yet taken stays offered
    held_aw = held_w = None
    busy_seen = False
    result = {}
    try:
        while True:
            c = cycle[0]
            if c > job["max_cycles"]:
                raise TimeoutError(f"no end after {job['max_cycles']} cycles: "
                                   f"{len(commands) - len(pending_cmds)} commands taken, "
                                   f"{len(words) - len(pending_words)} beats")
            if pending_cmds:
                dut.cmd__payload.value = payloads[len(commands) - len(pending_cmds)]
                dut.cmd__valid.value = 1
            else:
                dut.cmd__valid.value = 0
            if pending_words and (offered or in_rng.random() >= job["data_stall"]):
                dut.data__payload.value = pending_words[0]
                dut.data__valid.value = 1
                offered = True
            else:
                dut.data__valid.value = 0
            await ReadOnly()
            # AXI (A3.2.1): a valid not yet taken stays, its payload unchanged
            aw = (int(dut.axi__awvalid.value), int(dut.axi__awaddr.value),
                  int(dut.axi__awlen.value))
            w = (int(dut.axi__wvalid.value), int(dut.axi__wdata.value),
                 int(dut.axi__wstrb.value), int(dut.axi__wlast.value))
            if held_aw is not None and aw != held_aw:
                raise AssertionError(f"cycle {c}: AWVALID/AWADDR/AWLEN changed before AWREADY")
            if held_w is not None and w != held_w:
                raise AssertionError(f"cycle {c}: WVALID/WDATA/WSTRB/WLAST changed before "
                                     "WREADY")
            held_aw = aw if aw[0] and not int(dut.axi__awready.value) else None
            held_w = w if w[0] and not int(dut.axi__wready.value) else None
            if int(dut.cmd__valid.value) and int(dut.cmd__ready.value):
                first = c if first is None else first
                pending_cmds.pop(0)
            if int(dut.data__valid.value) and int(dut.data__ready.value):
                pending_words.pop(0)
                offered = False
            if int(dut.axi__awvalid.value) and int(dut.axi__awready.value):
                bursts.append([int(dut.axi__awaddr.value), int(dut.axi__awlen.value) + 1,
                               int(dut.axi__awsize.value), int(dut.axi__awburst.value)])
                in_flight += 1
                max_in_flight = max(max_in_flight, in_flight)
            if int(dut.axi__wvalid.value) and int(dut.axi__wready.value):
                beats.append([int(dut.axi__wstrb.value), int(dut.axi__wlast.value)])
            if int(dut.axi__bvalid.value) and int(dut.axi__bready.value):
                in_flight -= 1
            busy = int(dut.busy.value)
            busy_seen |= bool(busy)
            if not pending_cmds and not pending_words and not busy and not in_flight and \
                    (busy_seen or not any(n for _, n in commands)):
                break
            await FallingEdge(dut.clk)
            cycle[0] += 1
        result = {"memory": ram.read(0, len(memory)).hex(), "bursts": bursts, "beats": beats,
                  "error": int(dut.error.value), "max_in_flight": max_in_flight,
                  "span": c - first + 1 if first is not None else 0}
    except Exception as exc:  # reported to the caller, which raises it
        result = {"fail": f"{type(exc).__name__}: {exc}"}
    finally:
        write_result(result)
