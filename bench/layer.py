"""Layer benchmark: GPT-2 blocks and a BERT layer through the composed RTL, prefill and decode.

Prints JSON. Run in the ``./dev`` environment: ``.venv/bin/python bench/layer.py`` (``--quick``
for one small block and layer, ``--sim`` to pick the simulator, ``--out R.json`` to keep the
JSON too). Each run is one sequence: a prefill of ``prefill`` rows, then ``decode`` steps of
one row (GPT-2), each offered once the previous output is out, as autoregressive decode needs;
a BERT layer is one tensor of ``seq`` rows. Weights are seeded random floats
(:func:`llmloom.sim.weights.random_layer_weights`), quantised W8A8 and calibrated on the run's
input.

For the prefill tensor and the decode steps the JSON gives the measured cycles (first input
beat to last output beat) against

* the ideal bound: the tensor's multiply-accumulates over the peak MACs per cycle of all the
  layer's arrays (the six linear engines and the attention's Q·Kᵀ and P·V arrays, times
  ``head_engines``), i.e. every multiplier busy all the time;
* the analytical model: ``perf.cycles.layer_timing(cfg, sizes)``, with its error in %, the
  bottleneck stage (the one busy for the most cycles) and its utilisation (busy / cycles).

MACs are the arrays' own: attention spans all ``seq`` keys (masked ones are computed too, as
the arrays do). Each configuration runs on ``engine=gemm`` and ``engine=gemv`` (every linear
stage on the decode GEMV, same multipliers) and with heads in sequence (``head_engines=1``)
and in parallel; every run is checked bit for bit against the layer's golden model and
against the float64 layer (cosine). ``sim_wall_s`` is simulation only; ``total_wall_s`` adds
the Verilog generation and the simulator build (cached by the Verilog's hash under
``~/.cache/llmloom``: a second run of the same configuration skips it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from llmloom.flows.verify import verify
from llmloom.perf.cycles import layer_timing
from llmloom.sim.blocks.layers import BertLayerHarness, Gpt2BlockHarness
from llmloom.sim.runner import SIMULATORS
from llmloom.sim.weights import random_layer_weights

BAR_PCT = 5.0        # the bar for |predicted − measured| / measured
AIM_PCT = 2.0        # and its aim
MIN_COSINE = 0.99


def _arrays(lanes, linear, ffn, attn):
    return dict(lanes=lanes, linear_rows=linear[0], linear_cols=linear[1], ffn_rows=ffn[0],
                ffn_cols=ffn[1], qk_rows=attn[0], qk_cols=attn[1], pv_rows=attn[0],
                pv_cols=attn[1])


# name → (arch, layer fields, prefill rows, decode steps, runs as (engine, head_engines)).
# "uniform": every array 8×8 (as the paper's design gives every linear kernel the same array,
# the FFN with 4× the work is the bottleneck); "ffn4x": FFN arrays 4× wider, the paper's work
# balance M_ffn = (d_ff/d)·M_linear.
D64 = dict(d_model=64, heads=4, d_ff=256, seq=32)
CONFIGS = {
    "gpt2-d64-uniform": ("gpt2", D64 | _arrays(8, (8, 8), (8, 8), (8, 8)), 24, 3,
                         [("gemm", 1), ("gemv", 1), ("gemm", 4), ("gemv", 4)]),
    "gpt2-d64-ffn4x": ("gpt2", D64 | _arrays(8, (8, 8), (8, 32), (8, 8)), 24, 3,
                       [("gemm", 1), ("gemv", 1)]),
    "bert-d64-uniform": ("bert", D64 | _arrays(8, (8, 8), (8, 8), (8, 8)), 32, 0,
                         [("gemm", 1), ("gemm", 4)]),
}
QUICK = {
    "gpt2-d16": ("gpt2", dict(d_model=16, heads=2, d_ff=64, seq=8)
                 | _arrays(4, (4, 4), (4, 8), (4, 4)), 5, 2,
                 [("gemm", 1), ("gemv", 1), ("gemm", 2)]),
    "bert-d16": ("bert", dict(d_model=16, heads=2, d_ff=64, seq=8)
                 | _arrays(4, (4, 4), (4, 8), (4, 4)), 8, 0, [("gemm", 1), ("gemm", 2)]),
}


def tensor_figures(cfg, rows, measured):
    """One tensor of ``rows`` rows (measured cycles, a list when several steps): the ideal
    bound, perf's prediction and error, the bottleneck stage and its utilisation."""
    timing = layer_timing(cfg, [rows])
    stages = {s["name"]: s for s in timing.as_dict()["stages"]}
    macs = sum(s["macs"] for s in stages.values())
    peak = sum(s["peak_macs_per_cycle"] for s in stages.values())
    steps = measured if isinstance(measured, list) else [measured]
    mean = sum(steps) / len(steps)
    errors = [100.0 * (timing.cycles - m) / m for m in steps]
    worst = max(errors, key=abs)
    ideal = macs / peak
    bottleneck = stages[timing.bottleneck]
    return {
        "rows": rows, "cycles": round(mean, 1), "predicted_cycles": timing.cycles,
        "error_pct": round(worst, 3), "ideal_cycles": round(ideal, 1),
        "cycles_over_ideal": round(mean / ideal, 2), "macs": macs,
        "peak_macs_per_cycle": peak, "mac_utilisation": round(macs / (mean * peak), 4),
        "bottleneck": timing.bottleneck,
        "bottleneck_utilisation": round(bottleneck["utilisation"], 4),
        "bottleneck_mac_utilisation": (None if bottleneck["mac_utilisation"] is None
                                       else round(bottleneck["mac_utilisation"], 4)),
    } | ({"step_cycles": steps} if isinstance(measured, list) else {})


def measure(name, arch, fields, prefill, decode, engine, head_engines, sim, seed=0):
    """One run of one configuration: a prefill and ``decode`` steps (GPT-2) or one tensor
    (BERT). Returns the JSON entry."""
    rng = np.random.default_rng(seed)
    d, f = fields["d_model"], fields["d_ff"]
    weights = random_layer_weights(d, f, rng)
    rows = prefill + decode
    x = rng.normal(size=(rows, d)).astype(np.float32)
    if arch == "gpt2":
        harness = Gpt2BlockHarness().options(weights=weights, mode="decode" if decode else
                                             "prefill", prefill=prefill if decode else None)
    else:
        harness = BertLayerHarness().options(weights=weights)
    tensors = {"x": x}
    t0 = time.perf_counter()
    cfg = harness.config(fields | {"engine": engine, "head_engines": head_engines}, tensors)
    configured = time.perf_counter() - t0
    v = verify(harness, cfg, tensors, sim=sim, progress=sys.stderr.isatty())
    total = configured + v.run_wall_s
    result, metrics, predicted = v.result, v.float_metrics, v.timing
    exact = v.exact          # y_int, and y (its dequantisation)
    (sizes,) = harness.shape_args(cfg, v.prepared)
    entry = {
        "config": name, "arch": arch, "engine": engine, "head_engines": head_engines,
        "bit_exact": exact, "cosine_vs_float": round(metrics["cosine_vs_float"], 6),
        "max_abs_error_vs_float": round(metrics["max_abs_error_vs_float"], 4),
        "cycles": result.cycles, "predicted_cycles": v.predicted_cycles,
        "tensor_cycles": result.tensor_cycles,
        "predicted_tensor_cycles": predicted["tensor_cycles"],
        "prefill": tensor_figures(cfg, sizes[0], result.tensor_cycles[0]),
        "decode": (tensor_figures(cfg, 1, result.tensor_cycles[1:]) if decode else None),
        "sim": sim, "sim_cycles": result.sim_cycles, "sim_wall_s": round(result.wall_s, 2),
        "sim_cycles_per_s": round(result.cycles_per_s), "total_wall_s": round(total, 1),
    }
    return entry


def summarise(runs):
    """Per configuration: the GEMV's decode gain and the parallel heads' gain, and over every
    run the worst prediction error and the lowest cosine."""
    out = {}
    by = {}
    for r in runs:
        by.setdefault(r["config"], {})[(r["engine"], r["head_engines"])] = r
    for name, rs in by.items():
        s = {}
        gemm, gemv = rs.get(("gemm", 1)), rs.get(("gemv", 1))
        if gemm and gemv and gemm["decode"]:
            s["gemv_decode_speedup"] = round(gemm["decode"]["cycles"] / gemv["decode"]["cycles"],
                                             3)
            s["gemv_prefill_speedup"] = round(gemm["prefill"]["cycles"]
                                              / gemv["prefill"]["cycles"], 3)
        for (engine, e), r in rs.items():
            base = rs.get((engine, 1))
            if e > 1 and base:
                key = f"{engine}_head_engines_{e}_speedup"
                s[key] = {"prefill": round(base["prefill"]["cycles"] / r["prefill"]["cycles"], 3)}
                if r["decode"]:
                    s[key]["decode"] = round(base["decode"]["cycles"] / r["decode"]["cycles"], 3)
        out[name] = s
    errors = [abs(p - m) / m * 100 for r in runs
              for p, m in zip(r["predicted_tensor_cycles"], r["tensor_cycles"], strict=True)]
    return {"configs": out, "runs": len(runs),
            "all_bit_exact": all(r["bit_exact"] for r in runs),
            "min_cosine_vs_float": min(r["cosine_vs_float"] for r in runs),
            "max_tensor_error_pct": round(max(errors), 3),
            "within_bar_pct": BAR_PCT, "within_bar": max(errors) <= BAR_PCT,
            "within_aim_pct": AIM_PCT, "within_aim": max(errors) <= AIM_PCT,
            "cosine_bar": MIN_COSINE,
            "cosine_ok": min(r["cosine_vs_float"] for r in runs) >= MIN_COSINE}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one small GPT-2 block and BERT layer (d_model 16)")
    parser.add_argument("--sim", choices=SIMULATORS, default="verilator")
    parser.add_argument("--only", nargs="*", metavar="CONFIG",
                        help=f"run only these configurations ({', '.join(CONFIGS)})")
    parser.add_argument("--out", metavar="R.json", help="also write the JSON here")
    args = parser.parse_args(argv)
    configs = QUICK if args.quick else CONFIGS
    if args.only:
        bad = [c for c in args.only if c not in configs]
        if bad:
            parser.error(f"unknown configuration {bad[0]!r}; allowed: {', '.join(configs)}")
        configs = {k: v for k, v in configs.items() if k in args.only}
    runs = []
    for name, (arch, fields, prefill, decode, variants) in configs.items():
        for engine, engines in variants:
            entry = measure(name, arch, fields, prefill, decode, engine, engines, args.sim)
            runs.append(entry)
            brief = {k: entry[k] for k in ("config", "engine", "head_engines", "cycles",
                                           "predicted_cycles", "bit_exact", "cosine_vs_float",
                                           "sim_wall_s", "total_wall_s")}
            print(json.dumps(brief), file=sys.stderr)
    doc = {"schema": "llmloom.bench.layer/1", "sim": args.sim,
           "configs": {name: {"arch": arch, **fields, "prefill": prefill, "decode_steps": decode}
                       for name, (arch, fields, prefill, decode, _) in configs.items()},
           "summary": summarise(runs), "runs": runs}
    text = json.dumps(doc, indent=2)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
