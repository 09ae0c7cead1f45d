"""GEMM benchmark: utilisation on GPT-2-like shapes, and simulation throughput per simulator.

Prints JSON. Run: ``./dev llmloom`` environment, then ``.venv/bin/python bench/gemm.py``
(``--quick`` for a smaller run). Utilisation = MACs / (cycles × rows × cols), measured on
Verilator with inputs offered every cycle and the output always ready (weights preloaded).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from llmloom.hw.blocks.gemm import GemmConfig
from llmloom.perf.cycles import gemm_cycles
from llmloom.sim.runner import run_block

# (M tokens, K = d_model, N features): GPT-2 small's d_model 768 and a 64-wide head slice, and
# a shorter K to show where fill and flush begin to matter.
SHAPES = [(64, 768, 64), (64, 256, 64), (64, 64, 64)]
ARRAYS = [(4, 4), (8, 8)]
THROUGHPUT = {"amaranth": (16, 96, 16), "icarus": (32, 256, 32), "verilator": (64, 768, 64)}


def measure(cfg, m, sim, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (m, cfg.k), dtype=np.int8)
    w = rng.integers(-128, 128, (cfg.k, cfg.n), dtype=np.int8)
    result = run_block("gemm", cfg, {"a": a, "w": w}, sim=sim)
    ok = bool(np.array_equal(result.outputs["c"], a.astype(np.int64) @ w.astype(np.int64)))
    return result, ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only K=256 and 4×4 for sims")
    args = parser.parse_args(argv)
    out = {"utilization": [], "throughput": []}
    shapes = SHAPES[1:2] if args.quick else SHAPES
    for m, k, n in shapes:
        for r, c in ARRAYS:
            cfg = GemmConfig(rows=r, cols=c, k=k, n=n, lanes=8)
            result, ok = measure(cfg, m, "verilator")
            out["utilization"].append({
                "m": m, "k": k, "n": n, "array": f"{r}x{c}", "cycles": result.cycles,
                "predicted_cycles": gemm_cycles(cfg, m), "bit_exact": ok,
                "utilization": round(m * k * n / (result.cycles * r * c), 4),
            })
            print(json.dumps(out["utilization"][-1]), file=sys.stderr)
    for sim, (m, k, n) in THROUGHPUT.items():
        if args.quick:
            m, k, n = 16, 96, 16
        cfg = GemmConfig(rows=8, cols=8, k=k, n=n, lanes=8)
        result, ok = measure(cfg, m, sim)
        out["throughput"].append({
            "sim": sim, "m": m, "k": k, "n": n, "array": "8x8", "sim_cycles": result.sim_cycles,
            "wall_s": round(result.wall_s, 3), "cycles_per_s": round(result.cycles_per_s),
            "bit_exact": ok,
        })
        print(json.dumps(out["throughput"][-1]), file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
