"""What fits each open-toolchain board: the largest GEMM and the largest GPT-2 block.

    .venv/bin/python bench/fit.py [--board icebreaker] [--what gemm|layer] [--model-only]
                                  [--pnr-timeout S] [--out fit.json] [--markdown]

Both searches run on the resource model (seconds) and then confirm the winner with Yosys and
nextpnr (minutes; the GPT-2 block on the ECP5-85F takes the longest); ``--model-only`` stops
after the model. Prints JSON: per board, the GEMM (``llmloom.flows.fit.largest_gemm``: the
board core with the array, candidates tried, the model's and the flow's numbers, Fmax against
the board clock) and the layer (``largest_layer``: the config, its peak MACs per cycle, the
model's numbers and the flow's). ``--markdown`` prints the README's table instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

BOARDS = ("icebreaker", "ulx3s-85f")


def run(boards, what, confirm, pnr_timeout=None, max_tries=4):
    from llmloom.flows.fit import largest_gemm, largest_layer
    from llmloom.flows.synth import warm_tools
    if confirm:
        warm_tools(("ice40-up5k", "ecp5-85f"))
    doc = {"boards": {}}
    for board in boards:
        entry = {}
        if "gemm" in what:
            t0 = time.perf_counter()
            fit = largest_gemm(board, confirm=confirm, pnr_timeout=pnr_timeout,
                               max_tries=max_tries,
                               on_try=lambda row: print(json.dumps(row), file=sys.stderr))
            entry["gemm"] = {**fit.to_dict(), "seconds": round(time.perf_counter() - t0, 1)}
        if "layer" in what:
            t0 = time.perf_counter()
            fit = largest_layer(board, confirm=confirm, pnr_timeout=pnr_timeout)
            entry["layer"] = {**fit.to_dict(), "seconds": round(time.perf_counter() - t0, 1)}
        doc["boards"][board] = entry
        print(json.dumps({board: entry}), file=sys.stderr, flush=True)
    return doc


def _res(r):
    return f"{r['lut']} LUT, {r['ff']} FF, {r['dsp']} DSP, {r['bram']} BRAM"


def markdown(doc):
    lines = ["| board | what | configuration | model (estimate) | synthesis, place and route |",
             "|---|---|---|---|---|"]
    for board, entry in doc["boards"].items():
        g = entry.get("gemm")
        if g:
            if g["rows"] is None:
                lines.append(f"| {board} | GEMM | none | | |")
            else:
                c = g["config"]
                conf = (f"{g['rows']}×{g['cols']} (k={c['k']}, n={c['n']}, lanes={c['lanes']}),"
                        f" {g['macs']} MACs/cycle")
                flow = "not run" if g["result"] is None else (
                    f"{_res(g['result'])}; Fmax {g['result']['fmax_mhz']:.1f} MHz "
                    f"(board {g['clock_mhz']:g} MHz)")
                lines.append(f"| {board} | GEMM (board core) | {conf} | {_res(g['estimate'])} "
                             f"| {flow} |")
        lay = entry.get("layer")
        if lay:
            if lay["config"] is None:
                lines.append(f"| {board} | GPT-2 block | none: {lay['reason']} | | |")
            else:
                c = lay["config"]
                conf = (f"d_model {c['d_model']}, {c['heads']} heads, d_ff {c['d_ff']}, seq "
                        f"{c['seq']}, lanes {c['lanes']}; linear {c['linear_rows']}×"
                        f"{c['linear_cols']}, FFN {c['ffn_rows']}×{c['ffn_cols']}, QKᵀ "
                        f"{c['qk_rows']}×{c['qk_cols']}, PV {c['pv_rows']}×{c['pv_cols']} "
                        f"({lay['macs_per_cycle']} MACs/cycle)")
                r = lay["result"]
                flow = "not run" if r is None else (
                    f"{_res(r)}; " + (f"Fmax {r['fmax_mhz']:.1f} MHz (board "
                                      f"{lay['clock_mhz']:g} MHz)" if r.get("fmax_mhz")
                                      else f"does not fit: {lay['reason']}"))
                lines.append(f"| {board} | GPT-2 block (W8A8) | {conf} | "
                             f"{_res(lay['estimate'])} | {flow} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", action="append", choices=BOARDS, help="default: both")
    ap.add_argument("--what", choices=("gemm", "layer", "both"), default="both")
    ap.add_argument("--model-only", action="store_true", help="no synthesis: the model's picks")
    ap.add_argument("--pnr-timeout", type=float, metavar="S",
                    help="seconds a place and route may take before it counts as not fitting")
    ap.add_argument("--max-tries", type=int, default=4, help="GEMM arrays confirmed at most")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--markdown", action="store_true", help="the README table")
    args = ap.parse_args(argv)
    what = ("gemm", "layer") if args.what == "both" else (args.what,)
    doc = run(args.board or BOARDS, what, confirm=not args.model_only,
              pnr_timeout=args.pnr_timeout, max_tries=args.max_tries)
    text = json.dumps(doc, indent=1)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    print(markdown(doc) if args.markdown else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
