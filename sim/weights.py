"""Float weights of one transformer layer under Hugging Face names, from ``.safetensors`` or
``.npz``, with or without a prefix such as ``h.0.`` or ``encoder.layer.0.``.

Weights come back under canonical names with the orientation ``x @ W`` (in × out), whatever the
source's convention (GPT-2's ``Conv1D`` stores in × out; BERT's ``nn.Linear`` stores out × in):

``wq wk wv wo`` (d×d), ``bq bk bv bo`` (d), ``w1`` (d×d_ff), ``b1`` (d_ff), ``w2`` (d_ff×d),
``b2`` (d), ``ln1_g ln1_b ln2_g ln2_b`` (d). For GPT-2 (pre-norm) ``ln1`` is ``ln_1`` before
attention and ``ln2`` is ``ln_2`` before the MLP; for BERT (post-norm) ``ln1`` is the attention
output's LayerNorm and ``ln2`` the layer output's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .tensors import TensorFileError, check_finite, read_npz

__all__ = ["WeightsError", "ARCHS", "load_layer_weights", "read_tensors", "canonical_weights",
           "random_layer_weights"]

ARCHS = ("gpt2", "bert")


class WeightsError(ValueError):
    """A weights file is missing, unreadable or lacks/misshapes a tensor. One line."""


# HF name (after the layer prefix) → (canonical name, transpose to in×out?)
_GPT2 = {
    "ln_1.weight": ("ln1_g", False), "ln_1.bias": ("ln1_b", False),
    "attn.c_attn.weight": ("w_qkv", False), "attn.c_attn.bias": ("b_qkv", False),
    "attn.c_proj.weight": ("wo", False), "attn.c_proj.bias": ("bo", False),
    "ln_2.weight": ("ln2_g", False), "ln_2.bias": ("ln2_b", False),
    "mlp.c_fc.weight": ("w1", False), "mlp.c_fc.bias": ("b1", False),
    "mlp.c_proj.weight": ("w2", False), "mlp.c_proj.bias": ("b2", False),
}
_BERT = {
    "attention.self.query.weight": ("wq", True), "attention.self.query.bias": ("bq", False),
    "attention.self.key.weight": ("wk", True), "attention.self.key.bias": ("bk", False),
    "attention.self.value.weight": ("wv", True), "attention.self.value.bias": ("bv", False),
    "attention.output.dense.weight": ("wo", True), "attention.output.dense.bias": ("bo", False),
    "attention.output.LayerNorm.weight": ("ln1_g", False),
    "attention.output.LayerNorm.bias": ("ln1_b", False),
    "intermediate.dense.weight": ("w1", True), "intermediate.dense.bias": ("b1", False),
    "output.dense.weight": ("w2", True), "output.dense.bias": ("b2", False),
    "output.LayerNorm.weight": ("ln2_g", False), "output.LayerNorm.bias": ("ln2_b", False),
}
_NAMES = {"gpt2": _GPT2, "bert": _BERT}


def read_tensors(path):
    """All tensors of a ``.safetensors`` or ``.npz`` file, float ones as float64 arrays, others
    as they are (a Hugging Face BERT file holds ``embeddings.position_ids``, int64): only the
    tensors a layer takes must be float (:func:`canonical_weights`)."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            raw = read_npz(path, "weights file")
        except TensorFileError as exc:
            raise WeightsError(str(exc)) from None
    elif suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
            raw = load_file(str(path))
        except Exception as exc:  # noqa: BLE001
            # safetensors raises its own SafetensorError (not a ValueError) on corrupt headers
            raise WeightsError(f"weights file {path} is not readable ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else 'corrupt'})") \
                from None
        try:
            check_finite(raw, f"weights file {path}")
        except TensorFileError as exc:
            raise WeightsError(str(exc)) from None
    else:
        raise WeightsError(f"weights file {path} has suffix {suffix!r}; allowed: "
                           ".safetensors, .npz")
    return {name: value.astype(np.float64) if np.issubdtype(value.dtype, np.floating)
            else value for name, value in raw.items()}


def _strip_prefix(names, arch):
    """The common layer prefix (``h.0.``, ``transformer.h.3.``, ``encoder.layer.0.``, ...)
    under which all of ``arch``'s names are found, or ``""``."""
    wanted = list(_NAMES[arch])
    anchor = wanted[0]
    prefixes = {n[: -len(anchor)] for n in names if n.endswith(anchor)}
    if not prefixes:
        return None
    if len(prefixes) > 1:
        listed = ", ".join(sorted(repr(p) for p in prefixes))
        raise WeightsError(f"weights hold several layers ({listed}); choose one with --prefix "
                           "(prefix= in Python)")
    return prefixes.pop()


def canonical_weights(tensors, arch, prefix=None, d_model=None, d_ff=None):
    """Map HF-named float tensors of one layer to canonical names (see the module docstring),
    checking every shape."""
    if arch not in _NAMES:
        raise WeightsError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    table = _NAMES[arch]
    if prefix is None:
        prefix = _strip_prefix(tensors, arch)
        if prefix is None:
            found = ", ".join(sorted(tensors)[:6]) + (", ..." if len(tensors) > 6 else "")
            raise WeightsError(f"no tensor named like {next(iter(table))!r} for a {arch} "
                               f"layer; found: {found}")
    out = {}
    for hf, (name, transpose) in table.items():
        key = prefix + hf
        if key not in tensors:
            raise WeightsError(f"weights lack tensor {key!r} for a {arch} layer")
        value = np.asarray(tensors[key])
        if not np.issubdtype(value.dtype, np.floating):
            raise WeightsError(f"weights tensor {key!r} has dtype {value.dtype}; expected a "
                               "float type")
        value = value.astype(np.float64)
        out[name] = value.T.copy() if transpose else value
    if arch == "gpt2":
        w, b = out.pop("w_qkv"), out.pop("b_qkv")
        if w.ndim != 2 or w.shape[1] != 3 * w.shape[0]:
            raise WeightsError(f"tensor {prefix}attn.c_attn.weight has shape "
                               f"{'×'.join(map(str, w.shape))}; expected d×3d")
        d = w.shape[0]
        out["wq"], out["wk"], out["wv"] = w[:, :d], w[:, d:2 * d], w[:, 2 * d:]
        out["bq"], out["bk"], out["bv"] = b[:d], b[d:2 * d], b[2 * d:]
    d = out["wq"].shape[0] if d_model is None else d_model
    f = out["w1"].shape[1] if d_ff is None else d_ff
    shapes = {"wq": (d, d), "wk": (d, d), "wv": (d, d), "wo": (d, d), "w1": (d, f),
              "w2": (f, d), "b1": (f,)}
    for name in ("bq", "bk", "bv", "bo", "b2", "ln1_g", "ln1_b", "ln2_g", "ln2_b"):
        shapes[name] = (d,)
    for name, shape in shapes.items():
        if out[name].shape != shape:
            raise WeightsError(f"weights tensor {name} (from {arch} names) has shape "
                               f"{'×'.join(map(str, out[name].shape))}; expected "
                               f"{'×'.join(map(str, shape))}")
    return out


def load_layer_weights(path, arch, prefix=None, d_model=None, d_ff=None):
    """Read one layer's float weights from ``path`` and return them under canonical names."""
    return canonical_weights(read_tensors(path), arch, prefix, d_model, d_ff)


def random_layer_weights(d_model, d_ff, rng):
    """Seeded random float weights of one layer under the canonical names: matrices
    ``N(0, 1/fan_in)`` (activations keep their size through the layer), biases ``N(0, 0.1)``,
    layernorm gains ``1 + N(0, 0.1)`` and offsets ``N(0, 0.1)``. For demos and benchmarks:
    numbers of a plausible size, not a trained model.

    Parameters
    ----------
    d_model, d_ff : int
    rng : numpy.random.Generator
    """
    d, f = d_model, d_ff
    w = {name: rng.normal(scale=d ** -0.5, size=(d, d)) for name in ("wq", "wk", "wv", "wo")}
    w |= {name: rng.normal(scale=0.1, size=d) for name in ("bq", "bk", "bv", "bo", "b2",
                                                           "ln1_b", "ln2_b")}
    w |= {"ln1_g": 1 + rng.normal(scale=0.1, size=d), "ln2_g": 1 + rng.normal(scale=0.1, size=d),
          "w1": rng.normal(scale=d ** -0.5, size=(d, f)), "b1": rng.normal(scale=0.1, size=f),
          "w2": rng.normal(scale=f ** -0.5, size=(f, d))}
    return w
