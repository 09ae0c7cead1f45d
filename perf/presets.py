"""The paper's published design points as presets (Chen et al., TRETS 2024, implementation
section, as condensed in ``shared/design/paper.md``), so anyone can see what the model
predicts for them and compare an explored design at the same DSP budget."""

from __future__ import annotations

import dataclasses

from .design import Design, KernelDesign
from .errors import unknown

__all__ = ["Preset", "PRESETS", "get_preset", "preset_names", "streamtensor_design",
           "STREAMTENSOR_LINEAR_COLS", "STREAMTENSOR_FIT_ROW"]

_SRC = ("H. Chen et al., 'Understanding the Potential of FPGA-Based Spatial Acceleration for "
        "Large Language Model Inference', ACM TRETS 2024 (arXiv 2312.15159), implementation "
        "section")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Preset:
    """A design with the model, device and lengths it was published for."""

    name: str
    model: str
    device: str
    seq: int
    design: Design
    notes: str


_ST_SRC = ("H. Ye and D. Chen, 'StreamTensor: Make Tensors Stream in Dataflow Accelerators for "
           "LLMs', MICRO 2025 (arXiv 2509.13694): GPT-2 (and Qwen, Llama, Gemma) compiled from "
           "PyTorch to stream dataflow on an Alveo U55C (Table 6: 250 MHz, W4A8, 16 GB HBM at "
           "460 GB/s, 41 MB on chip); one transformer block fused on the FPGA and invoked once "
           "per layer with that layer's weights (section 6.1); its tiling space raises the "
           "unroll factor of the slowest kernel until a total unroll budget is spent, "
           "balancing the kernels' latencies (section 5.1)")


def _paper_design(name, *, clock_mhz, quant, decode_kernel, weight_buffer="tile",
                  proj_cols=16, ffn_cols=16, stream_order="tile", source=_SRC):
    # Linear kernels: 8xN output-stationary arrays, DSP packing 2; the paper's are all 8x16
    # (256 MACs/cycle); attention Q.K^T and .V: 8x8 int8 arrays without packing. Each weight
    # matrix streams from its own HBM channel; the two attention kernels get one channel each
    # for the KV cache in decode (the paper does not say; one is the least it can have).
    proj = KernelDesign(rows=8, cols=proj_cols, packing=2, channels=1)
    ffn = KernelDesign(rows=8, cols=ffn_cols, packing=2, channels=1)
    att = KernelDesign(rows=8, cols=8, packing=1, channels=1)
    kernels = {k: proj for k in ("q", "k", "v", "o")}
    kernels.update(f1=ffn, f2=ffn, qk=att, pv=att)
    # One layer in three regions, one per SLR: SLR0 Q/K/V; SLR1 attention, output projection,
    # residual and layernorm; SLR2 FFN1, GELU (the act unit), FFN2, residual, layernorm.
    regions = {"q": "SLR0", "k": "SLR0", "v": "SLR0", "qk": "SLR1", "softmax": "SLR1",
               "pv": "SLR1", "o": "SLR1", "f1": "SLR2", "act": "SLR2", "f2": "SLR2"}
    return Design(name=name, clock_mhz=clock_mhz, quant=quant, token_tile=8, kernels=kernels,
                  lanes={"softmax": 8, "norm": 8, "act": 16}, layers_on_chip=1,
                  weights="stream", decode_kernel=decode_kernel, double_buffer=True,
                  weight_buffer=weight_buffer, stream_order=stream_order,
                  regions=regions, source=source)


#: The measured row StreamTensor's one unpublished number (:data:`STREAMTENSOR_LINEAR_COLS`)
#: is fitted to (``perf/data/measured.json``; the row is not held out, the others are).
STREAMTENSOR_FIT_ROW = "streamtensor-gpt2-medium-u55c-ttft-256"
#: DSP columns of each StreamTensor projection array (8 rows, packing 2; the FFN arrays 4x as
#: many columns, their matrices being 4x larger): its MAC total is not published. Fitted by
#: :func:`llmloom.perf.validate.fit` over 1..16 to :data:`STREAMTENSOR_FIT_ROW` (the longest
#: prompt, where the MACs set the time): 12, i.e. 2,304 linear MACs per cycle (1,152 DSPs);
#: ``tests/perf/test_perf_validate.py`` re-runs the fit and holds this value to it.
STREAMTENSOR_LINEAR_COLS = 12


def streamtensor_design(linear_cols=STREAMTENSOR_LINEAR_COLS):
    """StreamTensor's GPT-2 medium block on a U55C as its publication allows (preset
    ``streamtensor-gpt2-u55c``), with ``linear_cols`` DSP columns per projection array (4x
    that per FFN array)."""
    return _paper_design("streamtensor-gpt2-u55c", clock_mhz=250, quant="W4A8-channel",
                         decode_kernel="gemv", weight_buffer="layer", proj_cols=linear_cols,
                         ffn_cols=4 * linear_cols, stream_order="production",
                         source=_ST_SRC)


PRESETS = {p.name: p for p in (
    Preset(name="chen2024-bert-u280", model="bert-base", device="u280", seq=512,
           design=_paper_design("chen2024-bert-u280", clock_mhz=245, quant="W4A8-channel",
                                decode_kernel="gemm"),
           notes="BERT-base on Alveo U280, W4A8, 245 MHz, token tiles of 8 rows; encoder: "
                 "prefill only"),
    Preset(name="chen2024-gpt2-u280", model="gpt2-medium", device="u280", seq=512,
           design=_paper_design("chen2024-gpt2-u280", clock_mhz=250, quant="W8A8-channel",
                                decode_kernel="gemv", weight_buffer="layer"),
           notes="GPT-2 medium (d=1024, 24 layers) on Alveo U280, W8A8, 250 MHz; decode with "
                 "the library's GEMV engines of the same MAC count. Assumed (the paper does "
                 "not say): each kernel's weights stream into a FIFO one layer deep (URAM; "
                 "271 of SLR2's 320 at W8A8), so every kernel fetches its next layer's "
                 "matrix while the others compute. The decode measured on the board (204 "
                 "tok/s, the paper's 1.10x DFX's 185.19) is the group's W4A8 figure: run it "
                 "with --quant W4A8-channel (validate does)"),
    Preset(name="streamtensor-gpt2-u55c", model="gpt2-medium", device="u55c", seq=32,
           design=streamtensor_design(),
           notes="StreamTensor's GPT-2 medium on an Alveo U55C as its publication allows. "
                 "Published (Table 6, section 6.1): 250 MHz, W4A8, the U55C's HBM2 (460 GB/s; "
                 "the U280's 32 channels), one transformer block fused on chip and run once "
                 "per layer (layers_on_chip 1, the host triggering each layer). Its kernels "
                 "forward intermediate tiles to each other through on-chip FIFOs; each "
                 "stream's iteration order and tiling is typed (its itensor type), so the "
                 "compiler checks every producer-consumer pair and inserts a layout converter "
                 "only where the orders differ, and its tiling space permutes loops: the "
                 "linear kernels read their inputs in the order they are produced "
                 "(stream_order 'production', each keeping a token tile's partial sums). Its "
                 "exploration balances kernel latencies (section 5.1), so each linear "
                 "kernel's MACs follow its work (FFN arrays 4x the projections'). Attention "
                 "waits for the prompt's whole K and V (kv_sync 'layer'): the PyTorch graph it "
                 "compiles computes a masked softmax over every key, and the publication does "
                 "not say its attention skips the masked ones. Not published (no DSP count, "
                 "tiling or per-kernel unroll in the paper): the MAC total, fitted to the "
                 "256-token TTFT (STREAMTENSOR_LINEAR_COLS: 8x12x2 per projection, 8x48x2 per "
                 "FFN matrix, 2,304 linear MACs per cycle); 8x8 attention arrays, 8-token "
                 "tiles, one HBM channel and a layer-deep FIFO per weight matrix, no host time "
                 "per layer (Table 4's TTFT has no fixed part to speak of)"),
)}


def preset_names():
    return sorted(PRESETS)


def get_preset(name):
    if name not in PRESETS:
        raise unknown("preset", name, PRESETS)
    return PRESETS[name]
