"""The ``llmloom`` command: one entry point, one subcommand per job.

User errors (bad configs, tensors, files, missing tools) end with one line
``llmloom: error: ...`` on stderr and exit status 2, and nothing written: every output path is
checked before the work starts and the files are written together at the end
(:class:`~llmloom.flows.userio.Outputs`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from .userio import Outputs, UserError, load_config_values, load_npz, parse_sets

__all__ = ["main", "UserError", "parse_sets"]


def _harness(name):
    from llmloom.sim.harness import get_harness
    return get_harness(name)


# ---- blocks -----------------------------------------------------------------------------------
def cmd_blocks(args):
    from llmloom.hw.config import field_specs
    from llmloom.sim.harness import HARNESSES, load_harnesses
    load_harnesses()
    listing = []
    for name in sorted(HARNESSES):
        h = HARNESSES[name]
        listing.append({
            "name": name, "summary": h.summary,
            "config": [{"name": f, "type": t, "default": d,
                        "allowed": None if a is None else str(a), "doc": doc}
                       for f, t, d, a, doc in field_specs(h.config_cls)],
            "inputs": [vars(s) for s in h.inputs], "outputs": [vars(s) for s in h.outputs],
            "inferred_from_tensors": list(h.shape_fields),
        })
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    for b in listing:
        print(f"{b['name']}: {b['summary']}")
        print("  config:")
        for f in b["config"]:
            inferred = " (from tensors if not set)" if f["name"] in b["inferred_from_tensors"] \
                else ""
            print(f"    {f['name']:<14} {f['type']:<5} default {f['default']!s:<6} "
                  f"allowed {f['allowed']}  {f['doc']}{inferred}")
        print("  inputs:  " + ", ".join(f"{s['name']} ({s['dtype']} {s['shape']})"
                                        for s in b["inputs"]))
        print("  outputs: " + ", ".join(f"{s['name']} ({s['dtype']} {s['shape']})"
                                        for s in b["outputs"]))
    return 0


# ---- verilog ----------------------------------------------------------------------------------
def cmd_verilog(args):
    from llmloom.hw.emit import emit_verilog
    out = Outputs()
    out.add(args.output, "-o")
    out.add(args.meta, "--meta")
    h = _harness(args.block)
    tensors = None
    if hasattr(h, "options"):
        if bool(args.weights) != bool(args.calib):
            raise UserError("--weights and --calib go together: the int8 weights and every "
                            "scale are calibrated on the float input rows of --calib")
        if args.weights:
            h = h.options(weights=args.weights, prefix=args.prefix)
            tensors = load_npz(args.calib)
            if "x" not in tensors:
                raise UserError(f"{args.calib} holds no tensor 'x' (rows×d_model float "
                                "calibration input)")
    elif args.weights or args.calib or args.meta or args.prefix:
        raise UserError(f"--weights, --prefix, --calib and --meta apply to layer blocks "
                        f"only, not {args.block}")
    if args.meta and not args.weights:
        raise UserError("--meta describes a calibrated layer: give --weights and --calib")
    cfg = h.config(load_config_values(args.config, args.set), tensors)
    text = emit_verilog(h.component(cfg), name=args.name or args.block)
    meta = None
    if args.meta:
        # what a host needs beside the Verilog: the scales to quantise its input and
        # dequantise the output, and every calibrated constant of the design
        meta = json.dumps({"block": args.block, "verilog": str(args.output),
                           "x_scale": cfg.x_scale, "y_scale": cfg.y_scale,
                           "config": cfg.to_dict()}, indent=1, default=_json_default)
    out.write_text(args.output, text)
    if meta is not None:
        out.write_text(args.meta, meta + "\n")
    out.commit()
    what = "calibrated weights" if args.weights else (
        "seeded placeholder weights (give --weights and --calib for your own)"
        if hasattr(h, "options") else str(cfg))
    print(f"wrote {args.output} ({len(text.splitlines())} lines) for {args.block} with "
          f"{what}" + (f"; scales and config in {args.meta}" if meta else ""), file=sys.stderr)
    return 0


def _json_default(value):
    import numpy as np
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# ---- run --------------------------------------------------------------------------------------
def cmd_run(args):
    import numpy as np

    from llmloom.flows.verify import GOLDEN, verify
    from llmloom.sim.streams import Stalls

    out = Outputs()
    out.add(args.outputs, "--outputs")
    out.add(args.report, "--report")
    h = _harness(args.block)
    if hasattr(h, "options"):
        calib = None
        if args.calib:
            if not args.weights:
                raise UserError("--calib calibrates the layer's float weights: give --weights")
            calib = load_npz(args.calib).get("x")
            if calib is None:
                raise UserError(f"{args.calib} holds no tensor 'x' (rows×d_model float "
                                "calibration input)")
        h = h.options(weights=args.weights, mode=args.mode, prefill=args.prefill,
                      prefix=args.prefix, calib=calib)
    elif (args.weights or args.mode != "prefill" or args.prefill is not None or args.prefix
          or args.calib):
        raise UserError(f"--weights, --prefix, --calib, --mode and --prefill apply to layer "
                        f"blocks only, not {args.block}")
    if args.sim == GOLDEN and args.stalls != "none":
        raise UserError(f"--stalls {args.stalls} needs a simulator; --sim {GOLDEN} runs the "
                        "golden model alone")
    tensors = load_npz(args.inputs)
    cfg = h.config(load_config_values(args.config, args.set), tensors)
    v = verify(h, cfg, tensors, sim=args.sim, progress=sys.stderr.isatty(),
               stalls_in=Stalls(args.stalls, args.seed),
               stalls_out=Stalls(args.stalls, args.seed + 1), driver=args.driver)
    report = v.report()
    with out.open(args.outputs, "wb") as fh:
        np.savez(fh, **v.outputs)
    if args.report:
        out.write_json(args.report, report)
    out.commit()
    if v.result is None:
        pred = (f"; {v.predicted_cycles} cycles predicted" if v.predicted_cycles is not None
                else "")
        print(f"{args.block}: bit-exact model only (no RTL run){pred}", file=sys.stderr)
        return 0
    util = f", utilization {report['utilization']:.3f}" if report["utilization"] else ""
    print(f"{args.block} on {args.sim}: {v.cycles} cycles{util}; "
          f"{'bit-exact with' if v.exact else 'DIFFERS FROM'} the golden model", file=sys.stderr)
    return 0 if v.exact else 1


# ---- demo -------------------------------------------------------------------------------------
def cmd_demo(args):
    if args.blocks:
        from llmloom.flows.demo import run_demo
        return run_demo(sim=args.sim, quick=args.quick)
    from llmloom.flows.chat_demo import run_chat_demo
    return run_chat_demo(sim=args.sim, quick=args.quick, rtl_layer=args.rtl_layer,
                         max_new_tokens=args.max_new_tokens, context=args.context)


# ---- entry point ------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error (subcommands share the class)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    from llmloom.flows.model_cli import add_context_arg
    from llmloom.flows.verify import GOLDEN
    from llmloom.sim.runner import DRIVERS, SIMULATORS
    from llmloom.sim.streams import STALL_KINDS

    parser = _Parser(
        prog="llmloom", description="Spatial FPGA accelerators for transformer inference.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("blocks", help="list the blocks, their config fields and tensors")
    p.add_argument("--json", action="store_true", help="machine-readable listing")
    p.set_defaults(func=cmd_blocks)

    def block_args(p):
        p.add_argument("block", metavar="BLOCK", help="block name (see `llmloom blocks`)")
        p.add_argument("--config", metavar="CFG.json", help="config fields as a JSON object")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override one config field (JSON value), repeatable")

    p = sub.add_parser("verilog", help="emit a block as plain Verilog")
    block_args(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.v")
    p.add_argument("--name", help="top module name (default: the block name)")
    p.add_argument("--weights", metavar="W.safetensors|W.npz",
                   help="layers: float weights (Hugging Face names) held in the design's "
                        "memories; without them the weights are seeded placeholders")
    p.add_argument("--prefix", metavar="PREFIX",
                   help="layers: the layer's name prefix in a file of several (h.3., "
                        "encoder.layer.0.)")
    p.add_argument("--calib", metavar="X.npz",
                   help="layers, with --weights: float input rows 'x' to calibrate on")
    p.add_argument("--meta", metavar="META.json",
                   help="layers, with --weights: write the input/output scales and the "
                        "calibrated config beside the Verilog")
    p.set_defaults(func=cmd_verilog)

    p = sub.add_parser("run", help="run tensors through a block's RTL in simulation")
    block_args(p)
    p.add_argument("--inputs", required=True, metavar="IN.npz")
    p.add_argument("--outputs", required=True, metavar="OUT.npz")
    p.add_argument("--sim", choices=(*SIMULATORS, GOLDEN), default="verilator",
                   help=f"the simulator of the RTL, or {GOLDEN}: the bit-exact model alone (no "
                        "cycles measured)")
    p.add_argument("--driver", choices=DRIVERS,
                   help="verilator: drive the model from C++ (compiled, the default) or from "
                        "Python through cocotb")
    p.add_argument("--report", metavar="REPORT.json")
    p.add_argument("--stalls", choices=STALL_KINDS, default="none",
                   help="stall pattern on input valid and output ready")
    p.add_argument("--seed", type=int, default=0, help="seed of random stalls")
    p.add_argument("--weights", metavar="W.safetensors|W.npz",
                   help="float weights of one layer (gpt2-block, bert-layer), Hugging Face names")
    p.add_argument("--prefix", metavar="PREFIX",
                   help="layers: the layer's name prefix in a file of several (h.3., "
                        "encoder.layer.0.)")
    p.add_argument("--calib", metavar="C.npz",
                   help="layers, with --weights: float rows 'x' to calibrate on (default: the "
                        "inputs' own x)")
    p.add_argument("--mode", choices=("prefill", "decode"), default="prefill",
                   help="layers: one prefill tensor, or a prefill then one decode step per row")
    p.add_argument("--prefill", type=int, metavar="P",
                   help="decode mode: rows run as the prefill (default: rows - 1)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="the main job on its built-in default: SmolLM2 answers a "
                                     "chat prompt through the accelerator")
    p.add_argument("--sim", choices=SIMULATORS, default="verilator",
                   help="the simulator of the RTL layer (default verilator)")
    p.add_argument("--quick", action="store_true",
                   help="a smaller problem, for a smoke test (chat: 2 layers, 2 new tokens)")
    p.add_argument("--rtl-layer", type=int, metavar="K",
                   help="chat: the layer also run by its RTL (default 0; --quick: 1)")
    p.add_argument("--max-new-tokens", type=int, metavar="N",
                   help="chat: new tokens at most (default 8; --quick: 2)")
    add_context_arg(p, "chat: ")
    p.add_argument("--blocks", action="store_true",
                   help="instead: an LLM-shaped GEMM on two arrays and a small GPT-2 block "
                        "through the RTL, cycles measured against predicted")
    p.set_defaults(func=cmd_demo)

    from llmloom.flows.perf_cli import add_subcommands as add_perf_subcommands
    add_perf_subcommands(sub)
    from llmloom.flows.flows_cli import add_subcommands as add_flows_subcommands
    add_flows_subcommands(sub)
    from llmloom.flows.model_cli import add_subcommands as add_model_subcommands
    add_model_subcommands(sub)
    return parser


def main(argv=None):
    # Lines reach a pipe as they are printed (`llmloom demo | tee log`), not at exit.
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)
    parser = build_parser()
    args = parser.parse_args(argv)
    from llmloom.sim.tools import ToolMissing
    try:
        return args.func(args)
    except BrokenPipeError:
        return _closed_pipe()
    except (UserError, ValueError, ToolMissing, OSError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"llmloom: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmloom: interrupted", file=sys.stderr)
        return 130


def _closed_pipe():
    """The reader of our output went away (`llmloom estimate ... | head -3`): stop quietly, as
    other Unix tools do, with the status of a process ended by SIGPIPE (128 + 13), and point
    stdout at /dev/null so that Python's flush at exit does not complain again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


if __name__ == "__main__":
    sys.exit(main())
