"""The ``llmloom`` command: happy paths, and bad input ending in one line, exit 2, no files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmloom.flows.cli import main, parse_sets


def _gemm_inputs(path, rng, m=5, k=8, n=6, dtype=np.int8):
    a = rng.integers(-128, 128, (m, k)).astype(dtype)
    w = rng.integers(-128, 128, (k, n)).astype(dtype)
    np.savez(path, a=a, w=w)
    return a, w


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("llmloom: error: ")
    assert "Traceback" not in err[0]
    return err[0]


def test_run_gemm_writes_outputs_and_report(tmp_path, rng, capsys):
    a, w = _gemm_inputs(tmp_path / "in.npz", rng)
    code = main(["run", "gemm", "--set", "rows=2", "--set", "cols=4", "--set", "lanes=2",
                 "--inputs", str(tmp_path / "in.npz"), "--outputs", str(tmp_path / "out.npz"),
                 "--sim", "amaranth", "--report", str(tmp_path / "r.json")])
    assert code == 0
    with np.load(tmp_path / "out.npz") as out:
        np.testing.assert_array_equal(out["c"], a.astype(np.int64) @ w.astype(np.int64))
        assert out["c"].dtype == np.int32
    report = json.loads((tmp_path / "r.json").read_text())
    for key in ("cycles", "macs", "macs_per_cycle", "utilization", "sim"):
        assert key in report
    assert report["sim"] == "amaranth" and report["macs"] == 5 * 8 * 6
    assert report["utilization"] == pytest.approx(report["macs"] / (report["cycles"] * 8))
    assert report["predicted_cycles"] == report["cycles"]
    assert report["config"]["k"] == 8 and report["config"]["n"] == 6   # taken from w


def test_run_gemm_any_k_on_the_default_config(tmp_path, rng):
    _run_gemm_k33(tmp_path, rng, "amaranth")


def test_run_gemm_any_k_on_hdl_simulators(tmp_path, rng, hdl_sim):
    _run_gemm_k33(tmp_path, rng, hdl_sim)


def _run_gemm_k33(tmp_path, rng, sim):
    """A 33-column input on the default lanes=4: rows of 9 beats, the last one padded."""
    a, w = _gemm_inputs(tmp_path / "in.npz", rng, m=5, k=33, n=7)
    code = main(["run", "gemm", "--inputs", str(tmp_path / "in.npz"),
                 "--outputs", str(tmp_path / "out.npz"), "--sim", sim,
                 "--report", str(tmp_path / "r.json")])
    assert code == 0
    with np.load(tmp_path / "out.npz") as out:
        np.testing.assert_array_equal(out["c"], a.astype(np.int64) @ w.astype(np.int64))
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["config"]["k"] == 33 and report["config"]["lanes"] == 4
    assert report["matches_golden"] is True
    assert report["predicted_cycles"] == report["cycles"]


def test_config_file_and_set_override(tmp_path, rng):
    _gemm_inputs(tmp_path / "in.npz", rng, k=4, n=4)
    (tmp_path / "cfg.json").write_text(json.dumps({"rows": 3, "cols": 3, "lanes": 4}))
    code = main(["run", "gemm", "--config", str(tmp_path / "cfg.json"), "--set", "cols=2",
                 "--inputs", str(tmp_path / "in.npz"), "--outputs", str(tmp_path / "o.npz"),
                 "--sim", "amaranth", "--report", str(tmp_path / "r.json")])
    assert code == 0
    cfg = json.loads((tmp_path / "r.json").read_text())["config"]
    assert (cfg["rows"], cfg["cols"], cfg["lanes"]) == (3, 2, 4)


def test_verilog(tmp_path):
    assert main(["verilog", "gemm", "--set", "rows=2", "--set", "cols=2", "-o",
                 str(tmp_path / "g.v")]) == 0
    text = (tmp_path / "g.v").read_text()
    assert "module gemm(" in text and "act__payload" in text and "o__valid" in text


def test_blocks_listing(capsys):
    assert main(["blocks", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    gemm = next(b for b in listing if b["name"] == "gemm")
    assert {f["name"] for f in gemm["config"]} >= {"rows", "cols", "k", "n", "lanes"}
    # the group tables are inputs of the grouped-W4 GEMM (weight_groups) only
    assert [t["name"] for t in gemm["inputs"]] == ["a", "w", "group_scale", "group_min"]
    assert main(["blocks"]) == 0
    assert "rows" in capsys.readouterr().out


@pytest.mark.parametrize("argv_extra, message", [
    (["--set", "rows"], "malformed --set 'rows'"),
    (["--set", "rows=[1,"], "malformed value in --set"),
    (["--set", "colour=3"], "unknown config field 'colour'"),
    (["--set", "rows=0"], "rows=0 is out of range"),
    (["--set", "lanes=65"], "lanes=65 is out of range"),
    (["--set", "k=9", "--set", "lanes=1"], "tensor 'a' has shape 5×8; expected ?×9"),
    (["--driver", "cocotb"], "driver='cocotb' applies to sim='verilator' only, not 'amaranth'"),
])
def test_bad_config(tmp_path, rng, capsys, argv_extra, message):
    _gemm_inputs(tmp_path / "in.npz", rng)
    out = tmp_path / "out.npz"
    code = main(["run", "gemm", "--inputs", str(tmp_path / "in.npz"), "--outputs", str(out),
                 "--sim", "amaranth", *argv_extra])
    assert code == 2
    assert message in _error_line(capsys)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "in.npz"]     # no half-written files


def test_unknown_block(tmp_path, capsys):
    code = main(["verilog", "fft", "-o", str(tmp_path / "x.v")])
    assert code == 2
    assert "unknown block 'fft'; known: " in _error_line(capsys)
    assert not (tmp_path / "x.v").exists()


def test_int16_data_rejected(tmp_path, rng, capsys):
    _gemm_inputs(tmp_path / "in.npz", rng, dtype=np.int16)
    code = main(["run", "gemm", "--inputs", str(tmp_path / "in.npz"), "--outputs",
                 str(tmp_path / "o.npz"), "--sim", "amaranth"])
    assert code == 2
    assert "tensor 'a' has dtype int16; expected int8" in _error_line(capsys)
    assert not (tmp_path / "o.npz").exists()


def test_mismatched_shapes(tmp_path, rng, capsys):
    np.savez(tmp_path / "in.npz", a=np.zeros((3, 5), np.int8), w=np.zeros((4, 2), np.int8))
    code = main(["run", "gemm", "--inputs", str(tmp_path / "in.npz"), "--outputs",
                 str(tmp_path / "o.npz"), "--sim", "amaranth"])
    assert code == 2
    assert "tensor 'a' has shape 3×5; expected ?×4" in _error_line(capsys)


def test_missing_and_corrupt_files(tmp_path, capsys):
    code = main(["run", "gemm", "--inputs", str(tmp_path / "nope.npz"), "--outputs",
                 str(tmp_path / "o.npz")])
    assert code == 2 and "does not exist" in _error_line(capsys)
    (tmp_path / "bad.npz").write_bytes(b"not a zip at all")
    code = main(["run", "gemm", "--inputs", str(tmp_path / "bad.npz"), "--outputs",
                 str(tmp_path / "o.npz")])
    assert code == 2 and "not a readable .npz" in _error_line(capsys)
    np.savez(tmp_path / "partial.npz", a=np.zeros((2, 2), np.int8))
    code = main(["run", "gemm", "--set", "k=2", "--set", "n=2", "--set", "lanes=1",
                 "--inputs", str(tmp_path / "partial.npz"), "--outputs", str(tmp_path / "o.npz"),
                 "--sim", "amaranth"])
    assert code == 2 and "missing input tensor 'w'" in _error_line(capsys)
    (tmp_path / "cfg.json").write_text("{rows: 2")
    code = main(["verilog", "gemm", "--config", str(tmp_path / "cfg.json"), "-o",
                 str(tmp_path / "g.v")])
    assert code == 2 and "is not valid JSON" in _error_line(capsys)
    assert not (tmp_path / "o.npz").exists() and not (tmp_path / "g.v").exists()


def test_missing_output_directory(tmp_path, capsys):
    code = main(["verilog", "gemm", "-o", str(tmp_path / "no" / "dir" / "g.v")])
    assert code == 2 and "output directory" in _error_line(capsys)


def test_unknown_subcommand_and_choice(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "gemm", "--inputs", "x", "--outputs", "y", "--sim", "modelsim"])
    assert exc.value.code == 2
    assert "invalid choice: 'modelsim'" in capsys.readouterr().err


def test_parse_sets():
    assert parse_sets(["rows=8", "causal=true", "approximation=tanh", "scale=0.5",
                       'name="x y"']) == {"rows": 8, "causal": True, "approximation": "tanh",
                                          "scale": 0.5, "name": "x y"}


def test_missing_simulator_is_one_line(tmp_path, rng, capsys, monkeypatch):
    _gemm_inputs(tmp_path / "in.npz", rng)
    monkeypatch.setenv("PATH", "/nonexistent")
    import llmloom.sim.tools as tools
    monkeypatch.setattr(tools, "_extra_paths", lambda: [])
    code = main(["run", "gemm", "--inputs", str(tmp_path / "in.npz"), "--outputs",
                 str(tmp_path / "o.npz"), "--sim", "icarus"])
    assert code == 2
    assert "iverilog not found; install Icarus Verilog" in _error_line(capsys)
    assert not (tmp_path / "o.npz").exists()


def test_output_to_a_device_is_written_not_replaced(tmp_path, capsys):
    import os
    import stat
    assert main(["verilog", "gemm", "-o", os.devnull]) == 0
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert main(["verilog", "gemm", "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


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


def test_run_gpt2_block_prefill_then_decode(tmp_path, rng):
    _gpt2_weights(tmp_path / "w.npz", rng)
    np.savez(tmp_path / "x.npz", x=rng.normal(size=(4, 8)).astype(np.float32))
    code = main(["run", "gpt2-block", "--set", "d_model=8", "--set", "heads=2", "--set",
                 "d_ff=16", "--set", "seq=4", "--weights", str(tmp_path / "w.npz"),
                 "--inputs", str(tmp_path / "x.npz"), "--outputs", str(tmp_path / "y.npz"),
                 "--mode", "decode", "--prefill", "3", "--sim", "amaranth",
                 "--report", str(tmp_path / "r.json")])
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["matches_golden"] and report["cosine_vs_float"] >= 0.99
    assert report["cycles"] > 0 and report["max_abs_error_vs_float"] >= 0
    with np.load(tmp_path / "y.npz") as out:
        assert out["y"].shape == (4, 8) and out["y_int"].dtype == np.int8


def test_layer_options_rejected_for_blocks(tmp_path, rng, capsys):
    _gemm_inputs(tmp_path / "in.npz", rng)
    code = main(["run", "gemm", "--inputs", str(tmp_path / "in.npz"), "--outputs",
                 str(tmp_path / "o.npz"), "--mode", "decode", "--sim", "amaranth"])
    assert code == 2 and "apply to layer blocks only" in _error_line(capsys)
