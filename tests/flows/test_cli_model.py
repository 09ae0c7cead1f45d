"""`llmloom accuracy` from the command line (the measurements: tests/sim/test_accuracy.py)."""

import importlib.util
import json
from pathlib import Path

from llmloom.flows.cli import main

# the small GPT-2 folder of the sim tests
_spec = importlib.util.spec_from_file_location(
    "_accuracy_tests", Path(__file__).parents[1] / "sim" / "test_accuracy.py")
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
gpt2_folder = _mod.gpt2_folder
bert_folder = _mod.bert_folder


def test_cli_accuracy_prints_a_table_and_writes_the_plot(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    folder = gpt2_folder(tmp_path / "m")
    plot = tmp_path / "acc.png"
    assert main(["accuracy", "--model", str(folder), "--text", "the cat sat",
                 "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "layer  cosine" in out and "chained" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["accuracy", "--model", str(folder), "--text", "the cat sat", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["arch"] == "gpt2" and len(doc["layers"]) == 2


def test_cli_accuracy_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    plot = tmp_path / "acc.png"
    assert main(["accuracy", "--model", str(tmp_path / "none"), "--text", "x",
                 "--plot", str(plot)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    assert not plot.exists()
    assert main(["accuracy", "--model", "all-minilm-l6-v2", "--text", "x",
                 "--plot", str(tmp_path / "no" / "acc.png")]) == 2
    assert "output directory" in capsys.readouterr().err




def test_embed_on_the_rtl_equals_embed_on_the_golden_model(tmp_path, capsys):
    folder = bert_folder(tmp_path)
    args = ["embed", "--model", str(folder), "--text", "the cat sat on the mat", "--json"]
    assert main(args) == 0
    golden = json.loads(capsys.readouterr().out)
    assert main([*args, "--sim", "amaranth"]) == 0
    rtl = json.loads(capsys.readouterr().out)
    assert golden["embedding"] == rtl["embedding"]            # every layer bit-exact
    assert golden["cycles"] is None and rtl["cycles"] > 0
    assert golden["tokens"] == 8 and golden["dim"] == 16
    assert abs(sum(v * v for v in golden["embedding"]) - 1) < 1e-9
    assert golden["cosine_vs_float"] > 0.99


def test_embed_refuses_a_gpt2_model(tmp_path, capsys):
    assert main(["embed", "--model", str(gpt2_folder(tmp_path)), "--text", "the cat"]) == 2
    assert "embed takes a BERT encoder" in capsys.readouterr().err
