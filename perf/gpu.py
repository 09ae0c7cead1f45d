"""The GPU side: a roofline per kernel plus the per-kernel launch and dispatch overhead that
batch-1 decode suffers, with every constant stated and sourced.

For each operator, ``t_gpu = max(flops / (peak · e_c), bytes / (bw · e_m)) + t_launch``; the
host issues kernels at most one per ``t_dispatch``, so a kernel costs
``max(t_dispatch, t_gpu)`` (the CPU runs ahead while the GPU is busy, the GPU idles while the
CPU dispatches). A decode step adds one device-to-host synchronisation (reading the sampled
token). Short kernels therefore cost ``t_dispatch`` whatever the roofline says: the reason an
A100 decodes a small model far slower than its bandwidth allows.
"""

from __future__ import annotations

import dataclasses

from .devices import get_gpu
from .errors import unknown
from .models import get_model
from .workload import get_quant, layer_ops

__all__ = ["GpuRuntime", "RUNTIMES", "gpu_estimate", "COMPUTE_EFFICIENCY", "MEMORY_EFFICIENCY"]

# Achievable fractions of peak: large fp16/int8 GEMMs reach ~70% of tensor-core peak (cuBLAS
# on A100/H100 at sizes >= 1k, NVIDIA "Matrix Multiplication Background" guide); streaming
# kernels ~85% of HBM bandwidth (STREAM-like copies on A100 reach ~1.3-1.4 TB/s of 1.555).
# Both approximate.
COMPUTE_EFFICIENCY = 0.7
MEMORY_EFFICIENCY = 0.85


@dataclasses.dataclass(frozen=True, kw_only=True)
class GpuRuntime:
    """How a framework runs a layer: kernels per layer and their fixed costs.

    ``fitted`` names the measured rows (``perf/data/measured.json``) a constant was set from;
    those rows are not held out of the validation (``llmloom validate``)."""

    name: str
    extra_kernels: int          # non-GEMM kernels per layer (norms, copies, elementwise...)
    fused_qkv: bool             # Q, K, V as one GEMM
    fused_attention: bool       # Q·Kᵀ, softmax, ·V in one kernel (no l×l scores in memory)
    dispatch_s: float           # host time to issue one kernel
    launch_s: float             # GPU-side fixed cost per kernel (launch latency, ramp, tail)
    sync_s: float               # device-to-host synchronisation per decode step
    source: str
    fitted: tuple = ()


_EAGER_KERNELS = ("Hugging Face transformers in PyTorch eager mode: ~22 non-GEMM kernels per "
                  "GPT-2 block (2 layernorms, head split/merge copies, scale, mask, softmax, "
                  "residual adds, the tanh GELU as ~8 elementwise kernels), counted from "
                  "GPT2Block.forward, 29 kernels per layer in all; ~3 us GPU launch latency "
                  "(NVIDIA CUDA Graphs blog). ")

RUNTIMES = {r.name: r for r in (
    GpuRuntime(name="eager", extra_kernels=22, fused_qkv=True, fused_attention=False,
               dispatch_s=12.5e-6, launch_s=3e-6, sync_s=30e-6,
               source=_EAGER_KERNELS + "Host dispatch per op fitted: 12.5 us puts a decode "
                      "loop of model forwards with a KV cache (GPT-2 medium, fp16, A100) at "
                      "the measured 113-115 tok/s (PyTorch's tuning guide gives ~10 us of "
                      "Python/ATen dispatch per op as the order)",
               fitted=("a100-gpt2-medium-decode",)),
    GpuRuntime(name="fused", extra_kernels=4, fused_qkv=True, fused_attention=True,
               dispatch_s=4e-6, launch_s=3e-6, sync_s=20e-6,
               source="FasterTransformer/TensorRT-LLM-style fused kernels: fused QKV, fused "
                      "attention, fused bias+activation and add+norm, ~8 kernels per layer, "
                      "C++ launches; approximate, fitted to no measurement"),
    GpuRuntime(name="graphs", extra_kernels=4, fused_qkv=True, fused_attention=True,
               dispatch_s=0.0, launch_s=2e-6, sync_s=15e-6,
               source="fused kernels captured in a CUDA Graph: no host dispatch, ~2 us per "
                      "graph node (NVIDIA 'Getting Started with CUDA Graphs'); approximate, "
                      "fitted to no measurement"),
)}


def get_runtime(name):
    if isinstance(name, GpuRuntime):
        return name
    if name not in RUNTIMES:
        raise unknown("gpu runtime", name, RUNTIMES)
    return RUNTIMES[name]


def _kernels(model, mode, seq, context, batch, quant, runtime):
    """``[(name, flops, bytes)]`` of one layer as the GPU runs it."""
    q = get_quant(quant)
    abytes = 2 if q.gpu_compute == "fp16" else 1
    ops = {o.name: o for o in layer_ops(model, mode, seq=seq, context=context, batch=batch,
                                        quant=q)}
    out = []

    def gemm(name, opl):
        flops = sum(o.flops for o in opl)
        by = sum(o.weight_bytes + (o.m * o.k + o.m * o.n) * abytes for o in opl)
        out.append((name, flops, by))

    if runtime.fused_qkv:
        gemm("qkv", [ops["q"], ops["k"], ops["v"]])
    else:
        for k in ("q", "k", "v"):
            gemm(k, [ops[k]])
    qk, pv = ops["qk"], ops["pv"]
    kv = (qk.kv_bytes + pv.kv_bytes) if mode == "decode" else 0.0
    qkv_act = (qk.count * qk.m * qk.k) * abytes
    if runtime.fused_attention:
        out.append(("attention", qk.flops + pv.flops,
                    kv + 2 * qkv_act + (0 if mode == "decode" else
                                        2 * qk.count * qk.n * qk.k * abytes)))
    else:
        scores = qk.count * qk.m * qk.n * abytes
        kbytes = kv / 2 if mode == "decode" else qk.count * qk.n * qk.k * abytes
        out.append(("qk", qk.flops, qkv_act + kbytes + scores))
        out.append(("softmax", 0, 2 * scores))
        out.append(("pv", pv.flops, scores + kbytes + qkv_act))
    gemm("o", [ops["o"]])
    ffn_in = [ops["f1"]] + ([ops["fg"]] if "fg" in ops else [])
    gemm("f1", ffn_in)
    gemm("f2", [ops["f2"]])
    # the non-GEMM kernels each read and write about one activation tensor
    act = ops["norm1"].act_in_bytes / q.a_bits * 8 * abytes
    out.extend((f"elementwise{i}", 0, 2 * act) for i in range(runtime.extra_kernels))
    return out


def gpu_estimate(model, gpu, mode="decode", *, seq=512, context=None, batch=1, quant="fp16",
                 runtime="eager"):
    """Latency of one prefill or one decode step of ``model`` on ``gpu``.

    Parameters
    ----------
    model, gpu : str or spec
    mode : {"prefill", "decode"}
    seq, context, batch : int
        As in :func:`llmloom.perf.workload.layer_ops`; ``context`` defaults to ``seq``.
    quant : str
        ``fp16`` (the usual deployment), ``W8A8`` (int8 tensor cores; the weights as llama.cpp's
        Q8_0 holds them, group scales read too; ``W8A8-channel`` without), ``W4A16``...
    runtime : {"eager", "fused", "graphs"}

    Returns
    -------
    dict
        ``latency_s``, ``roofline_s`` (kernels alone, no overheads), ``overhead_s``,
        ``bound`` (``launch``, ``memory`` or ``compute``), ``power_w``, ``energy_j``,
        ``kernels_per_layer``, ``ops`` (per-layer ``[{name, flops, bytes, s}]``).
    """
    model, g, q, rt = get_model(model), get_gpu(gpu), get_quant(quant), get_runtime(runtime)
    if context is None:
        context = min(seq, model.max_positions - 1)
    peak = (g.int8_tops if q.gpu_compute == "int8" else g.fp16_tflops) * 1e12
    bw = g.bandwidth_gbps * 1e9
    kernels = _kernels(model, mode, seq, context, batch, q, rt)
    rows, total, roof, t_c, t_m = [], 0.0, 0.0, 0.0, 0.0
    for name, flops, by in kernels:
        tc = flops / (peak * COMPUTE_EFFICIENCY)
        tm = by / (bw * MEMORY_EFFICIENCY)
        t_gpu = max(tc, tm) + rt.launch_s
        t = max(rt.dispatch_s, t_gpu)
        rows.append({"name": name, "flops": flops, "bytes": by, "s": t})
        total += t
        roof += max(tc, tm)
        t_c += tc
        t_m += tm
    n = model.n_layers
    latency = n * total + (rt.sync_s if mode == "decode" else 0.0)
    roofline = n * roof
    overhead = latency - roofline
    bound = "launch" if overhead > roofline else ("compute" if t_c > t_m else "memory")
    busy = min(1.0, roofline / latency) if latency else 0.0
    power = g.idle_w + (g.tdp_w - g.idle_w) * busy
    return {"gpu": g.name, "runtime": rt.name, "quant": q.name, "mode": mode,
            "latency_s": latency, "roofline_s": roofline, "overhead_s": overhead,
            "bound": bound, "power_w": power, "energy_j": power * latency,
            "kernels_per_layer": len(kernels), "ops": rows}
