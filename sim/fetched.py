"""Run a :class:`~llmloom.hw.layers.fetched.FetchedLinear` (a linear stage fetching its numbers
from a weight image over AXI) on Icarus or Verilator against cocotbext-axi's read slave
(:mod:`.fetched_bench`)."""

from __future__ import annotations

import dataclasses

from ..hw.layers.fetched import fetch_commands
from .runner import run_cocotb_test
from .streams import check_framing, pack_rows, unpack_rows

__all__ = ["FetchedRun", "run_fetched_linear"]


@dataclasses.dataclass
class FetchedRun:
    outputs: list         # per run: the output rows (rows × n)
    cycles: list          # per run: command transfer .. last output beat, inclusive
    span: int             # first command's transfer .. last run's last output beat, inclusive
    error: int            # the reader's error flag at the end


def run_fetched_linear(comp, memory, runs, *, sim="icarus", latency=(8, 8), act_stall=0.0,
                       out_stall=0.0, r_pause=0.0, ar_pause=0.0, seed=0, max_cycles=None):
    """Run ``runs`` (``[(image base, activation rows)]``, in order) through ``comp`` (a
    :class:`FetchedLinear`) with ``memory`` (bytes at address 0) behind cocotbext-axi's read
    slave: per-burst latency drawn from the inclusive range ``latency``; the activations not
    offered with probability ``act_stall`` per cycle, the output not ready with
    ``out_stall``, RVALID and ARREADY paused with ``r_pause``, ``ar_pause`` (seeded)."""
    cfg, name = comp.cfg, comp.name
    act_layout, out_layout = comp.act.payload.shape(), comp.o.payload.shape()
    memory = bytes(memory)
    for base, _ in runs:
        for addr, nbytes in fetch_commands(cfg, name, base):
            if addr + nbytes > len(memory):
                raise ValueError(f"the image at {base} runs past the memory's {len(memory)} "
                                 "bytes")
    acts = [[hex(w) for w in pack_rows(act_layout, x)] for _, x in runs]
    bursts = sum(len(comp.reader.bursts(a, n)) for base, _ in runs
                 for a, n in fetch_commands(cfg, name, base))
    if max_cycles is None:
        stall = max(act_stall, out_stall, r_pause, ar_pause)
        beats = sum(len(a) for a in acts) + sum(n for base, _ in runs for _, n in
                                                fetch_commands(cfg, name, base))
        max_cycles = int((1000 + 20 * beats + bursts * latency[1]) / (1 - stall))
    end_bit = out_layout["end"].offset
    job = {"memory": memory.hex(), "bases": [b for b, _ in runs], "acts": acts,
           "latency": list(latency), "bursts": bursts, "seed": seed, "act_stall": act_stall,
           "out_stall": out_stall, "r_pause": r_pause, "ar_pause": ar_pause,
           "max_cycles": max_cycles, "end_bit": end_bit}
    result = run_cocotb_test(comp, sim, "llmloom.sim.fetched_bench", job)
    if "words" not in result:
        raise AssertionError(result.get("fail") or "the simulation ended without a result")
    n = cfg.linear(name).n
    outputs = []
    for words in result["words"]:
        rows, last, end = unpack_rows(out_layout, [int(w, 16) for w in words], n)
        check_framing(last, end, -(-n // cfg.lanes))
        outputs.append(rows)
    return FetchedRun(outputs=outputs, cycles=result["cycles"], span=result["span"],
                      error=result["error"])
