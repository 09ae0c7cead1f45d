"""One stage's hardware, every layer's weights: a linear stage fetching its numbers per run from
off-chip memory (:class:`~llmloom.hw.layers.fetched.FetchedLinear`), measured and predicted.

Prints JSON. Run in the ``./dev`` environment: ``.venv/bin/python bench/fetched.py``
(``--sim verilator`` for Verilator, ``--out R.json`` to keep the JSON).

``measured``: a small GPT-2 layer's stages through one build, six runs with two calibrations
in turn (two layers' worth), against cocotbext-axi's slave at a fixed latency: the stream's
cycles with one weight bank and with two (the next run's weights fetched while this one
computes), each output checked bit-exact against the golden model, and the perf model's
``fetched_linear_span`` for both. ``projected``: the model alone for a SmolLM2-sized stage
(d 576, d_ff 1536) over its 30 layers, decode (one row) and a 64-row prefill chunk: cycles
with one bank and two, the fetch alone and the stage alone, and the share of the two-bank
time spent waiting for weights.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from llmloom.hw.blocks.axi_reader import AxiReaderConfig
from llmloom.hw.layers.config import LayerConfig
from llmloom.hw.layers.fetched import FetchedLinear, fetch_commands
from llmloom.hw.layers.weights_image import pack_layer_image
from llmloom.perf.cycles import fetched_linear_span
from llmloom.sim.fetched import run_fetched_linear
from llmloom.sim.golden.layers import linear_acc
from llmloom.sim.golden.requant import requant_bitexact
from llmloom.sim.quantize import calibrate

SMALL = dict(arch="gpt2", d_model=8, heads=2, d_ff=16, seq=4, lanes=2, linear_rows=3,
             linear_cols=4, ffn_rows=3, ffn_cols=8, qk_rows=3, qk_cols=4, pv_rows=2, pv_cols=4)
#: (stage, rows, latency): fetch-bound, stage-bound, long latency
CASES = [("q", 3, 20), ("f1", 9, 20), ("q", 1, 60)]
BASES = (0, 0x1040)
RUNS = 6


def calibrated(cfg, rng):
    """One calibration of ``cfg`` on seeded random float weights (a layer's worth)."""
    fw = {}
    for st in cfg.description.of_kind("linear"):
        k, n = cfg.linear_shape(st.name)
        fw[st.weight] = rng.normal(0.0, k ** -0.5, (k, n))
        fw[st.bias] = rng.normal(0.0, 0.1, n)
    for name in ("ln1", "ln2"):
        fw[f"{name}_g"] = 1 + rng.normal(0.0, 0.1, cfg.d_model)
        fw[f"{name}_b"] = rng.normal(0.0, 0.1, cfg.d_model)
    layer = calibrate(cfg, fw, rng.normal(0.0, 1.0, (cfg.seq, cfg.d_model)))
    return layer.config, layer.weights


def measure(sim, seed):
    rng = np.random.default_rng(seed)
    cfg = LayerConfig(**SMALL)
    sets = [calibrated(cfg, rng) for _ in BASES]
    memory = bytearray(BASES[-1] + 4096)
    for base, (c, w) in zip(BASES, sets, strict=True):
        image = pack_layer_image(c, w)
        memory[base:base + len(image)] = image
    out = []
    for name, rows, latency in CASES:
        build = sets[0][0]
        reader = AxiReaderConfig(data_width=8 * build.linear(name).cols, max_burst=8,
                                 outstanding=2, max_bytes=1 << 12, addr_width=16)
        x = rng.integers(-128, 128, (rows, build.linear(name).k))
        runs = [(BASES[j % 2], x) for j in range(RUNS)]
        row = {"stage": name, "rows": rows, "latency": latency, "runs": RUNS,
               "data_width": reader.data_width, "outstanding": reader.outstanding}
        for banks in (1, 2):
            got = run_fetched_linear(FetchedLinear(build, name, reader, weight_banks=banks),
                                     bytes(memory), runs, sim=sim, latency=(latency, latency))
            for j, y in enumerate(got.outputs):
                c, w = sets[j % 2]
                assert np.array_equal(y, requant_bitexact(c.requant(name),
                                                          linear_acc(c, w, name, x)))
            want = fetched_linear_span(build, name, reader, latency, rows,
                                       [b for b, _ in runs], banks)
            row[f"cycles_{banks}bank"] = got.span
            row[f"predicted_{banks}bank"] = want
        row["speedup"] = round(row["cycles_1bank"] / row["cycles_2bank"], 3)
        out.append(row)
    return out


def projected():
    """The model for a SmolLM2-sized stage over its 30 layers (shape-only configs: the
    timing does not depend on the numbers)."""
    out = []
    for name, cols in (("q", 32), ("up", 32)):
        cfg = LayerConfig(arch="llama", d_model=576, heads=9, kv_heads=3, d_ff=1536, seq=128,
                          lanes=8, linear_rows=8, linear_cols=cols, ffn_rows=8, ffn_cols=cols)
        reader = AxiReaderConfig(data_width=8 * cols, outstanding=8)
        latency, layers = 100, 30
        bases = [j * (1 << 21) for j in range(layers)]
        for rows in (1, 64):
            g = cfg.linear(name)
            fetch = reader.sequence_cycles(
                [c for b in bases for c in fetch_commands(cfg, name, b)], latency)
            spans = {b: fetched_linear_span(cfg, name, reader, latency, rows, bases, b)
                     for b in (1, 2)}
            stage = layers * (-(-rows // g.rows) * g.n_tiles * g.tile_steps + g.flush_steps)
            out.append({"stage": name, "k": g.k, "n": g.n, "rows": rows, "layers": layers,
                        "cols": cols, "data_width": reader.data_width, "latency": latency,
                        "cycles_1bank": spans[1], "cycles_2bank": spans[2],
                        "fetch_alone": fetch, "array_steps_alone": stage,
                        "waiting_for_weights_2bank": round(
                            max(0, spans[2] - stage) / spans[2], 3)})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", default="icarus", choices=("icarus", "verilator"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    result = {"sim": args.sim, "measured": measure(args.sim, args.seed),
              "projected": projected()}
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
