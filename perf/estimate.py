"""One design's prefill and decode estimate, on one FPGA or several, as the documented JSON
(``llmloom.perf.estimate/1``, described in README.md), and the FPGA-versus-GPU comparison
(``llmloom.perf.compare/1``)."""

from __future__ import annotations

import math
import os

import numpy as np

from .design import Design, load_design
from .devices import get_fpga
from .errors import ConfigError, ConstraintError
from .explore import explore
from .gpu import gpu_estimate
from .models import get_model
from .presets import PRESETS, get_preset
from .spatial import (
    DesignBatch,
    bottleneck,
    evaluate,
    layer_plan,
    make_context,
    raise_if_infeasible,
)
from .workload import get_quant, workload

__all__ = ["estimate", "compare", "resolve_design", "parallel_splits", "estimate_document",
           "ESTIMATE_SCHEMA", "COMPARE_SCHEMA"]

ESTIMATE_SCHEMA = "llmloom.perf.estimate/1"
COMPARE_SCHEMA = "llmloom.perf.compare/1"


def resolve_design(design, *, model=None, device=None, quant=None, seq=512, context=None,
                   batch=1, tp=1, pp=1, objective="prefill", progress=None):
    """A :class:`Design` from a preset name, a JSON path, a dict, a Design, or ``None``
    (explore the best design for ``objective``)."""
    if isinstance(design, Design):
        return design
    if isinstance(design, dict):
        return Design.from_dict(design)
    if isinstance(design, str):
        if design in PRESETS:
            return get_preset(design).design
        if design.endswith(".json") or os.path.exists(design):
            if not os.path.exists(design):
                raise ConfigError(f"design file {design!r} does not exist")
            return load_design(design)
        raise ConfigError(f"unknown design {design!r}; allowed: a preset "
                          f"({', '.join(sorted(PRESETS))}) or a design .json file")
    if design is None:
        return explore(model, device, objective=objective, quant=quant or "W8A8", seq=seq,
                       context=context, batch=batch, tp=tp, pp=pp, progress=progress).best
    raise ConfigError(f"design={design!r} is not a preset name, file, dict or Design")


def parallel_splits(model, devices, parallel):
    """``[(tp, pp)]`` to try for ``devices`` FPGAs: ``pp``, ``tp`` or ``best`` (every split
    tp·pp = devices whose tp divides the heads)."""
    model = get_model(model)
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ConfigError(f"devices={devices!r} must be an integer >= 1")
    if parallel not in ("pp", "tp", "best"):
        raise ConfigError(f"parallel={parallel!r} is not allowed; allowed: pp | tp | best")
    if devices == 1:
        return [(1, 1)]
    if parallel == "pp":
        return [(1, devices)]
    if parallel == "tp":
        return [(devices, 1)]
    return [(t, devices // t) for t in range(1, devices + 1)
            if devices % t == 0 and model.n_kv_heads % t == 0 and model.d_ff % t == 0
            and devices // t <= model.n_layers]


def _stage_rows(ctx, design, phase, res, f):
    """One row per stage of a layer, in its dependency chain's order (the head, the
    synchronised projections, the streaming stages: :func:`~llmloom.perf.spatial.layer_plan`);
    ``stream_cycles`` is what the stage's off-chip stream keeps its channels busy per layer
    (prefetched or not)."""
    rows = []
    dies = get_fpga(ctx.device).die_names
    die_of = res["die_of"]
    plan = layer_plan(ctx.model)
    order = []
    for name in plan.head + ("q", "k", "v") + plan.chain + ("link",):
        order.extend(phase["ffn_keys"] if name == "ffn_in" else [name])
    for name in order:
        if name not in phase["stages"]:
            continue
        t, first, code = (a[0] for a in phase["stages"][name])
        # Q runs beside K and V in the sync phase (in prefill its remainder, if any, streams on)
        row = {"name": name, "phase": "sync" if name in ("q", "k", "v") else "stream",
               "cycles": float(t), "fill_cycles": float(first), "latency_s": float(t) / f,
               "bound": ("compute", "memory", "link")[int(code)]}
        if name in phase["mem_cycles"]:
            row["stream_cycles"] = float(phase["mem_cycles"][name][0])
        if name in die_of and len(dies) > 1:
            row["region"] = dies[die_of[name]]
        rows.append(row)
    return rows


def _one(ctx, design, modes):
    db = DesignBatch.from_designs([design])
    result = evaluate(ctx, db, modes=modes)
    return result


def estimate(model, device, design=None, *, mode="both", seq=None, context=None, batch=1,
             devices=1, parallel="pp", quant=None, progress=None, kv="auto"):
    """Predict prefill and decode of ``model`` on ``device`` with ``design``.

    Parameters
    ----------
    model, device : str or spec
    design : str, dict, Design or None
        Preset name, design JSON path, design dict or object; ``None`` explores the best
        design for the mode (prefill latency, or decode latency for ``mode="decode"``).
    mode : {"prefill", "decode", "both"}
    seq : int
        Prompt length l (the preset's, else 512, clipped to the model's maximum).
    context : int
        Cached tokens s for decode (default: ``seq``).
    batch : int
    devices : int
        FPGAs; with ``parallel`` ``pp`` (pipeline over layers), ``tp`` (tensor) or ``best``.
    quant : str or None
        ``W8A8``, ``W4A8`` (``hw``'s groups), ``W8A8-channel``, ``W4A8-channel``, ``W4A16``
        or ``fp16`` (:data:`~llmloom.perf.workload.QUANTS`): overrides the design's
        quantisation (and the explored design's, default W8A8).
    kv : {"chip", "axi", "auto"}
        Where the KV cache lives (:func:`~llmloom.perf.kvcache.kv_placement`): ``auto`` on
        chip while it fits in the block RAM the design leaves, else off chip (streamed in
        decode); the document's ``kv`` says which, and the bytes.

    Returns
    -------
    dict
        The ``llmloom.perf.estimate/1`` document (README.md).

    Raises
    ------
    ConstraintError
        The design breaks a device constraint (the message names it and by how much).
    ConfigError
        Unknown names, bad lengths or options.
    """
    if mode not in ("prefill", "decode", "both"):
        raise ConfigError(f"mode={mode!r} is not allowed; allowed: prefill | decode | both")
    preset = PRESETS.get(design) if isinstance(design, str) else None
    m = get_model(model if model is not None else preset.model if preset else None) \
        if (model is not None or preset) else None
    if m is None:
        raise ConfigError("a model is needed: --model NAME (or a preset --design)")
    dev_name = device if device is not None else preset.device if preset else None
    if dev_name is None:
        raise ConfigError("a device is needed: --device NAME (or a preset --design)")
    dev = get_fpga(dev_name)
    if seq is None:
        seq = preset.seq if preset else 512
        seq = min(seq, m.max_positions)
    if mode == "decode" and not m.decoder:
        raise ConfigError(f"model {m.name} is an encoder and has no decode phase; allowed: "
                          "--mode prefill")
    modes = ("prefill", "decode") if mode == "both" and m.decoder else \
        ("prefill",) if mode in ("both", "prefill") else ("decode",)
    splits = parallel_splits(m, devices, parallel)
    if not splits:
        raise ConfigError(f"no tensor/pipeline split of {devices} devices suits {m.name}")
    objective = "decode" if mode == "decode" else "prefill"
    if quant is not None:
        quant = get_quant(quant).name
    best, last_error = None, None
    for tp, pp in splits:
        try:
            found = _try_split(m, dev, design, tp, pp, seq, context, batch, objective, modes,
                               progress, quant, kv)
        except ConstraintError as e:
            if len(splits) == 1:
                raise
            last_error = e
            continue
        key, ctx, des, result = found
        if len(splits) > 1 and not result["feasible"][0]:
            continue
        if best is None or key < best[0]:
            best = found
    if best is None:
        raise last_error
    _, ctx, des, result = best
    raise_if_infeasible(ctx, result)
    return estimate_document(ctx, des, result, modes)


def _try_split(m, dev, design, tp, pp, seq, context, batch, objective, modes, progress,
               quant=None, kv="auto"):
    """Evaluate one tensor/pipeline split: ``(key latency, ctx, design, result)``; ``quant``
    overrides the design's quantisation."""
    if quant is None and design is not None:
        quant = resolve_design(design).quant
    des = resolve_design(design, model=m, device=dev, quant=quant, seq=seq, context=context,
                         batch=batch, tp=tp, pp=pp, objective=objective, progress=progress)
    if des.quant != quant and quant is not None:
        des = des.replace(quant=quant)
    ctx = make_context(m, dev, des.quant, seq=seq, context=context, batch=batch, tp=tp, pp=pp,
                       kv=kv)
    result = _one(ctx, des, modes)
    key = float(result[modes[0] if objective == "prefill" else modes[-1]]["latency_s"][0])
    return key, ctx, des, result


def estimate_document(ctx, design, result, modes):
    """The :func:`estimate` document (``ESTIMATE_SCHEMA``) of one evaluated design: ``result``
    is what :func:`~llmloom.perf.spatial.evaluate` gave for ``design`` (batch of one) in the
    context ``ctx``, over ``modes`` ("prefill", and "decode" for a decoder)."""
    m, dev = ctx.model, ctx.device
    f = design.clock_mhz * 1e6
    res = result["res"]
    n_dev = ctx.tp * ctx.pp
    doc = {
        "schema": ESTIMATE_SCHEMA, "model": m.name, "device": dev.name,
        "devices": n_dev, "parallel": {"tp": ctx.tp, "pp": ctx.pp},
        "quant": design.quant, "clock_hz": f, "batch": ctx.batch, "seq": ctx.seq,
        "context": ctx.context if m.decoder else None,
        "weights": "on_chip" if bool(res["on_chip"][0]) else "stream",
        "kv": {"placement": str(res["kv"][0]), "bytes": float(res["kv_bytes"][0]) * n_dev,
               "free_on_chip_bytes": float(res["kv_free"][0])},
        "design": design.to_dict(),
        "prefill": None, "decode": None,
    }
    q = get_quant(design.quant)
    for mode in modes:
        ph = result[mode]
        lat = float(ph["latency_s"][0])
        power = float(ph["power_w"][0])
        name, bound = bottleneck(ph)
        wl = workload(m, mode, seq=ctx.seq, context=ctx.context, batch=ctx.batch, quant=q)
        common = {"cycles": float(ph["cycles"][0]),
                  "layer_cycles": float(ph["layer_cycles"][0]),
                  "sync_cycles": float(ph["sync_cycles"][0]),
                  "bottleneck": name, "bound": bound, "power_w": power * n_dev,
                  "macs": wl.macs, "offchip_bytes": float(ph["offchip_bytes"][0]) * n_dev,
                  "stages": _stage_rows(ctx, design, ph, res, f)}
        if mode == "prefill":
            doc["prefill"] = {"latency_s": lat, "ttft_s": lat,
                              "tokens_per_s": ctx.batch * ctx.seq / lat,
                              "energy_j": power * n_dev * lat, **common}
        else:
            bw = dev.memory.bandwidth * n_dev if dev.memory else math.inf
            floor = float(ph["offchip_bytes"][0]) * n_dev / bw
            doc["decode"] = {"latency_s_per_token": lat, "tokens_per_s": ctx.batch / lat,
                             "energy_j_per_token": power * n_dev * lat / ctx.batch,
                             "bandwidth_floor_s": floor, **common}
    caps = {"dsp": dev.dsp, "lut": dev.lut, "ff": dev.ff, "bram36": dev.bram.count,
            "uram": dev.uram.count if dev.uram else 0}
    doc["resources"] = {k: int(np.asarray(res[k])[0]) for k in caps}
    doc["resources"]["bram_kind"] = dev.bram.kind
    doc["resources"]["per_die"] = {
        dev.die_names[i]: {("bram36" if k == "bram" else k): int(v[0]) for k, v in die.items()}
        for i, die in res["dies"].items()}
    doc["capacity"] = caps
    doc["utilisation"] = {k: (doc["resources"][k] / c if c else 0.0) for k, c in caps.items()}
    return doc


def compare(model, device, gpu, design=None, *, seqs=None, batch=1, gpu_quant="fp16",
            runtime="eager", quant=None, progress=None):
    """FPGA against GPU over sequence lengths: prefill of ``seq`` tokens and decode with a
    context of ``seq`` tokens.

    Returns
    -------
    dict
        ``llmloom.perf.compare/1``: ``rows[]`` each with ``seq``, ``fpga_prefill_s``,
        ``gpu_prefill_s``, ``fpga_decode_s_per_token``, ``gpu_decode_s_per_token`` (``None``
        for encoders), speed-ups and energies.
    """
    m = get_model(model)
    dev = get_fpga(device)
    if seqs is None:
        seqs = [s for s in (64, 128, 256, 512, 1024, 2048, 4096) if s <= m.max_positions]
    seqs = [int(s) for s in seqs]
    for s in seqs:
        if not 1 <= s <= m.max_positions:
            raise ConfigError(f"seq={s} is out of range for {m.name}; allowed: "
                              f"1..{m.max_positions}")
    seqs = sorted(set(seqs))
    # one design for all lengths, sized for the longest (its buffers must hold it)
    des = resolve_design(design, model=m, device=dev, seq=seqs[-1], batch=batch, quant=quant,
                         objective="decode" if m.decoder else "prefill", progress=progress)
    if quant is not None and des.quant != quant:
        des = des.replace(quant=quant)
    rows = []
    for s in seqs:
        ctx = make_context(m, dev, des.quant, seq=s, context=min(s, m.max_positions - 1),
                           batch=batch)
        modes = ("prefill", "decode") if m.decoder else ("prefill",)
        r = _one(ctx, des, modes)
        raise_if_infeasible(ctx, r)
        gp = gpu_estimate(m, gpu, "prefill", seq=s, batch=batch, quant=gpu_quant,
                          runtime=runtime)
        row = {"seq": s, "fpga_prefill_s": float(r["prefill"]["latency_s"][0]),
               "gpu_prefill_s": gp["latency_s"],
               "fpga_prefill_energy_j": float(r["prefill"]["latency_s"][0]
                                              * r["prefill"]["power_w"][0]),
               "gpu_prefill_energy_j": gp["energy_j"],
               "fpga_decode_s_per_token": None, "gpu_decode_s_per_token": None}
        row["prefill_speedup"] = row["gpu_prefill_s"] / row["fpga_prefill_s"]
        if m.decoder:
            gd = gpu_estimate(m, gpu, "decode", seq=s, context=min(s, m.max_positions - 1),
                              batch=batch, quant=gpu_quant, runtime=runtime)
            fd = float(r["decode"]["latency_s"][0])
            row.update(fpga_decode_s_per_token=fd, gpu_decode_s_per_token=gd["latency_s"],
                       decode_speedup=gd["latency_s"] / fd,
                       fpga_decode_energy_j_per_token=fd * float(r["decode"]["power_w"][0])
                       / batch,
                       gpu_decode_energy_j_per_token=gd["energy_j"] / batch,
                       gpu_decode_bound=gd["bound"])
            row["decode_energy_ratio"] = (row["gpu_decode_energy_j_per_token"]
                                          / row["fpga_decode_energy_j_per_token"])
        rows.append(row)
    return {"schema": COMPARE_SCHEMA, "model": m.name, "device": dev.name,
            "gpu": gpu_estimate(m, gpu, "prefill", seq=seqs[0], quant=gpu_quant)["gpu"],
            "gpu_runtime": runtime, "gpu_quant": gpu_quant, "batch": batch,
            "design": des.to_dict(), "rows": rows}
