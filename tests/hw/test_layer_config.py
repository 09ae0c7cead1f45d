"""The attention and layer configs: derived block configs, and bad values rejected in one
line naming the field and what is allowed."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from llmloom.hw.blocks.activation import GeluConfig
from llmloom.hw.blocks.attention_config import AttentionConfig
from llmloom.hw.blocks.gemm_config import GemmConfig
from llmloom.hw.blocks.norm import LayerNormConfig
from llmloom.hw.blocks.requant import RequantConfig
from llmloom.hw.blocks.residual import ResidualConfig
from llmloom.hw.blocks.rowkernel import MAX_LENGTH
from llmloom.hw.blocks.softmax import PROB, SoftmaxConfig
from llmloom.hw.config import ConfigError
from llmloom.hw.layers.config import (
    ActScales,
    LayerConfig,
    LayerNumbers,
    LayerWeights,
    LinearParams,
    NormParams,
    nominal_constants,
)


def _one_line(info):
    assert "\n" not in str(info.value)


# ---- attention -----------------------------------------------------------------------------
def test_attention_blocks():
    cfg = AttentionConfig(d_model=64, heads=4, seq=32, causal=True, q_scale=0.02, k_scale=0.03,
                          v_scale=0.04, score_scale=0.05, out_scale=0.03, lanes=8,
                          qk_rows=2, qk_cols=8, pv_rows=4, pv_cols=2)
    assert cfg.d_head == 16
    qk = cfg.qk_gemm
    assert isinstance(qk, GemmConfig)
    assert (qk.k, qk.n, qk.a_width, qk.rows, qk.cols, qk.lanes) == (16, 32, 8, 2, 8, 8)
    pv = cfg.pv_gemm
    assert (pv.k, pv.n, pv.a_width, pv.rows, pv.cols) == (32, 16, 11, 4, 2)
    sr = cfg.score_requant
    assert isinstance(sr, RequantConfig) and sr.length == 32 and sr.bias is None
    assert sr.acc_scale == pytest.approx(0.02 * 0.03 / math.sqrt(16)) and sr.out_scale == 0.05
    sm = cfg.softmax(7)
    assert isinstance(sm, SoftmaxConfig)
    assert (sm.length, sm.causal, sm.causal_offset, sm.x_scale) == (32, True, 7, 0.05)
    orq = cfg.out_requant
    assert orq.length == 16 and orq.acc_scale == pytest.approx(0.04 / 1023)
    assert orq.out_scale == 0.03
    assert cfg.kv_cache_bytes == 2 * 32 * 64
    assert cfg.replace(causal=False).softmax(7).causal_offset == 0


@pytest.mark.parametrize("fields, message", [
    ({"heads": 3}, "heads=3 does not divide d_model=64; allowed: a divisor of d_model"),
    ({"lanes": 32}, "lanes=32 does not divide d_head=16 (d_model/heads)"),
    ({"seq": 9000}, "seq=9000 is out of range; allowed: 1..8192"),
    ({"q_scale": 0.0}, "q_scale=0.0 is not allowed; allowed: finite and > 0"),
    ({"score_scale": float("inf")}, "score_scale=inf is not allowed"),
    ({"causal": 1}, "causal=1 must be true or false"),
    ({"qk_cols": 0}, "qk_cols=0 is out of range"),
    ({"rounding": "up"}, "rounding='up' is not allowed"),
])
def test_attention_rejects(fields, message):
    base = {"d_model": 64, "heads": 4, "seq": 16}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) \
            as info:
        AttentionConfig(**(base | fields))
    _one_line(info)


def test_attention_call_contract():
    causal = AttentionConfig(d_model=16, heads=2, seq=8, causal=True)
    causal.check_call(rows=3, ctx=5, q_offset=2)
    causal.check_call(rows=1, ctx=8, q_offset=7)
    for rows, ctx, off, msg in [(2, 3, 2, "q_offset \\+ rows <= ctx"), (1, 9, 0, "ctx=9"),
                                (0, 3, 0, "at least one")]:
        with pytest.raises(ConfigError, match=msg) as info:
            causal.check_call(rows, ctx, off)
        _one_line(info)
    bidir = causal.replace(causal=False)
    bidir.check_call(rows=8, ctx=8, q_offset=0)
    bidir.check_call(rows=4, ctx=4, q_offset=0)         # a sentence shorter than seq
    for rows, ctx, off, msg in [(3, 3, 1, "q_offset=1"), (1, 9, 0, "ctx=9")]:
        with pytest.raises(ConfigError, match=msg) as info:
            bidir.check_call(rows, ctx, off)
        _one_line(info)


# ---- layer ---------------------------------------------------------------------------------
D, H, F, S = 16, 2, 32, 8


def _calibrated(arch="gpt2", **over):
    rng = np.random.default_rng(0)
    shape = LayerConfig(arch=arch, d_model=D, heads=H, d_ff=F, seq=S, lanes=4,
                        **{k: v for k, v in over.items() if k == "kv_heads"})
    names = shape.scale_names
    scales = ActScales(**{t: float(v) for t, v in zip(
        names, rng.uniform(0.01, 0.1, len(names)), strict=True)})

    def lin(n):
        return LinearParams(w_scale=tuple(rng.uniform(0.001, 0.01, n)),
                            bias=tuple(int(b) for b in rng.integers(-1000, 1000, n)))
    linears = {n: lin(shape.linear_shape(n)[1]) for n in shape.linears}
    norms = {n: NormParams(gamma=tuple(rng.uniform(0.5, 1.5, D)),
                           beta=tuple(rng.uniform(-0.1, 0.1, D))) for n in ("ln1", "ln2")}
    nums = dict(scales=scales, **linears, **norms)
    numbers = LayerNumbers(**(nums | {k: v for k, v in over.items() if k in nums}))
    fields = dict(arch=arch, d_model=D, heads=H, d_ff=F, seq=S, lanes=4, numbers=numbers)
    return LayerConfig(**(fields | {k: v for k, v in over.items() if k not in nums}))


@pytest.mark.parametrize("arch", ["gpt2", "bert"])
def test_layer_blocks(arch):
    cfg = _calibrated(arch, linear_rows=2, ffn_cols=8, qk_cols=2, pv_rows=1)
    s, nums = cfg.numbers.scales, cfg.numbers
    assert cfg.calibrated and cfg.causal == (arch == "gpt2")
    assert (cfg.q_gemm.k, cfg.q_gemm.n, cfg.q_gemm.rows) == (D, D, 2)
    assert (cfg.f1_gemm.k, cfg.f1_gemm.n, cfg.f1_gemm.cols) == (D, F, 8)
    assert (cfg.f2_gemm.k, cfg.f2_gemm.n) == (F, D)
    src = "n1" if arch == "gpt2" else "x"
    rq = cfg.q_requant
    np.testing.assert_allclose(rq.channel_scales, np.array(nums.q.w_scale) * getattr(s, src))
    assert rq.bias == nums.q.bias and rq.out_scale == s.q
    f1_src = "n2" if arch == "gpt2" else "n1"
    np.testing.assert_allclose(cfg.f1_requant.channel_scales,
                               np.array(nums.f1.w_scale) * getattr(s, f1_src))
    assert cfg.f2_requant.out_scale == s.f and cfg.o_requant.out_scale == s.o
    n1, n2 = cfg.norm1, cfg.norm2
    assert isinstance(n1, LayerNormConfig) and n1.gamma == nums.ln1.gamma
    assert n1.eps == (1e-5 if arch == "gpt2" else 1e-12)
    assert (n1.x_scale, n1.out_scale) == ((s.x, s.n1) if arch == "gpt2" else (s.r1, s.n1))
    assert (n2.x_scale, n2.out_scale) == ((s.r1, s.n2) if arch == "gpt2" else (s.r2, s.n2))
    g = cfg.gelu
    assert isinstance(g, GeluConfig) and (g.length, g.x_scale, g.out_scale) == (F, s.u, s.g)
    assert g.approximation == ("tanh" if arch == "gpt2" else "erf")
    r1, r2 = cfg.residual1, cfg.residual2
    assert isinstance(r1, ResidualConfig)
    assert (r1.x_scale, r1.r_scale, r1.out_scale) == (s.o, s.x, s.r1)
    skip = s.r1 if arch == "gpt2" else s.n1
    assert (r2.x_scale, r2.r_scale, r2.out_scale) == (s.f, skip, s.r2)
    a = cfg.attention
    assert isinstance(a, AttentionConfig)
    assert (a.causal, a.seq, a.q_scale, a.score_scale, a.out_scale) == (
        arch == "gpt2", S, s.q, s.score, s.attn)
    assert (a.qk_cols, a.pv_rows, a.head_engines) == (2, 1, 1)
    assert cfg.replace(head_engines=2).attention.head_engines == 2
    names = [n for n, _ in cfg.stages]
    assert len(names) == 12 and names[0] == ("norm1" if arch == "gpt2" else "q")
    assert names[-1] == ("residual2" if arch == "gpt2" else "norm2")
    assert cfg.y_scale == (s.r2 if arch == "gpt2" else s.n2) and cfg.x_scale == s.x


def test_layer_dict_round_trip():
    cfg = _calibrated("bert")
    again = LayerConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert "w_scale" not in repr(cfg.numbers.q) and "gamma" not in repr(cfg.numbers.ln1)
    # the older flat form: the numbers beside the structure fields (null when uncalibrated)
    flat = {k: v for k, v in cfg.to_dict().items() if k != "numbers"}
    flat |= cfg.to_dict()["numbers"]
    assert LayerConfig.from_dict(json.loads(json.dumps(flat))) == cfg
    shape = dict(flat, **{k: None for k in LayerConfig.FLAT_NUMBERS})
    assert LayerConfig.from_dict(shape) == cfg.replace(numbers=None)
    with pytest.raises(ConfigError, match="numbers and scales, q, .* are both given") as info:
        LayerConfig.from_dict(flat | {"numbers": cfg.to_dict()["numbers"]})
    _one_line(info)


@pytest.mark.parametrize("arch", ["gpt2", "bert"])
def test_shape_only_layer_is_a_whole_config(arch):
    """Without numbers every stage's block config is built, with the nominal constants (the
    blocks' defaults, a calibrated layer's per-channel re-quantisers and residual scales);
    what needs the numbers says the layer is not calibrated."""
    cfg = LayerConfig(arch=arch, d_model=64, heads=4, d_ff=256, seq=16)
    assert not cfg.calibrated and cfg.f2_gemm.k == 256
    stages = dict(cfg.stages)
    assert len(stages) == 12
    rq = stages["f1"][1]
    assert rq == RequantConfig(length=256, lanes=4, **nominal_constants("linear", 256))
    assert rq.varying_multipliers and rq.channel_table and rq.latency == 4
    assert stages["residual1"] == ResidualConfig(length=64, lanes=4,
                                                 **nominal_constants("residual", 64))
    assert stages["norm1"] == LayerNormConfig(length=64, lanes=4, eps=cfg.eps_value)
    assert stages["gelu"].approximation == ("tanh" if arch == "gpt2" else "erf")
    assert cfg.attention == AttentionConfig(d_model=64, heads=4, seq=16, causal=cfg.causal)
    for getter in (lambda: cfg.x_scale, lambda: cfg.y_scale):
        with pytest.raises(ConfigError, match="this config has none .* calibrate the layer") \
                as info:
            getter()
        _one_line(info)


def test_seq_need_not_be_a_multiple_of_lanes():
    """Score rows of ``seq`` keys pad their last beat, as every row kernel's rows may."""
    att = AttentionConfig(d_model=64, heads=4, seq=20, lanes=8)
    assert (att.softmax_block.beats, att.score_requant.beats) == (3, 3)
    assert _calibrated(seq=10).attention.seq == 10


@pytest.mark.parametrize("fields, message", [
    ({"arch": "mistral"}, "arch='mistral' is not allowed; allowed: gpt2 | bert | llama"),
    ({"heads": 3}, "heads=3 does not divide d_model=16"),
    ({"d_ff": 30}, "lanes=4 does not divide d_ff=30"),
    ({"heads": 8}, "lanes=4 does not divide d_head=2"),
    ({"eps": -1.0}, "eps=-1.0 is not allowed; allowed: finite and >= 0"),
    ({"ffn_rows": 65}, "ffn_rows=65 is out of range"),
    ({"head_engines": 3}, "head_engines=3 does not divide heads=2"),
    ({"q": LinearParams(w_scale=(0.1,) * 3)}, "q.w_scale has 3 entries"),
    ({"o": LinearParams(w_scale=0.1, bias=(1,) * 5)}, "o.bias has 5 entries; expected 16"),
    ({"o": LinearParams(w_scale=0.1, bias=(2 ** 31,) * 16)}, "o.bias\\[0\\]=2147483648"),
    ({"f2": LinearParams(w_scale=(0.1,) * 15 + (1e-9,))},
     "acc_scale spans a factor of 1e\\+08"),
    ({"ln1": NormParams(gamma=(1.0,) * 3)}, "ln1.gamma has 3 entries"),
    ({"scales": {"x": 0.1}}, "scales: "),
    ({"q": 0.5}, "q=float is not allowed; allowed: LinearParams"),
    ({"ln2": None}, "numbers.ln2 is missing; allowed: NormParams"),
])
def test_layer_rejects(fields, message):
    with pytest.raises(ConfigError, match=message) as info:
        _calibrated(**fields)
    _one_line(info)


def test_act_scales_reject():
    with pytest.raises(ConfigError, match="scales.u=-1 is not allowed") as info:
        ActScales(**{f.name: (-1 if f.name == "u" else 0.1)
                     for f in dataclasses.fields(ActScales)})
    _one_line(info)


def test_layer_weights():
    cfg = _calibrated()
    z = {n: np.zeros(s, np.int8) for n, s in (("wq", (D, D)), ("wk", (D, D)), ("wv", (D, D)),
                                                ("wo", (D, D)), ("w1", (D, F)), ("w2", (F, D)))}
    w = LayerWeights(**z).check(cfg)
    assert not w.wq.flags.writeable and w.matrix("f2").shape == (F, D)
    with pytest.raises(ConfigError, match="weight w1 has shape 16×16; expected 16×32"):
        LayerWeights(**(z | {"w1": np.zeros((D, D), np.int8)})).check(cfg)
    with pytest.raises(ConfigError, match="weight wq must be a 2-D array of int8"):
        LayerWeights(**(z | {"wq": np.full((D, D), 300)}))


@pytest.mark.parametrize("arch, d, heads, d_ff, seq", [
    ("gpt2", 1024, 16, 4096, 1024),      # GPT-2 medium, the paper's GPT-2
    ("bert", 768, 12, 3072, 512),        # BERT-base at the paper's l = 512
])
def test_paper_sizes_fit_the_blocks(arch, d, heads, d_ff, seq):
    cfg = LayerConfig(arch=arch, d_model=d, heads=heads, d_ff=d_ff, seq=seq, lanes=16,
                      linear_rows=8, linear_cols=16, ffn_rows=8, ffn_cols=16, qk_rows=8,
                      qk_cols=8, pv_rows=8, pv_cols=8)
    assert cfg.f2_gemm.acc_width <= 32 and cfg.kv_cache_bytes == 2 * seq * d
    a = AttentionConfig(d_model=d, heads=heads, seq=seq, causal=arch == "gpt2", lanes=16)
    assert a.pv_gemm.acc_width == PROB.width + 1 + 8 + math.ceil(math.log2(seq)) <= 32
    # the 10-bit probabilities leave P·V room for the longest context
    assert AttentionConfig(seq=MAX_LENGTH, causal=True).pv_gemm.acc_width == 32


def test_dsp_packing_packs_every_linear_gemm_and_is_refused_on_the_gemv():
    """``dsp_packing``: each linear stage's GEMM (W8's weights or W4's codes) computes two
    columns per multiplier; the GEMV has no packing, and odd columns cannot pair: one-line
    ConfigErrors."""
    base = dict(arch="llama", d_model=32, heads=4, kv_heads=2, d_ff=64, seq=8, lanes=4)
    for bits in (8, 4):
        cfg = LayerConfig(**base, weight_bits=bits, dsp_packing=True)
        for name in cfg.linears:
            g = cfg.linear(name)
            assert g.dsp_packing and g.weight_groups == (bits == 4)
            assert g.multipliers == g.rows * g.cols // 2
    with pytest.raises(ConfigError, match="dsp_packing with engine=gemv"):
        LayerConfig(**base, engine="gemv", dsp_packing=True)
    # the layer's own field is named, not the GEMM's
    with pytest.raises(ConfigError, match="^linear_cols=3 is odd, but dsp_packing pairs"):
        LayerConfig(**base, weight_bits=4, linear_cols=3, dsp_packing=True)
    with pytest.raises(ConfigError, match="^ffn_cols=5 is odd, but dsp_packing pairs"):
        LayerConfig(**base, ffn_cols=5, dsp_packing=True)
