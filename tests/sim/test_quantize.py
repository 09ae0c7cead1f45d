"""W8A8 quantisation of one layer: per-channel weights, int32 biases, per-tensor activation
scales calibrated from the float trace, and Hugging Face weight files through it."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

from llmloom.hw.blocks.requant import RequantConfig
from llmloom.hw.layers.config import LINEARS
from llmloom.sim.golden.layers import layer_bitexact, layer_float_trace
from llmloom.sim.quantize import (
    CLIP_QUANTILES,
    SCALE_SPREAD_BITS,
    calibrate_clipped_scale,
    calibrate_scale,
    quantize_input,
    quantize_layer,
    quantize_weight,
    run_layer_float_and_int,
)

from ..hw import test_llama_block as llama

D, HEADS, F, SEQ = 64, 4, 256, 16


def _weights(rng, d=D, f=F):
    w = {n: rng.normal(scale=d ** -0.5, size=(d, d)) for n in ("wq", "wk", "wv", "wo")}
    w |= {n: rng.normal(scale=0.1, size=d) for n in ("bq", "bk", "bv", "bo", "b2", "ln1_b",
                                                     "ln2_b")}
    w |= {"ln1_g": 1 + rng.normal(scale=0.1, size=d), "ln2_g": 1 + rng.normal(scale=0.1, size=d),
          "w1": rng.normal(scale=d ** -0.5, size=(d, f)), "b1": rng.normal(scale=0.1, size=f),
          "w2": rng.normal(scale=f ** -0.5, size=(f, d))}
    return w


def test_weight_per_output_channel(rng):
    w = rng.normal(size=(32, 8)) * rng.uniform(0.01, 10, size=8)
    q, s = quantize_weight(w)
    assert q.dtype == np.int8 and s.shape == (8,)
    assert np.all(np.abs(q).max(axis=0) == 127)             # each column uses its full range
    assert np.all(np.abs(q * s - w) <= s / 2 + 1e-12)        # half a step per element
    assert q.min() >= -127                                   # symmetric


def test_weight_scale_floor_keeps_requant_buildable():
    w = np.ones((4, 3))
    w[:, 1] = 1e-9          # a near-dead channel
    w[:, 2] = 0.0           # a dead one
    q, s = quantize_weight(w)
    assert s[1] == s[2] == pytest.approx(s[0] * 2.0 ** -SCALE_SPREAD_BITS)
    assert np.all(q[:, 1:] == 0)
    RequantConfig(length=3, lanes=1, acc_scale=tuple(0.01 * s), out_scale=0.1)
    q0, s0 = quantize_weight(np.zeros((4, 3)))
    assert np.all(q0 == 0) and np.all(s0 == 1)


def test_input_quantisation():
    np.testing.assert_array_equal(quantize_input([[0.25, 0.75, -9.0, 9.0]], 0.5),
                                  [[0, 2, -18, 18]])                  # half to even
    np.testing.assert_array_equal(quantize_input([[100.0, -100.0]], 0.5), [[127, -128]])
    assert calibrate_scale(np.zeros(3)) == 1.0
    assert calibrate_scale([-2.54, 1.0]) == pytest.approx(0.02)


@pytest.mark.parametrize("arch", ["gpt2", "bert"])
def test_scales_biases_and_constants(arch, rng):
    w = _weights(rng)
    x = rng.normal(size=(SEQ, D))
    cfg, weights, s_x = quantize_layer(w, x, arch, HEADS)
    t = layer_float_trace(x, w, arch, HEADS)
    assert s_x == cfg.numbers.scales.x == pytest.approx(np.abs(x).max() / 127)
    for name in ("n1", "q", "k", "v", "attn", "o", "r1", "n2", "u", "g", "f", "r2"):
        assert getattr(cfg.numbers.scales, name) == pytest.approx(np.abs(t[name]).max() / 127), name
    kept = t["scores"][:, t["keep"]]
    assert cfg.numbers.scales.score == pytest.approx(np.abs(kept).max() / 127)
    for name, wn, bn in zip(LINEARS, ("wq", "wk", "wv", "wo", "w1", "w2"),
                            ("bq", "bk", "bv", "bo", "b1", "b2"), strict=True):
        q, s_w = quantize_weight(w[wn])
        np.testing.assert_array_equal(weights.matrix(name), q)
        s_in = getattr(cfg.numbers.scales, cfg.linear_io(name)[0])
        np.testing.assert_array_equal(cfg.numbers.params(name).bias,
                                      np.rint(w[bn] / (s_in * s_w)).astype(np.int64))
        rq = cfg.requant(name)
        np.testing.assert_allclose(rq.channel_scales, s_in * s_w, rtol=1e-15)
        assert rq.out_scale == getattr(cfg.numbers.scales, cfg.linear_io(name)[1])
    assert cfg.norm1.gamma == tuple(w["ln1_g"]) and cfg.norm2.beta == tuple(w["ln2_b"])
    assert cfg.gelu.approximation == ("tanh" if arch == "gpt2" else "erf")
    assert cfg.attention.prob_scale == 1 / 1023
    assert cfg.y_scale == (cfg.numbers.scales.r2 if arch == "gpt2" else cfg.numbers.scales.n2)


def test_calibration_data_does_not_saturate_the_input(rng):
    x = rng.normal(size=(SEQ, D))
    _, _, s = quantize_layer(_weights(rng), x, "gpt2", HEADS)
    xi = quantize_input(x, s)
    assert np.abs(xi).max() == 127 and xi.min() >= -127


def test_bias_overflow_is_an_error(rng):
    w = _weights(rng)
    w["bq"][3] = 1e12
    with pytest.raises(ValueError, match="bias of q does not fit int32"):
        quantize_layer(w, rng.normal(size=(SEQ, D)), "gpt2", HEADS)


def _hf_gpt2(w, prefix="h.0."):
    t = {"ln_1.weight": w["ln1_g"], "ln_1.bias": w["ln1_b"],
         "attn.c_attn.weight": np.concatenate([w["wq"], w["wk"], w["wv"]], axis=1),
         "attn.c_attn.bias": np.concatenate([w["bq"], w["bk"], w["bv"]]),
         "attn.c_proj.weight": w["wo"], "attn.c_proj.bias": w["bo"],
         "ln_2.weight": w["ln2_g"], "ln_2.bias": w["ln2_b"],
         "mlp.c_fc.weight": w["w1"], "mlp.c_fc.bias": w["b1"],
         "mlp.c_proj.weight": w["w2"], "mlp.c_proj.bias": w["b2"]}
    return {prefix + k: np.ascontiguousarray(v, dtype=np.float32) for k, v in t.items()}


def _hf_bert(w, prefix="encoder.layer.0."):
    t = {}
    for hf, n in (("query", "q"), ("key", "k"), ("value", "v")):
        t[f"attention.self.{hf}.weight"] = w[f"w{n}"].T             # nn.Linear: out × in
        t[f"attention.self.{hf}.bias"] = w[f"b{n}"]
    t |= {"attention.output.dense.weight": w["wo"].T, "attention.output.dense.bias": w["bo"],
          "attention.output.LayerNorm.weight": w["ln1_g"],
          "attention.output.LayerNorm.bias": w["ln1_b"],
          "intermediate.dense.weight": w["w1"].T, "intermediate.dense.bias": w["b1"],
          "output.dense.weight": w["w2"].T, "output.dense.bias": w["b2"],
          "output.LayerNorm.weight": w["ln2_g"], "output.LayerNorm.bias": w["ln2_b"]}
    return {prefix + k: np.ascontiguousarray(v, dtype=np.float32) for k, v in t.items()}


@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
@pytest.mark.parametrize("arch", ["gpt2", "bert"])
def test_hf_weight_files(tmp_path, rng, arch, fmt):
    """One layer's weights under Hugging Face names, through sim.weights and quantize_layer
    (a path is accepted), give the same integer layer as the canonical float32 dict."""
    w = {k: v.astype(np.float32).astype(np.float64) for k, v in _weights(rng).items()}
    tensors = _hf_gpt2(w) if arch == "gpt2" else _hf_bert(w)
    path = tmp_path / f"layer.{fmt}"
    save_file(tensors, str(path)) if fmt == "safetensors" else np.savez(path, **tensors)
    x = rng.normal(size=(SEQ, D))
    cfg, weights, s = quantize_layer(path, x, arch, HEADS)
    cfg2, weights2, _ = quantize_layer(w, x, arch, HEADS)
    assert cfg == cfg2
    for name in LINEARS:
        np.testing.assert_array_equal(weights.matrix(name), weights2.matrix(name))
    y, _ = layer_bitexact(cfg, weights, quantize_input(x, s))
    y2, _ = layer_bitexact(cfg2, weights2, quantize_input(x, s))
    np.testing.assert_array_equal(y, y2)
    r = run_layer_float_and_int(path, x, arch, HEADS)
    assert r["cosine"] >= 0.99
    np.testing.assert_array_equal(r["y_int"], y)


def test_parallelism_and_seq_reach_the_config(rng):
    x = rng.normal(size=(8, D))
    cfg, _, _ = quantize_layer(_weights(rng), x, "gpt2", HEADS, seq=32, lanes=8,
                               linear_rows=2, ffn_cols=8, qk_rows=1, pv_cols=2)
    assert cfg.seq == 32 and cfg.attention.seq == 32 and cfg.lanes == 8
    assert (cfg.q_gemm.rows, cfg.f2_gemm.cols) == (2, 8)
    assert (cfg.attention.qk_gemm.rows, cfg.attention.pv_gemm.cols) == (1, 2)


def test_clipped_scale_lets_the_massive_rows_saturate(rng):
    """A quantile of the rows' largest magnitudes (:data:`CLIP_QUANTILES`): a massive row (the
    first token's) saturates, the others keep their steps."""
    t = rng.normal(size=(100, 16))
    t[0] *= 1000
    rows = np.abs(t).max(axis=1)
    assert calibrate_clipped_scale(t, 0.98) == pytest.approx(np.quantile(rows, 0.98) / 127)
    assert calibrate_clipped_scale(t, 0.98) < calibrate_scale(t) / 100
    assert calibrate_clipped_scale(t, 0.98, 10) == pytest.approx(np.quantile(rows, 0.98) / 511)
    assert calibrate_clipped_scale(np.zeros((4, 4)), 0.98) == 1.0


def test_llama_silu_input_is_int10_at_its_largest_value(rng):
    """LLaMA's SiLU input ``hg`` is int10 in the dynamic scheme (the description's
    ``act_width``), at its calibration's largest value (no headroom: not a stream tensor; no
    clipping: the 1024-entry table keeps the massive rows and the others' steps); int8 in the
    static scheme."""
    assert "llama" not in CLIP_QUANTILES
    w = llama.llama_weights(rng)
    x = rng.normal(size=(64, llama.D))
    x[0] *= 300                                 # a massive first row
    hg = layer_float_trace(x, w, "llama", llama.HEADS, 1e-5, kv_heads=llama.KV)["hg"]
    scales = {}
    for scheme in ("static", "dynamic"):
        cfg, _, _ = quantize_layer(w, x, "llama", llama.HEADS, kv_heads=llama.KV,
                                   scheme=scheme)
        scales[scheme] = cfg.numbers.scales.hg
    assert scales["dynamic"] == pytest.approx(calibrate_scale(hg, 10))
    assert scales["static"] == pytest.approx(calibrate_scale(hg))
    assert scales["dynamic"] == pytest.approx(scales["static"] * 127 / 511)
