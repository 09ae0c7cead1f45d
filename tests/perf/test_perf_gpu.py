import pytest

from llmloom.perf import get_gpu, get_model, gpu_estimate, workload


@pytest.mark.parametrize("runtime", ["eager", "fused", "graphs"])
def test_gpu_decode_never_beats_its_bandwidth(runtime):
    g = gpu_estimate("llama-2-7b", "a100-80gb", "decode", seq=512, runtime=runtime)
    w = workload("llama-2-7b", "decode", context=512, quant="fp16")
    assert g["latency_s"] >= w.weight_bytes / (get_gpu("a100-80gb").bandwidth_gbps * 1e9)


def test_batch1_decode_of_a_small_model_is_launch_bound():
    eager = gpu_estimate("gpt2-medium", "a100-40gb", "decode", seq=512)
    graphs = gpu_estimate("gpt2-medium", "a100-40gb", "decode", seq=512, runtime="graphs")
    assert eager["bound"] == "launch" and eager["overhead_s"] > 5 * eager["roofline_s"]
    assert graphs["latency_s"] < eager["latency_s"] / 3
    assert eager["power_w"] < get_gpu("a100-40gb").tdp_w / 2


def test_long_prefill_is_compute_bound_and_scales():
    a = gpu_estimate("llama-2-7b", "h100-sxm", "prefill", seq=2048, runtime="fused")
    b = gpu_estimate("llama-2-7b", "h100-sxm", "prefill", seq=4096, runtime="fused")
    assert a["bound"] == "compute"
    assert 1.9 < b["latency_s"] / a["latency_s"] < 2.6
    m = get_model("llama-2-7b")
    assert a["latency_s"] >= 2 * workload(m, "prefill", seq=2048).macs / 989e12
