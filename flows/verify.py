"""The verification service: run a block's RTL on tensors, check it against the golden model
and set the analytical model's prediction beside the measurement.

:func:`verify` is the one place that composes run → golden → metrics → prediction; ``llmloom
run``, ``llmloom demo``, the benchmarks and the tests call it. It lives in ``flows`` because it
needs both ``sim`` (harness, simulator, golden model) and ``perf`` (cycle and timing
predictions), and those two layers must not import each other; ``flows`` sits on both.

The tensors are prepared once (:meth:`~llmloom.sim.harness.BlockHarness.prepare`) and the same
prepared tensors feed the simulation, the golden model, the float metrics, the MAC count and the
shape arguments of the prediction; the layer is timed once (its ``BLOCK_TIMING`` document where
the block has one, whose total is the predicted cycle count, else its ``BLOCK_CYCLES``).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from llmloom.perf.cycles import BLOCK_CYCLES, BLOCK_TIMING
from llmloom.sim import runner
from llmloom.sim.harness import get_harness
from llmloom.sim.runner import RunResult
from llmloom.sim.streams import NO_STALLS

__all__ = ["Verification", "verify", "mismatch_count", "GOLDEN"]

#: The ``sim`` that runs the bit-exact golden model alone (no RTL, no cycles): seconds, for
#: layers too big to simulate and for exploring quantisation.
GOLDEN = "golden"


def mismatch_count(got, want):
    """Elements of ``got`` that differ from ``want`` (all of them when the shapes differ)."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return int(max(got.size, want.size))
    return int(np.count_nonzero(got != want))


@dataclasses.dataclass
class Verification:
    """One verified run: the measurement, the golden model's verdict and the prediction."""

    block: str
    cfg: object
    sim: str
    stalls: str                 # the stall kind ("in/out" when the two sides differ)
    prepared: dict              # the harness's prepared input tensors
    result: RunResult | None     # None for ``sim="golden"`` (no RTL ran)
    golden: dict                # output name → the golden model's tensor
    mismatches: dict            # output name (of the golden model's) → differing elements
    macs: int
    peak_macs_per_cycle: int
    #: the harness's ``float_metrics`` (e.g. cosine against the float64 layer), else ``None``
    float_metrics: dict | None
    #: ``None`` when there is no prediction (no model for the block, or a stalled run)
    predicted_cycles: int | None
    #: the block's ``BLOCK_TIMING`` document (``LayerTiming.as_dict()``: ``cycles``,
    #: ``tensor_cycles``, ``bottleneck``, ``stages``), else ``None``
    timing: dict | None
    run_wall_s: float           # the run_block call: Verilog, simulator build and simulation

    @property
    def exact(self):
        """Every output bit-exact with the golden model."""
        return not any(self.mismatches.values())

    @property
    def outputs(self):
        return self.golden if self.result is None else self.result.outputs

    @property
    def cycles(self):
        """Measured cycles (``None`` without a simulation)."""
        return None if self.result is None else self.result.cycles

    @property
    def macs_per_cycle(self):
        return self.macs / self.cycles if self.cycles else 0.0

    @property
    def utilization(self):
        peak = self.peak_macs_per_cycle
        return self.macs / (self.cycles * peak) if self.cycles and peak else None

    def report(self):
        """The run report (``llmloom run --report``), JSON-able. Without a simulation
        (``sim="golden"``) the same keys, those of measured cycles ``None``."""
        r = self.result
        report = {
            "block": self.block, "config": self.cfg.to_dict(), "sim": self.sim,
            "stalls": self.stalls, "cycles": self.cycles, "macs": self.macs,
            "macs_per_cycle": self.macs_per_cycle if r else None,
            "utilization": self.utilization,
            "predicted_cycles": self.predicted_cycles, "matches_golden": self.exact,
            "sim_wall_s": round(r.wall_s if r else self.run_wall_s, 3),
            "sim_cycles_per_s": round(r.cycles_per_s) if r else None,
            "tensor_cycles": r.tensor_cycles if r else None,
        }
        if self.float_metrics is not None:
            report.update(self.float_metrics)
        if self.timing is not None:
            # per tensor and per stage: MACs, peak, busy cycles, utilisation, the bottleneck
            stages = {s["name"]: s for s in self.timing["stages"]}
            report.update(predicted_tensor_cycles=self.timing["tensor_cycles"],
                          predicted_stages=self.timing["stages"],
                          predicted_bottleneck=stages[self.timing["bottleneck"]])
        return report


def predict(harness, cfg, prepared):
    """``(predicted_cycles, timing document or None)`` of a stall-free run of ``harness`` on
    ``prepared`` tensors; ``(None, None)`` when perf has no model of the block."""
    name = harness.name
    timing = BLOCK_TIMING.get(name)
    if timing is not None:
        doc = timing(cfg, *harness.shape_args(cfg, prepared)).as_dict()
        return doc["cycles"], doc
    cycles = BLOCK_CYCLES.get(name)
    if cycles is not None:
        return cycles(cfg, *harness.shape_args(cfg, prepared)), None
    return None, None


def verify(block, cfg, tensors, *, sim="amaranth", stalls_in=NO_STALLS, stalls_out=NO_STALLS,
           progress=False, predict_cycles=None, **run_kw):
    """Run ``block`` (a name or a harness) with config ``cfg`` on ``tensors`` and check it.

    Prepares the tensors once, simulates them (:func:`~llmloom.sim.runner.run_block`; extra
    keywords go to it), compares every output with the golden model, and adds the float
    metrics (where the harness has them), the MACs and the predicted timing. With
    ``sim=GOLDEN`` nothing is simulated: the outputs are the golden model's. The prediction is
    made for stall-free runs only (``predict_cycles=None``) — it models a stall-free pipeline —
    or always (``True``) or never (``False``). Returns a :class:`Verification`.
    """
    harness = get_harness(block) if isinstance(block, str) else block
    prepared = harness.prepare(cfg, tensors)
    t0 = time.perf_counter()
    if sim == GOLDEN:
        result = None
    else:
        # looked up on the module at call time, so a test can stand in for the simulator
        result = runner.run_block(harness, cfg, prepared, sim=sim, stalls_in=stalls_in,
                                  stalls_out=stalls_out, progress=progress, prepared=True,
                                  **run_kw)
    golden = harness.golden(cfg, prepared)
    run_wall_s = time.perf_counter() - t0
    outputs = golden if result is None else result.outputs
    mismatches = {k: mismatch_count(outputs[k], want) for k, want in golden.items()}
    metrics = (harness.float_metrics(cfg, prepared, outputs)
               if hasattr(harness, "float_metrics") else None)
    stall_free = stalls_in.kind == "none" and stalls_out.kind == "none"
    if predict_cycles is None:
        predict_cycles = stall_free
    predicted, timing = predict(harness, cfg, prepared) if predict_cycles else (None, None)
    stalls = (stalls_in.kind if stalls_in.kind == stalls_out.kind
              else f"{stalls_in.kind}/{stalls_out.kind}")
    return Verification(
        block=harness.name, cfg=cfg, sim=sim, stalls=stalls, prepared=prepared, result=result,
        golden=golden, mismatches=mismatches, macs=harness.macs(cfg, prepared),
        peak_macs_per_cycle=harness.peak_macs_per_cycle(cfg), float_metrics=metrics,
        predicted_cycles=predicted, timing=timing, run_wall_s=run_wall_s)
