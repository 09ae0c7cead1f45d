"""An explored design as the hw layer's config: ``Design.layer_config`` and the CLI's
``--save-layer`` (explore, estimate), read back by ``llmloom run gpt2-block|bert-layer``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from llmloom.flows.cli import main
from llmloom.hw.config import ConfigError
from llmloom.hw.layers.config import LayerConfig
from llmloom.perf.design import Design, KernelDesign, layer_arch, layer_config_dict
from llmloom.perf.presets import get_preset
from llmloom.sim.blocks.layers import BertLayerHarness, Gpt2BlockHarness
from llmloom.sim.weights import random_layer_weights


def _design(**kernels):
    base = {k: KernelDesign(rows=8, cols=8, packing=1) for k in
            ("q", "k", "v", "qk", "pv", "o", "f1", "f2")}
    return Design(clock_mhz=250, kernels=base | kernels,
                  lanes={"softmax": 8, "norm": 8, "act": 8})


def test_paper_design_point_maps_kernel_by_kernel():
    p = get_preset("chen2024-gpt2-u280")
    cfg, notes = p.design.layer_config(p.model, seq=513)
    # 8×16 DSPs with packing 2 → 8×32 MACs; attention 8×8
    assert (cfg.arch, cfg.d_model, cfg.heads, cfg.d_ff) == ("gpt2", 1024, 16, 4096)
    assert (cfg.linear_rows, cfg.linear_cols, cfg.ffn_rows, cfg.ffn_cols) == (8, 32, 8, 32)
    assert (cfg.qk_rows, cfg.qk_cols, cfg.pv_rows, cfg.pv_cols) == (8, 8, 8, 8)
    assert (cfg.engine, cfg.head_engines, cfg.lanes) == ("gemm", 1, 16)
    # the KV cache holds the 513 positions, rounded up to whole beats and Q·Kᵀ tiles
    assert cfg.seq == 528 and any("seq 513 → 528" in n for n in notes)
    assert any("softmax/norm/act units take 8/8/16" in n for n in notes)
    # each linear stage's MACs per cycle are the design kernel's
    macs = cfg.linear_macs_per_cycle
    assert macs["q"] == p.design.kernels["q"].macs_per_cycle
    assert macs["f1"] == p.design.kernels["f1"].macs_per_cycle
    bert = get_preset("chen2024-bert-u280")
    cfg, notes = bert.design.layer_config(bert.model, seq=512)
    assert (cfg.arch, cfg.seq) == ("bert", 512)
    assert any("quant W4A8-channel → W8A8-channel" in n for n in notes)


def test_uneven_kernels_take_the_largest_and_say_so():
    d = _design(k=KernelDesign(rows=8, cols=16, packing=2), f2=KernelDesign(rows=4, cols=8))
    cfg, notes = d.layer_config("gpt2", seq=64)
    assert (cfg.linear_rows, cfg.linear_cols) == (8, 32)
    assert (cfg.ffn_rows, cfg.ffn_cols) == (8, 8)
    assert any("q, k, v, o arrays differ (q 8×8, k 8×32, v 8×8, o 8×8)" in n
               and "k's 8×32" in n for n in notes)
    assert any("f1, f2 arrays differ" in n for n in notes)


def test_columns_the_rtl_cannot_take_are_lowered_with_a_note():
    # 40 logical columns do not divide d_model 768; 24 do not divide d_head 64
    d = _design(q=KernelDesign(rows=8, cols=20, packing=2), pv=KernelDesign(rows=4, cols=24))
    cfg, notes = d.layer_config("gpt2", seq=64)
    assert cfg.linear_cols == 32          # the largest divisor of 768 up to 40
    assert cfg.pv_cols == 16              # the largest divisor of d_head 64 up to 24
    assert any(n.startswith("linear_cols 40 → 32") and "64 fewer MACs/cycle" in n
               for n in notes)
    assert any(n.startswith("pv_cols 24 → 16") for n in notes)


def test_gemv_lanes_divide_the_rows():
    d = _design(q=KernelDesign(rows=4, cols=8), k=KernelDesign(rows=4, cols=8),
                v=KernelDesign(rows=4, cols=8), o=KernelDesign(rows=4, cols=8))
    cfg, notes = d.layer_config("gpt2", seq=64, engine="gemv")
    assert (cfg.engine, cfg.lanes) == ("gemv", 4)
    assert any("8 does not divide linear_rows 4 (engine gemv)" in n for n in notes)
    uniform, notes = d.layer_config("gpt2", seq=64)
    assert uniform.lanes == 8 and not any(n.startswith("lanes") for n in notes)


@pytest.mark.parametrize("model, message", [
    ("llama-2-70b", "model llama-2-70b (rmsnorm, silu, a gated FFN, grouped-query attention) has "
                   "no hw layer"),
    ("opt-6.7b", "model opt-6.7b (relu) has no hw layer"),
])
def test_models_without_a_layer_are_refused(model, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        layer_arch(model)
    with pytest.raises(ConfigError, match="has no hw layer"):
        _design().layer_config(model, seq=64)
    with pytest.raises(ConfigError, match="engine='tpu' is not allowed; allowed: gemm | gemv"):
        _design().layer_config("gpt2", seq=64, engine="tpu")


def test_save_layer_round_trip(tmp_path, capsys):
    """explore --save-layer writes a JSON that LayerConfig and the layer harness read back;
    --set overrides still apply (a smaller layer for simulation)."""
    path = tmp_path / "layer.json"
    design = tmp_path / "design.json"
    assert main(["explore", "--model", "gpt2", "--device", "u280", "--budget-dsp", "400",
                 "--seq", "128", "--objective", "decode", "--save", str(design),
                 "--save-layer", str(path), "--json"]) == 0
    out, err = capsys.readouterr()
    json.loads(out)                                   # stdout stays the JSON document
    assert f"wrote {path}: gpt2-block config" in err
    values = json.loads(path.read_text())
    cfg = LayerConfig.from_dict(values)
    # the explored design, exported again, is the same config
    best = Design.from_dict(json.loads(design.read_text()))
    again, notes = best.layer_config("gpt2", seq=129, engine=best.decode_kernel)
    assert cfg == again and layer_config_dict(again) == values
    for note in notes:
        assert f"llmloom: note: {note}" in err
    # the harness takes it, with overrides, and calibrates it
    d = 2 * math.lcm(values["linear_cols"], values["ffn_cols"], values["lanes"])
    ff = 4 * d
    step = math.lcm(values["lanes"], values["qk_cols"])
    sets = {"d_model": d, "heads": 2, "d_ff": ff, "seq": step * -(-8 // step)}
    rng = np.random.default_rng(0)
    h = Gpt2BlockHarness().options(weights=random_layer_weights(d, ff, rng))
    x = rng.normal(size=(3, d)).astype(np.float32)
    run_cfg = h.config(values | sets | {"pv_cols": 1}, {"x": x})
    assert run_cfg.calibrated and run_cfg.engine == cfg.engine
    assert run_cfg.ffn_rows == cfg.ffn_rows and run_cfg.d_model == d


def test_estimate_save_layer_and_bad_input(tmp_path, capsys):
    path = tmp_path / "layer.json"
    assert main(["estimate", "--design", "chen2024-gpt2-u280", "--mode", "decode",
                 "--save-layer", str(path)]) == 0
    values = json.loads(path.read_text())
    assert (values["engine"], values["linear_cols"]) == ("gemv", 32)   # the design's decode
    capsys.readouterr()
    # a model without a hw layer: one line, exit 2, no file (not even the design)
    bad, design = tmp_path / "bad.json", tmp_path / "design.json"
    assert main(["explore", "--model", "llama-2-7b", "--device", "u280", "--budget-dsp",
                 "200", "--seq", "64", "--save", str(design), "--save-layer",
                 str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("llmloom: error: model llama-2-7b")
    assert not bad.exists() and not design.exists()
    # a BERT layer config given to the GPT-2 block
    bert = tmp_path / "bert.json"
    assert main(["estimate", "--design", "chen2024-bert-u280", "--save-layer", str(bert)]) == 0
    with pytest.raises(ConfigError, match="arch='bert' in the config, but gpt2-block is a gpt2 "
                                          "layer; allowed: arch=gpt2 .or run bert-layer."):
        Gpt2BlockHarness().config(json.loads(bert.read_text()))
    assert BertLayerHarness().config(json.loads(bert.read_text())).arch == "bert"
