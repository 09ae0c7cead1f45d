"""Design-space exploration: search per-kernel parallelism, layers on chip and weight placement
under a device's constraints (and an optional DSP budget), vectorised with numpy.

The space: three array shapes -- one for the projections (q, k, v, o), one for attention (qk,
pv), one for the FFN (f1, fg, f2) -- each rows x cols (rows 1..64, cols 1..64 in powers of two
and their 1.5x steps), DSP packing at the device's maximum for the quantisation, and only shapes
whose ``cols*packing`` stays within ``GemmConfig``'s 64 columns (so every explored design
exports as ``hw`` configs); ``C`` layers on chip among
the divisors of the per-device layer count (up to 16); weights on chip whenever they fit.
Non-linear lanes follow the arrays (so softmax, norms and activation keep pace: the paper's
"fused, not changing the latency") rather than being searched.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys

import numpy as np

from .design import KERNELS, LANE_UNITS, gemm_a_widths
from .errors import ConfigError, ConstraintError
from .spatial import DesignBatch, evaluate, linear_cost, make_context

__all__ = ["ExploreResult", "explore", "OBJECTIVES", "space_size", "grid_batch"]

OBJECTIVES = ("prefill", "decode", "tokens-per-s")
_ROWS = (1, 2, 4, 8, 16, 24, 32, 48, 64)
_COLS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)   # DSP columns; cols*packing <= 64 is kept
_GROUPS = {"proj": ("q", "k", "v", "o"), "attn": ("qk", "pv"), "ffn": ("f1", "fg", "f2")}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExploreResult:
    """The outcome of :func:`explore`.

    ``best`` is a :class:`~llmloom.perf.design.Design`; ``value`` its objective (seconds, or
    tokens/s for ``tokens-per-s``); ``front`` the Pareto front of objective against DSPs,
    ``[{"dsp", "value", "design"}]`` with DSPs ascending.
    """

    objective: str
    best: object
    value: float
    front: list
    evaluated: int
    feasible: int
    context: object


def _layer_choices(n_layers_dev, limit=16):
    return [c for c in range(1, min(n_layers_dev, limit) + 1) if n_layers_dev % c == 0]


def _pow2_at_least(x):
    x = np.maximum(np.asarray(x, dtype=float), 1)
    return (2 ** np.ceil(np.log2(x))).astype(np.int64)


def space_size(n_layers_dev, pack=2):
    """Design points before DSP pruning: array shapes cubed times the C choices."""
    shapes = len(_ROWS) * sum(1 for c in _COLS if c * pack <= 64)
    return shapes ** 3 * len(_layer_choices(n_layers_dev))


def grid_batch(ctx, grid, C, *, clock_mhz, pack, decode_kernel, layer_buffer=False):
    """A :class:`DesignBatch` from index arrays into the shape grid: row ``i`` of ``grid``
    (points × 3 integers) picks the array shape of the projection, attention and FFN kernels,
    each an index ``r * len(_COLS) + c`` into the row and column choices :func:`explore`
    searches; every point has ``C`` layer copies, ``pack`` products per DSP, the given clock
    and decode kernel ("gemv" or "gemm"), and streamed weights buffered a tile or a whole
    layer deep (``layer_buffer``)."""
    m = ctx.model
    P = len(grid)
    rows, cols, packs, chan = {}, {}, {}, {}
    for gi, kernels in enumerate(_GROUPS.values()):
        r = np.asarray(_ROWS)[grid[:, gi] // len(_COLS)]
        c = np.asarray(_COLS)[grid[:, gi] % len(_COLS)]
        for k in kernels:
            rows[k], cols[k] = r, c
            packs[k] = np.full(P, pack, dtype=np.int64)
            chan[k] = np.full(P, np.nan)
    mac = {k: rows[k] * cols[k] * packs[k] for k in KERNELS}
    lanes = {"softmax": np.minimum(_pow2_at_least(mac["qk"] / m.d_head), 256),
             "norm": np.minimum(_pow2_at_least(mac["o"] / m.d_model * 2), 256),
             "act": np.minimum(_pow2_at_least(mac["f1"] / m.d_model * 2), 256)}
    assert set(lanes) == set(LANE_UNITS)
    return DesignBatch(rows=rows, cols=cols, pack=packs, chan=chan, lanes=lanes,
                       C=np.full(P, C, dtype=np.int64), weights=np.full(P, 2, dtype=np.int64),
                       gemv=np.full(P, decode_kernel == "gemv"), double=np.ones(P, dtype=bool),
                       clock_mhz=np.full(P, float(clock_mhz)),
                       token_tile=rows["q"].copy(),
                       layer_buffer=np.full(P, bool(layer_buffer)))


def _objective(result, objective, ctx, gen):
    if objective == "prefill":
        return result["prefill"]["latency_s"]
    if objective == "decode":
        return result["decode"]["latency_s"]
    # tokens-per-s: a whole request, prompt then `gen` tokens, as time per generated token
    return (result["prefill"]["latency_s"] + gen * result["decode"]["latency_s"]) / (
        gen * ctx.batch)


def explore(model, device, *, objective="prefill", quant="W8A8", seq=512, context=None,
            batch=1, tp=1, pp=1, budget_dsp=None, clock_mhz=None, decode_kernel="gemv",
            gen=128, progress=None, chunk=20000):
    """Search the design space for the best design under the device's constraints.

    Parameters
    ----------
    model, device : str or spec
    objective : {"prefill", "decode", "tokens-per-s"}
        Minimise prefill latency, decode latency per token, or maximise end-to-end tokens/s
        of a request (prompt of ``seq`` then ``gen`` generated tokens, times ``batch``).
    quant : str
    seq, context, batch, tp, pp : int
        As in :func:`llmloom.perf.spatial.make_context`.
    budget_dsp : int, optional
        DSPs the design may use (at most the device's).
    clock_mhz : float, optional
        Design clock; the device's typical clock by default.
    decode_kernel : {"gemv", "gemm"}
    progress : bool, optional
        tqdm progress bar on stderr; by default only when stderr is a terminal.

    Returns
    -------
    ExploreResult

    Raises
    ------
    ConstraintError
        No design fits (e.g. the DSP budget is below the smallest design).
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective={objective!r} is not allowed; allowed: "
                          f"{' | '.join(OBJECTIVES)}")
    ctx = make_context(model, device, quant, seq=seq, context=context, batch=batch, tp=tp, pp=pp)
    m, dev = ctx.model, ctx.device
    if objective != "prefill" and not m.decoder:
        raise ConfigError(f"objective={objective} needs a decoder; {m.name} is an encoder; "
                          "allowed: prefill")
    if budget_dsp is not None and (isinstance(budget_dsp, bool)
                                   or not isinstance(budget_dsp, int) or budget_dsp < 1):
        raise ConfigError(f"budget_dsp={budget_dsp!r} must be a positive integer")
    clock = clock_mhz or dev.clock_mhz
    pack = dev.max_packing.get(ctx.quant.name, 1)
    modes = ("prefill",) if objective == "prefill" else ("prefill", "decode") \
        if objective == "tokens-per-s" else ("decode",)
    n_dev_layers = -(-m.n_layers // pp)
    shapes = len(_ROWS) * len(_COLS)
    ok_shapes = [i for i in range(shapes) if _COLS[i % len(_COLS)] * pack <= 64]
    grid_all = np.array(list(itertools.product(ok_shapes, repeat=3)), dtype=np.int64)
    # DSPs per layer copy, to skip points that cannot fit before evaluating them
    shape_dsp = (np.asarray(_ROWS)[:, None] * np.asarray(_COLS)[None, :]).ravel()
    # a grouped linear kernel scales its groups' sums after the array, per logical column
    q = ctx.quant
    # (at the widest of the kernels' inputs: the hw layer's, gemm_a_widths)
    group_dsp = max(linear_cost(w, q.w_bits, True)["group_col"]["dsp"]
                    for w in set(gemm_a_widths(m, q).values())) * pack \
        if q.grouped and q.integer else 0
    lin_dsp = shape_dsp + group_dsp * np.asarray(_COLS)[np.arange(shapes) % len(_COLS)]
    n_proj, n_ffn = 4, 3 if m.gated_ffn else 2
    dsp_copy = (n_proj * lin_dsp[grid_all[:, 0]] + 2 * shape_dsp[grid_all[:, 1]]
                + n_ffn * lin_dsp[grid_all[:, 2]])
    cap = min(dev.dsp, budget_dsp) if budget_dsp else dev.dsp
    choices = _layer_choices(n_dev_layers)
    # streamed weights buffered a tile deep, and (for decode) a whole layer deep: every
    # kernel then fetches its next matrix while the others compute
    buffers = (False,) if objective == "prefill" else (False, True)
    todo = [(C, buf, grid_all[dsp_copy * C <= cap]) for C in choices for buf in buffers]
    total = sum(len(g) for _, _, g in todo)
    if progress is None:
        progress = sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, desc=f"explore {m.name} on {dev.name}", unit="pt",
                   file=sys.stderr, leave=False)
    best_val, best = np.inf, None
    dsp_all, val_all, ref_all = [], [], []
    evaluated = feasible = 0
    try:
        for C, buf, grid in todo:
            for start in range(0, len(grid), chunk):
                g = grid[start:start + chunk]
                db = grid_batch(ctx, g, C, clock_mhz=clock, pack=pack, decode_kernel=decode_kernel,
                                layer_buffer=buf)
                res = evaluate(ctx, db, modes=modes, budget_dsp=budget_dsp)
                val = _objective(res, objective, ctx, gen)
                ok = res["feasible"] & np.isfinite(val)
                evaluated += len(g)
                feasible += int(ok.sum())
                if ok.any():
                    idx = np.flatnonzero(ok)
                    dsp_all.append(res["res"]["dsp"][idx])
                    val_all.append(val[idx])
                    ref_all.extend((C, g[i], bool(res["on_chip"][i]), buf) for i in idx)
                    j = idx[np.argmin(val[idx])]
                    # ties: fewer DSPs first
                    if val[j] < best_val or (val[j] == best_val and best is not None
                                             and res["res"]["dsp"][j] < best[3]):
                        best_val = float(val[j])
                        best = (C, g[j], bool(res["on_chip"][j]), float(res["res"]["dsp"][j]),
                                buf)
                if bar is not None:
                    bar.update(len(g))
    finally:
        if bar is not None:
            bar.close()
    if best is None:
        smallest = int(dsp_copy.min())
        raise ConstraintError(
            f"no design of {m.name} fits {dev.part}" + (
                f" within a DSP budget of {budget_dsp:,} (the smallest needs {smallest:,})"
                if budget_dsp and budget_dsp < smallest else
                " (on-chip memory, channels or capacity: try --devices or a smaller --seq)"),
            constraint="dsp_budget" if budget_dsp else "any", need=smallest,
            have=budget_dsp or dev.dsp)

    def to_design(C, g, on_chip, buf, name):
        db = grid_batch(ctx, g[None, :], C, clock_mhz=clock, pack=pack,
                        decode_kernel=decode_kernel, layer_buffer=buf)
        return db.design(0, name=name, quant=ctx.quant.name,
                         weights="on_chip" if on_chip else "stream")

    design = to_design(*best[:3], best[4], f"explored-{objective}-{m.name}-{dev.name}")
    dsp = np.concatenate(dsp_all)
    vals = np.concatenate(val_all)
    order = np.lexsort((vals, dsp))
    front, running = [], np.inf
    for i in order:
        if vals[i] < running:
            running = vals[i]
            C, g, oc, buf = ref_all[i]
            front.append({"dsp": int(dsp[i]), "value": float(vals[i]),
                          "design": to_design(C, g, oc, buf, "front")})
    value = best_val
    if objective == "tokens-per-s":
        value = 1.0 / best_val
        for p in front:
            p["value"] = 1.0 / p["value"]
    return ExploreResult(objective=objective, best=design, value=value, front=front,
                         evaluated=evaluated, feasible=feasible, context=ctx)
