"""Golden models of the systolic GEMM."""

from __future__ import annotations

import numpy as np

__all__ = ["gemm_bitexact", "gemm_float"]


def gemm_bitexact(cfg, a, w):
    """C = A·W exactly as the RTL computes it: products and sums on wide integers.

    The accumulator is ``cfg.acc_width`` bits, which the config guarantees holds any sum of
    ``k`` products, so nothing saturates or wraps; the check below proves it on every call.
    """
    a = np.asarray(a, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    c = a @ w  # int64: |c| <= k · 2**(a+w-2) < 2**62 for every valid config
    bound = 1 << (cfg.acc_width - 1)
    assert c.size == 0 or (c.min() >= -bound and c.max() < bound), "accumulator overflow"
    return c.astype(np.int32)


def gemm_float(a, w, a_scale=1.0, w_scale=1.0):
    """The real-valued product that the quantised one approximates."""
    return (np.asarray(a, np.float64) * a_scale) @ (np.asarray(w, np.float64) * w_scale)
