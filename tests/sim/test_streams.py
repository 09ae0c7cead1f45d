"""Beat packing with the Amaranth layout, and the stall patterns."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from llmloom.hw.stream import row_layout
from llmloom.sim.streams import Stalls, pack_rows, unpack_rows


@pytest.mark.parametrize("shape, lanes, length", [
    (signed(8), 4, 10), (signed(32), 3, 7), (signed(4), 5, 5), (unsigned(8), 1, 3),
    (signed(13), 2, 5),
])
def test_pack_unpack_round_trip(shape, lanes, length, rng):
    layout = row_layout(shape, lanes)
    width = shape.width
    lo, hi = (-(1 << (width - 1)), 1 << (width - 1)) if shape.signed else (0, 1 << width)
    rows = rng.integers(lo, hi, (6, length))
    words = pack_rows(layout, rows)
    assert len(words) == 6 * -(-length // lanes)
    back, last, end = unpack_rows(layout, words, length)
    np.testing.assert_array_equal(back, rows)
    assert last.sum() == 6 and last[-1] and end.sum() == 1 and end[-1]


def test_packing_agrees_with_the_layout_object():
    layout = row_layout(signed(8), 3)
    words = pack_rows(layout, np.array([[-1, 2, -128]]))
    expected = layout.const({"data": [-1, 2, -128], "last": 1, "end": 1}).as_bits()
    assert words == [expected]


def test_stall_patterns():
    assert list(itertools.islice(Stalls("pattern").generator(), 8)) == [True] * 3 + [False] + \
        [True] * 3 + [False]
    assert all(itertools.islice(Stalls("none").generator(), 100))
    r1 = list(itertools.islice(Stalls("random", 7).generator(), 1000))
    r2 = list(itertools.islice(Stalls("random", 7).generator(), 1000))
    assert r1 == r2 and 0.6 < sum(r1) / 1000 < 0.8
    with pytest.raises(ValueError, match="stall kind 'sometimes' is not allowed"):
        Stalls("sometimes")
