"""``llmloom estimate | explore | compare | validate``: the analytical model from the command
line.

:func:`add_subcommands` adds the four subcommands to the main CLI's subparsers. Each handler
returns an exit code; user errors are raised as ``ValueError`` (the main CLI prints them as one
line). ``--json`` prints the documented JSON (``perf/README.md``) to stdout. Notes (a design file
with the old kernel names, a layer export that changed the design) go to stderr as
``llmloom: note:`` lines.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import types
import warnings

from ..perf.design import Design, OldNamesWarning, layer_config_dict
from ..perf.devices import fpga_names, gpu_names
from ..perf.errors import ConfigError
from ..perf.estimate import compare, estimate, estimate_document
from ..perf.explore import OBJECTIVES, explore
from ..perf.gpu import RUNTIMES
from ..perf.models import get_model, model_names
from ..perf.presets import PRESETS, get_preset
from ..perf.spatial import DesignBatch, evaluate
from ..perf.validate import validate
from ..perf.workload import QUANTS
from .userio import Outputs

__all__ = ["add_subcommands", "cmd_estimate", "cmd_explore", "cmd_compare", "cmd_validate",
           "EXPLORE_SCHEMA"]

EXPLORE_SCHEMA = "llmloom.perf.explore/1"


def _printing_notes(cmd):
    """Run ``cmd`` printing each :class:`OldNamesWarning` once as an ``llmloom: note:`` line
    (a design file is read more than once in a command; other warnings are left as they are)."""
    @functools.wraps(cmd)
    def run(args):
        seen = set()
        show = warnings.showwarning

        def note(message, category, *rest, **kw):
            if not issubclass(category, OldNamesWarning):
                return show(message, category, *rest, **kw)
            if str(message) not in seen:
                seen.add(str(message))
                print(f"llmloom: note: {message}", file=sys.stderr)

        with warnings.catch_warnings():
            warnings.simplefilter("always", OldNamesWarning)
            warnings.showwarning = note
            return cmd(args)
    return run


def _positive(text):
    try:
        v = int(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not an integer") from None
    if v < 1:
        raise ConfigError(f"{v} must be >= 1")
    return v


def _common(p, *, design=True):
    p.add_argument("--model", help=f"catalogue name ({', '.join(model_names())}) or a "
                                   "Hugging Face config.json")
    p.add_argument("--device", help=f"FPGA ({', '.join(fpga_names())})")
    if design:
        p.add_argument("--design", help=f"preset ({', '.join(sorted(PRESETS))}) or a design "
                                        "JSON file; default: the explored best design")
    p.add_argument("--seq", type=int, help="prompt length l (default 512 or the preset's)")
    p.add_argument("--batch", type=int, default=1, help="sequences at once (default 1)")
    p.add_argument("--json", action="store_true", help="print the documented JSON")
    p.add_argument("--plot", metavar="OUT.png", help="write a PNG figure")


def add_subcommands(subparsers):
    """Add ``estimate``, ``explore`` and ``compare`` to an argparse subparsers object."""
    p = subparsers.add_parser("estimate", help="predict prefill/decode latency, resources, "
                                               "power of a design")
    _common(p)
    p.add_argument("--mode", choices=("prefill", "decode", "both"), default="both")
    p.add_argument("--context", type=int, help="cached tokens s in decode (default: --seq)")
    p.add_argument("--devices", type=int, default=1, help="FPGAs (default 1)")
    p.add_argument("--parallel", choices=("pp", "tp", "best"), default="pp",
                   help="pipeline over layers, tensor split, or the best split")
    _quant_arg(p, "the design's")
    _layer_args(p)
    p.set_defaults(func=cmd_estimate)

    p = subparsers.add_parser("explore", help="search the best design under the device's "
                                              "constraints")
    _common(p, design=False)
    p.add_argument("--objective", choices=OBJECTIVES, default="prefill")
    p.add_argument("--budget-dsp", type=int, help="DSPs the design may use")
    p.add_argument("--against", metavar="PRESET", choices=sorted(PRESETS),
                   help="compare with a preset at its DSP budget (sets model, device, quant, "
                        "clock and, unless given, --budget-dsp)")
    _quant_arg(p, "W8A8, or the --against preset's")
    p.add_argument("--clock-mhz", type=float, help="design clock (default: the device's)")
    p.add_argument("--context", type=int, help="cached tokens s in decode (default: --seq)")
    p.add_argument("--decode-kernel", choices=("gemv", "gemm"), default="gemv")
    p.add_argument("--gen", type=int, default=128,
                   help="generated tokens per request for --objective tokens-per-s")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--parallel", choices=("pp", "tp"), default="pp")
    p.add_argument("--save", metavar="CFG.json", help="write the best design (design JSON)")
    _layer_args(p)
    p.set_defaults(func=cmd_explore)

    p = subparsers.add_parser("compare", help="FPGA against GPU over sequence lengths")
    _common(p)
    p.add_argument("--gpu", required=True, help=f"GPU ({', '.join(gpu_names())})")
    p.add_argument("--seqs", help="comma-separated lengths (default 64..max positions)")
    p.add_argument("--gpu-quant", default="fp16", help="GPU arithmetic (default fp16)")
    p.add_argument("--gpu-runtime", choices=sorted(RUNTIMES), default="eager",
                   help="how the GPU runs the model (default: PyTorch eager)")
    _quant_arg(p, "the design's")
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser("validate", help="the model against measured boards and GPUs "
                                               "(perf/data/measured.json)")
    p.add_argument("--data", metavar="MEASURED.json",
                   help="measured rows to check (default: the shipped perf/data/measured.json)")
    p.add_argument("--json", action="store_true", help="print the documented JSON")
    p.set_defaults(func=cmd_validate)


def _quant_arg(p, default):
    p.add_argument("--quant", default=None,
                   help="FPGA quantisation "
                        f"{' | '.join(q.upper() if q == 'fp16' else q for q in QUANTS)}, "
                        f"overriding the design's (default: {default})")


def _layer_args(p):
    p.add_argument("--save-layer", metavar="LAYER.json",
                   help="write the design as the hw layer's config (gpt2-block or bert-layer), "
                        "for `llmloom run gpt2-block|bert-layer --config LAYER.json`")
    p.add_argument("--layer-engine", choices=("gemm", "gemv"),
                   help="engine of the layer's linear stages (default: gemv when the design "
                        "is for decode with GEMV kernels, else gemm)")


def _layer_export(args, design, ctx, decode):
    """``(LayerConfig, notes)`` of ``design`` for ``--save-layer`` (``None`` without it),
    computed before anything is written so that a refusal leaves no file behind. ``decode``:
    the design serves decode (the default engine is then its decode kernel)."""
    if not args.save_layer:
        return None
    if ctx.tp > 1:
        raise ConfigError(f"--save-layer with tensor parallelism (tp={ctx.tp}) is not "
                          "supported: a device holds a slice of the layer; allowed: tp=1")
    engine = args.layer_engine or (design.decode_kernel if decode else "gemm")
    return design.layer_config(ctx.model, seq=ctx.l_max, engine=engine)


def _save_layer(args, export, out):
    cfg, notes = export
    for note in notes:
        print(f"llmloom: note: {note}", file=sys.stderr)
    out.write_json(args.save_layer, layer_config_dict(cfg))
    block = "gpt2-block" if cfg.arch == "gpt2" else "bert-layer"
    print(f"wrote {args.save_layer}: {block} config (d_model {cfg.d_model}, {cfg.heads} heads, "
          f"d_ff {cfg.d_ff}, seq {cfg.seq}, lanes {cfg.lanes}, engine {cfg.engine}; linear "
          f"{cfg.linear_rows}×{cfg.linear_cols}, ffn {cfg.ffn_rows}×{cfg.ffn_cols}, Q·Kᵀ "
          f"{cfg.qk_rows}×{cfg.qk_cols}, P·V {cfg.pv_rows}×{cfg.pv_cols}); run it with "
          f"`llmloom run {block} --config {args.save_layer} --set d_model=... --weights ...`",
          file=sys.stderr)


def _model_device(args, preset=None):
    model = args.model or (preset.model if preset else None)
    device = args.device or (preset.device if preset else None)
    if model is None:
        raise ConfigError("--model is required (or a preset --design/--against)")
    if device is None:
        raise ConfigError("--device is required (or a preset --design/--against)")
    return model, device


def _progress(args):
    return None if not args.json else False


def _outputs(args, *options):
    """The command's output files, every path checked before any work (nothing is written
    unless the whole command succeeds)."""
    out = Outputs()
    for option in options:
        out.add(getattr(args, option.lstrip("-").replace("-", "_"), None), option)
    Outputs.plot_format(args.plot)
    return out


def _plot(args, out, draw, doc):
    if args.plot:
        with out.open(args.plot, "wb") as fh:
            draw(doc, fh, Outputs.plot_format(args.plot))


def _check_design(args):
    """``--design``: a preset name, or a design JSON file that exists."""
    name = args.design
    if name is None or name in PRESETS:
        return
    if not name.endswith(".json") and not os.path.exists(name):
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}"
                        " (or give a design JSON file)")
    if not os.path.isfile(name):
        raise ConfigError(f"design file {name!r} does not exist")


# estimate ----------------------------------------------------------------------------------------
@_printing_notes
def cmd_estimate(args):
    out = _outputs(args, "--plot", "--save-layer")
    _check_design(args)
    preset = PRESETS.get(args.design) if args.design else None
    model, device = _model_device(args, preset)
    doc = estimate(model, device, args.design, mode=args.mode, seq=args.seq,
                   context=args.context, batch=args.batch, devices=args.devices,
                   parallel=args.parallel, quant=args.quant, progress=_progress(args))
    export = None
    if args.save_layer:
        m = get_model(model)
        ctx = types.SimpleNamespace(
            model=m, tp=doc["parallel"]["tp"],
            l_max=max(doc["seq"], doc["context"] + 1) if m.decoder else doc["seq"])
        export = _layer_export(args, Design.from_dict(doc["design"]), ctx,
                               args.mode == "decode")
    if args.plot:
        from ..perf.plots import plot_estimate
        _plot(args, out, plot_estimate, doc)
    if export:
        _save_layer(args, export, out)
    out.commit()
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(format_estimate(doc))
    return 0


def _si(x, unit):
    if x is None:
        return "-"
    for scale, prefix in ((1, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def format_estimate(doc):
    """The estimate document as a human-readable table."""
    d = doc["design"]
    lines = [f"{doc['model']} on {doc['device']}"
             + (f" x{doc['devices']} (tp={doc['parallel']['tp']}, pp={doc['parallel']['pp']})"
                if doc["devices"] > 1 else "")
             + f"  design {d['name']}  {doc['quant']}  {doc['clock_hz'] / 1e6:g} MHz  "
             f"C={d['layers_on_chip']}  weights {doc['weights']}  batch {doc['batch']}"]
    for key in ("prefill", "decode"):
        ph = doc.get(key)
        if not ph:
            continue
        if key == "prefill":
            lines.append(f"\nprefill (l={doc['seq']}): {_si(ph['latency_s'], 's')}  "
                         f"{ph['tokens_per_s']:,.0f} tok/s  {ph['power_w']:.0f} W  "
                         f"{_si(ph['energy_j'], 'J')}  bottleneck {ph['bottleneck']} "
                         f"({ph['bound']})")
        else:
            lines.append(f"\ndecode (s={doc['context']}): "
                         f"{_si(ph['latency_s_per_token'], 's')}/token  "
                         f"{ph['tokens_per_s']:,.1f} tok/s  {ph['power_w']:.0f} W  "
                         f"{_si(ph['energy_j_per_token'], 'J')}/token  bottleneck "
                         f"{ph['bottleneck']} ({ph['bound']}); bandwidth floor "
                         f"{_si(ph['bandwidth_floor_s'], 's')}")
        lines.append(f"  {'stage':<8} {'phase':<6} {'cycles/layer':>13} {'fill':>10} "
                     f"{'time/layer':>11} {'stream':>10}  bound    region")
        for s in ph["stages"]:
            stream = f"{s['stream_cycles']:,.0f}" if s.get("stream_cycles") else "-"
            lines.append(f"  {s['name']:<8} {s['phase']:<6} {s['cycles']:>13,.0f} "
                         f"{s['fill_cycles']:>10,.0f} {_si(s['latency_s'], 's'):>11} "
                         f"{stream:>10}  {s['bound']:<8} {s.get('region', '')}")
    r, c = doc["resources"], doc["capacity"]
    lines.append("\nresources: " + "  ".join(
        f"{k} {r[k]:,}/{c[k]:,} ({doc['utilisation'][k]:.0%})"
        for k in ("dsp", "lut", "ff", "bram36", "uram")))
    return "\n".join(lines)


# explore ------------------------------------------------------------------------------------------
@_printing_notes
def cmd_explore(args):
    out = _outputs(args, "--plot", "--save", "--save-layer")
    preset = get_preset(args.against) if args.against else None
    model, device = _model_device(args, preset)
    budget = args.budget_dsp
    quant = args.quant or (preset.design.quant if preset else "W8A8")
    clock = args.clock_mhz or (preset.design.clock_mhz if preset else None)
    seq = args.seq or (preset.seq if preset else 512)
    against = None
    if preset:
        against = estimate(model, device, preset.design, seq=seq, context=args.context,
                           batch=args.batch, quant=args.quant)
        if budget is None:
            budget = against["resources"]["dsp"]
    tp = args.devices if args.parallel == "tp" else 1
    pp = args.devices if args.parallel == "pp" else 1
    result = explore(model, device, objective=args.objective, quant=quant, seq=seq,
                     context=args.context, batch=args.batch, tp=tp, pp=pp, budget_dsp=budget,
                     clock_mhz=clock, decode_kernel=args.decode_kernel, gen=args.gen,
                     progress=_progress(args))
    ctx = result.context
    export = _layer_export(args, result.best, ctx, args.objective != "prefill")
    modes = ("prefill", "decode") if ctx.model.decoder else ("prefill",)
    best = estimate_document(
        ctx, result.best, evaluate(ctx, DesignBatch.from_designs([result.best]), modes=modes),
        modes)
    doc = {"schema": EXPLORE_SCHEMA, "model": ctx.model.name, "device": ctx.device.name,
           "objective": args.objective, "budget_dsp": budget, "evaluated": result.evaluated,
           "feasible": result.feasible, "value": result.value, "best": best,
           "front": [{"dsp": p["dsp"], "value": p["value"], "design": p["design"].to_dict()}
                     for p in result.front],
           "against": against}
    if args.save:
        out.write_json(args.save, result.best.to_dict())
    if export:
        _save_layer(args, export, out)
    if args.plot:
        from ..perf.plots import plot_front
        _plot(args, out, plot_front, doc)
    out.commit()
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(format_explore(doc))
    return 0


def format_explore(doc):
    unit = "tok/s" if doc["objective"] == "tokens-per-s" else "s"
    lines = [f"explored {doc['evaluated']:,} designs of {doc['model']} on {doc['device']} "
             f"({doc['feasible']:,} feasible), objective {doc['objective']}"
             + (f", DSP budget {doc['budget_dsp']:,}" if doc["budget_dsp"] else ""),
             f"best: {doc['value']:.4g} {unit}", "", format_estimate(doc["best"]), "",
             f"Pareto front ({len(doc['front'])} points): DSP -> {doc['objective']}"]
    step = max(1, len(doc["front"]) // 12)
    for p in doc["front"][::step] + ([doc["front"][-1]] if len(doc["front"]) % step != 1
                                      and step > 1 else []):
        lines.append(f"  {p['dsp']:>7,}  {p['value']:.4g} {unit}")
    if doc["against"]:
        a = doc["against"]
        lines.append(f"\nagainst {a['design']['name']} ({a['resources']['dsp']:,} DSP): "
                     f"prefill {_si(a['prefill']['latency_s'], 's')}"
                     + (f", decode {_si(a['decode']['latency_s_per_token'], 's')}/token"
                        if a.get("decode") else ""))
        b = doc["best"]
        lines.append(f"explored at the same budget ({b['resources']['dsp']:,} DSP): "
                     f"prefill {_si(b['prefill']['latency_s'], 's')}"
                     + (f", decode {_si(b['decode']['latency_s_per_token'], 's')}/token"
                        if b.get("decode") else ""))
    return "\n".join(lines)


# compare ------------------------------------------------------------------------------------------
@_printing_notes
def cmd_compare(args):
    out = _outputs(args, "--plot")
    _check_design(args)
    preset = PRESETS.get(args.design) if args.design else None
    model, device = _model_device(args, preset)
    seqs = None
    if args.seqs:
        try:
            seqs = [int(s) for s in args.seqs.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seqs {args.seqs!r} must be comma-separated integers") \
                from None
    doc = compare(model, device, args.gpu, args.design, seqs=seqs, batch=args.batch,
                  gpu_quant=args.gpu_quant, runtime=args.gpu_runtime, quant=args.quant,
                  progress=_progress(args))
    if args.plot:
        from ..perf.plots import plot_compare
        _plot(args, out, plot_compare, doc)
    out.commit()
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(format_compare(doc))
    return 0


def format_compare(doc):
    lines = [f"{doc['model']}: {doc['device']} (design {doc['design']['name']}) vs "
             f"{doc['gpu']} ({doc['gpu_quant']}, {doc['gpu_runtime']})",
             f"{'seq':>6} {'FPGA prefill':>13} {'GPU prefill':>12} {'x':>7}   "
             f"{'FPGA decode':>12} {'GPU decode':>12} {'x':>7} {'energy x':>9}"]
    for r in doc["rows"]:
        dec = r["fpga_decode_s_per_token"] is not None
        lines.append(
            f"{r['seq']:>6} {_si(r['fpga_prefill_s'], 's'):>13} {_si(r['gpu_prefill_s'], 's'):>12} "
            f"{r['prefill_speedup']:>7.2f}   "
            + (f"{_si(r['fpga_decode_s_per_token'], 's'):>12} "
               f"{_si(r['gpu_decode_s_per_token'], 's'):>12} {r['decode_speedup']:>7.2f} "
               f"{r['decode_energy_ratio']:>9.2f}" if dec else f"{'-':>12} {'-':>12}"))
    lines.append("x > 1: the FPGA is faster (energy: more efficient)")
    return "\n".join(lines)


# validate -----------------------------------------------------------------------------------------
def cmd_validate(args):
    doc = validate(args.data)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(format_validate(doc))
    return 0


def format_validate(doc):
    """The validation document as a table: one row per measurement, then the verdicts."""
    def num(x):
        return "-" if x is None else f"{x:,.4g}"

    wn = max([38] + [len(r["name"]) for r in doc["rows"]])
    wu = max([9] + [len(r["unit"]) for r in doc["rows"]])
    lines = [f"{'row':<{wn}} {'predicted':>10} {'measured':>9} {'unit':<{wu}} {'error':>7}  "
             f"{'held out':<8} {'target':<6}"]
    for r in doc["rows"]:
        err = "-" if r["error"] is None else f"{r['error'] * 100:+.1f}%"
        mark = "" if r["within"] is None else ("ok" if r["within"] else "MISS")
        lines.append(f"{r['name']:<{wn}} {num(r['predicted']):>10} {num(r['measured']):>9} "
                     f"{r['unit']:<{wu}} {err:>7}  {'yes' if r['held_out'] else 'no':<8} "
                     f"{mark:<6}".rstrip())
    lines.append("")
    for v in doc["verdicts"]:
        lines.append(f"{v['publication']}, {v['phase']}: {v['winner']} faster; model: "
                     f"{v['predicted_winner']} ({v['speedup']:.3g}x GPU time over FPGA time) "
                     + ("reproduced" if v["reproduced"] else "NOT reproduced"))
    s = doc["summary"]
    lines.append(f"\n{s['within_target']} of {s['predicted']} predicted rows within target "
                 f"(20%, held-out 25%); {s['verdicts_reproduced']} of {s['verdicts']} verdicts "
                 "reproduced")
    return "\n".join(lines)


if __name__ == "__main__":   # pragma: no cover - the main CLI is flows/cli.py
    import argparse
    parser = argparse.ArgumentParser(prog="llmloom")
    add_subcommands(parser.add_subparsers(required=True))
    a = parser.parse_args()
    try:
        sys.exit(a.func(a))
    except (ValueError, OSError) as e:
        print(f"llmloom: error: {e}", file=sys.stderr)
        sys.exit(2)
