"""The GGUF reader and the float LLaMA reference on a tiny model written here with ``gguf``'s own
writer (no model wheel needed): metadata, Q4_1 codes as stored, the tokenizer from the file's
vocabulary, and the reference against a Hugging Face-style implementation (rotate-half RoPE on
the un-permuted weights, heads one by one) — the adjacent-pair trap checked end to end."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from llmloom.sim.checkpoint import CheckpointError, GgufModel, LlamaSpec
from llmloom.sim.golden.llama import LlamaFloat

D, HEADS, KV, DFF, LAYERS, CTX, BASE, EPS = 32, 4, 2, 64, 2, 64, 500.0, 1e-5
DH = D // HEADS


def _byte_alphabet():
    """GPT-2's printable stand-ins for the 256 bytes (byte-level BPE's base vocabulary)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + \
        list(range(0xAE, 0x100))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def _permute(w, heads):
    """llama.cpp's converter: rows of each head from rotate-half order to adjacent pairs."""
    out, n = w.shape
    return w.reshape(heads, 2, out // heads // 2, n).swapaxes(1, 2).reshape(out, n)


def write_tiny_gguf(path, rng, arch="llama", all_q4_1=False):
    """A 2-layer LLaMA in GGUF: attention F32 (q/k permuted as llama.cpp stores them; with
    ``all_q4_1`` in Q4_1 too, as ``--quant W4A8`` wants every linear stage), the MLP in Q4_1,
    tied embeddings; returns the Hugging Face-layout weights (out × in)."""
    tokens = _byte_alphabet() + ["Ġh", "<|im_start|>", "<|im_end|>"]
    types = [1] * 257 + [3, 3]
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(LAYERS)
    w.add_context_length(CTX)
    w.add_embedding_length(D)
    w.add_feed_forward_length(DFF)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV)
    w.add_rope_freq_base(BASE)
    w.add_layer_norm_rms_eps(EPS)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(["Ġ h"])
    hf = {"token_embd.weight": rng.normal(size=(len(tokens), D)).astype(np.float32),
          "output_norm.weight": (1 + 0.1 * rng.normal(size=D)).astype(np.float32)}
    for n in range(LAYERS):
        p = f"blk.{n}."
        hf |= {p + "attn_norm.weight": 1 + 0.1 * rng.normal(size=D),
               p + "ffn_norm.weight": 1 + 0.1 * rng.normal(size=D),
               p + "attn_q.weight": rng.normal(size=(D, D)) / D ** 0.5,
               p + "attn_k.weight": rng.normal(size=(KV * DH, D)) / D ** 0.5,
               p + "attn_v.weight": rng.normal(size=(KV * DH, D)) / D ** 0.5,
               p + "attn_output.weight": rng.normal(size=(D, D)) / D ** 0.5,
               p + "ffn_gate.weight": rng.normal(size=(DFF, D)) / D ** 0.5,
               p + "ffn_up.weight": rng.normal(size=(DFF, D)) / D ** 0.5,
               p + "ffn_down.weight": rng.normal(size=(D, DFF)) / DFF ** 0.5}
    for name, value in hf.items():
        value = np.asarray(value, np.float32)
        if name.endswith(("attn_q.weight", "attn_k.weight")):
            value = _permute(value, HEADS if "attn_q" in name else KV)
        if ("ffn_" in name or all_q4_1 and "attn_" in name) and value.ndim == 2:
            q = gguf.GGMLQuantizationType.Q4_1
            w.add_tensor(name, gguf.quants.quantize(value, q), raw_dtype=q)
        else:
            w.add_tensor(name, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return hf


@pytest.fixture
def tiny(tmp_path, rng):
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path, rng)
    return GgufModel(path)


def test_metadata(tiny):
    s = tiny.spec
    assert (s.layers, s.d_model, s.heads, s.kv_heads, s.d_ff, s.vocab, s.context) == \
        (LAYERS, D, HEADS, KV, DFF, 259, CTX)
    assert s.rope_base == BASE and s.rms_eps == pytest.approx(EPS) and s.tied_embeddings
    assert tiny.tensor_type("blk.0.ffn_up.weight") == "Q4_1"


def test_q4_1_as_stored(tiny):
    raw = tiny.q4_1("blk.1.ffn_down.weight")
    assert raw.codes.shape == (D, DFF) and raw.scales.shape == (D, DFF // 32)
    assert np.array_equal(raw.dequantize(), tiny.tensor("blk.1.ffn_down.weight"))
    # the same numbers as gguf's own quantiser round trip
    ref = gguf.quants.dequantize(tiny._tensors["blk.1.ffn_down.weight"].data,
                                 gguf.GGMLQuantizationType.Q4_1)
    assert np.array_equal(raw.dequantize(), ref)


def test_tokenizer_from_the_file(tiny):
    tok = tiny.tokenizer()
    text = "<|im_start|>user\nhi there, 42 héllo<|im_end|>"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids[0] == 257 and ids[-1] == 258
    assert 256 in tok.encode("a h")          # the merge Ġ + h
    assert tok.special_ids == (257, 258)


def test_other_architectures_are_refused(tmp_path, rng):
    path = tmp_path / "gpt2.gguf"
    write_tiny_gguf(path, rng, arch="gpt2")
    with pytest.raises(CheckpointError, match=f"{path} holds a 'gpt2' model; allowed: llama"):
        GgufModel(path)


def _hf_reference(model, tokens):
    """Hugging Face's formulation: weights in their original row order (GGUF's permutation
    undone), rotate-half RoPE, attention head by head with query head h on KV head
    h // (heads / kv_heads), float64, no cache."""
    def t(name):
        return model.tensor(name).astype(np.float64)

    def unpermute(w, heads):
        out, n = w.shape
        return w.reshape(heads, out // heads // 2, 2, n).swapaxes(1, 2).reshape(out, n)

    def norm(x, g):
        return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + EPS) * g

    def rope(x, pos):                       # x: tokens × d_head, rotate-half
        inv = BASE ** (-np.arange(0, DH, 2) / DH)
        ang = np.concatenate([pos[:, None] * inv] * 2, axis=1)
        rot = np.concatenate([-x[:, DH // 2:], x[:, :DH // 2]], axis=1)
        return x * np.cos(ang) + rot * np.sin(ang)

    emb = t("token_embd.weight")
    x = emb[tokens]
    n = len(tokens)
    pos = np.arange(n, dtype=np.float64)
    for layer in range(LAYERS):
        p = f"blk.{layer}."
        a = norm(x, t(p + "attn_norm.weight"))
        q = a @ unpermute(t(p + "attn_q.weight"), HEADS).T
        k = a @ unpermute(t(p + "attn_k.weight"), KV).T
        v = a @ t(p + "attn_v.weight").T
        heads = []
        for h in range(HEADS):
            g = h // (HEADS // KV)
            qh = rope(q[:, h * DH:(h + 1) * DH], pos)
            kh = rope(k[:, g * DH:(g + 1) * DH], pos)
            s = qh @ kh.T / np.sqrt(DH) + np.triu(np.full((n, n), -np.inf), 1)
            e = np.exp(s - s.max(1, keepdims=True))
            heads.append(e / e.sum(1, keepdims=True) @ v[:, g * DH:(g + 1) * DH])
        x = x + np.concatenate(heads, 1) @ t(p + "attn_output.weight").T
        b = norm(x, t(p + "ffn_norm.weight"))
        gate = b @ t(p + "ffn_gate.weight").T
        x = x + (gate / (1 + np.exp(-gate)) * (b @ t(p + "ffn_up.weight").T)) @ \
            t(p + "ffn_down.weight").T
    return norm(x, t("output_norm.weight")) @ emb.T


def test_float_reference_equals_the_hugging_face_formulation(tiny, rng):
    tokens = rng.integers(0, 259, 9)
    model = LlamaFloat(tiny, np.float64)
    ours = model.forward(tokens, model.new_cache())
    np.testing.assert_allclose(ours, _hf_reference(tiny, tokens), rtol=1e-9, atol=1e-9)


def test_generation_and_its_checks(tiny):
    model = LlamaFloat(tiny, np.float64)
    out = model.generate([1, 2, 3], max_new_tokens=4)
    assert len(out) == 4 and all(0 <= i < 259 for i in out)
    # greedy: each new token is the argmax of the full recomputation's last row
    ids = [1, 2, 3] + out
    full = model.forward(ids, model.new_cache())
    assert list(np.argmax(full[2:-1], axis=1)) == out
    with pytest.raises(ValueError, match="token ids must be in 0..258"):
        model.forward([259], model.new_cache())
    with pytest.raises(ValueError, match="num_layers=3 is not allowed"):
        LlamaFloat(tiny, num_layers=3)


def test_spec_from_a_hugging_face_config():
    config = {"model_type": "llama", "num_hidden_layers": 30, "hidden_size": 576,
              "num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536,
              "vocab_size": 49152, "max_position_embeddings": 8192, "rope_theta": 100000.0,
              "rms_norm_eps": 1e-5, "tie_word_embeddings": True}
    s = LlamaSpec.from_hf_config(config)
    assert (s.d_head, s.group, s.d_kv) == (64, 3, 192) and s.tied_embeddings
    with pytest.raises(CheckpointError, match="config.json lacks 'rms_norm_eps'"):
        LlamaSpec.from_hf_config({k: v for k, v in config.items() if k != "rms_norm_eps"})
    with pytest.raises(CheckpointError, match="kv_heads=4 does not divide heads=9"):
        LlamaSpec.from_hf_config(config | {"num_key_value_heads": 4})
    with pytest.raises(CheckpointError, match="model_type='gpt2'"):
        LlamaSpec.from_hf_config(config | {"model_type": "gpt2"})
