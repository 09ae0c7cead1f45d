"""Stream beats as integers, and stall patterns, shared by every simulator back end.

Payloads are packed with the very Amaranth layout the block declares (field offsets come from
the layout object), so the testbench and the RTL cannot disagree about bit positions.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

from ..hw.numeric import IntType

__all__ = ["pack_rows", "unpack_rows", "check_framing", "Stalls", "STALL_KINDS", "NO_STALLS"]


def _data_geometry(layout):
    layout = data.Layout.cast(layout)
    field = layout["data"]
    arr = field.shape
    elem = Shape.cast(arr.elem_shape)
    return field.offset, elem.width, elem.signed, arr.length, layout


def pack_rows(layout, rows, *, lanes=None):
    """Tensor rows → beats (Python ints) of a :func:`~llmloom.hw.stream.row_layout` payload.

    ``rows`` is a 2-D integer array (rows × row length); each row is cut into beats of the
    layout's lane count, the last one zero-padded; ``last`` is set on each row's last beat and
    ``end`` on the final beat.
    """
    offset, width, _signed, nlanes, layout = _data_geometry(layout)
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 2:
        raise ValueError(f"expected a 2-D tensor, got shape {rows.shape}")
    n_rows, length = rows.shape
    per_row = -(-length // nlanes)
    padded = np.zeros((n_rows, per_row * nlanes), dtype=np.int64)
    padded[:, :length] = rows
    # two's complement bits of each lane (a uint64 view, so a 64-bit mask fits)
    mask = np.uint64((1 << width) - 1)
    lanes_arr = (padded.view(np.uint64) & mask).reshape(n_rows * per_row, nlanes)
    last_bit = 1 << layout["last"].offset
    end_bit = 1 << layout["end"].offset
    if width in (8, 16, 32, 64):        # a NumPy dtype: one tobytes a beat
        raw = lanes_arr.astype(IntType(width, signed=False).dtype.newbyteorder("<"))
        words = [int.from_bytes(r.tobytes(), "little") << offset for r in raw]
    else:
        shifts = [lane * width for lane in range(nlanes)]
        words = [sum(int(v) << s for v, s in zip(r, shifts, strict=True)) << offset
                 for r in lanes_arr]
    for idx in range(per_row - 1, len(words), per_row):
        words[idx] |= last_bit
    if words:
        words[-1] |= end_bit
    return words


def unpack_rows(layout, words, length):
    """Beats → (rows × ``length`` int64 array, per-beat ``last`` flags, per-beat ``end`` flags).

    Rows are delimited by counting ``ceil(length / lanes)`` beats per row; the flags are
    returned so that callers can check them.
    """
    offset, width, signed, nlanes, layout = _data_geometry(layout)
    mask = (1 << (width * nlanes)) - 1
    per_row = -(-length // nlanes)
    if len(words) % per_row:
        raise ValueError(f"{len(words)} beats are not whole rows of {per_row} beats")
    if width in (8, 16, 32, 64):        # a NumPy dtype: one frombuffer
        nbytes = width * nlanes // 8
        buf = b"".join(((w >> offset) & mask).to_bytes(nbytes, "little") for w in words)
        vals = np.frombuffer(buf, dtype=f"<{'i' if signed else 'u'}{width // 8}").astype(
            np.int64)
    else:
        vals = np.array([((w >> offset) >> (lane * width)) & ((1 << width) - 1)
                         for w in words for lane in range(nlanes)], dtype=np.int64)
        if signed:
            vals = np.where(vals >= 1 << (width - 1), vals - (1 << width), vals)
    vals = vals.reshape(-1, per_row * nlanes)[:, :length]
    last = np.array([(w >> layout["last"].offset) & 1 for w in words], dtype=bool)
    end = np.array([(w >> layout["end"].offset) & 1 for w in words], dtype=bool)
    return vals, last, end


def check_framing(last, end, per_row, tensor_rows=None):
    """``AssertionError`` unless ``last`` (per beat, from :func:`unpack_rows`) is set on every
    row's last beat (rows of ``per_row`` beats) and ``end`` on each tensor's last beat: of one
    tensor, or of the tensors of ``tensor_rows`` rows each."""
    want_last = np.zeros(len(last), dtype=bool)
    want_last[per_row - 1::per_row] = True
    want_end = np.zeros(len(end), dtype=bool)
    if tensor_rows is None:
        want_end[-1:] = True
    else:
        want_end[np.cumsum(tensor_rows) * per_row - 1] = True
    if not (np.array_equal(last, want_last) and np.array_equal(end, want_end)):
        raise AssertionError("output framing (last/end bits) is wrong")


STALL_KINDS = ("none", "pattern", "random")


@dataclasses.dataclass(frozen=True)
class Stalls:
    """When a testbench offers a beat (inputs) or is ready (outputs).

    ``none``: every cycle. ``pattern``: the fixed pattern (1, 1, 1, 0) repeated. ``random``:
    each cycle with probability ``1 - p``, from a seeded generator.
    """

    kind: str = "none"
    seed: int = 0
    p: float = 0.3

    def __post_init__(self):
        if self.kind not in STALL_KINDS:
            raise ValueError(f"stall kind {self.kind!r} is not allowed; allowed: "
                             f"{', '.join(STALL_KINDS)}")

    def generator(self, salt=0):
        """An endless iterator of booleans (True: go this cycle)."""
        if self.kind == "none":
            while True:
                yield True
        elif self.kind == "pattern":
            while True:
                yield from (True, True, True, False)
        else:
            rng = random.Random(self.seed * 1_000_003 + salt)
            while True:
                yield rng.random() >= self.p


#: Offer every cycle, ready every cycle (a shared immutable default).
NO_STALLS = Stalls()
