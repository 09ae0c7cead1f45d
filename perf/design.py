"""A spatial accelerator design: per-kernel parallelism and buffering, clock, quantisation.

The ``--design`` JSON format (``explore --save`` writes it, ``estimate --design`` reads it)::

    {
      "name": "my-design",                 # optional
      "clock_mhz": 250,
      "quant": "W8A8",                     # perf.workload.QUANTS: W8A8 | W4A8 | ... | fp16
      "token_tile": 8,                     # token rows streamed between kernels per beat group
      "kernels": {                         # q k v qk pv o f1 f2 required; fg (gated FFN) = f1
        "q":  {"rows": 8, "cols": 16, "packing": 2, "channels": 1},   # channels optional
        ...
      },
      "lanes": {"softmax": 8, "norm": 8, "act": 16},   # non-linear units, elements per cycle
      "layers_on_chip": 1,                 # C: layers whose hardware exists at once
      "weights": "stream",                 # stream | on_chip | auto
      "decode_kernel": "gemv",             # gemv (paper's GEMV engines) | gemm (hw/ GEMM, m=1)
      "double_buffer": true,
      "weight_buffer": "tile",             # tile | layer: streamed weights' on-chip buffer
      "host_sync_us": 0,                   # host synchronisation per layer (µs), if any
      "kv_sync": "layer",                  # layer | tile: when prefill attention may start
      "stream_order": "tile",              # tile | production: how a kernel reads its input
      "regions": {"q": "SLR0", ...}        # optional: die of each kernel or lanes unit
    }

The kernels are named as the ``hw`` layer names its stages: ``q k v`` and ``o`` (output
projection), ``qk`` (Q·Kᵀ), ``pv`` (softmax·V), ``f1 f2`` and ``fg`` (the gate projection of a
gated FFN, which ``hw`` does not build yet). The ``lanes`` keys are the non-linear units by
kind, not stages: ``softmax``; ``norm`` serves both norm stages; ``act`` serves the activation
stage, which is named after its function (``gelu``, ``relu``, ``silu``). Files written before
the kernels had these names (``p``, ``a1``, ``a2`` for ``o``, ``qk``, ``pv``, in ``kernels`` or
``regions``) still load, with a :class:`OldNamesWarning` that says so.

A kernel of ``rows``×``cols`` DSPs with ``packing`` MACs per DSP is the ``hw`` GEMM
``GemmConfig(rows=rows, cols=cols*packing, ...)``: packing pairs adjacent output columns that
share an activation in one DSP (AMD WP486), so the logical array has ``cols*packing`` columns
and ``rows*cols*packing`` MACs per cycle. :meth:`Design.gemm_configs` exports them, with
``dsp_packing`` set for packing 2 (and for 4, which ``hw`` builds as 2 per multiplier).
"""

from __future__ import annotations

import dataclasses
import json
import types
import warnings

from ..hw.blocks.gemm_config import GemmConfig
from .errors import ConfigError
from .kernels import gemm_lanes
from .models import get_model
from .workload import ATTENTION, LINEAR, get_quant

__all__ = ["KernelDesign", "Design", "load_design", "save_design", "KERNELS", "LANE_UNITS",
           "WEIGHT_BUFFERS", "KV_SYNCS", "STREAM_ORDERS",
           "OLD_KERNEL_NAMES", "OldNamesWarning", "layer_arch", "hw_arch", "gemm_a_widths",
           "layer_config_dict", "save_layer_config"]

KERNELS = ("q", "k", "v", "qk", "pv", "o", "f1", "fg", "f2")
LANE_UNITS = ("softmax", "norm", "act")
#: On-chip buffer of a streamed kernel's weights: ``tile`` (double-buffered tiles, 512 words
#: per column group: the channel runs a tile ahead of the array) or ``layer`` (a FIFO of one
#: layer's whole matrix: the channel streams without pause, one layer ahead, so every kernel
#: fetches its next weights while the others compute, and in prefill every token tile reuses
#: the buffered matrix instead of streaming it again).
WEIGHT_BUFFERS = ("tile", "layer")
#: When a prefill's attention may start (``Design.kv_sync``): ``layer`` (the paper's
#: synchronisation: K and V of the whole prompt complete first) or ``tile`` (a causal model's
#: query tile starts once the K/V tiles up to it are out, so Q/K/V stream into attention as
#: every other stage does; a bidirectional encoder needs every key and waits regardless).
KV_SYNCS = ("layer", "tile")
#: How a linear kernel reads the stream its producer writes, in prefill
#: (``Design.stream_order``): ``tile`` (the ``hw`` GEMM: a whole token tile of its input first,
#: then one output column group after another, each over the whole of k, so the first tile's
#: outputs come after a whole pass over the weights) or ``production`` (its loops in the order
#: the producer writes: each input beat, as it arrives, updates every output of the token tile,
#: kept as partial sums in an on-chip accumulator of ``rows × n``; of the first tile only the
#: work on its last input beat follows the producer, so the kernels' fills no longer add up
#: along the layer's chain).
STREAM_ORDERS = ("tile", "production")
#: Kernel names of design files written before the kernels took the ``hw`` stage names.
OLD_KERNEL_NAMES = {"p": "o", "a1": "qk", "a2": "pv"}
_POW2 = (1, 2, 4, 8, 16, 32, 64)


class OldNamesWarning(UserWarning):
    """A design (file) uses the old kernel names ``p``, ``a1``, ``a2``; it was read with the
    new ones. The CLI prints it as an ``llmloom: note:`` line."""


def _unknown_kernel(name, allowed, where=""):
    """The error for an unknown kernel, saying which new name an old one is now."""
    new = OLD_KERNEL_NAMES.get(name)
    return ConfigError(f"{where}unknown kernel {name!r}"
                       + (f" (the old name of {new!r})" if new else "")
                       + f"; allowed: {', '.join(allowed)}")


def _int_in(owner, name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{owner}{name}={value!r} is out of range; allowed: {lo}..{hi}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class KernelDesign:
    """Parallelism of one GEMM kernel: a ``rows``×``cols`` DSP array, ``packing`` MACs per DSP.

    Parameters
    ----------
    rows : int
        Token rows computed at once (1..64); also the weight reuse factor r_i in prefill.
    cols : int
        DSP columns (1..64); ``cols*packing`` output features computed at once.
    packing : int
        MACs per DSP (1, 2 or 4), limited by the device and quantisation.
    channels : int or None
        Off-chip channels (one AXI port each) the kernel's streamed operands come from;
        ``None``: automatic (:func:`llmloom.perf.spatial.port_plan`: on HBM a share of the
        memory's ports by the bytes each kernel streams; on DDR a share of its bandwidth).
    """

    rows: int = 8
    cols: int = 16
    packing: int = 1
    channels: int | None = None

    def __post_init__(self):
        _int_in("", "rows", self.rows, 1, 64)
        _int_in("", "cols", self.cols, 1, 64)
        if self.packing not in (1, 2, 4):
            raise ConfigError(f"packing={self.packing!r} is not allowed; allowed: 1 | 2 | 4")
        if self.channels is not None:
            _int_in("", "channels", self.channels, 1, 1024)

    @property
    def logical_cols(self):
        return self.cols * self.packing

    @property
    def macs_per_cycle(self):
        return self.rows * self.cols * self.packing

    @property
    def dsp(self):
        return self.rows * self.cols

    def to_dict(self):
        d = {"rows": self.rows, "cols": self.cols, "packing": self.packing}
        if self.channels is not None:
            d["channels"] = self.channels
        return d


@dataclasses.dataclass(frozen=True, kw_only=True)
class Design:
    """A whole spatial design (one layer's hardware, possibly ``layers_on_chip`` copies).

    See the module docstring for the JSON form and field meanings.
    """

    clock_mhz: float
    kernels: types.MappingProxyType
    quant: str = "W8A8"
    token_tile: int = 8
    lanes: types.MappingProxyType = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({"softmax": 8, "norm": 8, "act": 16}))
    layers_on_chip: int = 1
    weights: str = "auto"
    decode_kernel: str = "gemv"
    double_buffer: bool = True
    weight_buffer: str = "tile"
    host_sync_us: float = 0.0
    kv_sync: str = "layer"
    stream_order: str = "tile"
    regions: types.MappingProxyType | None = None
    name: str = "custom"
    source: str = ""

    def __post_init__(self):
        if isinstance(self.clock_mhz, bool) or not isinstance(self.clock_mhz, int | float) \
                or not 1 <= self.clock_mhz <= 1000:
            raise ConfigError(f"clock_mhz={self.clock_mhz!r} is out of range; allowed: 1..1000")
        get_quant(self.quant)
        _int_in("", "token_tile", self.token_tile, 1, 64)
        _int_in("", "layers_on_chip", self.layers_on_chip, 1, 1024)
        if self.weights not in ("stream", "on_chip", "auto"):
            raise ConfigError(f"weights={self.weights!r} is not allowed; allowed: "
                              "stream | on_chip | auto")
        if self.weight_buffer not in WEIGHT_BUFFERS:
            raise ConfigError(f"weight_buffer={self.weight_buffer!r} is not allowed; allowed: "
                              f"{' | '.join(WEIGHT_BUFFERS)}")
        if isinstance(self.host_sync_us, bool) or not isinstance(self.host_sync_us, int | float) \
                or not 0 <= self.host_sync_us <= 1e6:
            raise ConfigError(f"host_sync_us={self.host_sync_us!r} is out of range; allowed: "
                              "0..1000000")
        if self.kv_sync not in KV_SYNCS:
            raise ConfigError(f"kv_sync={self.kv_sync!r} is not allowed; allowed: "
                              f"{' | '.join(KV_SYNCS)}")
        if self.stream_order not in STREAM_ORDERS:
            raise ConfigError(f"stream_order={self.stream_order!r} is not allowed; allowed: "
                              f"{' | '.join(STREAM_ORDERS)}")
        if self.decode_kernel not in ("gemv", "gemm"):
            raise ConfigError(f"decode_kernel={self.decode_kernel!r} is not allowed; allowed: "
                              "gemv | gemm")
        kernels = dict(self.kernels)
        for name in kernels:
            if name not in KERNELS:
                raise _unknown_kernel(name, KERNELS)
        missing = [k for k in KERNELS if k != "fg" and k not in kernels]
        if missing:
            raise ConfigError(f"design lacks kernels {', '.join(missing)}; required: "
                              f"{', '.join(k for k in KERNELS if k != 'fg')} (fg optional)")
        kernels = {k: v if isinstance(v, KernelDesign) else KernelDesign(**v)
                   for k, v in kernels.items()}
        kernels.setdefault("fg", kernels["f1"])
        object.__setattr__(self, "kernels", types.MappingProxyType(kernels))
        lanes = {"softmax": 8, "norm": 8, "act": 16, **dict(self.lanes)}
        for unit, v in lanes.items():
            if unit not in LANE_UNITS:
                raise ConfigError(f"unknown lanes unit {unit!r}; allowed: "
                                  f"{', '.join(LANE_UNITS)}")
            _int_in("lanes.", unit, v, 1, 1024)
        object.__setattr__(self, "lanes", types.MappingProxyType(lanes))
        if self.regions is not None:
            regions = dict(self.regions)
            for k in regions:
                if k not in KERNELS and k not in LANE_UNITS:
                    raise _unknown_kernel(k, KERNELS + LANE_UNITS, "regions: ")
            object.__setattr__(self, "regions", types.MappingProxyType(regions))

    # Derived -----------------------------------------------------------------------------------
    @property
    def dsp_arrays(self):
        """DSPs of the GEMM arrays of one layer copy (fg counted even if the model has none)."""
        return sum(k.dsp for k in self.kernels.values())

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """The documented JSON form."""
        d = {"name": self.name, "clock_mhz": self.clock_mhz, "quant": self.quant,
             "token_tile": self.token_tile,
             "kernels": {k: v.to_dict() for k, v in self.kernels.items()},
             "lanes": dict(self.lanes), "layers_on_chip": self.layers_on_chip,
             "weights": self.weights, "decode_kernel": self.decode_kernel,
             "double_buffer": self.double_buffer}
        if self.weight_buffer != "tile":
            d["weight_buffer"] = self.weight_buffer
        if self.host_sync_us:
            d["host_sync_us"] = self.host_sync_us
        if self.kv_sync != "layer":
            d["kv_sync"] = self.kv_sync
        if self.stream_order != "tile":
            d["stream_order"] = self.stream_order
        if self.regions is not None:
            d["regions"] = dict(self.regions)
        if self.source:
            d["source"] = self.source
        return d

    @classmethod
    def from_dict(cls, values):
        """Build from the JSON form, naming any unknown key.

        The old kernel names (:data:`OLD_KERNEL_NAMES`: ``p``, ``a1``, ``a2``) are read as the
        new ones, with an :class:`OldNamesWarning`."""
        design, old = cls._from_dict(values)
        if old:
            _warn_old_names("design", old)
        return design

    @classmethod
    def _from_dict(cls, values):
        """``(design, old kernel names it used)``."""
        if not isinstance(values, dict):
            raise ConfigError("a design must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in names:
                raise ConfigError(f"unknown design field {key!r}; fields: "
                                  f"{', '.join(sorted(names))}")
        if "clock_mhz" not in values or "kernels" not in values:
            raise ConfigError("a design needs at least clock_mhz and kernels")
        if not isinstance(values["kernels"], dict):
            raise ConfigError("kernels must be an object of kernel name to array")
        old = []
        renamed = {}
        for field in ("kernels", "regions"):
            if not isinstance(values.get(field), dict):
                continue
            entries = {}
            for k, v in values[field].items():
                new = OLD_KERNEL_NAMES.get(k, k)
                if new != k:
                    if new in values[field]:
                        raise ConfigError(f"{field} has both {k!r} and {new!r} ({k!r} is the "
                                          f"old name of {new!r}); keep {new!r}")
                    if k not in old:
                        old.append(k)
                entries[new] = v
            renamed[field] = entries
        values = {**values, **renamed}
        old.sort(key=list(OLD_KERNEL_NAMES).index)
        kernels = {}
        for k, v in values["kernels"].items():
            if not isinstance(v, dict):
                raise ConfigError(f"kernels.{k} must be an object like "
                                  '{"rows": 8, "cols": 16, "packing": 2}')
            bad = set(v) - {"rows", "cols", "packing", "channels"}
            if bad:
                raise ConfigError(f"unknown field {sorted(bad)[0]!r} in kernels.{k}; fields: "
                                  "channels, cols, packing, rows")
            try:
                kernels[k] = KernelDesign(**v)
            except ConfigError as e:
                raise ConfigError(f"kernels.{k}.{e}") from None
        return cls(**{**values, "kernels": kernels}), old

    def gemm_configs(self, model, *, tp=1):
        """The linear kernels as the very ``GemmConfig`` objects the ``hw`` GEMM takes.

        Parameters
        ----------
        model : ModelSpec or str
        tp : int
            Tensor-parallel degree: each device holds a 1/tp slice of every weight matrix.

        Returns
        -------
        dict of str to GemmConfig
            ``q k v o f1 f2`` (and ``fg`` for a gated FFN), with ``cols = cols*packing``
            (logical output columns), the fewest input ``lanes`` that keep the array fed and
            ``a_width`` of :func:`gemm_a_widths` (the ``hw`` layer's input widths).

        Raises
        ------
        ConfigError
            The quantisation or a kernel's shape is outside what the ``hw`` GEMM supports.
        """
        model = get_model(model)
        q = get_quant(self.quant)
        if q.a_bits != 8 or q.w_bits not in (4, 8):
            raise ConfigError(f"quant={self.quant} cannot be built by the hw GEMM; allowed: "
                              "W8A8 | W4A8")
        shapes = linear_shapes(model, tp)
        widths = gemm_a_widths(model, q)
        out = {}
        for name in LINEAR:
            if name == "fg" and not model.gated_ffn:
                continue
            kd = self.kernels[name]
            k, n = shapes[name]
            if kd.logical_cols > 64:
                raise ConfigError(f"kernel {name}: cols*packing={kd.logical_cols} is out of "
                                  "range for GemmConfig.cols; allowed: 1..64")
            # hw packs two MACs per multiplier (dsp_packing), W8A8's weights or W4A8's codes
            # (hw.devices.packing_table: what hw builds, no more).
            try:
                out[name] = GemmConfig(rows=kd.rows, cols=kd.logical_cols, k=k, n=n,
                                       lanes=gemm_lanes(k, kd.rows, kd.logical_cols, n),
                                       a_width=widths[name], w_width=q.w_bits,
                                       dsp_packing=kd.packing > 1)
            except ConfigError as e:
                raise ConfigError(f"kernel {name}: {e}") from None
        return out

    def layer_config(self, model, *, seq, engine="gemm"):
        """The design as the ``hw`` layer's :class:`~llmloom.hw.layers.config.LayerConfig`
        (what ``llmloom run gpt2-block|bert-layer --config`` takes), with notes on what did
        not carry over exactly.

        The design's kernels map onto the layer's arrays: q, k, v, o → ``linear_rows`` ×
        ``linear_cols``; f1, f2 → ``ffn_rows`` × ``ffn_cols``; qk → ``qk_*``; pv → ``pv_*``;
        each ``cols`` is the kernel's ``cols·packing`` (logical columns, as
        :meth:`gemm_configs`). The layer has one array size per group, so where the design's
        q, k, v, o (or f1, f2)
        differ the largest (most MACs per cycle) is taken; a ``cols`` that does not divide
        the output width the layer RTL needs (d_model; gcd(d_model, d_ff) for the FFN;
        d_head for P·V; the sequence for a bidirectional Q·Kᵀ) becomes its largest divisor
        below. ``lanes`` (one stream width for every stage) is the widest of the design's
        non-linear units (softmax, norm, act), lowered until it divides d_model, d_ff and
        d_head and fits every array's columns (and, with ``engine="gemv"``, divides the
        rows). Heads run in sequence (``head_engines=1``: the design's qk, pv are single
        arrays). Every such change is a note.

        Parameters
        ----------
        model : ModelSpec or str
            A GPT-2-like decoder (causal, layernorm, GELU, no gate, no GQA) or a BERT-like
            encoder.
        seq : int
            Longest sequence the layer holds: for a decoder the KV cache capacity (rounded
            up to a multiple of ``lanes`` and Q·Kᵀ's columns, which leaves positions unused);
            for an encoder the sequence length itself.
        engine : "gemm" | "gemv"
            :attr:`LayerConfig.engine` of every linear stage.

        Returns
        -------
        (LayerConfig, list of str)
            The config (uncalibrated: dimensions and parallelism) and the notes.

        Raises
        ------
        ConfigError
            The model has no ``hw`` layer, or the result cannot be built.
        """
        import math

        from ..hw.layers.common import check_layer_shape
        from ..hw.layers.config import ENGINES, LayerConfig

        model = get_model(model)
        if engine not in ENGINES:
            raise ConfigError(f"engine={engine!r} is not allowed; allowed: "
                              f"{' | '.join(ENGINES)}")
        arch = layer_arch(model)
        d, h, f = model.d_model, model.n_heads, model.d_ff
        dh = d // h
        _int_in("", "seq", seq, 1, model.max_positions)
        notes = []
        if self.quant != "W8A8-channel":
            notes.append(f"quant {self.quant} → W8A8-channel: the exported layer's linear "
                         "stages are int8 × int8 with a scale per channel; weight_groups "
                         "(GGUF's Q8_0, the W8A8 quant) or weight_bits 4 (Q4_1, W4A8) are "
                         "its fields to set, two products per DSP48E2 with dsp_packing")

        def largest(group, names):
            ks = [(n, self.kernels[n]) for n in names]
            name, kd = max(ks, key=lambda nk: nk[1].macs_per_cycle)
            if len({(k.rows, k.logical_cols) for _, k in ks}) > 1:
                sizes = ", ".join(f"{n} {k.rows}×{k.logical_cols}" for n, k in ks)
                notes.append(f"the design's {group} arrays differ ({sizes}); the layer has "
                             f"one size for them: took the largest, {name}'s "
                             f"{kd.rows}×{kd.logical_cols}")
            if kd.logical_cols > 64:
                raise ConfigError(f"kernel {name}: cols*packing={kd.logical_cols} is out of "
                                  "range for the layer's arrays; allowed: 1..64")
            return [kd.rows, kd.logical_cols]

        arrays = {"linear": largest("q, k, v, o", ("q", "k", "v", "o")),
                  "ffn": largest("f1, f2", ("f1", "f2")),
                  "qk": largest("qk", ("qk",)), "pv": largest("pv", ("pv",))}
        widths = {"linear": (d, "d_model"), "ffn": (math.gcd(d, f), "gcd(d_model, d_ff)"),
                  "pv": (dh, "d_head")}
        if arch == "bert":
            widths["qk"] = (seq, "the sequence length")
        for group, (width, what) in widths.items():
            rows, cols = arrays[group]
            fit = max(c for c in range(1, cols + 1) if width % c == 0)
            if fit != cols:
                notes.append(f"{group}_cols {cols} → {fit}: the layer RTL needs a divisor of "
                             f"{what} = {width} ({rows * (cols - fit)} fewer MACs/cycle)")
                arrays[group][1] = fit

        want = min(64, max(self.lanes.values()))
        common = math.gcd(d, f, dh, seq if arch == "bert" else 0)
        cols = [c for _, c in arrays.values()]

        def misfit(lanes):
            """Why ``lanes`` cannot be the layer's stream width (``None``: it can)."""
            if common % lanes:
                return ("does not divide d_model, d_ff, d_head"
                        + (" and seq" if arch == "bert" else ""))
            for g, (_, c) in arrays.items():
                if max(c, lanes) % min(c, lanes):
                    return f"and {g}_cols {c}: neither is a multiple of the other"
            for g in ("linear", "ffn"):
                if engine == "gemv" and arrays[g][0] % lanes:
                    return f"does not divide {g}_rows {arrays[g][0]} (engine gemv)"
            return None

        lanes = max(n for n in range(1, want + 1) if misfit(n) is None)
        units = "/".join(str(self.lanes[u]) for u in LANE_UNITS)
        if lanes != want or len(set(self.lanes.values())) > 1:
            notes.append(f"lanes {lanes}: one stream width for every stage (the design's "
                         f"{'/'.join(LANE_UNITS)} units take {units} elements per cycle"
                         + (f"; {want} {misfit(want)}" if lanes != want else "") + ")")

        layer_seq = seq
        if arch == "gpt2":
            step = math.lcm(lanes, arrays["qk"][1])
            layer_seq = -(-seq // step) * step
            if layer_seq != seq:
                notes.append(f"seq {seq} → {layer_seq}: the KV cache capacity rounded up to "
                             f"a multiple of lanes and qk_cols ({step})")
        fields = {f"{g}_{a}": arrays[g][i] for g in arrays for i, a in enumerate(("rows",
                                                                                   "cols"))}
        # the linear arrays pack two columns per multiplier where the design packs them (the
        # layer has one packing for all its linear stages, and needs even columns for it)
        packs = any(self.kernels[n].packing > 1 for n in LINEAR if n in self.kernels)
        packing = packs and engine == "gemm" and all(arrays[g][1] % 2 == 0
                                                     for g in ("linear", "ffn"))
        if packs and not packing:
            notes.append("dsp_packing off: the layer packs only with engine gemm and even "
                         "linear_cols and ffn_cols")
        cfg = LayerConfig(arch=arch, d_model=d, heads=h, d_ff=f, seq=layer_seq, lanes=lanes,
                          engine=engine, head_engines=1, dsp_packing=packing, **fields)
        check_layer_shape(cfg)
        return cfg, notes


#: perf's kernel of each ``hw`` linear stage whose name is not perf's (LLaMA's gated FFN:
#: ``up`` is the kernel ``f1`` of a plain FFN, ``gate`` beside it ``fg``, ``down`` ``f2``).
KERNEL_OF_STAGE = {"up": "f1", "gate": "fg", "down": "f2"}


def hw_arch(model):
    """The ``hw`` layer (a key of :data:`~llmloom.hw.layers.config.DESCRIPTIONS`) that
    ``model``'s layer is, matched on the descriptions themselves: norm, activation, causal or
    not, gated FFN (a ``mul`` stage) or not, and grouped-query attention only where the
    description has K/V projections of their own width; ``None`` when no layer matches (OPT's
    ReLU, say)."""
    from ..hw.layers.config import DESCRIPTIONS
    model = get_model(model)
    for arch, desc in DESCRIPTIONS.items():
        gqa_ok = any(st.features == "kv" for st in desc.of_kind("linear"))
        if (desc.norm == model.norm and desc.act.split("_")[0] == model.activation
                and desc.causal == model.decoder
                and bool(desc.of_kind("mul")) == model.gated_ffn
                and (gqa_ok or model.n_kv_heads == model.n_heads)):
            return arch
    return None


def gemm_a_widths(model, quant):
    """Bits of each linear kernel's input activations (``GemmConfig.a_width``), by perf's
    kernel name (``q k v o f1 fg f2``).

    A grouped quantisation (``W8A8``, ``W4A8``: ``hw``'s weight groups) is llmloom's own
    design: its kernels are the ``hw`` layer's linear stages (:func:`hw_arch`), which read
    what the layer's description in :data:`~llmloom.hw.layers.description.TRAINED_SCHEME`
    says (``LayerDescription.width`` of each stage's input: the per-token ``narrow`` inputs,
    LLaMA's int10, BERT's int9, GPT-2's int8). A per-channel one (``W8A8-channel``,
    ``W4A8-channel``) stands for the published designs, whose activations are int8, and any
    other quantisation or a model without an ``hw`` layer takes the quantisation's
    ``a_bits``."""
    from ..hw.layers.config import DESCRIPTIONS
    from ..hw.layers.description import TRAINED_SCHEME
    model, q = get_model(model), get_quant(quant)
    widths = dict.fromkeys(LINEAR, q.a_bits)
    arch = hw_arch(model)
    if q.grouped and arch is not None:
        desc = DESCRIPTIONS[arch].for_scheme(TRAINED_SCHEME)
        for st in desc.of_kind("linear"):
            widths[KERNEL_OF_STAGE.get(st.name, st.name)] = desc.width(st.inputs[0])
    return widths


def layer_arch(model):
    """``"gpt2"`` or ``"bert"``: the ``hw`` layer a catalogue model maps onto, or
    :class:`ConfigError` when it has none."""
    model = get_model(model)
    arch = hw_arch(model)
    if arch in ("gpt2", "bert"):
        return arch
    other = [what for what, bad in (
        (f"{model.norm}", model.norm != "layernorm"), (f"{model.activation}",
                                                       model.activation != "gelu"),
        ("a gated FFN", model.gated_ffn),
        ("grouped-query attention", model.n_kv_heads != model.n_heads)) if bad]
    if other:
        raise ConfigError(f"model {model.name} ({', '.join(other)}) has no hw layer; allowed: "
                          "a GPT-2-like decoder or BERT-like encoder (layernorm, GELU, no "
                          "gate, no grouped-query attention)")


def layer_config_dict(cfg):
    """A :class:`~llmloom.hw.layers.config.LayerConfig`'s JSON form without the unset
    (calibration) fields: what ``llmloom run gpt2-block|bert-layer --config`` reads."""
    return {k: v for k, v in cfg.to_dict().items() if v is not None}


def save_layer_config(cfg, path):
    """Write :func:`layer_config_dict` of ``cfg`` as JSON."""
    with open(path, "w") as fh:
        json.dump(layer_config_dict(cfg), fh, indent=2)
        fh.write("\n")


def linear_shapes(model, tp=1):
    """``{kernel: (k, n)}`` of one device's slice under tensor parallelism ``tp`` (Megatron:
    q, k, v, f1, fg split by columns; o and f2 by rows)."""
    d, dkv, dff = model.d_model, model.d_kv, model.d_ff
    return {"q": (d, d // tp), "k": (d, dkv // tp), "v": (d, dkv // tp), "o": (d // tp, d),
            "f1": (d, dff // tp), "fg": (d, dff // tp), "f2": (dff // tp, d)}


def load_design(path):
    """Read a design JSON file (the format in this module's docstring); a file with the old
    kernel names is read with the new ones and an :class:`OldNamesWarning` naming the file."""
    try:
        with open(path) as f:
            values = json.load(f)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    design, old = Design._from_dict(values)
    if old:
        _warn_old_names(f"design file {path}", old)
    return design


def _warn_old_names(what, old):
    warnings.warn(f"{what} uses the old kernel names {', '.join(old)}; read as "
                  f"{', '.join(OLD_KERNEL_NAMES[k] for k in old)}", OldNamesWarning,
                  stacklevel=3)


def save_design(design, path):
    """Write ``design`` as JSON; :func:`load_design` reads it back equal."""
    with open(path, "w") as f:
        json.dump(design.to_dict(), f, indent=2)
        f.write("\n")


assert set(ATTENTION) < set(KERNELS)
