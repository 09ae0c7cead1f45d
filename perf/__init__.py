"""The analytical framework: prefill and decode latency, resources and design-space exploration
of spatial LLM accelerators on one or many FPGAs, against GPUs (README.md in this folder)."""

from .design import Design, KernelDesign, load_design, save_design
from .devices import FPGAS, GPUS, FpgaSpec, GpuSpec, get_fpga, get_gpu
from .errors import ConfigError, ConstraintError, UnknownNameError, UntimedError
from .estimate import compare, estimate, parallel_splits
from .explore import ExploreResult, explore
from .gpu import RUNTIMES, gpu_estimate
from .models import MODELS, ModelSpec, get_model, load_hf_config
from .presets import PRESETS, get_preset
from .spatial import DesignBatch, evaluate, make_context
from .workload import QUANTS, Op, Workload, get_quant, layer_ops, layer_quant, workload

__all__ = [
    "Design", "KernelDesign", "load_design", "save_design",
    "FPGAS", "GPUS", "FpgaSpec", "GpuSpec", "get_fpga", "get_gpu",
    "ConfigError", "ConstraintError", "UnknownNameError", "UntimedError",
    "compare", "estimate", "parallel_splits", "ExploreResult", "explore",
    "RUNTIMES", "gpu_estimate", "MODELS", "ModelSpec", "get_model", "load_hf_config",
    "PRESETS", "get_preset", "DesignBatch", "evaluate", "make_context",
    "QUANTS", "Op", "Workload", "get_quant", "layer_ops", "layer_quant", "workload",
]
