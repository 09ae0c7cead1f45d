"""Outputs are all-or-nothing, and bad input is one line, exit 2, nothing written.

Every output path is checked before the work starts; if the command fails anywhere, no output
(and no temporary file) is left; errors never name a temporary file; outputs get the usual
permissions.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from llmloom.flows.cli import main
from llmloom.flows.userio import Outputs, UserError


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("llmloom") and ": error: " in err[0]
    assert "Traceback" not in err[0] and ".part" not in err[0]
    return err[0]


def _gemm_inputs(path, rng, m=3, k=8, n=4):
    np.savez(path, a=rng.integers(-128, 128, (m, k)).astype(np.int8),
             w=rng.integers(-128, 128, (k, n)).astype(np.int8))


def _left(tmp_path, *keep):
    """Files in ``tmp_path`` other than ``keep`` (hidden ones included)."""
    return sorted(p.name for p in tmp_path.iterdir() if p.name not in keep)


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a simulation or an estimate starts."""
    def refuse(*args, **kwargs):
        raise AssertionError("the work started before the outputs were checked")
    import llmloom.flows.perf_cli as perf_cli
    import llmloom.sim.runner as runner
    monkeypatch.setattr(runner, "run_block", refuse)
    monkeypatch.setattr(perf_cli, "estimate", refuse)
    monkeypatch.setattr(perf_cli, "explore", refuse)
    monkeypatch.setattr(perf_cli, "compare", refuse)


@pytest.mark.parametrize("argv", [
    ["run", "gemm", "--inputs", "in.npz", "--outputs", "o.npz", "--report", "no/r.json"],
    ["run", "gemm", "--inputs", "in.npz", "--outputs", "no/o.npz", "--report", "r.json"],
    ["verilog", "gemm", "-o", "no/g.v"],
    ["estimate", "--design", "chen2024-gpt2-u280", "--plot", "no/p.png"],
    ["estimate", "--design", "chen2024-gpt2-u280", "--plot", "p.png", "--save-layer",
     "no/l.json"],
    ["estimate", "--design", "chen2024-gpt2-u280", "--plot", "p.gif"],
    ["explore", "--model", "gpt2", "--device", "u280", "--save", "s.json", "--plot",
     "no/p.png"],
    ["explore", "--model", "gpt2", "--device", "u280", "--save", "same.json", "--save-layer",
     "same.json"],
    ["compare", "--design", "chen2024-gpt2-u280", "--gpu", "a100", "--plot", "no/c.png"],
    ["build", "--board", "ulx3s-85f", "--out", "no/build"],
])
def test_output_paths_checked_before_any_work(tmp_path, rng, capsys, monkeypatch, no_work,
                                              argv):
    _gemm_inputs(tmp_path / "in.npz", rng)
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "output directory" in line or "figure format" in line or "its own path" in line
    assert _left(tmp_path, "in.npz") == []


def test_failure_after_the_work_leaves_nothing(tmp_path, capsys, monkeypatch):
    """explore: --save is complete, then the plot fails: neither file is left."""
    import llmloom.perf.plots as plots

    def broken(*args, **kwargs):
        raise ValueError("the plot failed")
    monkeypatch.setattr(plots, "plot_front", broken)
    monkeypatch.chdir(tmp_path)
    assert main(["explore", "--model", "gpt2", "--device", "u280", "--budget-dsp", "300",
                 "--seq", "64", "--save", "best.json", "--plot", "front.png"]) == 2
    assert "the plot failed" in _error_line(capsys)
    assert _left(tmp_path) == []


def test_simulation_failure_leaves_nothing(tmp_path, rng, capsys, monkeypatch):
    import llmloom.sim.runner as runner
    _gemm_inputs(tmp_path / "in.npz", rng)

    def broken(*args, **kwargs):
        raise ValueError("the simulation failed")
    monkeypatch.setattr(runner, "run_block", broken)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "gemm", "--inputs", "in.npz", "--outputs", "o.npz", "--report",
                 "r.json", "--sim", "amaranth"]) == 2
    assert "the simulation failed" in _error_line(capsys)
    assert _left(tmp_path, "in.npz") == []


def test_outputs_get_the_usual_permissions(tmp_path, rng, monkeypatch):
    _gemm_inputs(tmp_path / "in.npz", rng)
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o022)
    try:
        assert main(["run", "gemm", "--inputs", "in.npz", "--outputs", "o.npz", "--report",
                     "r.json", "--sim", "amaranth"]) == 0
        assert main(["estimate", "--design", "chen2024-gpt2-u280", "--plot", "p.png"]) == 0
        assert main(["verilog", "gemm", "-o", "g.v"]) == 0
    finally:
        os.umask(old)
    for name in ("o.npz", "r.json", "p.png", "g.v"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")
    assert _left(tmp_path, "in.npz", "o.npz", "r.json", "p.png", "g.v") == []


def test_a_failed_write_names_the_output_not_a_temporary(tmp_path):
    out = Outputs()
    (tmp_path / "d").mkdir()
    out.add(tmp_path / "d" / "a.json", "--report")
    out.add(tmp_path / "b.json", "--save")
    out.write_json(tmp_path / "b.json", {"b": 1})
    out.write_json(tmp_path / "d" / "a.json", {"a": 1})
    (tmp_path / "d").rmdir()                     # the directory goes away during the work
    with pytest.raises(UserError) as exc:
        out.commit()
    assert str(exc.value).startswith(f"--report {tmp_path / 'd' / 'a.json'}: cannot write")
    assert ".part" not in str(exc.value)
    assert _left(tmp_path) == []                 # b.json was not written either


def test_overwrite_replaces_whole_file(tmp_path):
    (tmp_path / "r.json").write_text("old")
    out = Outputs()
    out.add(tmp_path / "r.json", "--report")
    out.write_json(tmp_path / "r.json", {"new": True})
    assert (tmp_path / "r.json").read_text() == "old"       # nothing before commit
    out.commit()
    assert json.loads((tmp_path / "r.json").read_text()) == {"new": True}


# ---- bad input: one line, exit 2 ------------------------------------------------------------
def _zip_header_file(path):
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 60)


def _truncated_npz(path, rng):
    _gemm_inputs(path, rng)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _bad_crc_npz(path, rng):
    _gemm_inputs(path, rng)
    with zipfile.ZipFile(path) as z:
        info = z.infolist()[0]
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + 40     # inside the member's data
    data[start] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("make, message", [
    (lambda p, rng: _zip_header_file(p), "is not a readable .npz archive"),
    (_truncated_npz, "is not a readable .npz archive"),
    (_bad_crc_npz, "is not a readable .npz archive"),
    (lambda p, rng: p.write_text("a, b\n1, 2\n"), "(not a zip file"),
    (lambda p, rng: np.save(p.with_suffix(".npy"), np.zeros(3)) or
     os.replace(p.with_suffix(".npy"), p), "a single .npy array"),
    (lambda p, rng: np.savez(p, a=np.array([{"x": 1}], dtype=object),
                             w=np.zeros((4, 4), np.int8)), "holds pickled Python objects"),
])
def test_corrupt_npz_is_one_line(tmp_path, rng, capsys, make, message):
    make(tmp_path / "in.npz", rng)
    assert main(["run", "gemm", "--inputs", str(tmp_path / "in.npz"), "--outputs",
                 str(tmp_path / "o.npz"), "--sim", "amaranth"]) == 2
    line = _error_line(capsys)
    assert message in line and "allow_pickle" not in line
    assert _left(tmp_path, "in.npz") == []


@pytest.mark.parametrize("bad, kind", [(np.nan, "NaN"), (np.inf, "infinity"),
                                       (-np.inf, "infinity")])
def test_non_finite_float_tensor_is_named(tmp_path, rng, capsys, bad, kind):
    x = rng.normal(size=(3, 8))
    x[2, 5] = bad
    np.savez(tmp_path / "in.npz", x=x, x_scale=np.float64(0.05))
    assert main(["run", "softmax", "--inputs", str(tmp_path / "in.npz"), "--outputs",
                 str(tmp_path / "o.npz"), "--sim", "amaranth"]) == 2
    line = _error_line(capsys)
    assert f"tensor 'x' holds 1 non-finite value(s), the first {kind} at [2, 5]" in line


def test_non_finite_weights_are_named(tmp_path, rng, capsys):
    from llmloom.sim.weights import WeightsError, read_tensors
    w = rng.normal(size=(4, 4))
    w[1, 3] = np.nan
    np.savez(tmp_path / "w.npz", **{"h.0.attn.c_attn.weight": w})
    with pytest.raises(WeightsError, match=r"weights file .*w.npz: tensor "
                                           r"'h.0.attn.c_attn.weight' .* NaN at \[1, 3\]"):
        read_tensors(tmp_path / "w.npz")
    from safetensors.numpy import save_file
    save_file({"h.0.mlp.c_fc.weight": np.full((2, 2), np.inf, np.float32)},
              str(tmp_path / "w.safetensors"))
    with pytest.raises(WeightsError, match="holds 4 non-finite .* infinity at \\[0, 0\\]"):
        read_tensors(tmp_path / "w.safetensors")


@pytest.mark.parametrize("command", ["estimate", "compare"])
def test_unknown_preset_lists_the_known_ones(capsys, command):
    argv = [command, "--design", "chen2099"] + (["--gpu", "a100"] if command == "compare"
                                                else [])
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "unknown preset 'chen2099'" in line and "chen2024-gpt2-u280" in line


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "gemm", "--sim", "modelsim"])
    assert exc.value.code == 2
    assert "invalid choice: 'modelsim'" in _error_line(capsys)


@pytest.mark.parametrize("argv", [["blocks"], ["estimate", "--design", "chen2024-gpt2-u280"]])
def test_closed_pipe_exits_quietly(argv):
    """`llmloom ... | head -1`: the reader goes away; no traceback, no error line."""
    proc = subprocess.Popen([sys.executable, "-m", "llmloom.flows.cli", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()                          # the reader is gone before the first write
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141         # as a process ended by SIGPIPE
    assert err == ""
