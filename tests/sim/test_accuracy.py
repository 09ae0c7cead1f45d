"""A real checkpoint against its float maths (`llmloom.sim.accuracy`, `llmloom.sim.hf`), on the
installed all-MiniLM-L6-v2 and on a small GPT-2 folder written here."""

import json

import numpy as np
import pytest

from llmloom.sim.accuracy import layer_tensors, model_accuracy, outlier_channels
from llmloom.sim.golden.layers import layer_float, sqnr_db
from llmloom.sim.hf import load_model
from llmloom.sim.weights import WeightsError, random_layer_weights

TEXT = "A man is playing a guitar on the street."


@pytest.fixture(scope="module")
def minilm():
    return load_model("all-minilm-l6-v2")


def test_minilm_loads_as_a_bert_of_six_layers(minilm):
    assert (minilm.arch, minilm.layers, minilm.d_model, minilm.heads, minilm.d_ff) == \
        ("bert", 6, 384, 12, 1536)
    ids = minilm.tokens(TEXT)
    assert ids[0] == 101 and ids[-1] == 102         # [CLS] ... [SEP], no padding to 128
    assert len(ids) == 12


def test_minilm_float_embeddings_rank_a_paraphrase_above_an_unrelated_sentence(minilm):
    def embedding(text):
        _, h = minilm.float_inputs(minilm.tokens(text))
        e = h.mean(0)
        return e / np.linalg.norm(e)
    a = embedding("A man is playing a guitar.")
    b = embedding("Someone plays an instrument.")
    c = embedding("The stock market fell sharply today.")
    assert a @ b > 0.5 > a @ c


@pytest.fixture(scope="module")
def report(minilm):
    return model_accuracy(minilm, TEXT, scheme="static")


@pytest.fixture(scope="module")
def chosen(minilm):
    return model_accuracy(minilm, "She finished the marathon in just under four hours.")


def test_minilm_reaches_float_accuracy_with_the_int16_stream_on_a_held_out_sentence(chosen):
    # issue 13's target, on the bit-exact model: every layer's output within cosine 0.995 of
    # float, calibrated on another text; the static scheme does not make it, so the dynamic
    # one is chosen
    assert chosen.scheme == "dynamic"
    assert chosen.schemes["static"]["worst_layer_cosine"] < 0.9
    assert chosen.worst_layer_cosine >= 0.995
    assert chosen.chained["embedding_cosine"] >= 0.995       # int9 linear inputs (bench/embed.py)
    # the wide input keeps what int8 lost: the input's own error is tiny
    assert all(layer["tensors"]["x"]["sqnr_db"] > 50 for layer in chosen.layers)


def test_report_holds_every_layer_and_tensor_in_dataflow_order(report, minilm):
    assert report.tensors == ("x", "q", "k", "v", "attn", "o", "r1", "n1", "u", "g", "f", "r2",
                              "n2")
    assert report.scheme == "static" and set(report.schemes) == {"static"}
    assert [layer["layer"] for layer in report.layers] == list(range(6))
    for layer in report.layers:
        assert set(layer["tensors"]) == set(report.tensors)
        assert layer["y"] == layer["tensors"]["n2"]         # BERT's output is LN2's
        for m in layer["tensors"].values():
            assert -1 <= m["cosine"] <= 1 and m["max_abs_error"] >= 0
    assert report.tokens == 12 and report.calib_tokens > report.tokens


def test_static_int8_loses_on_minilm_at_the_outlier_channel(report):
    # per-tensor static int8 activations on a trained BERT: far from float (issue 13's
    # starting point); the loss sits where the outliers are: FFN2's output and the residual
    layer0 = report.layers[0]
    assert layer0["y"]["cosine"] < 0.9
    assert layer0["tensors"]["x"]["sqnr_db"] > 25          # the input is fine
    assert 99 in [c for c, _ in layer0["outliers"]["f"]]   # MiniLM's known channel 99
    assert report.chained["embedding_cosine"] < report.layers[-1]["y"]["cosine"]


def test_json_report_is_valid_json_without_infinities(report):
    text = json.dumps(report.to_json(), allow_nan=False)
    assert json.loads(text)["layers"][0]["layer"] == 0


def test_outlier_channels_and_sqnr():
    t = np.ones((4, 10))
    t[2, 7] = 50.0
    assert outlier_channels(t) == [(7, 50.0)]
    assert outlier_channels(np.zeros((3, 4))) == []
    assert sqnr_db([1.0, 2.0], [1.0, 2.0]) == float("inf")
    assert sqnr_db([1.1], [1.0]) == pytest.approx(20.0)


# ---- a GPT-2 folder, and bad ones --------------------------------------------------------------
def gpt2_folder(path, d=16, heads=2, layers=2, vocab=12, positions=128):
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers

    rng = np.random.default_rng(1)
    t = {"wte.weight": rng.normal(size=(vocab, d)), "wpe.weight": rng.normal(size=(positions, d))}
    for n in range(layers):
        w = random_layer_weights(d, 4 * d, rng)
        p = f"h.{n}."
        t |= {p + "ln_1.weight": w["ln1_g"], p + "ln_1.bias": w["ln1_b"],
              p + "attn.c_attn.weight": np.concatenate([w["wq"], w["wk"], w["wv"]], 1),
              p + "attn.c_attn.bias": np.concatenate([w["bq"], w["bk"], w["bv"]]),
              p + "attn.c_proj.weight": w["wo"], p + "attn.c_proj.bias": w["bo"],
              p + "ln_2.weight": w["ln2_g"], p + "ln_2.bias": w["ln2_b"],
              p + "mlp.c_fc.weight": w["w1"], p + "mlp.c_fc.bias": w["b1"],
              p + "mlp.c_proj.weight": w["w2"], p + "mlp.c_proj.bias": w["b2"]}
    save_file({k: v.astype(np.float32) for k, v in t.items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({
        "model_type": "gpt2", "n_embd": d, "n_head": heads, "n_layer": layers,
        "layer_norm_epsilon": 1e-5, "n_positions": positions,
        "activation_function": "gelu_new"}))
    words = ["the", "a", "cat", "dog", "sat", "on", "mat", "ran", "far", "away", "[UNK]"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path / "tokenizer.json"))
    return path


def bert_folder(path, d=16, heads=2, layers=2, d_ff=32, positions=128):
    """A small BERT checkpoint folder (random weights, a word-level tokenizer with [CLS] and
    [SEP] around every text)."""
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    rng = np.random.default_rng(2)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "a", "cat", "dog", "sat", "on", "mat",
             "ran", "far", "away"]
    t = {"embeddings.word_embeddings.weight": rng.normal(size=(len(words), d)),
         "embeddings.position_embeddings.weight": 0.1 * rng.normal(size=(positions, d)),
         "embeddings.token_type_embeddings.weight": 0.1 * rng.normal(size=(2, d)),
         "embeddings.LayerNorm.weight": np.ones(d), "embeddings.LayerNorm.bias": np.zeros(d)}
    names = {"wq": "attention.self.query", "wk": "attention.self.key",
             "wv": "attention.self.value", "wo": "attention.output.dense",
             "w1": "intermediate.dense", "w2": "output.dense"}
    for n in range(layers):
        w = random_layer_weights(d, d_ff, rng)
        p = f"encoder.layer.{n}."
        for ours, theirs in names.items():
            t[p + theirs + ".weight"] = w[ours].T            # nn.Linear: out × in
            t[p + theirs + ".bias"] = w["b" + ours[1:]]
        t |= {p + "attention.output.LayerNorm.weight": w["ln1_g"],
              p + "attention.output.LayerNorm.bias": w["ln1_b"],
              p + "output.LayerNorm.weight": w["ln2_g"], p + "output.LayerNorm.bias": w["ln2_b"]}
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in t.items()},
              str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({
        "model_type": "bert", "hidden_size": d, "num_attention_heads": heads,
        "num_hidden_layers": layers, "intermediate_size": d_ff, "layer_norm_eps": 1e-12,
        "max_position_embeddings": positions, "hidden_act": "gelu"}))
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(path / "tokenizer.json"))
    return path


def test_a_bert_folder_embeds_like_its_float_model(tmp_path):
    m = load_model(bert_folder(tmp_path, d=32, d_ff=64))
    ids = m.tokens("the cat sat")
    assert list(ids) == [2, 4, 6, 8, 3]
    r = model_accuracy(m, "the cat sat on the mat", "a dog ran far away")
    assert r.tensors[-1] == "n2"
    assert r.weights == "a weight scale per group of 32 inputs"      # embed's weights
    assert r.chained["embedding_cosine"] > 0.99
    r = model_accuracy(m, "the cat sat on the mat", "a dog ran far away", per_channel=True)
    assert r.weights == "a weight scale per output channel"
    assert r.chained["embedding_cosine"] > 0.99


def test_a_gpt2_folder_runs_layer_by_layer_and_chained(tmp_path):
    m = load_model(gpt2_folder(tmp_path, d=32))     # embed's weight groups: inputs in 32s
    assert (m.arch, m.layers, m.d_ff) == ("gpt2", 2, 128)
    ids = m.tokens("the cat sat on the mat")
    xs, y = m.float_inputs(ids)
    assert np.allclose(y, layer_float(xs[1], m.layer(1), "gpt2", 2))
    r = model_accuracy(m, "the cat sat on the mat", "a dog ran far away on the mat")
    assert r.tensors[-1] == "r2" and len(r.layers) == 2
    assert r.scheme == "static"             # random weights: the cheaper scheme is enough
    assert all(layer["y"]["cosine"] > 0.99 for layer in r.layers)     # random weights: close
    assert "embedding_cosine" not in r.chained


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / "config.json").unlink(), "has no config.json"),
    (lambda p: (p / "config.json").write_text("{"), "is not valid JSON"),
    (lambda p: (p / "config.json").write_text('{"model_type": "t5"}'), "model_type 't5'"),
    (lambda p: (p / "model2.safetensors").write_bytes(b"x"), "holds 2 .safetensors files"),
    (lambda p: (p / "model.safetensors").write_bytes(b"garbage"), "is not readable"),
])
def test_bad_model_folders_name_the_problem(tmp_path, damage, message):
    damage(gpt2_folder(tmp_path))
    with pytest.raises(WeightsError, match=message):      # ModelError is a WeightsError
        load_model(tmp_path)


def test_layer_tensors_follow_the_description():
    from llmloom.hw.layers.config import DESCRIPTIONS
    assert layer_tensors(DESCRIPTIONS["gpt2"]) == ("x", "n1", "q", "k", "v", "attn", "o", "r1",
                                                  "n2", "u", "g", "f", "r2")
