"""Synthesis results stored as baselines, and held to them.

``flows/baselines/<target>.json`` maps each :func:`design_id` to the entry of one synthesis
(:func:`baseline_entry`): counts, Fmax and the tool versions that gave them.
:data:`BASELINE_DESIGNS` are the designs stored; :func:`compare_to_baseline` holds a new result
to its entry within :data:`TOLERANCES` (``flows.tolerance``'s scheme); ``bench/synth.py
--update-baselines`` rewrites them (:func:`update_baseline`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from .synth import synthesize
from .synth_targets import get_target
from .tolerance import Tolerance

__all__ = ["design_id", "TOLERANCES", "load_baselines", "compare_to_baseline",
           "baseline_entry", "update_baseline", "BASELINE_DIR", "BASELINE_DESIGNS"]


def design_id(block, cfg):
    """A stable name for a block config, used as the key of baselines: the block name and the
    fields that differ from the defaults, e.g. ``gemm-rows=2-cols=2`` (``gemm`` alone for the
    default config)."""
    parts = [block]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        default = f.default if f.default is not dataclasses.MISSING else None
        if value != default:
            parts.append(f"{f.name}={str(value).lower() if isinstance(value, bool) else value}")
    return "-".join(parts)


BASELINE_DIR = Path(__file__).parent / "baselines"

#: Allowed drift from a baseline, per key: LUTs and FFs within 10 %, multipliers and block RAMs
#: exact, Fmax at most 10 % below (it may improve).
TOLERANCES = {
    "lut": Tolerance("rel", 0.10),
    "ff": Tolerance("rel", 0.10),
    "dsp": Tolerance("abs", 0),
    "bram": Tolerance("abs", 0),
    "fmax_mhz": Tolerance("min_rel", 0.10),
}


def load_baselines(target):
    """``{design id: entry}`` of ``flows/baselines/<target>.json`` (empty when absent). Each
    entry holds ``block``, ``config``, ``lut``, ``ff``, ``dsp``, ``bram``, ``fmax_mhz`` and the
    ``tools`` that produced them."""
    path = BASELINE_DIR / f"{get_target(target).name}.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def compare_to_baseline(result, baseline, tolerances=None):
    """The keys of ``result`` (a :class:`~llmloom.flows.synth.SynthResult` or a dict) outside
    ``tolerances`` (``{key: Tolerance}``, default :data:`TOLERANCES`) of ``baseline``, as
    one-line messages (empty: within tolerance)."""
    tolerances = TOLERANCES if tolerances is None else tolerances
    problems = []
    for key, tol in tolerances.items():
        want = baseline.get(key)
        got = getattr(result, key) if not isinstance(result, dict) else result.get(key)
        if want is None and got is None:
            continue
        if want is None or got is None:
            problems.append(f"{key}: {got} where the baseline has {want}")
            continue
        if not tol.allows(got, want):
            problems.append(f"{key}: {got:g} vs baseline {want:g} (allowed {tol})")
    return problems


def baseline_entry(block, cfg, result):
    """The baseline record of one synthesis result."""
    return {"block": block, "config": cfg.to_dict(), "lut": result.lut, "ff": result.ff,
            "dsp": result.dsp, "bram": result.bram,
            "fmax_mhz": None if result.fmax_mhz is None else round(result.fmax_mhz, 2),
            "tools": result.tools}


def update_baseline(block, cfg, target, result=None, **kwargs):
    """Synthesise (unless ``result`` is given) and store the result as the baseline of
    ``design_id(block, cfg)`` for ``target``; returns the entry."""
    if result is None:
        from ..sim.harness import get_harness
        harness = get_harness(block)
        result = synthesize(harness.component(cfg), target, **kwargs)
    entries = load_baselines(target)
    entry = baseline_entry(block, cfg, result)
    entries[design_id(block, cfg)] = entry
    BASELINE_DIR.mkdir(exist_ok=True)
    path = BASELINE_DIR / f"{get_target(target).name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(sorted(entries.items())), indent=2) + "\n")
    os.replace(tmp, path)
    return entry


#: The designs with stored baselines: ``(target, block, config values, slow)``. The fast ones
#: run in CI (a 2×2 GEMM on iCE40, 4×4 on ECP5 and xcup: about 2 min with a cold YoWASP cache);
#: the slow ones with ``pytest --runslow`` (the 8×8 GEMMs: minutes each; the packed one holds
#: DSP packing to 32 DSP48E2 for 64 MACs).
BASELINE_DESIGNS = (
    ("ice40-up5k", "gemm", {"rows": 2, "cols": 2}, False),
    ("ecp5-85f", "gemm", {}, False),
    ("xcup", "gemm", {}, False),
    ("ecp5-85f", "gemm", {"rows": 8, "cols": 8}, True),
    ("xcup", "gemm", {"rows": 8, "cols": 8}, True),
    ("xcup", "gemm", {"rows": 8, "cols": 8, "dsp_packing": True}, True),
)
