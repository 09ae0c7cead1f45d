"""The UART on Amaranth's simulator: loopback under stalls, baud mismatch, framing errors,
overflow, and the divisor rules."""

from __future__ import annotations

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from llmloom.flows.simhost import uart_receive, uart_send
from llmloom.hw.blocks.uart import Uart, UartConfig, UartRx, UartTx, uart_divisor
from llmloom.hw.config import ConfigError
from llmloom.sim.streams import Stalls


def _run(dut, *benches, deadline=200_000):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run_until(deadline * 1e-8)


@pytest.mark.parametrize("stall", ["none", "pattern", "random"])
def test_loopback_under_stalls(stall, rng):
    """TX wired to RX: every byte arrives once, in order, whatever the producer and consumer
    stalls (the consumer is slow enough only to hold a byte, never to lose one)."""
    cfg = UartConfig(divisor=5)
    m = Module()
    m.submodules.tx = tx = UartTx(cfg)
    m.submodules.rx = rx = UartRx(cfg)
    m.d.comb += rx.rx.eq(tx.tx)
    data = [0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80] + [int(x) for x in rng.integers(0, 256, 24)]
    got, flags = [], []
    go_in = Stalls(stall, 1).generator(0)
    go_out = Stalls(stall, 2).generator(1)

    async def producer(ctx):
        for byte in data:
            while not next(go_in):
                await ctx.tick()
            ctx.set(tx.i.payload, byte)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
            ctx.set(tx.i.valid, 0)

    async def consumer(ctx):
        while len(got) < len(data):
            ready = next(go_out)
            ctx.set(rx.o.ready, ready)
            if ready and ctx.get(rx.o.valid):
                got.append(ctx.get(rx.o.payload))
            flags.append(ctx.get(rx.overflow) | ctx.get(rx.framing_error))
            await ctx.tick()

    _run(m, producer, consumer, deadline=len(data) * 10 * 5 + 2000)
    assert got == data
    assert not any(flags)


@pytest.mark.parametrize("cycles_per_bit", [31, 32, 33])
def test_receiver_tolerates_baud_mismatch(cycles_per_bit):
    """A sender 3 % fast or slow is still read correctly (mid-bit sampling)."""
    rx = UartRx(UartConfig(divisor=32))
    data = [0x00, 0xFF, 0x5A, 0xC3, 0x7E]
    got = []

    async def sender(ctx):
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(10)
        for byte in data:
            await uart_send(ctx, rx.rx, byte, cycles_per_bit)

    async def consumer(ctx):
        ctx.set(rx.o.ready, 1)
        while len(got) < len(data):
            await ctx.tick()
            if ctx.get(rx.o.valid):
                got.append(ctx.get(rx.o.payload))

    _run(rx, sender, consumer, deadline=len(data) * 10 * 40 + 1000)
    assert got == data


def test_framing_error_drops_the_byte():
    rx = UartRx(UartConfig(divisor=8))
    seen = {"bytes": [], "framing": 0}

    async def sender(ctx):
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(5)
        await uart_send(ctx, rx.rx, 0x42, 8, stop=0)
        ctx.set(rx.rx, 0)                      # hold a break for a while, then release
        await ctx.tick().repeat(40)
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(20)
        await uart_send(ctx, rx.rx, 0x17, 8)

    async def monitor(ctx):
        ctx.set(rx.o.ready, 1)
        for _ in range(400):
            await ctx.tick()
            seen["framing"] += ctx.get(rx.framing_error)
            if ctx.get(rx.o.valid):
                seen["bytes"].append(ctx.get(rx.o.payload))

    _run(rx, sender, monitor, deadline=1000)
    assert seen["framing"] == 1
    assert seen["bytes"] == [0x17]


def test_overflow_keeps_the_first_byte():
    rx = UartRx(UartConfig(divisor=6))
    seen = {"overflow": 0}

    async def sender(ctx):
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(5)
        for byte in (0x11, 0x22, 0x33):
            await uart_send(ctx, rx.rx, byte, 6)
        await ctx.tick().repeat(20)
        assert ctx.get(rx.o.valid) and ctx.get(rx.o.payload) == 0x11
        ctx.set(rx.o.ready, 1)
        await ctx.tick()
        ctx.set(rx.o.ready, 0)
        await ctx.tick()
        assert not ctx.get(rx.o.valid)
        seen["done"] = True

    async def monitor(ctx):
        for _ in range(300):
            await ctx.tick()
            seen["overflow"] += ctx.get(rx.overflow)

    _run(rx, sender, monitor, deadline=1000)
    assert seen.get("done")
    assert seen["overflow"] == 2


def test_transmitter_frames():
    """The TX line carries start, 8 data bits LSB first, stop, each ``divisor`` cycles."""
    uart = Uart(UartConfig(divisor=7))
    got = []

    async def producer(ctx):
        for byte in (0xA5, 0x3C):
            ctx.set(uart.i.payload, byte)
            ctx.set(uart.i.valid, 1)
            await ctx.tick().until(uart.i.ready)
        ctx.set(uart.i.valid, 0)

    async def listener(ctx):
        for _ in range(2):
            got.append(await uart_receive(ctx, uart.tx, 7))

    _run(uart, producer, listener, deadline=500)
    assert got == [(0xA5, 1), (0x3C, 1)]


def test_divisor_rules():
    assert uart_divisor(12e6, 115200) == 104
    assert uart_divisor(25e6, 115200) == 217
    assert uart_divisor(100e6, 115200) == 868
    with pytest.raises(ConfigError, match="too fast"):
        uart_divisor(12e6, 6_000_000)
    with pytest.raises(ConfigError, match="off at"):
        uart_divisor(1e6, 115200)               # divisor 9: 3.5 % off
    with pytest.raises(ConfigError, match="divisor=3 is out of range"):
        UartConfig(divisor=3)
