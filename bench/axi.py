"""Weights from off-chip memory: the AXI read master's measured and predicted bandwidth.

Prints JSON. Run in the ``./dev`` environment: ``.venv/bin/python bench/axi.py`` (``--sim
verilator`` for Verilator, ``--quick`` for short transfers, ``--out R.json`` to keep the JSON).

``measured``: for each bus width, outstanding-burst limit and memory latency, one long
transfer from an unaligned address through cocotbext-axi's slave: the cycles simulated and
the config's prediction (``AxiReaderConfig.cycles``, exact at a fixed latency), bytes per
cycle measured and the sustained rate the config states (``bytes_per_cycle``); then the same
with random latency (``latency_range``) and random stalls on the output, RVALID and ARREADY,
where the prediction at the shortest latency is a lower bound. ``weight_fetch``: the cycle
model's time to fetch a GPT-2 layer's weight image (:mod:`llmloom.hw.layers.weights_image`),
its sections as commands back to back, at a given clock, and its effective bandwidth (and
each stage's sections fetched alone).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from llmloom.hw.blocks.axi_reader import AxiReaderConfig
from llmloom.hw.layers.config import LayerConfig
from llmloom.hw.layers.weights_image import image_layout
from llmloom.perf.cycles import layer_fetch_cycles, weight_fetch_cycles
from llmloom.sim.axi import random_image, run_axi_reader

#: (data_width, outstanding, latency)
CASES = [(128, 1, 40), (128, 4, 40), (512, 2, 100), (512, 8, 100)]
CLOCK_HZ = 300e6


def measure(sim, nbytes, seed):
    rng = np.random.default_rng(seed)
    mem = random_image(rng, nbytes + 4096)
    addr = 4096 - 5                                     # unaligned, and across 4 KB at once
    out = []
    for width, outstanding, latency in CASES:
        cfg = AxiReaderConfig(data_width=width, outstanding=outstanding, max_bytes=1 << 24)
        run = run_axi_reader(cfg, mem, [(addr, nbytes)], sim=sim, latency=(latency, latency))
        assert run.data[0] == mem[addr:addr + nbytes]
        predicted = cfg.cycles(addr, nbytes, latency)
        lo, hi = latency // 2, latency * 2
        noisy = run_axi_reader(cfg, mem, [(addr, nbytes)], sim=sim, latency=(lo, hi),
                               out_stall=0.2, r_pause=0.2, ar_pause=0.2, seed=seed)
        assert noisy.data[0] == mem[addr:addr + nbytes]
        out.append({
            "data_width": width, "outstanding": outstanding, "latency": latency,
            "bytes": nbytes, "cycles": run.cycles[0], "predicted": predicted,
            "exact": run.cycles[0] == predicted,
            "bytes_per_cycle": round(nbytes / run.cycles[0], 3),
            "bytes_per_cycle_sustained": round(cfg.bytes_per_cycle(latency), 3),
            "bursts": len(run.bursts),
            "latency_range": [lo, hi], "stalls": 0.2, "cycles_random": noisy.cycles[0],
            "lower_bound": cfg.cycles(addr, nbytes, lo),
            "within_bound": noisy.cycles[0] >= cfg.cycles(addr, nbytes, lo),
        })
    return out


def weight_fetch():
    cfg = LayerConfig(arch="gpt2", d_model=768, heads=12, d_ff=3072, seq=64, lanes=8,
                      linear_cols=16, ffn_cols=16)
    nbytes = image_layout(cfg)[-1].end
    out = []
    for width, outstanding, latency in ((512, 8, 100), (512, 2, 100), (256, 8, 100)):
        reader = AxiReaderConfig(data_width=width, outstanding=outstanding)
        stages = weight_fetch_cycles(cfg, reader, latency)
        cycles = layer_fetch_cycles(cfg, reader, latency)
        out.append({
            "layer": "gpt2 d768 d_ff3072", "image_bytes": nbytes, "data_width": width,
            "outstanding": outstanding, "latency": latency, "cycles": cycles,
            "per_stage_alone": stages, "clock_mhz": CLOCK_HZ / 1e6,
            "us": round(cycles / CLOCK_HZ * 1e6, 1),
            "gbytes_per_s": round(nbytes / (cycles / CLOCK_HZ) / 1e9, 2),
            "peak_gbytes_per_s": round(reader.lanes * CLOCK_HZ / 1e9, 2),
        })
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", default="icarus", choices=("icarus", "verilator"))
    ap.add_argument("--quick", action="store_true", help="16 KB transfers instead of 64 KB")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    result = {"sim": args.sim,
              "measured": measure(args.sim, (16 if args.quick else 64) * 1024, args.seed),
              "weight_fetch": weight_fetch()}
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
