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


def test_gemm_widths_follow_the_hw_layers_description():
    from llmloom.hw.layers.config import LayerConfig
    from llmloom.hw.layers.description import TRAINED_SCHEME
    from llmloom.perf.design import KERNEL_OF_STAGE, hw_arch

    design = get_preset("chen2024-gpt2-u280").design
    # SmolLM2 at hw's own W8A8 is the hw LLaMA layer in the scheme trained weights run in:
    # each kernel's GEMM reads what that layer's stage reads (int10 per-token inputs)
    assert hw_arch("smollm2-135m") == "llama"
    layer = LayerConfig(arch="llama", d_model=576, heads=9, kv_heads=3, d_ff=1536, seq=16,
                        lanes=8, linear_cols=8, ffn_cols=8, scheme=TRAINED_SCHEME,
                        weight_groups=True)
    for quant in ("W8A8", "W4A8"):
        cfgs = design.replace(quant=quant).gemm_configs("smollm2-135m")
        assert {KERNEL_OF_STAGE.get(s, s) for s in layer.linears} == set(cfgs)
        for stage in layer.linears:
            got = cfgs[KERNEL_OF_STAGE.get(stage, stage)].a_width
            assert got == layer.gemm(stage).a_width == 10, (quant, stage)
    # BERT's per-token inputs are int9, its output projection reads the attention's int8;
    # GPT-2's are int8
    bert = design.replace(quant="W8A8").gemm_configs("bert-base")
    assert (bert["q"].a_width, bert["o"].a_width, bert["f2"].a_width) == (9, 8, 9)
    assert {c.a_width for c in design.replace(quant="W8A8").gemm_configs("gpt2").values()} \
        == {8}
    # the published designs (per-channel quantisations) have int8 activations, whatever model
    assert {c.a_width for c in design.gemm_configs("smollm2-135m").values()} == {8}
    # a model no hw layer is: the quantisation's bits
    assert hw_arch("opt-6.7b") is None
    assert {c.a_width for c in design.replace(quant="W8A8").gemm_configs("opt-6.7b")
            .values()} == {8}


def test_the_design_model_prices_the_pes_at_the_hw_layers_widths(monkeypatch):
    from llmloom.perf import design as design_mod
    from llmloom.perf import estimate, spatial
    from llmloom.perf.resources import gemm_group_cost, gemm_pe_cost

    def luts_ffs():
        doc = estimate("smollm2-135m", "u280", "chen2024-gpt2-u280", mode="prefill", seq=128,
                       quant="W8A8")
        return doc["resources"]["lut"], doc["resources"]["ff"], doc["resources"]["dsp"]

    wide = luts_ffs()
    monkeypatch.setattr(spatial, "gemm_a_widths",
                        lambda m, q: dict.fromkeys(design_mod.LINEAR, 8))
    narrow = luts_ffs()
    # seven linear kernels (q k v o f1 fg f2), each 8×16 DSPs of 32 logical columns
    pe, grp = ({w: f(w) for w in (8, 10)} for f in (lambda w: gemm_pe_cost("xcup", w),
                                                    lambda w: gemm_group_cost("xcup", 8, w)))
    for i, r in enumerate(("lut", "ff")):
        more = 7 * (128 * (pe[10][r] - pe[8][r]) + 32 * (grp[10][r] - grp[8][r]))
        assert wide[i] - narrow[i] == pytest.approx(more, abs=7) and more > 0
    assert wide[2] == narrow[2]       # 10 × 8 bits still two products per DSP48E2
