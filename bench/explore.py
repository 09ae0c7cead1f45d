"""Benchmark of the analytical model: design points evaluated per second.

Prints one JSON object to stdout::

    python bench/explore.py [--repeat N]

``explore_points_per_s`` is the whole vectorised exploration (GPT-2 medium on an Alveo U280,
decode objective: evaluation, constraint checks, Pareto front); ``evaluate_points_per_s`` the
evaluation alone on one batch; ``estimate_per_s`` the single-design path with its JSON document.
The target is >= 10,000 points/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from llmloom.perf import estimate, explore, get_preset
from llmloom.perf.explore import grid_batch
from llmloom.perf.spatial import evaluate, make_context


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    best_explore = None
    for _ in range(args.repeat):
        t = time.perf_counter()
        r = explore("gpt2-medium", "u280", objective="decode", progress=False)
        dt = time.perf_counter() - t
        if best_explore is None or dt < best_explore[0]:
            best_explore = (dt, r.evaluated, r.feasible, r.value)

    ctx = make_context("gpt2-medium", "u280", "W8A8", seq=512)
    rng = np.random.default_rng(0)
    grid = rng.integers(0, 9 * 10, size=(50_000, 3))
    db = grid_batch(ctx, grid, 1, clock_mhz=300.0, pack=2, decode_kernel="gemv")
    best_eval = None
    for _ in range(args.repeat):
        t = time.perf_counter()
        evaluate(ctx, db)
        dt = time.perf_counter() - t
        best_eval = dt if best_eval is None else min(best_eval, dt)

    design = get_preset("chen2024-gpt2-u280").design
    n = 50
    t = time.perf_counter()
    for _ in range(n):
        estimate("gpt2-medium", "u280", design)
    dt_est = time.perf_counter() - t

    print(json.dumps({
        "benchmark": "llmloom.perf explore",
        "python": platform.python_version(), "numpy": np.__version__,
        "explore_points": best_explore[1], "explore_feasible": best_explore[2],
        "explore_seconds": round(best_explore[0], 3),
        "explore_points_per_s": round(best_explore[1] / best_explore[0]),
        "explore_best_decode_s_per_token": best_explore[3],
        "evaluate_points": len(grid), "evaluate_seconds": round(best_eval, 3),
        "evaluate_points_per_s": round(len(grid) / best_eval),
        "estimate_per_s": round(n / dt_est, 1),
        "target_points_per_s": 10_000,
        "meets_target": best_explore[1] / best_explore[0] >= 10_000,
    }, indent=2))


if __name__ == "__main__":
    main()
