"""The hardware widths of the run-time loaded constants (issue 15, item 2) come from the
config, never from the calibrated values, and a calibration that needs more than they hold is
one ConfigError naming the field to raise."""

from __future__ import annotations

import pytest

from llmloom.hw.blocks.mul import MulConfig
from llmloom.hw.blocks.norm import LayerNormConfig
from llmloom.hw.blocks.requant import RequantConfig
from llmloom.hw.blocks.residual import ResidualConfig
from llmloom.hw.blocks.rope import RopeConfig
from llmloom.hw.config import ConfigError


def _widths(cfg, names):
    return {n: getattr(cfg, n) for n in names}


@pytest.mark.parametrize("make, a, b, names", [
    (lambda s: RequantConfig(length=4, lanes=2, acc_scale=(s, 2 * s, 3 * s, 5 * s),
                             out_scale=0.05),
     1e-3, 3e-5, ("mult_width_value", "product_width", "shift_max")),
    (lambda s: ResidualConfig(length=4, lanes=2, x_scale=s, r_scale=0.02, out_scale=0.03),
     0.01, 0.0011, ("mult_width_value", "sum_width", "shift_max")),
    (lambda s: MulConfig(length=4, lanes=2, a_scale=s, b_scale=0.02, out_scale=0.03),
     0.01, 0.3, ("mult_width_value", "product_width", "shift_max")),
    (lambda s: LayerNormConfig(length=8, lanes=2, x_scale=s, out_scale=0.03,
                               gamma=(1.5,) * 8, beta=(0.2,) * 8),
     0.05, 0.0013, ("n_bits_value", "beta_bits_value", "eps_width", "v_width")),
    (lambda s: RopeConfig(length=8, d_head=8, lanes=2, positions=4, x_scale=s,
                          out_scale=0.03),
     0.02, 0.041, ("table_width", "product_width")),
], ids=["requant", "residual", "mul", "layernorm", "rope"])
def test_widths_are_the_configs_not_the_calibrations(make, a, b, names):
    ca, cb = make(a), make(b)
    assert ca != cb
    assert _widths(ca, names) == _widths(cb, names)


@pytest.mark.parametrize("make, message", [
    # per-channel scales 2**12 apart: 28-bit aligned multipliers, the default holds 26
    (lambda: RequantConfig(length=2, lanes=2, acc_scale=(1e-3, 1e-3 * 2 ** -12),
                           out_scale=0.05), r"mult_width=26 allows 26 \(raise mult_width"),
    (lambda: MulConfig(length=2, lanes=2, a_scale=0.01, b_scale=0.02, out_scale=0.03,
                       mult_width=8), r"mult_width=8 allows 8"),
    (lambda: LayerNormConfig(length=8, lanes=2, x_scale=0.05, out_scale=0.03,
                             gamma=(1.5,) * 8, beta=(0.2,) * 8, beta_bits=12),
     r"beta_bits=12 allows 12 \(raise beta_bits\)"),
    (lambda: RopeConfig(length=8, d_head=8, lanes=2, positions=4, x_scale=0.2,
                        out_scale=0.03), r"entry_width=16 allows 16 \(raise entry_width\)"),
], ids=["requant", "mul", "layernorm", "rope"])
def test_a_calibration_beyond_the_widths_is_one_config_error(make, message):
    with pytest.raises(ConfigError, match=message) as err:
        make()
    assert "\n" not in str(err.value)


def test_raising_the_width_accepts_it():
    cfg = RequantConfig(length=2, lanes=2, acc_scale=(1e-3, 1e-3 * 2 ** -12), out_scale=0.05,
                        mult_width=29)
    assert max(cfg.multipliers[0]).bit_length() > 26


def test_a_residual_beyond_its_width_keeps_the_larger_scale_exact():
    """Scales 2**12 apart (a row-exponent stream's skip over a late SmolLM2 layer's branch):
    the 26-bit words hold the larger factor at full precision, the smaller 2 bits coarser."""
    cfg = ResidualConfig(length=2, lanes=2, x_scale=1.0, r_scale=2 ** -12, out_scale=0.03)
    mx, mr, s = cfg.multipliers
    assert max(mx, mr).bit_length() == cfg.mult_width_value == 26
    assert mx * 2.0 ** -s == pytest.approx(1.0 / 0.03, rel=2 ** -15)
    assert mr * 2.0 ** -s == pytest.approx(2 ** -12 / 0.03, rel=2 ** -12)
