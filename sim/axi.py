"""Run the AXI read master (:class:`~llmloom.hw.blocks.axi_reader.AxiReader`) against
cocotbext-axi's read slave on Icarus or Verilator (:mod:`.axi_bench`)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..hw.blocks.axi_reader import AxiReader, AxiReaderConfig
from .runner import run_cocotb_test

__all__ = ["AxiRun", "run_axi_reader"]


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
    job = {"memory": memory.hex(), "commands": [list(c) for c in commands],
           "latency": list(latency), "bursts": n_bursts, "seed": seed, "out_stall": out_stall,
           "r_pause": r_pause, "ar_pause": ar_pause, "max_cycles": max_cycles}
    result = run_cocotb_test(AxiReader(cfg), sim, "llmloom.sim.axi_bench", job)
    if "beats" not in result:
        raise AssertionError(result.get("fail") or "the simulation ended without a result (a "
                             "failed assertion of the AXI slave model, e.g. a burst across 4 KB)")
    lanes = cfg.lanes
    words_out = [int(w, 16) for w in result["beats"]]
    data, padding, ends, k = [], [], [], 0
    for _, nbytes in commands:
        n = cfg.out_beats(nbytes)
        chunk = words_out[k:k + n]
        k += n
        raw = b"".join((w & ((1 << 8 * lanes) - 1)).to_bytes(lanes, "little") for w in chunk)
        data.append(raw[:nbytes])
        padding.append(raw[nbytes:])
        ends.append([j for j, w in enumerate(chunk) if w >> 8 * lanes & 3])
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
