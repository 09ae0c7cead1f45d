"""One home for reading a Hugging Face ``config.json`` (``hw.hfconfig``): the three readers
(``sim.hf`` for GPT-2/BERT folders, ``sim.checkpoint.LlamaSpec`` for LLaMA, ``perf.models`` for
the analytical model) see one file the same way, and no other module spells its keys."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from llmloom.hw.config import ConfigError
from llmloom.hw.hfconfig import HF_FIELDS, hf_fields, read_hf_config
from llmloom.perf.models import load_hf_config
from llmloom.sim.checkpoint import CheckpointError, LlamaSpec
from llmloom.sim.hf import ModelError, _config

ROOT = Path(__file__).resolve().parents[2]

SMOLLM2 = {"model_type": "llama", "num_hidden_layers": 30, "hidden_size": 576,
           "num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536,
           "vocab_size": 49152, "max_position_embeddings": 8192, "rope_theta": 100000.0,
           "rms_norm_eps": 1e-5, "tie_word_embeddings": True, "hidden_act": "silu"}
GPT2 = {"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": 3, "n_inner": None,
        "layer_norm_epsilon": 1e-5, "n_positions": 256, "n_ctx": 256, "vocab_size": 100,
        "activation_function": "gelu_new"}


def test_the_readers_agree_on_a_llama_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(SMOLLM2))
    spec, perf = LlamaSpec.from_hf_config(path), load_hf_config(path)
    assert spec == LlamaSpec.from_hf_config(SMOLLM2, source=str(path))
    assert (spec.layers, spec.d_model, spec.heads, spec.kv_heads, spec.d_ff, spec.vocab,
            spec.context, spec.rope_base, spec.rms_eps, spec.tied_embeddings) == \
        (30, 576, 9, 3, 1536, 49152, 8192, 100000.0, 1e-5, True)
    assert (perf.n_layers, perf.d_model, perf.n_heads, perf.n_kv_heads, perf.d_ff, perf.vocab,
            perf.max_positions) == (spec.layers, spec.d_model, spec.heads, spec.kv_heads,
                                    spec.d_ff, spec.vocab, spec.context)
    # Hugging Face's own defaults: no grouped-query attention, rotary base 10000
    bare = {k: v for k, v in SMOLLM2.items() if k not in ("num_key_value_heads", "rope_theta")}
    spec = LlamaSpec.from_hf_config(bare)
    assert (spec.kv_heads, spec.rope_base) == (9, 10000.0)
    assert load_hf_config(bare).n_kv_heads == 9


def test_the_readers_agree_on_a_gpt2_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(GPT2))
    sim = _config(tmp_path, tmp_path / "model.safetensors")
    perf = load_hf_config(tmp_path / "config.json")
    assert sim == {"arch": "gpt2", "d_model": 64, "heads": 4, "layers": 3, "d_ff": 256,
                   "eps": 1e-5, "positions": 256}
    assert (perf.d_model, perf.n_heads, perf.n_layers, perf.d_ff, perf.max_positions) == \
        (64, 4, 3, 256, 256)


@pytest.mark.parametrize("content, message", [
    ("{", r"config.json is not valid JSON \(Expecting property name"),
    ("[1, 2]", r"config.json holds a list; allowed: a JSON object"),
    (b"\xff\xfe", r"config.json is not readable"),
])
def test_bad_files_are_one_line_in_each_readers_error(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for error, read in ((ConfigError, load_hf_config), (CheckpointError, LlamaSpec.from_hf_config),
                        (ModelError, lambda p: _config(p.parent, p.parent / "m.safetensors"))):
        with pytest.raises(error, match=message) as exc:
            read(path)
        assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="model config file '.*nothere.json' does not exist"):
        read_hf_config(tmp_path / "nothere.json")


def test_a_missing_field_names_its_spellings_and_the_file():
    with pytest.raises(CheckpointError, match="config.json lacks 'rms_norm_eps'"):
        LlamaSpec.from_hf_config({k: v for k, v in SMOLLM2.items() if k != "rms_norm_eps"})
    with pytest.raises(ConfigError, match="config dict lacks num_attention_heads / n_head"):
        load_hf_config({"hidden_size": 8, "num_hidden_layers": 2})
    with pytest.raises(ModelError, match="x.json lacks hidden_size / n_embd"):
        hf_fields({"model_type": "gpt2"}, "x.json").need("d_model", error=ModelError)


def test_d_ff_defaults_only_where_hugging_face_defines_it():
    assert hf_fields(GPT2).d_ff == 4 * 64                               # n_inner: null
    assert hf_fields({"model_type": "llama", "hidden_size": 8}).d_ff is None
    with pytest.raises(CheckpointError, match="lacks intermediate_size"):
        LlamaSpec.from_hf_config({k: v for k, v in SMOLLM2.items() if k != "intermediate_size"})


def _hf_keys():
    """config.json keys distinctive enough that no other code would spell them."""
    generic = {"d_model", "dim", "n_heads", "num_layers", "n_layers", "d_ff"}
    return {k for keys in HF_FIELDS.values() for k in keys} - generic


def test_no_other_module_spells_config_json_keys():
    """A second reader would spell the keys again: only hw/hfconfig.py holds them as strings."""
    keys, found = _hf_keys(), []
    for sub in ("hw", "sim", "perf", "flows", "boards"):
        for path in sorted((ROOT / sub).rglob("*.py")):
            if path == ROOT / "hw" / "hfconfig.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and node.value in keys:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "config.json keys outside hw/hfconfig.py:\n" + "\n".join(found)
