"""A Hugging Face ``config.json``, read and put under our names once for every reader.

The hub spells one fact several ways (GPT-2 ``n_embd``, BERT and LLaMA ``hidden_size``, OPT
``ffn_dim``, ...). :func:`read_hf_config` parses the file and :func:`hf_fields` maps the
spellings onto our names (:data:`HF_FIELDS`), filling only what Hugging Face itself defines
when a field is absent. What a reader accepts (which ``model_type``, which fields it needs) is
the reader's business: it passes its own error class, and every error is one line naming the
file or field and what is allowed.

This lives in ``hw`` because it is the layer every reader may import (``sim`` for
checkpoints, ``perf`` for its model catalogue); it imports nothing of ours.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .config import ConfigError

__all__ = ["HF_FIELDS", "HFConfig", "ROPE_BASE_DEFAULT", "read_hf_config", "hf_fields"]

#: our name → the ``config.json`` keys that spell it, in order of preference (the first present
#: and not null wins).
HF_FIELDS = {
    "d_model": ("hidden_size", "n_embd", "d_model", "dim"),
    "heads": ("num_attention_heads", "n_head", "n_heads", "encoder_attention_heads"),
    "layers": ("num_hidden_layers", "n_layer", "n_layers", "num_layers"),
    "d_ff": ("intermediate_size", "n_inner", "ffn_dim", "d_ff"),
    "kv_heads": ("num_key_value_heads",),
    "vocab": ("vocab_size",),
    "positions": ("max_position_embeddings", "n_positions", "n_ctx"),
    "ln_eps": ("layer_norm_eps", "layer_norm_epsilon"),
    "rms_eps": ("rms_norm_eps",),
    "act": ("hidden_act", "activation_function"),
    "rope_base": ("rope_theta",),
    "tied_embeddings": ("tie_word_embeddings",),
    "name": ("_name_or_path",),
}

#: LLaMA's rotary base when a model names none (``LlamaConfig``'s ``rope_theta`` default,
#: GGUF without ``llama.rope.freq_base``): the default of ``RopeConfig.base`` and
#: ``LayerConfig.rope_base`` too.
ROPE_BASE_DEFAULT = 10000.0


@dataclasses.dataclass(frozen=True)
class HFConfig:
    """One ``config.json`` under our names; a field is None when the file does not give it.

    Hugging Face's own defaults are applied: ``kv_heads`` = ``heads`` (no grouped-query
    attention), ``d_ff`` = 4 · ``d_model`` for GPT-2 (or a config spelling ``n_inner``) when
    it is absent or null, ``rope_base`` = 10000 for ``llama``. ``source`` names the file in errors.
    """

    model_type: str
    source: str
    d_model: int | None = None
    heads: int | None = None
    layers: int | None = None
    d_ff: int | None = None
    kv_heads: int | None = None
    vocab: int | None = None
    positions: int | None = None
    ln_eps: float | None = None
    rms_eps: float | None = None
    act: str | None = None
    rope_base: float | None = None
    tied_embeddings: bool | None = None
    name: str | None = None

    def need(self, *fields, error=ConfigError):
        """The values of ``fields`` (our names), a tuple; raises ``error`` naming the first
        field the file lacks (by its ``config.json`` spellings) and the file."""
        values = []
        for f in fields:
            value = getattr(self, f)
            if value is None:
                keys = HF_FIELDS[f]
                spelt = repr(keys[0]) if len(keys) == 1 else " / ".join(keys)
                raise error(f"{self.source} lacks {spelt}")
            values.append(value)
        return tuple(values)


def read_hf_config(path, *, error=ConfigError):
    """The parsed ``config.json`` at ``path`` (a dict); a missing, unreadable or non-object file
    is one ``error`` line naming it."""
    path = Path(path)
    if not path.exists():
        raise error(f"model config file {str(path)!r} does not exist")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path} is not readable ({exc})") from None
    if not isinstance(cfg, dict):
        raise error(f"{path} holds a {type(cfg).__name__}; allowed: a JSON object "
                    "(a Hugging Face config.json)")
    return cfg


def _first(cfg, keys):
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return None


def hf_fields(cfg, source="config.json"):
    """``cfg`` (a parsed ``config.json``) as an :class:`HFConfig`; ``source`` names it in
    errors."""
    values = {ours: _first(cfg, keys) for ours, keys in HF_FIELDS.items()}
    model_type = str(cfg.get("model_type") or "").lower()
    if values["kv_heads"] is None:
        values["kv_heads"] = values["heads"]
    if values["d_ff"] is None and values["d_model"] is not None and (
            model_type == "gpt2" or "n_inner" in cfg):
        values["d_ff"] = 4 * values["d_model"]
    if values["rope_base"] is None and model_type == "llama":
        values["rope_base"] = ROPE_BASE_DEFAULT
    return HFConfig(model_type=model_type, source=str(source), **values)
