"""Golden models of the table-driven activations (GELU, SiLU).

The bit-exact model reads the very table the RTL's ROMs hold
(:attr:`~llmloom.hw.blocks.activation.ActivationConfig.lut`). The float64 models are written
here independently of the code that fills the table (vectorised NumPy, SiLU through ``tanh``),
so that the error-bound tests compare two implementations of the maths, not one with itself.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["activation_bitexact", "activation_float", "gelu_erf", "gelu_tanh", "silu"]

_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu_erf(x):
    """Exact GELU, x·Φ(x)."""
    x = np.asarray(x, dtype=np.float64)
    return x * 0.5 * (1.0 + _erf(x * np.sqrt(0.5)))


def gelu_tanh(x):
    """GPT-2's GELU formula."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x * x * x)))


def silu(x):
    """x·sigmoid(x), with sigmoid(x) = (1 + tanh(x/2)) / 2."""
    x = np.asarray(x, dtype=np.float64)
    return x * 0.5 * (1.0 + np.tanh(0.5 * x))


def activation_float(cfg, x):
    """The function of the dequantised int8 input ``x · x_scale``, float64."""
    f = {"silu": silu, "gelu": gelu_tanh if getattr(cfg, "approximation", None) == "tanh"
         else gelu_erf}[cfg.function]
    return f(np.asarray(x, dtype=np.float64) * cfg.x_scale)


def activation_bitexact(cfg, x):
    """int8 (int16) results exactly as the RTL gives them: the table entry of each input
    code (``x & (2**in_width − 1)``)."""
    lut = np.asarray(cfg.lut, dtype=np.int64)
    return lut[np.asarray(x, dtype=np.int64) & (cfg.entries - 1)].astype(cfg.OUT.dtype)
