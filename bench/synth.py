"""Synthesis benchmark of the systolic GEMM: Fmax and resources per MAC over array sizes.

    .venv/bin/python bench/synth.py [--quick] [--jobs 2] [--out synth.json]
    .venv/bin/python bench/synth.py --update-baselines [--slow]

Prints JSON: per target (ECP5-85F and iCE40UP5K with place and route, UltraScale+ area only)
and per array size, LUT/FF/DSP/BRAM, the same per MAC, Fmax and the critical path; then the
issue's targets (8×8 int8 GEMM at ≥ 100 MHz on ECP5-85F; one multiplier per int8 MAC, half
with packing on xcup) with whether they are met. ``--update-baselines`` regenerates
``flows/baselines/*.json`` for the designs of ``BASELINE_DESIGNS`` (the fast ones, or all with
``--slow``) instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor

SWEEP = {
    "ecp5-85f": [(2, 2), (4, 4), (8, 8)],
    "ice40-up5k": [(1, 1), (2, 2), (2, 4)],
    "xcup": [(2, 2), (4, 4), (8, 8), (16, 16)],
}
QUICK = {"ecp5-85f": [(2, 2), (8, 8)], "ice40-up5k": [(2, 2)], "xcup": [(4, 4), (8, 8)]}
BASE = {"k": 64, "n": 64, "lanes": 4}


def one(target, rows, cols):
    from llmloom.flows.synth import synthesize
    from llmloom.hw.blocks.gemm import Gemm, GemmConfig

    cfg = GemmConfig(rows=rows, cols=cols, **BASE)
    res = synthesize(Gemm(cfg), target, progress=False)
    macs = rows * cols
    return {
        "target": target, "rows": rows, "cols": cols, "macs": macs, **cfg.to_dict(),
        "lut": res.lut, "ff": res.ff, "dsp": res.dsp, "bram": res.bram,
        "fmax_mhz": None if res.fmax_mhz is None else round(res.fmax_mhz, 2),
        "fits": res.fits,
        "per_mac": {k: round(v / macs, 3) for k, v in res.resources().items()},
        "dsp_per_mac": res.dsp / macs, "packing": False,
        "critical_path": res.raw.get("critical_path"), "pnr_error": res.raw.get("pnr_error"),
        "seconds": round(res.seconds, 1), "tools": res.tools,
    }


def update_baselines(slow, jobs):
    from llmloom.flows.synth import BASELINE_DESIGNS, update_baseline
    from llmloom.sim.harness import get_harness

    for target, block, values, is_slow in BASELINE_DESIGNS:
        if is_slow and not slow:
            continue
        cfg = get_harness(block).config(values)
        entry = update_baseline(block, cfg, target, progress=False)
        print(json.dumps({"target": target, "block": block, **entry}), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer array sizes")
    ap.add_argument("--jobs", type=int, default=2, help="parallel synthesis runs (default 2)")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--update-baselines", action="store_true")
    ap.add_argument("--slow", action="store_true", help="with --update-baselines: all designs")
    args = ap.parse_args(argv)

    from llmloom.flows.synth import warm_tools
    warm_tools(("ice40-up5k", "ecp5-85f"))
    if args.update_baselines:
        update_baselines(args.slow, args.jobs)
        return 0

    sweep = QUICK if args.quick else SWEEP
    jobs = [(t, r, c) for t, sizes in sweep.items() for r, c in sizes]
    t0 = time.perf_counter()
    # Biggest first, so that the long place-and-route runs overlap the short ones.
    jobs.sort(key=lambda j: -j[1] * j[2])
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        runs = list(pool.map(one, *zip(*jobs, strict=True)))
    runs.sort(key=lambda r: (r["target"], r["macs"]))

    def find(target, rows, cols):
        return next((r for r in runs if (r["target"], r["rows"], r["cols"]) ==
                     (target, rows, cols)), None)

    e8 = find("ecp5-85f", 8, 8)
    x8 = find("xcup", 8, 8)
    targets = {
        "ecp5_85f_8x8_fmax_mhz": e8 and e8["fmax_mhz"],
        "ecp5_85f_8x8_at_least_100_mhz": bool(e8 and e8["fmax_mhz"] and e8["fmax_mhz"] >= 100),
        "xcup_dsp_per_mac_unpacked": x8 and x8["dsp_per_mac"],
        "one_multiplier_per_int8_mac": all(r["dsp"] == r["macs"] for r in runs if r["fits"]),
        "xcup_dsp_per_mac_packed": None,
        "packing_note": "the GEMM has no DSP packing option yet (two int8 MACs per DSP48E2); "
                        "nothing to measure with packing",
    }
    report = {"bench": "synth", "base_config": BASE, "runs": runs, "targets": targets,
              "seconds": round(time.perf_counter() - t0, 1)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
