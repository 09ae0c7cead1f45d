"""The resource model of the LLaMA-class layer (`perf/resources/composites.py`): a part per
stage of its description, RoPE's table and products, the product block's multipliers."""

from llmloom.hw.blocks.mul import MulConfig
from llmloom.hw.blocks.rope import RopeConfig
from llmloom.hw.layers.config import LayerConfig
from llmloom.perf.resources import estimate_block, estimate_parts
from llmloom.perf.resources.composites import mul_parts, rope_parts
from llmloom.perf.resources.mapping import family_of, multiplier_dsps


def test_llama_layer_has_a_part_per_stage():
    cfg = LayerConfig(arch="llama", d_model=64, heads=4, kv_heads=2, d_ff=128, seq=32, lanes=4,
                      head_engines=2)
    parts = estimate_parts("llama-block", cfg, "xcup")
    stages = {k.split(".")[0] for k in parts}
    assert {st.name for st in cfg.description.stages} <= stages
    assert {"skip_residual1", "skip_residual2", "forks"} <= stages
    est = estimate_block("llama-block", cfg, "xcup")
    # a longer context: a bigger KV cache and RoPE tables
    assert estimate_block("llama-block", cfg.replace(seq=512), "xcup")["bram"] > est["bram"]
    # the dynamic scheme: a quantiser before the down projection too
    dyn = estimate_parts("llama-block", cfg.replace(scheme="dynamic"), "xcup")
    assert any(k.startswith("quant_p.") for k in dyn)
    # ... and before the output projection, whose input (the attention's output) is int16:
    # the attention's output banks twice as wide
    assert any(k.startswith("quant_attn.") for k in dyn)
    static = estimate_parts("llama-block", cfg, "xcup")
    key = "attention.engine.obuf"
    assert dyn[key].bram >= static[key].bram and dyn[key] != static[key]


def test_rope_and_mul_parts():
    fam = family_of("xcup")
    rope = RopeConfig(length=64, d_head=16, lanes=4, positions=64)
    parts = rope_parts(rope, fam)
    assert parts["multiply"].dsp == 2 * rope.lanes * multiplier_dsps(fam, 8, True,
                                                                      rope.table_width, True)
    longer = rope_parts(rope.replace(positions=4096), fam)["table"]
    assert longer.bram > parts["table"].bram
    # an int16 input (LLaMA's dynamic q and k): 16 × 16-bit products, still one multiplier
    # each on UltraScale+ (27 × 18) and ECP5 (18 × 18)
    wide = RopeConfig(length=64, d_head=16, lanes=4, positions=64, in_width=16)
    for f in ("xcup", "ecp5"):
        assert multiplier_dsps(family_of(f), 16, True, wide.table_width, True) == 1
        assert rope_parts(wide, family_of(f))["multiply"].dsp == 2 * wide.lanes
    mul = mul_parts(MulConfig(length=64, lanes=4, out_width=16, mult_bits=24), fam)
    assert mul["multiply"].dsp >= 4 and "wide_logic" in mul


def test_a_double_buffered_fetched_layer_charges_its_second_bank():
    """The memories a fetched layer loads (``estimate_fetched_memories``): with two banks each
    linear stage's weight memory is twice as deep, and the whole costs more; a bad banks value
    is the layer's ConfigError."""
    import pytest

    from llmloom.hw.config import ConfigError
    from llmloom.perf.resources import estimate_fetched_memories
    from llmloom.perf.resources.composites import fetched_memory_parts
    from llmloom.perf.resources.mapping import map_memory

    cfg = LayerConfig(arch="llama", d_model=256, heads=4, kv_heads=2, d_ff=512, seq=32,
                      lanes=4)
    fam = family_of("xcup")
    one, two = (fetched_memory_parts(cfg, fam, b) for b in (1, 2))
    for name in cfg.linears:
        g = cfg.linear(name)
        assert two[f"{name}.wmem"] == map_memory(fam, g.cols * g.w_width,
                                                 2 * g.n_tiles * g.k).bill()
        assert one[f"{name}.wmem"] == map_memory(fam, g.cols * g.w_width,
                                                 g.n_tiles * g.k).bill()
    est = {b: estimate_fetched_memories(cfg, "xcup", b) for b in (1, 2)}
    assert est[2]["bram"] > est[1]["bram"]
    assert estimate_fetched_memories(cfg, "xcup") == est[2]       # the default: two banks
    with pytest.raises(ConfigError, match=r"^banks=3; allowed: 1"):
        estimate_fetched_memories(cfg, "xcup", 3)


def test_a_w4_fetched_layer_charges_its_codes_and_group_tables():
    """At W4 each linear stage's GEMM loads its codes (a word two k's codes of a tile: half
    the int8 matrix's depth) and its group tables (a tile's ``cols`` scales and minima per
    group), each ``banks`` deep; the int8 layer has no group tables."""
    from llmloom.hw.blocks.gemm_config import GROUP_SCALE_BITS
    from llmloom.perf.resources.composites import fetched_memory_parts
    from llmloom.perf.resources.mapping import map_memory

    cfg = LayerConfig(arch="llama", d_model=256, heads=4, kv_heads=2, d_ff=512, seq=32,
                      lanes=4, weight_bits=4)
    fam = family_of("xcup")
    for banks in (1, 2):
        parts = fetched_memory_parts(cfg, fam, banks)
        for name in cfg.linears:
            g = cfg.linear(name)
            assert g.weight_groups and g.k_per_word == 2
            assert parts[f"{name}.wmem"] == map_memory(fam, 2 * g.cols * 4,
                                                       banks * g.n_tiles * g.k // 2).bill()
            assert parts[f"{name}.gmem"] == map_memory(fam, 2 * g.cols * GROUP_SCALE_BITS,
                                                       banks * g.n_tiles * g.groups).bill()
    w8 = fetched_memory_parts(cfg.replace(weight_bits=8), fam, 2)
    assert not any(k.endswith(".gmem") for k in w8)
