"""The KV cache's harness: rows ``k`` and ``v`` (positions × kv_width int8; kv_width = d_model
unless ``kv_heads`` groups the heads, then d_model is inferred as kv_width·heads/kv_heads) are
appended, then each (query) head in ``heads`` (default: every head once, in order) is read
out: ``kt`` (requests ×
d_head × seq) and ``vh`` (requests × seq × d_head), int8, zero past the appended positions.
The cycles counted are the readouts' (the appends are preloaded)."""

from __future__ import annotations

import numpy as np

from ...hw.blocks.kvcache import KvCache, KvCacheConfig
from ...hw.numeric import INT8, IntType
from ...hw.stream import row_layout
from ..golden.kvcache import kvcache_fill, kvcache_readout
from ..harness import BlockHarness, ControlStreams, Drive, TensorError, TensorSpec, register
from ..streams import pack_rows, unpack_rows

__all__ = ["KvCacheHarness"]


@register
class KvCacheHarness(BlockHarness):
    name = "kvcache"
    summary = "on-chip KV cache: K/V rows appended, read out per head as GEMM weight streams"
    config_cls = KvCacheConfig
    component_cls = KvCache
    inputs = (
        TensorSpec("k", "int8", "positions×kv_width", "K rows, appended first"),
        TensorSpec("v", "int8", "positions×kv_width", "V rows, appended first"),
        TensorSpec("heads", "int", "requests", "heads to read out, in order (default: all)",
                   optional=True),
    )
    outputs = (
        TensorSpec("kt", "int8", "requests×d_head×seq", "K_hᵀ of each request"),
        TensorSpec("vh", "int8", "requests×seq×d_head", "V_h of each request"),
    )
    shape_fields = ("d_model",)

    def config(self, values=None, tensors=None):
        # the rows are kv_width wide: d_model is that times the heads per KV head
        values = dict(values or {})
        k = (tensors or {}).get("k")
        if "d_model" not in values and k is not None and np.ndim(k) == 2:
            heads = values.get("heads", KvCacheConfig.heads)
            kv = values.get("kv_heads") or heads
            if isinstance(heads, int) and isinstance(kv, int) and kv > 0:
                values["d_model"] = int(np.shape(k)[1]) * heads // kv
        return super().config(values, tensors)

    def component(self, cfg):
        # `clear` stays low: one sequence per run
        return ControlStreams(KvCache(cfg))

    def prepare(self, cfg, tensors):
        k = self.require_int(tensors, "k", INT8, (None, cfg.kv_width))
        v = self.require_int(tensors, "v", INT8, (k.shape[0], cfg.kv_width))
        if k.shape[0] > cfg.seq:
            raise TensorError(f"{k.shape[0]} positions overflow the cache; allowed: at most "
                              f"seq={cfg.seq}")
        heads = np.asarray(tensors.get("heads", np.arange(cfg.heads))).reshape(-1)
        if heads.size < 1 or not np.issubdtype(heads.dtype, np.integer) or heads.min() < 0 \
                or heads.max() >= cfg.heads:
            raise TensorError(f"tensor 'heads' must hold head indices 0..{cfg.heads - 1}")
        return {"k": k, "v": v, "heads": heads.astype(np.int64)}

    def drive(self, cfg, tensors):
        beat = row_layout(INT8.shape, cfg.lanes)
        req = row_layout(IntType(cfg.head_bits, signed=False).shape, 1)
        n = len(tensors["heads"])
        return Drive(
            preload={"k": pack_rows(beat, tensors["k"]), "v": pack_rows(beat, tensors["v"])},
            timed={"rd": pack_rows(req, tensors["heads"][:, None])},
            expect={"o_kt": n * cfg.kt_beats, "o_vh": n * cfg.vh_beats},
        )

    def collect(self, cfg, tensors, beats):
        n = len(tensors["heads"])
        kt, klast, kend = unpack_rows(row_layout(INT8.shape, cfg.qk_cols), beats["o_kt"],
                                      cfg.seq)
        vh, vlast, vend = unpack_rows(row_layout(INT8.shape, cfg.pv_cols), beats["o_vh"],
                                      cfg.d_head)
        for last, end, per_row, rows in ((klast, kend, cfg.pos_tiles, cfg.d_head),
                                         (vlast, vend, cfg.head_tiles, cfg.seq)):
            want_last = np.zeros(len(last), dtype=bool)
            want_last[per_row - 1::per_row] = True
            want_end = np.zeros(len(end), dtype=bool)
            want_end[per_row * rows - 1::per_row * rows] = True
            if not (np.array_equal(last, want_last) and np.array_equal(end, want_end)):
                raise AssertionError("output framing (last/end bits) is wrong")
        return {"kt": kt.reshape(n, cfg.d_head, cfg.seq).astype(INT8.dtype),
                "vh": vh.reshape(n, cfg.seq, cfg.d_head).astype(INT8.dtype)}

    def golden(self, cfg, tensors):
        cache = kvcache_fill(cfg, tensors["k"], tensors["v"])
        pairs = [kvcache_readout(cfg, cache, int(h)) for h in tensors["heads"]]
        return {"kt": np.stack([p[0] for p in pairs]), "vh": np.stack([p[1] for p in pairs])}

    def shape_args(self, cfg, tensors):
        return (len(tensors["heads"]),)
