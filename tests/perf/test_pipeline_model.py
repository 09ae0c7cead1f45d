"""Each stage of the pipeline model (``perf/pipeline.py``), fed with back-to-back input and an
always-ready output, reproduces its block's exact closed form in ``perf/cycles.py`` (which the
RTL tests hold to the simulated cycles); the vectorised recurrences equal their loops; and the
layer timing is self-consistent (tensors add up, stage figures count the work)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from llmloom.hw.blocks.attention_config import AttentionConfig
from llmloom.hw.blocks.gemm_config import GemmConfig
from llmloom.hw.blocks.gemv import GemvConfig
from llmloom.hw.blocks.kvcache import KvCacheConfig
from llmloom.hw.blocks.norm import LayerNormConfig
from llmloom.hw.blocks.softmax import SoftmaxConfig
from llmloom.hw.layers.config import LayerConfig
from llmloom.perf import pipeline as pl
from llmloom.perf.cycles import (
    gearbox_span,
    gemm_cycles,
    gemv_cycles,
    kvcache_append_cycles,
    layer_timing,
    row_kernel_cycles,
)


def _back_to_back(n):
    return np.arange(n, dtype=np.int64)


def _cycles(times):
    return int(times[-1]) + 1


@pytest.mark.parametrize("rows, cols, k, n, lanes", [
    (1, 1, 1, 1, 1), (2, 2, 8, 8, 2), (4, 4, 8, 4, 1), (3, 4, 8, 16, 8), (8, 8, 64, 64, 8),
    (4, 1, 2, 8, 2), (2, 8, 4, 8, 4), (5, 3, 6, 7, 3), (8, 2, 4, 16, 1), (1, 16, 32, 16, 2),
])
def test_gemm_stage_reproduces_gemm_cycles(rows, cols, k, n, lanes):
    cfg = GemmConfig(rows=rows, cols=cols, k=k, n=n, lanes=lanes)
    for m in (1, rows - 1, rows, rows + 1, 2 * rows, 3 * rows + 2, 7):
        if m >= 1:
            out = pl.gemm(_back_to_back(m * cfg.k_beats), cfg)
            assert len(out) == m * cfg.n_tiles
            assert _cycles(out) == gemm_cycles(cfg, m), (cfg, m)


@pytest.mark.parametrize("rows, cols, k, n, lanes", [
    (4, 4, 16, 8, 4), (2, 8, 8, 16, 2), (8, 1, 16, 3, 1), (1, 4, 5, 8, 1), (4, 2, 64, 4, 4),
])
def test_gemv_stage_reproduces_gemv_cycles(rows, cols, k, n, lanes):
    cfg = GemvConfig(rows=rows, cols=cols, k=k, n=n, lanes=lanes)
    for m in (1, 2, 5):
        out = pl.gemv(_back_to_back(m * cfg.k_beats), cfg)
        assert _cycles(out) == gemv_cycles(cfg, m), (cfg, m)


@pytest.mark.parametrize("latency", [1, 2, 3, 4])
def test_eltwise_stage(latency):
    for beats in (1, 5, 40):
        assert _cycles(pl.eltwise(_back_to_back(beats), latency)) == beats + latency


@pytest.mark.parametrize("cfg", [SoftmaxConfig(length=8, lanes=2), SoftmaxConfig(length=64,
                                 lanes=1), LayerNormConfig(length=16, lanes=4),
                                 LayerNormConfig(length=4, lanes=4)],
                         ids=["softmax8x2", "softmax64x1", "norm16x4", "norm4x4"])
def test_row_kernel_stage_reproduces_row_kernel_cycles(cfg):
    for rows in (1, 2, 9):
        out = pl.row_kernel(_back_to_back(rows * cfg.beats), *pl.row_kernel_of(cfg))
        assert _cycles(out) == row_kernel_cycles(cfg, rows)


@pytest.mark.parametrize("in_lanes, out_lanes", [(4, 4), (8, 2), (2, 8), (1, 4), (4, 1)])
def test_gearbox_stage_reproduces_its_span(in_lanes, out_lanes):
    beats = 12 if in_lanes <= out_lanes else 6
    taken = pl.ii_stage(_back_to_back(beats), pl.gearbox_ii(in_lanes, out_lanes))
    out = pl.gearbox(taken, in_lanes, out_lanes)
    assert len(out) * out_lanes == beats * in_lanes
    assert int(out[-1]) == gearbox_span(beats, in_lanes, out_lanes)


@pytest.mark.parametrize("lanes, pv_cols", [(2, 2), (4, 2), (4, 8), (2, 1)])
def test_kv_append_reproduces_kvcache_append_cycles(lanes, pv_cols):
    kv = KvCacheConfig(d_model=16, heads=2, seq=8, lanes=lanes, qk_cols=2, pv_cols=pv_cols)
    rows = 5
    beats = _back_to_back(rows * kv.beats)
    t = np.maximum(pl.ii_stage(beats)[-1], pl.kv_append(beats, pl._seg_counts(kv))[-1])
    assert int(t) + 1 == kvcache_append_cycles(kv, rows)


def test_recurrences_equal_their_loops(rng):
    a = np.sort(rng.integers(0, 200, 60))
    for ii in (1, 3):
        want, t = [], pl.NEVER
        for x in a:
            t = max(int(x), t + ii)
            want.append(t)
        assert list(pl.ii_stage(a, ii)) == want
    counts = [1, 3, 2]
    want, t = [], pl.NEVER
    for j, x in enumerate(a):
        start = max(int(x), t + 1)
        t = start + counts[j % 3] - 1
        want.append(t)
    assert list(pl.kv_append(a, counts)) == want


def test_gemm_waits_for_late_input_and_slow_consumer():
    cfg = GemmConfig(rows=2, cols=4, k=4, n=8, lanes=1)
    m = 6
    fast = pl.gemm(_back_to_back(m * 4), cfg)
    late = np.arange(m * 4) * 10            # input far slower than the array
    slow_in = pl.gemm(late, cfg)
    # every token tile's results wait for the next tile's input (or the flush)
    assert slow_in[-1] - late[-1] == fast[-1] - (m * 4 - 1)
    # a consumer taking one beat every 8 cycles: output every 8 cycles, and no earlier
    slow_out = pl.gemm(_back_to_back(m * 4), cfg, drain_ii=8)
    assert np.all(np.diff(slow_out) >= 8) and np.all(slow_out >= fast)


def test_attention_decode_equals_sum_of_block_predictions():
    """For one query row the attention's stages follow each other: the pipeline model equals
    the phases summed with the blocks' own closed forms."""
    cfg = AttentionConfig(d_model=16, heads=2, seq=16, lanes=4, qk_rows=2, qk_cols=8,
                          pv_rows=2, pv_cols=2, causal=True)
    kv = KvCacheConfig.of(cfg)
    qk, pv, sm = cfg.qk_gemm, cfg.pv_gemm, cfg.softmax(0)
    beats = cfg.d_model // cfg.lanes
    t = max(beats, kv.v_row_cycles) + 1
    for _ in range(cfg.heads):
        first_q = t + max(kv.kt_beats, kv.vh_beats) + 4
        scores = (first_q + gemm_cycles(qk, 1) - qk.n_tiles
                  + gearbox_span(qk.n_tiles, cfg.qk_cols, cfg.lanes)
                  + cfg.score_requant.latency)
        probs = scores + row_kernel_cycles(sm, 1) - sm.beats
        pv_last = probs + gemm_cycles(pv, 1) - pv.k_beats
        t = (pv_last - pv.n_tiles + 1 + gearbox_span(pv.n_tiles, cfg.pv_cols, cfg.lanes)
             + cfg.out_requant.latency) + 1
    want = t - 1 + 3 + beats
    b = _back_to_back(beats)
    assert _cycles(pl.attention(b, b, b, cfg)) == want


LAYER = dict(d_model=16, heads=2, d_ff=32, seq=16, lanes=2, linear_rows=2, linear_cols=4,
             ffn_rows=4, ffn_cols=8, qk_rows=2, qk_cols=4, pv_rows=2, pv_cols=2)


@pytest.mark.parametrize("arch", ["gpt2", "bert"])
def test_layer_timing_adds_up_and_counts_the_work(arch):
    cfg = LayerConfig(arch=arch, **LAYER)
    sizes = (16,) if arch == "bert" else (5, 1, 1)
    t = layer_timing(cfg, sizes)
    assert t.cycles == sum(t.tensor_cycles) and len(t.tensor_cycles) == len(sizes)
    if arch == "gpt2":
        assert t.tensor_cycles[1] == t.tensor_cycles[2] < t.tensor_cycles[0]
    stages = {s.name: s for s in t.stages}
    rows = sum(sizes)
    d, f = cfg.d_model, cfg.d_ff
    assert stages["f1"].macs == rows * d * f and stages["q"].macs == rows * d * d
    assert stages["attention.qk"].macs == rows * cfg.seq * d
    assert stages["f1"].peak_macs_per_cycle == cfg.ffn_rows * cfg.ffn_cols
    assert stages["norm1"].busy_cycles == rows * d // cfg.lanes
    assert t.bottleneck == max(t.stages, key=lambda s: s.busy_cycles).name
    doc = t.as_dict()
    for s in doc["stages"]:
        assert 0 <= s["utilisation"] <= 1
        assert s["mac_utilisation"] is None or 0 < s["mac_utilisation"] <= 1
    with pytest.raises(ValueError, match="more than seq"):
        layer_timing(cfg, (cfg.seq + 1,))


def test_layer_stage_figures_scale_with_rows():
    cfg = LayerConfig(arch="gpt2", **LAYER)
    one, many = (layer_timing(cfg, (n,)) for n in (1, 8))
    busy = {s.name: s.busy_cycles for s in one.stages}
    for s in many.stages:
        assert s.busy_cycles >= busy[s.name]
    # a longer prefill costs more, but far less than one decode step per row
    assert one.cycles < many.cycles < 8 * one.cycles


def test_uncalibrated_layer_is_timed_as_the_calibrated_one(rng):
    """Without scales the layer is timed with per-channel re-quantisers (a constant table
    when a row has several beats), as a calibrated layer with biases has them."""
    from llmloom.sim.quantize import quantize_layer

    d, f = LAYER["d_model"], LAYER["d_ff"]
    fw = {n: rng.normal(0, d ** -0.5, (d, d)) for n in ("wq", "wk", "wv", "wo")}
    fw.update(w1=rng.normal(0, d ** -0.5, (d, f)), w2=rng.normal(0, f ** -0.5, (f, d)),
              b1=rng.normal(0, 0.1, f))
    fw.update({b: rng.normal(0, 0.1, d) for b in ("bq", "bk", "bv", "bo", "b2", "ln1_b",
                                                   "ln2_b")})
    fw.update(ln1_g=np.ones(d), ln2_g=np.ones(d))
    par = {k: v for k, v in LAYER.items() if k not in ("d_model", "heads", "d_ff", "seq")}
    cal, _, _ = quantize_layer(fw, rng.normal(0, 1, (8, d)), "gpt2", LAYER["heads"],
                               LAYER["seq"], **par)
    assert cal.calibrated
    raw = LayerConfig(arch="gpt2", **LAYER)
    for sizes in ((1,), (7,), (3, 1)):
        assert layer_timing(cal, sizes).tensor_cycles == layer_timing(raw, sizes).tensor_cycles
    for lr, fc in itertools.product((1, 2, 4), (2, 8)):
        cfg = LayerConfig(arch="gpt2", **{**LAYER, "linear_rows": lr, "ffn_cols": fc})
        c = [layer_timing(cfg, (n,)).cycles for n in (1, 2, 4)]
        assert 0 < c[0] <= c[1] <= c[2]
