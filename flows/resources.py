"""Resource estimates held to synthesis: the table of both, and the check of stated tolerances.

The estimator is any callable ``estimator(block, cfg, target) -> {resource: value}`` giving some
of ``lut``, ``ff``, ``dsp``, ``bram`` in the units of :class:`~llmloom.flows.synth.SynthResult`
(BRAM in the target family's block: SB_RAM40_4K, DP16KD, RAMB36E2); resources it leaves out are
shown but not checked. The synthesis side is either run (:func:`~llmloom.flows.synth.synthesize`)
or taken from the stored baselines (:func:`from_baselines`), so that a test of the model against
synthesis costs nothing when the baselines are current.
"""

from __future__ import annotations

import dataclasses

from .synth import design_id, get_target, load_baselines, synthesize

__all__ = ["Tolerance", "ESTIMATE_TOLERANCES", "ResourceRow", "ResourceReport",
           "check_estimate", "compare_estimates", "from_baselines"]

RESOURCES = ("lut", "ff", "dsp", "bram")


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """``rel``: |estimate − synth| ≤ ``value`` × synth; ``abs``: ≤ ``value``; ``either``:
    within ``value`` relative or ``floor`` absolute, whichever is looser (small counts)."""

    kind: str
    value: float
    floor: float = 0.0

    def allows(self, estimate, actual):
        err = abs(estimate - actual)
        if self.kind == "abs":
            return err <= self.value
        if self.kind == "rel":
            return err <= self.value * abs(actual)
        if self.kind == "either":
            return err <= max(self.value * abs(actual), self.floor)
        raise ValueError(f"tolerance kind {self.kind!r} is not allowed; allowed: abs | rel | "
                         "either")

    def __str__(self):
        if self.kind == "abs":
            return f"±{self.value:g}"
        if self.kind == "rel":
            return f"±{self.value:.0%}"
        return f"±{self.value:.0%} or ±{self.floor:g}"


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
