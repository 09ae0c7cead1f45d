"""Widths of the run-time loaded constants: what the real checkpoints' calibrations need
against the hardware widths the layer configs fix (issue 15, item 2: one build serves every
weight set of a config, so a constant's width comes from the config, and a calibration that
needs more is one ConfigError).

Prints one JSON object to stdout::

    .venv/bin/python bench/loaded_widths.py [--layers N]

For all-MiniLM-L6-v2 (every layer) and SmolLM2-135M (the first ``--layers``, default all 30),
static and dynamic schemes, per block kind (requant ``_pc`` per channel, ``_exp`` with a row
exponent; residual and mul by their stream widths; the norms by in/out width; rope), the
``[min, max]`` over the layers of: the bits the calibrated multipliers need
(``mult_bits_needed``) and the hardware's ``mult_width``; the shift ``s`` and the hardware's
``shift_max``; the norm's ``n_width`` / ``n_bits``, ``beta_width`` / ``beta_bits`` and T;
RoPE's entry width. ``fits`` is true when every needed width is within the hardware's (the
configs were built, so a calibration beyond them would have raised ConfigError already).
"""

from __future__ import annotations

import argparse
import collections
import json

from llmloom.hw.blocks.mul import MulConfig
from llmloom.hw.blocks.norm import NormConfig
from llmloom.hw.blocks.requant import RequantConfig
from llmloom.hw.blocks.residual import ResidualConfig
from llmloom.hw.blocks.rope import RopeConfig
from llmloom.hw.blocks.rowkernel import signed_width


def block_widths(c):
    """``(kind, {quantity: value})`` of one block config, or None for a block without
    calibrated constants."""
    if isinstance(c, RequantConfig):
        mults, s = c.multipliers
        kind = "requant" + ("_exp" if c.row_exponent else "") + ("_pc" if c.per_channel else "")
        return kind, {"mult_bits_needed": max(mults).bit_length(),
                      "mult_width": c.mult_width_value, "shift": s, "shift_max": c.shift_max}
    if isinstance(c, ResidualConfig):
        mx, mr, s = c.multipliers
        return f"residual{c.x_width}_{c.r_width}_{c.out_width}", {
            "mult_bits_needed": max(mx, mr).bit_length(), "mult_width": c.mult_width_value,
            "shift": s, "shift_max": c.shift_max}
    if isinstance(c, MulConfig):
        m, s = c.multiplier
        return f"mul{c.out_width}", {"mult_bits_needed": m.bit_length(),
                                     "mult_width": c.mult_width_value, "shift": s,
                                     "shift_max": c.shift_max}
    if isinstance(c, RopeConfig):
        m = round(c.ratio * 2.0 ** c.frac_bits)
        return "rope", {"entry_needed": signed_width(-m, m), "entry_width": c.table_width}
    if isinstance(c, NormConfig):
        return f"{c.KIND}{c.in_width}_{c.out_width}", {
            "n_width": c.n_width, "n_bits": c.n_bits_value, "T": c.total_shift,
            "beta_width": c.beta_width if c.beta is not None else 0,
            "beta_bits": c.beta_bits_value if c.beta is not None else 0,
            "eps_term_bits": c.eps_term.bit_length(), "eps_width": c.eps_width}
    return None


NEEDS = {"mult_bits_needed": "mult_width", "shift": "shift_max", "n_width": "n_bits",
         "beta_width": "beta_bits", "entry_needed": "entry_width",
         "eps_term_bits": "eps_width"}


def summarise(cfgs):
    seen = collections.defaultdict(lambda: collections.defaultdict(list))
    for cfg in cfgs:
        for _, c in cfg.stages:
            got = block_widths(c[1] if isinstance(c, tuple) else c)
            if got is not None:
                for k, v in got[1].items():
                    seen[got[0]][k].append(v)
    out = {kind: {k: [min(v), max(v)] for k, v in q.items()} for kind, q in seen.items()}
    fits = all(q[need][1] <= q[hw][0] for q in out.values()
               for need, hw in NEEDS.items() if need in q)
    return out, fits


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=None, help="SmolLM2 layers (default all)")
    args = p.parse_args()
    from llmloom.sim.accuracy import DEFAULT_CALIB_TEXT
    from llmloom.sim.hf import load_model
    from llmloom.sim.llm import quantize_llama
    from llmloom.sim.model import quantize_model

    doc = {"models": {}}
    minilm = load_model("all-minilm-l6-v2")
    for scheme in ("static", "dynamic"):
        qm = quantize_model(minilm, minilm.tokens(DEFAULT_CALIB_TEXT, "calibration text"),
                            seq=16, scheme=scheme)
        blocks, fits = summarise([layer[0] for layer in qm.layers])
        doc["models"][f"all-minilm-l6-v2/{scheme}"] = {"layers": len(qm.layers),
                                                       "fits": fits, "blocks": blocks}
        qm = quantize_llama(scheme=scheme, num_layers=args.layers)
        blocks, fits = summarise([layer[0] for layer in qm.layers])
        doc["models"][f"smollm2-135m/{scheme}"] = {"layers": qm.num_layers, "fits": fits,
                                                   "blocks": blocks}
    doc["fits"] = all(m["fits"] for m in doc["models"].values())
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
