"""Catalogue of transformer models, with a loader for any Hugging Face ``config.json``.

Every figure comes from the model's published configuration (the ``source`` field gives the
file). Only what the analytical model needs is kept: widths, heads, layers, FFN shape,
vocabulary, maximum positions, activation, normalisation, and whether the model decodes.
"""

from __future__ import annotations

import dataclasses
import os

from ..hw.hfconfig import hf_fields, read_hf_config
from .errors import ConfigError, UnknownNameError

__all__ = ["ModelSpec", "MODELS", "get_model", "load_hf_config", "model_names"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A decoder or encoder transformer, as the analytical model sees it.

    Parameters
    ----------
    name : str
        Catalogue name.
    d_model, n_heads, n_layers, d_ff : int
        Hidden width d, attention heads h, transformer layers N and FFN width d_FFN.
    n_kv_heads : int
        Key/value heads (= ``n_heads`` without grouped-query attention).
    vocab, max_positions : int
        Vocabulary size and longest supported sequence.
    activation : str
        ``gelu``, ``relu`` or ``silu``.
    norm : str
        ``layernorm`` or ``rmsnorm``.
    gated_ffn : bool
        A gate projection beside FFN1 (LLaMA's ``gate_proj``), multiplied elementwise.
    decoder : bool
        Causal, generates tokens (has a decode phase). Encoders (BERT) only have "prefill".
    source : str
        Where the figures come from.
    """

    name: str
    d_model: int
    n_heads: int
    n_layers: int
    d_ff: int
    n_kv_heads: int
    vocab: int
    max_positions: int
    activation: str = "gelu"
    norm: str = "layernorm"
    gated_ffn: bool = False
    decoder: bool = True
    source: str = ""

    def __post_init__(self):
        for f in ("d_model", "n_heads", "n_layers", "d_ff", "n_kv_heads", "vocab",
                  "max_positions"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"model {self.name!r}: {f}={v!r} must be a positive integer")
        if self.d_model % self.n_heads:
            raise ConfigError(f"model {self.name!r}: n_heads={self.n_heads} does not divide "
                              f"d_model={self.d_model}; allowed: a divisor of d_model")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"model {self.name!r}: n_kv_heads={self.n_kv_heads} does not "
                              f"divide n_heads={self.n_heads}; allowed: a divisor of n_heads")
        if self.activation not in ("gelu", "relu", "silu"):
            raise ConfigError(f"model {self.name!r}: activation={self.activation!r}; "
                              "allowed: gelu | relu | silu")
        if self.norm not in ("layernorm", "rmsnorm"):
            raise ConfigError(f"model {self.name!r}: norm={self.norm!r}; "
                              "allowed: layernorm | rmsnorm")

    @property
    def d_head(self):
        return self.d_model // self.n_heads

    @property
    def d_kv(self):
        """Width of K and V (smaller than d under grouped-query attention)."""
        return self.n_kv_heads * self.d_head

    @property
    def params_per_layer(self):
        """Weights of one layer's linear kernels (biases and norm scales left out: < 0.1%)."""
        d = self.d_model
        ffn = (3 if self.gated_ffn else 2) * d * self.d_ff
        return 2 * d * d + 2 * d * self.d_kv + ffn

    @property
    def params(self):
        """Weights of all N layers (embeddings and LM head left out, see README)."""
        return self.n_layers * self.params_per_layer


def _hf(name):
    return f"Hugging Face {name}/config.json (https://huggingface.co/{name}/blob/main/config.json)"


MODELS = {m.name: m for m in (
    ModelSpec(name="bert-base", d_model=768, n_heads=12, n_layers=12, d_ff=3072, n_kv_heads=12,
              vocab=30522, max_positions=512, decoder=False,
              source=_hf("google-bert/bert-base-uncased")),
    ModelSpec(name="bert-large", d_model=1024, n_heads=16, n_layers=24, d_ff=4096,
              n_kv_heads=16, vocab=30522, max_positions=512, decoder=False,
              source=_hf("google-bert/bert-large-uncased")),
    ModelSpec(name="gpt2", d_model=768, n_heads=12, n_layers=12, d_ff=3072, n_kv_heads=12,
              vocab=50257, max_positions=1024,
              source=_hf("openai-community/gpt2") + "; n_inner null means 4*n_embd"),
    ModelSpec(name="gpt2-medium", d_model=1024, n_heads=16, n_layers=24, d_ff=4096,
              n_kv_heads=16, vocab=50257, max_positions=1024,
              source=_hf("openai-community/gpt2-medium") + "; n_inner null means 4*n_embd"),
    ModelSpec(name="gpt2-large", d_model=1280, n_heads=20, n_layers=36, d_ff=5120,
              n_kv_heads=20, vocab=50257, max_positions=1024,
              source=_hf("openai-community/gpt2-large") + "; n_inner null means 4*n_embd"),
    ModelSpec(name="gpt2-xl", d_model=1600, n_heads=25, n_layers=48, d_ff=6400, n_kv_heads=25,
              vocab=50257, max_positions=1024,
              source=_hf("openai-community/gpt2-xl") + "; n_inner null means 4*n_embd"),
    ModelSpec(name="opt-6.7b", d_model=4096, n_heads=32, n_layers=32, d_ff=16384,
              n_kv_heads=32, vocab=50272, max_positions=2048, activation="relu",
              source=_hf("facebook/opt-6.7b")),
    ModelSpec(name="llama-2-7b", d_model=4096, n_heads=32, n_layers=32, d_ff=11008,
              n_kv_heads=32, vocab=32000, max_positions=4096, activation="silu",
              norm="rmsnorm", gated_ffn=True, source=_hf("meta-llama/Llama-2-7b-hf")),
    ModelSpec(name="llama-2-13b", d_model=5120, n_heads=40, n_layers=40, d_ff=13824,
              n_kv_heads=40, vocab=32000, max_positions=4096, activation="silu",
              norm="rmsnorm", gated_ffn=True, source=_hf("meta-llama/Llama-2-13b-hf")),
    ModelSpec(name="llama-3.2-1b", d_model=2048, n_heads=32, n_layers=16, d_ff=8192,
              n_kv_heads=8, vocab=128256, max_positions=131072, activation="silu",
              norm="rmsnorm", gated_ffn=True,
              source=_hf("meta-llama/Llama-3.2-1B") + "; grouped-query attention, 8 KV heads"),
    ModelSpec(name="smollm2-135m", d_model=576, n_heads=9, n_layers=30, d_ff=1536,
              n_kv_heads=3, vocab=49152, max_positions=8192, activation="silu",
              norm="rmsnorm", gated_ffn=True,
              source=_hf("HuggingFaceTB/SmolLM2-135M") + "; grouped-query attention, 3 KV "
                                                          "heads"),
    ModelSpec(name="qwen2.5-0.5b", d_model=896, n_heads=14, n_layers=24, d_ff=4864,
              n_kv_heads=2, vocab=151936, max_positions=32768, activation="silu",
              norm="rmsnorm", gated_ffn=True,
              source=_hf("Qwen/Qwen2.5-0.5B") + "; grouped-query attention, 2 KV heads (its "
                                                "Q/K/V biases are left out with the others)"),
    ModelSpec(name="llama-2-70b", d_model=8192, n_heads=64, n_layers=80, d_ff=28672,
              n_kv_heads=8, vocab=32000, max_positions=4096, activation="silu",
              norm="rmsnorm", gated_ffn=True,
              source=_hf("meta-llama/Llama-2-70b-hf") + "; grouped-query attention, 8 KV heads"),
)}

_ALIASES = {"gpt2-small": "gpt2", "bert-base-uncased": "bert-base",
            "bert-large-uncased": "bert-large", "llama-3.2-1b-instruct": "llama-3.2-1b",
            "smollm2-135m-instruct": "smollm2-135m", "qwen2.5-0.5b-instruct": "qwen2.5-0.5b"}

# model_type values whose FFN is gated (gate_proj * act(up_proj)) and whose norm is RMSNorm.
_GATED_TYPES = {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "phi3"}
_ENCODER_TYPES = {"bert", "roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2"}


def model_names():
    return sorted(MODELS)


def get_model(name):
    """The catalogue entry ``name``, or the model described by a ``config.json`` path.

    Raises
    ------
    UnknownNameError
        ``name`` is neither a catalogue name nor an existing file; the message lists the names.
    """
    if isinstance(name, ModelSpec):
        return name
    key = _ALIASES.get(name.lower(), name.lower())
    if key in MODELS:
        return MODELS[key]
    if name.endswith(".json") or os.path.sep in name:
        return load_hf_config(name)
    raise UnknownNameError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))} "
                           "(or the path of a Hugging Face config.json)")


def load_hf_config(path_or_dict, *, name=None):
    """A :class:`ModelSpec` from a Hugging Face ``config.json`` (a path or the parsed dict).

    Understands the GPT-2 (``n_embd``, ``n_head``, ``n_layer``, ``n_inner``), BERT/OPT/LLaMA
    (``hidden_size``, ``num_attention_heads``, ``intermediate_size`` / ``ffn_dim``,
    ``num_key_value_heads``) spellings.
    """
    if isinstance(path_or_dict, dict):
        cfg, src = path_or_dict, "config dict"
    else:
        cfg, src = read_hf_config(path_or_dict), str(path_or_dict)
    c = hf_fields(cfg, src)
    d, h, n = c.need("d_model", "heads", "layers")
    # no FFN width given (and not GPT-2, whose rule hf_fields applies): the usual 4·d, a guess
    d_ff = c.d_ff if c.d_ff is not None else 4 * d
    act = str(c.act or "gelu").lower()
    act = "silu" if act in ("silu", "swish") else "relu" if act == "relu" else "gelu"
    gated = c.model_type in _GATED_TYPES
    return ModelSpec(
        name=name or c.name or c.model_type or os.path.basename(src),
        d_model=int(d), n_heads=int(h), n_layers=int(n), d_ff=int(d_ff),
        n_kv_heads=int(c.kv_heads),
        vocab=int(c.vocab if c.vocab is not None else 32000),
        max_positions=int(c.positions if c.positions is not None else 2048),
        activation=act, norm="rmsnorm" if gated else "layernorm", gated_ffn=gated,
        decoder=c.model_type not in _ENCODER_TYPES, source=f"Hugging Face config: {src}")
