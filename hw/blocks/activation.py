"""Element-wise activations on int8: GELU (``tanh`` or ``erf`` form) and SiLU, by table.

An int8 input has only 256 values, so the exact answer for each is computed once at elaboration
and stored: entry ``c`` of the 256-entry table (``c`` the input's two's complement code, i.e.
``x & 0xFF``) holds ``saturate(round_half_even(f(x · x_scale) / out_scale))`` with ``f``
evaluated in float64, saturated to the output type: int8, or int16 with ``out_width=16`` (the
table's entries widen). A wider input (``in_width`` 9..12: LLaMA's SiLU input, whose rows
differ in range by more than int8 holds, ``hw/layers/llama.py``) takes a table of
``2**in_width`` entries the same way (code ``x & (2**in_width − 1)``). The table is
:attr:`ActivationConfig.lut`; the RTL's ROMs and the bit-exact golden model both read it.

The float functions (:data:`FUNCTIONS`):

* GELU ``erf`` (exact): ``0.5·x·(1 + erf(x/√2))`` (BERT);
* GELU ``tanh`` (GPT-2's formula): ``0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))``; it differs
  from the exact GELU by at most 4.7e-4 in absolute value (the table follows the formula
  chosen, not the exact GELU);
* SiLU: ``x · sigmoid(x)``.

Accuracy: the output is the nearest int8 to the float64 function of the dequantised input, so
``|y·out_scale − f(x·x_scale)| ≤ 0.5·out_scale`` unless ``f`` leaves the output's range, where
``y`` saturates to −128 or 127 (int16: −32768 or 32767) — the best the output type can do,
for either width. ``tests/hw/test_activation.py``
checks this over all 256 codes against an independent float64 implementation (measured
≤ 0.5 LSB, attained where ``f/out_scale`` falls half-way between two integers).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import BlockConfig, Choice, Range, spec
from ..numeric import IntType
from ..stream import row_layout
from .loadable import Constant, constant_memories
from .requant import EltwiseTiming, Scale, check_scale

__all__ = ["ActivationConfig", "GeluConfig", "SiluConfig", "LutActivation", "Gelu", "Silu",
           "FUNCTIONS", "APPROXIMATIONS"]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_C = 0.044715


def _gelu_erf(x):
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + math.tanh(_SQRT_2_OVER_PI * (x + _GELU_TANH_C * x ** 3)))


def _silu(x):
    # x·sigmoid(x), written so that exp never overflows for large |x|
    if x >= 0:
        return x / (1.0 + math.exp(-x))
    e = math.exp(x)
    return x * e / (1.0 + e)


#: (function, approximation) → the scalar float64 function that fills the table.
FUNCTIONS = {
    ("gelu", "tanh"): _gelu_tanh,
    ("gelu", "erf"): _gelu_erf,
    ("silu", None): _silu,
}
APPROXIMATIONS = ("tanh", "erf")
#: Output widths: int8, or int16 (the wide residual stream's GELU output).
OUT_WIDTHS = (8, 16)
#: Input widths (the table's address bits): int8, or up to 12 bits (4096 entries).
IN_WIDTHS = (8, 9, 10, 11, 12)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ActivationConfig(EltwiseTiming, BlockConfig):
    """Common fields of the table-driven int8 → int8 (or int16) activations."""

    length: int = spec(64, Range(1, 65536), "row length (elements per row)")
    lanes: int = spec(4, Range(1, 64), "elements per beat (one table read port each); any "
                      "length: the last beat of a row is padded")
    x_scale: float = spec(1.0 / 32, Scale(), "scale of the int8 input")
    out_scale: float | None = spec(
        None, Scale(), "scale of the int8 output; none: calibrated from the data by `run` (the "
        "float result's max magnitude maps to 127), else from the function's values at all "
        "2**in_width input codes")
    out_width: int = spec(8, Choice(OUT_WIDTHS), "bits of the output and of each table entry "
                          "(int8 or int16)")
    in_width: int = spec(8, Choice(IN_WIDTHS), "bits of the input, the table's address "
                         "(2**in_width entries)")

    #: One cycle: the table's synchronous read port is the output register.
    LATENCY = 1
    function = ""

    @property
    def IN(self):
        """Integer type of the input (int8, or ``in_width`` bits)."""
        return IntType(self.in_width)

    @property
    def entries(self):
        """Table entries, ``2**in_width``."""
        return 1 << self.in_width

    @property
    def OUT(self):
        """Integer type of the output (and of the table's entries)."""
        return IntType(self.out_width)

    def _validate(self):
        object.__setattr__(self, "x_scale", check_scale("x_scale", self.x_scale))
        if self.out_scale is not None:
            object.__setattr__(self, "out_scale", check_scale("out_scale", self.out_scale))

    @property
    def beats(self):
        """Beats per row, ``ceil(length / lanes)``: the last one is padded when ``lanes`` does
        not divide ``length`` (each lane is on its own, so its padding lanes just pass through
        the table and are dropped by the consumer)."""
        return -(-self.length // self.lanes)

    @property
    def approximation_key(self):
        return None

    @property
    def scalar_function(self):
        """The float64 function of a real input that the table holds."""
        return FUNCTIONS[(self.function, self.approximation_key)]

    @functools.cached_property
    def table_inputs(self):
        """The real input of each table entry, by code 0..2**in_width − 1 (the upper half
        negative)."""
        n = self.entries
        codes = np.arange(n)
        return (np.where(codes >= n // 2, codes - n, codes) * self.x_scale).astype(np.float64)

    @functools.cached_property
    def table_reals(self):
        """``f`` at each entry's input, float64."""
        f = self.scalar_function
        return np.array([f(float(v)) for v in self.table_inputs], dtype=np.float64)

    @property
    def out_scale_value(self):
        """The output scale in use: ``out_scale``, or without it the scale that maps the largest
        ``|f|`` over all input codes onto 127 (1 if ``f`` is zero there)."""
        if self.out_scale is not None:
            return self.out_scale
        amax = float(np.max(np.abs(self.table_reals)))
        return amax / self.OUT.max if amax > 0 else 1.0

    @functools.cached_property
    def lut(self):
        """The ``2**in_width`` table entries (``OUT``: int8 or int16) by input code: ``f``
        requantised to ``out_scale`` (round half to even, saturate)."""
        q = np.rint(self.table_reals / self.out_scale_value)
        return tuple(int(v) for v in self.OUT.saturate(q))


@dataclasses.dataclass(frozen=True, kw_only=True)
class GeluConfig(ActivationConfig):
    """GELU on int8 rows."""

    approximation: str = spec("tanh", Choice(APPROXIMATIONS),
                              "float function in the table: tanh = GPT-2's formula, "
                              "erf = exact GELU")
    function = "gelu"

    @property
    def approximation_key(self):
        return self.approximation


@dataclasses.dataclass(frozen=True, kw_only=True)
class SiluConfig(ActivationConfig):
    """SiLU (x·sigmoid(x)) on int8 rows."""

    function = "silu"


class LutActivation(wiring.Component):
    """An int8 → int8 (int16) function applied lane by lane through a 256-entry table (a
    wider input, ``in_width``: ``2**in_width`` entries).

    Parameters
    ----------
    cfg : ActivationConfig

    Members
    -------
    i : In(stream.Signature(row_layout(signed(in_width), lanes)))
        Input rows, ``ceil(length / lanes)`` beats per row (the last one padded), ``last`` on a
        row's last beat, ``end``
        on the tensor's last beat.
    o : Out(stream.Signature(row_layout(signed(out_width), lanes)))
        ``cfg.lut[x & (2**in_width − 1)]`` for each lane, ``last`` and ``end`` carried through.

    The table is one :class:`amaranth.lib.memory.Memory` (``2**in_width`` × ``out_width`` bits,
    contents fixed at elaboration) with one synchronous read port per lane; the read ports' data
    registers are the output register, so latency is 1 cycle and the initiation interval 1
    (``lanes`` elements per cycle). The read ports are enabled by the output register's advance
    (``~o.valid | o.ready``), which is also ``i.ready``: under backpressure the output, its
    table data included, holds until taken. Synthesis maps the table to distributed ROM
    (LUTs) or a block RAM, two lanes per dual-port block.
    """

    def __init__(self, cfg: ActivationConfig, *, loads=None):
        if not isinstance(cfg, ActivationConfig):
            raise TypeError(f"cfg must be an ActivationConfig, not {cfg!r}")
        self.cfg, self._loads = cfg, loads
        super().__init__({
            "i": In(stream.Signature(row_layout(cfg.IN.shape, cfg.lanes))),
            "o": Out(stream.Signature(row_layout(cfg.OUT.shape, cfg.lanes))),
        })

    def constants(self):
        """The calibrated memory (:class:`~.loadable.Constant`): the ``2**in_width``-entry
        ``table``
        (its entries depend on the input and output scales), written at run time with
        ``loads``."""
        return [Constant("table", self.cfg.OUT.shape, tuple(int(v) for v in self.cfg.lut))]

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        table = constant_memories(m, self.constants(), self._loads)["table"]
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)
        for j in range(cfg.lanes):
            port = table.read_port()
            m.d.comb += [
                port.addr.eq(self.i.payload.data[j].as_unsigned()),
                port.en.eq(advance),
                self.o.payload.data[j].eq(port.data),
            ]
        last, end = Signal(), Signal()
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(self.i.valid), last.eq(self.i.payload.last),
                         end.eq(self.i.payload.end)]
        m.d.comb += [self.o.payload.last.eq(last), self.o.payload.end.eq(end)]
        return m


class Gelu(LutActivation):
    """GELU by table (see :class:`LutActivation`); ``cfg.approximation`` picks the formula."""

    def __init__(self, cfg: GeluConfig, *, loads=None):
        if not isinstance(cfg, GeluConfig):
            raise TypeError(f"cfg must be a GeluConfig, not {cfg!r}")
        super().__init__(cfg, loads=loads)


class Silu(LutActivation):
    """SiLU by table (see :class:`LutActivation`)."""

    def __init__(self, cfg: SiluConfig, *, loads=None):
        if not isinstance(cfg, SiluConfig):
            raise TypeError(f"cfg must be a SiluConfig, not {cfg!r}")
        super().__init__(cfg, loads=loads)
