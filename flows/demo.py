"""``llmloom demo``: the README's main job on its built-in default.

For now: a GPT-2-style projection (64 tokens of d_model = 768 against 64 output features, a
head's slice of the Q projection) on two array sizes, simulated cycle by cycle, checked bit for
bit against the golden model, with the analytical model's prediction beside the measurement.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from llmloom.hw.blocks.gemm import GemmConfig
from llmloom.perf.cycles import gemm_cycles
from llmloom.sim.harness import get_harness
from llmloom.sim.runner import run_block

__all__ = ["run_demo", "DEMO_SHAPES"]

# (tokens M, d_model K, features N) and the arrays to run them on.
DEMO_SHAPES = {"full": (64, 768, 64), "quick": (16, 96, 16)}
DEMO_ARRAYS = ((4, 4), (8, 8))


def run_demo(sim="verilator", quick=False, seed=0, out=None):
    out = sys.stdout if out is None else out
    m, k, n = DEMO_SHAPES["quick" if quick else "full"]
    harness = get_harness("gemm")
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (k, n), dtype=np.int8)
    print(f"llmloom demo: C = A·W, A {m}×{k} int8 (tokens × d_model), W {k}×{n} int8, "
          f"on {sim}", file=out)
    rows = []
    all_exact = True
    for r, c in DEMO_ARRAYS:
        cfg = GemmConfig(rows=r, cols=c, k=k, n=n, lanes=8)
        t0 = time.perf_counter()
        result = run_block(harness, cfg, {"a": a, "w": w}, sim=sim,
                           progress=out.isatty() if hasattr(out, "isatty") else False)
        total = time.perf_counter() - t0
        exact = np.array_equal(result.outputs["c"], harness.golden(cfg, {"a": a, "w": w})["c"])
        all_exact &= exact
        predicted = gemm_cycles(cfg, m)
        util = m * k * n / (result.cycles * r * c)
        rows.append((f"{r}×{c}", result.cycles, predicted, f"{util:.3f}",
                     f"{m * k * n / result.cycles:.1f}", "yes" if exact else "NO",
                     f"{result.cycles_per_s:,.0f}", f"{total:.1f}"))
    header = ("array", "cycles", "predicted", "utilization", "MAC/cycle", "bit-exact",
              "sim cycles/s", "wall s")
    widths = [max(len(str(x[i])) for x in rows + [header]) for i in range(len(header))]
    line = "  ".join(f"{{:>{w}}}" for w in widths)
    print(line.format(*header), file=out)
    for row in rows:
        print(line.format(*row), file=out)
    print("bit-exact against the golden model on every array" if all_exact
          else "MISMATCH against the golden model", file=out)
    return 0 if all_exact else 1
