"""W8 weights in groups (``LayerConfig.weight_groups``, GGUF's Q8_0, SmolLM2's W8A8): int8 codes
with an integer scale per group of 32 inputs and no minimum, in the quantiser, the bit-exact
model and the weight image."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from llmloom.hw.config import ConfigError
from llmloom.hw.layers.common import check_layer_rtl
from llmloom.hw.layers.config import GROUP_SCALE_BITS, WEIGHT_GROUP, LayerConfig
from llmloom.sim.golden.gemm import group_gemm_bitexact
from llmloom.sim.quantize import (
    calibrate,
    group_multipliers,
    q8_0_of,
    quantize_weight,
    run_layer_float_and_int,
)

TOP = (1 << (GROUP_SCALE_BITS - 1)) - 1


def _float_weights(cfg, rng):
    fw = {}
    for st in cfg.description.of_kind("linear"):
        k, n = cfg.linear_shape(st.name)
        w = rng.normal(0, k ** -0.5, (k, n))
        w[:WEIGHT_GROUP, 0] *= 50           # one group far larger than its channel's others
        fw[st.weight] = w
    for name in ("ln1", "ln2"):
        fw[f"{name}_g"] = 1 + 0.1 * rng.normal(size=cfg.d_model)
    return fw


def test_q8_0_of_is_ggml_s_rounding_within_half_a_group_step():
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.05, (96, 5))
    q8 = q8_0_of(w)
    assert q8.codes.dtype == np.int8 and q8.codes.shape == (5, 96)
    assert np.abs(q8.codes).max() == 127 and not np.any(q8.mins)
    step = np.repeat(q8.scales, WEIGHT_GROUP, axis=1)
    assert np.all(np.abs(q8.dequantize() - w.T) <= step / 2 + 1e-3 * np.abs(w.T))
    # every group's largest weight is a code of ±127 (the scale is the group's own)
    g = np.abs(q8.codes.astype(int)).reshape(5, 3, WEIGHT_GROUP).max(axis=2)
    assert np.all(g == 127)


def test_group_shift_keeps_the_w8_worst_case_in_int32():
    cfg = LayerConfig(arch="llama", d_model=64, heads=4, kv_heads=2, d_ff=128, seq=4,
                      weight_groups=True)
    for name in cfg.linears:
        k, _ = cfg.linear_shape(name)
        a = np.full((1, k), -(1 << (cfg.width(cfg.description[name].inputs[0]) - 1)))
        worst = group_gemm_bitexact(a, np.full((k, 1), -128), np.full((k // 32, 1), TOP),
                                    np.zeros((k // 32, 1), int), cfg.group_shift(name),
                                    cfg.rounding)
        assert worst[0, 0] > 2 ** 29    # and did not trip the overflow check


def test_grouped_w8_products_are_closer_to_float_than_per_channel():
    """Weights with one group per channel 30 times the others: Q8_0's groups keep the others'
    resolution, so there the group GEMM (codes, integer scales, no minima, one rounded
    shift) is over ten times nearer the float product than int8 with one scale a channel."""
    rng = np.random.default_rng(3)
    k, n = 128, 6
    w = rng.normal(0, k ** -0.5, (k, n))
    w[:WEIGHT_GROUP] *= 30
    x = rng.integers(-127, 128, (16, k))
    x[:, :WEIGHT_GROUP] = 0         # the other groups' products: per channel, 30× coarser
    exact = x @ w
    q8 = q8_0_of(w)
    scale, minimum, unit = group_multipliers(q8)
    assert not np.any(minimum)
    grouped = group_gemm_bitexact(x, q8.codes.T, scale, None, 4, "half_even") * unit * 16
    q, s_w = quantize_weight(w)
    channel = (x @ q.astype(np.int64)) * s_w
    err_g = np.abs(grouped - exact).mean()
    err_c = np.abs(channel - exact).mean()
    assert err_g * 10 < err_c, (err_g, err_c)


def test_a_grouped_w8_layer_keeps_q8_0_codes_and_no_minima():
    rng = np.random.default_rng(3)
    cfg = LayerConfig(arch="llama", d_model=64, heads=4, kv_heads=2, d_ff=128, seq=8,
                      scheme="dynamic")
    fw, x = _float_weights(cfg, rng), rng.normal(0, 1, (8, 64))
    r = run_layer_float_and_int(fw, x, arch="llama", heads=4, seq=8, scheme="dynamic",
                                kv_heads=2, weight_groups=True)
    assert r["config"].weight_groups and r["config"].grouped and r["cosine"] >= 0.9
    for name in r["config"].linears:
        p = r["config"].numbers.params(name)
        assert p.group_min is None and np.abs(p.group_scale).max() == TOP
        assert np.abs(r["weights"].matrix(name)).max() == 127


def test_w8_groups_bad_configs_are_one_line_errors():
    with pytest.raises(ConfigError, match="weight_groups=true with weight_bits=4: W4 weights "
                                          "are always grouped"):
        LayerConfig(weight_bits=4, weight_groups=True)
    with pytest.raises(ConfigError, match="weight_groups is not allowed with linear stage .* "
                                          "inputs a multiple of 32"):
        LayerConfig(arch="gpt2", d_model=48, heads=4, d_ff=96, weight_groups=True)
    cfg = LayerConfig(arch="llama", d_model=64, heads=4, kv_heads=2, d_ff=128, seq=4)
    rng = np.random.default_rng(4)
    fw = _float_weights(cfg, rng)
    g8 = calibrate(cfg.replace(weight_groups=True), fw, rng.normal(size=(4, 64)))
    check_layer_rtl(g8.config, g8.weights)          # the GEMM has W8 weight groups
    with pytest.raises(ConfigError, match="weight_groups=true with engine=gemv: .* allowed: "
                                          "engine=gemm"):
        check_layer_rtl(g8.config.replace(engine="gemv"), g8.weights)
    with pytest.raises(ConfigError, match="without weight_groups has no weight groups"):
        g8.config.replace(weight_groups=False)
    # Q8_0's groups have a scale only: a minimum table is refused
    nums = g8.config.numbers
    zeros = tuple(tuple(0 for _ in r) for r in nums.params("q").group_scale)
    with pytest.raises(ConfigError, match=r"^numbers.q.group_min is given, but weight_groups "
                                          r"\(GGUF's Q8_0\) has no minimum; allowed: none$"):
        g8.config.replace(numbers=dataclasses.replace(
            nums, q=dataclasses.replace(nums.params("q"), group_min=zeros)))


def test_w8_group_image_holds_int8_codes_then_the_group_tables():
    """A W8-grouped layer's image: the int8 codes as the per-channel image's weights, then each
    group's scale (Q8_0: no minimum); read back exactly."""
    from llmloom.hw.layers.weights_image import image_layout, pack_layer_image, unpack_layer_image
    from llmloom.sim.quantize import quantize_placeholder
    cfg = LayerConfig(arch="llama", d_model=64, heads=2, kv_heads=1, d_ff=96, seq=4, lanes=4,
                      linear_cols=8, ffn_cols=12, weight_groups=True)
    layer = quantize_placeholder(cfg)
    back = unpack_layer_image(layer.config, pack_layer_image(layer.config, layer.weights))
    for name in cfg.linears:
        p = layer.config.numbers.params(name)
        np.testing.assert_array_equal(back[name].weights, layer.weights.matrix(name))
        np.testing.assert_array_equal(back[name].group_scale, p.group_scale)
        assert back[name].group_min is None and p.group_min is None
    parts = [s.part for s in image_layout(cfg)[:5]]
    assert parts == ["weights", "groups", "scales", "bias", "shift"]
    per_channel = {s.stage: s.nbytes for s in image_layout(cfg.replace(weight_groups=False))
                   if s.part == "weights"}
    assert per_channel == {s.stage: s.nbytes for s in image_layout(cfg) if s.part == "weights"}
    # a group's scale, 2 bytes, for each 32 int8 codes of a (tile-padded) column
    groups = {s.stage: s.nbytes for s in image_layout(cfg) if s.part == "groups"}
    assert groups == {name: n // WEIGHT_GROUP * 2 for name, n in per_channel.items()}
