"""The host protocol against the simulated host-link core: bytes become UART frames on the
``rx`` line, and frames on the ``tx`` line become reply bytes, bit by bit in Amaranth's
simulator. This is how the board's portable core is tested end to end without a board.
"""

from __future__ import annotations

from amaranth.sim import Simulator

__all__ = ["uart_send", "uart_receive", "simulate_session", "SimDeadline"]


class SimDeadline(AssertionError):
    """The simulated board did not answer within the cycle budget."""


async def uart_send(ctx, line, byte, divisor, *, stop=1):
    """Drive one 8N1 frame of ``byte`` onto ``line`` (``stop=0`` makes a framing error)."""
    for bit in [0, *((byte >> i) & 1 for i in range(8)), stop]:
        ctx.set(line, bit)
        await ctx.tick().repeat(divisor)
    ctx.set(line, 1)


async def uart_receive(ctx, line, divisor):
    """Wait for the next frame on ``line``; returns ``(byte, stop bit)``, sampling mid-bit."""
    # A plain loop rather than ``tick().until``: a background testbench is abandoned mid-wait
    # when the simulation ends, and ``until`` then complains while being closed.
    while ctx.get(line):
        await ctx.tick()
    await ctx.tick().repeat(max(1, divisor // 2))
    value = 0
    for i in range(8):
        await ctx.tick().repeat(divisor)
        value |= ctx.get(line) << i
    await ctx.tick().repeat(divisor)
    return value, ctx.get(line)


def simulate_session(link, session, *, max_cycles=5_000_000, vcd=None):
    """Run a :meth:`~llmloom.flows.host.GemmProtocol.session` against ``link`` (a
    :class:`~llmloom.boards.hostlink.HostLink`) on Amaranth's simulator.

    Returns ``(session result, simulated cycles)``. Raises :class:`SimDeadline` when a reply
    does not come within ``max_cycles`` in all, and ``AssertionError`` on a frame without its
    stop bit.
    """
    divisor = link.uart_cfg.divisor
    received = bytearray()
    out = {}

    async def receiver(ctx):
        while True:
            byte, stop = await uart_receive(ctx, link.tx, divisor)
            assert stop == 1, "the board sent a frame without a stop bit"
            received.append(byte)

    async def host(ctx):
        ctx.set(link.rx, 1)
        cycle = 0
        await ctx.tick().repeat(4)
        reply = None
        try:
            while True:
                request, n = session.send(reply)
                start = len(received)
                for byte in request:
                    await uart_send(ctx, link.rx, byte, divisor)
                    cycle += 10 * divisor
                while len(received) < start + n:
                    # Wait a frame at a time; the receiver appends as frames complete.
                    await ctx.tick().repeat(divisor)
                    cycle += divisor
                    if cycle > max_cycles:
                        raise SimDeadline(f"no reply after {max_cycles} cycles: got "
                                          f"{len(received) - start} of {n} bytes for command "
                                          f"{request[:1]!r}")
                reply = bytes(received[start:start + n])
                if cycle > max_cycles:
                    raise SimDeadline(f"the session took more than {max_cycles} cycles")
        except StopIteration as stop:
            out["result"] = stop.value
            out["cycles"] = cycle

    sim = Simulator(link)
    sim.add_clock(1e-8)
    sim.add_testbench(receiver, background=True)
    sim.add_testbench(host)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return out["result"], out["cycles"]
