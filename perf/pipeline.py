"""Beat-level timing of the ``hw`` blocks composed into pipelines: attention and whole layers.

Every stream is an array of per-beat times: the cycle in which each beat is first offered
(``valid``). A stage maps its input's offer times to the cycles in which it takes each beat
(its own acceptance rule: one beat per cycle, a free activation bank, a cache write slot...)
and from those to the offer times of its output beats. The rules are max-plus recurrences,
e.g. a stage of initiation interval 1 and latency ``L`` takes beat ``i`` at
``t_i = max(a_i, t_{i−1} + 1)``, vectorised as ``maximum.accumulate(a − i) + i``, and offers it
at ``t_i + L``; the GEMM's token tiles, output banks and flush are walked tile by tile.

The constants are the blocks' own (their configs and the timing their docstrings state). Fed
with back-to-back input and an always-ready output, each stage reproduces its block's exact
prediction in :mod:`llmloom.perf.cycles` (``tests/perf/test_pipeline_model.py`` holds them
equal). The composition equals the RTL's cycles for attention at every chunk size
(``tests/perf/test_cycles_attention.py``) and, on every layer run measured so far, for the
GPT-2 block and the BERT layer too, per tensor (``tests/perf/test_cycles_layer.py``, which
holds the 2 % the issue aims at; perf/README.md lists the runs).

What the model leaves out: backpressure between stages. A stage that cannot take a beat
delays that beat (its transfer is ``max(offer, ready)``), but the producer is assumed to keep
offering the following beats on time; in the RTL a blocked producer may fill its own buffers
and come back with a bubble (a row kernel whose row buffer filled needs the rest of the next
row before it can emit it). Queues sized by the layer (its bypasses) never block.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq

import numpy as np

__all__ = ["NEVER", "QUEUE_LATENCY", "StageFigures", "Trace", "ii_stage", "eltwise", "join",
           "gearbox", "gearbox_ii", "row_kernel", "row_kernel_of", "gemm", "gemv", "linear",
           "fetched_linear",
           "kv_append", "attention", "LayerTiming", "layer_tensor", "layer_timing"]

#: "no constraint": earlier than any cycle
NEVER = -(1 << 60)
#: Latency of :class:`~llmloom.hw.stream.Queue` (the layers' bypasses): its FIFO's output is
#: registered.
QUEUE_LATENCY = 2


# ---- bookkeeping of what each stage did ---------------------------------------------------
@dataclasses.dataclass
class StageFigures:
    """What one stage did over a run: useful multiply-accumulates, its peak rate and the
    cycles it was working (array steps for a GEMM or GEMV, beats for a stream kernel)."""

    name: str
    macs: int = 0
    peak_macs_per_cycle: int = 0
    busy_cycles: int = 0

    def as_dict(self, cycles):
        """Figures for a run of ``cycles``: ``utilisation`` is the busy fraction,
        ``mac_utilisation`` the MACs over the peak (``None`` for stages without MACs)."""
        return {"name": self.name, "macs": self.macs,
                "peak_macs_per_cycle": self.peak_macs_per_cycle,
                "busy_cycles": self.busy_cycles,
                "utilisation": self.busy_cycles / cycles if cycles else 0.0,
                "mac_utilisation": (self.macs / (self.peak_macs_per_cycle * cycles)
                                    if self.peak_macs_per_cycle and cycles else None)}


class Trace:
    """Accumulates :class:`StageFigures` by stage name (in first-seen order)."""

    def __init__(self):
        self.stages = {}

    def add(self, name, *, macs=0, peak=0, busy=0):
        st = self.stages.setdefault(name, StageFigures(name))
        st.macs += int(macs)
        st.peak_macs_per_cycle = max(st.peak_macs_per_cycle, int(peak))
        st.busy_cycles += int(busy)


def _add(trace, name, **kw):
    if trace is not None and name:
        trace.add(name, **kw)


# ---- stream stages --------------------------------------------------------------------------
def ii_stage(a, ii=1):
    """Cycles in which a stage that takes one beat every ``ii`` cycles at most takes beats
    offered at ``a``: ``t_i = max(a_i, t_{i−1} + ii)``."""
    a = np.asarray(a, dtype=np.int64)
    i = np.arange(len(a), dtype=np.int64) * ii
    return np.maximum.accumulate(a - i) + i


def eltwise(a, latency, trace=None, name=None):
    """An element-wise kernel (requant, residual, GELU, SiLU, the product; RoPE, whose table
    read is one of its stages): II = 1, output ``latency`` cycles after the input transfer
    (``hw.blocks.requant.EltwiseTiming``, ``RopeConfig.cycles_np``)."""
    t = ii_stage(a)
    _add(trace, name, busy=len(t))
    return t + latency


def join(*streams):
    """Offer times of a stage that takes a beat from each input in the same cycle (the
    residual add, the product): every input's beat must be there."""
    return np.maximum.reduce([np.asarray(s, dtype=np.int64) for s in streams])


def gearbox(u, in_lanes, out_lanes):
    """A :class:`~llmloom.hw.stream.Gearbox`: output offer times from the cycles ``u`` in
    which it took its input beats (see :func:`gearbox_ii` for when it can take them).

    Widening by r: one output beat a cycle after the last of every r inputs. Narrowing by r:
    an input beat leaves as r beats on the r cycles from two after it was taken.
    """
    u = np.asarray(u, dtype=np.int64)
    if in_lanes == out_lanes:
        return u
    if out_lanes > in_lanes:
        r = out_lanes // in_lanes
        return u[r - 1::r] + 1
    r = in_lanes // out_lanes
    return (u[:, None] + 2 + np.arange(r, dtype=np.int64)[None, :]).ravel()


def gearbox_ii(in_lanes, out_lanes):
    """Cycles between the beats a gearbox takes when its output is always ready: ``r`` when
    it narrows by r (it emits r beats per input), else 1."""
    return in_lanes // out_lanes if in_lanes > out_lanes else 1


def row_kernel(a, beats, gap, emit_stages, trace=None, name=None):
    """A row-reduction kernel (softmax, layernorm, rmsnorm; :mod:`~llmloom.hw.blocks.rowkernel`)
    on rows of ``beats`` beats offered at ``a``, output always ready.

    The input never waits (II = 1). Row r's first beat is read ``gap`` cycles after its last
    beat was taken, or right after row r−1's last beat was read, and each beat leaves
    ``emit_stages + 2`` cycles after its read.
    """
    t = ii_stage(a)
    rows = len(t) // beats
    last_in = t[beats - 1::beats]
    r = np.arange(rows, dtype=np.int64) * beats
    start = np.maximum.accumulate(last_in + gap - r) + r
    _add(trace, name, busy=len(t))
    return (start[:, None] + np.arange(beats, dtype=np.int64)[None, :]
            + emit_stages + 2).ravel()


def row_kernel_of(cfg):
    """``(beats, gap, emit_stages)`` of a row kernel config."""
    return cfg.beats, cfg.gap, cfg.EMIT_STAGES


# ---- the systolic GEMM ----------------------------------------------------------------------
class _Steps:
    """The array's step clock: runs of consecutive steps, each starting at a cycle. A run
    begins where the array waited (for input, or for an output bank) before a step."""

    def __init__(self):
        self.step0, self.cycle0 = [], []
        self.steps = 0          # steps laid out so far

    def start_run(self, step, cycle):
        if self.step0 and self.step0[-1] == step:
            self.cycle0[-1] = cycle
        else:
            self.step0.append(step)
            self.cycle0.append(cycle)

    def cycle(self, step):
        k = bisect.bisect_right(self.step0, step) - 1
        return self.cycle0[k] + step - self.step0[k]


def gemm(a, cfg, drain_ii=1, trace=None, name=None, start_at=NEVER):
    """:class:`~llmloom.hw.blocks.gemm.Gemm` (weights loaded) on activation beats offered at
    ``a`` (``m`` rows of ``k_beats``); returns the cycles in which its output beats (``n_tiles``
    per row) are taken by a consumer that takes one every ``drain_ii`` cycles at most.

    Input: token tile T (``rows`` rows, fewer at the end) fills activation bank T mod 2, which
    is free once tile T−2 has issued its last step. Array: tile T starts the cycle after its
    last beat is in and after tile T−1's last step, and takes ``n_tiles·tile_steps`` steps; a
    flush of ``flush_steps`` follows the last. Results: the rows of feature tile (T, f) are
    written into output bank T mod 2 at steps ``s + cols + i + 3``, ``s`` the first step of
    the tile that follows it (so a token tile's results wait for the next tile, or the flush,
    to start); the first write of a token tile stalls the array while that bank still holds
    tile T−2's rows. Drain: the bank's rows leave in order one beat per cycle, from two cycles
    after its last row was written, as fast as the consumer takes them.
    """
    a = np.asarray(a, dtype=np.int64)
    R, C, NT, L, KB = cfg.rows, cfg.cols, cfg.n_tiles, cfg.tile_steps, cfg.k_beats
    FL, RS = cfg.flush_steps, cfg.write_step
    m = len(a) // KB
    if m < 1 or m * KB != len(a):
        raise ValueError(f"{len(a)} activation beats are not rows of {KB} beats")
    tiles = -(-m // R)
    rows_of = [min(R, m - T * R) for T in range(tiles)]
    clock = _Steps()
    first_step = []             # first step of each item (tiles, then the flush)
    last_cycle = []             # cycle of each tile's last step
    checks = []                 # (step, tile): the tile's first write into its output bank
    drain = _Drain(cfg, rows_of, drain_ii)
    prev_in = NEVER
    next_cycle = NEVER          # cycle after the previous item's last step

    def bank_written(tile):
        """Cycle in which a tile's output bank is complete and drainable (``have``)."""
        return clock.cycle(first_step[tile + 1] + RS + R + 1) + 2

    for ti in range(tiles + 1):
        if ti < tiles:
            lo, hi = ti * R * KB, (ti * R + rows_of[ti]) * KB
            floor = last_cycle[ti - 2] + 1 if ti >= 2 else NEVER
            x = np.maximum(a[lo:hi], floor)
            x[0] = max(x[0], prev_in + 1)
            t = ii_stage(x)
            prev_in = int(t[-1])
            start, nsteps = max(prev_in + 1, next_cycle, start_at), NT * L
        else:
            start, nsteps = next_cycle, FL
        s0 = clock.steps
        first_step.append(s0)
        if ti >= 1 and NT == 1:
            heapq.heappush(checks, (s0 + RS + 2, ti - 1))
        if ti < tiles and NT > 1:
            heapq.heappush(checks, (s0 + L + RS + 2, ti))
        clock.start_run(s0, start)
        clock.steps = s0 + nsteps
        while checks and checks[0][0] < clock.steps:
            step, tile = heapq.heappop(checks)
            if tile < 2:
                continue
            drain.upto(tile - 2, bank_written)
            natural = clock.cycle(step)
            # the write comes a cycle after its step: the step may issue in the cycle in which
            # the bank's last beat is read
            free = drain.free[tile - 2] - 1
            if free > natural:
                clock.start_run(step, free)
        next_cycle = clock.cycle(clock.steps - 1) + 1
        if ti < tiles:
            last_cycle.append(next_cycle - 1)
    drain.upto(tiles - 1, bank_written)
    _add(trace, name, macs=m * cfg.k * cfg.n, peak=R * C, busy=tiles * NT * L + FL)
    return drain.taken


class _Drain:
    """The GEMM's output drain, bank by bank in order (see :func:`gemm`)."""

    def __init__(self, cfg, rows_of, drain_ii):
        self.nt, self.ii, self.rows_of = cfg.n_tiles, drain_ii, rows_of
        self.free = []              # cycle from which each tile's bank is empty again
        self.parts = []
        self.last = NEVER           # cycle in which the previous beat was taken

    def upto(self, tile, bank_written):
        while len(self.free) <= tile:
            T = len(self.free)
            have = bank_written(T)
            n = self.rows_of[T] * self.nt
            # v_j = max(have, u_{j−1}) + 1 (read, then offered); u_j = max(v_j, u_{j−1} + ii)
            v0 = max(have, self.last) + 1
            u0 = max(v0, self.last + self.ii)
            if self.ii == 1:
                u = u0 + np.arange(n, dtype=np.int64)
                freed = int(u[-1])
            else:
                u = u0 + self.ii * np.arange(n, dtype=np.int64)
                freed = int(u[-2]) + 1 if n > 1 else v0
            self.parts.append(u)
            self.last = int(u[-1])
            self.free.append(freed)

    @property
    def taken(self):
        return np.concatenate(self.parts)


# ---- the GEMV -------------------------------------------------------------------------------
def gemv(a, cfg, drain_ii=1, trace=None, name=None, start_at=NEVER):
    """:class:`~llmloom.hw.blocks.gemv.Gemv` (weights loaded) on rows of ``k_beats`` beats
    offered at ``a``; returns the cycles in which its output beats are taken by a consumer
    that takes one every ``drain_ii`` cycles at most.

    Row r fills input bank r mod 2 (free once row r−2 issued its last step) and starts the
    cycle after its last beat is in and after row r−1's last issue; it issues
    ``n_tiles·k_words`` steps, and feature tile f's result is loaded into the output register
    the cycle after its last step, offered the cycle after that. A result due while the
    previous one is still waiting stalls the engine until the consumer takes that one.
    """
    a = np.asarray(a, dtype=np.int64)
    KB, KT, NT = cfg.k_beats, cfg.k_words, cfg.n_tiles
    m = len(a) // KB
    if m < 1 or m * KB != len(a):
        raise ValueError(f"{len(a)} activation beats are not rows of {KB} beats")
    bank_free = [NEVER, NEVER]
    prev_in, engine_free, last = NEVER, start_at, NEVER
    out = np.empty(m * NT, dtype=np.int64)
    for r in range(m):
        x = np.maximum(a[r * KB:(r + 1) * KB], bank_free[r % 2])
        x[0] = max(x[0], prev_in + 1)
        prev_in = int(ii_stage(x)[-1])
        start = max(prev_in + 1, engine_free)
        shift = 0
        for f in range(NT):
            if f == NT - 1:                      # the row's last step issues before this
                bank_free[r % 2] = start + shift + NT * KT
            load = start + shift + (f + 1) * KT
            if last > load:                      # the previous result is still there
                shift += last - load
                load = last
            u = max(load + 1, last + drain_ii)
            out[r * NT + f] = last = u
        engine_free = start + shift + NT * KT
    _add(trace, name, macs=m * cfg.k * cfg.n, peak=cfg.rows * cfg.cols, busy=m * NT * KT)
    return out


def linear(a, cfg, lanes, trace=None, name=None, start_at=NEVER):
    """A linear kernel (:class:`GemmConfig` or :class:`GemvConfig`) and the gearbox from its
    ``cols`` to ``lanes``: offer times of the gearbox's output beats. ``start_at``: the
    engine's first step no earlier (a weight load ends the cycle before: the engines start
    nothing while their ``weight`` stream is loading)."""
    from ..hw.blocks.gemv import GemvConfig

    ii = gearbox_ii(cfg.cols, lanes)
    engine = gemv if isinstance(cfg, GemvConfig) else gemm
    taken = engine(a, cfg, drain_ii=ii, trace=trace, name=name, start_at=start_at)
    return gearbox(taken, cfg.cols, lanes)


def fetched_linear(a, cfg, name, reader, latency, base=0, trace=None, weight_banks=1):
    """:class:`~llmloom.hw.layers.fetched.FetchedLinear` (stage ``name`` of ``cfg``, the
    :class:`~llmloom.hw.blocks.axi_reader.AxiReaderConfig` ``reader``, its image at ``base``)
    on one run: the command taken at cycle 0, activation beats offered at ``a``, a memory of
    ``latency`` cycles as :meth:`AxiReaderConfig.timeline` has it, output always ready.
    Returns the cycles of the output beats.

    The reader takes its first command (the weights) at cycle 1 and the other sections back
    to back (:meth:`~AxiReaderConfig.timeline`); a weight beat enters the engine the cycle it
    leaves the reader, the constants' one cycle later (``_Words``' register) into the
    re-quantiser's load. Overlaps: activations are taken from the cycle after the first
    weight beat (the first such beat leaves ``ISSUE + latency + 1`` cycles after the reader's
    command; with two weight banks from the start: the engine pairs tensors with loads),
    the engine starts the cycle after the last weight beat, and results enter the
    re-quantiser from the second cycle after the shift's beat left the reader. For a stream
    of runs with two banks see :func:`llmloom.perf.cycles.fetched_linear_span`."""
    from ..hw.layers.fetched import fetch_commands

    r0 = 1
    tl = reader.timeline(fetch_commands(cfg, name, base), latency)
    first_weight = r0 + reader.ISSUE + latency + 1
    weights_in = r0 + tl[0][1]
    loaded = r0 + tl[-1][1] + 2
    a = np.asarray(a, dtype=np.int64)
    if weight_banks == 1:
        a = np.maximum(a, first_weight + 1)
    g = linear(a, cfg.linear(name), cfg.lanes, trace=trace, name=name, start_at=weights_in + 1)
    return eltwise(np.maximum(g, loaded), cfg.requant(name).latency, trace,
                   f"{name}.requant" if name else None)


# ---- attention --------------------------------------------------------------------------------
def kv_append(a, seg_counts):
    """Cycles in which the KV cache takes V beats offered at ``a``: a beat whose elements fall
    into ``s`` words takes ``s`` cycles (one write each), the beat transferring in the last;
    ``seg_counts`` gives ``s`` per beat of a row."""
    a = np.asarray(a, dtype=np.int64)
    ns = np.resize(np.asarray(seg_counts, dtype=np.int64), len(a))
    before = np.concatenate(([0], np.cumsum(ns)[:-1]))
    first = np.maximum.accumulate(a - before) + before
    return first + ns - 1


def _seg_counts(kv):
    counts = np.zeros(kv.beats, dtype=np.int64)
    for seg in kv.v_segments:
        counts[seg[0]] += 1
    return counts


def attention(q, k, v, cfg, trace=None, prefix="attention"):
    """:class:`~llmloom.hw.blocks.attention.Attention` on Q, K, V beats offered at ``q``,
    ``k``, ``v`` (one tensor, a new or continued sequence: the position does not change the
    timing); returns the offer times of its output beats.

    Input phase: Q and K beats are taken one per cycle, V beats at the cache's write rate
    (:func:`kv_append`); the first head's cache request is taken two cycles after the last
    of the three. Per head: K_hᵀ and V_h leave the cache from two cycles after the request;
    the Q_h rows follow from the Q buffer four cycles after the longer readout, one beat per
    cycle, through Q·Kᵀ (:func:`gemm`) → gearbox → requant → softmax (:func:`row_kernel`) →
    P·V → gearbox → requant; the next head's request is taken the cycle after this head's last
    output beat. With ``head_engines`` E the heads run in ``heads / E`` rounds of E heads in
    lock step (each engine its own cache bank and arrays), a round taking one head's time; the
    stage figures count the E arrays as one stage of E times the peak. Output phase: the
    buffered rows leave from three cycles after the last round's last beat, one beat per cycle.
    """
    from ..hw.blocks.kvcache import KvCacheConfig

    kv = KvCacheConfig.of(cfg)
    lanes = cfg.lanes
    rows = len(q) // (cfg.d_model // lanes)
    qk, pv, sm = cfg.qk_gemm, cfg.pv_gemm, cfg.softmax(0)
    lat_s, lat_o = cfg.score_requant.latency, cfg.out_requant.latency
    tq, tk, tv = ii_stage(q), ii_stage(k), kv_append(v, _seg_counts(kv))
    _add(trace, f"{prefix}.kv_append", busy=rows * kv.row_cycles)
    request = int(max(tq[-1], tk[-1], tv[-1])) + 2
    hb = cfg.d_head // lanes
    readout = max(kv.kt_beats, kv.vh_beats)
    engines = getattr(cfg, "head_engines", 1)
    for _ in range(cfg.heads // engines):
        # one round: every engine runs one head, in lock step, so a round is one head's time
        one = Trace() if trace is not None else None
        first_q = request + readout + 4
        _add(one, f"{prefix}.kv_readout", busy=readout)
        s = linear(first_q + np.arange(rows * hb, dtype=np.int64), qk, lanes, one,
                   f"{prefix}.qk")
        s = eltwise(s, lat_s)
        p = row_kernel(s, *row_kernel_of(sm), one, f"{prefix}.softmax")
        o = eltwise(linear(p, pv, lanes, one, f"{prefix}.pv"), lat_o)
        done = int(o[-1])
        request = done + 1
        if one is not None:
            # the engines' arrays count as one stage of E times the MACs and the peak; busy
            # cycles stay one engine's (they work at the same time)
            for st in one.stages.values():
                trace.add(st.name, macs=st.macs * engines,
                          peak=st.peak_macs_per_cycle * engines, busy=st.busy_cycles)
    return done + 3 + np.arange(rows * cfg.d_model // lanes, dtype=np.int64)


# ---- layers ---------------------------------------------------------------------------------
@dataclasses.dataclass
class LayerTiming:
    """The predicted timing of a run of a layer: tensors gated on each other's output (each
    meets an empty pipeline, as :func:`llmloom.sim.blocks.layers.layer_drive` drives them).

    ``cycles`` is the run's total (the sum of ``tensor_cycles``), ``stages`` the per-stage
    figures over the whole run and ``bottleneck`` the stage busy for the most cycles."""

    cycles: int
    tensor_cycles: list
    stages: list
    bottleneck: str

    def as_dict(self):
        return {"cycles": self.cycles, "tensor_cycles": list(self.tensor_cycles),
                "bottleneck": self.bottleneck,
                "stages": [s.as_dict(self.cycles) for s in self.stages]}


def _linear_cfg(cfg, name):
    """The engine of a linear stage: ``cfg.linear(name)`` (a GemmConfig or GemvConfig) where
    the layer config has it, else its GEMM."""
    get = getattr(cfg, "linear", None)
    return get(name) if callable(get) else cfg.gemm(name)


def _latencies(cfg):
    """Latencies of the layer's element-wise stages (a linear stage's: its re-quantiser's),
    from the stages' block configs (a shape-only config's have the nominal constants of a
    calibrated layer's shape)."""
    lat = {}
    for st in cfg.description.stages:
        if st.kind == "linear":
            lat[st.name] = cfg.requant(st.name).latency
        elif st.kind in ("act", "residual", "rope", "mul"):
            lat[st.name] = cfg.stage_config(st.name).latency
    return lat


def _row_quant(cfg, name):
    """The row quantiser after residual stage ``name`` (a layer config with row exponents on
    its residual stream: ``LayerConfig.row_quant``), else ``None``."""
    get = getattr(cfg, "row_quant", None)
    return get(name) if callable(get) else None


def _norm_timing(cfg):
    from ..hw.blocks.norm import LayerNormConfig
    beats = cfg.d_model // cfg.lanes
    return beats, LayerNormConfig.row_gap(), LayerNormConfig.EMIT_STAGES


def layer_tensor(cfg, rows, trace=None):
    """Offer times of the output beats of one tensor of ``rows`` rows through a layer
    (:class:`~llmloom.hw.layers.config.LayerConfig`), its input offered one beat per cycle
    from cycle 0 into an empty pipeline, its output always ready. The tensor's cycles are the
    last output beat's time + 1.

    Walks the layer's description (:mod:`llmloom.hw.layers.description`) as the RTL does: each
    stage maps the offer times of the tensors it reads to those of the tensor it writes; a
    fork adds nothing, a skip waits in its queue (:data:`QUEUE_LATENCY`)."""
    lanes, d = cfg.lanes, cfg.d_model
    lat = _latencies(cfg)
    norm = _norm_timing(cfg)
    desc = cfg.description
    t = {"x": np.arange(rows * d // lanes, dtype=np.int64)}
    for st in desc.stages:
        a = [t[name] + (QUEUE_LATENCY if desc.is_skip(st, port) else 0)
             for port, name in st.ports]
        if st.kind == "linear":
            out = eltwise(linear(a[0], _linear_cfg(cfg, st.name), lanes, trace, st.name),
                          lat[st.name])
        elif st.kind == "attention":
            out = attention(*a, cfg.attention, trace)
        elif st.kind == "norm":
            out = row_kernel(a[0], *norm, trace, st.name)
        elif st.kind == "quant":
            # its row exponents wait in queues for the re-quantisers: never later than the
            # row's results, so they cost the linear stages nothing
            out = row_kernel(a[0], *row_kernel_of(cfg.stage_config(st.name)), trace, st.name)
        elif st.kind in ("act", "rope"):
            # RoPE: a row's position is the tensor's offset plus its index, no wait
            out = eltwise(a[0], lat[st.name], trace, st.name)
        else:                       # residual, mul: both inputs joined beat by beat
            out = eltwise(join(*a), lat[st.name], trace, st.name)
            rows_q = _row_quant(cfg, st.name)
            if rows_q is not None:
                # the residual stream's row exponents: the wide sum through its row
                # quantiser (the skip's exponents wait in a queue, ahead of the rows)
                out = row_kernel(out, *row_kernel_of(rows_q), trace, f"{st.name}_rows")
        t[st.output] = out
    return t[desc.output]


def layer_timing(cfg, sizes):
    """:class:`LayerTiming` of a run of tensors of ``sizes`` rows (a prefill chunk, then
    decode steps of one row), each gated on the previous one's output."""
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"sizes={sizes} must be one or more tensors of >= 1 rows")
    if sum(sizes) > cfg.seq:
        raise ValueError(f"sizes={sizes} hold {sum(sizes)} rows, more than seq={cfg.seq}")
    trace = Trace()
    per_size = {}
    tensor_cycles = []
    for size in sizes:
        if size not in per_size:
            one = Trace()
            per_size[size] = (int(layer_tensor(cfg, size, one)[-1]) + 1, one)
        cycles, one = per_size[size]
        tensor_cycles.append(cycles)
        for st in one.stages.values():
            trace.add(st.name, macs=st.macs, peak=st.peak_macs_per_cycle, busy=st.busy_cycles)
    stages = list(trace.stages.values())
    bottleneck = max(stages, key=lambda s: s.busy_cycles).name
    return LayerTiming(cycles=sum(tensor_cycles), tensor_cycles=tensor_cycles, stages=stages,
                       bottleneck=bottleneck)
