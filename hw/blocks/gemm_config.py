"""Configuration of the systolic GEMM (kept apart from the RTL so that ``perf`` and ``sim`` can
import it without elaborating anything)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .. import devices
from ..config import BlockConfig, Choice, ConfigError, Range, spec

__all__ = ["LinearSizes", "GemmConfig"]


class LinearSizes:
    """What the linear kernels (:class:`GemmConfig`, ``GemvConfig``) derive alike from their
    fields ``rows``, ``cols``, ``k``, ``n``, ``lanes``, ``a_width`` and ``w_width``."""

    OUT_WIDTH = 32  # results are int32 at the block boundary, whatever the accumulator

    @property
    def acc_width(self):
        """Accumulator bits: a + w + ceil(log2 k) holds any sum of k products exactly."""
        return self.a_width + self.w_width + max(0, math.ceil(math.log2(self.k)))

    @property
    def n_tiles(self):
        """Output-feature tiles of ``cols`` (the last one may be partial)."""
        return -(-self.n // self.cols)

    @property
    def k_beats(self):
        """Input beats per token row: ``ceil(k / lanes)``, the last one padded when ``lanes``
        does not divide ``k`` (its lanes past k are never multiplied by a weight)."""
        return -(-self.k // self.lanes)

    @property
    def peak_macs_per_cycle(self):
        return self.rows * self.cols

    def _check_accumulator(self):
        if self.acc_width > self.OUT_WIDTH:
            raise ConfigError(
                f"k={self.k} needs {self.acc_width}-bit accumulators, more than the "
                f"{self.OUT_WIDTH}-bit output; allowed: k <= "
                f"{2 ** (self.OUT_WIDTH - self.a_width - self.w_width)}")

    def check_weights(self, weights):
        """W as an int64 k×n array, checked for shape and for the ``w_width`` range."""
        w = np.asarray(weights)
        if w.shape != (self.k, self.n):
            raise ValueError(f"weights have shape {w.shape}; expected (k, n) = "
                             f"({self.k}, {self.n})")
        lo, hi = -(1 << (self.w_width - 1)), (1 << (self.w_width - 1)) - 1
        if w.size and (w.min() < lo or w.max() > hi):
            raise ValueError(f"weights outside int{self.w_width} range {lo}..{hi}")
        return w.astype(np.int64)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GemmConfig(LinearSizes, BlockConfig):
    """An output-stationary ``rows``×``cols`` systolic array computing C = A·W.

    ``k`` (inner dimension) and ``n`` (output features) are fixed at elaboration, as in a
    model-specific spatial design where each weight matrix has its own kernel; the number of
    token rows M is free at run time.
    """

    rows: int = spec(4, Range(1, 64), "array rows: token rows computed at once (M tile)")
    cols: int = spec(4, Range(1, 64), "array columns: output features computed at once (N tile)")
    k: int = spec(64, Range(1, 65536), "inner dimension K (input features)")
    n: int = spec(64, Range(1, 65536), "output features N")
    lanes: int = spec(4, Range(1, 64), "activation elements per input beat (any k: the last "
                      "beat of a row is padded)")
    a_width: int = spec(8, Choice((8, 9)),
                        "activation bits (signed); 9 holds uint8 softmax probabilities for P·V")
    w_width: int = spec(8, Choice((4, 8)), "weight bits (signed)")
    dsp_packing: bool = spec(False, None,
                             "two MACs per multiplier: output columns 2p and 2p+1 share one "
                             "(27x18, DSP48E2) multiplier and its activation; needs an even cols "
                             "(on ECP5/iCE40 Yosys splits the 27-bit product: no DSP saved)")

    #: Where the high weight sits in a packed multiplier operand, ``w_hi·2^PACK_SHIFT + w_lo``:
    #: 18 bits keep the low product (|a·w_lo| < 2^16 for 9-bit a, 8-bit w) apart from the high
    #: one, and the operand within the 27-bit port of a DSP48E2. The device catalogue's
    #: packing rule (``hw.devices.products_per_dsp``) is built on it: two MACs per multiplier
    #: only where that product fits one (DSP48E2, DSP58), none saved on ECP5 or iCE40.
    PACK_SHIFT = devices.PACK_SHIFT
    #: Registers from a PE's inputs to its accumulator: the multiplier's operands and its
    #: product, to sit beside the hard multiplier (yosys leaves the ECP5 MULT18X18D's own
    #: registers unused, and the multipliers' fixed sites are far from the logic around them),
    #: then the product again beside the accumulator. Vivado folds all three into a DSP48E2.
    PE_STAGES = 3

    def _validate(self):
        if self.dsp_packing and self.cols % 2:
            raise ConfigError(f"cols={self.cols} is odd, but dsp_packing pairs output columns; "
                              "allowed: an even cols (2..64) with dsp_packing=true")
        self._check_accumulator()

    # Derived sizes (more in LinearSizes) --------------------------------------------------------
    @property
    def tile_steps(self):
        """Array steps per (token tile, feature tile): k, padded so that two successive tiles'
        results never collide in the output registers (>= cols) or in the readout (>= rows)."""
        return int(self.tile_steps_of(self.rows, self.cols, self.k))

    @staticmethod
    def tile_steps_of(rows, cols, k):
        """:attr:`tile_steps` of arrays of designs (arguments broadcast)."""
        return np.maximum(np.maximum(k, cols), rows)

    @property
    def multipliers(self):
        """Multipliers in the array: one per MAC, or one per two with ``dsp_packing``."""
        return self.rows * self.cols // (2 if self.dsp_packing else 1)

    @property
    def readout_step(self):
        """Steps from the flag of a tile's successor entering the array to the readout of the
        tile's row 0 (row i follows i steps later): the skew register, one step per further
        column, the PE's stages and its accumulator."""
        return self.cols + self.PE_STAGES

    @property
    def flush_steps(self):
        """Array steps spent after the last tile of a tensor to bring its results out."""
        return self.flush_steps_of(self.rows, self.cols)

    @classmethod
    def flush_steps_of(cls, rows, cols):
        """:attr:`flush_steps` of arrays of designs: the readout step (``cols + PE_STAGES``),
        then ``rows`` more, plus two."""
        return cols + cls.PE_STAGES + rows + 2

    # Timing (one home: perf.cycles, perf.kernels and perf.spatial call these) -----------------
    @classmethod
    def parts_np(cls, rows, cols, k, n, lanes, m):
        """``(fill, compute, tail)`` cycles of an ``m``×k by k×n product, from the first
        activation beat accepted to the last output beat, with weights preloaded, inputs
        offered every cycle and the output always ready. All arguments broadcast (ints or
        numpy arrays of candidate designs); int64 arrays out.

        The array needs a whole token tile (``rows`` rows of ``k``) before it starts (``fill``);
        after that token tiles follow each other with no bubble, each taking
        ``n_tiles × tile_steps`` steps, as long as the next tile's ``rows·k_beats`` input beats
        (``k_beats = ceil(k/lanes)``) arrive within that time (``compute``: what repeats when
        the same array runs several independent products back to back, as attention heads).
        After the last tile a flush brings the results out, and the last token tile's rows
        drain at one beat (``cols`` outputs) per cycle (``tail``)."""
        rows, cols, k, n, lanes, m = (np.asarray(x, dtype=np.int64)
                                      for x in (rows, cols, k, n, lanes, m))
        nt = -(-n // cols)
        kb = -(-k // lanes)
        tile_work = nt * cls.tile_steps_of(rows, cols, k)
        tiles = -(-m // rows)
        last_rows = m - (tiles - 1) * rows
        fill = np.minimum(m, rows) * kb
        # A token tile can only start once its input has arrived: input is the bottleneck when
        # one tile's beats outnumber the steps of the tile before it.
        per_tile = np.maximum(tile_work, rows * kb)
        compute = (tiles - 1) * per_tile + tile_work
        # the last tile may be shorter than rows, so its input arrives sooner
        input_bound = (tiles > 1) & (rows * kb > tile_work)
        compute = compute - np.where(input_bound,
                                     rows * kb - np.maximum(tile_work, last_rows * kb), 0)
        # Plus one cycle for the activation memory's read, one for the array running a cycle
        # behind the step decision (its inputs and enable are registered) and one for the
        # output memory's read.
        tail = cls.flush_steps_of(rows, cols) + last_rows * nt + 2
        return fill, compute, tail

    @classmethod
    def cycles_np(cls, rows, cols, k, n, lanes, m):
        """Cycles of an ``m``-row product (:meth:`parts_np` summed), over arrays."""
        fill, compute, tail = cls.parts_np(rows, cols, k, n, lanes, m)
        return fill + compute + tail

    def cycles(self, m):
        """Cycles of this array for ``m`` token rows (see :meth:`parts_np`)."""
        if m < 1:
            raise ValueError(f"m={m} must be >= 1")
        return int(self.cycles_np(self.rows, self.cols, self.k, self.n, self.lanes, m))
