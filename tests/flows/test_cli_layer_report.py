"""``llmloom run gpt2-block ... --report R.json`` reports the measured cycles per tensor and the
pipeline model's prediction: total, per tensor, per stage and the bottleneck."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmloom.flows.cli import main


def _gpt2_weights(path, rng, d=8, f=16):
    t = {"ln_1.weight": 1 + 0.1 * rng.normal(size=d), "ln_1.bias": 0.1 * rng.normal(size=d),
         "attn.c_attn.weight": rng.normal(size=(d, 3 * d)) / d ** 0.5,
         "attn.c_attn.bias": 0.1 * rng.normal(size=3 * d),
         "attn.c_proj.weight": rng.normal(size=(d, d)) / d ** 0.5,
         "attn.c_proj.bias": 0.1 * rng.normal(size=d),
         "ln_2.weight": 1 + 0.1 * rng.normal(size=d), "ln_2.bias": 0.1 * rng.normal(size=d),
         "mlp.c_fc.weight": rng.normal(size=(d, f)) / d ** 0.5,
         "mlp.c_fc.bias": 0.1 * rng.normal(size=f),
         "mlp.c_proj.weight": rng.normal(size=(f, d)) / f ** 0.5,
         "mlp.c_proj.bias": 0.1 * rng.normal(size=d)}
    np.savez(path, **{"h.0." + k: v.astype(np.float32) for k, v in t.items()})


def _run(tmp_path, *extra):
    code = main(["run", "gpt2-block", "--set", "d_model=8", "--set", "heads=2", "--set",
                 "d_ff=16", "--set", "seq=4", "--set", "lanes=2", "--weights",
                 str(tmp_path / "w.npz"), "--inputs", str(tmp_path / "x.npz"), "--outputs",
                 str(tmp_path / "y.npz"), "--sim", "amaranth", "--report",
                 str(tmp_path / "r.json"), *extra])
    assert code == 0
    return json.loads((tmp_path / "r.json").read_text())


def test_run_report_has_tensor_cycles_and_the_layer_prediction(tmp_path, rng):
    _gpt2_weights(tmp_path / "w.npz", rng)
    np.savez(tmp_path / "x.npz", x=rng.normal(size=(4, 8)).astype(np.float32))
    report = _run(tmp_path, "--mode", "decode", "--prefill", "2")
    assert report["matches_golden"]
    assert len(report["tensor_cycles"]) == 3 and sum(report["tensor_cycles"]) == report["cycles"]
    assert report["predicted_tensor_cycles"] == report["tensor_cycles"]
    assert report["predicted_cycles"] == report["cycles"]
    stages = {s["name"]: s for s in report["predicted_stages"]}
    assert {"norm1", "q", "attention.qk", "attention.softmax", "f1", "f2",
            "residual2"} <= set(stages)
    assert stages["f1"]["macs"] == 4 * 8 * 16 and stages["f1"]["peak_macs_per_cycle"] > 0
    bottleneck = report["predicted_bottleneck"]
    assert bottleneck == max(report["predicted_stages"], key=lambda s: s["busy_cycles"])
    assert 0 < bottleneck["utilisation"] <= 1
    # the existing keys stay
    for key in ("cycles", "macs", "macs_per_cycle", "utilization", "sim_wall_s"):
        assert key in report


def test_run_report_without_stall_free_run_has_no_prediction(tmp_path, rng):
    _gpt2_weights(tmp_path / "w.npz", rng)
    np.savez(tmp_path / "x.npz", x=rng.normal(size=(2, 8)).astype(np.float32))
    report = _run(tmp_path, "--stalls", "random")
    assert report["predicted_cycles"] is None and "predicted_stages" not in report
    assert report["tensor_cycles"] == [report["cycles"]]


def test_sim_golden_gives_the_simulators_outputs_and_keys_without_cycles(tmp_path, rng,
                                                                         capsys):
    _gpt2_weights(tmp_path / "w.npz", rng)
    np.savez(tmp_path / "x.npz", x=rng.normal(size=(4, 8)).astype(np.float32))
    simulated = _run(tmp_path, "--mode", "decode", "--prefill", "2")
    y_sim = dict(np.load(tmp_path / "y.npz"))
    golden = _run(tmp_path, "--mode", "decode", "--prefill", "2", "--sim", "golden")
    y_golden = dict(np.load(tmp_path / "y.npz"))
    assert set(golden) == set(simulated)
    assert golden["sim"] == "golden" and golden["matches_golden"]
    assert golden["cycles"] is None and golden["tensor_cycles"] is None
    assert golden["predicted_cycles"] == simulated["predicted_cycles"]     # no RTL needed
    assert golden["cosine_vs_float"] == simulated["cosine_vs_float"]
    assert set(y_golden) == set(y_sim)
    for k in y_sim:
        assert np.array_equal(y_golden[k], y_sim[k])
    assert "bit-exact model only" in capsys.readouterr().err


def test_sim_golden_refuses_stalls(tmp_path, rng, capsys):
    _gpt2_weights(tmp_path / "w.npz", rng)
    np.savez(tmp_path / "x.npz", x=rng.normal(size=(4, 8)).astype(np.float32))
    assert main(["run", "gpt2-block", "--weights", str(tmp_path / "w.npz"), "--inputs",
                 str(tmp_path / "x.npz"), "--outputs", str(tmp_path / "y.npz"), "--sim",
                 "golden", "--stalls", "random"]) == 2
    assert "--stalls random needs a simulator" in capsys.readouterr().err
    assert not (tmp_path / "y.npz").exists()


def test_calib_calibrates_on_other_rows_than_the_inputs(tmp_path, rng, capsys):
    _gpt2_weights(tmp_path / "w.npz", rng)
    x = rng.normal(size=(4, 8)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    np.savez(tmp_path / "c.npz", x=3 * x)           # a calibration reaching 3x further
    own = _run(tmp_path, "--sim", "golden")
    other = _run(tmp_path, "--sim", "golden", "--calib", str(tmp_path / "c.npz"))
    scale = other["config"]["numbers"]["scales"]["x"]
    assert scale == pytest.approx(3 * own["config"]["numbers"]["scales"]["x"])
    assert other["cosine_vs_float"] < own["cosine_vs_float"]      # coarser steps on x
    # a calibration file without x, or without weights, is one line and nothing written
    np.savez(tmp_path / "bad.npz", y=x)
    args = ["run", "gpt2-block", "--set", "heads=2", "--set", "seq=4", "--set", "lanes=2",
            "--inputs", str(tmp_path / "x.npz"), "--outputs", str(tmp_path / "o.npz"),
            "--sim", "golden"]
    assert main([*args, "--weights", str(tmp_path / "w.npz"), "--calib",
                 str(tmp_path / "bad.npz")]) == 2
    assert "holds no tensor 'x'" in capsys.readouterr().err
    assert main([*args, "--calib", str(tmp_path / "c.npz")]) == 2
    assert "give --weights" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()
