"""``llmloom run`` on the element-wise blocks: OUT.npz holds y, y_scale, y_float, bit-exact;
bad tensors end in one error line, exit 2 and no output file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmloom.flows.cli import main


def _inputs(block, rng, rows=3, length=8, dtype=np.int8):
    if block == "requant":
        return {"acc": rng.integers(-(1 << 20), 1 << 20, (rows, length)).astype(np.int32),
                "acc_scale": np.float32(3e-5),
                "bias": rng.integers(-100, 100, length).astype(np.int32)}
    x = rng.integers(-128, 128, (rows, length)).astype(dtype)
    if block == "residual":
        return {"x": x, "x_scale": np.float32(0.05),
                "r": rng.integers(-128, 128, (rows, length)).astype(np.int8),
                "r_scale": np.float64(0.02)}
    return {"x": x, "x_scale": np.float64(0.04)}


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
    ("requant", ["--set", "lanes=2"]),
    ("residual", ["--set", "lanes=4", "--set", "rounding=half_up"]),
    ("gelu", ["--set", "approximation=erf", "--stalls", "random"]),
    ("silu", ["--set", "lanes=8"]),
])
def test_run_writes_y_scale_and_float(tmp_path, rng, block, extra):
    np.savez(tmp_path / "in.npz", **_inputs(block, rng))
    assert _run(tmp_path, block, extra) == 0
    with np.load(tmp_path / "out.npz") as out:
        assert sorted(out.files) == ["y", "y_float", "y_scale"]
        y, scale = out["y"], float(out["y_scale"])
        assert y.dtype == np.int8 and y.shape == (3, 8)
        assert np.array_equal(out["y_float"], y.astype(np.float64) * scale)
        assert np.abs(y).max() == 127      # out_scale calibrated from the data
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["matches_golden"] is True
    assert report["config"]["out_scale"] == pytest.approx(scale)
    if "--stalls" not in extra:
        assert report["predicted_cycles"] == report["cycles"]


def test_user_out_scale_and_per_channel_scale(tmp_path, rng):
    t = _inputs("requant", rng)
    t["acc_scale"] = np.linspace(1e-5, 4e-5, 8)
    np.savez(tmp_path / "in.npz", **t)
    assert _run(tmp_path, "requant", ["--set", "out_scale=0.01"]) == 0
    cfg = json.loads((tmp_path / "r.json").read_text())["config"]
    assert cfg["out_scale"] == 0.01 and len(cfg["acc_scale"]) == 8 and len(cfg["bias"]) == 8


@pytest.mark.parametrize("block, tensors_fn, message", [
    ("gelu", lambda rng: _inputs("gelu", rng, dtype=np.int16),
     "tensor 'x' has dtype int16; expected int8"),
    ("silu", lambda rng: {"x_scale": 0.1}, "missing input tensor 'x'"),
    ("residual", lambda rng: {**_inputs("residual", rng), "r": np.zeros((2, 8), np.int8)},
     "tensor 'r' has shape 2×8; expected the shape of 'x', 3×8"),
    ("residual", lambda rng: {**_inputs("residual", rng), "r_scale": np.float64(-1)},
     "r_scale=-1.0 is not allowed"),
    ("gelu", lambda rng: {**_inputs("gelu", rng), "x_scale": np.float64(np.nan)},
     "x_scale=nan is not allowed"),
    ("requant", lambda rng: {**_inputs("requant", rng),
                             "acc": np.zeros((3, 8), np.int64)},
     "tensor 'acc' has dtype int64; expected int32"),
    ("requant", lambda rng: {**_inputs("requant", rng), "acc_scale": np.ones(3)},
     "acc_scale has 3 entries"),
    ("requant", lambda rng: {**_inputs("requant", rng), "bias": np.ones(8)},
     "tensor 'bias' has dtype float64; expected int32"),
])
def test_bad_inputs_exit_2_without_output(tmp_path, rng, capsys, block, tensors_fn, message):
    np.savez(tmp_path / "in.npz", **tensors_fn(rng))
    assert _run(tmp_path, block) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "out.npz").exists() and not (tmp_path / "r.json").exists()


def test_blocks_listing_shows_the_eltwise_blocks(tmp_path, capsys):
    assert main(["blocks", "--json"]) == 0
    listing = {b["name"]: b for b in json.loads(capsys.readouterr().out)}
    assert {"requant", "residual", "gelu", "silu"} <= set(listing)
    gelu = {f["name"]: f for f in listing["gelu"]["config"]}
    assert gelu["approximation"]["allowed"] == "tanh | erf"
    assert "calibrated from the data" in gelu["out_scale"]["doc"]
    assert [t["name"] for t in listing["residual"]["inputs"]] == ["x", "x_scale", "r",
                                                                   "r_scale"]
    assert main(["verilog", "silu", "--set", "lanes=2", "-o", str(tmp_path / "silu.v")]) == 0
    assert "module silu(" in (tmp_path / "silu.v").read_text()
