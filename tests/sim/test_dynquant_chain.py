"""The maths of issue 13's dynamic scheme, in NumPy through the bit-exact golden models:
an int16 row stream → DynQuant (int8 and one power-of-two exponent per row) → the int8 GEMM →
Requant with the row exponent (int16 out) equals the float product of the int16 input and the
int8 weights within the bound the three roundings give, element by element."""

from __future__ import annotations

import numpy as np
import pytest

from llmloom.hw.blocks.dynquant import DynQuantConfig
from llmloom.hw.blocks.gemm_config import GemmConfig
from llmloom.hw.blocks.requant import RequantConfig
from llmloom.sim.golden.dynquant import dynquant_bitexact
from llmloom.sim.golden.gemm import gemm_bitexact
from llmloom.sim.golden.requant import requant_bitexact

D, N, ROWS = 384, 96, 24           # all-MiniLM-L6-v2's width, a slice of its outputs


def _inputs(rng):
    """int16 rows spanning the magnitudes a residual stream has: each row scaled by its own
    power of two (rows of 2**-10 of the range up to the full range), a few outlier channels,
    and rows at the edges (all zero; 32512 = 127·2**8, the largest that needs no clipping)."""
    x = rng.normal(0, 1, (ROWS, D)) * np.exp2(rng.integers(2, 13, (ROWS, 1)))
    x[:, [7, 100, 301]] *= 8                                   # outlier channels
    x = np.clip(np.rint(x), -32512, 32512)
    x[0] = 0
    x[1, 5] = 32512
    w = np.clip(np.rint(rng.normal(0, 40, (D, N))), -127, 127)
    w_scale = rng.uniform(0.5, 2.0, N) / 4096
    b = rng.normal(0, 0.5, N)
    return x.astype(np.int16), w.astype(np.int8), w_scale, b


@pytest.mark.parametrize("rounding", ["half_even", "half_up", "floor"])
def test_dynquant_gemm_requant_equals_the_float_product(rounding, rng):
    x, w, w_scale, b = _inputs(rng)
    x_scale = 2.0 ** -9
    real = (x.astype(np.float64) * x_scale) @ (w.astype(np.float64) * w_scale) + b

    dq = DynQuantConfig(length=D, lanes=8, rounding=rounding)
    x8, e = dynquant_bitexact(dq, x)
    acc = gemm_bitexact(GemmConfig(k=D, n=N), x8, w)
    acc_scale = x_scale * w_scale
    bias = tuple(int(v) for v in np.rint(b / acc_scale))
    out_scale = np.abs(real).max() / 30000                     # no output saturates
    rq = RequantConfig(length=N, lanes=4, acc_scale=tuple(acc_scale), bias=bias,
                       out_scale=out_scale, out_width=16, rounding=rounding,
                       row_exponent=True, e_max=dq.e_max, mult_bits=20)
    y = requant_bitexact(rq, acc, e).astype(np.float64) * out_scale

    h = 1.0 if rounding == "floor" else 0.5                    # a rounding's worst error
    step = np.exp2(e)[:, None]                                 # each row's input step (x units)
    requant_err = (0.5 * acc_scale                             # bias to int32 (half even)
                   + h * step * acc_scale                      # bias to the row's unit
                   + (h + 2.0 ** (15 - 20)) * out_scale)       # multiplier, final rounding
    # 1. the exponent is undone exactly: against the float product of DynQuant's output
    #    (x8·2**e, dequantised) only the requant's own roundings remain
    dequantised = (x8 * step * x_scale) @ (w.astype(np.float64) * w_scale) + b
    assert np.all(np.abs(y - dequantised) <= requant_err)
    # 2. against the float product of the int16 input: plus x's rounding to the row's step
    bound = requant_err + h * step * x_scale * (np.abs(w.astype(np.float64)) * w_scale).sum(0)
    assert np.all(np.abs(y - real) <= bound)
    assert e[0] == 0 and e[1] == 8 and len(set(e.tolist())) > 5
    # 3. per row: the int8 rounding of rows whose outlier channels are 8× the rest (about 4
    #    bits left for those) costs a cosine of 0.9991 at worst here (seeded data); floor's
    #    bias (half a step on every element, in the same direction) 0.9975
    cos = (y * real).sum(1)[1:] / np.linalg.norm(y, axis=1)[1:] / np.linalg.norm(real, axis=1)[1:]
    assert cos.min() > (0.997 if rounding == "floor" else 0.999)
