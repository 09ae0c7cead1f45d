import pytest

from llmloom.perf import ConstraintError, estimate, explore


def test_more_dsps_are_never_slower_once_explored():
    # from 80 DSPs: at 40 the smallest W8A8 design (its linear kernels' Q8_0 group scaling
    # and the units included) does not fit
    values = [explore("bert-base", "u280", objective="prefill", seq=128, budget_dsp=b,
                      progress=False).value for b in (80, 160, 640, 2560)]
    assert all(b <= a for a, b in zip(values, values[1:], strict=False))
    assert values[-1] < values[0] / 10


def test_explored_design_respects_the_budget_and_front_is_pareto():
    r = explore("gpt2", "u280", objective="decode", seq=128, budget_dsp=600, progress=False)
    doc = estimate("gpt2", "u280", r.best, seq=128)
    assert doc["resources"]["dsp"] <= 600
    assert doc["decode"]["latency_s_per_token"] == pytest.approx(r.value)
    dsps = [p["dsp"] for p in r.front]
    vals = [p["value"] for p in r.front]
    assert dsps == sorted(dsps) and vals == sorted(vals, reverse=True)
    assert r.front[-1]["value"] == pytest.approx(r.value)
    # exported as the hw GEMM configs
    cfgs = r.best.gemm_configs("gpt2")
    assert all(c.peak_macs_per_cycle == r.best.kernels[n].macs_per_cycle
               for n, c in cfgs.items())


def test_explored_beats_the_preset_at_its_budget():
    preset = estimate(None, None, "chen2024-gpt2-u280")
    r = explore("gpt2-medium", "u280", objective="decode", budget_dsp=preset["resources"]["dsp"],
                clock_mhz=250, progress=False)
    assert r.value < preset["decode"]["latency_s_per_token"]


def test_tokens_per_s_objective_and_impossible_budgets():
    r = explore("gpt2", "u280", objective="tokens-per-s", seq=64, budget_dsp=300, gen=32,
                progress=False)
    assert r.value > 0 and r.front[-1]["value"] == pytest.approx(r.value)
    with pytest.raises(ConstraintError, match="within a DSP budget of 5"):
        explore("gpt2", "u280", objective="prefill", seq=64, budget_dsp=5, progress=False)
    with pytest.raises(ValueError, match="objective='latency' is not allowed"):
        explore("gpt2", "u280", objective="latency")
