"""Configuration of the systolic GEMM (kept apart from the RTL so that ``perf`` and ``sim`` can
import it without elaborating anything)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .. import devices
from ..config import BlockConfig, Choice, ConfigError, Range, spec
from ..numeric import INT32
from .requant import ROUNDINGS

__all__ = ["LinearSizes", "GemmConfig", "WEIGHT_GROUP", "GROUP_SCALE_BITS", "CODE_BITS",
           "GROUP_TABLES", "group_tables", "group_bits"]

#: W4 weights: inputs per group, each group of an output channel with its own scale and
#: minimum (GGUF's Q4_1: ``w = d·q + m``, ``q`` in 0..15). ``hw.layers.config`` re-exports it.
WEIGHT_GROUP = 32
#: Bits of a W4 group's integer scale and minimum (signed): they hold GGUF's float16 ``d`` and
#: ``m`` to 2**-15 of the channel's largest, finer than float16's own 11-bit mantissa for the
#: groups within a factor 16 of it. ``hw.layers.config`` re-exports it.
GROUP_SCALE_BITS = 16
#: Bits of a W4 weight's code ``q`` (unsigned, 0..15). W8's grouped codes (GGUF's Q8_0) are
#: int8, −127..127, with no minimum.
CODE_BITS = 4
#: The group tables of each weight width, in the order a group memory word (and a ``group``
#: beat, and the image's ``groups`` rows) holds them, a feature tile's ``cols`` of each.
GROUP_TABLES = {CODE_BITS: ("group_scale", "group_min"), 8: ("group_scale",)}


def group_tables(w_width):
    """Tables a group of ``w_width``-bit weights carries, each entry :data:`GROUP_SCALE_BITS`
    wide: the scale ``D`` and the minimum ``M`` at W4 (GGUF's Q4_1), the scale alone at W8
    (GGUF's Q8_0, ``w = D·q``). The one home of what a group costs: the GEMM's group memory,
    stream and scaling, the image's ``groups`` section and ``perf``'s weight bytes follow it
    (:data:`GROUP_TABLES`)."""
    return len(GROUP_TABLES[w_width])


def group_bits(w_width):
    """Bits of one group's tables in memory (:func:`group_tables` × :data:`GROUP_SCALE_BITS`):
    at :data:`WEIGHT_GROUP` weights a group, ``group_bits / WEIGHT_GROUP`` bits a weight more
    than its code."""
    return group_tables(w_width) * GROUP_SCALE_BITS


class LinearSizes:
    """What the linear kernels (:class:`GemmConfig`, ``GemvConfig``) derive alike from their
    fields ``rows``, ``cols``, ``k``, ``n``, ``lanes``, ``a_width`` and ``w_width``."""

    OUT_WIDTH = 32  # results are int32 at the block boundary, whatever the accumulator

    @property
    def k_per_word(self):
        """k per weight memory word (and ``weight`` beat) of a feature tile: 2 with
        ``weight_groups`` at ``w_width`` 4 (4-bit codes, two rows' ``cols`` codes a ``cols``
        bytes wide word, as an int8 word), else 1."""
        return 2 if self.weight_groups and self.w_width == CODE_BITS else 1

    @property
    def mul_w_width(self):
        """Bits of the multipliers' weight operand (signed): ``w_width`` (one more for
        :class:`GemmConfig`'s grouped weights, whose codes are unsigned)."""
        return self.w_width

    @property
    def acc_width(self):
        """Accumulator bits: a + w + ceil(log2 k) holds any sum of k products exactly (w the
        weight, :attr:`sum_w_width`)."""
        return self.a_width + self.sum_w_width + max(0, math.ceil(math.log2(self.k)))

    @property
    def sum_w_width(self):
        """Bits of the weight a sum is of (signed): ``w_width`` (more for
        :class:`GemmConfig`'s grouped weights, ``D·q + M``)."""
        return self.w_width

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
    a_width: int = spec(8, Choice((8, 9, 10, 11)),
                        "activation bits (signed); 9, 10: the quant stages' rows (a layer "
                        "description's narrow); 11: the softmax's 10-bit probabilities for P·V")
    w_width: int = spec(8, Choice((4, 8)), "weight bits (signed)")
    dsp_packing: bool = spec(False, None,
                             "two MACs per multiplier: output columns 2p and 2p+1 share one "
                             "(27x18, DSP48E2) multiplier and its activation; needs an even cols "
                             "(on ECP5/iCE40 Yosys splits the 27-bit product: no DSP saved); with "
                             "weight_groups the pair is two columns' codes")
    weight_groups: bool = spec(False, None,
                               "weights as GGUF's Q4_1 (w_width 4: codes q 0..15, each group "
                               "of 32 inputs of a column with a 16-bit scale D and minimum M, "
                               "w = D·q + M) or Q8_0 (w_width 8: codes -127..127 and a 16-bit "
                               "scale D a group, w = D·q) store them; needs k a multiple of "
                               "32; results are rounded and shifted right by group_shift")
    group_shift: int | None = spec(None, Range(0, 62),
                                   "weight_groups: the right shift of the results into int32; "
                                   "none: the least that can never saturate")
    rounding: str = spec("half_even", Choice(ROUNDINGS),
                         "weight_groups: rounding of the results' shift")

    #: Where the high weight sits in a packed multiplier operand, ``w_hi·2^PACK_SHIFT + w_lo``:
    #: 18 bits keep the low product (a signed ``a_width + w_width``-bit number: packing needs
    #: ``a_width`` ≤ 10 at 8-bit w) apart from the high one, and the operand within the 27-bit
    #: port of a DSP48E2. The device catalogue's
    #: packing rule (``hw.devices.products_per_dsp``) is built on it: two MACs per multiplier
    #: only where that product fits one (DSP48E2, DSP58), none saved on ECP5 or iCE40.
    PACK_SHIFT = devices.PACK_SHIFT
    #: Registers from a PE's inputs to its accumulator: the multiplier's operands and its
    #: product, to sit beside the hard multiplier (yosys leaves the ECP5 MULT18X18D's own
    #: registers unused, and the multipliers' fixed sites are far from the logic around them),
    #: then the product again beside the accumulator. Vivado folds all three into a DSP48E2.
    PE_STAGES = 3
    #: Registers from a group's partial sums leaving the array to their scaled sum
    #: (``D·Σa·q + M·Σa`` plus what came before), with ``weight_groups``: the products.
    GROUP_STAGES = 1

    def _validate(self):
        if self.dsp_packing and self.cols % 2:
            raise ConfigError(f"cols={self.cols} is odd, but dsp_packing pairs output columns; "
                              "allowed: an even cols (2..64) with dsp_packing=true")
        if self.dsp_packing and self.a_width + self.mul_w_width > self.PACK_SHIFT:
            raise ConfigError(f"a_width={self.a_width} with dsp_packing: the low products "
                              f"must stay within the {self.PACK_SHIFT} bits below the high "
                              f"ones; allowed: a_width <= {self.PACK_SHIFT - self.mul_w_width} "
                              f"with dsp_packing=true at {self.mul_w_width}-bit weight operands")
        if not self.weight_groups:
            if self.group_shift is not None:
                raise ConfigError(f"group_shift={self.group_shift} is given, but weight_groups "
                                  "is false; allowed: none (or weight_groups=true)")
            self._check_accumulator()
            return
        if self.k % WEIGHT_GROUP:
            raise ConfigError(f"k={self.k} with weight_groups; allowed: a multiple of "
                              f"{WEIGHT_GROUP} (whole groups)")
        for name in ("rows", "cols"):
            if getattr(self, name) > WEIGHT_GROUP:
                raise ConfigError(f"{name}={getattr(self, name)} with weight_groups: a group's "
                                  f"partial sums are read out within its {WEIGHT_GROUP} steps; "
                                  f"allowed: {name} <= {WEIGHT_GROUP}")
        if self.group_shift is not None and (isinstance(self.group_shift, bool) or not
                                             isinstance(self.group_shift, int)):
            raise ConfigError(f"group_shift={self.group_shift!r} must be an integer")
        if self.group_shift is not None and self.group_shift < self.min_group_shift:
            raise ConfigError(f"group_shift={self.group_shift} lets k={self.k} sums of "
                              f"{self.a_width}-bit activations and expanded weights overflow "
                              f"int32; allowed: group_shift >= {self.min_group_shift}")
        if self.group_shift is not None and self.group_shift > self.acc_width - 2:
            raise ConfigError(f"group_shift={self.group_shift} drops every bit of the "
                              f"{self.acc_width}-bit sums; allowed: group_shift <= "
                              f"{self.acc_width - 2}")

    # Grouped weights (weight_groups) -------------------------------------------------------------
    @property
    def mul_w_width(self):
        """Bits of the multipliers' weight operand: ``w_width``, or with ``weight_groups`` the
        code as a signed operand (``CODE_BITS + 1``): the PEs multiply codes, and a group's
        scale and minimum are applied to its partial sums after the array
        (:attr:`group_sum_width`)."""
        if self.weight_groups and self.w_width == CODE_BITS:
            return CODE_BITS + 1
        return self.w_width

    @property
    def sum_w_width(self):
        """Bits of the weight the results are sums of: with ``weight_groups`` the expanded
        weight ``W' = D·q + M`` (:meth:`expanded_range`): ``GROUP_SCALE_BITS + w_width``, as
        if it were multiplied; else ``w_width``."""
        return GROUP_SCALE_BITS + self.w_width if self.weight_groups else self.w_width

    @property
    def group_sum_width(self):
        """Bits of a PE's sum with ``weight_groups``: one group's ``Σ a·q`` (``a_width`` +
        ``mul_w_width`` + log2 32), which the array's row-sum column shares for ``Σ a``."""
        return self.a_width + self.mul_w_width + WEIGHT_GROUP.bit_length() - 1

    @property
    def pe_acc_width(self):
        """Bits of a PE's accumulator: :attr:`acc_width`, or with ``weight_groups`` one
        group's (:attr:`group_sum_width`)."""
        return self.group_sum_width if self.weight_groups else self.acc_width

    @property
    def pe_stages(self):
        """Enabled stages from a PE's inputs to its accumulator: ``PE_STAGES``, or with
        ``weight_groups`` ``GROUP_STAGES`` fewer, which the group's scale and minimum take
        after the array, so that results reach the output buffer at the step they do without
        groups (:attr:`write_step`: the same timing)."""
        return self.PE_STAGES - (self.GROUP_STAGES if self.weight_groups else 0)

    def expanded_range(self):
        """``(lo, hi)`` of ``W' = D·q + M`` over int16 ``D``, ``M``: with ``q`` in 0..15
        (``w_width`` 4) ``(-2**19, 2**19 - 16)`` (``D = M = -2**15``, ``q = 15``;
        ``D = M = 2**15 - 1``, ``q = 15``), a signed ``GROUP_SCALE_BITS + 4``-bit number; with
        ``q`` in −128..127 (``w_width`` 8) ``(-2**22 - 2**15 + 128, 2**22 + 2**15 - 1)``
        (``D = 2**15 − 1``, ``q = −128``, ``M = −2**15``; ``D = −2**15``, ``q = −128``,
        ``M = 2**15 − 1``), a signed ``GROUP_SCALE_BITS + 8``-bit number. Q8_0's groups have
        no minimum, but their range keeps one's headroom: a bound all the same, which keeps the
        least shift (:attr:`min_group_shift`), and so every result, what it was when their
        minima were stored as zeros."""
        lo, hi = -(1 << (GROUP_SCALE_BITS - 1)), (1 << (GROUP_SCALE_BITS - 1)) - 1
        if self.w_width == CODE_BITS:
            top = (1 << CODE_BITS) - 1
            return lo * top + lo, hi * top + hi
        qlo, qhi = -(1 << (self.w_width - 1)), (1 << (self.w_width - 1)) - 1
        prods = (lo * qlo, lo * qhi, hi * qlo, hi * qhi)
        return min(prods) + lo, max(prods) + hi

    @property
    def groups(self):
        """Weight groups along k (``k / WEIGHT_GROUP``)."""
        return self.k // WEIGHT_GROUP

    @property
    def sum_bound(self):
        """The largest ``|Σ_k a·W'|`` of grouped weights: ``k · 2**(a_width-1) · 2**19``
        (every ``a = -2**(a_width-1)`` and ``W' = -2**19``); every other sum is above
        ``-sum_bound``."""
        lo, _ = self.expanded_range()
        return self.k * (1 << (self.a_width - 1)) * -lo

    @property
    def min_group_shift(self):
        """The least shift whose rounded result of any sum (``|x| <= sum_bound``) fits int32
        in every rounding: ``ceil(sum_bound / 2**s) <= INT32.max`` (a rounding never leaves
        ``[floor, ceil]`` of the quotient)."""
        s = 0
        while -(-self.sum_bound >> s) > INT32.max:
            s += 1
        return s

    @property
    def shift(self):
        """The results' right shift: ``group_shift``, or its least value; 0 without groups."""
        if not self.weight_groups:
            return 0
        return self.min_group_shift if self.group_shift is None else self.group_shift

    @property
    def acc_bias(self):
        """What each accumulator starts from: half of the shift's step when the rounding is to
        nearest (then the drain's floor shift, with a tie fix for half-even, rounds), else 0.
        ``sum_bound + acc_bias`` stays below ``2**(acc_width-1)``: ``acc_width`` has a bit to
        spare over ``sum_bound`` and the bias is below ``2**(shift-1)``, far smaller."""
        if self.shift == 0 or self.rounding == "floor":
            return 0
        return 1 << (self.shift - 1)

    @property
    def obuf_width(self):
        """Bits of a result in the output buffer: the accumulator, or with ``weight_groups``
        the shifted int32."""
        return self.OUT_WIDTH if self.weight_groups else self.acc_width

    def check_codes(self, codes):
        """The grouped weights' codes as an int64 k×n array in 0..15 (``w_width`` 4), or in
        the int8 range (``w_width`` 8)."""
        if self.w_width != CODE_BITS:
            return self.check_weights(codes)
        q = np.asarray(codes)
        if q.shape != (self.k, self.n):
            raise ValueError(f"codes have shape {q.shape}; expected (k, n) = "
                             f"({self.k}, {self.n})")
        if q.size and (q.min() < 0 or q.max() >= 1 << CODE_BITS):
            raise ValueError(f"codes outside 0..{(1 << CODE_BITS) - 1}")
        return q.astype(np.int64)

    def check_group_tables(self, tables):
        """The group tables :attr:`group_tables` of ``tables`` (a dict by name; ``None`` for
        one not there) checked (:meth:`check_group_table`), in order; ``ValueError`` if one of
        them is missing or one more is given (Q8_0's groups have no minimum)."""
        extra = [k for k, t in tables.items() if t is not None and k not in self.group_tables]
        if extra:
            raise ValueError(f"{', '.join(extra)} given, but w_width={self.w_width} groups "
                             f"have {' and '.join(self.group_tables) or 'no tables'} only")
        missing = [k for k in self.group_tables if tables.get(k) is None]
        if missing:
            raise ValueError(f"{', '.join(self.group_tables)} go together; "
                             f"{', '.join(missing)} is missing")
        return [self.check_group_table(k, tables[k]) for k in self.group_tables]

    def check_group_table(self, name, table):
        """A group table (``group_scale`` or ``group_min``) as an int64 (k/32)×n array of
        ``GROUP_SCALE_BITS``-bit signed integers."""
        t = np.asarray(table)
        if t.shape != (self.groups, self.n):
            raise ValueError(f"{name} has shape {t.shape}; expected (k/{WEIGHT_GROUP}, n) = "
                             f"({self.groups}, {self.n})")
        lo, hi = -(1 << (GROUP_SCALE_BITS - 1)), (1 << (GROUP_SCALE_BITS - 1)) - 1
        if t.size and (t.min() < lo or t.max() > hi):
            raise ValueError(f"{name} outside int{GROUP_SCALE_BITS} range {lo}..{hi}")
        return t.astype(np.int64)

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
    def group_tables(self):
        """The group tables (:data:`GROUP_TABLES`) with ``weight_groups``: ``group_scale``,
        and at ``w_width`` 4 ``group_min``; else none."""
        return GROUP_TABLES[self.w_width] if self.weight_groups else ()

    @property
    def group_minimum(self):
        """Whether the groups have a minimum ``M`` (W4): then the array sums each row's
        activations too (its row-sum column) and the scaling adds ``M·Σa``."""
        return "group_min" in self.group_tables

    @property
    def group_multipliers(self):
        """Multipliers after the array with ``weight_groups``: per column a group's scale
        (``D·Σa·q``) and at W4 its minimum (``M·Σa``), shared by the rows; else none."""
        return len(self.group_tables) * self.cols

    @property
    def readout_step(self):
        """Steps from the flag of a tile's successor (with ``weight_groups`` a group's)
        entering the array to the readout of the tile's (group's) row 0 (row i follows i
        steps later): the skew register, one step per further column, the PE's stages
        (:attr:`pe_stages`) and its accumulator."""
        return self.cols + self.pe_stages

    @property
    def group_queue_depth(self):
        """With ``weight_groups``, entries of the queue of group ``(D, M)`` rows between a
        group's entry into the array and its last row's readout (``readout_step + rows`` steps
        after the next group's flag, a group every ``WEIGHT_GROUP`` steps), a power of two."""
        span = WEIGHT_GROUP + self.readout_step + self.rows + 2
        return 1 << max(1, (-(-span // WEIGHT_GROUP) - 1).bit_length())

    @property
    def write_step(self):
        """Steps from the flag of a tile's successor to the write of the tile's row 0 to the
        output buffer (row i follows i steps later): :attr:`readout_step`, or with
        ``weight_groups`` ``GROUP_STAGES`` more (the group's scaling), which is the plain
        GEMM's readout step: ``cols + PE_STAGES`` either way."""
        return self.readout_step + (self.GROUP_STAGES if self.weight_groups else 0)

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
