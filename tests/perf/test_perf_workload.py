import pytest

from llmloom.perf import ConfigError, get_model, layer_ops, workload
from llmloom.perf.workload import get_quant


@pytest.mark.parametrize("name", ["bert-base", "gpt2", "gpt2-medium", "gpt2-xl"])
@pytest.mark.parametrize("l", [1, 128, 512])
def test_prefill_macs_match_the_paper(name, l):
    m = get_model(name)
    d = m.d_model
    w = workload(m, "prefill", seq=l)
    assert w.macs_per_layer == 12 * l * d * d + 2 * l * l * d      # d_ff = 4d
    by = w.by_op()
    assert by["q"][0] == l * d * d and by["qk"][0] == l * l * d and by["f1"][0] == l * d * 4 * d


@pytest.mark.parametrize("s", [0, 100, 1000])
def test_decode_macs_match_the_paper(s):
    m = get_model("gpt2-medium")
    d = m.d_model
    w = workload(m, "decode", context=s)
    # the new token attends to the s cached tokens and itself: (s+1)·d per attention GEMM
    assert w.macs_per_layer == 12 * d * d + 2 * (s + 1) * d
    assert w.macs == 24 * w.macs_per_layer


def test_gated_gqa_llama_and_batch():
    m = get_model("llama-2-70b")
    d, dkv, dff, l = m.d_model, m.d_kv, m.d_ff, 64
    assert dkv == 1024
    w = workload(m, "prefill", seq=l, batch=3)
    assert w.macs_per_layer == 3 * (l * (2 * d * d + 2 * d * dkv + 3 * d * dff) + 2 * l * l * d)
    # W8A8 in Q8_0 groups: a byte a weight and its group's scale (hw's), a byte per channel
    q = get_quant("W8A8")
    assert w.weight_bytes == pytest.approx(m.params * (1 + q.group_bits / q.group / 8))
    assert workload(m, "prefill", seq=l, quant="W8A8-channel").weight_bytes == m.params


def test_bytes_per_quantisation_and_kv_cache():
    m = get_model("gpt2-medium")
    w8 = workload(m, "decode", context=511, quant="W8A8-channel")
    w4 = workload(m, "decode", context=511, quant="W4A16")
    f16 = workload(m, "decode", context=511, quant="fp16")
    assert w4.weight_bytes == w8.weight_bytes / 2 == f16.weight_bytes / 4
    # K and V of 512 tokens, all layers: 2 · 512 · 1024 · 24 bytes at 8 bits
    assert w8.kv_bytes == 2 * 512 * 1024 * 24
    assert f16.kv_bytes == 2 * w8.kv_bytes
    ops = {o.name: o for o in layer_ops(m, "decode", context=511, batch=2)}
    assert ops["qk"].count == 2 * 16 and ops["qk"].n == 512


def test_bad_lengths_and_encoder_decode_fail_clearly():
    with pytest.raises(ConfigError,
                       match=r"seq=2000 is out of range for bert-base; allowed: 1..512"):
        workload("bert-base", "prefill", seq=2000)
    with pytest.raises(ConfigError, match="encoder"):
        workload("bert-base", "decode", context=3)
    with pytest.raises(ConfigError, match="unknown quantisation 'W3A3'"):
        workload("gpt2", "prefill", seq=8, quant="W3A3")


@pytest.mark.parametrize("model, arch", [("smollm2-135m", "llama"), ("gpt2-medium", "gpt2")])
@pytest.mark.parametrize("quant, fields", [
    ("W8A8", {"weight_bits": 8, "weight_groups": True}),
    ("W4A8", {"weight_bits": 4}),
    ("W8A8-channel", {"weight_bits": 8}),
])
def test_a_layers_weight_bytes_are_its_images(model, arch, quant, fields):
    """perf's weight bytes of a layer are what the fetched layer reads: its image's ``weights``
    and ``groups`` sections (``hw``'s layout; ``sim.llm.layer_weight_bytes``), to the byte
    where the engines' tiles divide the matrices (4 columns divide every one here). The image
    adds only the re-quantisers' constants beyond them, which perf does not count."""
    from llmloom.hw.layers.config import LayerConfig
    from llmloom.hw.layers.weights_image import image_layout

    m = get_model(model)
    cfg = LayerConfig(arch=arch, d_model=m.d_model, heads=m.n_heads, kv_heads=m.n_kv_heads,
                      d_ff=m.d_ff, seq=16, **fields)
    image = sum(s.nbytes for s in image_layout(cfg) if s.part in ("weights", "groups"))
    perf = sum(o.weight_bytes for o in layer_ops(m, "decode", context=15, quant=quant))
    assert perf == image


@pytest.mark.parametrize("weights, name", [
    (dict(weight_bits=4), "W4A8"),
    (dict(weight_bits=8, weight_groups=True), "W8A8"),
    (dict(weight_bits=8), "W8A8-channel"),
])
def test_layer_quant_reads_what_the_hardware_reads(weights, name):
    from llmloom.hw.layers.config import LayerConfig
    from llmloom.perf.workload import layer_quant

    cfg = LayerConfig(arch="llama", d_model=64, heads=4, kv_heads=2, d_ff=128, seq=8,
                      lanes=2, **weights)
    assert layer_quant(cfg) == name
    q = get_quant(name)
    assert (q.w_bits, q.grouped) == (cfg.weight_bits, cfg.grouped)
