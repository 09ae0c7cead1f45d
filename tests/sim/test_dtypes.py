"""Golden models and sim helpers take a configured width's NumPy dtype from its ``IntType``
(``IntType.dtype``), never by hand: a hand-picked ``np.int8 if w == 8 else np.int16`` is a second
statement of the width, and wraps the first time the width grows past it."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
from amaranth.hdl import signed

from llmloom.hw.blocks.dynquant import DynQuantConfig
from llmloom.hw.layers.config import LayerConfig
from llmloom.hw.stream import row_layout
from llmloom.sim.blocks.dynquant import DynQuantHarness
from llmloom.sim.golden.layers import KVCache
from llmloom.sim.streams import pack_rows, unpack_rows

SIM = Path(__file__).resolve().parents[2] / "sim"
_INT_DTYPES = {f"{u}int{b}" for u in ("", "u") for b in (8, 16, 32, 64)}


def _is_np_int(node):
    return isinstance(node, ast.Attribute) and node.attr in _INT_DTYPES and \
        isinstance(node.value, ast.Name) and node.value.id in ("np", "numpy")


def test_no_dtype_is_chosen_by_hand_from_a_width():
    """No ``np.intA if <width test> else np.intB`` left in sim/ (``IntType(w).dtype`` says it).
    (``object if wide else np.int64``, a choice of arithmetic, not of a width's dtype, stays.)"""
    found = []
    for path in sorted(SIM.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.IfExp) and _is_np_int(node.body) and _is_np_int(node.orelse):
                found.append(f"{path.relative_to(SIM.parent)}:{node.lineno}")
    assert not found, "dtypes chosen by hand: " + ", ".join(found)


def test_a_wide_dynquant_output_keeps_its_values():
    """dynquant's outputs at out_width 12 (int16) and 4 (int8); its exponents unsigned."""
    for out_width, dtype in ((12, np.int16), (4, np.int8)):
        cfg = DynQuantConfig(length=2, lanes=2, in_width=20, out_width=out_width)
        t = cfg.OUT
        got = DynQuantHarness().outputs_of(cfg, [[t.min, t.max]], [cfg.e_max])
        assert got["y"].dtype == dtype and got["y"].tolist() == [[t.min, t.max]]
        assert got["e"].dtype == np.uint8 and got["e"].tolist() == [cfg.e_max]


def test_beats_round_trip_at_every_width():
    """pack_rows takes a NumPy view for 8/16/32/64-bit lanes and ints otherwise: both exact."""
    rng = np.random.default_rng(3)
    for width in (8, 12, 16, 24, 32, 64):
        layout = row_layout(signed(width), 3)
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        rows = np.concatenate([[[lo, hi, 0, -1, 1]],
                               rng.integers(lo, hi, (2, 5), endpoint=True)])
        got, last, end = unpack_rows(layout, pack_rows(layout, rows), 5)
        assert np.array_equal(got, rows), width
        assert last.tolist() == [False, True] * 3 and end.tolist() == [False] * 5 + [True]


def test_kv_cache_and_layer_outputs_take_their_widths_dtypes():
    assert KVCache.empty(8).k.dtype == np.int8
    cfg = LayerConfig(arch="gpt2", scheme="dynamic")
    from llmloom.sim.blocks.layers import _dtype
    out = cfg.description.output
    assert _dtype(cfg, out) == np.dtype(f"int{8 if cfg.width(out) == 8 else 16}")
