"""``llmloom synth | resources | build``: open synthesis of a block, resource estimates without
synthesis, and board builds.

:func:`add_subcommands` adds both subcommands to the main CLI's subparsers. Each handler
returns an exit code; user errors (unknown block, target or board, bad config) are raised as
``ValueError`` and printed by the main CLI as one line. A tool that fails for another reason
prints its log tail and exits 1; a design that does not fit exits 1 too.

JSON (``--json``, on stdout)
----------------------------
``synth``: ``{"block", "design_id", "config", "target", "lut", "ff", "dsp", "bram",
"fmax_mhz" (null without place and route or when it does not fit), "clock_mhz", "fits",
"utilization" {lut, ff, dsp, bram: fraction of the device}, "tools" {tool: version},
"seconds", "raw" {core_cells, wrapper_cells, pnr_utilization, fmax_by_clock, critical_path,
pnr_error}}``.

``synth --estimate`` adds ``"estimate": {lut, ff, dsp, bram}`` (``llmloom.perf.resources``),
``"check": {resource: true/false}``, ``"within_tolerance"`` and ``"tolerances"``
{resource: text}.

``resources``: ``{"block", "design_id", "config", "target", "family", "estimate": {lut, ff,
dsp, bram}, "capacity": {...}, "utilization": {...}, "fits": bool, "tolerances",
"parts": {part: {lut, ff, dsp, bram}} (with --parts)}``.

``build``: ``{"board", "out", "vendor", "bitstream" (null for vendor boards), "files",
"seconds", "clock_mhz", "fmax_mhz", "design", "max_rows", "baud", "next_step"}``.
"""

from __future__ import annotations

import json
import sys

__all__ = ["add_subcommands", "cmd_synth", "cmd_resources", "cmd_build", "check_table"]


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--clock {text!r} is not a number of MHz") from None
    if not value > 0:
        raise ValueError(f"--clock {text} is out of range; allowed: > 0")
    return value


def _block_config_args(p, block):
    if block:
        p.add_argument("block", metavar="BLOCK", help="block name (see `llmloom blocks`)")
    p.add_argument("--config", metavar="CFG.json", help="config fields as a JSON object")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one config field (JSON value), repeatable")


def add_subcommands(subparsers):
    """Add ``synth``, ``resources`` and ``build`` to an argparse subparsers object."""
    from ..boards.platforms import BOARDS
    from .synth_targets import TARGETS

    p = subparsers.add_parser(
        "synth", help="synthesise a block with the open toolchain: LUT/FF/DSP/BRAM, Fmax")
    _block_config_args(p, block=True)
    p.add_argument("--target", required=True, metavar="TARGET",
                   help=f"one of: {', '.join(TARGETS)}")
    p.add_argument("--clock", metavar="MHZ",
                   help="place-and-route target frequency (default: the target's)")
    p.add_argument("--workdir", metavar="DIR",
                   help="keep the Verilog, scripts, netlists and reports here")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (default 1)")
    p.add_argument("--no-place", action="store_true",
                   help="stop after Yosys (no place and route, no Fmax): seconds, not minutes")
    p.add_argument("--estimate", action="store_true",
                   help="also the resource model's estimate, beside synthesis, with its "
                        "tolerance and pass/fail per resource")
    p.add_argument("--json", action="store_true", help="print the documented JSON")
    p.set_defaults(func=cmd_synth)

    p = subparsers.add_parser(
        "resources", help="estimate LUT/FF/DSP/BRAM of a block without synthesis (seconds)")
    _block_config_args(p, block=True)
    p.add_argument("--target", required=True, metavar="TARGET",
                   help=f"one of: {', '.join(TARGETS)}")
    p.add_argument("--parts", action="store_true", help="where the resources go, part by part")
    p.add_argument("--json", action="store_true", help="print the documented JSON")
    p.set_defaults(func=cmd_resources)

    p = subparsers.add_parser(
        "build", help="a board design (GEMM behind a UART host link): bitstream or "
                      "vendor project")
    p.add_argument("--board", required=True, metavar="NAME", help=f"one of: {', '.join(BOARDS)}")
    p.add_argument("--design", default="gemm", metavar="DESIGN",
                   help="the core behind the host link (only `gemm` for now)")
    _block_config_args(p, block=False)
    p.add_argument("--max-rows", type=int, metavar="M",
                   help="activation rows held on chip (default: the board's)")
    p.add_argument("--baud", type=int, default=115200, help="UART rate (default 115200)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--json", action="store_true", help="print the documented JSON")
    p.set_defaults(func=cmd_build)


def _failed(exc):
    print(f"llmloom: {exc}", file=sys.stderr)
    return 1


def cmd_synth(args):
    from ..sim.harness import get_harness
    from .synth import SynthError, synthesize
    from .synth_baselines import design_id
    from .synth_targets import get_target
    from .userio import load_config_values

    target = get_target(args.target)          # an unknown target fails before elaboration
    clock = _positive_float(args.clock) if args.clock is not None else None
    harness = get_harness(args.block)
    cfg = harness.config(load_config_values(args.config, args.set))
    try:
        res = synthesize(harness.component(cfg), target.name, clock, args.workdir,
                         seed=args.seed, progress=sys.stderr.isatty() and not args.json,
                         place=not args.no_place)
    except SynthError as exc:
        return _failed(exc)
    report = {"block": args.block, "design_id": design_id(args.block, cfg),
              "config": cfg.to_dict(), **res.to_dict()}
    table = None
    if args.estimate:
        from .resources import compare_estimates, model_estimate
        table = compare_estimates([(args.block, cfg)], model_estimate, target.name,
                                  results={design_id(args.block, cfg): {
                                      **res.resources(), "fmax_mhz": res.fmax_mhz}})
        row = table.rows[0]
        report.update(estimate=row.estimate, check=row.ok, within_tolerance=table.ok,
                      tolerances=table.to_dict()["tolerances"])
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        fmax = f"Fmax {res.fmax_mhz:.1f} MHz (asked {res.clock_mhz:g})" \
            if res.fmax_mhz is not None else "no Fmax (no place and route)" \
            if res.fits else "no Fmax"
        tools = ", ".join(f"{k} {v}" for k, v in res.tools.items())
        print(f"{args.block} on {res.target}: {res.lut} LUT, {res.ff} FF, {res.dsp} DSP, "
              f"{res.bram} BRAM; {fmax}; {res.seconds:.1f} s ({tools})")
        if res.fits is False:
            print(f"does not fit {res.target}: {res.raw.get('pnr_error')}")
        if table is not None:
            print(check_table(table))
    return 0 if res.fits is not False else 1


def check_table(report):
    """Estimate against synthesis, one line per resource, for the terminal."""
    row = report.rows[0]
    lines = [f"{'':5} {'synthesis':>10} {'estimate':>10} {'error':>8}  tolerance"]
    for key in ("lut", "ff", "dsp", "bram"):
        got, est = row.synth.get(key), row.estimate.get(key)
        err = "" if not got else f"{(est - got) / got:+.0%}"
        verdict = "ok" if row.ok.get(key) else "OUT OF TOLERANCE"
        lines.append(f"{key.upper():5} {got:>10g} {est:>10g} {err:>8}  "
                     f"{report.tolerances[key]}: {verdict}")
    return "\n".join(lines)


def cmd_resources(args):
    import dataclasses

    from ..perf.resources import estimate_parts
    from ..sim.harness import get_harness
    from .resources import ESTIMATE_TOLERANCES, synthesized_config
    from .synth_baselines import design_id
    from .synth_targets import get_target
    from .userio import load_config_values

    target = get_target(args.target)
    harness = get_harness(args.block)
    cfg = harness.config(load_config_values(args.config, args.set))
    parts = estimate_parts(args.block, synthesized_config(args.block, cfg), target.family)
    from ..perf.resources import Bill
    est = sum(parts.values(), Bill()).rounded()
    cap = target.capacity
    util = {k: round(est[k] / cap[k], 4) for k in est}
    report = {"block": args.block, "design_id": design_id(args.block, cfg),
              "config": cfg.to_dict(), "target": target.name, "family": target.family,
              "estimate": est, "capacity": dict(cap), "utilization": util,
              "fits": all(v <= 1 for v in util.values()),
              "tolerances": {k: str(v) for k, v in ESTIMATE_TOLERANCES.items()}}
    if args.parts:
        report["parts"] = {k: {r: round(v, 1) for r, v in dataclasses.asdict(b).items()}
                           for k, b in parts.items()}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.block} on {target.name} (estimate, no synthesis): {est['lut']} LUT, "
          f"{est['ff']} FF, {est['dsp']} DSP, {est['bram']} BRAM")
    print("of the device: " + ", ".join(f"{k.upper()} {v:.0%}" for k, v in util.items())
          + ("" if report["fits"] else "  -- does not fit"))
    print("model tolerance against synthesis: " + ", ".join(
        f"{k.upper()} {v}" for k, v in report["tolerances"].items()))
    if args.parts:
        for k, b in report["parts"].items():
            if any(b.values()):
                print(f"  {k:34} " + " ".join(f"{r} {v:g}" for r, v in b.items() if v))
    return 0


def cmd_build(args):
    from ..boards.platforms import get_board
    from ..hw.blocks.gemm_config import GemmConfig
    from .build import build
    from .synth import SynthError
    from .userio import Outputs, load_config_values

    Outputs.check_dir(args.out, "--out")
    board = get_board(args.board)
    if args.design != "gemm":
        raise ValueError(f"unknown design {args.design!r}; valid designs: gemm")
    values = board.design.to_dict()
    values.update(load_config_values(args.config, args.set))
    cfg = GemmConfig.from_dict(values)
    if args.max_rows is not None and not 1 <= args.max_rows <= 65535:
        raise ValueError(f"--max-rows {args.max_rows} is out of range; allowed: 1..65535")
    try:
        res = build(board.name, cfg, args.out, max_rows=args.max_rows, baud=args.baud,
                    progress=sys.stderr.isatty() and not args.json)
    except SynthError as exc:
        return _failed(exc)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
    elif res.vendor:
        print(f"{board.name}: wrote the vendor project to {res.out} ({len(res.files)} files); "
              f"{res.next_step}")
    else:
        fmax = f", Fmax {res.fmax_mhz:.1f} MHz" if res.fmax_mhz else ""
        print(f"{board.name}: wrote {res.bitstream} (clock {res.clock_mhz:g} MHz{fmax}) in "
              f"{res.seconds:.0f} s")
    return 0
