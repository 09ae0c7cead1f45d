"""``llmloom demo``: the README's main job on its built-in default.

1. A GPT-2-style projection (64 tokens of d_model = 768 against 64 output features, a head's
   slice of the Q projection) on two array sizes, simulated cycle by cycle, checked bit for bit
   against the golden model, with the analytical model's prediction beside the measurement.
2. A small GPT-2-style block (seeded random weights, W8A8): a prefill and then decode steps
   through the composed RTL, on the GEMM engine and on the decode GEMV, bit-exact with the
   layer's golden model, its accuracy against the float64 layer, each tensor's cycles against
   the analytical model's prediction with the bottleneck stage, and what the model projects
   for GPT-2 medium on an Alveo U280.
"""

from __future__ import annotations

import sys

import numpy as np

from llmloom.flows.verify import verify
from llmloom.hw.blocks.gemm import GemmConfig
from llmloom.sim.harness import get_harness

__all__ = ["run_demo", "DEMO_SHAPES"]

# (tokens M, d_model K, features N) and the arrays to run them on.
DEMO_SHAPES = {"full": (64, 768, 64), "quick": (16, 96, 16)}
DEMO_ARRAYS = ((4, 4), (8, 8))


def run_demo(sim="verilator", quick=False, seed=0, out=None):
    out = sys.stdout if out is None else out
    m, k, n = DEMO_SHAPES["quick" if quick else "full"]
    harness = get_harness("gemm")
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (k, n), dtype=np.int8)
    print(f"llmloom demo: C = A·W, A {m}×{k} int8 (tokens × d_model), W {k}×{n} int8, "
          f"on {sim}", file=out)
    header = ("array", "cycles", "predicted", "utilization", "MAC/cycle", "bit-exact",
              "sim cycles/s", "wall s")
    # fixed widths, so that each array's row is printed as soon as it is measured
    widths = [max(len(h), 9) for h in header]
    line = "  ".join(f"{{:>{w}}}" for w in widths)
    print(line.format(*header), file=out)
    all_exact = True
    for r, c in DEMO_ARRAYS:
        cfg = GemmConfig(rows=r, cols=c, k=k, n=n, lanes=8)
        v = verify(harness, cfg, {"a": a, "w": w}, sim=sim,
                   progress=out.isatty() if hasattr(out, "isatty") else False)
        result, exact, predicted = v.result, v.exact, v.predicted_cycles
        all_exact &= exact
        util = m * k * n / (result.cycles * r * c)
        print(line.format(f"{r}×{c}", result.cycles, predicted, f"{util:.3f}",
                          f"{m * k * n / result.cycles:.1f}", "yes" if exact else "NO",
                          f"{result.cycles_per_s:,.0f}", f"{v.run_wall_s:.1f}"), file=out)
    print("bit-exact against the golden model on every array" if all_exact
          else "MISMATCH against the golden model", file=out)
    block_ok = _demo_block(sim, quick, seed, out)
    return 0 if all_exact and block_ok else 1


# (d_model, heads, d_ff, seq, prefill rows); the rest of seq is decoded one token at a time
DEMO_BLOCK = {"full": (32, 2, 128, 8, 5), "quick": (8, 2, 16, 4, 2)}
#: the engines the block runs on: the GEMM array everywhere, then the decode GEMV on every
#: linear stage (the same multipliers, each weight used once per token)
DEMO_ENGINES = ("gemm", "gemv")


def _run_block(harness, values, x, sim, engine, out):
    """One verified run of the block on ``engine``: a :class:`Verification`."""
    tensors = {"x": x}
    cfg = harness.config(values | {"engine": engine}, tensors)
    return verify(harness, cfg, tensors, sim=sim,
                  progress=out.isatty() if hasattr(out, "isatty") else False)


def _bottleneck(cfg, rows):
    """``"stage util%"`` of one tensor of ``rows`` rows: the stage busy the most cycles."""
    from llmloom.perf.cycles import layer_timing

    t = layer_timing(cfg, [rows])
    st = next(s for s in t.as_dict()["stages"] if s["name"] == t.bottleneck)
    return f"{t.bottleneck} {100 * st['utilisation']:.0f}%"


def _table(out, header, rows, left=(0,)):
    """Print ``rows`` under ``header`` in aligned columns (numbers right, ``left`` left)."""
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = "  " + "  ".join(f"{{:<{w}}}" if i in left else f"{{:>{w}}}"
                            for i, w in enumerate(widths))
    for row in [header, *rows]:
        print(line.format(*row).rstrip(), file=out)


def _demo_block(sim, quick, seed, out):
    from llmloom.perf import estimate
    from llmloom.sim.weights import random_layer_weights

    d, heads, d_ff, seq, prefill = DEMO_BLOCK["quick" if quick else "full"]
    rng = np.random.default_rng(seed + 1)
    w = random_layer_weights(d, d_ff, rng)
    x = rng.normal(size=(seq, d)).astype(np.float32)
    harness = get_harness("gpt2-block").options(weights=w, mode="decode", prefill=prefill)
    values = {"heads": heads, "d_ff": d_ff, "seq": seq}
    print(f"\nGPT-2-style block (d_model {d}, {heads} heads, d_ff {d_ff}, W8A8, seeded "
          f"weights) on {sim}:\n  a prefill of {prefill} tokens, then {seq - prefill} decode "
          "steps, on each engine", file=out)
    runs = {e: _run_block(harness, values, x, sim, e, out) for e in DEMO_ENGINES}
    ok = all(v.exact for v in runs.values())
    _table(out, ["engine", "cycles", "bit-exact with golden", "cosine vs float64",
                 "max |error|"],
           [[e, f"{v.cycles:,}", "yes" if v.exact else "NO",
             f"{v.float_metrics['cosine_vs_float']:.5f}",
             f"{v.float_metrics['max_abs_error_vs_float']:.4f}"] for e, v in runs.items()],
           left=(0, 2))
    cfg0 = runs[DEMO_ENGINES[0]].cfg
    print(f"\n  cycles per tensor: measured (RTL) and predicted (perf's layer_timing); the "
          f"bottleneck,\n  the stage busy the most, and its busy share. Arrays: q, k, v, o "
          f"{cfg0.linear_rows}×{cfg0.linear_cols}; FFN {cfg0.ffn_rows}×{cfg0.ffn_cols};\n  "
          f"Q·Kᵀ {cfg0.qk_rows}×{cfg0.qk_cols}; P·V {cfg0.pv_rows}×{cfg0.pv_cols}; "
          f"{cfg0.lanes} lanes", file=out)
    header = ["tensor", "rows"]
    for e in DEMO_ENGINES:
        header += [e, "predicted", "bottleneck"]
    rows = []
    v0 = runs[DEMO_ENGINES[0]]
    (sizes,) = harness.shape_args(v0.cfg, v0.prepared)
    for n, size in enumerate(sizes):
        row = ["prefill" if n == 0 and size > 1 else f"decode {n}", str(size)]
        for e in DEMO_ENGINES:
            v = runs[e]
            got, want = v.result.tensor_cycles[n], v.timing["tensor_cycles"][n]
            ok &= got == want
            row += [f"{got:,}", f"{want:,}", _bottleneck(v.cfg, size)]
        rows.append(row)
    _table(out, header, rows, left=(0, 4, 7))
    steps = [n for n, size in enumerate(sizes) if size == 1 and n]
    if steps:
        per = {e: sum(runs[e].result.tensor_cycles[n] for n in steps) / len(steps)
               for e in DEMO_ENGINES}
        print(f"  decode on the GEMV: {per['gemm'] / per['gemv']:.1f}× fewer cycles per token "
              f"than on the GEMM ({per['gemv']:,.0f} against {per['gemm']:,.0f}),\n  with the "
              "same multipliers: the GEMM gives one token one row of its array, the GEMV all of "
              "them", file=out)
    proj = estimate("gpt2-medium", "u280", design="chen2024-gpt2-u280", mode="decode")
    dec = proj["decode"]
    print(f"\n  projected by the analytical model for GPT-2 medium on an Alveo U280 (the "
          f"paper's\n  design point): {dec['latency_s_per_token'] * 1e3:.1f} ms/token "
          f"({dec['tokens_per_s']:.0f} tokens/s) at {proj['clock_hz'] / 1e6:.0f} MHz",
          file=out)
    return ok
