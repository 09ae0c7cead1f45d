"""The LLaMA-class layer's description (`hw/layers/llama.py`) and what the layer config derives
from it (`hw/layers/config.py`): shapes with grouped-query K and V, the RoPE and product
blocks, the numbers and weights of its own stages."""

import json

import numpy as np
import pytest

from llmloom.hw.blocks.activation import SiluConfig
from llmloom.hw.blocks.mul import MulConfig
from llmloom.hw.blocks.norm import RMSNormConfig
from llmloom.hw.blocks.rope import RopeConfig
from llmloom.hw.config import ConfigError
from llmloom.hw.layers.config import (
    ActScales,
    LayerConfig,
    LayerNumbers,
    LayerWeights,
    LinearParams,
    NormParams,
)
from llmloom.hw.layers.description import LayerDescription, Stage
from llmloom.hw.layers.llama import LLAMA

D, H, KV, F, S = 32, 4, 2, 48, 8


def _one_line(info):
    assert "\n" not in str(info.value)


def test_llama_description_is_the_contract():
    rows = [(st.name, st.kind, st.inputs, st.output, st.params, st.weight)
            for st in LLAMA.stages]
    assert rows == [
        ("norm1", "norm", ("x",), "n1", "ln1", ""),
        ("q", "linear", ("n1",), "q", "q", "wq"),
        ("k", "linear", ("n1",), "k", "k", "wk"),
        ("v", "linear", ("n1",), "v", "v", "wv"),
        ("rope_q", "rope", ("q",), "qr", "", ""),
        ("rope_k", "rope", ("k",), "kr", "", ""),
        ("attention", "attention", ("qr", "kr", "v"), "attn", "", ""),
        ("o", "linear", ("attn",), "o", "o", "wo"),
        ("residual1", "residual", ("o", "x"), "r1", "", ""),
        ("norm2", "norm", ("r1",), "n2", "ln2", ""),
        ("gate", "linear", ("n2",), "hg", "gate", "w_gate"),
        ("up", "linear", ("n2",), "hu", "up", "w_up"),
        ("silu", "act", ("hg",), "s", "", ""),
        ("mul", "mul", ("s", "hu"), "p", "", ""),
        ("down", "linear", ("p",), "f", "down", "w_down"),
        ("residual2", "residual", ("f", "r1"), "r2", "", ""),
    ]
    assert (LLAMA.arch, LLAMA.output, LLAMA.causal, LLAMA.act, LLAMA.eps, LLAMA.norm) == (
        "llama", "r2", True, "silu", 1e-5, "rmsnorm")
    assert [st.name for st in LLAMA.branch(LLAMA["residual2"])] == [
        "norm2", "gate", "up", "silu", "mul", "down"]
    # the dynamic scheme: the down projection reads the wide product per token
    dyn = LLAMA.for_scheme("dynamic")
    assert [st.name for st in dyn.of_kind("quant")] == ["quant_n1", "quant_attn", "quant_n2",
                                                        "quant_p"]
    # p and f int24 (their held-out rows reach 3.4x and 2.1x the calibration's largest)
    assert dyn["down"].inputs == ("p_i8",) and (dyn.width("p"), dyn.width("f")) == (24, 24)
    # q and k int16 into RoPE (rounded once; no quant stage: no linear stage reads them), the
    # rotated qr and kr int8 as the KV cache and Q·Kᵀ read them
    assert {dyn.width(t) for t in ("q", "k")} == {16} and LLAMA.width("q") == 8
    assert {dyn.width(t) for t in ("qr", "kr", "v")} == {8}
    # the SiLU's input int10 (a 1024-entry table): the gate's requant writes it, static
    assert dyn.width("hg") == 10 and LLAMA.width("hg") == 8
    assert {dyn.width(t) for t in ("hu", "s")} == {16}      # the product's factors wide too
    # the attention writes int16 and the output projection reads it per token
    assert dyn["o"].inputs == ("attn_i8",) and dyn.width("attn") == 16
    cfg = LayerConfig(arch="llama", d_model=D, heads=H, kv_heads=KV, d_ff=F, seq=S,
                      scheme="dynamic")
    assert cfg.attention.out_width == 16 and cfg.attention.out_requant.out_width == 16
    # int10 per-token inputs (narrow=10): an exponent undoes 16 − 10 bits at most
    assert {dyn.width(t) for t in ("n1_i8", "attn_i8", "n2_i8", "p_i8")} == {10}
    assert {cfg.linear(n).a_width for n in ("q", "k", "v", "o", "gate", "up", "down")} == {10}
    assert cfg.requant("o").row_exponent and cfg.requant("o").e_max == 6
    assert cfg.quant("quant_attn").out_width == 10 and cfg.quant("quant_attn").e_max == 6
    assert cfg.replace(scheme="static").attention.out_width == 8
    # the gate's requant writes the SiLU's int10 input; the table has 1024 entries
    assert cfg.requant("gate").out_width == 10 and cfg.silu.in_width == 10
    assert len(cfg.silu.lut) == 1024 and cfg.replace(scheme="static").silu.in_width == 8
    # the q and k re-quantisers write int16, RoPE reads it (16-bit entries, 21 fraction bits)
    for name in ("q", "k"):
        assert cfg.requant(name).out_width == 16
        rope = cfg.rope(f"rope_{name}")
        assert (rope.in_width, rope.frac_bits, rope.table_width) == (16, 21, 16)
        assert cfg.replace(scheme="static").rope(f"rope_{name}").in_width == 8


def test_description_refuses_bad_kinds_and_fields():
    with pytest.raises(ValueError, match="a mul reads 2 tensor"):
        Stage("m", "mul", ("x",), "y")
    with pytest.raises(ValueError, match="features='kv' is not allowed"):
        Stage("r", "rope", ("x",), "y", features="kv")
    stages = (Stage("n", "norm", ("x",), "y", params="ln1"),)
    with pytest.raises(ValueError, match="norm='batchnorm' is not allowed; allowed: "
                                         "layernorm | rmsnorm"):
        LayerDescription(arch="a", stages=stages, output="y", causal=True, act="silu",
                         eps=1e-5, norm="batchnorm")
    with pytest.raises(ValueError, match="act='relu' is not allowed"):
        LayerDescription(arch="a", stages=stages, output="y", causal=True, act="relu",
                         eps=1e-5)


@pytest.mark.parametrize("scheme", ["static", "dynamic"])
def test_llama_shapes_and_blocks(scheme):
    cfg = LayerConfig(arch="llama", d_model=D, heads=H, kv_heads=KV, d_ff=F, seq=S, lanes=4,
                      rope_base=1e5, scheme=scheme, linear_cols=2, ffn_cols=8)
    dh = D // H
    assert (cfg.kv_heads_value, cfg.kv_group, cfg.kv_width) == (KV, H // KV, KV * dh)
    assert {n: cfg.linear_shape(n) for n in cfg.linears} == {
        "q": (D, D), "k": (D, KV * dh), "v": (D, KV * dh), "o": (D, D),
        "gate": (D, F), "up": (D, F), "down": (F, D)}
    assert [cfg.linear(n).cols for n in cfg.linears] == [2, 2, 2, 2, 8, 8, 8]
    assert {t: cfg.tensor_length(t) for t in ("x", "qr", "kr", "v", "attn", "s", "p", "f")} \
        == {"x": D, "qr": D, "kr": KV * dh, "v": KV * dh, "attn": D, "s": F, "p": F, "f": D}
    assert cfg.kv_cache_bytes == 2 * S * KV * dh
    rq, rk = cfg.stage_config("rope_q"), cfg.stage_config("rope_k")
    assert isinstance(rq, RopeConfig) and (rq.length, rk.length) == (D, KV * dh)
    assert (rk.d_head, rk.lanes, rk.positions, rk.base) == (dh, 4, S, 1e5)
    assert isinstance(cfg.norm1, RMSNormConfig) and cfg.norm2.eps == 1e-5
    assert isinstance(cfg.silu, SiluConfig) and cfg.silu.length == F
    mul = cfg.stage_config("mul")
    assert isinstance(mul, MulConfig) and mul.length == F
    assert (mul.a_width, mul.b_width, mul.out_width) == ((16, 16, 24) if scheme == "dynamic"
                                                         else (8,) * 3)
    for st in cfg.description.stages:
        if st.kind not in ("attention", "linear"):
            assert cfg.stage_config(st.name).lanes == 4
    with pytest.raises(ConfigError, match="linear stage 'f1' is not allowed; allowed: q | k"):
        cfg.gemm("f1")


@pytest.mark.parametrize("fields, message", [
    (dict(arch="llama", heads=4, kv_heads=3), "kv_heads=3 does not divide heads=4; allowed: "
                                              "a divisor of heads"),
    (dict(arch="gpt2", heads=4, kv_heads=2), "kv_heads=2 is not allowed with arch=gpt2"),
    (dict(arch="llama", lanes=1), "lanes=1 is odd; allowed with arch=llama: even"),
    (dict(arch="llama", seq=1), "seq=1 is too small for arch=llama"),
    (dict(arch="llama", rope_base=1.0), "rope_base=1.0 is not allowed; allowed: finite and > 1"),
])
def test_llama_config_rejects(fields, message):
    with pytest.raises(ConfigError, match=message) as info:
        LayerConfig(**({"d_model": D, "d_ff": F, "seq": S} | fields))
    _one_line(info)


def _numbers(cfg, rng):
    scales = ActScales(**{t: float(v) for t, v in zip(
        cfg.scale_names, rng.uniform(0.01, 0.1, len(cfg.scale_names)), strict=True)})
    lin = {n: LinearParams(w_scale=tuple(rng.uniform(0.001, 0.01, cfg.linear_shape(n)[1])),
                           bias=(0,) * cfg.linear_shape(n)[1]) for n in cfg.linears}
    norms = {n: NormParams(gamma=tuple(rng.uniform(0.5, 1.5, D))) for n in ("ln1", "ln2")}
    return LayerNumbers(scales=scales, **lin, **norms)


def test_llama_numbers_and_weights_follow_the_description():
    shape = LayerConfig(arch="llama", d_model=D, heads=H, d_ff=F, seq=S)
    assert shape.scale_names == ("x", "n1", "q", "k", "v", "qr", "kr", "score", "attn", "o",
                                 "r1", "n2", "hg", "hu", "s", "p", "f", "r2")
    nums = _numbers(shape, np.random.default_rng(0))
    cfg = shape.replace(numbers=nums)
    s = nums.scales
    assert (cfg.rope("rope_k").x_scale, cfg.rope("rope_k").out_scale) == (s.k, s.kr)
    mul = cfg.mul("mul")
    assert (mul.a_scale, mul.b_scale, mul.out_scale) == (s.s, s.hu, s.p)
    np.testing.assert_allclose(cfg.requant("down").channel_scales,
                               np.array(nums.down.w_scale) * s.p)
    assert cfg.attention.q_scale == s.qr and cfg.attention.k_scale == s.kr
    assert cfg.y_scale == s.r2
    # a JSON file: the numbers of the layer's own stages only, read back equal
    d = cfg.to_dict()
    assert "f1" not in d["numbers"] and "u" not in d["numbers"]["scales"]
    assert LayerConfig.from_dict(json.loads(json.dumps(d))) == cfg
    # another architecture's numbers are refused, with the missing or extra one named
    f1 = LinearParams(w_scale=0.1)
    for over, msg in [({"f1": f1}, "numbers.f1 is given, but a llama layer has no stage f1"),
                      ({"gate": None}, "numbers.gate is missing; allowed: LinearParams"),
                      ({"scales": ActScales(x=0.1)}, "numbers.scales: n1, q, .* missing"),
                      ({"scales": ActScales(**(s.given() | {"u": 0.1}))},
                       "numbers.scales: u given, but a llama layer has no such tensor")]:
        with pytest.raises(ConfigError, match=msg) as info:
            shape.replace(numbers=LayerNumbers(**({"scales": s, **{
                n: nums.params(n) for n in (*cfg.linears, "ln1", "ln2")}} | over)))
        _one_line(info)
    # the int8 matrices: one per linear stage, named by its weight
    z = {st.weight: np.zeros(cfg.linear_shape(st.name), np.int8)
         for st in cfg.description.of_kind("linear")}
    w = LayerWeights(**z).check(cfg)
    assert w.matrix("down").shape == (F, D) and set(w.to_dict()) == set(z)
    with pytest.raises(ConfigError, match="weight w1 is given, but a llama layer has no stage"):
        LayerWeights(**z, w1=np.zeros((D, F), np.int8)).check(cfg)
    with pytest.raises(ConfigError, match="weight w_up is missing; a llama layer needs 32×48"):
        LayerWeights(**(z | {"w_up": None})).check(cfg)


def test_gpt2_files_are_unchanged():
    """A GPT-2 or BERT config's dict has the numbers it always had (none of LLaMA's)."""
    cfg = LayerConfig(arch="gpt2", d_model=D, heads=H, d_ff=F, seq=S)
    nums = _numbers(cfg, np.random.default_rng(1))
    d = cfg.replace(numbers=nums).to_dict()
    assert list(d["numbers"]) == ["scales", "q", "k", "v", "o", "f1", "f2", "ln1", "ln2"]
    assert list(d["numbers"]["scales"]) == ["x", "n1", "q", "k", "v", "score", "attn", "o",
                                            "r1", "n2", "u", "g", "f", "r2"]
