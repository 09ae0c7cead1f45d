"""The resource model against synthesis: the table of both, its error, and its refit.

    .venv/bin/python bench/resources.py [--markdown]      # estimates vs the stored baselines
    .venv/bin/python bench/resources.py --synth [--slow]  # ... vs fresh Yosys runs as well
    .venv/bin/python bench/resources.py --refit           # LOGIC fitted from the baselines
    .venv/bin/python bench/resources.py --refit --write   # ... and stored as the model's
    .venv/bin/python bench/resources.py --multipliers     # single products through Yosys
    .venv/bin/python bench/resources.py --store BLOCK --target T [--set k=v ...]
    .venv/bin/python bench/resources.py --resynth BLOCK[,BLOCK...] [--targets T,...]

Prints JSON. The default compares ``llmloom.perf.resources`` with every stored baseline
(``flows/baselines/<target>.json``) of a modelled block on each family's target, and
summarises the error per resource (largest and mean relative error, how many within the
tolerance of ``flows.resources.ESTIMATE_TOLERANCES``); ``--markdown`` prints the table of both
for the README instead. ``--synth`` adds fresh Yosys runs (no place and route) of the test's
designs. ``--refit`` prints the least-squares refit of the fitted constants
(``perf.resources.LOGIC``) from the stored baselines (``--write`` stores it as the model's,
``perf/data/resource_logic.json``). ``--store`` synthesises one design
(Yosys only) and adds it to the baselines; ``--resynth`` synthesises again (Yosys only) every
stored baseline of the given blocks on the given targets and stores the new results (after a
change of the blocks' RTL).
"""

from __future__ import annotations

import argparse
import json
import sys

TARGETS = ("ice40-up5k", "ecp5-85f", "xcup")


def modelled_designs(target):
    from llmloom.flows.synth_baselines import design_id, load_baselines
    from llmloom.perf.resources import BLOCKS
    from llmloom.sim.harness import get_harness
    out = []
    for did, entry in load_baselines(target).items():
        if entry["block"] in BLOCKS:
            cfg = get_harness(entry["block"]).config(entry["config"])
            if design_id(entry["block"], cfg) == did:
                out.append((entry["block"], cfg))
    return out


def hostlink_rows(target):
    """The stored board cores (``HostLink``) of ``target`` against the model."""
    from llmloom.flows.resources import check_estimate, hostlink_id, stored_hostlinks
    from llmloom.flows.synth_targets import get_target
    from llmloom.perf.resources import estimate_hostlink
    rows = []
    for did, entry, cfg, max_rows in stored_hostlinks(target):
        if hostlink_id(cfg, max_rows) != did:
            continue
        est = estimate_hostlink(cfg, max_rows, get_target(target).family)
        ok, problems = check_estimate(entry, est)
        rows.append({"block": "hostlink", "design_id": did, "target": target,
                     "config": entry["config"],
                     "synth": {k: entry[k] for k in ("lut", "ff", "dsp", "bram", "fmax_mhz")},
                     "estimate": est, "ok": ok, "problems": problems})
    return rows


def summary(rows, tolerances):
    """Per resource: how many within tolerance and exact, and the relative error of the held
    out designs (those no constant was fitted to)."""
    out = {}
    for key in ("lut", "ff", "dsp", "bram"):
        errs = [(r["estimate"][key] - r["synth"][key]) / r["synth"][key]
                for r in rows if r["synth"].get(key) and not r.get("fitted")]
        out[key] = {
            "designs": len(rows),
            "held_out": sum(1 for r in rows if not r.get("fitted")),
            "within_tolerance": sum(1 for r in rows if r["ok"].get(key, True)),
            "held_out_max_abs_rel_error": round(max((abs(e) for e in errs), default=0.0), 3),
            "held_out_mean_abs_rel_error": round(sum(abs(e) for e in errs) / len(errs), 3) if errs
            else 0.0,
            "exact": sum(1 for r in rows if r["estimate"][key] == r["synth"][key]),
            "tolerance": str(tolerances[key]),
        }
    return out


def compare(targets, fresh=False, slow=False):
    from llmloom.flows.resources import (
        ESTIMATE_TOLERANCES,
        compare_estimates,
        fitted_ids,
        from_baselines,
        model_estimate,
    )
    doc = {"tolerances": {k: str(v) for k, v in ESTIMATE_TOLERANCES.items()}, "targets": {}}
    all_rows = []
    fitted = fitted_ids()
    for target in targets:
        report = compare_estimates(modelled_designs(target), model_estimate, target,
                                   results=from_baselines(target))
        rows = report.to_dict()["rows"] + hostlink_rows(target)
        for r in rows:
            r["fitted"] = r["design_id"] in fitted.get(target, ())
        doc["targets"][target] = {"rows": rows,
                                  "summary": summary(rows, ESTIMATE_TOLERANCES)}
        all_rows += rows
    if fresh:
        from llmloom.flows.resources import CHECK_DESIGNS
        from llmloom.sim.harness import get_harness
        fresh_rows = []
        for target, block, values, is_slow in CHECK_DESIGNS:
            if is_slow and not slow:
                continue
            report = compare_estimates([(block, get_harness(block).config(values))],
                                       model_estimate, target,
                                       synth_kwargs={"place": False, "progress": False})
            fresh_rows += report.to_dict()["rows"]
            print(json.dumps(fresh_rows[-1]["design_id"]), file=sys.stderr)
        doc["fresh"] = {"rows": fresh_rows, "summary": summary(fresh_rows, ESTIMATE_TOLERANCES)}
        all_rows += fresh_rows
    doc["summary"] = summary(all_rows, ESTIMATE_TOLERANCES)
    doc["ok"] = all(not r["problems"] for r in all_rows)
    return doc


def by_block(doc):
    """Per block: designs, the largest LUT and FF errors, DSP and BRAM counts exact."""
    rows = [r for t in doc["targets"].values() for r in t["rows"]] + \
        doc.get("fresh", {}).get("rows", [])
    blocks = {}
    for r in rows:
        b = blocks.setdefault(r["block"], {"designs": 0, "held": 0, "lut": [], "ff": [],
                                           "dsp_exact": 0, "bram_exact": 0})
        b["designs"] += 1
        b["dsp_exact"] += r["estimate"]["dsp"] == r["synth"]["dsp"]
        b["bram_exact"] += r["estimate"]["bram"] == r["synth"]["bram"]
        if r.get("fitted"):
            continue
        b["held"] += 1
        for key in ("lut", "ff"):
            b[key].append((r["estimate"][key] - r["synth"][key]) / r["synth"][key])
    lines = ["| block | designs × targets (held out) | DSP exact | BRAM exact | LUT error held "
             "out: mean, worst | FF error held out: mean, worst |", "|---|---|---|---|---|---|"]
    for name, b in blocks.items():
        cells = []
        for key in ("lut", "ff"):
            errs = b[key]
            cells.append("–" if not errs else
                         f"{sum(abs(e) for e in errs) / len(errs):.0%}, "
                         f"{max(errs, key=abs):+.0%}")
        lines.append(f"| {name} | {b['designs']} ({b['held']}) | {b['dsp_exact']}/{b['designs']}"
                     f" | {b['bram_exact']}/{b['designs']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def markdown(doc):
    """The table of both: per design and target, synthesis / estimate per resource."""
    head = ("| target | design | LUT synth / est. | FF synth / est. | DSP synth / est. | "
            "BRAM synth / est. |")
    lines = [head, "|---|---|---|---|---|---|"]
    rows = [r for t in doc["targets"].values() for r in t["rows"]] + \
        doc.get("fresh", {}).get("rows", [])
    for r in sorted(rows, key=lambda r: (r["target"], r["design_id"])):
        cells = []
        for key in ("lut", "ff", "dsp", "bram"):
            mark = "" if r["ok"].get(key, True) else " ✗"
            cells.append(f"{r['synth'][key]:g} / {r['estimate'][key]:g}{mark}")
        name = r["design_id"] if len(r["design_id"]) <= 60 else r["design_id"][:57] + "..."
        lines.append(f"| {r['target']} | {name} | " + " | ".join(cells) + " |")
    s = doc["summary"]
    lines.append("")
    lines.append("| resource | designs (held out) | within tolerance | exact | largest error held "
                 "out | mean error held out | tolerance |")
    lines.append("|---|---|---|---|---|---|---|")
    for key in ("lut", "ff", "dsp", "bram"):
        v = s[key]
        lines.append(f"| {key.upper()} | {v['designs']} ({v['held_out']}) | "
                     f"{v['within_tolerance']} | {v['exact']} | "
                     f"{v['held_out_max_abs_rel_error']:.0%} | "
                     f"{v['held_out_mean_abs_rel_error']:.1%} | {v['tolerance']} |")
    return "\n".join(lines)


def multipliers():
    """Each measured product (``flows.resources.MEASURED_PRODUCTS``) through Yosys again,
    beside the model."""
    from amaranth.hdl import Module, Signal, signed, unsigned
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from llmloom.flows.resources import MEASURED_PRODUCTS
    from llmloom.flows.synth import synthesize
    from llmloom.perf import resources as R

    class Product(wiring.Component):
        def __init__(self, shape):
            self.shape = shape
            a = signed(shape[0]) if shape[1] else unsigned(shape[0])
            if len(shape) == 3:
                b_bits = abs(shape[2]).bit_length() + 1
                super().__init__({"a": In(a), "y": Out(signed(shape[0] + b_bits + 1))})
            else:
                b = signed(shape[2]) if shape[3] else unsigned(shape[2])
                super().__init__({"a": In(a), "b": In(b),
                                  "y": Out(signed(shape[0] + shape[2] + 1))})

        def elaborate(self, platform):
            m = Module()
            ra = Signal.like(self.a)
            m.d.sync += ra.eq(self.a)
            if len(self.shape) == 3:
                m.d.sync += self.y.eq(ra * self.shape[2])
            else:
                rb = Signal.like(self.b)
                m.d.sync += [rb.eq(self.b), self.y.eq(ra * rb)]
            return m

    out = []
    for shape, _want in MEASURED_PRODUCTS:
        row = {"shape": list(shape)}
        for fam, target in zip(("ice40", "ecp5", "xcup"), TARGETS, strict=True):
            res = synthesize(Product(shape), target, place=False, progress=False)
            model = (R.const_multiplier_dsps(fam, *shape) if len(shape) == 3
                     else R.multiplier_dsps(fam, *shape))
            row[fam] = {"yosys": res.dsp, "model": model}
        out.append(row)
        print(json.dumps(row), file=sys.stderr)
    return {"cases": out, "mismatches": sum(
        1 for r in out for f in ("ice40", "ecp5", "xcup") if r[f]["yosys"] != r[f]["model"])}


def store(block, target, sets):
    from llmloom.flows.cli import parse_sets
    from llmloom.flows.synth import synthesize
    from llmloom.flows.synth_baselines import update_baseline
    from llmloom.sim.harness import get_harness
    h = get_harness(block)
    cfg = h.config(parse_sets(sets))
    res = synthesize(h.component(cfg), target, place=False, progress=False)
    return update_baseline(block, cfg, target, result=res)


def resynth(blocks, targets, skip=()):
    """Every stored baseline of ``blocks`` on ``targets`` synthesised again (Yosys only) and
    stored, block by block in the order given, the designs the constants are fitted to first
    (those not in ``skip``): ``[{target, design_id, before, after}]``."""
    from llmloom.flows.resources import fitted_ids
    from llmloom.flows.synth import synthesize
    from llmloom.flows.synth_baselines import design_id, load_baselines, update_baseline
    from llmloom.sim.harness import get_harness
    fitted = fitted_ids()
    out = []
    for block in blocks:
        for target in targets:
            entries = [(did, e) for did, e in load_baselines(target).items()
                       if e["block"] == block and did not in skip]
            entries.sort(key=lambda de: de[0] not in fitted.get(target, ()))
            for did, entry in entries:
                h = get_harness(block)
                cfg = h.config(entry["config"])
                if design_id(block, cfg) != did:
                    continue
                res = synthesize(h.component(cfg), target,
                                 place=entry.get("fmax_mhz") is not None, progress=False)
                new = update_baseline(block, cfg, target, result=res)
                row = {"target": target, "design_id": did,
                       "before": {k: entry[k] for k in ("lut", "ff", "dsp", "bram")},
                       "after": {k: new[k] for k in ("lut", "ff", "dsp", "bram")}}
                out.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="the table for the README")
    ap.add_argument("--by-block", action="store_true", help="the per-block summary table")
    ap.add_argument("--synth", action="store_true", help="also fresh Yosys runs")
    ap.add_argument("--slow", action="store_true", help="with --synth: the large designs too")
    ap.add_argument("--refit", action="store_true", help="refit the logic constants")
    ap.add_argument("--write", action="store_true",
                    help="with --refit: store them as the model's (perf/data/resource_logic.json)")
    ap.add_argument("--multipliers", action="store_true", help="single products via Yosys")
    ap.add_argument("--store", metavar="BLOCK", help="synthesise and store one baseline")
    ap.add_argument("--resynth", metavar="BLOCKS",
                    help="synthesise again and store every baseline of these blocks")
    ap.add_argument("--target", default="xcup", help="with --store")
    ap.add_argument("--set", action="append", default=[], help="with --store: config field")
    ap.add_argument("--targets", default=",".join(TARGETS))
    args = ap.parse_args(argv)
    if args.refit:
        from llmloom.flows.resources import fit_logic
        from llmloom.perf.resources.logic import LOGIC_PATH, write_logic
        coefs = fit_logic()
        print(json.dumps(coefs, indent=1))
        if args.write:
            write_logic(coefs)
            print(f"wrote {LOGIC_PATH}", file=sys.stderr)
        return 0
    if args.multipliers:
        doc = multipliers()
        print(json.dumps(doc, indent=1))
        return 0 if doc["mismatches"] == 0 else 1
    if args.store:
        print(json.dumps(store(args.store, args.target, args.set), indent=1))
        return 0
    if args.resynth:
        print(json.dumps(resynth(args.resynth.split(","), args.targets.split(",")), indent=1))
        return 0
    doc = compare(args.targets.split(","), fresh=args.synth, slow=args.slow)
    if args.by_block:
        print(by_block(doc))
    else:
        print(markdown(doc) if args.markdown else json.dumps(doc, indent=1))
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
