"""Row exponents on the LLaMA residual stream (``stream_exponent``) in the timing and resource
models, which walk the layer as its RTL composes it: each residual's row quantiser (a
DynQuant on the wide sum) costs its row kernel's latency and its parts, the skips' exponent
queues theirs; E = 0 is the layer without them. (The RTL's cycles equal the timing model's:
``tests/hw/test_llama_row_exponents.py``.)"""

from __future__ import annotations

from llmloom.hw.layers.config import LayerConfig
from llmloom.perf.cycles import layer_timing
from llmloom.perf.resources import estimate_block, estimate_parts

SHAPE = dict(arch="llama", d_model=64, heads=4, kv_heads=2, d_ff=128, seq=8, lanes=4,
             scheme="dynamic")


def test_row_quantisers_are_timed_and_costed():
    off, on = (LayerConfig(**SHAPE, stream_exponent=e) for e in (0, 15))
    rows_q = on.row_quant("residual1")
    assert off.row_quant("residual1") is None and rows_q.e_max == 15
    assert rows_q.in_width == 31 and rows_q.out_width == 16
    # two row kernels on the path (one per residual), each at least its row latency later
    t_off, t_on = layer_timing(off, [8]).tensor_cycles[0], layer_timing(on, [8]).tensor_cycles[0]
    assert t_on > t_off
    parts = estimate_parts("llama-block", on, "xcup")
    assert {"residual1_rows.logic", "residual2_rows.logic", "rexp_residual1",
            "rexp_residual2"} <= set(parts)
    assert not any("rows." in k or "rexp_" in k for k in estimate_parts("llama-block", off,
                                                                          "xcup"))
    assert estimate_block("llama-block", on, "xcup")["lut"] > \
        estimate_block("llama-block", off, "xcup")["lut"]
