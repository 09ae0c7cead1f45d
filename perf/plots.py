"""PNG figures where a picture says more: stage breakdown, roofline, FPGA against GPU over
sequence length, the Pareto front of latency against DSPs. Matplotlib with the Agg backend
(no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .devices import get_fpga  # noqa: E402

__all__ = ["plot_estimate", "plot_compare", "plot_front"]


def _stages(ax, phase, title):
    stages = phase["stages"]
    names = [s["name"] for s in stages]
    cyc = [s["cycles"] for s in stages]
    colors = ["#c44e52" if s["name"] == phase["bottleneck"] else
              "#dd8452" if s["bound"] == "memory" else "#4c72b0" for s in stages]
    ax.barh(names[::-1], cyc[::-1], color=colors[::-1])
    ax.set_xlabel("cycles per layer (red: bottleneck, orange: memory-bound)")
    ax.set_title(title)


def _roofline(ax, doc):
    dev = get_fpga(doc["device"])
    f = doc["clock_hz"]
    pack = max(k["packing"] for k in doc["design"]["kernels"].values())
    peak = 2 * dev.dsp * pack * f / 1e9                    # GOPS
    used = 2 * sum(k["rows"] * k["cols"] * k["packing"]
                   for k in doc["design"]["kernels"].values()) * f / 1e9 \
        * doc["design"]["layers_on_chip"]
    bw = dev.memory.bandwidth / 1e9 if dev.memory else 1.0  # GB/s
    xs = [2 ** (i / 4) for i in range(-16, 60)]
    ax.loglog(xs, [min(peak, bw * x) for x in xs], "k-", label=f"{dev.name} peak")
    ax.loglog(xs, [min(used, bw * x) for x in xs], "k--", label="this design's arrays")
    for key, marker in (("prefill", "o"), ("decode", "s")):
        ph = doc.get(key)
        if not ph:
            continue
        lat = ph.get("latency_s", ph.get("latency_s_per_token"))
        by = max(ph["offchip_bytes"], 1.0)
        ax.loglog([2 * ph["macs"] / by], [2 * ph["macs"] / lat / 1e9], marker, label=key)
    ax.set_xlabel("operations per off-chip byte")
    ax.set_ylabel("GOPS")
    ax.set_title("roofline")
    ax.legend(fontsize=8)


def plot_estimate(doc, path, fmt=None):
    """Stage breakdown of prefill and decode, and the roofline, of an estimate document."""
    panels = [k for k in ("prefill", "decode") if doc.get(k)]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(5 * (len(panels) + 1), 4.5))
    for ax, key in zip(axes, panels, strict=False):
        _stages(ax, doc[key], f"{doc['model']} {key} on {doc['device']}")
    _roofline(axes[-1], doc)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format=fmt)
    plt.close(fig)


def plot_compare(doc, path, fmt=None):
    """Prefill and decode latency of FPGA and GPU against sequence length."""
    rows = doc["rows"]
    seqs = [r["seq"] for r in rows]
    decode = rows[0]["fpga_decode_s_per_token"] is not None
    fig, axes = plt.subplots(1, 2 if decode else 1, figsize=(10 if decode else 5, 4.2),
                             squeeze=False)
    ax = axes[0][0]
    ax.loglog(seqs, [r["fpga_prefill_s"] for r in rows], "o-", label=f"FPGA {doc['device']}")
    ax.loglog(seqs, [r["gpu_prefill_s"] for r in rows], "s-", label=f"GPU {doc['gpu']}")
    ax.set_xlabel("prompt length")
    ax.set_ylabel("prefill latency (s)")
    ax.legend()
    if decode:
        ax = axes[0][1]
        ax.semilogx(seqs, [r["fpga_decode_s_per_token"] * 1e3 for r in rows], "o-",
                    label="FPGA")
        ax.semilogx(seqs, [r["gpu_decode_s_per_token"] * 1e3 for r in rows], "s-", label="GPU")
        ax.set_xlabel("context length")
        ax.set_ylabel("decode latency (ms/token)")
        ax.legend()
    fig.suptitle(f"{doc['model']}: {doc['device']} vs {doc['gpu']} ({doc['gpu_runtime']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format=fmt)
    plt.close(fig)


def plot_front(doc, path, fmt=None):
    """The Pareto front of an explore document, with the compared preset if any."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    front = doc["front"]
    ax.step([p["dsp"] for p in front], [p["value"] for p in front], "o-", where="post",
            label="explored front")
    if doc.get("against"):
        a = doc["against"]
        key = doc["objective"]
        val = (a["prefill"]["latency_s"] if key == "prefill" else
               a["decode"]["latency_s_per_token"] if key == "decode" else
               a["decode"]["tokens_per_s"])
        ax.plot([a["resources"]["dsp"]], [val], "r*", ms=12, label=a["design"]["name"])
    ax.set_xlabel("DSPs")
    ax.set_ylabel("tokens/s" if doc["objective"] == "tokens-per-s" else "latency (s)")
    ax.set_yscale("log")
    ax.set_title(f"{doc['model']} on {doc['device']}: {doc['objective']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110, format=fmt)
    plt.close(fig)
