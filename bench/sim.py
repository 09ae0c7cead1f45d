"""Simulation speed: Verilator driven from Python through cocotb against the compiled driver.

Prints JSON. Run in the ``./dev`` environment: ``.venv/bin/python bench/sim.py`` (``--quick``
for small shapes, ``--only CASE ...`` for some cases, ``--out R.json`` to keep the JSON too).

For each case (the 8×8 GEMM on 64×768×64, a row kernel, attention and the GPT-2 block at
d_model 64; ``gpt2-block-256`` at d_model 256 on request, its build being long) and each
driver (``cocotb``; ``compiled`` on 1 and on 2 Verilator threads) the same tensors run twice in
a fresh build cache: ``cycles_per_s`` is simulated cycles over the time spent simulating (the
second run's; build excluded), ``cycles_per_cpu_s`` the same over the simulator's processor
time (what a shared, loaded machine distorts least; with 2 threads it counts both; for the
compiled driver, its whole process), ``build_s`` the first run's wall time less the second's
(the Verilator build: the model, the harness, the C++ compile). Every run is checked against
the golden model, and the cycle counts of all drivers against each other.

``--flags NAME ...`` builds the compiled driver's model with other Verilator or make flags
(:data:`FLAGS`; each its own build), which is how ``llmloom.sim.verilated``'s flags were chosen;
``--stalls`` runs under a stall pattern (the same seeds for every driver).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

from llmloom.flows.verify import verify
from llmloom.sim import verilated
from llmloom.sim.blocks.layers import Gpt2BlockHarness
from llmloom.sim.harness import get_harness
from llmloom.sim.streams import STALL_KINDS, Stalls
from llmloom.sim.weights import random_layer_weights

#: (driver, Verilator threads)
DRIVERS = [("cocotb", 1), ("compiled", 1), ("compiled", 2)]
#: flag sets for the compiled driver's model: name → (Verilator flags, make variables), each
#: replacing llmloom.sim.verilated's; "default" is theirs
FLAGS = {
    "default": (verilated.VERILATOR_FLAGS, verilated.MAKE_FLAGS),
    "x-fast": ((*verilated.VERILATOR_FLAGS, "--x-assign", "fast", "--x-initial", "fast"),
               verilated.MAKE_FLAGS),
    "cxx-O2": (verilated.VERILATOR_FLAGS, ("OPT_FAST=-O2", "OPT_GLOBAL=-O2")),
    "cxx-O1": (verilated.VERILATOR_FLAGS, ("OPT_FAST=-O1", "OPT_GLOBAL=-O1")),
    "split": ((*verilated.VERILATOR_FLAGS, "--output-split-cfuncs", "2000"),
              verilated.MAKE_FLAGS),
    "merge-cond": (tuple(f for f in verilated.VERILATOR_FLAGS if f != "-fno-merge-cond"),
                   verilated.MAKE_FLAGS),
}
#: the issue's targets, simulated cycles per second
TARGETS = {"gemm": 1_000_000, "gpt2-block": 100_000}


def _arrays(lanes, rows, cols):
    return dict(lanes=lanes, linear_rows=rows, linear_cols=cols, ffn_rows=rows, ffn_cols=cols,
                qk_rows=rows, qk_cols=cols, pv_rows=rows, pv_cols=cols)


def gemm_case(m, k, n, array=8):
    def make(rng):
        h = get_harness("gemm")
        t = {"a": rng.integers(-128, 128, (m, k), dtype=np.int8),
             "w": rng.integers(-128, 128, (k, n), dtype=np.int8)}
        return h, h.config({"rows": array, "cols": array, "lanes": 8}, t), t
    return make, {"block": "gemm", "m": m, "k": k, "n": n, "array": f"{array}x{array}"}


def layernorm_case(rows, length, lanes=8):
    def make(rng):
        h = get_harness("layernorm")
        t = {"x": rng.integers(-128, 128, (rows, length), dtype=np.int8),
             "x_scale": np.float64(1 / 32), "gamma": rng.normal(1.0, 0.3, length),
             "beta": rng.normal(0.0, 0.2, length)}
        return h, h.config({"lanes": lanes, "out_scale": 0.03}, t), t
    return make, {"block": "layernorm", "rows": rows, "length": length, "lanes": lanes}


def attention_case(rows, d, heads, array=8):
    def make(rng):
        h = get_harness("attention")
        t = {n: rng.integers(-128, 128, (rows, d), dtype=np.int8) for n in "qkv"}
        values = {"heads": heads, "seq": rows, "lanes": 8, "qk_rows": array, "qk_cols": array,
                  "pv_rows": array, "pv_cols": array, "causal": True, "score_scale": 0.05}
        return h, h.config(values, t), t
    return make, {"block": "attention", "rows": rows, "d_model": d, "heads": heads,
                  "array": f"{array}x{array}"}


def gpt2_case(d, heads, d_ff, rows, prefill, array=8, lanes=8):
    def make(rng):
        h = Gpt2BlockHarness().options(weights=random_layer_weights(d, d_ff, rng),
                                       mode="decode", prefill=prefill)
        t = {"x": rng.normal(size=(rows, d)).astype(np.float32)}
        values = dict(d_model=d, heads=heads, d_ff=d_ff, seq=rows) | _arrays(lanes, array,
                                                                             array)
        return h, h.config(values, t), t
    return make, {"block": "gpt2-block", "d_model": d, "heads": heads, "d_ff": d_ff,
                  "rows": rows, "prefill": prefill, "array": f"{array}x{array}"}


CASES = {
    "gemm": gemm_case(64, 768, 64),
    "layernorm": layernorm_case(64, 768),
    "attention": attention_case(16, 64, 4),
    "gpt2-block": gpt2_case(64, 4, 256, 16, 12),
}
#: run only when named with --only
EXTRA = {"gpt2-block-256": gpt2_case(256, 4, 1024, 16, 12)}
QUICK = {
    "gemm": gemm_case(16, 96, 16),
    "layernorm": layernorm_case(8, 64),
    "attention": attention_case(8, 16, 2, array=4),
    "gpt2-block": gpt2_case(16, 2, 64, 6, 4, array=4, lanes=4),
}


def _run(h, cfg, t, driver, threads, stalls):
    t0 = time.perf_counter()
    v = verify(h, cfg, t, sim="verilator", driver=driver, threads=threads,
               stalls_in=Stalls(stalls, 1), stalls_out=Stalls(stalls, 2))
    return v, time.perf_counter() - t0


def measure(make, driver, threads, flags="default", stalls="none", seed=0):
    """Two runs of one case in a fresh build cache: the first builds, the second reuses."""
    h, cfg, t = make(np.random.default_rng(seed))
    saved = verilated.VERILATOR_FLAGS, verilated.MAKE_FLAGS
    verilated.VERILATOR_FLAGS, verilated.MAKE_FLAGS = FLAGS[flags]
    try:
        cold, cold_s = _run(h, cfg, t, driver, threads, stalls)
        warm, warm_s = _run(h, cfg, t, driver, threads, stalls)
    finally:
        verilated.VERILATOR_FLAGS, verilated.MAKE_FLAGS = saved
    r = warm.result
    return {
        "driver": driver, "threads": threads,
        "flags": flags if driver == "compiled" else "default",
        "bit_exact": cold.exact and warm.exact,
        "cycles": r.cycles, "sim_cycles": r.sim_cycles, "tensor_cycles": r.tensor_cycles,
        "build_s": round(cold_s - warm_s, 1), "sim_wall_s": round(r.wall_s, 3),
        "cycles_per_s": round(r.cycles_per_s),
        "cycles_per_cpu_s": round(r.sim_cycles / r.cpu_s) if r.cpu_s else None,
        "warm_run_s": round(warm_s, 2),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, for a smoke test")
    parser.add_argument("--only", nargs="*", metavar="CASE",
                        help=f"run only these cases ({', '.join(CASES)})")
    parser.add_argument("--drivers", nargs="*", metavar="DRIVER:THREADS",
                        help="the drivers to compare (default: cocotb:1 compiled:1 compiled:2)")
    parser.add_argument("--flags", nargs="*", metavar="NAME", default=["default"],
                        help=f"flag sets for the compiled driver ({', '.join(FLAGS)})")
    parser.add_argument("--stalls", choices=STALL_KINDS, default="none",
                        help="stall pattern of every run (default: none)")
    parser.add_argument("--out", metavar="R.json", help="also write the JSON here")
    args = parser.parse_args(argv)
    cases = QUICK if args.quick else CASES | EXTRA
    if args.only:
        bad = [c for c in args.only if c not in cases]
        if bad:
            parser.error(f"unknown case {bad[0]!r}; allowed: {', '.join(cases)}")
        cases = {k: v for k, v in cases.items() if k in args.only}
    elif not args.quick:
        cases = CASES
    bad = [f for f in args.flags if f not in FLAGS]
    if bad:
        parser.error(f"unknown flag set {bad[0]!r}; allowed: {', '.join(FLAGS)}")
    drivers = DRIVERS
    if args.drivers:
        try:
            drivers = [(d.split(":")[0], int(d.split(":")[1])) for d in args.drivers]
        except (IndexError, ValueError):
            parser.error("--drivers takes DRIVER:THREADS, e.g. compiled:2")
    runs_of = [(d, n, "default") for d, n in drivers if d != "compiled"]
    runs_of += [(d, n, f) for d, n in drivers if d == "compiled" for f in args.flags]
    doc = {"schema": "llmloom.bench.sim/2", "cpus": os.cpu_count(),
           "load_avg_start": os.getloadavg()[0], "stalls": args.stalls,
           "flags": {f: {"verilator": list(FLAGS[f][0]), "make": list(FLAGS[f][1])}
                     for f in args.flags}, "cases": {}}
    # a fresh cache, so that every build is measured cold
    with tempfile.TemporaryDirectory(prefix="llmloom-bench-sim-") as cache:
        os.environ["LLMLOOM_CACHE"] = cache
        for name, (make, shape) in cases.items():
            runs = []
            for driver, threads, flags in runs_of:
                entry = measure(make, driver, threads, flags, args.stalls)
                runs.append(entry)
                print(json.dumps({"case": name} | entry), file=sys.stderr)
            base = next((r for r in runs if r["driver"] == "cocotb"), None)
            best = max((r for r in runs if r["driver"] == "compiled"),
                       key=lambda r: r["cycles_per_s"], default=None)
            summary = {
                "same_cycles": len({(r["cycles"], r["sim_cycles"], str(r["tensor_cycles"]))
                                    for r in runs}) == 1,
                "all_bit_exact": all(r["bit_exact"] for r in runs),
            }
            if base and best:
                summary["speedup"] = round(best["cycles_per_s"] / base["cycles_per_s"], 1)
            if best and name in TARGETS and not args.quick:
                summary |= {"target_cycles_per_s": TARGETS[name],
                            "meets_target": best["cycles_per_s"] >= TARGETS[name],
                            "meets_target_per_cpu_s":
                                (best["cycles_per_cpu_s"] or 0) >= TARGETS[name]}
            doc["cases"][name] = {"shape": shape, "runs": runs, "summary": summary}
    doc["load_avg_end"] = os.getloadavg()[0]
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
