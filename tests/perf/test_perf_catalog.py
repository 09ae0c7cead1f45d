import json

import pytest

from llmloom.perf import (
    FPGAS,
    GPUS,
    MODELS,
    ConfigError,
    UnknownNameError,
    get_fpga,
    get_gpu,
    get_model,
    get_preset,
    load_hf_config,
)


@pytest.mark.parametrize("name, d, h, n, dff, kv", [
    ("bert-base", 768, 12, 12, 3072, 12), ("bert-large", 1024, 16, 24, 4096, 16),
    ("gpt2", 768, 12, 12, 3072, 12), ("gpt2-medium", 1024, 16, 24, 4096, 16),
    ("gpt2-large", 1280, 20, 36, 5120, 20), ("gpt2-xl", 1600, 25, 48, 6400, 25),
    ("opt-6.7b", 4096, 32, 32, 16384, 32), ("llama-2-7b", 4096, 32, 32, 11008, 32),
    ("llama-2-13b", 5120, 40, 40, 13824, 40), ("llama-2-70b", 8192, 64, 80, 28672, 8),
    ("llama-3.2-1b", 2048, 32, 16, 8192, 8), ("smollm2-135m", 576, 9, 30, 1536, 3),
    ("qwen2.5-0.5b", 896, 14, 24, 4864, 2),
])
def test_model_figures_match_published_configs(name, d, h, n, dff, kv):
    m = get_model(name)
    assert (m.d_model, m.n_heads, m.n_layers, m.d_ff, m.n_kv_heads) == (d, h, n, dff, kv)
    assert "config.json" in m.source


def test_llama_is_gated_rmsnorm_silu_and_bert_is_an_encoder():
    m = get_model("llama-2-7b")
    assert (m.gated_ffn, m.norm, m.activation) == (True, "rmsnorm", "silu")
    assert not get_model("bert-base").decoder
    # LLaMA-2 7B has ~6.5 G parameters in its layers (6.74 G with embeddings and head)
    assert 6.4e9 < m.params < 6.6e9


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UnknownNameError, match="unknown model 'gpt5'; known: .*bert-base"):
        get_model("gpt5")
    with pytest.raises(UnknownNameError, match="unknown device 'u999'; known: .*u280"):
        get_fpga("u999")
    with pytest.raises(UnknownNameError, match="unknown gpu 'v100'; known: .*a100-40gb"):
        get_gpu("v100")
    with pytest.raises(UnknownNameError, match="unknown preset"):
        get_preset("nope")
    assert isinstance(UnknownNameError("x"), ValueError)


def test_hf_loader_gpt2_and_llama_spellings(tmp_path):
    gpt2 = {"model_type": "gpt2", "n_embd": 1024, "n_head": 16, "n_layer": 24, "n_inner": None,
            "vocab_size": 50257, "n_positions": 1024, "activation_function": "gelu_new"}
    m = load_hf_config(gpt2, name="x")
    assert (m.d_model, m.d_ff, m.decoder, m.gated_ffn) == (1024, 4096, True, False)
    llama = {"model_type": "llama", "hidden_size": 8192, "num_attention_heads": 64,
             "num_hidden_layers": 80, "intermediate_size": 28672, "num_key_value_heads": 8,
             "vocab_size": 32000, "max_position_embeddings": 4096, "hidden_act": "silu"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(llama))
    m = get_model(str(path))
    ref = get_model("llama-2-70b")
    assert (m.d_model, m.n_kv_heads, m.d_ff, m.gated_ffn, m.norm) == \
        (ref.d_model, ref.n_kv_heads, ref.d_ff, True, "rmsnorm")
    with pytest.raises(ConfigError, match="num_attention_heads"):
        load_hf_config({"hidden_size": 8})


def test_u280_figures_from_the_data_sheet():
    u = get_fpga("u280")
    assert (u.dsp, u.lut, u.ff, u.bram.count, u.uram.count, u.dies) == \
        (9024, 1303680, 2607360, 2016, 960, 3)
    assert (u.per_die("dsp"), u.per_die("lut"), u.per_die("bram"), u.per_die("uram")) == \
        (3008, 434560, 672, 320)
    assert u.memory.channels == 32
    assert u.memory.channels * u.memory.gbps_per_channel == pytest.approx(460)
    assert u.link_gbps == 200
    # the paper's conversion of hard MACs to the fabric clock (VCK190 AI Engines)
    v = get_fpga("vck190")
    assert v.peak_macs_per_cycle("W8A8", 250) == pytest.approx(1968 * 2 + 400 * 128 * 4)


def test_every_catalogue_entry_names_its_source():
    for cat in (MODELS, FPGAS, GPUS):
        for entry in cat.values():
            assert entry.source.strip(), entry.name
    for f in FPGAS.values():
        if f.memory:
            assert f.memory.source.strip()
    assert {"u280", "u250", "u55c", "vck190", "vhk158", "vu9p", "ecp5-85f", "ice40-up5k",
            "artix7-100t"} <= set(FPGAS)
    assert {"a100-40gb", "a100-80gb", "h100-sxm", "h200-sxm", "rtx-4090"} <= set(GPUS)
    assert get_gpu("h200").bandwidth_gbps == 4800
    assert get_gpu("a100").bandwidth_gbps == 1555


def test_a_llama_class_hf_config_loads_with_gqa_and_swiglu(tmp_path):
    """A Hugging Face config.json of Llama-3.2-1B (its fields as published) is the catalogue's
    model; its layer has grouped-query K/V and three FFN matrices."""
    from llmloom.perf import workload
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
           "intermediate_size": 8192, "num_attention_heads": 32, "num_hidden_layers": 16,
           "num_key_value_heads": 8, "hidden_act": "silu", "max_position_embeddings": 131072,
           "vocab_size": 128256, "rms_norm_eps": 1e-05, "tie_word_embeddings": True}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    m = get_model(str(path))
    ref = get_model("llama-3.2-1b")
    assert (m.d_model, m.n_heads, m.n_kv_heads, m.n_layers, m.d_ff, m.activation, m.norm,
            m.gated_ffn) == (ref.d_model, ref.n_heads, ref.n_kv_heads, ref.n_layers, ref.d_ff,
                             "silu", "rmsnorm", True)
    ops = {o.name: o for o in workload(m, "decode", context=100).ops}
    assert ops["k"].n == ops["v"].n == 8 * 64 and ops["q"].n == 2048
    assert {"f1", "fg", "f2"} <= set(ops) and ops["fg"].weight_bytes == ops["f1"].weight_bytes
    assert m.params == ref.params == 16 * (2 * 2048**2 + 2 * 2048 * 512 + 3 * 2048 * 8192)
