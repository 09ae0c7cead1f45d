"""Where the KV cache lives: on chip while it fits, else in off-chip memory (the fetched
layer's ``kv="axi"``, :class:`~llmloom.hw.layers.fetched.FetchedLayer`). One rule, used by
perf's evaluation (:func:`~llmloom.perf.spatial.evaluate`: a decode streams the cache only
when it is off chip) and, through the projection, by ``llmloom generate --kv``.

The rule: the K and V of every layer at the context (:func:`kv_cache_bytes`) against the
device's block RAM left once the design has what it needs (:func:`on_chip_bytes` less the
design's own use): ``chip`` if they fit, else ``axi``."""

from __future__ import annotations

import numpy as np

from ..hw.config import ConfigError
from ..hw.layers.fetched import KV_MODES

__all__ = ["KV_CHOICES", "kv_cache_bytes", "on_chip_bytes", "kv_placement", "check_kv_choice"]

#: What a user may ask for: a placement, or ``auto`` (:func:`kv_placement` decides).
KV_CHOICES = (*KV_MODES, "auto")


def check_kv_choice(kv):
    """``kv`` if it is one of :data:`KV_CHOICES`, else :class:`ConfigError` naming it."""
    if kv not in KV_CHOICES:
        raise ConfigError(f"kv={kv!r}; allowed: {' | '.join(KV_CHOICES)}")
    return kv


def kv_cache_bytes(model, context, kv_bits=8, batch=1, tp=1, pp=1):
    """Bytes of the KV cache of ``model`` (a :class:`~llmloom.perf.models.ModelSpec`) holding
    ``context`` positions on one device: K and V rows of ``d_kv`` elements of ``kv_bits``,
    every layer the device runs (``n_layers / pp``), its ``1/tp`` share of the heads."""
    if not model.decoder:
        return 0.0
    return 2 * batch * context * model.d_kv * kv_bits / 8 * model.n_layers / tp / pp


def on_chip_bytes(device):
    """Bytes of ``device``'s block RAM (its BRAM and, where it has one, URAM)."""
    total = device.bram.count * device.bram.bits
    if device.uram is not None:
        total += device.uram.count * device.uram.bits
    return total / 8


def kv_placement(kv, kv_bytes, free_bytes):
    """``"chip"`` or ``"axi"`` for ``kv`` (:data:`KV_CHOICES`): itself unless ``auto``, which
    is ``chip`` while ``kv_bytes`` fit in ``free_bytes`` (the block RAM the design leaves),
    else ``axi``. Arrays broadcast (an array of placements)."""
    check_kv_choice(kv)
    if kv != "auto":
        return np.full(np.shape(free_bytes), kv) if np.ndim(free_bytes) else kv
    fits = np.asarray(kv_bytes) <= np.asarray(free_bytes)
    return np.where(fits, "chip", "axi")[()] if np.ndim(fits) else ("chip" if fits else "axi")
