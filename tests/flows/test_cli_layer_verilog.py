"""``llmloom verilog gpt2-block --weights W --calib X.npz --meta M.json``: the Verilog holds the
user's calibrated int8 weights (not the seeded placeholders), and the meta file the scales a
host needs; bad combinations are one line, exit 2, nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmloom.flows.cli import main
from llmloom.hw.emit import emit_verilog
from llmloom.hw.layers.config import LayerConfig
from llmloom.sim.harness import get_harness

from .test_cli_layer_report import _gpt2_weights

SETS = ["--set", "d_model=8", "--set", "heads=2", "--set", "d_ff=16", "--set", "seq=4",
        "--set", "lanes=2"]


@pytest.fixture
def files(tmp_path, rng):
    _gpt2_weights(tmp_path / "w.npz", rng)
    x = rng.normal(size=(4, 8)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    return tmp_path, x


def test_verilog_holds_the_calibrated_weights_and_meta_gives_the_scales(files):
    tmp, x = files
    code = main(["verilog", "gpt2-block", *SETS, "--weights", str(tmp / "w.npz"), "--calib",
                 str(tmp / "x.npz"), "--meta", str(tmp / "m.json"), "-o", str(tmp / "l.v")])
    assert code == 0
    text = (tmp / "l.v").read_text()
    h = get_harness("gpt2-block").options(weights=str(tmp / "w.npz"))
    cfg = h.config({"d_model": 8, "heads": 2, "d_ff": 16, "seq": 4, "lanes": 2}, {"x": x})
    assert text == emit_verilog(h.component(cfg), name="gpt2-block")
    placeholder = tmp / "p.v"
    assert main(["verilog", "gpt2-block", *SETS, "-o", str(placeholder)]) == 0
    assert placeholder.read_text() != text
    meta = json.loads((tmp / "m.json").read_text())
    assert meta["x_scale"] == cfg.x_scale and meta["y_scale"] == cfg.y_scale
    assert meta["config"]["d_model"] == 8
    assert meta["config"]["numbers"]["scales"]["x"] == cfg.x_scale
    # the meta's config is the calibrated config itself
    assert LayerConfig.from_dict(meta["config"]) == cfg


@pytest.mark.parametrize("extra, message", [
    (["--weights", "{w}"], "--weights and --calib go together"),
    (["--meta", "{m}"], "--meta describes a calibrated layer"),
    (["--weights", "{w}", "--calib", "{w}"], "holds no tensor 'x'"),
])
def test_bad_layer_verilog_options_are_one_line_and_write_nothing(files, capsys, extra,
                                                                  message):
    tmp, _ = files
    extra = [a.format(w=tmp / "w.npz", m=tmp / "m.json") for a in extra]
    assert main(["verilog", "gpt2-block", *SETS, *extra, "-o", str(tmp / "l.v")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp / "l.v").exists() and not (tmp / "m.json").exists()


def test_weights_on_a_plain_block_are_refused(tmp_path, capsys):
    assert main(["verilog", "gemm", "--weights", "w.npz", "-o", str(tmp_path / "g.v")]) == 2
    assert "layer blocks only" in capsys.readouterr().err
    assert not (tmp_path / "g.v").exists()


def test_prefix_picks_one_layer_of_a_model_file(files, rng, capsys):
    tmp, _ = files
    with np.load(tmp / "w.npz") as one:
        layer0 = {k: one[k] for k in one.files}
    _gpt2_weights(tmp / "w1.npz", rng)
    with np.load(tmp / "w1.npz") as other:
        layer1 = {k.replace("h.0.", "h.1."): other[k] for k in other.files}
    np.savez(tmp / "model.npz", **layer0, **layer1,
             **{"wpe.weight": np.zeros((4, 8), np.float32), "ids": np.arange(4)})
    common = ["verilog", "gpt2-block", *SETS, "--calib", str(tmp / "x.npz")]
    assert main([*common, "--weights", str(tmp / "model.npz"), "-o", str(tmp / "m.v")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "several layers" in err[0] and "--prefix" in err[0]
    assert main([*common, "--weights", str(tmp / "model.npz"), "--prefix", "h.1.", "-o",
                 str(tmp / "m.v")]) == 0
    assert main([*common, "--weights", str(tmp / "w1.npz"), "-o", str(tmp / "one.v")]) == 0
    assert (tmp / "m.v").read_text() == (tmp / "one.v").read_text()
