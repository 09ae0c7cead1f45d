"""Run the AXI masters against cocotbext-axi's slaves on Icarus or Verilator: the read master
(:class:`~llmloom.hw.blocks.axi_reader.AxiReader`, :mod:`.axi_bench`) and the write master
(:class:`~llmloom.hw.blocks.axi_writer.AxiWriter`, :mod:`.axi_write_bench`)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..hw.blocks.axi import command_layout
from ..hw.blocks.axi_reader import AxiReader, AxiReaderConfig
from ..hw.blocks.axi_writer import AxiWriter, AxiWriterConfig
from .runner import run_cocotb_test
from .streams import unpack_rows

__all__ = ["AxiRun", "run_axi_reader", "AxiWriteRun", "run_axi_writer", "written"]


def _command_words(cfg, commands):
    """``commands`` (``[(addr, bytes)]``) as the master's command payloads, packed by its
    :func:`~llmloom.hw.blocks.axi.command_layout` (hex, for the job)."""
    layout = command_layout(cfg)
    return [hex(layout.const({"addr": a, "bytes": n}).as_bits()) for a, n in commands]


@dataclasses.dataclass
class AxiRun:
    data: list            # per command: the bytes streamed out (padding of the last beat cut)
    padding: list         # per command: the last beat's lanes past the data (must be zero)
    cycles: list          # per command: command transfer .. last output transfer, inclusive
    bursts: list          # every AR: (byte address, beats, arsize, arburst)
    latencies: list       # per burst: AR transfer to its first beat's RVALID, as on the bus
    error: int            # the reader's error flag at the end
    ends: list            # per command: indices of its beats that carry last/end
    max_in_flight: int    # most bursts requested and not yet fully returned, at once
    sim_cycles: int       # all cycles simulated after reset
    span: int             # first command's transfer .. last command's end, inclusive


def run_axi_reader(cfg: AxiReaderConfig, memory, commands, *, sim="icarus", latency=(8, 8),
                   out_stall=0.0, r_pause=0.0, ar_pause=0.0, seed=0, max_cycles=None):
    """Stream ``commands`` (``[(addr, bytes)]``, in order) out of ``memory`` (bytes at address
    0) through the reader on ``sim``; the slave's per-burst latency is drawn from the inclusive
    range ``latency``, and the output's ready is low with probability ``out_stall`` per cycle,
    the slave's RVALID paused with ``r_pause`` and ARREADY with ``ar_pause`` (seeded)."""
    memory = bytes(memory)
    for addr, nbytes in commands:
        if addr < 0 or nbytes < 0 or addr + nbytes > len(memory) or nbytes > cfg.max_bytes:
            raise ValueError(f"command ({addr}, {nbytes}) is outside the memory of "
                             f"{len(memory)} bytes or above max_bytes={cfg.max_bytes}")
    n_bursts = sum(len(cfg.bursts(a, n)) for a, n in commands)
    words = sum(b for a, n in commands for _, b in cfg.bursts(a, n))
    if max_cycles is None:
        slow = 1 + 4 * max(out_stall, r_pause, ar_pause) / max(1e-9, 1 - max(
            out_stall, r_pause, ar_pause))
        max_cycles = int(100 + (words + 4 * len(commands)) * slow * 4
                         + (n_bursts + len(commands)) * (latency[1] + 8))
    reader = AxiReader(cfg)
    out_layout = reader.o.payload.shape()       # the output beats' one packing
    job = {"memory": memory.hex(), "commands": [list(c) for c in commands],
           "payloads": _command_words(cfg, commands), "latency": list(latency),
           "bursts": n_bursts, "seed": seed, "out_stall": out_stall, "r_pause": r_pause,
           "ar_pause": ar_pause, "max_cycles": max_cycles,
           "last_bit": out_layout["last"].offset}
    result = run_cocotb_test(reader, sim, "llmloom.sim.axi_bench", job)
    if "beats" not in result:
        raise AssertionError(result.get("fail") or "the simulation ended without a result (a "
                             "failed assertion of the AXI slave model, e.g. a burst across 4 KB)")
    words_out = [int(w, 16) for w in result["beats"]]
    data, padding, ends, k = [], [], [], 0
    for _, nbytes in commands:
        n = cfg.out_beats(nbytes)
        chunk = words_out[k:k + n]
        k += n
        # the command's beats as one row of int8 lanes, by the reader's output layout
        lanes, last, end = (unpack_rows(out_layout, chunk, n * cfg.lanes) if n
                            else (np.zeros(0), [], []))
        raw = lanes.astype(np.int8).tobytes()
        data.append(raw[:nbytes])
        padding.append(raw[nbytes:])
        ends.append([j for j in range(n) if last[j] or end[j]])
    if k != len(words_out):
        raise AssertionError(f"{len(words_out)} output beats; expected {k}")
    return AxiRun(data=data, padding=padding, cycles=result["cycles"],
                  bursts=[tuple(b) for b in result["bursts"]], latencies=result["latencies"],
                  error=result["error"], ends=ends,
                  max_in_flight=result["max_in_flight"], sim_cycles=result["sim_cycles"],
                  span=result["span"])


def random_image(rng, nbytes):
    """Random bytes (a stand-in memory for transfer tests)."""
    return np.asarray(rng.integers(0, 256, nbytes), dtype=np.uint8).tobytes()


__all__ += ["random_image"]


@dataclasses.dataclass
class AxiWriteRun:
    memory: bytes         # the slave's memory after the last write response
    bursts: list          # every AW: (byte address, beats, awsize, awburst)
    strobes: list         # every W beat: (wstrb, wlast)
    error: int            # the writer's error flag at the end
    max_in_flight: int    # most bursts issued and not yet acknowledged, at once
    span: int             # first command's transfer .. the cycle busy fell, inclusive


def written(memory, commands, payloads):
    """The golden memory: ``memory`` with each command's ``(addr, bytes)`` range overwritten
    by its payload, in order (word-aligned ``addr``)."""
    out = bytearray(memory)
    for (addr, nbytes), data in zip(commands, payloads, strict=True):
        out[addr:addr + nbytes] = data[:nbytes]
    return bytes(out)


def run_axi_writer(cfg: AxiWriterConfig, memory, commands, payloads, *, sim="icarus",
                   latency=(1, 1), data_stall=0.0, aw_pause=0.0, w_pause=0.0, b_pause=0.0,
                   bad=(0, 0), seed=0, max_cycles=None):
    """Write ``payloads`` (bytes per command; the last beat padded with ``0xa5``, which must
    not reach memory) at ``commands`` (``[(addr, bytes)]``, in order) into ``memory`` (bytes
    at address 0) behind cocotbext-axi's write slave through the writer on ``sim``: each
    write response ``latency`` cycles (an inclusive range, per burst) after the slave has its
    burst, the data's valid low with probability ``data_stall`` per cycle, AWREADY, WREADY
    and BVALID paused with ``aw_pause``, ``w_pause``, ``b_pause`` (seeded); writes that touch
    the byte range ``bad`` fail with SLVERR."""
    memory = bytes(memory)
    lanes = cfg.lanes
    words = []
    for (addr, nbytes), data in zip(commands, payloads, strict=True):
        if addr < 0 or nbytes < 0 or addr + nbytes > len(memory) or nbytes > cfg.max_bytes:
            raise ValueError(f"command ({addr}, {nbytes}) is outside the memory of "
                             f"{len(memory)} bytes or above max_bytes={cfg.max_bytes}")
        if len(data) != nbytes:
            raise ValueError(f"a payload of {len(data)} bytes for a command of {nbytes}")
        padded = bytes(data) + b"\xa5" * (-nbytes % lanes)
        words += [hex(int.from_bytes(padded[k:k + lanes], "little"))
                  for k in range(0, len(padded), lanes)]
    n_bursts = sum(len(cfg.bursts(a, n)) for a, n in commands)
    if max_cycles is None:
        stall = max(data_stall, aw_pause, w_pause, b_pause)
        max_cycles = int((200 + 4 * len(words) + n_bursts * (latency[1] + 8)) / (1 - stall))
    job = {"memory": memory.hex(), "commands": [list(c) for c in commands],
           "payloads": _command_words(cfg, commands), "words": words,
           "latency": list(latency), "seed": seed, "data_stall": data_stall,
           "aw_pause": aw_pause, "w_pause": w_pause, "b_pause": b_pause, "bad": list(bad),
           "max_cycles": max_cycles}
    result = run_cocotb_test(AxiWriter(cfg), sim, "llmloom.sim.axi_write_bench", job)
    if "memory" not in result:
        raise AssertionError(result.get("fail") or "the simulation ended without a result (a "
                             "failed assertion of the AXI slave model, e.g. a burst across 4 KB "
                             "or a WLAST out of place)")
    return AxiWriteRun(memory=bytes.fromhex(result["memory"]),
                       bursts=[tuple(b) for b in result["bursts"]],
                       strobes=[tuple(b) for b in result["beats"]], error=result["error"],
                       max_in_flight=result["max_in_flight"], span=result["span"])
