"""Catalogues of FPGAs (from the device catalogue, :mod:`llmloom.hw.devices`) and GPUs, each
figure with its source.

FPGA figures are the device's data-sheet resources (what the fabric has, not what a vendor shell
leaves free) and the off-chip memory and network of the usual board carrying it. GPU figures are
dense (no sparsity) tensor-core peaks from NVIDIA's data sheets. Figures marked *approximate* in
``source`` are recalled or derived rather than copied from a table; treat them as such.
"""

from __future__ import annotations

import dataclasses

from ..hw import devices as _dev
from .errors import unknown

__all__ = ["MemorySpec", "BlockRamSpec", "FpgaSpec", "GpuSpec", "FPGAS", "GPUS", "get_fpga",
           "get_gpu", "fpga_names", "gpu_names"]

# The FPGAs are the device catalogue's (``llmloom.hw.devices``): capacities, board memory and
# links, and the DSP packing rule hw's GEMM builds. Here are the ones perf models (those with a
# kernel clock) under perf's names for them.
MemorySpec = _dev.MemorySpec
BlockRamSpec = _dev.BlockRamSpec
FpgaSpec = _dev.Device

FPGAS = {n: d for n, d in _dev.DEVICES.items() if d.clock_mhz}


@dataclasses.dataclass(frozen=True, kw_only=True)
class GpuSpec:
    """A GPU for the roofline-plus-overhead model (dense tensor-core peaks, no sparsity)."""

    name: str
    fp16_tflops: float
    int8_tops: float
    bandwidth_gbps: float        # GB/s HBM/GDDR
    memory_gb: float
    tdp_w: float
    idle_w: float
    source: str


GPUS = {g.name: g for g in (
    GpuSpec(name="a100-40gb", fp16_tflops=312, int8_tops=624, bandwidth_gbps=1555,
            memory_gb=40, tdp_w=400, idle_w=55,
            source="NVIDIA A100 Tensor Core GPU data sheet (SXM4 40 GB): 312 TFLOPS FP16, 624 "
                   "TOPS INT8 (dense), 1,555 GB/s HBM2, 400 W TDP; idle power approximate"),
    GpuSpec(name="a100-80gb", fp16_tflops=312, int8_tops=624, bandwidth_gbps=2039,
            memory_gb=80, tdp_w=400, idle_w=60,
            source="NVIDIA A100 data sheet (SXM4 80 GB): 312 TFLOPS FP16, 624 TOPS INT8 "
                   "(dense), 2,039 GB/s HBM2e, 400 W; idle power approximate"),
    GpuSpec(name="h100-sxm", fp16_tflops=989, int8_tops=1979, bandwidth_gbps=3350,
            memory_gb=80, tdp_w=700, idle_w=70,
            source="NVIDIA H100 Tensor Core GPU data sheet (SXM5): 989 TFLOPS FP16, 1,979 TOPS "
                   "INT8 (dense; half the sparse figures), 3.35 TB/s HBM3, 700 W; idle "
                   "approximate"),
    GpuSpec(name="h200-sxm", fp16_tflops=989, int8_tops=1979, bandwidth_gbps=4800,
            memory_gb=141, tdp_w=700, idle_w=70,
            source="NVIDIA H200 Tensor Core GPU data sheet (SXM): 989 TFLOPS FP16, 1,979 TOPS "
                   "INT8 (dense; half the sparse figures), 4.8 TB/s HBM3e, 141 GB, up to 700 W; "
                   "idle approximate"),
    GpuSpec(name="rtx-4090", fp16_tflops=165.2, int8_tops=660.6, bandwidth_gbps=1008,
            memory_gb=24, tdp_w=450, idle_w=25,
            source="NVIDIA Ada Lovelace architecture whitepaper (RTX 4090): 165.2 TFLOPS FP16 "
                   "with FP32 accumulate, 660.6 TOPS INT8 (dense), 1,008 GB/s GDDR6X, 450 W; "
                   "idle approximate"),
)}

_GPU_ALIASES = {"a100": "a100-40gb", "h100": "h100-sxm", "h200": "h200-sxm", "4090": "rtx-4090",
                "rtx4090": "rtx-4090"}


def fpga_names():
    return sorted(FPGAS)


def gpu_names():
    return sorted(GPUS)


def get_fpga(name):
    """The FPGA called ``name`` (or an alias such as its part number)."""
    if isinstance(name, FpgaSpec):
        return name
    key = _dev.device_name(name)
    if key not in FPGAS:
        raise unknown("device", name, FPGAS)
    return FPGAS[key]


def get_gpu(name):
    """The GPU called ``name``."""
    if isinstance(name, GpuSpec):
        return name
    key = _GPU_ALIASES.get(name.lower(), name.lower())
    if key not in GPUS:
        raise unknown("gpu", name, GPUS)
    return GPUS[key]
