"""Row softmax of int8 scores with an optional causal mask, 10-bit probabilities out.

Numerics (all integer; the golden model :func:`llmloom.sim.golden.softmax.softmax_bitexact`
does the same steps with the same constants, taken from :class:`SoftmaxConfig`):

* **Mask.** With ``causal``, row r of a tensor (r counts rows since the last ``end`` beat) keeps
  the keys ``j <= r + causal_offset``; masked keys are left out of the max and of the sum (no
  −1e12 sentinel) and get probability 0. Key 0 is always kept (``causal_offset >= 0``).
  With ``runtime_offset`` the offset is not a constant but the plain input port ``offset``
  (unsigned, :data:`OFFSET_BITS` = 13 bits: positions 0..8191, every position of a
  ``MAX_LENGTH`` context), sampled when the first beat of each tensor is accepted (the beat
  that follows an ``end``, or the first after reset). Offsets past ``length − 1`` keep every
  key. Nothing else depends on the offset (exp table, ``exp_frac``, ``prob_shift``,
  reciprocal), so one instance computes, bit for bit, what the configs with
  ``causal_offset = offset`` compute: a decode step or a prefill chunk at any position needs
  no new hardware.
* **Key padding mask** (not causal, ``runtime_keys``): every row of a tensor keeps the keys
  ``j < keys``, ``keys`` read from the plain input port ``keys`` (unsigned,
  :data:`KEYS_BITS` = 14 bits) when the tensor's first beat is accepted, as the offset is;
  0 acts as 1 and counts past ``length`` keep every key. The masked keys are left out exactly
  as causally masked ones are, so a row of ``length`` scores with ``keys = n`` gives, in its
  first ``n`` lanes, the probabilities a config of ``length = n`` gives on its first ``n``
  scores (the beat boundaries are the same, so the online max and sum are too) and 0 after,
  bit for bit where the two lengths share ``exp_frac`` (every length up to 16 does; a longer
  row's table keeps more fraction bits, so it is at least as close to float): one instance
  serves sequences of any length up to ``length``.
* **exp.** The scores are int8, so ``d = max − q`` is an integer in 0..255 and
  ``exp(−x_scale·d)`` has only 256 values: a 256-entry table :attr:`SoftmaxConfig.exp_table`
  holds them exactly rounded to ``F = exp_frac`` fraction bits (better than I-BERT's
  second-order polynomial, whose error is ~1e-3). ``F = max(15, ceil(log2 length) + 11)``
  (15..24): a row can hold ``length`` tiny exps each rounded by up to half a unit, and that
  must not move the sum by more than ``length / 2**(F+1)`` ≤ 2**-12 of its smallest value
  2**F (with 15 bits, 8191 keys whose exp rounds to 0 would lose 12 % of the sum). One table
  per lane, read by both phases (a 256×(F+1)-bit ROM with two read ports; yosys maps it to
  LUTs), and one for the rescale.
* **Phase 1: online softmax** (one statistics pass). Per beat: the beat max ``bm`` of the
  kept lanes, the running max ``M' = max(M, bm)``, and the running sum
  ``S' = round(S · exp_table[M' − M] / 2**F) + Σ exp_table[M' − q]`` (round half up). The
  rescale is exact while the max does not move (the table's entry 0 is 2**F).
* **Reciprocal** (a pipelined scalar unit, 5 cycles, two multiplies per row):
  ``S = m·2**nb`` with ``m ∈ [0.5, 1)`` (priority encoder and shift, ``MANT_BITS`` = 30),
  ``y0 = RECIP_TABLE[top 7 bits of m]`` (1/m at the segment midpoint, 16 fraction bits), one
  Newton step ``y1 = y0·(2 − m·y0)`` (relative error ~2**-16), then
  ``R = round(1023·y1 / 2**(nb + 16 − P))`` ≈ ``1023·2**P / S`` with
  ``P = prob_shift = F + 8``: an 18-bit fixed-scale reciprocal whose quantisation costs at
  most 2**-9 of an output step, because every exp is at most 2**F.
* **Phase 2:** ``p = min(1023, round(exp_table[M − q] · R / 2**P))`` (round half up), 0
  where masked: probabilities as unsigned :data:`PROB_BITS` = 10-bit codes with the fixed
  scale **1/1023** (:data:`OUT_LEVELS`), so a row with one kept key gives exactly 1023 (1.0).

Accuracy against float64 softmax on the dequantised scores ``x·x_scale``: ``|p − 1023·p_float|
≤ 0.5 + 1/4 + ~0.05`` output codes (rounding; the exp table's rounding through the sum, at
most ``1023·0.5·length/2**F`` ≤ 1/4; the own exp's rounding, the reciprocal table and Newton
step), i.e. ``|p/1023 − p_float| ≤ 0.0008`` (:data:`~llmloom.sim.golden.attention.
SOFTMAX_PROB_ERROR`); measured worst case 0.652 codes = 0.00064 (length 64), over random,
Gaussian, adversarial and ascending rows of lengths 1..8192, scales 1/128..2, with and
without the causal mask (``tests/hw/test_softmax.py``). With 8 bits (1/255) the bound was
0.0023: probabilities below 1/510 were 0.

Timing: the row-kernel skeleton (:mod:`.rowkernel`): II = 1 beat per cycle for every row
length; ``STATS_LATENCY`` = 10 (stages: beat register, beat max, running max, exp table, beat
sum, running sum, normalise, reciprocal table, two Newton multiplies, final shift),
``EMIT_STAGES`` = 1 (exp table), so one row alone takes ``2·B + 14`` cycles
(``B = ceil(length/lanes)``).
"""

from __future__ import annotations

import dataclasses
import functools
import math

from amaranth.hdl import Const, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import ConfigError, Range, spec
from ..numeric import INT8, IntType
from ..stream import row_layout
from .loadable import Constant, constant_memories
from .rowkernel import MAX_LENGTH, RowKernel, RowKernelConfig, bit_length_hw, check_positive

__all__ = ["SoftmaxConfig", "Softmax", "PROB_BITS", "PROB", "OUT_LEVELS", "RECIP_TABLE",
           "RECIP_INDEX_BITS", "RECIP_FRAC", "MANT_BITS", "OFFSET_BITS", "KEYS_BITS"]

#: Fraction bits of the exp table: at least 15, and ``ceil(log2(length)) + 11`` so that the
#: rounding of up to ``length`` small exps (0.5 unit each) moves a probability by at most
#: 2**-12 (1/4 of an output step, ``1023 · 0.5 · length / 2**exp_frac``); at most 24 (length
#: 8192).
MIN_EXP_FRAC, EXP_FRAC_MARGIN = 15, 11
#: Probabilities are ``round(e·R / 2**prob_shift)``, ``R ≈ 1023·2**prob_shift / S``, with
#: ``prob_shift = exp_frac + PROB_EXTRA``: R's rounding costs <= 2**-9 of an output step, and R
#: keeps the 18 bits it had with 8-bit probabilities (one 18-bit multiplier operand).
PROB_EXTRA = 8
#: Bits of the unsigned probabilities. Ten, not eight: at 1/255 a probability below 1/510
#: is 0 and the many small ones of a long causal row lose up to a quarter of their weight, the
#: largest single loss of SmolLM2's activations (bench/llama_attribution.py); 1/1023 takes
#: three quarters of that away, and 12 or 16 bits gain nothing more. P·V reads them on
#: ``PROB_BITS + 1``-bit signed lanes, which with k = 8192 keys just fits its int32 sums.
PROB_BITS = 10
#: The unsigned integer type of the probabilities.
PROB = IntType(PROB_BITS, signed=False)
#: The output scale is ``1 / OUT_LEVELS``: probability 1.0 is the code 1023.
OUT_LEVELS = (1 << PROB_BITS) - 1
#: The sum is normalised to ``MANT_BITS`` bits, ``m = mant / 2**MANT_BITS ∈ [0.5, 1)``.
MANT_BITS = 30
#: Bits of m (after its leading one) indexing the reciprocal table.
RECIP_INDEX_BITS = 7
#: Fraction bits of the reciprocal table and of the Newton result.
RECIP_FRAC = 16
#: 1/m at the middle of each table segment of m ∈ [0.5, 1), RECIP_FRAC fraction bits.
RECIP_TABLE = tuple(
    round(2 ** RECIP_FRAC / (0.5 + (i + 0.5) / 2 ** (RECIP_INDEX_BITS + 1)))
    for i in range(2 ** RECIP_INDEX_BITS))
#: Bits of the fixed-scale reciprocal R (largest, OUT_LEVELS·2**PROB_EXTRA, at the smallest
#: sum).
R_BITS = (OUT_LEVELS << PROB_EXTRA).bit_length()
#: Width of the ``offset`` port (``runtime_offset``): any position of a ``MAX_LENGTH`` context.
OFFSET_BITS = (MAX_LENGTH - 1).bit_length()
#: Width of the ``keys`` port (``runtime_keys``): any key count 0..MAX_LENGTH.
KEYS_BITS = MAX_LENGTH.bit_length()


@dataclasses.dataclass(frozen=True, kw_only=True)
class SoftmaxConfig(RowKernelConfig):
    """Softmax over rows of ``length`` int8 scores; probabilities as 10-bit codes at scale
    1/1023."""

    x_scale: float = spec(1.0 / 16, None,
                          "scale of the int8 scores (finite, > 0); IN.npz x_scale")
    causal: bool = spec(False, None, "mask keys j > r + causal_offset in row r of a tensor")
    causal_offset: int = spec(0, Range(0, 1 << 20),
                              "first query row's position: row r keeps keys j <= r + offset")
    runtime_offset: bool = spec(False, None,
                                "take the causal offset from the `offset` port at each tensor's "
                                "first beat (causal only; causal_offset must stay 0)")
    runtime_keys: bool = spec(False, None,
                              "key padding mask: every row keeps keys j < the `keys` port, "
                              "taken at each tensor's first beat (not causal)")

    STATS_LATENCY = 10
    EMIT_STAGES = 1
    OUT = PROB

    def _validate(self):
        super()._validate()
        object.__setattr__(self, "x_scale", check_positive("x_scale", self.x_scale))
        if self.runtime_offset and not self.causal:
            raise ConfigError("runtime_offset=true needs causal=true; allowed: runtime_offset "
                              "only with the causal mask")
        if self.runtime_keys and self.causal:
            raise ConfigError("runtime_keys=true needs causal=false; allowed: the key padding "
                              "mask on bidirectional rows only (causality masks the rest)")
        if self.runtime_offset and self.causal_offset:
            raise ConfigError(f"causal_offset={self.causal_offset} is not allowed with "
                              "runtime_offset=true (the port gives the offset); allowed: 0")

    @property
    def out_scale(self):
        """The fixed scale of the probabilities: ``1 / OUT_LEVELS`` = 1/1023."""
        return 1.0 / OUT_LEVELS

    @property
    def exp_frac(self):
        """Fraction bits F of the exp table (entry 0 is exactly 2**F)."""
        return max(MIN_EXP_FRAC, (self.length - 1).bit_length() + EXP_FRAC_MARGIN)

    @property
    def prob_shift(self):
        return self.exp_frac + PROB_EXTRA

    @functools.cached_property
    def exp_table(self):
        """``round(2**F · exp(−x_scale·d))`` for d = 0..255 (round half to even)."""
        return tuple(round(math.ldexp(math.exp(-self.x_scale * d), self.exp_frac))
                     for d in range(256))

    @property
    def first_limit(self):
        """The last key kept in a tensor's first row."""
        return min(self.causal_offset, self.length - 1) if self.causal else self.length - 1

    @property
    def sum_width(self):
        """Bits of the running sum: at most ``length · 2**exp_frac``."""
        return (self.length << self.exp_frac).bit_length()


def _max(values):
    """The largest of signed Amaranth values (a comparator tree)."""
    values = list(values)
    while len(values) > 1:
        nxt = [Mux(x > y, x, y) for x, y in zip(values[::2], values[1::2], strict=False)]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values[0]


def _sum(values):
    values = list(values)
    while len(values) > 1:
        nxt = [x + y for x, y in zip(values[::2], values[1::2], strict=False)]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values[0]


class Softmax(RowKernel):
    """Row softmax with an optional causal mask (see the module text for the numerics).

    Parameters
    ----------
    cfg : SoftmaxConfig

    Members
    -------
    i : In(stream.Signature(row_layout(signed(8), lanes)))
        Scores, rows of ``ceil(length / lanes)`` beats (the padding lanes of the last beat
        are left out of the max and the sum); ``end`` on a tensor's last beat resets the
        causal row counter.
    offset : In(unsigned(OFFSET_BITS)), only with ``cfg.runtime_offset``
        A plain control input: the position of the next tensor's first row, read in the
        cycle that tensor's first beat is accepted (it need not be held afterwards).
    keys : In(unsigned(KEYS_BITS)), only with ``cfg.runtime_keys``
        A plain control input: the keys every row of the next tensor keeps (``j < keys``),
        read like ``offset``.
    o : Out(stream.Signature(row_layout(unsigned(PROB_BITS), lanes)))
        Probabilities (code/1023), same framing; 0 in the padding lanes.

    Latency: one row alone takes ``2·B + 14`` cycles (``B = ceil(length/lanes)``), first input to
    last output beat. Initiation interval: 1 beat per cycle for any row length (the row
    buffer is ``B + 12`` beats deep, enough to cover the statistics latency). Backpressure: a
    stalled ``o`` holds the output pipeline; the input is refused once the buffer is full; no
    beat is lost or reordered.
    """

    def __init__(self, cfg: SoftmaxConfig, *, loads=None):
        if not isinstance(cfg, SoftmaxConfig):
            raise TypeError(f"cfg must be a SoftmaxConfig, not {cfg!r}")
        self._loads = loads
        if not (cfg.runtime_offset or cfg.runtime_keys):
            super().__init__(cfg, PROB.shape)
            return
        # The row kernel's stream ports plus the plain control input ``offset`` or ``keys``.
        self.cfg, self._out_shape = cfg, PROB.shape
        control = ({"offset": In(unsigned(OFFSET_BITS))} if cfg.runtime_offset else
                   {"keys": In(unsigned(KEYS_BITS))})
        wiring.Component.__init__(self, {
            "i": In(stream.Signature(row_layout(INT8.shape, cfg.lanes))),
            "o": Out(stream.Signature(row_layout(PROB.shape, cfg.lanes))),
            **control,
        })

    def record_layout(self):
        return data.StructLayout({
            "M": signed(8), "R": unsigned(R_BITS), "lim": range(self.cfg.length), "end": 1})

    def _keep(self, beat, lim, n):
        """Lane ``n`` of beat ``beat`` is a key of the row that is kept: not a padding lane of
        the last beat, and with ``causal`` or ``runtime_keys`` not past the row's limit
        (which, at most ``length − 1``, leaves the padding out too)."""
        cfg = self.cfg
        if not (cfg.causal or cfg.runtime_keys):
            return self.lane_valid(beat == cfg.beats - 1, n)
        return beat * cfg.lanes + n <= lim

    def constants(self):
        """The calibrated memory (:class:`~.loadable.Constant`): the exp table (its entries
        depend on the score scale), held in one memory per lane (``exp0``...) and one for
        the rescale (``exp_rescale``), all written at once at run time with ``loads``."""
        cfg = self.cfg
        copies = tuple(f"exp{n}" for n in range(cfg.lanes)) + ("exp_rescale",)
        return [Constant("exp", unsigned(cfg.exp_frac + 1),
                         tuple(int(v) for v in cfg.exp_table), copies)]

    def phase1(self, m, a):
        cfg = self.cfg
        ln, L = cfg.lanes, cfg.length
        roms = constant_memories(m, self.constants(), self._loads)
        exp_ports = [[roms[f"exp{n}"].read_port() for _ in range(2)] for n in range(ln)]
        self._emit_ports = [p[1] for p in exp_ports]
        rescale = roms["exp_rescale"].read_port()

        # the last key kept by the row now in stage A (causal limit or key count − 1)
        lim = Signal(range(L), init=cfg.first_limit)
        if cfg.runtime_offset or cfg.runtime_keys:
            # The next accepted beat starts a tensor after reset and after an `end` row (whose
            # last beat may be in stage A right now). Its offset (key count) is sampled on
            # acceptance and overrides the row counter's update below (the later assignment
            # wins), so the tensor's first beat reaches stage A with its own limit.
            starting = Signal(init=1, name="tensor_start")
            start_now = starting | (a.valid & a.last & a.end)
            accept = self.i.valid & self.i.ready
            m.d.sync += starting.eq(start_now & ~accept)
            if cfg.runtime_offset:
                first_lim = Mux(self.offset > L - 1, L - 1, self.offset)
                with m.If(a.valid & a.last & ~a.end & (lim != L - 1)):
                    m.d.sync += lim.eq(lim + 1)
            else:          # the key padding mask: one limit for every row of the tensor
                first_lim = Mux(self.keys > L, L - 1,
                                Mux(self.keys == 0, 0, self.keys - 1))
            with m.If(accept & start_now):
                m.d.sync += lim.eq(first_lim)
        elif cfg.causal:
            with m.If(a.valid & a.last):
                with m.If(a.end):
                    m.d.sync += lim.eq(cfg.first_limit)
                with m.Elif(lim != L - 1):
                    m.d.sync += lim.eq(lim + 1)

        def flags(prefix):
            return {k: Signal(name=f"{prefix}_{k}") for k in ("valid", "first", "last", "end")}

        # B: beat max of the kept lanes
        b = flags("b")
        b_q = Signal(data.ArrayLayout(signed(8), ln), name="b_q")
        b_keep = Signal(ln, name="b_keep")
        b_bm = Signal(signed(8), name="b_bm")
        b_lim = Signal(range(L), name="b_lim")
        keep_a = [self._keep(a.beat, lim, n) for n in range(ln)]
        m.d.sync += [b[k].eq(a[k]) for k in b]
        m.d.sync += [b_q.eq(a.data), b_lim.eq(lim)]
        m.d.sync += [b_keep[n].eq(keep_a[n]) for n in range(ln)]
        m.d.sync += b_bm.eq(_max(Mux(keep_a[n], a.data[n], -128) for n in range(ln)))

        # C: running max; table indices
        M = Signal(signed(8), name="M")
        m_prev = Mux(b["first"], -128, M)
        m_new = Signal(signed(8), name="m_new")
        m.d.comb += m_new.eq(Mux(b_bm > m_prev, b_bm, m_prev))
        with m.If(b["valid"]):
            m.d.sync += M.eq(m_new)
        c = flags("c")
        c_d = Signal(data.ArrayLayout(unsigned(8), ln), name="c_d")
        c_s = Signal(unsigned(8), name="c_s")
        c_keep = Signal(ln, name="c_keep")
        c_M = Signal(signed(8), name="c_M")
        c_lim = Signal(range(L), name="c_lim")
        m.d.sync += [c[k].eq(b[k]) for k in c]
        m.d.sync += [c_d[n].eq((m_new - b_q[n])[:8]) for n in range(ln)]
        m.d.sync += [c_s.eq((m_new - m_prev)[:8]), c_keep.eq(b_keep), c_M.eq(m_new),
                     c_lim.eq(b_lim)]

        # D: exp table reads
        for n in range(ln):
            m.d.comb += exp_ports[n][0].addr.eq(c_d[n])
        m.d.comb += rescale.addr.eq(c_s)
        d = flags("d")
        d_keep = Signal(ln, name="d_keep")
        d_M = Signal(signed(8), name="d_M")
        d_lim = Signal(range(L), name="d_lim")
        m.d.sync += [d[k].eq(c[k]) for k in d]
        m.d.sync += [d_keep.eq(c_keep), d_M.eq(c_M), d_lim.eq(c_lim)]

        # E: beat sum
        e = flags("e")
        F = cfg.exp_frac
        e_bs = Signal(range(ln * (1 << F) + 1), name="e_bs")
        e_E = Signal(unsigned(F + 1), name="e_E")
        e_M = Signal(signed(8), name="e_M")
        e_lim = Signal(range(L), name="e_lim")
        m.d.sync += [e[k].eq(d[k]) for k in e]
        m.d.sync += e_bs.eq(_sum(Mux(d_keep[n], exp_ports[n][0].data, 0) for n in range(ln)))
        m.d.sync += [e_E.eq(rescale.data), e_M.eq(d_M), e_lim.eq(d_lim)]

        # F: running sum, rescaled when the max moved (exact when it did not)
        S = Signal(cfg.sum_width, name="S")
        rescaled = (S * e_E + (1 << (F - 1))) >> F
        s_new = Signal(cfg.sum_width, name="s_new")
        m.d.comb += s_new.eq(Mux(e["first"], e_bs, rescaled + e_bs))
        with m.If(e["valid"]):
            m.d.sync += S.eq(s_new)
        f_valid, f_end = Signal(name="f_valid"), Signal(name="f_end")
        f_S = Signal(cfg.sum_width, name="f_S")
        f_M = Signal(signed(8), name="f_M")
        f_lim = Signal(range(L), name="f_lim")
        m.d.sync += [f_valid.eq(e["valid"] & e["last"]), f_end.eq(e["end"]), f_S.eq(s_new),
                     f_M.eq(e_M), f_lim.eq(e_lim)]

        # G..K: the reciprocal unit; the row's M, lim and end ride along
        def carry(prefix, src):
            regs = [Signal.like(s, name=f"{prefix}_{s.name.split('_', 1)[1]}") for s in src]
            m.d.sync += [r.eq(s) for r, s in zip(regs, src, strict=True)]
            return regs

        # normalise: left-align S in sum_width bits, keep the top MANT_BITS (floor)
        sw = cfg.sum_width
        nb = bit_length_hw(m, f_S, "f_nb")
        shamt = Signal(range(sw + 1), name="f_shamt")
        aligned = Signal(sw, name="f_aligned")
        m.d.comb += [shamt.eq(sw - nb), aligned.eq(f_S << shamt)]
        g_mant = Signal(MANT_BITS, name="g_mant")
        g_nb = Signal(range(sw + 1), name="g_nb")
        m.d.sync += [g_mant.eq(aligned >> (sw - MANT_BITS) if sw >= MANT_BITS
                               else aligned << (MANT_BITS - sw)), g_nb.eq(nb)]
        g_valid, g_end, g_M, g_lim = carry("g", [f_valid, f_end, f_M, f_lim])

        recip = memory.Memory(shape=unsigned(RECIP_FRAC + 2), depth=len(RECIP_TABLE),
                              init=RECIP_TABLE)
        m.submodules.recip = recip
        recip_port = recip.read_port()
        m.d.comb += recip_port.addr.eq(
            g_mant[MANT_BITS - 1 - RECIP_INDEX_BITS:MANT_BITS - 1])
        h_mant, h_nb, h_valid, h_end, h_M, h_lim = carry(
            "h", [g_mant, g_nb, g_valid, g_end, g_M, g_lim])

        i_t = Signal(RECIP_FRAC + 2, name="i_t")
        i_y0 = Signal(RECIP_FRAC + 2, name="i_y0")
        m.d.sync += [i_t.eq((h_mant * recip_port.data) >> MANT_BITS),
                     i_y0.eq(recip_port.data)]
        i_nb, i_valid, i_end, i_M, i_lim = carry("i", [h_nb, h_valid, h_end, h_M, h_lim])

        j_y1 = Signal(RECIP_FRAC + 2, name="j_y1")
        two = Const(2 << RECIP_FRAC, RECIP_FRAC + 3)
        m.d.sync += j_y1.eq((i_y0 * (two - i_t).as_unsigned()) >> RECIP_FRAC)
        j_nb, j_valid, j_end, j_M, j_lim = carry("j", [i_nb, i_valid, i_end, i_M, i_lim])

        # R = round(1023·y1 / 2**(nb + RECIP_FRAC − prob_shift)); nb >= F + 1: shift >= 9
        sh = Signal(range(cfg.sum_width + 1), name="j_sh")
        m.d.comb += sh.eq(j_nb - (cfg.prob_shift - RECIP_FRAC))
        prod = j_y1 * OUT_LEVELS
        half = (Const(1, len(prod) + 1) << sh) >> 1
        k_rec = Signal(self.record_layout(), name="k_rec")
        k_valid = Signal(name="k_valid")
        m.d.sync += [k_valid.eq(j_valid), k_rec.R.eq((prod + half) >> sh), k_rec.M.eq(j_M),
                     k_rec.lim.eq(j_lim), k_rec.end.eq(j_end)]
        return k_valid, k_rec

    def emit(self, m, adv, issue, s1):
        cfg = self.cfg
        ln = cfg.lanes
        rec = s1["record"]
        keep2 = Signal(ln, name="s2_keep")
        r2 = Signal(unsigned(R_BITS), name="s2_R")
        for n, port in enumerate(self._emit_ports):
            m.d.comb += [port.addr.eq((rec.M - s1["data"][n])[:8]), port.en.eq(adv)]
        with m.If(adv):
            m.d.sync += r2.eq(rec.R)
            m.d.sync += [keep2[n].eq(self._keep(s1["beat"], rec.lim, n)) for n in range(ln)]
        out = []
        for n, port in enumerate(self._emit_ports):
            p = (port.data * r2 + (1 << (cfg.prob_shift - 1))) >> cfg.prob_shift
            out.append(Mux(keep2[n], Mux(p > OUT_LEVELS, OUT_LEVELS, p), 0))
        return out
