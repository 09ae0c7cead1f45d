"""``llmloom run`` on the row kernels (softmax, layernorm, rmsnorm): OUT.npz holds y,
y_scale, y_float, bit-exact; bad tensors end in one error line, exit 2 and no output file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmloom.flows.cli import main


def _inputs(block, rng, rows=3, length=8, dtype=np.int8):
    x = rng.integers(-128, 128, (rows, length)).astype(dtype)
    if block == "softmax":
        return {"x": x, "x_scale": np.float32(0.125)}
    return {"x": x, "x_scale": np.float64(0.04), "gamma": rng.normal(1, 0.2, length),
            "beta": rng.normal(0, 0.1, length).astype(np.float32)}


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("llmloom: error: ") and "Traceback" not in err[0]
    return err[0]


def _run(tmp_path, block, extra=()):
    return main(["run", block, "--inputs", str(tmp_path / "in.npz"),
                 "--outputs", str(tmp_path / "out.npz"), "--sim", "amaranth",
                 "--report", str(tmp_path / "r.json"), *extra])


@pytest.mark.parametrize("block, extra", [
    ("softmax", ["--set", "lanes=2", "--set", "causal=true"]),
    ("layernorm", ["--set", "lanes=4"]),
    ("rmsnorm", ["--set", "lanes=8", "--stalls", "random"]),
])
def test_run_writes_y_scale_and_float(tmp_path, rng, block, extra):
    np.savez(tmp_path / "in.npz", **_inputs(block, rng))
    assert _run(tmp_path, block, extra) == 0
    with np.load(tmp_path / "out.npz") as out:
        assert sorted(out.files) == ["y", "y_float", "y_scale"]
        y, scale = out["y"], float(out["y_scale"])
        assert y.shape == (3, 8)
        assert np.array_equal(out["y_float"], y.astype(np.float64) * scale)
        if block == "softmax":
            assert y.dtype == np.uint16 and scale == 1 / 1023
            assert list(y[0, 1:]) == [0] * 7 and y[0, 0] == 1023      # causal row 0
        else:
            assert y.dtype == np.int8 and np.abs(y).max() == 127   # calibrated from data
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["matches_golden"] is True
    if block != "softmax":
        assert report["config"]["out_scale"] == pytest.approx(scale)
        assert len(report["config"]["gamma"]) == 8
    assert report["config"]["x_scale"] == pytest.approx(0.125 if block == "softmax" else 0.04)
    if "--stalls" not in extra:
        assert report["predicted_cycles"] == report["cycles"]


@pytest.mark.parametrize("block", ["softmax", "layernorm", "rmsnorm"])
def test_run_any_length_on_the_default_lanes(tmp_path, rng, block):
    """A 13-column input on the default lanes=4: rows of 4 beats, the last one padded."""
    np.savez(tmp_path / "in.npz", **_inputs(block, rng, rows=5, length=13))
    assert _run(tmp_path, block) == 0
    with np.load(tmp_path / "out.npz") as out:
        assert out["y"].shape == (5, 13)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["config"]["lanes"] == 4 and report["config"]["length"] == 13
    assert report["matches_golden"] is True
    assert report["predicted_cycles"] == report["cycles"]


def test_user_config_overrides_tensors(tmp_path, rng):
    np.savez(tmp_path / "in.npz", **_inputs("layernorm", rng))
    (tmp_path / "cfg.json").write_text(json.dumps({"lanes": 2, "gamma": [2.0] * 8,
                                                   "out_scale": 0.05, "eps": 0.001}))
    assert _run(tmp_path, "layernorm", ["--config", str(tmp_path / "cfg.json")]) == 0
    cfg = json.loads((tmp_path / "r.json").read_text())["config"]
    assert cfg["gamma"] == [2.0] * 8 and cfg["out_scale"] == 0.05 and cfg["eps"] == 0.001


@pytest.mark.parametrize("block, tensors_fn, message", [
    ("softmax", lambda rng: _inputs("softmax", rng, dtype=np.int16),
     "tensor 'x' has dtype int16; expected int8"),
    ("layernorm", lambda rng: _inputs("layernorm", rng, dtype=np.int16),
     "tensor 'x' has dtype int16; expected int8"),
    ("rmsnorm", lambda rng: {"x_scale": 0.1}, "missing input tensor 'x'"),
    ("layernorm", lambda rng: {**_inputs("layernorm", rng), "gamma": np.ones(5)},
     "gamma has 5 entries; expected one per element (length=8)"),
    ("rmsnorm", lambda rng: {**_inputs("rmsnorm", rng), "beta": np.ones((2, 4))},
     "tensor 'beta' must be a vector of floats"),
    ("softmax", lambda rng: {**_inputs("softmax", rng), "x_scale": np.float64(np.nan)},
     "x_scale=nan is not allowed"),
    ("softmax", lambda rng: {**_inputs("softmax", rng), "x_scale": np.ones(3)},
     "tensor 'x_scale' must be one number"),
    ("softmax", lambda rng: {"x": np.zeros((3, 8193), np.int8)},
     "length=8193 is out of range"),
])
def test_bad_inputs_exit_2_without_output(tmp_path, rng, capsys, block, tensors_fn, message):
    np.savez(tmp_path / "in.npz", **tensors_fn(rng))
    assert _run(tmp_path, block) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "out.npz").exists()
    assert not (tmp_path / "r.json").exists()
