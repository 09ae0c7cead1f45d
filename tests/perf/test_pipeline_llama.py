"""The beat-level timing of a LLaMA-class layer (`perf/pipeline.py` walking
`hw/layers/llama.py`): RoPE and the product as element-wise stages, grouped-query K and V
narrower than Q, the SwiGLU's three FFN arrays; calibrated and shape-only layers timed alike."""

import numpy as np
import pytest

from llmloom.hw.layers.config import LayerConfig
from llmloom.perf import pipeline as pl
from llmloom.perf.pipeline import layer_tensor, layer_timing

LAYER = dict(arch="llama", d_model=16, heads=4, kv_heads=2, d_ff=32, seq=16, lanes=2,
             linear_rows=2, linear_cols=4, ffn_rows=4, ffn_cols=8, qk_rows=2, qk_cols=4,
             pv_rows=2, pv_cols=2)


@pytest.mark.parametrize("scheme", ["static", "dynamic"])
def test_llama_layer_timing_counts_the_work(scheme):
    cfg = LayerConfig(**LAYER, scheme=scheme)
    sizes = (5, 1, 1)
    t = layer_timing(cfg, sizes)
    assert t.cycles == sum(t.tensor_cycles)
    assert t.tensor_cycles[1] == t.tensor_cycles[2] < t.tensor_cycles[0]
    stages = {s.name: s for s in t.stages}
    rows, d, f, kv, ln = sum(sizes), cfg.d_model, cfg.d_ff, cfg.kv_width, cfg.lanes
    assert stages["q"].macs == rows * d * d and stages["k"].macs == rows * d * kv
    assert stages["gate"].macs == stages["up"].macs == stages["down"].macs == rows * d * f
    assert stages["down"].peak_macs_per_cycle == cfg.ffn_rows * cfg.ffn_cols
    assert stages["rope_q"].busy_cycles == rows * d // ln
    assert stages["rope_k"].busy_cycles == rows * kv // ln
    assert stages["mul"].busy_cycles == stages["silu"].busy_cycles == rows * f // ln
    assert ("quant_p" in stages) == (scheme == "dynamic")


def test_rope_and_mul_latencies_are_their_blocks(monkeypatch):
    """One decode row: Q and K both pass RoPE before the attention takes them, and the product
    lies on the only path to the down projection, so each block's latency adds to the row's
    time cycle for cycle."""
    from llmloom.hw.blocks.mul import MulConfig
    from llmloom.hw.blocks.rope import RopeConfig

    cfg = LayerConfig(**LAYER)
    base = int(layer_tensor(cfg, 1)[-1])
    monkeypatch.setattr(MulConfig, "LATENCY", MulConfig.LATENCY + 5)
    assert int(layer_tensor(cfg, 1)[-1]) == base + 5
    monkeypatch.setattr(RopeConfig, "LATENCY", RopeConfig.LATENCY + 7)
    assert int(layer_tensor(cfg, 1)[-1]) == base + 12


def test_uncalibrated_llama_is_timed_as_the_calibrated_one(rng):
    from llmloom.sim.quantize import quantize_placeholder

    raw = LayerConfig(**LAYER)
    cal = quantize_placeholder(raw).config
    for sizes in ((1,), (7,), (3, 1)):
        assert layer_timing(cal, sizes).tensor_cycles == layer_timing(raw, sizes).tensor_cycles
    assert np.all(np.diff(pl.layer_tensor(raw, 4)) >= 1)
