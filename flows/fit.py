"""What fits: the largest GEMM and the largest GPT-2 block each open-toolchain board takes.

Both searches run on the resource model (``llmloom.perf.resources``, milliseconds a design)
and then confirm the winner with the real flow, Yosys and nextpnr:

* :func:`largest_gemm`: the board's portable core, :class:`~llmloom.boards.hostlink.HostLink`
  (the GEMM behind a UART, with on-chip activation and output memories; four pins, so no
  measurement wrapper), with the board's default ``k``, ``n``, ``lanes`` and ``max_rows``.
  Candidates are ``rows × cols`` arrays (``rows <= cols <= 2·rows``), most MACs first; those the
  model says fit the device are synthesised in that order, and the first that places and
  routes with its Fmax at the board clock is the answer.
* :func:`largest_layer`: a GPT-2 block (W8A8, ``d_ff = 4·d_model``, ``d_head = 64`` as in
  GPT-2, or one head of the whole width below 64), largest ``d_model`` first, then the
  longest ``seq`` (KV cache), then the most multipliers in its arrays: the model finds the
  smallest parallelism (one lane, 1×1 arrays) of the largest size that fits, then grows
  arrays and lanes greedily (the move adding the most MACs per cycle that still fits, lanes
  last). The winner is synthesised, placed and routed inside the measurement wrapper
  (``flows.synth``).

"Fits" for the model: every resource within the device, LUTs and FFs within
``LOGIC_CEILING`` of it (room for routing and the model's LUT/FF tolerance), block RAMs within
``BRAM_CEILING``. For the flow:
nextpnr places and routes it and its Fmax reaches the board clock.
"""

from __future__ import annotations

import dataclasses

from ..boards.hostlink import HostLink
from ..boards.platforms import get_board
from ..hw.blocks.uart import UartConfig, uart_divisor

__all__ = ["FitResult", "LayerFit", "candidates", "largest_gemm", "largest_layer",
           "layer_config", "layer_fits", "fits_table", "LOGIC_CEILING", "BRAM_CEILING"]

#: The share of a device's LUTs and FFs the model may fill: nextpnr needs slack to route,
#: and the model's LUT/FF estimates are held to synthesis within 35 % only.
LOGIC_CEILING = 0.85

#: The share of the block RAMs the model may fill: at 100 % of the ECP5-85F's DP16KDs a GPT-2
#: block (d_model 128, seq 128) synthesised, but nextpnr had not routed it after 50 minutes
#: (with every DP16KD used, the memories' ports sit all over the die).
BRAM_CEILING = 0.90


@dataclasses.dataclass
class FitResult:
    board: str
    target: str
    rows: int | None
    cols: int | None
    config: dict | None
    result: dict | None          # the synthesis result of the winner
    tried: list                  # [{rows, cols, estimate, fits, fmax_mhz, reason}]
    clock_mhz: float
    estimate: dict | None = None   # the model's numbers of the winner
    estimated: tuple | None = None  # (rows, cols) the model alone picks

    @property
    def macs(self):
        return (self.rows or 0) * (self.cols or 0)

    def to_dict(self):
        return {**dataclasses.asdict(self), "macs": self.macs}


def candidates(dsp_capacity, max_side=64):
    """``(rows, cols)`` with ``rows <= cols <= 2 rows`` and ``rows × cols <= dsp_capacity``,
    most MACs first (squarer first among equals)."""
    out = [(r, c) for r in range(1, max_side + 1) for c in range(r, min(2 * r, max_side) + 1)
           if r * c <= dsp_capacity]
    return sorted(out, key=lambda rc: (-rc[0] * rc[1], rc[1] - rc[0]))


def _within(estimate, capacity, ceiling=LOGIC_CEILING):
    """The resources over the model's budget (empty: it fits)."""
    over = []
    for key, have in capacity.items():
        limit = have * (ceiling if key in ("lut", "ff") else
                        BRAM_CEILING if key == "bram" else 1.0)
        if estimate[key] > limit:
            over.append(f"{key} {estimate[key]:g} > {limit:g}")
    return over


def _board_core(board):
    spec = get_board(board)
    if not spec.open_toolchain:
        raise ValueError(f"board {board!r} needs vendor tools; what fits is searched on the "
                         "open-toolchain boards only (ulx3s-85f, icebreaker)")
    from .synth_targets import get_target
    target = get_target(spec.target)
    clk_hz = spec.platform().default_clk_frequency
    return spec, target, clk_hz


def largest_gemm(board, *, max_tries=4, confirm=True, progress=None, on_try=None,
                 pnr_timeout=None):
    """The largest GEMM array that fits ``board`` (an open-toolchain board name).

    The model ranks the candidates and drops those it says do not fit; with ``confirm`` the
    rest are synthesised, placed and routed in order until one fits at the board clock (at
    most ``max_tries``). Returns a :class:`FitResult`; ``rows`` is ``None`` when none of
    those tried fits, and without ``confirm`` the model's pick with ``result`` ``None``.
    ``pnr_timeout`` (seconds) bounds each place and route: one that does not finish counts
    as not fitting.
    """
    from ..perf.resources import estimate_hostlink
    from .synth import synthesize

    spec, target, clk_hz = _board_core(board)
    uart = UartConfig(divisor=uart_divisor(clk_hz, 115200))
    tried, ranked = [], []
    for rows, cols in candidates(target.capacity["dsp"]):
        cfg = spec.design.replace(rows=rows, cols=cols)
        est = estimate_hostlink(cfg, spec.max_rows, target.family)
        over = _within(est, target.capacity)
        if over:
            tried.append({"rows": rows, "cols": cols, "estimate": est, "fits": False,
                          "fmax_mhz": None, "reason": "model: " + ", ".join(over)})
            continue
        ranked.append((rows, cols, cfg, est))
    clock = clk_hz / 1e6
    if not ranked:
        return FitResult(spec.name, target.name, None, None, None, None, tried, clock)
    picked = ranked[0][:2]
    if not confirm:
        rows, cols, cfg, est = ranked[0]
        return FitResult(spec.name, target.name, rows, cols, cfg.to_dict(), None, tried,
                         clock, est, picked)
    for rows, cols, cfg, est in ranked[:max_tries]:
        link = HostLink(cfg, max_rows=spec.max_rows, uart=uart)
        res = synthesize(link, target.name, clock_mhz=clock, progress=progress,
                         pnr_timeout=pnr_timeout)
        fast_enough = res.fmax_mhz is not None and res.fmax_mhz >= clock
        reason = res.raw.get("pnr_error") or ("" if fast_enough else
                                              f"Fmax {res.fmax_mhz} < {clock:g} MHz")
        row = {"rows": rows, "cols": cols, "estimate": est, "fits": bool(res.fits and
                                                                            fast_enough),
               "fmax_mhz": res.fmax_mhz, "reason": reason, "synth": res.resources()}
        tried.append(row)
        if on_try:
            on_try(row)
        if row["fits"]:
            return FitResult(spec.name, target.name, rows, cols, cfg.to_dict(),
                             res.to_dict(raw=False), tried, clock, est, picked)
    return FitResult(spec.name, target.name, None, None, None, None, tried, clock, None,
                     picked)


# ---- the largest layer --------------------------------------------------------------------------
@dataclasses.dataclass
class LayerFit:
    board: str
    target: str
    config: dict | None           # LayerConfig fields (shape-only) of the winner
    estimate: dict | None         # the model's numbers (calibrated as synthesis builds it)
    macs_per_cycle: int
    result: dict | None           # the synthesis (and place and route) result, if confirmed
    clock_mhz: float
    reason: str = ""              # why nothing fits, or why the winner was not confirmed
    smallest: dict | None = None  # the smallest layer's estimate (when nothing fits)
    rejected: list = dataclasses.field(default_factory=list)  # confirmed not to fit

    def to_dict(self):
        return dataclasses.asdict(self)


#: The sizes tried, largest first: d_model, then seq.
LAYER_D_MODELS = (512, 448, 384, 320, 256, 192, 128, 64, 32)
LAYER_SEQS = (1024, 512, 256, 128, 64, 32, 16)
_ARRAYS = ("linear", "ffn", "qk", "pv")


def layer_config(d_model, seq, *, lanes=1, arrays=None, arch="gpt2"):
    """The layer config the fit search tries at ``d_model`` and ``seq``: one head per 64 of
    width, d_ff = 4·d_model, and ``arrays`` (``{"linear": (rows, cols), ...}``, 1×1 where not
    given)."""
    from ..hw.layers.config import LayerConfig
    heads = max(1, d_model // 64)
    fields = {"arch": arch, "d_model": d_model, "heads": heads, "d_ff": 4 * d_model,
              "seq": seq, "lanes": lanes}
    for name in _ARRAYS:
        rows, cols = (arrays or {}).get(name, (1, 1))
        fields[f"{name}_rows"], fields[f"{name}_cols"] = rows, cols
    return LayerConfig(**fields)


def layer_fits(cfg, target, *, as_built=False):
    """``(estimate, over)`` of a layer config on ``target`` by the model (``over`` empty when
    it fits), or ``(None, [reason])`` when the RTL cannot be built for it. A shape-only
    config's nominal constants are used unless ``as_built``: then the config is calibrated
    as the flow builds it (slower: it quantises placeholder weights)."""
    from ..hw.blocks.attention import check_rtl
    from ..hw.config import ConfigError
    from ..perf.resources import estimate_block
    try:
        for name in ("q", "k", "v", "o", "f1", "f2"):
            g = cfg.linear(name)
            if g.n % g.cols or max(g.cols, cfg.lanes) % min(g.cols, cfg.lanes):
                return None, [f"{name}: cols={g.cols} does not suit n={g.n}, lanes={cfg.lanes}"]
        check_rtl(cfg.attention)
    except ConfigError as exc:
        return None, [str(exc)]
    block = "gpt2-block" if cfg.arch == "gpt2" else "bert-layer"
    if as_built:
        from .resources import synthesized_config
        cfg = synthesized_config(block, cfg)
    est = estimate_block(block, cfg, target.family)
    return est, _within(est, target.capacity)


def _peak_macs(cfg):
    """Multipliers in the layer's arrays (q, k, v, o share the linear shape; f1, f2 the ffn
    one; one Q·Kᵀ and one P·V)."""
    return (4 * cfg.linear_rows * cfg.linear_cols + 2 * cfg.ffn_rows * cfg.ffn_cols
            + cfg.qk_rows * cfg.qk_cols + cfg.pv_rows * cfg.pv_cols)


def _moves(cfg):
    """Configs with one more degree of parallelism: an array dimension or the lanes doubled."""
    out = []
    for name in _ARRAYS:
        for dim in ("rows", "cols"):
            field = f"{name}_{dim}"
            value = getattr(cfg, field)
            if value * 2 <= 64:
                out.append(cfg.replace(**{field: value * 2}))
    if cfg.lanes * 2 <= 64:
        out.append(cfg.replace(lanes=cfg.lanes * 2))
    return out


def largest_layer(board, *, arch="gpt2", confirm=True, max_tries=2, progress=None,
                  pnr_timeout=None):
    """The largest GPT-2 block (``arch="gpt2"``) or BERT layer that fits ``board`` (see the
    module text for the order). Returns a :class:`LayerFit`; with ``confirm`` its ``result``
    is the synthesis, place and route of the winner, or, when that does not fit (the model was
    wrong for it: ``reason`` says how), of the config one growth step before, up to
    ``max_tries`` configs."""
    from ..hw.config import ConfigError
    from .synth import synthesize

    spec, target, clk_hz = _board_core(board)
    clock = clk_hz / 1e6
    best = smallest = None
    for d_model in LAYER_D_MODELS:
        for seq in LAYER_SEQS:
            try:
                cfg = layer_config(d_model, seq, arch=arch)
            except ConfigError:
                continue
            est, over = layer_fits(cfg, target)
            if est is not None:
                smallest = (cfg, est, over)
            if est is not None and not over and not layer_fits(cfg, target, as_built=True)[1]:
                best = cfg
                break
        if best is not None:
            break
    if best is None:
        cfg, est, over = smallest
        return LayerFit(spec.name, target.name, None, None, 0, None, clock,
                        reason=f"the smallest layer tried (d_model {cfg.d_model}, seq "
                               f"{cfg.seq}, one lane, 1×1 arrays) needs " + ", ".join(over)
                               + f" on the {target.device}",
                        smallest={"config": _fields(cfg), "estimate": est})
    # grow: the move with the most multipliers gained (fewest DSPs among equals) that still
    # fits, by the nominal constants first and then as built
    history = [best]
    while True:
        options = []
        for cand in _moves(best):
            try:
                est, over = layer_fits(cand, target)
            except ConfigError:
                continue
            if est is None or over:
                continue
            # more lanes add no multiplier: taken only when no array can grow
            options.append((_peak_macs(cand) - _peak_macs(best), -est["dsp"], cand))
        options.sort(key=lambda o: (o[0], o[1]), reverse=True)
        for _gain, _dsp, cand in options:
            if not layer_fits(cand, target, as_built=True)[1]:
                best = cand
                history.append(best)
                break
        else:
            break
    block = "gpt2-block" if arch == "gpt2" else "bert-layer"
    fit, rejected = None, []
    # confirm: the winner, or (when the flow says it does not fit) the step before it
    for cand in reversed(history[-max_tries:] if confirm else history[-1:]):
        est, _ = layer_fits(cand, target, as_built=True)
        fit = LayerFit(spec.name, target.name, _fields(cand), est, _peak_macs(cand), None,
                       clock, rejected=list(rejected))
        if not confirm:
            break
        from ..sim.harness import get_harness
        res = synthesize(get_harness(block).component(cand), target.name, clock_mhz=clock,
                         progress=progress, pnr_timeout=pnr_timeout)
        fit.result = res.to_dict(raw=False)
        fast = res.fmax_mhz is not None and res.fmax_mhz >= clock
        if res.fits and fast:
            break
        fit.reason = res.raw.get("pnr_error") or f"Fmax {res.fmax_mhz} < {clock:g} MHz"
        rejected.append({"config": fit.config, "estimate": est, "synth": res.resources(),
                         "reason": fit.reason})
    return fit


def _fields(cfg):
    keep = ("arch", "d_model", "heads", "d_ff", "seq", "lanes", *(
        f"{a}_{d}" for a in _ARRAYS for d in ("rows", "cols")))
    return {k: getattr(cfg, k) for k in keep}


def fits_table(results):
    """A Markdown table of :func:`largest_gemm` results (for the README)."""
    lines = ["| board | FPGA | largest GEMM array | MACs/cycle | LUT | FF | DSP | BRAM | "
             "Fmax (board clock) |", "|---|---|---|---|---|---|---|---|---|"]
    for f in results:
        if f.rows is None:
            lines.append(f"| {f.board} | {f.target} | none of the tried sizes | | | | | | |")
            continue
        r, c = f.result, f.config
        cap = r["utilization"]
        lines.append(
            f"| {f.board} | {f.target} | {f.rows}×{f.cols} (k={c['k']}, n={c['n']}) | "
            f"{f.macs} | {r['lut']} ({cap['lut']:.0%}) | {r['ff']} ({cap['ff']:.0%}) | "
            f"{r['dsp']} ({cap['dsp']:.0%}) | {r['bram']} ({cap['bram']:.0%}) | "
            f"{r['fmax_mhz']:.1f} MHz ({f.clock_mhz:g} MHz) |")
    return "\n".join(lines)
