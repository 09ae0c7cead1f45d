"""`llmloom accuracy` from the command line (the measurements: tests/sim/test_accuracy.py)."""

import importlib.util
import json
from pathlib import Path

import pytest

from llmloom.flows.cli import main

# the small GPT-2 folder of the sim tests
_spec = importlib.util.spec_from_file_location(
    "_accuracy_tests", Path(__file__).parents[1] / "sim" / "test_accuracy.py")
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
gpt2_folder = _mod.gpt2_folder


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """The small BERT folder of the sim tests, 2 layers, d 32 and d_ff 64 (``embed``'s
    default weights come in groups of 32 inputs: one group a row in most linear stages, two
    in FFN2's), written once for the module."""
    return _mod.bert_folder(tmp_path_factory.mktemp("bert"), d=32, d_ff=64)


def test_cli_accuracy_prints_a_table_and_writes_the_plot(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    folder = gpt2_folder(tmp_path / "m", d=32)      # embed's weight groups: inputs in 32s
    plot = tmp_path / "acc.png"
    assert main(["accuracy", "--model", str(folder), "--text", "the cat sat",
                 "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "layer  cosine" in out and "chained" in out
    assert "int8 weights, a weight scale per group of 32 inputs" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["accuracy", "--model", str(folder), "--text", "the cat sat", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["arch"] == "gpt2" and len(doc["layers"]) == 2
    assert doc["weights"] == "a weight scale per group of 32 inputs"


def test_accuracy_quantises_as_embed_and_per_channel_is_a_flag(tmp_path, capsys):
    """``accuracy`` measures ``embed``'s weights (a scale per group of 32 inputs, as GGUF's
    Q8_0), so a d-16 model is refused in one line naming the stage's inputs and what is
    allowed; ``--w8-per-channel`` (one scale per output channel) then runs it."""
    folder = _mod.bert_folder(tmp_path)                     # d 16
    args = ["accuracy", "--model", str(folder), "--text", "the cat sat", "--json"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "16 inputs" in err and "a multiple of 32" in err
    assert main([*args, "--w8-per-channel"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["weights"] == "a weight scale per output channel" and doc["arch"] == "bert"


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


def test_embed_on_the_rtl_equals_embed_on_the_golden_model(tiny_bert, capsys):
    args = ["embed", "--model", str(tiny_bert), "--text", "the cat sat on the mat", "--json"]
    assert main(args) == 0
    golden = json.loads(capsys.readouterr().out)
    assert main([*args, "--sim", "amaranth"]) == 0
    rtl = json.loads(capsys.readouterr().out)
    assert golden["embedding"] == rtl["embedding"]            # every layer bit-exact
    assert golden["cycles"] is None and rtl["cycles"] > 0
    assert golden["tokens"] == 8 and golden["dim"] == 32
    assert golden["quant"] == rtl["quant"] == "W8A8"     # Q8_0's groups, the default
    assert golden["seq"] == 16                  # the next power of two from 16 (masked rows)
    # each layer a baked build of its own (no fetched session off Verilator): perf's layer
    # timing is exact for it
    assert rtl["fetched_layer"] is None and rtl["weight_bytes_fetched"] is None
    assert rtl["layer_cycles"] == rtl["predicted_layer_cycles"] == \
        golden["predicted_layer_cycles"]
    assert abs(sum(v * v for v in golden["embedding"]) - 1) < 1e-9
    assert golden["cosine_vs_float"] > 0.99


def test_embed_per_channel_is_a_flag_and_groups_need_inputs_in_32s(tmp_path, capsys):
    """``--w8-per-channel`` gives one weight scale per output channel; the default's groups
    of 32 inputs refuse a BERT of d 16 in one line naming the stage's inputs and what is
    allowed (the flag then runs it)."""
    folder = _mod.bert_folder(tmp_path)                     # d 16
    args = ["embed", "--model", str(folder), "--text", "the cat sat", "--json"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "16 inputs" in err and "a multiple of 32" in err
    assert main([*args, "--w8-per-channel"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["quant"] == "W8A8-channel" and doc["dim"] == 16
    assert main(["embed", "--model", str(folder), "--text", "the cat sat",
                 "--w8-per-channel"]) == 0
    assert "a weight scale per output channel" in capsys.readouterr().out


def test_embed_refuses_a_gpt2_model(tmp_path, capsys):
    assert main(["embed", "--model", str(gpt2_folder(tmp_path)), "--text", "the cat"]) == 2
    assert "embed takes a BERT encoder" in capsys.readouterr().err


def test_embed_on_verilator_runs_every_layer_on_one_fetched_build(verilator_sim, tiny_bert,
                                                                 cli_json, opened_sessions):
    """Issue 14's whole-model check for ``embed``: both layers of a tiny BERT run on one
    FetchedLayer build (one session, each layer's image in its AXI memory, each layer a
    command that prefetches the next's), the sentence shorter than the build's seq; the
    embedding is ``--sim golden``'s bit for bit, the cycles perf's ``fetched_layer_runs``
    exactly, and the report counts the images read and the cycles waited for them."""
    from llmloom.hw.layers.weights_image import fetched_layer_layout
    from llmloom.sim.accuracy import DEFAULT_CALIB_TEXT
    from llmloom.sim.hf import load_model
    from llmloom.sim.model import embed_weights, quantize_model

    args = ["embed", "--model", str(tiny_bert), "--text", "the dog ran far away", "--json"]
    golden, rtl = (cli_json([*args, "--sim", sim]) for sim in ("golden", "verilator"))
    assert rtl["embedding"] == golden["embedding"]
    assert rtl["cosine_vs_float"] == golden["cosine_vs_float"]
    assert rtl["tokens"] == 7 < rtl["seq"] == 16
    assert len(opened_sessions) == 1            # one model for both layers
    f = rtl["fetched_layer"]
    assert f["runs"] == 2 and f["cycles"] == rtl["cycles"] == sum(rtl["layer_cycles"])
    assert rtl["layer_cycles"] == rtl["predicted_layer_cycles"]     # fetches included
    # the fetches cost cycles the baked layers' timing has not
    assert rtl["cycles"] > golden["predicted_cycles"]
    assert 0 < rtl["weight_wait_cycles"] == f["wait_cycles"] < rtl["cycles"]
    m = load_model(str(tiny_bert))
    cfg = quantize_model(m, m.tokens(DEFAULT_CALIB_TEXT), seq=16, scheme="dynamic",
                         **embed_weights()).layers[0][0]
    assert cfg.weight_groups and rtl["quant"] == "W8A8"     # the groups' tables fetched too
    layout, bus = fetched_layer_layout(cfg), f["axi_bytes_per_beat"]
    images = 2 * bus * sum(-(-s.nbytes // bus) for s in layout)
    # both images once; the last run's prefetch of layer 0's linear sections as far as it
    # got before that run's end
    ahead = bus * sum(-(-s.nbytes // bus) for s in layout[:-1])
    assert images <= rtl["weight_bytes_fetched"] == f["image_bytes_fetched"] <= images + ahead


def test_embed_keeps_a_build_per_layer_with_a_note_when_it_cannot_fetch(tiny_bert, capsys,
                                                                        monkeypatch):
    """When ``RtlLayers.fetch`` refuses (here made to), ``embed`` on Verilator says why in
    one note and runs each layer on its own build (the simulator stood in for by the
    bit-exact model: the wiring is checked, not the RTL)."""
    from types import SimpleNamespace

    from llmloom.flows.model_cli import RtlLayers
    from llmloom.sim import runner
    from llmloom.sim.model import golden_layer

    def fake_run(harness, cfg, tensors, **kw):
        weights = kw["component"]               # what the stand-in component is
        return SimpleNamespace(outputs={"y_int": golden_layer(cfg, weights,
                                                              tensors["x_int"])}, cycles=100)

    monkeypatch.setattr(RtlLayers, "fetch", lambda self, layers: "a reason")
    monkeypatch.setattr(RtlLayers, "_component", lambda self, cfg, weights: weights)
    monkeypatch.setattr(runner, "run_block", fake_run)
    args = ["embed", "--model", str(tiny_bert), "--text", "the cat", "--json"]
    assert main([*args, "--sim", "verilator"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ("llmloom: note: each layer gets its own Verilator build (one "
                            "fetched layer for all cannot: a reason)\n")
    rtl = json.loads(captured.out)
    assert rtl["fetched_layer"] is None and rtl["layer_cycles"] == [100, 100]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["embedding"] == rtl["embedding"]


@pytest.mark.slow
def test_minilm_embeds_on_one_fetched_build_as_on_the_golden_model(verilator_sim, cli_json):
    """The real all-MiniLM-L6-v2, its six layers on one fetched build on Verilator (the fast
    equivalent: the tiny BERT above): the embedding of ``--sim golden`` bit for bit, the
    cycles perf's exactly."""
    args = ["embed", "--model", "all-minilm-l6-v2", "--text", "A man is playing a guitar.",
            "--json"]
    golden, rtl = (cli_json([*args, "--sim", sim]) for sim in ("golden", "verilator"))
    assert rtl["embedding"] == golden["embedding"]
    assert rtl["cosine_vs_float"] == golden["cosine_vs_float"] > 0.99
    assert rtl["fetched_layer"]["runs"] == 6 and rtl["quant"] == "W8A8"
    assert rtl["layer_cycles"] == rtl["predicted_layer_cycles"]
    assert 0 < rtl["weight_wait_cycles"] < rtl["cycles"]
