"""Resource estimates held to synthesis: the table of both, and the check of stated tolerances.

The estimator is any callable ``estimator(block, cfg, target) -> {resource: value}`` giving some
of ``lut``, ``ff``, ``dsp``, ``bram`` in the units of :class:`~llmloom.flows.synth.SynthResult`
(BRAM in the target family's block: SB_RAM40_4K, DP16KD, RAMB36E2); resources it leaves out are
shown but not checked. The synthesis side is either run (:func:`~llmloom.flows.synth.synthesize`)
or taken from the stored baselines (:func:`from_baselines`), so that a test of the model against
synthesis costs nothing when the baselines are current.

Our estimator is :func:`model_estimate` (``llmloom.perf.resources`` on the design the flow
builds). This module also holds what ties that model to synthesis: the designs its fitted
constants come from (:data:`FIT_DESIGNS`, :data:`HOSTLINK_FIT`) and their least-squares refit
(:func:`fit_logic`), the held-out designs the tests synthesise afresh (:data:`CHECK_DESIGNS`),
and the single products measured through Yosys (:data:`MEASURED_PRODUCTS`).
"""

from __future__ import annotations

import dataclasses

from ..hw.devices import FAMILIES
from .synth import synthesize
from .synth_baselines import design_id, load_baselines
from .synth_targets import get_target
from .tolerance import Tolerance

__all__ = ["ESTIMATE_TOLERANCES", "ResourceRow", "ResourceReport",
           "check_estimate", "compare_estimates", "from_baselines", "synthesized_config",
           "model_estimate", "FIT_DESIGNS", "HOSTLINK_FIT", "FIT_TARGETS", "CHECK_DESIGNS",
           "MEASURED_PRODUCTS", "FIT_HARNESS", "hostlink_id", "stored_hostlinks", "fitted_ids",
           "fit_logic"]

RESOURCES = ("lut", "ff", "dsp", "bram")


#: What an analytical model must achieve against open synthesis. Multipliers are structural
#: (one per int8 MAC unless packed), so exact; block RAMs depend on how Yosys splits a memory
#: into blocks, so within a quarter or one block; LUTs and FFs depend on Yosys's optimisation
#: and on carry/LUTRAM mapping, so within 35 % (or 64 cells for small designs).
ESTIMATE_TOLERANCES = {
    "dsp": Tolerance("abs", 0),
    "bram": Tolerance("either", 0.25, 1),
    "lut": Tolerance("either", 0.35, 64),
    "ff": Tolerance("either", 0.35, 64),
}


def check_estimate(actual, estimate, tolerances=None):
    """``{resource: True/False}`` for the resources the estimate gives, and the list of one-line
    problems."""
    tolerances = ESTIMATE_TOLERANCES if tolerances is None else tolerances
    ok, problems = {}, []
    for key in RESOURCES:
        if estimate.get(key) is None or actual.get(key) is None or key not in tolerances:
            continue
        ok[key] = tolerances[key].allows(estimate[key], actual[key])
        if not ok[key]:
            problems.append(f"{key}: estimate {estimate[key]:g} vs synthesis {actual[key]:g} "
                            f"(allowed {tolerances[key]})")
    return ok, problems


@dataclasses.dataclass
class ResourceRow:
    block: str
    design_id: str
    target: str
    config: dict
    synth: dict                 # lut/ff/dsp/bram (+ fmax_mhz) from synthesis
    estimate: dict              # what the estimator gave
    ok: dict                    # per checked resource
    problems: list


@dataclasses.dataclass
class ResourceReport:
    rows: list
    tolerances: dict

    @property
    def ok(self):
        return all(not r.problems for r in self.rows)

    def to_dict(self):
        return {"ok": self.ok, "tolerances": {k: str(v) for k, v in self.tolerances.items()},
                "rows": [dataclasses.asdict(r) for r in self.rows]}

    def markdown(self):
        """The table of both: one line per design and target, ``synth / estimate`` per
        resource, a mark where the estimate is outside its tolerance."""
        head = "| design | target | " + " | ".join(
            f"{k.upper()} synth / est. ({self.tolerances[k]})" if k in self.tolerances
            else f"{k.upper()} synth / est." for k in RESOURCES) + " | Fmax MHz |"
        lines = [head, "|" + "---|" * (len(RESOURCES) + 3)]
        for r in self.rows:
            cells = []
            for k in RESOURCES:
                est = r.estimate.get(k)
                mark = "" if r.ok.get(k, True) else " ✗"
                cells.append(f"{_fmt(r.synth.get(k))} / {_fmt(est)}{mark}")
            fmax = r.synth.get("fmax_mhz")
            lines.append(f"| {r.design_id} | {r.target} | " + " | ".join(cells)
                         + f" | {_fmt(fmax)} |")
        return "\n".join(lines)


def _fmt(x):
    if x is None:
        return "–"
    return f"{x:.1f}" if isinstance(x, float) and not float(x).is_integer() else f"{x:g}"


def from_baselines(target):
    """Synthesis numbers of the stored baselines of ``target``, keyed by design id (for
    ``results=`` of :func:`compare_estimates`)."""
    return {k: {key: v.get(key) for key in (*RESOURCES, "fmax_mhz")}
            for k, v in load_baselines(target).items()}


def compare_estimates(designs, estimator, target, *, tolerances=None, results=None,
                      synth_kwargs=None):
    """The estimator's numbers beside synthesis for each ``(block, cfg)`` of ``designs`` on
    ``target``.

    ``results`` (``{design id: {lut, ff, dsp, bram, fmax_mhz}}``, e.g. :func:`from_baselines`)
    is used where it has the design; the others are synthesised with ``synth_kwargs``.
    Returns a :class:`ResourceReport`; its ``ok`` says whether every estimate is within
    ``tolerances`` (default :data:`ESTIMATE_TOLERANCES`).
    """
    tgt = get_target(target)
    tolerances = ESTIMATE_TOLERANCES if tolerances is None else tolerances
    rows = []
    for block, cfg in designs:
        did = design_id(block, cfg)
        actual = (results or {}).get(did)
        if actual is None:
            from ..sim.harness import get_harness
            res = synthesize(get_harness(block).component(cfg), tgt.name,
                             **(synth_kwargs or {}))
            actual = {**res.resources(), "fmax_mhz": res.fmax_mhz}
        estimate = {k: v for k, v in (estimator(block, cfg, tgt.name) or {}).items()
                    if k in RESOURCES}
        ok, problems = check_estimate(actual, estimate, tolerances)
        rows.append(ResourceRow(block=block, design_id=did, target=tgt.name,
                                config=cfg.to_dict(), synth=dict(actual), estimate=estimate,
                                ok=ok, problems=problems))
    return ResourceReport(rows=rows, tolerances=dict(tolerances))


# ---- the model of perf.resources, as synthesis sees our designs ---------------------------------
def synthesized_config(block, cfg):
    """The config the open flow actually builds for ``block``: a shape-only layer config is
    calibrated on the quantiser's seeded placeholder weights (``llmloom synth`` does the same,
    :func:`llmloom.sim.quantize.quantize_placeholder`), so that the estimate sees the same
    re-quantisers, norms and tables as synthesis."""
    if block in ("gpt2-block", "bert-layer") and not cfg.calibrated:
        from ..sim.harness import get_harness
        from ..sim.quantize import quantize_placeholder
        return quantize_placeholder(cfg.replace(arch=get_harness(block).arch)).config
    return cfg


def model_estimate(block, cfg, target):
    """:func:`llmloom.perf.resources.estimate_block` of the design the flow builds for
    ``block`` and ``cfg`` (see :func:`synthesized_config`): the estimator of
    :func:`compare_estimates` for our blocks."""
    from ..perf.resources import estimate_block
    return estimate_block(block, synthesized_config(block, cfg), get_target(target).family)


#: The designs the fitted logic constants of ``perf.resources.LOGIC`` come from, per block
#: (config values, synthesised on every family's target of :data:`FIT_TARGETS`, or
#: ``(values, families)`` for some only). Each block's
#: constants are a least-squares fit of its features over these runs, less the modelled
#: memories and multipliers; the checks (``tests/flows/test_resource_model.py``) use other
#: configurations as well.
_W16 = {"x_width": 16, "r_width": 16, "out_width": 16}
_N16 = {"in_width": 16, "out_width": 16}

FIT_DESIGNS = {
    "gemm": ({"rows": 2, "cols": 2}, {}, {"rows": 8, "cols": 8}, {"rows": 4, "cols": 8},
             {"rows": 4, "cols": 4, "k": 256, "n": 256, "lanes": 8},
             {"rows": 2, "cols": 4, "k": 128, "n": 32, "lanes": 8},
             {"rows": 3, "cols": 5, "k": 96, "n": 40, "lanes": 4},
             # one row (no readout mux, no row skew); not on xcup, where Yosys 0.70 fails on
             # it (an assertion in abc9's reintegration)
             ({"rows": 1, "cols": 8, "k": 32, "n": 32, "lanes": 2}, ("ice40", "ecp5"))),
    "gemv": ({}, {"rows": 8, "cols": 4, "k": 256, "n": 128, "lanes": 8},
             {"rows": 4, "cols": 8}),
    "requant": ({}, {"lanes": 8, "length": 256},
                {"lanes": 4, "length": 16, "acc_scale": [0.001, 0.0012, 0.0015, 0.0017] * 4,
                 "bias": list(range(1, 17))},
                {"lanes": 8, "length": 64, "acc_scale": [round(0.001 + 0.0001 * (c % 10), 4)
                                                         for c in range(64)]},
                # a wider multiplier word than mult_bits (the loaded constants' width is the
                # config's): the rounding's and the registers' widths apart from the lanes
                {"mult_width": 24}),
    # a narrower multiplier word, the skip aligned by row exponents (its barrel shifter), and
    # int16 streams (the sum's width covers them: no term of their own)
    "residual": ({}, {"lanes": 8, "length": 256}, {"mult_width": 20}, {"e_max": 4}, _W16),
    "gelu": ({}, {"lanes": 8, "length": 256}, {"lanes": 1, "length": 16}),
    "silu": ({}, {"lanes": 8, "length": 256}),
    "softmax": ({}, {"lanes": 8, "length": 256}, {"lanes": 2, "length": 32},
                {"lanes": 8, "length": 64}, {"lanes": 1, "length": 16}),
    "layernorm": ({}, {"lanes": 8, "length": 256}, {"lanes": 2, "length": 32},
                  {"lanes": 8, "length": 64}, {"lanes": 1, "length": 16}),
    "rmsnorm": ({}, {"lanes": 8, "length": 256}, {"lanes": 2, "length": 32},
                {"lanes": 8, "length": 64}, {"lanes": 1, "length": 16}),
    "kvcache": ({}, {"d_model": 128, "seq": 32, "lanes": 8, "qk_cols": 8, "pv_cols": 8}),
    # the dynamic scheme's blocks: its per-row quantiser, and what the int16 residual stream
    # and the row exponents add to the int8 blocks (fitted with those blocks' own terms as
    # above, so the int8 estimates stay what they were)
    "dynquant": ({}, {"lanes": 2, "length": 32}, {"lanes": 8, "length": 256},
                 {"lanes": 1, "length": 16}),
    "requant_wide": ({"row_exponent": True}, {"row_exponent": True, "out_width": 16},
                     {"out_width": 16}, {"row_exponent": True, "lanes": 2, "length": 32}),
    "layernorm_wide": (_N16, {**_N16, "lanes": 2, "length": 32}),
    "rmsnorm_wide": (_N16, {**_N16, "lanes": 2, "length": 32}),
    "gelu_wide": ({"out_width": 16}, {"out_width": 16, "lanes": 1, "length": 16},
                  {"out_width": 16, "lanes": 2, "length": 32}),
    "silu_wide": ({"out_width": 16}, {"out_width": 16, "lanes": 1, "length": 16},
                  {"out_width": 16, "lanes": 2, "length": 32}),
}

#: The block (``sim`` harness) of each fitted term that is not a block's own: the logic the
#: wide (int16, row exponent) configurations add to a block.
FIT_HARNESS = {"requant_wide": "requant", "layernorm_wide": "layernorm",
               "rmsnorm_wide": "rmsnorm", "gelu_wide": "gelu", "silu_wide": "silu"}

#: Configurations none of the fitted constants come from, synthesised afresh by the tests
#: (Yosys only) and held to the tolerances: ``(target, block, values, slow)``.
CHECK_DESIGNS = (
    ("ice40-up5k", "gemm", {"rows": 2, "cols": 2, "k": 16, "n": 16}, False),
    ("ecp5-85f", "gemv", {"rows": 2, "cols": 2, "k": 32, "n": 32, "lanes": 2}, False),
    ("xcup", "requant", {"lanes": 2, "length": 32}, False),
    ("ecp5-85f", "residual", {"lanes": 1, "length": 16}, False),
    ("xcup", "residual", {"e_max": 2, "lanes": 2, "length": 32}, False),
    ("ice40-up5k", "silu", {"lanes": 2, "length": 32}, False),
    ("ecp5-85f", "softmax", {"lanes": 4, "length": 128, "causal": True}, False),
    ("ecp5-85f", "rmsnorm", {"lanes": 4, "length": 128}, False),
    ("xcup", "kvcache", {"d_model": 32, "heads": 2, "seq": 16, "lanes": 2, "qk_cols": 2,
                         "pv_cols": 2}, False),
    ("ice40-up5k", "attention", {"d_model": 32, "heads": 2, "seq": 16, "lanes": 2,
                                 "qk_rows": 2, "qk_cols": 2, "pv_rows": 2, "pv_cols": 2}, True),
    ("ecp5-85f", "gpt2-block", {"d_model": 32, "heads": 2, "d_ff": 64, "seq": 8, "lanes": 2,
                                **{f"{a}_{d}": 2 for a in ("linear", "ffn", "qk", "pv")
                                   for d in ("rows", "cols")}}, True),
    ("ice40-up5k", "bert-layer", {"d_model": 32, "heads": 2, "d_ff": 64, "seq": 8, "lanes": 2,
                                  **{f"{a}_{d}": 2 for a in ("linear", "ffn", "qk", "pv")
                                     for d in ("rows", "cols")}}, True),
    # the dynamic scheme's blocks
    ("ecp5-85f", "dynquant", {"lanes": 4, "length": 128}, False),
    ("xcup", "requant", {"row_exponent": True, "out_width": 16, "lanes": 2, "length": 32},
     False),
    ("ecp5-85f", "residual", {**_W16, "lanes": 2, "length": 32}, False),
    ("xcup", "layernorm", {**_N16, "lanes": 4, "length": 128}, False),
    ("ecp5-85f", "gpt2-block", {"d_model": 32, "heads": 2, "d_ff": 64, "seq": 8, "lanes": 2,
                                "scheme": "dynamic",
                                **{f"{a}_{d}": 2 for a in ("linear", "ffn", "qk", "pv")
                                   for d in ("rows", "cols")}}, True),
)

#: A registered Amaranth product ``(a bits, a signed, b bits, b signed)`` or ``(x bits, x
#: signed, constant)`` -> the multipliers Yosys 0.70 used on (iCE40, ECP5, xcup): synth_ice40
#: -dsp, synth_ecp5, synth_xilinx -family xcup, one product per run
#: (``bench/resources.py --multipliers`` reruns them; the tests hold the model to them).
MEASURED_PRODUCTS = (
    ((8, True, 8, True), (1, 1, 1)),
    ((9, True, 8, True), (1, 1, 1)),
    ((4, True, 8, True), (1, 1, 1)),
    ((3, True, 3, True), (0, 1, 0)),
    ((5, True, 5, True), (0, 1, 1)),
    ((6, True, 5, True), (1, 1, 1)),
    ((5, True, 6, True), (1, 1, 1)),
    ((6, True, 6, True), (1, 1, 1)),
    ((16, False, 16, False), (1, 1, 1)),
    ((16, True, 16, True), (1, 1, 1)),
    ((17, True, 16, True), (1, 1, 1)),
    ((17, True, 17, True), (1, 1, 1)),
    ((18, True, 18, True), (3, 1, 1)),
    ((19, True, 18, True), (3, 1, 1)),
    ((18, False, 18, False), (3, 1, 2)),
    ((32, True, 17, True), (2, 2, 2)),
    ((33, True, 17, True), (2, 2, 2)),
    ((32, True, 16, False), (2, 2, 2)),
    ((33, True, 17, False), (4, 2, 2)),
    ((30, False, 18, False), (4, 2, 4)),
    ((17, False, 22, True), (3, 2, 1)),
    ((20, False, 24, False), (4, 4, 2)),
    ((26, False, 18, False), (4, 2, 2)),
    ((27, True, 18, True), (4, 2, 1)),
    ((28, True, 18, True), (4, 2, 2)),
    ((44, True, 18, True), (6, 3, 2)),
    ((36, True, 19, True), (5, 2, 4)),
    ((24, True, 18, True), (3, 2, 1)),
    ((20, True, 20, True), (3, 4, 2)),
    ((32, True, 32, True), (4, 4, 4)),
    ((8, True, 77), (1, 1, 1)),
    ((32, True, 40503), (2, 2, 2)),
    ((33, True, 65000), (2, 2, 2)),
    ((18, False, 255), (1, 1, 1)),
    ((14, False, 255), (1, 1, 1)),
    ((8, True, -77), (1, 1, 1)),
    ((16, False, 768), (1, 1, 1)),
    ((16, False, 3), (1, 1, 1)),
)

#: One target per family: where the fitted designs are synthesised.
FIT_TARGETS = {name: fam.target for name, fam in FAMILIES.items()}


def fitted_ids():
    """``{target: {design id}}`` of the designs the constants are fitted to (the others
    stored are held out: they check the model)."""
    from ..hw.blocks.gemm_config import GemmConfig
    from ..sim.harness import get_harness
    out = {t: set() for t in FIT_TARGETS.values()}
    for block, designs in FIT_DESIGNS.items():
        name = FIT_HARNESS.get(block, block)
        harness = get_harness(name)
        for values in designs:
            families = FIT_TARGETS
            if isinstance(values, tuple):
                values, families = values
            did = design_id(name, harness.config(values))
            for fam in families:
                out[FIT_TARGETS[fam]].add(did)
    for target, values, max_rows in HOSTLINK_FIT:
        out[target].add(hostlink_id(GemmConfig(**values), max_rows))
    return out


def fit_logic(results=None, blocks=None):
    """Least-squares refit of ``perf.resources.LOGIC`` from synthesis results.

    ``results`` maps a target name to ``{design id: {lut, ff, ...}}`` (default: the stored
    baselines, :func:`from_baselines`). For each block and family, each fitted design gives one
    equation: its synthesis result less everything the model accounts for outside the
    block's own logic (memories, multipliers, sub-blocks) equals ``coef · features``. Returns
    ``{block: {family: {"lut": {feature: coef}, "ff": {...}}}}`` (features that are zero in
    every design are left out) and raises ``KeyError`` naming a design without a result.
    """
    from ..perf import resources as R
    results = results if results is not None else {t: from_baselines(t)
                                                   for t in FIT_TARGETS.values()}
    out = {}
    saved = {k: dict(v) for k, v in R.LOGIC.items()}
    try:
        # in FIT_DESIGNS order: a composite's own term is fitted with its parts refitted
        for block, designs in (*FIT_DESIGNS.items(), ("hostlink", HOSTLINK_FIT)):
            if blocks is None or block in blocks:
                out[block] = _fit_block(R, block, designs, results)
                R.LOGIC[block] = out[block]
    finally:
        R.LOGIC.clear()
        R.LOGIC.update(saved)
    return out


def hostlink_id(cfg, max_rows):
    """The baseline key of a board core (``HostLink``) with GEMM ``cfg``."""
    return design_id("hostlink", cfg) + f"-max_rows={max_rows}"


def stored_hostlinks(target):
    """``[(design id, entry, GemmConfig, max_rows)]`` of the board cores stored in the
    baselines of ``target``."""
    from ..hw.blocks.gemm_config import GemmConfig
    out = []
    for did, entry in load_baselines(target).items():
        if entry["block"] == "hostlink":
            values = dict(entry["config"])
            max_rows = values.pop("max_rows")
            out.append((did, entry, GemmConfig(**values), max_rows))
    return out


#: Board cores (``boards.hostlink.HostLink``) the ``hostlink`` constants are fitted to:
#: ``(target, GemmConfig values, max_rows)``, with the board's clock for the UART divisor.
HOSTLINK_FIT = (
    ("ice40-up5k", {"rows": 2, "cols": 4, "k": 16, "n": 16}, 4),
    ("ice40-up5k", {"rows": 1, "cols": 8, "k": 32, "n": 32}, 8),
    ("ecp5-85f", {}, 16),
    ("ecp5-85f", {"rows": 8, "cols": 8}, 16),
)


def _fit_block(R, block, designs, results):
    """``{family: {"lut": {feature: coef}, "ff": {...}}}`` of one block (see
    :func:`fit_logic`)."""
    out = {}
    if block == "hostlink":
        from ..hw.blocks.gemm_config import GemmConfig
        for fam in ("ice40", "ecp5"):
            runs = []
            for target, values, max_rows in designs:
                if get_target(target).family != fam:
                    continue
                cfg = GemmConfig(**values)
                runs.append((hostlink_id(cfg, max_rows), target,
                             R.estimate_hostlink_parts(cfg, max_rows, fam)))
            out[fam] = _solve(R, block, runs, results)
        return out
    from ..sim.harness import get_harness
    name = FIT_HARNESS.get(block, block)
    harness = get_harness(name)
    for fam, target in FIT_TARGETS.items():
        runs = []
        for values in designs:
            if isinstance(values, tuple):          # (values, the families it is fitted on)
                values, families = values
                if fam not in families:
                    continue
            cfg = harness.config(values)
            runs.append((design_id(name, cfg), target,
                         R.estimate_parts(name, synthesized_config(name, cfg), fam)))
        out[fam] = _solve(R, block, runs, results)
    return out


def _solve(R, block, runs, results):
    """Least squares of the block's own logic features against what synthesis left over,
    LUTs and FFs each over their own features."""
    import numpy as np
    rows, rhs = {"lut": [], "ff": []}, {"lut": [], "ff": []}
    for did, target, parts in runs:
        actual = results.get(target, {}).get(did)
        if actual is None:
            raise KeyError(f"no {target} result for {did} (needed to fit {block})")
        own = [p for p in parts.values() if isinstance(p, R.LogicBill) and p.block == block]
        rest = sum((p for p in parts.values() if not (
            isinstance(p, R.LogicBill) and p.block == block)), R.Bill())
        for res in ("lut", "ff"):
            feats = {}
            for p in own:
                for k, v in p.features[res].items():
                    feats[k] = feats.get(k, 0) + v
            rows[res].append(feats)
            rhs[res].append(actual[res] - getattr(rest, res))
    fitted = {}
    for res in ("lut", "ff"):
        names = sorted({k for r in rows[res] for k, v in r.items() if v})
        a = np.array([[r.get(k, 0) for k in names] for r in rows[res]], dtype=float)
        coef, *_ = np.linalg.lstsq(a, np.array(rhs[res], dtype=float), rcond=None)
        fitted[res] = {k: round(float(c), 2) for k, c in zip(names, coef, strict=True)}
    return fitted
