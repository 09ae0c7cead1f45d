"""The spatial hardware model: per-kernel latency, the dataflow pipeline, buffers, resources and
constraints, vectorised over many design points at once (one point is the ``estimate`` case).

Formulas (README.md has them with their derivation from the paper's §3):

- A linear kernel is the ``hw`` output-stationary GEMM; its cycles are
  :func:`~llmloom.perf.cycles.gemm_cycles` (vectorised in :mod:`.kernels`). Streamed weights
  pass once per token tile (once per layer from a layer-deep buffer); every kernel streams
  from its own channels at once, and what it fetched before its input came is off its chain:
  its time there is ``max(compute, (streamed − ahead) bits / its bandwidth)``.
- One layer walks the ``hw`` layer description (:func:`layer_plan`): the stages before the
  projections, a synchronisation ``S = max(T_k, T_v)`` (K and V complete before attention;
  decode: Q too; none in a causal prefill whose design starts attention per tile,
  ``Design.kv_sync == "tile"``: Q/K/V are then the chain's first stage), then streaming
  stages ``j`` with first-tile latency ``L_j`` (prefill: the first ``token_tile`` rows; a
  linear kernel reading its input in production order, ``Design.stream_order ==
  "production"``: the first tile's work on its last input beat) and total ``T_j``:
  ``T2 = Σ L_j + max_j (T_j - L_j)`` per segment between whole-row stages.
- ``C`` layers on chip (and ``pp`` devices in a pipeline) chain ``pp·C`` layers per pass:
  ``T_pass = S + T2 + (pp·C - 1)·(max(T2, S) + L_kv)``,
  ``T = ceil(N / (pp·C))·max(T_pass, busiest stream)``.
- Decode is the same with one token (``m = batch``); GEMV engines overlap successive linear
  kernels as the paper assumes, the ``hw`` GEMM (``decode_kernel="gemm"``) does not.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from ..hw.blocks.activation import ActivationConfig, GeluConfig, SiluConfig
from ..hw.layers.config import DESCRIPTIONS
from .design import KERNELS, LANE_UNITS, Design, KernelDesign, gemm_a_widths, linear_shapes
from .devices import get_fpga
from .errors import ConfigError, ConstraintError, over_message
from .kernels import (
    gemm_cycles_np,
    gemm_lanes_np,
    gemm_parts_np,
    gemv_cycles_np,
    pad_to,
    pv_lanes_np,
    two_pass_row_cycles_np,
)
from .kvcache import check_kv_choice, kv_cache_bytes, kv_placement, on_chip_bytes
from .models import get_model
from .resources import gemm_group_cost, gemm_pe_cost, unit_costs
from .workload import LINEAR, get_quant

__all__ = ["Context", "DesignBatch", "make_context", "evaluate", "bottleneck", "port_plan",
           "raise_if_infeasible", "LINK_EFFICIENCY", "LINK_HOP_S", "PORT_EFFICIENCY",
           "TILE_DEPTH", "COST", "linear_cost", "region_plan", "layer_plan", "LayerPlan",
           "activation_latency"]

# Inter-FPGA link: achievable fraction of the line rate and per-hop latency. Assumptions (the
# paper takes alpha "from benchmarks" without giving it): 100G Ethernet/Aurora framing and
# protocol overhead leave ~80-90%; a hop through MAC, PHY and cable costs about a microsecond.
LINK_EFFICIENCY = 0.85
LINK_HOP_S = 1e-6

# Off-chip streaming into a kernel: the fraction of the memory's achievable bandwidth
# (MemorySpec.efficiency, long sequential reads) that a kernel's read port gets while it
# streams its weights in bursts through the width converter to its array. Fitted: the one
# value that puts the paper's group's GPT-2 medium decode (W4A8, 250 MHz, one U280, 204.05
# tok/s; perf/data/measured.json row "allo-gpt2-medium-w4a8-decode", the measurement behind
# Chen et al.'s 1.10 x DFX) on the model; every other measured row is held out of it.
# 0.777 x 0.92 x 14.375 GB/s = 10.3 GB/s per HBM2 pseudo-channel, against 13.3 GB/s that HBM
# benchmarks on the U280 reach with long bursts at the memory's own clock.
PORT_EFFICIENCY = 0.777
#: Depth (words of ``cols*packing`` weights) of one streamed weight tile's buffer.
TILE_DEPTH = 512

# Fabric cost per unit. The int8 processing element (LUT, FF) and the non-linear units (DSP,
# LUT, FF per lane and per unit) are not constants of this model: they come from the
# per-block resource model, perf.resources (gemm_pe_cost, unit_costs), whose constants are
# fitted to our own Yosys synthesis (synth_xilinx -family xcup) of the hw blocks and held to
# it by tests: one source of truth. Yosys keeps the GEMM's accumulator in fabric where Vivado
# folds it into the DSP48E2, so the PE figures bound a vendor flow from above.
#
# The rest has no hw block to be measured on, and stays an approximate figure of typical
# designs: fp16 PEs; the result-correction LUTs of a packed DSP; a kernel's fixed part
# (lut/ff_kernel: the controller and off-chip weight streaming datapath of a U280 kernel, AXI
# and width conversion included, which the hw GEMM lacks: its own fixed logic is a few hundred
# LUTs); off-chip ports and inter-FPGA links; stream FIFOs; dynamic power.
_PE = gemm_pe_cost("xcup")
#: Per logical output column of a grouped linear kernel (Quant.grouped), by weight bits: the
#: grouped GEMM's scaling after its array (multipliers, adders, group memories),
#: perf.resources' too.
_GROUP = {w: gemm_group_cost("xcup", w) for w in (4, 8)}
COST = {
    "lut_pe_int": _PE["lut"], "lut_pe_pack": 16, "lut_pe_fp16": 250, "ff_pe_int": _PE["ff"],
    "ff_pe_fp16": 400, "dsp_pe_fp16": 2, "lut_kernel": 2000, "ff_kernel": 3000,
    "lut_port": 3000, "ff_port": 5000, "lut_link": 20000, "ff_link": 30000,
    "fifos": 16,
    **{f"{r}_group_col": {w: c[r] for w, c in _GROUP.items()} for r in ("dsp", "lut", "ff")},
    # dynamic power, mW per MHz per unit (Xilinx Power Estimator class figures, approximate)
    "mw_mhz": {"dsp": 0.012, "lut": 0.0001, "bram": 0.02, "uram": 0.03},
    "source": "int8 PE LUT/FF and non-linear units: perf.resources (fitted to yosys "
              "synth_xilinx xcup of the hw blocks, flows/baselines/xcup.json); the rest "
              "approximate typical synthesis results and XPE figures",
}


@functools.cache
def linear_cost(a_width, w_bits, grouped):
    """``{"pe": {lut, ff}, "group_col": {dsp, lut, ff} or None}`` of an integer linear kernel
    on UltraScale+ whose inputs are ``a_width`` bits (:func:`~.design.gemm_a_widths`): its
    processing element, and per logical column the grouped GEMM's scaling (``perf.resources``:
    ``gemm_pe_cost``, ``gemm_group_cost``; :data:`COST` holds them at int8)."""
    return {"pe": gemm_pe_cost("xcup", a_width),
            "group_col": gemm_group_cost("xcup", w_bits, a_width) if grouped else None}


@functools.cache
def unit_cost(unit):
    """``{"lane": {dsp, lut, ff}, "fixed": {...}}`` of a non-linear unit (``softmax``, ``norm``,
    ``act``), from ``perf.resources.unit_costs`` on UltraScale+ (computed once, on first use:
    it elaborates nothing, but imports the hw block configs)."""
    return unit_costs("xcup")[unit]


def _groups(model):
    """Stage -> region group (buffers follow their owner); the activation stage is named after
    the model's function. A norm sits with the stage whose (residual-added) output it
    normalises, walking the ``hw`` layer description (:func:`layer_plan`), or with the
    projections it feeds when it comes before them: BERT's (post-norm) first norm follows
    the output projection (the paper's SLR1: "attention, output projection, residual and
    layernorm"), its second the FFN; GPT-2's (pre-norm) first norm feeds Q/K/V (SLR0), its
    second follows the output projection (SLR1)."""
    groups = {"q": "qkv", "k": "qkv", "v": "qkv",
              "qk": "attn", "softmax": "attn", "pv": "attn", "o": "attn",
              "f1": "ffn1", "fg": "ffn1", "ffn_in": "ffn1", model.activation: "ffn1",
              "f2": "ffn2"}
    plan = layer_plan(model)
    last = "qkv"
    out = {k: v for k, v in groups.items() if k != "ffn_in"}
    for name in plan.head + plan.chain:
        if name in plan.norms:
            out[name] = last
        elif name in groups:
            last = groups[name]
    return out


def _unit_stages(model):
    """Non-linear unit (a ``lanes`` key) -> the stages it serves."""
    return (("softmax", ("softmax",)), ("norm", ("norm1", "norm2")),
            ("act", (model.activation,)))


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """One layer's stages in the order of its dependency chain, in the spatial model's names:
    ``head`` the stages before the synchronisation (a pre-norm), ``sync`` the projections
    the attention waits for, ``chain`` the streaming stages after it; ``norms`` every norm.
    ``ffn_in`` stands for the FFN's input kernels (f1, and fg beside it in a gated FFN);
    ``ar1``/``ar2`` for the all-reduces tensor parallelism adds after ``o`` and ``f2``."""

    head: tuple
    sync: tuple
    chain: tuple
    norms: tuple


@functools.cache
def _plan_of(arch, activation):
    desc = DESCRIPTIONS[arch]
    att = desc.of_kind("attention")[0]
    sync = tuple(desc.producer(t).name for t in att.inputs)
    head, chain, norms = [], [], []
    seen_sync = False
    for st in desc.stages:
        if st.name in sync:
            seen_sync = True
            continue
        names = {"attention": ("qk", "softmax", "pv"),
                 "act": (activation,),
                 # a residual add is fused into the norm or the stage that reads it (no time
                 # of its own in the spatial model, as in the paper)
                 "residual": ()}.get(st.kind, (st.name,))
        if st.kind == "linear":
            names = {"f1": ("ffn_in",), "o": ("o", "ar1"), "f2": ("f2", "ar2")}.get(
                st.name, names)
        if st.kind == "norm":
            norms.append(st.name)
        (chain if seen_sync else head).extend(names)
    return LayerPlan(head=tuple(head), sync=sync, chain=tuple(chain), norms=tuple(norms))


def layer_plan(model):
    """The :class:`LayerPlan` of ``model``'s layer, walked from the ``hw`` layer description
    of its kind (:data:`~llmloom.hw.layers.config.DESCRIPTIONS`: a decoder is pre-norm like
    GPT-2, an encoder post-norm like BERT); the activation stage is named after the model's
    function."""
    model = get_model(model)
    return _plan_of("gpt2" if model.decoder else "bert", model.activation)


def activation_latency(activation):
    """Pipeline latency (cycles) of the element-wise activation unit: the ``hw`` block's
    (``GeluConfig``, ``SiluConfig``; ReLU has no block and is taken as one of the family)."""
    return {"gelu": GeluConfig, "silu": SiluConfig}.get(activation, ActivationConfig).LATENCY


def region_plan(dies):
    """Default die of each region group: one die per group as in the paper (SLR0 Q/K/V, SLR1
    attention, SLR2 FFN), folded onto fewer dies and spread over a fourth."""
    if dies >= 4:
        return {"qkv": 0, "attn": 1, "ffn1": 2, "ffn2": 3}
    if dies == 3:
        return {"qkv": 0, "attn": 1, "ffn1": 2, "ffn2": 2}
    if dies == 2:
        return {"qkv": 0, "attn": 0, "ffn1": 1, "ffn2": 1}
    return {"qkv": 0, "attn": 0, "ffn1": 0, "ffn2": 0}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Context:
    """Everything an evaluation holds fixed: model, device, quantisation, lengths, parallelism."""

    model: object
    device: object
    quant: object
    seq: int
    context: int
    batch: int
    tp: int = 1
    pp: int = 1
    kv: str = "auto"        # where the KV cache lives (perf.kvcache.KV_CHOICES)

    @property
    def l_max(self):
        """Longest sequence the on-chip buffers must hold (prompt, or context + new token)."""
        return max(self.seq, self.context + 1) if self.model.decoder else self.seq


def make_context(model, device, quant="W8A8", *, seq=512, context=None, batch=1, tp=1, pp=1,
                 kv="auto"):
    """Check and bundle the fixed inputs of an evaluation.

    ``context`` defaults to ``seq`` (decode right after a prompt of that length), clipped to
    the model's maximum positions. ``kv``: where the KV cache lives
    (:func:`~llmloom.perf.kvcache.kv_placement`; ``auto``: on chip while it fits).
    """
    check_kv_choice(kv)
    model, device, quant = get_model(model), get_fpga(device), get_quant(quant)
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= model.max_positions:
        raise ConfigError(f"seq={seq!r} is out of range for {model.name}; allowed: "
                          f"1..{model.max_positions}")
    if context is None:
        context = min(seq, model.max_positions - 1)
    if isinstance(context, bool) or not isinstance(context, int) \
            or not 0 <= context < model.max_positions:
        raise ConfigError(f"context={context!r} is out of range for {model.name}; allowed: "
                          f"0..{model.max_positions - 1}")
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 4096:
        raise ConfigError(f"batch={batch!r} is out of range; allowed: 1..4096")
    for name, p in (("tp", tp), ("pp", pp)):
        if isinstance(p, bool) or not isinstance(p, int) or p < 1:
            raise ConfigError(f"{name}={p!r} must be an integer >= 1")
    if model.n_kv_heads % tp or model.n_heads % tp or model.d_ff % tp:
        divs = [t for t in range(1, model.n_kv_heads + 1)
                if model.n_kv_heads % t == 0 and model.d_ff % t == 0]
        raise ConfigError(f"tensor parallelism tp={tp} does not divide the {model.n_kv_heads} "
                          f"KV heads / d_ff of {model.name}; allowed: "
                          f"{', '.join(map(str, divs))}")
    if pp > model.n_layers:
        raise ConfigError(f"pipeline parallelism pp={pp} exceeds the {model.n_layers} layers of "
                          f"{model.name}; allowed: 1..{model.n_layers}")
    if (tp > 1 or pp > 1) and device.link_gbps <= 0:
        raise ConfigError(f"device {device.name} has no inter-FPGA link; allowed: --devices 1")
    return Context(model=model, device=device, quant=quant, seq=seq, context=context,
                   batch=batch, tp=tp, pp=pp, kv=kv)


class DesignBatch:
    """Many designs as arrays (one entry per design point), sharing one region map.

    Attributes are numpy arrays of shape ``(P,)``: ``rows[k]``, ``cols[k]``, ``pack[k]``,
    ``chan[k]`` (NaN = automatic bandwidth share) per kernel ``k``; ``lanes[u]`` per non-linear
    unit (``softmax``, ``norm``, ``act``); ``C``, ``weights`` (0 stream, 1 on chip, 2 auto),
    ``gemv``, ``double``, ``clock_mhz``, ``token_tile``, ``layer_buffer`` (streamed weights
    buffered a whole layer deep: ``Design.weight_buffer == "layer"``), ``host_sync_us``,
    ``kv_tile`` (``Design.kv_sync == "tile"``: a causal prefill's attention starts per tile),
    ``production`` (``Design.stream_order == "production"``: linear kernels read their input
    in the order it is produced).
    """

    def __init__(self, *, rows, cols, pack, chan, lanes, C, weights, gemv, double, clock_mhz,
                 token_tile, layer_buffer=None, host_sync_us=None, kv_tile=None,
                 production=None, regions=None):
        self.rows, self.cols, self.pack, self.chan = rows, cols, pack, chan
        P = len(C)
        self.layer_buffer = (np.zeros(P, dtype=bool) if layer_buffer is None
                             else np.asarray(layer_buffer, dtype=bool))
        self.host_sync_us = (np.zeros(P) if host_sync_us is None
                             else np.asarray(host_sync_us, dtype=float))
        self.kv_tile = (np.zeros(P, dtype=bool) if kv_tile is None
                        else np.asarray(kv_tile, dtype=bool))
        self.production = (np.zeros(P, dtype=bool) if production is None
                           else np.asarray(production, dtype=bool))
        self.lanes, self.C, self.weights, self.gemv = lanes, C, weights, gemv
        self.double, self.clock_mhz, self.token_tile = double, clock_mhz, token_tile
        self.regions = regions
        self.size = len(C)

    @classmethod
    def from_designs(cls, designs):
        designs = list(designs)
        regions = designs[0].regions
        if any(d.regions != regions for d in designs):
            raise ConfigError("designs evaluated together must share one region map")

        def arr(get, dtype=np.int64):
            return np.array([get(d) for d in designs], dtype=dtype)

        return cls(
            rows={k: arr(lambda d, k=k: d.kernels[k].rows) for k in KERNELS},
            cols={k: arr(lambda d, k=k: d.kernels[k].cols) for k in KERNELS},
            pack={k: arr(lambda d, k=k: d.kernels[k].packing) for k in KERNELS},
            chan={k: arr(lambda d, k=k: np.nan if d.kernels[k].channels is None
                         else d.kernels[k].channels, float) for k in KERNELS},
            lanes={u: arr(lambda d, u=u: d.lanes[u]) for u in LANE_UNITS},
            C=arr(lambda d: d.layers_on_chip),
            weights=arr(lambda d: {"stream": 0, "on_chip": 1, "auto": 2}[d.weights]),
            gemv=arr(lambda d: d.decode_kernel == "gemv", bool),
            double=arr(lambda d: d.double_buffer, bool),
            clock_mhz=arr(lambda d: d.clock_mhz, float),
            token_tile=arr(lambda d: d.token_tile),
            layer_buffer=arr(lambda d: d.weight_buffer == "layer", bool),
            host_sync_us=arr(lambda d: d.host_sync_us, float),
            kv_tile=arr(lambda d: d.kv_sync == "tile", bool),
            production=arr(lambda d: d.stream_order == "production", bool),
            regions=dict(regions) if regions is not None else None)

    def design(self, i, *, name="explored", quant="W8A8", weights=None):
        """Design point ``i`` as a :class:`Design`."""
        kernels = {}
        for k in KERNELS:
            ch = self.chan[k][i]
            kernels[k] = KernelDesign(rows=int(self.rows[k][i]), cols=int(self.cols[k][i]),
                                      packing=int(self.pack[k][i]),
                                      channels=None if math.isnan(ch) else int(ch))
        w = weights or ("stream", "on_chip", "auto")[int(self.weights[i])]
        return Design(name=name, clock_mhz=float(self.clock_mhz[i]), quant=quant,
                      token_tile=int(self.token_tile[i]), kernels=kernels,
                      lanes={u: int(self.lanes[u][i]) for u in LANE_UNITS},
                      layers_on_chip=int(self.C[i]), weights=w,
                      decode_kernel="gemv" if self.gemv[i] else "gemm",
                      double_buffer=bool(self.double[i]),
                      weight_buffer="layer" if self.layer_buffer[i] else "tile",
                      host_sync_us=float(self.host_sync_us[i]),
                      kv_sync="tile" if self.kv_tile[i] else "layer",
                      stream_order="production" if self.production[i] else "tile",
                      regions=self.regions)


def _cdiv(a, b):
    return -(-a // b)


# Memory blocks ---------------------------------------------------------------------------------
def _blocks(spec, elems_per_cycle, elem_bits, depth_words):
    """Blocks of kind ``spec`` for a buffer read ``elems_per_cycle`` elements of ``elem_bits``
    each cycle, ``depth_words`` cycles deep: the paper's R_i with packing of several elements
    per port word (b_pack = g·b_W <= port width), minimised over the block's aspect ratios."""
    best = None
    for w in spec.widths:
        g = w // elem_bits
        if g < 1:
            continue
        depth = spec.bits // w
        if spec.kind == "BRAM36" and w in (9, 18, 36, 72):   # parity bits count as data
            depth = 36864 // w
        n = _cdiv(elems_per_cycle, g) * np.maximum(_cdiv(depth_words, depth), 1)
        best = n if best is None else np.minimum(best, n)
    if best is None:   # elements wider than any port: several blocks side by side
        w = max(spec.widths)
        best = _cdiv(elems_per_cycle * elem_bits, w) * np.maximum(
            _cdiv(depth_words, spec.bits // w), 1)
    return best


def _bulk_blocks(spec, bits):
    """Blocks for a buffer only its capacity constrains (wide enough ports are free)."""
    if spec is None:
        return None
    return np.maximum(np.ceil(np.asarray(bits, dtype=float) / spec.bits), 0).astype(np.int64)


# The evaluation ---------------------------------------------------------------------------------
def evaluate(ctx, db, *, modes=("prefill", "decode"), budget_dsp=None):
    """Evaluate a :class:`DesignBatch` in a :class:`Context`.

    Returns
    -------
    dict
        ``prefill`` / ``decode``: dicts with ``cycles`` (per model), ``latency_s``, ``stages``
        (``{name: (cycles, fill, bound_code)}`` per layer), ``phase`` (``{name: phase}``),
        ``stream_bytes`` (off-chip bytes per layer); ``res``: totals and per-die resources;
        ``violations``: ``{constraint: (need, have)}``; ``feasible``: bool array;
        ``on_chip``: resolved weight placement; ``power_w``: per mode.
    """
    m, dev, q = ctx.model, ctx.device, ctx.quant
    P = db.size
    f = db.clock_mhz * 1e6
    wb, ab, kvb = q.weight_bits, q.a_bits, q.kv_bits   # a weight's code and group share
    B, l, s, tp, pp = ctx.batch, ctx.seq, ctx.context, ctx.tp, ctx.pp
    d, dh, N = m.d_model, m.d_head, m.n_layers
    h_loc, dkv_loc, dff_loc = m.n_heads // tp, m.d_kv // tp, m.d_ff // tp
    lin = [k for k in LINEAR if m.gated_ffn or k != "fg"]
    shapes = linear_shapes(m, tp)
    C = db.C
    per_device_layers = _cdiv(N, pp)
    layers_per_copy = _cdiv(per_device_layers, C)
    r = db.rows
    cl = {k: db.cols[k] * db.pack[k] for k in KERNELS}
    mem = dev.memory
    bw_total = mem.bandwidth if mem else 0.0
    ch_bw = mem.gbps_per_channel * 1e9 * mem.efficiency if mem else 0.0
    link_bps = dev.link_gbps * 1e9 / 8 * LINK_EFFICIENCY

    # ---- resources and buffers (first: the weight placement decides the bandwidth users) ---
    res = _resources(ctx, db, lin, shapes, cl, layers_per_copy)
    on_chip = res["on_chip"]
    # the KV cache: on chip while it fits in the block RAM the design leaves, else off chip
    # (perf.kvcache, the rule `llmloom generate --kv auto` follows too)
    res["kv_bytes"] = np.full(P, kv_cache_bytes(m, s + 1, kvb, B, tp, pp))
    used = res["bram36"] * dev.bram.bits / 8 + (res["uram"] * dev.uram.bits / 8 if dev.uram
                                                 else 0.0)
    res["kv_free"] = on_chip_bytes(dev) - used
    res["kv"] = kv_placement(ctx.kv, res["kv_bytes"], res["kv_free"])
    kv_chip = res["kv"] == "chip"

    out = {"res": res, "on_chip": on_chip, "kv": res["kv"]}
    plan = layer_plan(m)
    for mode in modes:
        if mode == "decode" and not m.decoder:
            continue
        decode = mode == "decode"
        rows_m = B if decode else B * l
        keys = s + 1 if decode else l
        gemv = db.gemv if decode else np.zeros(P, dtype=bool)
        layer_buf = db.layer_buffer & ~on_chip
        # an off-chip K/V cache: the next layer's is read into the second half of a
        # double-buffered K/V buffer while this layer computes (decode): its stream leaves
        # the token's chain; on chip it is not streamed at all
        kv_ahead = db.double if decode else np.zeros(P, dtype=bool)

        # off-chip bytes per layer pass of each streaming consumer: weights once per token
        # tile (the array reuses each over its rows), once per layer from a layer-deep buffer
        stream_bytes = {}
        for k in lin:
            kk, nn = shapes[k]
            passes = np.where(gemv | layer_buf, 1, _cdiv(rows_m, r[k]))
            stream_bytes[k] = np.where(on_chip, 0.0, passes * kk * nn * wb / 8)
        for k in ("qk", "pv"):
            stream_bytes[k] = np.where(kv_chip, 0.0,
                                       B * keys * dkv_loc * kvb / 8 if decode else 0.0)
        bpc = _stream_rates(db, stream_bytes, decode, layer_buf, bw_total, ch_bw, f,
                             res["ports"], res["ports_limited"])

        stages = {}
        t_mem = {}
        for k in lin:
            kk, nn = shapes[k]
            lanes = gemm_lanes_np(kk, r[k], cl[k], nn)
            t_gemm = gemm_cycles_np(r[k], cl[k], kk, nn, lanes, rows_m)
            # prefill: the first token tile (the rows streamed between kernels at once,
            # Design.token_tile) through the whole projection
            first_gemm = t_gemm if decode else gemm_cycles_np(
                r[k], cl[k], kk, nn, lanes, np.minimum(rows_m, db.token_tile))
            if not decode:
                # read in production order (Design.stream_order "production"): the kernel
                # works on each input beat as it arrives, so of the first tile's cycles only
                # the last of its ceil(k / lanes) beats' share follows its producer's output
                first_gemm = np.where(db.production, _cdiv(first_gemm, _cdiv(kk, lanes)),
                                      first_gemm)
            t_gemv, first_gemv = gemv_cycles_np(r[k], cl[k], kk, nn, rows_m)
            t = np.where(gemv, t_gemv, t_gemm).astype(float)
            first = np.where(gemv, first_gemv, first_gemm).astype(float)
            # what the channel fetched before the kernel's input came: a whole layer's
            # matrix from a layer-deep buffer, else the tiles its buffer holds
            tile_bytes = cl[k] * TILE_DEPTH * wb / 8 * np.where(db.double, 2, 1)
            ahead = np.where(layer_buf, stream_bytes[k], np.minimum(tile_bytes,
                                                                    stream_bytes[k]))
            stages[k], t_mem[k] = _mem_bound(stream_bytes[k], bpc[k], t, first, ahead)

        count = B * h_loc
        qrows = 1 if decode else l
        for k in ("qk", "pv"):
            if k == "qk":       # Q·Kᵀ: k = d_head (fixed), the keys are its outputs
                kk, nn = dh, keys
                lanes = gemm_lanes_np(kk, r[k], cl[k], nn)
                kk_v, lanes_v = kk, None
            else:               # P·V: the keys are its inner dimension; fixed lanes, padded
                kk, nn = keys, dh
                lanes = pv_lanes_np(r[k], cl[k], dh, False)
                lanes_v = pv_lanes_np(r[k], cl[k], dh, True)
                kk, kk_v = pad_to(keys, lanes), pad_to(keys, lanes_v)
            fill, comp, tail = gemm_parts_np(r[k], cl[k], kk, nn, lanes, qrows)
            t_gemm = fill + count * comp + tail
            first_gemm = gemm_cycles_np(r[k], cl[k], kk, nn, lanes,
                                        np.minimum(qrows, db.token_tile))
            t_gemv, _ = gemv_cycles_np(r[k], cl[k], kk_v, nn, count, lanes_v)
            t = np.where(gemv, t_gemv, t_gemm).astype(float)
            # softmax needs whole score rows, so in decode (one row) nothing overlaps
            first = t if decode else first_gemm.astype(float)
            ahead = np.where(kv_ahead, stream_bytes[k], 0.0)
            stages[k], t_mem[k] = _mem_bound(stream_bytes[k], bpc[k], t, first, ahead)

        lam = db.lanes
        sm_e = B * h_loc * qrows * keys
        row_sm = two_pass_row_cycles_np(keys, lam["softmax"], "softmax")
        t = _cdiv(sm_e, lam["softmax"]) + row_sm
        stages["softmax"] = (t.astype(float), (t if decode else row_sm).astype(float),
                             np.zeros(P, int))
        for u in plan.norms:
            row = two_pass_row_cycles_np(d, lam["norm"], "norm")
            t = _cdiv(rows_m * d, lam["norm"]) + row
            stages[u] = (t.astype(float), (t if decode else row).astype(float), np.zeros(P, int))
        act_latency = activation_latency(m.activation)
        t = _cdiv(rows_m * dff_loc, lam["act"]) + act_latency
        stages[m.activation] = (t.astype(float), np.full(P, float(act_latency)),
                                np.zeros(P, int))

        # links: two all-reduces per layer under TP (ring: 2(p-1)/p of the data), one transfer
        # per device boundary under PP; streamed, so they are stages like any other
        act_bytes = rows_m * d * ab / 8
        if tp > 1:
            t_ar = (2 * (tp - 1) / tp * act_bytes / link_bps + 2 * (tp - 1) * LINK_HOP_S) * f
            first_ar = t_ar if decode else (2 * (tp - 1) * LINK_HOP_S + 2 * (tp - 1) / tp
                                            * min(rows_m, 8) * d * ab / 8 / link_bps) * f
            stages["ar1"] = (t_ar, first_ar, np.full(P, 2))
            stages["ar2"] = (t_ar, first_ar, np.full(P, 2))
        if pp > 1:
            t_link = (act_bytes / link_bps + LINK_HOP_S) * f
            l_link = t_link if decode else (min(rows_m, 8) * d * ab / 8 / link_bps
                                            + LINK_HOP_S) * f
            stages["link"] = (t_link, l_link, np.full(P, 2))

        # the layer's dependency chain, walked from its description (layer_plan): the stages
        # before the synchronisation (a pre-norm), the synchronisation (K, V complete before
        # attention; in decode Q too), then the streaming stages
        sync = ["q", "k", "v"] if decode else ["k", "v"]
        S = np.maximum.reduce([stages[k][0] for k in sync])
        L_sync = np.maximum.reduce([stages[k][1] for k in sync])
        # a causal prefill whose attention starts per tile (Design.kv_sync "tile") has no
        # synchronisation: Q, K and V stream into attention as one stage of the chain
        tile_start = db.kv_tile & (not decode) & bool(m.decoder)
        S = np.where(tile_start, 0.0, S)
        L_sync = np.where(tile_start, 0.0, L_sync)
        ffn_keys = ["f1", "fg"] if m.gated_ffn else ["f1"]

        def entry(k, stages=stages, ffn_keys=ffn_keys):
            if k == "ffn_in":
                return ("ffn_in", np.maximum.reduce([stages[f_][0] for f_ in ffn_keys]),
                        np.maximum.reduce([stages[f_][1] for f_ in ffn_keys]), None)
            return (k,) + tuple(stages[k])

        head = [entry(k) for k in plan.head]
        chain = []
        if not decode:
            tq, lq, bq = stages["q"]
            t_qkv = np.maximum.reduce([stages[k][0] for k in ("q", "k", "v")])
            l_qkv = np.maximum.reduce([stages[k][1] for k in ("q", "k", "v")])
            chain.append(("q", np.where(tile_start, t_qkv, np.maximum(tq - S, 0.0)),
                          np.where(tile_start, l_qkv, 0.0), bq))
        for k in plan.chain:
            if k in ("ar1", "ar2") and tp == 1:
                continue
            chain.append(entry(k))
        if pp > 1:
            chain.append(entry("link"))
        head_fill = sum((c[2] for c in head), np.zeros(P))
        T2 = _chain_cycles(chain, P)
        # the head's stages stream into the projections: their fill comes first, their
        # steady state runs beside the layer's
        T2 = np.maximum(T2, np.maximum.reduce(
            [np.maximum(c[1] - c[2], 0.0) for c in head] + [np.zeros(P)]) - S)
        span = pp * C
        # the next layer of a pass starts when its K/V (decode: Q/K/V) sync completes; with
        # overlapping kernels that is the sync's first-tile latency after this layer's output
        if decode:
            gap = T2 + head_fill + np.where(gemv, L_sync, S)
        else:
            gap = np.maximum(T2, S) + head_fill + L_sync
        T_pass = head_fill + S + T2 + (span - 1) * gap
        # every kernel streams its own weights (and K/V) from its channels once per layer it
        # serves in a pass: a pass takes no less than the busiest stream
        floor = np.maximum.reduce([t_mem[k] for k in t_mem])
        n_pass = _cdiv(N, span)
        host = db.host_sync_us * 1e-6 * f * _cdiv(N, pp)
        cycles = n_pass * np.maximum(T_pass, floor) + host
        latency = cycles / f
        streamed = sum(stream_bytes.values()) * N / pp
        names = [c[0] for c in head + chain]
        out[mode] = {"cycles": cycles, "latency_s": latency, "stages": stages,
                     "sync": sync, "chain": names,
                     "steady": np.stack([np.maximum(c[1] - c[2], 0.0) for c in head + chain]),
                     "ffn_keys": ffn_keys, "layer_cycles": head_fill + S + T2,
                     "sync_cycles": S, "stream_cycles": T2, "stream_bytes": stream_bytes,
                     "mem_cycles": t_mem, "floor_cycles": floor, "pass_cycles": T_pass,
                     "host_cycles": host, "offchip_bytes": streamed,
                     "power_w": _power(dev, res, db, streamed / np.maximum(latency, 1e-30))}

    out["violations"] = _violations(ctx, db, res, budget_dsp)
    feasible = np.ones(P, dtype=bool)
    for need, have in out["violations"].values():
        feasible &= need <= have
    out["feasible"] = feasible
    return out


def _chain_cycles(chain, P):
    """Cycles from the first stage's start to the last stage's last output of a chain of
    streaming stages ``(name, T, L, bound)`` (total, first-output latency): the fills add up
    and the slowest stage's steady state (T − L) paces the rest, ``Σ L + max (T − L)``,
    segment by segment: a stage that emits only after its whole input (``L = T``: a norm or
    softmax on one decode row, a kernel that does not overlap) waits for every stage before
    it to finish, so it closes a segment."""
    done = np.zeros(P)
    fill = np.zeros(P)
    steady = np.zeros(P)
    for _, t, first, _ in chain:
        fill = fill + first
        steady = np.maximum(steady, t - first)
        barrier = first >= t
        done = np.where(barrier, done + fill + steady, done)
        fill = np.where(barrier, 0.0, fill)
        steady = np.where(barrier, 0.0, steady)
    return done + fill + steady


def _mem_bound(by, bpc, t_comp, first, ahead):
    """A kernel's time in its layer's chain when its streamed operands (``by`` bytes) arrive
    at ``bpc`` bits per cycle and ``ahead`` of those bytes were fetched before its input came
    (prefetched while the kernel waited); the first-tile latency stretches by the same factor.

    Returns ``((t, first, bound), t_mem)``: bound code 1 = memory-bound; ``t_mem`` the
    cycles its channels are busy per layer (the whole stream, prefetched or not)."""
    t_mem = np.where(by > 0, by * 8 / np.maximum(bpc, 1e-30), 0.0)
    t_mem = np.where((by > 0) & (bpc <= 0), np.inf, t_mem)
    t_wait = np.where(by > 0, np.maximum(by - ahead, 0.0) * 8 / np.maximum(bpc, 1e-30), 0.0)
    t_wait = np.where((by > 0) & (bpc <= 0), np.inf, t_wait)
    t = np.maximum(t_comp, t_wait)
    scale = np.where(t_comp > 0, t / np.maximum(t_comp, 1), 1.0)
    return (t, np.minimum(first * scale, t), np.where(t_wait > t_comp, 1, 0)), t_mem


def port_plan(ctx, db, lin, shapes, on_chip):
    """AXI ports of each kernel of one layer copy: ``{kernel: ports}`` (float arrays), and
    their sum over the design's copies.

    A port streams from one off-chip channel at full rate, so a kernel's stream uses at most
    as many channels as it has ports, and every kernel's ports together are at most the
    memory's (``MemorySpec.max_ports``: 32 on the U280/U55C's HBM). A kernel with explicit
    ``channels`` has that many ports; the others (automatic) divide what a copy's share of the
    device's ports leaves: the K/V readers (``qk``, ``pv``, decoders) one each, the streamed
    weight matrices the rest, handed out one at a time to the matrix with the most bytes per
    port (the allocation that minimises the slowest stream), at least one each. Weights held
    on chip need no port.

    A memory without a port limit (``MemorySpec.axi_ports`` 0: DDR, whose one controller per
    channel takes any number of masters through an interconnect) gives an automatic kernel
    one port into that interconnect; its kernels share the channels (:func:`_stream_rates`),
    and only explicit channels count against the memory's.

    Returns ``(ports, total, limited)``: ``total`` what the ``offchip_channels`` constraint
    counts, ``limited`` whether the memory limits ports."""
    m, dev = ctx.model, ctx.device
    P = db.size
    mem = dev.memory
    limited = bool(mem and mem.axi_ports)
    users = {k: np.where(on_chip, False, True) for k in lin}
    for k in ("qk", "pv"):
        users[k] = np.full(P, bool(m.decoder))
    if not limited:
        ports = {k: np.where(uses, np.where(np.isnan(db.chan[k]), 1.0,
                                            np.nan_to_num(db.chan[k])), 0.0)
                 for k, uses in users.items()}
        explicit = sum(np.where(users[k], np.nan_to_num(db.chan[k]), 0.0) for k in users)
        return ports, explicit * db.C, False
    budget = np.floor(mem.max_ports / db.C)
    ports = {}
    auto = []
    for k, uses in users.items():
        ch = db.chan[k]
        fixed = ~np.isnan(ch)
        ports[k] = np.where(uses & fixed, np.nan_to_num(ch), 0.0)
        if k in ("qk", "pv"):
            ports[k] = np.where(uses & ~fixed, 1.0, ports[k])
        else:
            auto.append(k)
    left = budget - sum(ports.values())
    weight = {k: np.where(users[k] & np.isnan(db.chan[k]),
                          float(shapes[k][0] * shapes[k][1]), 0.0) for k in auto}
    for k in auto:                       # one port each first
        give = weight[k] > 0
        ports[k] = ports[k] + give
        left = left - give
    if auto:
        w = np.stack([weight[k] for k in auto])          # kernels x points
        n = np.stack([ports[k] for k in auto])
        for _ in range(int(np.max(budget, initial=0))):
            more = left >= 1
            if not more.any():
                break
            load = np.where(w > 0, w / np.maximum(n, 1), -1.0)
            j = np.argmax(load, axis=0)
            pick = (np.arange(len(auto))[:, None] == j[None, :]) & more[None, :] \
                & (np.take_along_axis(load, j[None, :], 0) > 0)
            n = n + pick
            left = left - pick.any(axis=0)
        for i, k in enumerate(auto):
            ports[k] = n[i].astype(float)
    total = sum(ports.values()) * db.C
    return ports, total, True


def _stream_rates(db, stream_bytes, decode, ahead, bw_total, ch_bw, f, ports, limited):
    """Bits per cycle each streaming kernel gets.

    Where the memory limits AXI ports (HBM, ``limited``): a kernel's own ports
    (:func:`port_plan`), each one channel at the rate a kernel's port achieves on it
    (``PORT_EFFICIENCY``), all the time; a kernel with explicit ``channels`` shares them among
    the design's ``C`` copies of it. A port idles while its kernel does not stream: it is
    wired to that kernel's AXI master, so no other kernel can use it.

    Otherwise (DDR behind an interconnect): explicit channels as above; an automatic kernel's
    stream is striped over all channels (at ``PORT_EFFICIENCY`` too), and the kernels that
    stream at the same time share the bandwidth in proportion to their bytes: all of them
    where their weights run a layer ahead of the chain (``ahead``), else by phase (decode:
    Q/K/V, then qk, then pv, then o, then the FFN's kernels at once: the norm between o and
    the FFN needs o's whole row; prefill: Q/K/V, then the rest)."""
    bpc = {}
    if limited:
        for k in stream_bytes:
            per_copy = np.where(np.isnan(db.chan[k]), ports[k], ports[k] / db.C)
            bpc[k] = per_copy * ch_bw * PORT_EFFICIENCY * 8 / f     # bits per cycle
        return bpc
    by_phase = ([["q", "k", "v"], ["qk"], ["pv"], ["o"], ["f1", "fg", "f2"]] if decode
                else [["q", "k", "v"], ["o", "f1", "fg", "f2", "qk", "pv"]])
    together = [[k for g in by_phase for k in g]]

    def shares(groups):
        out = {}
        for group in groups:
            group = [k for k in group if k in stream_bytes]
            total = sum(stream_bytes[k] for k in group)
            for k in group:
                out[k] = np.where(total > 0, stream_bytes[k] / np.maximum(total, 1e-30), 0) \
                    * bw_total
        return out

    phase, joint = shares(by_phase), shares(together)
    for k in stream_bytes:
        share = np.where(ahead, joint[k], phase[k])
        bw = np.where(np.isnan(db.chan[k]), share, np.nan_to_num(db.chan[k]) * ch_bw) \
            * PORT_EFFICIENCY / db.C
        bpc[k] = bw * 8 / f     # bits per cycle
    return bpc


def bottleneck(phase_result, i=0):
    """``(stage name, bound)`` limiting point ``i`` of a prefill/decode result: the stage with
    the largest steady-state time, ``"sync"``'s slowest kernel when the K/V synchronisation
    dominates, or the kernel with the busiest stream when the streams set the pace (every
    kernel prefetching); bound is ``compute``, ``memory`` or ``link``."""
    steady = phase_result["steady"][:, i]
    j = int(np.argmax(steady))
    name = phase_result["chain"][j]
    stages = phase_result["stages"]
    if phase_result["sync_cycles"][i] >= steady[j]:
        name = max(phase_result["sync"], key=lambda k: stages[k][0][i])
    if name == "ffn_in":
        name = max(phase_result["ffn_keys"], key=lambda k: stages[k][0][i])
    if phase_result["floor_cycles"][i] > phase_result["pass_cycles"][i]:
        mem, by = phase_result["mem_cycles"], phase_result["stream_bytes"]
        # streams sharing the bandwidth in proportion to their bytes end together: name the
        # biggest
        return max(mem, key=lambda k: (round(float(mem[k][i]), 6), float(by[k][i]))), "memory"
    code = int(stages[name][2][i]) if name in stages else 0
    return name, ("compute", "memory", "link")[code]


def _power(dev, res, db, bytes_per_s):
    """Board power: static + dynamic per resource at the clock + off-chip traffic."""
    c = COST["mw_mhz"]
    dyn = db.clock_mhz * 1e-3 * (res["dsp"] * c["dsp"] + res["lut"] * c["lut"]
                                 + res["bram36"] * c["bram"] + res["uram"] * c["uram"])
    pj = dev.memory.pj_per_bit if dev.memory else 0.0
    return dev.static_w + dyn + bytes_per_s * 8 * pj * 1e-12


def _resources(ctx, db, lin, shapes, cl, layers_per_copy):
    """DSP, LUT, FF, BRAM, URAM of the design, per die and in total, with weights placed."""
    m, dev, q = ctx.model, ctx.device, ctx.quant
    P = db.size
    C = db.C
    wb, ab = q.w_bits, q.a_bits
    fp = not q.integer
    bram, uram = dev.bram, dev.uram
    r = db.rows
    lmax = ctx.l_max
    d_loc, dkv_loc = m.d_model // ctx.tp, m.d_kv // ctx.tp
    plan = region_plan(dev.dies)
    die_of = {}
    for name, group in _groups(m).items():
        die = plan[group]
        if db.regions and name in db.regions:
            die = _die_index(dev, db.regions[name])
        die_of[name] = die
    if db.regions:
        for unit, names in _unit_stages(m):
            if unit in db.regions:
                for n_ in names:
                    die_of[n_] = _die_index(dev, db.regions[unit])
    zeros = np.zeros(P)
    per = {name: {"dsp": zeros.copy(), "lut": zeros.copy(), "ff": zeros.copy(),
                  "bram_small": zeros.copy(), "bulk_bits": zeros.copy(),
                  "bulk_bram": zeros.copy(), "bulk_uram": zeros.copy()} for name in die_of}

    kernels_used = lin + ["qk", "pv"]
    # a linear kernel's PEs at its input's width where it is hw's (a grouped quantisation:
    # the hw layer's widths); else, and for the attention arrays, the int8 PE of COST
    a_width = {**dict.fromkeys(kernels_used, 8), **(gemm_a_widths(m, q) if q.grouped else {})}
    for k in kernels_used:
        pe = r[k] * db.cols[k]
        cost = None if fp else linear_cost(a_width[k], wb, q.grouped and k in lin)
        per[k]["dsp"] += pe * (COST["dsp_pe_fp16"] if fp else 1)
        per[k]["lut"] += pe * (COST["lut_pe_fp16"] if fp else
                               cost["pe"]["lut"] + COST["lut_pe_pack"] * (db.pack[k] - 1)) \
            + COST["lut_kernel"]
        per[k]["ff"] += pe * (COST["ff_pe_fp16"] if fp else cost["pe"]["ff"]) \
            + COST["ff_kernel"]
        if not fp and cost["group_col"] is not None:
            # the grouped GEMM multiplies codes (the PEs above, packed as int8's) and scales
            # each group's partial sums after the array, per logical column
            for res_ in ("dsp", "lut", "ff"):
                per[k][res_] += cl[k] * cost["group_col"][res_]
    for unit, names in _unit_stages(m):
        lanes = db.lanes[unit] * (2 if unit == "act" and m.gated_ffn else 1)
        cost = unit_cost(unit)
        for n_ in names:
            for r in ("dsp", "lut", "ff"):
                per[n_][r] += lanes * cost["lane"][r] + cost["fixed"][r]
            # lookup tables (exp, GELU/SiLU, rsqrt) and a row buffer: one block per 2 lanes
            per[n_]["bram_small"] += _cdiv(lanes, 2) + _bulk_blocks(bram, 2 * m.d_model * 32)

    # Weights: streamed tiles (double-buffered FIFO per column group), a FIFO of one layer's
    # matrix (weight_buffer "layer", in bulk memory), or all of this copy's layers on chip,
    # partitioned so that cols*packing weights are read each cycle; grouped weights' tables
    # stored beside them, as more words of the same width (Quant.weight_bits).
    def depth(words):
        return np.ceil(np.asarray(words) * (q.weight_bits / wb)).astype(np.int64)

    tile = {}
    whole = {}
    one = {}
    for k in lin:
        kk, nn = shapes[k]
        tile[k] = np.where(db.layer_buffer, 0, _blocks(bram, cl[k], wb, depth(TILE_DEPTH))
                           * np.where(db.double, 2, 1))
        words = depth(_cdiv(layers_per_copy * kk * nn, cl[k]))
        whole[k] = (_blocks(bram, cl[k], wb, words),
                    _blocks(uram, cl[k], wb, words) if uram else None)
        words = depth(_cdiv(kk * nn, cl[k]))
        one[k] = (np.where(db.layer_buffer, _blocks(bram, cl[k], wb, words), 0),
                  np.where(db.layer_buffer, _blocks(uram, cl[k], wb, words), 0)
                  if uram else None)
    # K and V of the current layer (double-buffered: the paper's S_KV = 4·l_max·d·b_A), read by
    # qk and pv with cols*packing partitions; Q waiting for the synchronisation; the two
    # residual bypass buffers (the FFN one is the paper's deadlock-avoidance buffer, the
    # attention one holds x while K and V complete).
    nb = np.where(db.double, 2, 1)
    kv_words = {k: _cdiv(lmax * dkv_loc, cl[k]) for k in ("qk", "pv")}
    for k in ("qk", "pv"):
        per[k]["bulk_bram"] += nb * _blocks(bram, cl[k], ab, kv_words[k])
        if uram:
            per[k]["bulk_uram"] += nb * _blocks(uram, cl[k], ab, kv_words[k])
    # a kernel reading its input in production order keeps a token tile's partial sums of
    # all its n outputs (32-bit accumulators), cols*packing of them read and written a cycle
    for k in lin:
        nn = shapes[k][1]
        acc_words = _cdiv(db.rows[k] * nn, cl[k])
        per[k]["bulk_bram"] += np.where(db.production, _blocks(bram, cl[k], 32, acc_words), 0)
        if uram:
            per[k]["bulk_uram"] += np.where(db.production, _blocks(uram, cl[k], 32, acc_words),
                                            0)
    for owner, bits in (("qk", lmax * d_loc * ab), ("o", lmax * m.d_model * ab),
                        ("f2", lmax * m.d_model * ab)):
        per[owner]["bulk_bram"] += _bulk_blocks(bram, bits)
        if uram:
            per[owner]["bulk_uram"] += _bulk_blocks(uram, bits)
    # stream FIFOs between kernels: one block each, spread over the kernels
    for i, k in enumerate(kernels_used):
        per[k]["bram_small"] += COST["fifos"] // len(kernels_used) + (
            1 if i < COST["fifos"] % len(kernels_used) else 0)

    def place(weights_on_chip):
        dies = {i: {key: zeros.copy() for key in ("dsp", "lut", "ff", "bram", "uram")}
                for i in range(dev.dies)}
        for name, v in per.items():
            die = dies[die_of[name]]
            for key in ("dsp", "lut", "ff"):
                die[key] += v[key] * C
        bulk_b = {i: zeros.copy() for i in dies}
        bulk_u = {i: zeros.copy() for i in dies}
        small = {i: zeros.copy() for i in dies}
        for name, v in per.items():
            i = die_of[name]
            small[i] += v["bram_small"] * C
            bulk_b[i] += v["bulk_bram"] * C
            bulk_u[i] += v["bulk_uram"] * C
            if name in tile:
                wb_b, wb_u = whole[name]
                small[i] += np.where(weights_on_chip, 0, tile[name]) * C
                bulk_b[i] += np.where(weights_on_chip, wb_b, one[name][0]) * C
                if one[name][1] is not None:
                    bulk_u[i] += np.where(weights_on_chip, 0, one[name][1]) * C
                if wb_u is not None:
                    bulk_u[i] += np.where(weights_on_chip, wb_u, 0) * C
        for i, die in dies.items():
            if uram:
                cap = dev.per_die("uram")
                used = np.minimum(bulk_u[i], cap)
                spill = np.where(bulk_u[i] > 0, (bulk_u[i] - used) / np.maximum(bulk_u[i], 1), 0)
                die["uram"] = used
                die["bram"] = small[i] + np.ceil(spill * bulk_b[i])
            else:
                die["bram"] = small[i] + bulk_b[i]
        return dies

    stream_dies = place(np.zeros(P, dtype=bool))
    chip_dies = place(np.ones(P, dtype=bool))
    fits = np.ones(P, dtype=bool)
    for i in range(dev.dies):
        fits &= chip_dies[i]["bram"] <= dev.per_die("bram")
    on_chip = np.where(db.weights == 2, fits, db.weights == 1)
    dies = {i: {key: np.where(on_chip, chip_dies[i][key], stream_dies[i][key])
                for key in chip_dies[i]} for i in range(dev.dies)}
    # every AXI port (one per channel a kernel streams from) costs its master and width
    # converter
    port_of, counted, limited = port_plan(ctx, db, lin, shapes, on_chip)
    ports = sum(port_of.values()) * C
    shared_lut = ports * COST["lut_port"] + (COST["lut_link"] if ctx.tp * ctx.pp > 1 else 0)
    shared_ff = ports * COST["ff_port"] + (COST["ff_link"] if ctx.tp * ctx.pp > 1 else 0)
    dies[0]["lut"] = dies[0]["lut"] + shared_lut
    dies[0]["ff"] = dies[0]["ff"] + shared_ff
    total = {key: sum(dies[i][key] for i in dies) for key in ("dsp", "lut", "ff", "bram",
                                                                "uram")}
    return {"dsp": total["dsp"], "lut": total["lut"], "ff": total["ff"],
            "bram36": total["bram"], "uram": total["uram"], "dies": dies, "on_chip": on_chip,
            "die_of": die_of, "ports": port_of, "ports_total": counted,
            "ports_limited": limited}


def _die_index(dev, name):
    names = dev.die_names
    if isinstance(name, int) and 0 <= name < dev.dies:
        return name
    if name not in names:
        raise ConfigError(f"region {name!r} is not a die of {dev.name}; allowed: "
                          f"{', '.join(names)}")
    return names.index(name)


def _violations(ctx, db, res, budget_dsp):
    """``{constraint: (need, have)}`` arrays; a point is feasible when every need <= have."""
    dev, m, q = ctx.device, ctx.model, ctx.quant
    P = db.size
    v = {"dsp": (res["dsp"], np.full(P, dev.dsp)), "lut": (res["lut"], np.full(P, dev.lut)),
         "ff": (res["ff"], np.full(P, dev.ff)),
         "bram36": (res["bram36"], np.full(P, dev.bram.count)),
         "uram": (res["uram"], np.full(P, dev.uram.count if dev.uram else 0))}
    if dev.dies > 1:
        for i, die in res["dies"].items():
            for key, cap in (("dsp", "dsp"), ("lut", "lut"), ("bram", "bram"),
                             ("uram", "uram")):
                label = "bram36" if key == "bram" else key
                v[f"{label}@SLR{i}"] = (die[key], np.full(P, dev.per_die(cap)))
    lin = [k for k in LINEAR if m.gated_ffn or k != "fg"] + ["qk", "pv"]
    v["packing"] = (np.maximum.reduce([db.pack[k] for k in lin]),
                    np.full(P, dev.max_packing.get(q.name, 1)))
    if dev.memory:
        # AXI ports, each streaming from one channel (port_plan)
        v["offchip_channels"] = (res["ports_total"], np.full(P, float(dev.memory.max_ports)))
        weights = m.params * q.weight_bits / 8 / ctx.tp / ctx.pp
        kv = np.where(res["kv"] == "chip", 0.0, res["kv_bytes"])
        need = np.where(res["on_chip"], kv, weights + kv)
        v["offchip_capacity_gb"] = (need / 1e9, np.full(P, dev.memory.capacity_gb))
    # a KV cache kept on chip (asked for: auto keeps it there only when it fits) in the block
    # RAM the design leaves
    v["kv_on_chip_mb"] = (np.where(res["kv"] == "chip", res["kv_bytes"], 0.0) / 1e6,
                          np.maximum(res["kv_free"], 0.0) / 1e6)
    if budget_dsp is not None:
        v["dsp_budget"] = (res["dsp"], np.full(P, float(budget_dsp)))
    return v


def raise_if_infeasible(ctx, result, i=0):
    """Raise :class:`ConstraintError` for the worst broken constraint of point ``i``."""
    worst, worst_pct = None, 0.0
    for name, (need, have) in result["violations"].items():
        n, h = float(need[i]), float(have[i])
        if n > h:
            pct = (n - h) / h if h else math.inf
            if worst is None or pct > worst_pct:
                worst, worst_pct = (name, n, h), pct
    if worst is None:
        return
    name, n, h = worst
    dev = ctx.device
    labels = {"dsp": "DSP", "lut": "LUT", "ff": "FF", "bram36": f"{dev.bram.kind} blocks",
              "uram": f"{dev.uram.kind if dev.uram else 'URAM'} blocks",
              "packing": f"MACs per DSP (packing) for {ctx.quant.name}",
              "offchip_channels": f"off-chip {dev.memory.kind if dev.memory else ''} channels "
                                  "(AXI ports)",
              "offchip_capacity_gb": f"GB of off-chip {dev.memory.kind if dev.memory else ''}",
              "kv_on_chip_mb": "MB of block RAM for the KV cache on chip",
              "dsp_budget": "DSP"}
    base, _, die = name.partition("@")
    what = labels.get(base, base)
    where = f"{dev.part}" + (f" {die}" if die else "")
    if name == "dsp_budget":
        msg = (f"design needs {int(n):,} DSP, the DSP budget is {int(h):,} "
               f"({(n - h) / h * 100:.1f}% over)")
    else:
        msg = over_message(what, n, h, where)
    raise ConstraintError(msg, constraint=name, need=n, have=h)
