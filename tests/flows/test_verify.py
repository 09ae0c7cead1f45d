"""The verification service (:func:`llmloom.flows.verify.verify`) on Amaranth's simulator: a
small GEMM and a small softmax are bit-exact with the golden model, the prediction equals the
simulated cycles, the report has the ``llmloom run --report`` keys, and the tensors are
prepared once."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.flows.verify import mismatch_count, verify
from llmloom.hw.blocks.gemm import GemmConfig
from llmloom.hw.blocks.softmax import SoftmaxConfig
from llmloom.sim.harness import get_harness
from llmloom.sim.streams import Stalls

REPORT_KEYS = ["block", "config", "sim", "stalls", "cycles", "macs", "macs_per_cycle",
               "utilization", "predicted_cycles", "matches_golden", "sim_wall_s",
               "sim_cycles_per_s", "tensor_cycles"]


def _gemm(rng):
    cfg = GemmConfig(rows=2, cols=2, k=8, n=4, lanes=4)
    return "gemm", cfg, {"a": rng.integers(-128, 128, (3, 8), dtype=np.int8),
                         "w": rng.integers(-128, 128, (8, 4), dtype=np.int8)}


def _softmax(rng):
    cfg = SoftmaxConfig(length=8, lanes=2, x_scale=1 / 16, causal=True)
    return "softmax", cfg, {"x": rng.integers(-128, 128, (3, 8), dtype=np.int8),
                            "x_scale": np.float64(1 / 16)}


@pytest.fixture
def counted_prepare(monkeypatch):
    """Counts calls of each harness's ``prepare``."""
    calls = {}

    def count(name):
        h = get_harness(name)
        original = h.prepare

        def prepare(cfg, tensors):
            calls[name] = calls.get(name, 0) + 1
            return original(cfg, tensors)
        monkeypatch.setattr(h, "prepare", prepare)
        return calls
    return count


@pytest.mark.parametrize("case", [_gemm, _softmax], ids=["gemm", "softmax"])
def test_verify_bit_exact_predicted_and_prepared_once(case, rng, counted_prepare):
    block, cfg, tensors = case(rng)
    calls = counted_prepare(block)
    v = verify(block, cfg, tensors, sim="amaranth")
    assert calls == {block: 1}
    assert v.exact and set(v.mismatches) == set(v.golden) and not any(v.mismatches.values())
    assert v.predicted_cycles == v.cycles > 0
    assert v.timing is None            # no per-stage document for single blocks
    report = v.report()
    assert list(report) == REPORT_KEYS
    assert report["block"] == block and report["config"] == cfg.to_dict()
    assert report["matches_golden"] is True and report["stalls"] == "none"
    assert report["predicted_cycles"] == report["cycles"]
    if block == "gemm":
        assert report["macs"] == 3 * 8 * 4
        assert report["utilization"] == pytest.approx(3 * 8 * 4 / (v.cycles * 4))
    for name, want in v.golden.items():
        np.testing.assert_array_equal(v.outputs[name], want)


def test_verify_stalled_run_has_no_prediction(rng):
    block, cfg, tensors = _gemm(rng)
    v = verify(block, cfg, tensors, stalls_in=Stalls("pattern"), stalls_out=Stalls("random", 3))
    assert v.exact and v.predicted_cycles is None
    assert v.report()["stalls"] == "pattern/random"


def test_mismatch_count():
    assert mismatch_count(np.array([1, 2, 3]), np.array([1, 0, 0])) == 2
    assert mismatch_count(np.zeros((2, 2)), np.zeros(3)) == 4
