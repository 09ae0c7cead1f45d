"""``llmloom demo``: the README's main job on its built-in default.

1. A GPT-2-style projection (64 tokens of d_model = 768 against 64 output features, a head's
   slice of the Q projection) on two array sizes, simulated cycle by cycle, checked bit for bit
   against the golden model, with the analytical model's prediction beside the measurement.
2. A small GPT-2-style block (seeded random weights, W8A8): a prefill and then decode steps
   through the composed RTL, bit-exact with the layer's golden model, its accuracy against the
   float64 layer, and what the analytical model projects for GPT-2 medium on an Alveo U280.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from llmloom.hw.blocks.gemm import GemmConfig
from llmloom.perf.cycles import gemm_cycles
from llmloom.sim.harness import get_harness
from llmloom.sim.runner import run_block

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
    rows = []
    all_exact = True
    for r, c in DEMO_ARRAYS:
        cfg = GemmConfig(rows=r, cols=c, k=k, n=n, lanes=8)
        t0 = time.perf_counter()
        result = run_block(harness, cfg, {"a": a, "w": w}, sim=sim,
                           progress=out.isatty() if hasattr(out, "isatty") else False)
        total = time.perf_counter() - t0
        exact = np.array_equal(result.outputs["c"], harness.golden(cfg, {"a": a, "w": w})["c"])
        all_exact &= exact
        predicted = gemm_cycles(cfg, m)
        util = m * k * n / (result.cycles * r * c)
        rows.append((f"{r}×{c}", result.cycles, predicted, f"{util:.3f}",
                     f"{m * k * n / result.cycles:.1f}", "yes" if exact else "NO",
                     f"{result.cycles_per_s:,.0f}", f"{total:.1f}"))
    header = ("array", "cycles", "predicted", "utilization", "MAC/cycle", "bit-exact",
              "sim cycles/s", "wall s")
    widths = [max(len(str(x[i])) for x in rows + [header]) for i in range(len(header))]
    line = "  ".join(f"{{:>{w}}}" for w in widths)
    print(line.format(*header), file=out)
    for row in rows:
        print(line.format(*row), file=out)
    print("bit-exact against the golden model on every array" if all_exact
          else "MISMATCH against the golden model", file=out)
    block_ok = _demo_block(sim, quick, seed, out)
    return 0 if all_exact and block_ok else 1


# (d_model, heads, d_ff, seq, prefill rows); the rest of seq is decoded one token at a time
DEMO_BLOCK = {"full": (32, 2, 128, 8, 5), "quick": (8, 2, 16, 4, 2)}


def _demo_block(sim, quick, seed, out):
    from llmloom.perf import estimate

    d, heads, d_ff, seq, prefill = DEMO_BLOCK["quick" if quick else "full"]
    rng = np.random.default_rng(seed + 1)
    w = {name: rng.normal(scale=d ** -0.5, size=(d, d)) for name in ("wq", "wk", "wv", "wo")}
    w |= {name: rng.normal(scale=0.1, size=d) for name in ("bq", "bk", "bv", "bo", "b2",
                                                           "ln1_b", "ln2_b")}
    w |= {"ln1_g": 1 + rng.normal(scale=0.1, size=d), "ln2_g": 1 + rng.normal(scale=0.1, size=d),
          "w1": rng.normal(scale=d ** -0.5, size=(d, d_ff)), "b1": rng.normal(scale=0.1, size=d_ff),
          "w2": rng.normal(scale=d_ff ** -0.5, size=(d_ff, d))}
    x = rng.normal(size=(seq, d)).astype(np.float32)
    harness = get_harness("gpt2-block").options(weights=w, mode="decode", prefill=prefill)
    tensors = {"x": x}
    cfg = harness.config({"heads": heads, "d_ff": d_ff, "seq": seq}, tensors)
    print(f"\nGPT-2-style block (d_model {d}, {heads} heads, d_ff {d_ff}, W8A8, seeded "
          f"weights): prefill of {prefill} tokens, then {seq - prefill} decode steps, on {sim}",
          file=out)
    result = run_block(harness, cfg, tensors, sim=sim,
                       progress=out.isatty() if hasattr(out, "isatty") else False)
    prepared = harness.prepare(cfg, tensors)
    golden = harness.golden(cfg, prepared)
    exact = all(np.array_equal(result.outputs[k], golden[k]) for k in golden)
    metrics = harness.float_metrics(cfg, prepared, result.outputs)
    print(f"  cycles {result.cycles:,}   bit-exact with the layer golden: "
          f"{'yes' if exact else 'NO'}   cosine vs float64 {metrics['cosine_vs_float']:.5f}   "
          f"max |error| {metrics['max_abs_error_vs_float']:.4f}", file=out)
    proj = estimate("gpt2-medium", "u280", design="chen2024-gpt2-u280", mode="decode")
    dec = proj["decode"]
    print(f"  projected by the analytical model for GPT-2 medium on an Alveo U280 (the paper's "
          f"design point): {dec['latency_s_per_token'] * 1e3:.1f} ms/token "
          f"({dec['tokens_per_s']:.0f} tokens/s) at {proj['clock_hz'] / 1e6:.0f} MHz",
          file=out)
    return exact
