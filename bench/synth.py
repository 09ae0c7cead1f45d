"""Synthesis benchmark of the systolic GEMM: Fmax and resources per MAC over array sizes.

    .venv/bin/python bench/synth.py [--quick] [--jobs 2] [--seeds 1] [--out synth.json]
    .venv/bin/python bench/synth.py --update-baselines [--slow]

Prints JSON: per target (ECP5-85F and iCE40UP5K with place and route, UltraScale+ area only)
and per array size, LUT/FF/DSP/BRAM, the same per MAC, Fmax and the critical path, with DSP
packing (``dsp_packing``, two int8 MACs per DSP48E2) as well on xcup; then our targets
(8×8 int8 GEMM at ≥ 100 MHz on ECP5-85F; one multiplier per int8 MAC, half with packing on
xcup) with whether they are met. ``--seeds N`` places and routes the ECP5-85F 8×8 GEMM with N
placer seeds (Fmax varies with the seed; the target is judged on the lowest).
``--update-baselines`` regenerates ``flows/baselines/*.json`` for the designs of
``BASELINE_DESIGNS`` (the fast ones, or all with ``--slow``) instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

# (rows, cols, dsp_packing) per target
SWEEP = {
    "ecp5-85f": [(2, 2, False), (4, 4, False), (8, 8, False)],
    "ice40-up5k": [(1, 1, False), (2, 2, False), (2, 4, False)],
    "xcup": [(2, 2, False), (4, 4, False), (8, 8, False), (16, 16, False),
             (2, 2, True), (4, 4, True), (8, 8, True), (16, 16, True)],
}
QUICK = {"ecp5-85f": [(2, 2, False), (8, 8, False)], "ice40-up5k": [(2, 2, False)],
         "xcup": [(4, 4, False), (8, 8, False), (4, 4, True), (8, 8, True)]}
BASE = {"k": 64, "n": 64, "lanes": 4}


def one(target, rows, cols, packing=False, seed=1):
    from llmloom.flows.synth import synthesize
    from llmloom.hw.blocks.gemm import Gemm, GemmConfig

    cfg = GemmConfig(rows=rows, cols=cols, dsp_packing=packing, **BASE)
    res = synthesize(Gemm(cfg), target, progress=False, seed=seed)
    macs = rows * cols
    return {
        "target": target, "rows": rows, "cols": cols, "macs": macs, **cfg.to_dict(),
        "seed": seed if res.fmax_mhz is not None else None,
        "lut": res.lut, "ff": res.ff, "dsp": res.dsp, "bram": res.bram,
        "fmax_mhz": None if res.fmax_mhz is None else round(res.fmax_mhz, 2),
        "fits": res.fits,
        "per_mac": {k: round(v / macs, 3) for k, v in res.resources().items()},
        "dsp_per_mac": res.dsp / macs, "packing": packing,
        "critical_path": res.raw.get("critical_path"), "pnr_error": res.raw.get("pnr_error"),
        "seconds": round(res.seconds, 1), "tools": res.tools,
    }


def update_baselines(slow, jobs):
    from llmloom.flows.synth_baselines import BASELINE_DESIGNS, update_baseline
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
    ap.add_argument("--seeds", type=int, default=1,
                    help="placer seeds for the ECP5-85F 8x8 GEMM (default 1)")
    ap.add_argument("--update-baselines", action="store_true")
    ap.add_argument("--slow", action="store_true", help="with --update-baselines: all designs")
    args = ap.parse_args(argv)
    if args.seeds < 1:
        ap.error(f"--seeds {args.seeds} is out of range; allowed: >= 1")

    from llmloom.flows.synth import warm_tools
    warm_tools(("ice40-up5k", "ecp5-85f"))
    if args.update_baselines:
        update_baselines(args.slow, args.jobs)
        return 0

    sweep = QUICK if args.quick else SWEEP
    jobs = [(t, r, c, p, 1) for t, sizes in sweep.items() for r, c, p in sizes]
    jobs += [("ecp5-85f", 8, 8, False, seed) for seed in range(2, args.seeds + 1)]
    t0 = time.perf_counter()
    # Biggest place and route first, so that the long runs overlap the short ones.
    jobs.sort(key=lambda j: (j[0] == "xcup", -j[1] * j[2]))
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        runs = list(pool.map(one, *zip(*jobs, strict=True)))
    runs.sort(key=lambda r: (r["target"], r["packing"], r["macs"], r["seed"] or 0))

    def find(target, rows, cols, packing=False):
        return [r for r in runs if (r["target"], r["rows"], r["cols"], r["packing"]) ==
                (target, rows, cols, packing)]

    e8 = find("ecp5-85f", 8, 8)
    e8_fmax = [r["fmax_mhz"] for r in e8 if r["fmax_mhz"] is not None]
    x8 = next(iter(find("xcup", 8, 8)), None)
    x8p = next(iter(find("xcup", 8, 8, True)), None)
    unpacked = [r for r in runs if r["fits"] and not r["packing"]]
    packed = [r for r in runs if r["fits"] and r["packing"]]
    targets = {
        "ecp5_85f_8x8_fmax_mhz": min(e8_fmax) if e8_fmax else None,
        "ecp5_85f_8x8_fmax_mhz_by_seed": {r["seed"]: r["fmax_mhz"] for r in e8},
        "ecp5_85f_8x8_fmax_mhz_median": statistics.median(e8_fmax) if e8_fmax else None,
        "ecp5_85f_8x8_at_least_100_mhz": bool(e8_fmax) and min(e8_fmax) >= 100,
        "xcup_8x8_dsp_unpacked": x8 and x8["dsp"],
        "xcup_8x8_dsp_packed": x8p and x8p["dsp"],
        "xcup_dsp_per_mac_unpacked": x8 and x8["dsp_per_mac"],
        "xcup_dsp_per_mac_packed": x8p and x8p["dsp_per_mac"],
        # every run, every target: one multiplier per int8 MAC without packing ...
        "one_multiplier_per_int8_mac": bool(unpacked) and all(
            r["dsp"] == r["macs"] for r in unpacked),
        # ... and half as many with it (xcup: one DSP48E2 per two MACs)
        "half_with_packing": bool(packed) and all(2 * r["dsp"] == r["macs"] for r in packed),
    }
    targets["all_met"] = (targets["ecp5_85f_8x8_at_least_100_mhz"]
                          and targets["one_multiplier_per_int8_mac"]
                          and targets["half_with_packing"])
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
