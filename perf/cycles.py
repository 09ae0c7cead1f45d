"""Cycle predictions for each ``hw`` block from its config and tensor shapes.

This is the cross-check hook: tests in ``tests/perf`` hold these numbers against the cycles the
RTL takes in simulation. The spatial model of a whole layer is built on them. Single blocks
have closed forms here; attention and the composed layers (``gpt2-block``, ``bert-layer``,
``llama-block``) use the beat-level pipeline model of :mod:`llmloom.perf.pipeline`, whose stages
reproduce these closed forms in isolation.
"""

from __future__ import annotations

import numpy as np

from .errors import UntimedError

__all__ = ["gemm_cycles", "BLOCK_CYCLES", "BLOCK_TIMING", "predicts", "gearbox_span",
           "attention_cycles", "layer_timing", "gpt2_block_cycles", "bert_layer_cycles"]

#: block name → function(cfg, *shape_args) → cycles (shape_args from the block's harness)
BLOCK_CYCLES = {}
#: block name → function(cfg, *shape_args) → :class:`llmloom.perf.pipeline.LayerTiming`, for
#: blocks with per-tensor and per-stage figures (the composed layers)
BLOCK_TIMING = {}


def predicts(name):
    """Register a block's cycle prediction under the block's name."""
    def register(fn):
        BLOCK_CYCLES[name] = fn
        return fn
    return register



@predicts("gemm")
def gemm_cycles(cfg, m):
    """Cycles of :class:`~llmloom.hw.blocks.gemm.Gemm` for an ``m``×k by k×n product, from the
    first activation beat accepted to the last output beat, with weights preloaded, inputs
    offered every cycle and the output always ready: the config's own
    :meth:`~llmloom.hw.blocks.gemm_config.GemmConfig.cycles` (the closed form, which
    :mod:`.kernels` evaluates over arrays of designs, is there)."""
    return cfg.cycles(m)


@predicts("gemv")
def gemv_cycles(cfg, m):
    """Cycles of :class:`~llmloom.hw.blocks.gemv.Gemv` for ``m`` token rows (first activation
    beat accepted to last output beat; weights preloaded, input every cycle, output ready):
    :meth:`~llmloom.hw.blocks.gemv.GemvConfig.cycles`."""
    return cfg.cycles(m)



@predicts("requant")
def requant_cycles(cfg, rows):
    """Cycles of :class:`~llmloom.hw.blocks.requant.Requant` on ``rows`` rows (stall-free):
    :meth:`~llmloom.hw.blocks.requant.EltwiseTiming.cycles`, as for every element-wise kernel
    (one beat per cycle through ``cfg.latency`` registered stages)."""
    return cfg.cycles(rows)


@predicts("residual")
def residual_cycles(cfg, rows):
    """Cycles of :class:`~llmloom.hw.blocks.residual.Residual` on ``rows`` rows (stall-free,
    both inputs offered every cycle)."""
    return cfg.cycles(rows)


@predicts("gelu")
def gelu_cycles(cfg, rows):
    """Cycles of :class:`~llmloom.hw.blocks.activation.Gelu` on ``rows`` rows (stall-free)."""
    return cfg.cycles(rows)


@predicts("silu")
def silu_cycles(cfg, rows):
    """Cycles of :class:`~llmloom.hw.blocks.activation.Silu` on ``rows`` rows (stall-free)."""
    return cfg.cycles(rows)


def row_kernel_cycles(cfg, rows):
    """Cycles of a row-reduction kernel (:mod:`llmloom.hw.blocks.rowkernel`: softmax, dynquant,
    layernorm, rmsnorm) on ``rows`` rows, from the first input beat accepted to the last output
    beat, inputs offered every cycle, output always ready:
    :meth:`~llmloom.hw.blocks.rowkernel.RowKernelConfig.cycles`."""
    return cfg.cycles(rows)


@predicts("softmax")
def softmax_cycles(cfg, rows):
    """Cycles of :class:`~llmloom.hw.blocks.softmax.Softmax` (see :func:`row_kernel_cycles`)."""
    return row_kernel_cycles(cfg, rows)


@predicts("layernorm")
def layernorm_cycles(cfg, rows):
    """Cycles of :class:`~llmloom.hw.blocks.norm.Norm` as layernorm."""
    return row_kernel_cycles(cfg, rows)


@predicts("rmsnorm")
def rmsnorm_cycles(cfg, rows):
    """Cycles of :class:`~llmloom.hw.blocks.norm.Norm` as rmsnorm."""
    return row_kernel_cycles(cfg, rows)


@predicts("dynquant")
def dynquant_cycles(cfg, rows):
    """Cycles of :class:`~llmloom.hw.blocks.dynquant.DynQuant` (see :func:`row_kernel_cycles`;
    each row's exponent leaves before its last beat)."""
    return row_kernel_cycles(cfg, rows)


@predicts("kvcache")
def kvcache_cycles(cfg, requests):
    """Cycles of :class:`~llmloom.hw.blocks.kvcache.KvCache` for ``requests`` back-to-back
    head readouts (first request taken to last beat out; outputs always ready). K_hᵀ and V_h
    stream out in parallel, one word per cycle each, two cycles after the request (read port,
    output register); the next request is taken one cycle after the longer readout's last
    read."""
    if requests < 1:
        raise ValueError(f"requests={requests} must be >= 1")
    return requests * (max(cfg.kt_beats, cfg.vh_beats) + 1) + 1


def kvcache_append_cycles(cfg, rows):
    """Cycles to append ``rows`` positions to the KV cache (K and V offered every cycle):
    a K beat per cycle, a V row in ``v_row_cycles`` (one per segment)."""
    return rows * cfg.row_cycles


def gearbox_span(beats, in_lanes, out_lanes):
    """Cycles from a :class:`~llmloom.hw.stream.Gearbox`'s first input beat (of ``beats``
    offered back to back, output always ready) to its last output beat (a wire: 0 for one
    beat)."""
    if in_lanes == out_lanes:
        return beats - 1                       # a wire
    if in_lanes > out_lanes:
        return beats * (in_lanes // out_lanes) + 1
    return beats                               # widening: one register after the last


@predicts("attention")
def attention_cycles(cfg, rows):
    """Cycles of :class:`~llmloom.hw.blocks.attention.Attention` for one tensor of ``rows``
    query rows (a prefill chunk or, with ``rows = 1``, a decode step; the position does not
    change the count), from the first input beat to the last output beat, inputs offered
    every cycle and the output always ready.

    The pipeline model :func:`llmloom.perf.pipeline.attention`: the input phase (K, V
    appended at the cache's rate, Q buffered), then per head the cache readout (the longer of
    K_hᵀ and V_h) and the Q_h rows through Q·Kᵀ, the score gearbox and requant, the softmax,
    P·V, the output gearbox and requant, beat by beat — so P·V's token tiles overlap the
    softmax's later rows and the Q·Kᵀ tiles as in the RTL — then the output phase. Exact for
    every chunk size (``tests/perf/test_cycles_attention.py``: decode steps, chunks of one
    token tile and of several, every gearbox ratio; also a 40-row chunk on 8×8 arrays with
    d_model 64, 4 heads, seq 64: 4,899 cycles, where the former sum of the phases said 5,923).
    """
    from .pipeline import attention

    if rows < 1:
        raise ValueError(f"rows={rows} must be >= 1")
    beats = np.arange(rows * cfg.d_model // cfg.lanes, dtype=np.int64)
    return int(attention(beats, beats, beats, cfg)[-1]) + 1


def layer_timing(cfg, sizes):
    """:class:`llmloom.perf.pipeline.LayerTiming` of a run of a GPT-2 block or BERT layer
    (:class:`~llmloom.hw.layers.config.LayerConfig`) on tensors of ``sizes`` rows — a prefill
    chunk, then decode steps — each gated on the previous one's output: per-tensor cycles and
    per-stage MACs, peak MACs/cycle, busy cycles, utilisation and the bottleneck."""
    from .pipeline import layer_timing as timing
    return timing(cfg, sizes)


BLOCK_TIMING["gpt2-block"] = BLOCK_TIMING["bert-layer"] = BLOCK_TIMING["llama-block"] = \
    layer_timing


@predicts("gpt2-block")
def gpt2_block_cycles(cfg, sizes):
    """Cycles of a run of :class:`~llmloom.hw.layers.layer.Gpt2Block` on tensors of ``sizes``
    rows (``(l,)`` for a prefill of l rows; ``(p, 1, 1, ...)`` for a prefill then decode
    steps), each tensor offered once the previous one's output is out: the sum of the
    tensors' cycles, as the simulation counts them (first input beat to last output beat).
    See :func:`layer_timing` for the per-tensor and per-stage figures."""
    return layer_timing(cfg, sizes).cycles


@predicts("bert-layer")
def bert_layer_cycles(cfg, sizes):
    """Cycles of :class:`~llmloom.hw.layers.layer.BertLayer` on tensors of ``sizes`` rows (one
    sentence of 1..``seq`` rows per run: the arrays span ``seq`` keys whatever its length); see
    :func:`gpt2_block_cycles`."""
    return layer_timing(cfg, sizes).cycles


@predicts("llama-block")
def llama_layer_cycles(cfg, sizes):
    """Cycles of the LLaMA-class layer (``arch="llama"``) on tensors of ``sizes`` rows, as
    :func:`gpt2_block_cycles` (RoPE and the product are element-wise stages of their blocks'
    latencies)."""
    return layer_timing(cfg, sizes).cycles


def axi_read_cycles(reader, addr, nbytes, latency):
    """Cycles of :class:`~llmloom.hw.blocks.axi_reader.AxiReader` (config ``reader``) to
    stream ``nbytes`` from byte address ``addr`` off a memory of ``latency`` cycles (AR
    transfer to the burst's first beat), from the command's transfer to the last output
    beat, inclusive, output always ready: the config's own
    :meth:`~llmloom.hw.blocks.axi_reader.AxiReaderConfig.cycles` (exact against cocotbext-axi's
    slave, ``tests/sim/test_axi_reader_hdl.py``)."""
    return reader.cycles(addr, nbytes, latency)


def weight_fetch_cycles(cfg, reader, latency):
    """``{stage: cycles}`` to fetch each linear stage's sections of the layer's weight image
    (:func:`~llmloom.hw.layers.weights_image.image_layout`: weights, per-channel multipliers,
    biases) through ``reader``, one command per section, offered back to back, every engine
    ready to take its beats (:meth:`~llmloom.hw.blocks.axi_reader.AxiReaderConfig.
    sequence_cycles`). ``cfg`` is a :class:`~llmloom.hw.layers.config.LayerConfig`."""
    from ..hw.layers.weights_image import image_layout

    stages = {}
    for sec in image_layout(cfg):
        stages.setdefault(sec.stage, []).append((sec.offset, sec.nbytes))
    return {stage: reader.sequence_cycles(cmds, latency) for stage, cmds in stages.items()}


def layer_fetch_cycles(cfg, reader, latency):
    """Cycles to fetch a layer's whole weight image through ``reader``, its sections as
    commands back to back (consecutive commands' bursts overlap, so this is less than the sum
    of :func:`weight_fetch_cycles`)."""
    from ..hw.layers.weights_image import image_layout

    return reader.sequence_cycles([(s.offset, s.nbytes) for s in image_layout(cfg)], latency)


__all__ += ["axi_read_cycles", "weight_fetch_cycles", "layer_fetch_cycles"]


def fetched_linear_cycles(cfg, name, reader, latency, rows, base=0, weight_banks=1):
    """Cycles of one run of :class:`~llmloom.hw.layers.fetched.FetchedLinear` on ``rows``
    activation rows, from the command's transfer to the last output beat, inclusive: the
    activations offered every cycle from the command on, the output always ready, a memory of
    ``latency`` cycles (:func:`llmloom.perf.pipeline.fetched_linear`, which says what
    overlaps). Exact against the RTL (``tests/sim/test_fetched_linear_hdl.py``)."""
    from .pipeline import fetched_linear

    beats = rows * cfg.linear(name).k_beats
    return int(fetched_linear(np.zeros(beats, dtype=np.int64), cfg, name, reader, latency,
                              base, weight_banks=weight_banks)[-1]) + 1


def fetched_linear_span(cfg, name, reader, latency, rows, bases, weight_banks=1):
    """Cycles of a stream of runs of :class:`~llmloom.hw.layers.fetched.FetchedLinear`, one
    per image base in ``bases`` (say, the stage of each layer in turn), each on ``rows``
    rows, commands and activations offered as soon as taken, the output always ready: from
    the first command's transfer to the last output beat, inclusive.

    One weight bank: the runs one after the other, each :func:`fetched_linear_cycles` (the
    next command is taken the cycle after the last output beat): exact.

    Two banks: run l+1's weights stream into the other bank while run l computes, so after
    the first run each run adds the longer of (a) its fetch, the reader's time for its four
    commands in the stream of all runs' commands (its bursts overlapping the previous run's
    data), and (b) the stage's own time per tensor: the array's steps (``n_tiles ·
    tile_steps`` per token tile, then the flush) or its output beats (``rows · beats``),
    whichever is longer (the re-quantiser's numbers are double-buffered too). A steady-state
    argument rather than a beat-level walk: it equals the RTL's cycles on the fetch-bound and
    stage-bound streams the tests measure (``tests/sim/test_fetched_linear_hdl.py``), but is
    2 % short where the reader waits while a bus word of constants leaves as several load
    beats (more int32 a word than ``lanes``), which the reader's timeline does not count."""
    bases = list(bases)
    first = fetched_linear_cycles(cfg, name, reader, latency, rows, bases[0], weight_banks)
    if weight_banks == 1:
        return first + sum(fetched_linear_cycles(cfg, name, reader, latency, rows, b)
                           for b in bases[1:])
    from ..hw.layers.fetched import fetch_commands

    g, rq = cfg.linear(name), cfg.requant(name)
    tiles = -(-rows // g.rows) if cfg.engine == "gemm" else rows
    steps = tiles * g.n_tiles * g.tile_steps + g.flush_steps
    stage = max(steps, rows * rq.beats)
    cmds, fetched = [], []
    for b in bases:
        cmds += fetch_commands(cfg, name, b)
        fetched.append(reader.sequence_cycles(cmds, latency))
    return first + sum(max(f1 - f0, stage) for f0, f1 in zip(fetched[:-1], fetched[1:],
                                                             strict=True))


__all__ += ["fetched_linear_cycles", "fetched_linear_span"]



def fetched_layer_cycles(cfg, reader, latency, sizes, base=0):
    """Per tensor of ``sizes`` rows (a prefill chunk, then decode steps of one layer's
    sequence), the cycles of a run of :class:`~llmloom.hw.layers.fetched.FetchedLayer` with
    the layer's image at ``base``, each command without a prefetch: from the command's
    transfer to the tensor's last output beat, inclusive (:func:`fetched_layer_runs`, where
    nothing overlaps: the whole image fetched, then the tensor)."""
    return fetched_layer_runs(cfg, reader, latency, sizes, [(base, 0)] * len(sizes))


def fetched_layer_runs(cfg, reader, latency, sizes, runs, *, kv_base=None):
    """Per run, the cycles of a stream of runs of
    :class:`~llmloom.hw.layers.fetched.FetchedLayer`, as its harness gives them
    (:class:`~llmloom.sim.fetched.FetchedLayerHarness`): ``sizes`` the tensors' rows,
    ``runs`` their commands, ``(image base, layer)`` or ``(image base, layer, next)`` (the
    image the command prefetches, or ``None``; two banks). From each command's transfer to
    its tensor's last output beat, inclusive; a command offered the cycle after the previous
    tensor's last output beat (the first at cycle 0), the rows from the command on, the
    output always ready, a memory of ``latency`` cycles.

    The reader's commands are one stream (:meth:`~llmloom.hw.blocks.axi_reader.
    AxiReaderConfig.timeline`): a run's whole image (:func:`~llmloom.hw.layers.
    weights_image.fetched_layer_layout`), or, when the run before prefetched it, only its
    ``constants`` section (the linear sections are in the other banks already), the first
    offered the cycle after the layer's command and taken once the reader has issued what
    is before it; then, with ``next``, that image's linear sections back to back, which
    overlap this run's tensor. 2 cycles after the constants' last beat their last word is
    written (the packer's register, the loader's), 1 more and the input opens, then the
    tensor as a layer with its numbers on chip (:func:`layer_timing`, each layer's tensors
    in turn). A 32-bit bus (one 32-bit chunk a beat; a wider one narrows the constants
    section into chunks and holds the reader meanwhile). Exact against the RTL
    (``tests/sim/test_fetched_verilator.py``).

    ``kv_base``: the KV cache in AXI memory (``kv="axi"``), the regions from there
    (:func:`~llmloom.hw.layers.fetched.kv_region`): a run of a layer holding ``p > 0``
    positions reads their rows (``p·spill_bytes`` from its region) right after its constants,
    and its input opens the cycle after their last beat (if later than the constants'); the
    new rows' write-back runs beside the tensor on the write channels and is taken to end
    before its last output beat (it does when the write latency is shorter than the heads
    phase: one row's spill is ``spill_beats`` beats)."""
    from ..hw.layers.fetched import kv_cache_config, kv_region, prefetched_runs
    from ..hw.layers.weights_image import fetched_layer_layout

    if reader.lanes != 4:
        raise UntimedError(f"data_width={reader.data_width} is not timed; allowed: 32 (the "
                           "model times a 32-bit bus)")
    if len(sizes) != len(runs):
        raise ValueError(f"{len(runs)} commands for {len(sizes)} tensors")
    runs = prefetched_runs(runs, 2)
    mine = {}
    for size, (_, layer, _) in zip(sizes, runs, strict=True):
        mine.setdefault(layer, []).append(size)
    compute = {layer: iter(layer_timing(cfg, s).tensor_cycles) for layer, s in mine.items()}
    layout = fetched_layer_layout(cfg)
    row = kv_cache_config(cfg).spill_bytes if kv_base is not None else 0
    pos = {}
    cmds, offered, out, start, ahead = [], [], [], 0, False
    for size, (base, layer, nxt) in zip(sizes, runs, strict=True):
        secs = layout[-1:] if ahead else layout
        cmds += [(base + s.offset, s.nbytes) for s in secs]
        offered += [start + 1] + [0] * (len(secs) - 1)
        constants = rows = len(cmds) - 1
        if row and pos.get(layer, 0):
            cmds.append((kv_region(cfg, kv_base, layer), pos[layer] * row))
            offered.append(0)
            rows = len(cmds) - 1
        if nxt is not None:
            cmds += [(nxt + s.offset, s.nbytes) for s in layout[:-1]]
            offered += [0] * (len(layout) - 1)
        tl = reader.timeline(cmds, latency, offered)
        opened = max(tl[constants][1] + 2, tl[rows][1]) if rows != constants \
            else tl[constants][1] + 2
        end = opened + next(compute[layer])
        out.append(end - start + 1)
        start, ahead = end + 1, nxt is not None
        pos[layer] = pos.get(layer, 0) + size
    return out


__all__ += ["fetched_layer_cycles", "fetched_layer_runs"]
