import numpy as np
import pytest

from llmloom.hw.blocks.gemm_config import GemmConfig
from llmloom.hw.config import ConfigError
from llmloom.perf import Design, get_preset
from llmloom.perf.cycles import gemm_cycles
from llmloom.perf.kernels import gemm_cycles_np, gemm_lanes, gemv_cycles_np


def test_vectorised_gemm_cycles_equal_the_cross_checked_formula():
    rng = np.random.default_rng(1)
    cases = 0
    while cases < 300:
        rows, cols = int(rng.integers(1, 65)), int(rng.integers(1, 65))
        k, n, m = int(rng.integers(1, 3000)), int(rng.integers(1, 3000)), int(rng.integers(1, 600))
        divs = [x for x in range(1, 65) if k % x == 0]
        lanes = int(rng.choice(divs))
        cfg = GemmConfig(rows=rows, cols=cols, k=k, n=n, lanes=lanes)
        assert gemm_cycles_np(rows, cols, k, n, lanes, m) == gemm_cycles(cfg, m), cfg
        cases += 1


def test_lanes_divide_k_and_keep_the_array_fed():
    for k, rows, cols, n in [(768, 8, 32, 3072), (1024, 64, 64, 64), (3000, 32, 1, 7)]:
        lanes = gemm_lanes(k, rows, cols, n)
        assert k % lanes == 0 and 1 <= lanes <= 64
        cfg = GemmConfig(rows=rows, cols=cols, k=k, n=n, lanes=lanes)
        if lanes < max(x for x in range(1, 65) if k % x == 0):
            assert rows * cfg.k_beats <= cfg.n_tiles * cfg.tile_steps


def test_gemv_uses_every_mac_on_one_vector():
    total, first = gemv_cycles_np(8, 32, 1024, 4096, 1)
    # every step uses all 256 MACs; only the vector's input (k/lanes beats, lanes = 8) and
    # two pipeline cycles come on top
    assert total - (1024 // 8) * (4096 // 32) == 1024 // 8 + 2 and first < total / 50


def test_export_gives_the_hw_gemm_configs():
    design = get_preset("chen2024-gpt2-u280").design
    cfgs = design.gemm_configs("gpt2-medium")
    assert set(cfgs) == {"q", "k", "v", "o", "f1", "f2"}
    f1 = cfgs["f1"]
    assert isinstance(f1, GemmConfig)
    assert (f1.rows, f1.cols, f1.k, f1.n, f1.w_width) == (8, 32, 1024, 4096, 8)
    assert f1.peak_macs_per_cycle == design.kernels["f1"].macs_per_cycle == 256
    # packing 2: the hw GEMM packs two MACs per multiplier, so its multipliers are the DSPs
    assert f1.dsp_packing and f1.multipliers == design.kernels["f1"].dsp == 128
    bert = get_preset("chen2024-bert-u280").design.gemm_configs("bert-base")
    assert bert["q"].w_width == 4
    llama = design.gemm_configs("llama-2-70b", tp=8)
    assert (llama["k"].n, llama["fg"].n, llama["f2"].k) == (128, 3584, 3584)
    with pytest.raises(ConfigError, match="quant=fp16 cannot be built by the hw GEMM"):
        design.replace(quant="fp16").gemm_configs("gpt2")
    wide = Design.from_dict({**design.to_dict(),
                             "kernels": {**design.to_dict()["kernels"],
                                         "f1": {"rows": 8, "cols": 64, "packing": 2}}})
    with pytest.raises(ConfigError, match="cols\\*packing=128 is out of range"):
        wide.gemm_configs("gpt2")


def test_the_row_units_one_row_latency_is_the_hw_row_kernels():
    """The spatial model's softmax and norm units take two passes over a row plus the drain
    the hw block's config states (statistics latency, record queue, output stages)."""
    from llmloom.hw.blocks.norm import LayerNormConfig, RMSNormConfig
    from llmloom.hw.blocks.softmax import SoftmaxConfig
    from llmloom.perf.kernels import row_drain_cycles, two_pass_row_cycles_np
    assert row_drain_cycles("softmax") == 14 and row_drain_cycles("norm") == 15
    for cfg, unit in ((SoftmaxConfig, "softmax"), (LayerNormConfig, "norm"),
                      (RMSNormConfig, "norm")):
        for length, lanes in ((1024, 8), (129, 8), (64, 64), (1, 4)):
            assert two_pass_row_cycles_np(length, lanes, unit) == cfg.cycles_np(length, lanes, 1)
