"""How a block meets tensors: which tensors it takes and gives, how they become stream beats,
and its golden model. One :class:`BlockHarness` per block, found by name in :data:`HARNESSES`;
the simulator back ends (:mod:`llmloom.sim.runner`), the CLI, tests and benchmarks all use it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from pathlib import Path

import numpy as np
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..hw.config import BlockConfig, ConfigError
from ..hw.stream import row_layout

__all__ = ["TensorSpec", "Drive", "AxiMemory", "Gate", "Segment", "BlockHarness", "HARNESSES",
           "get_harness", "load_harnesses", "TensorError", "ControlStreams"]


class TensorError(ValueError):
    """An input tensor is missing or has the wrong shape or type. One line, fit for a user."""


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str          # "int8", "int32", "float32", ...
    shape: str          # in words, e.g. "M×k"
    doc: str = ""
    optional: bool = False


class Gate(typing.NamedTuple):
    """Timed input word ``word`` is not offered before output ``after`` has produced ``beats``
    beats (it is offered, stalls permitting, in the cycle after that beat's transfer)."""

    word: int
    after: str
    beats: int


class Segment(typing.NamedTuple):
    """A tensor of a run, timed from the transfer of word ``word`` of timed input ``port`` to
    the transfer of beat number ``beats`` (counted from 1) of output ``out``, inclusive."""

    port: str
    word: int
    out: str
    beats: int


@dataclasses.dataclass(frozen=True)
class AxiMemory:
    """An AXI4 read slave on the block's AXI port ``<port>__ar*``/``__r*`` (as
    :func:`~llmloom.hw.blocks.axi_reader.AxiReadSignature` names them), over ``image`` (bytes
    at address 0; reads past its end give zeros), on a bus of ``data_width`` bits.

    Each accepted burst's first beat is offered ``latency`` cycles after its AR transfer at
    the earliest (an int, or an inclusive range ``(lo, hi)`` drawn per burst from
    ``random.Random(seed)``), and never before the previous burst's last beat has gone:
    bursts return in order, one beat a cycle. RVALID follows the run's input stall pattern
    (once offered, a beat stays until RREADY takes it), ARREADY the output one. Bursts must be
    INCR, full width, word aligned and within a 4 KB page (else the run fails).

    With ``write`` also a write slave over the same image (``<port>__aw*``, ``__w*``, ``__b*``,
    as :func:`~llmloom.hw.blocks.axi_writer.AxiWriteSignature` names them; ``image`` then a
    ``bytearray``, written in place): AWREADY and WREADY follow the output stall pattern (WREADY
    only while an accepted burst waits for data), each W beat writes its WSTRB bytes at its
    burst's next word (WLAST must close each burst), and each burst's OKAY response is offered
    ``latency`` cycles after its last beat (drawn from the same generator as the reads'), in
    order, until BREADY takes it. Write bursts obey the read bursts' rules, within the image."""

    image: bytes
    data_width: int
    latency: object = 1
    seed: int = 0
    write: bool = False

    def __post_init__(self):
        lo, hi = self.latency_range
        if not 1 <= lo <= hi:
            raise ValueError(f"latency={self.latency!r}; allowed: an int >= 1 or (lo, hi) "
                             "with 1 <= lo <= hi")
        if self.data_width % 8 or self.data_width & (self.data_width - 1) or \
                not 8 <= self.data_width <= 1024:
            raise ValueError(f"data_width={self.data_width}; allowed: a power of two, 8..1024")
        if self.write and not isinstance(self.image, bytearray):
            raise ValueError("an AXI memory with write needs a bytearray image (written in "
                             "place)")

    @property
    def latency_range(self):
        lat = self.latency
        return (lat, lat) if isinstance(lat, int) else tuple(int(v) for v in lat)

    @property
    def lanes(self):
        return self.data_width // 8


@dataclasses.dataclass
class Drive:
    """Beats for one run. ``preload`` streams are driven to completion first (untimed);
    ``timed`` ones start together, and cycles count from the first timed transfer to the last
    output transfer. ``expect`` gives the number of beats each output stream must produce.

    ``gates`` (optional) holds timed words back: ``{input port: [Gate(word, after, beats),
    ...]}``, e.g. the first word of a decode step until the previous tensor's output is all
    out, as autoregressive decode must wait. ``segments`` (optional, :class:`Segment`) are
    timed separately (the run's ``tensor_cycles``). ``memory`` (optional): ``{AXI port:
    AxiMemory}``, a read slave on each such port of the block."""

    preload: dict
    timed: dict
    expect: dict
    gates: dict = dataclasses.field(default_factory=dict)
    segments: list = dataclasses.field(default_factory=list)
    memory: dict = dataclasses.field(default_factory=dict)


class BlockHarness:
    """Base class; subclasses set the class attributes and implement the methods."""

    name: str = ""
    summary: str = ""
    config_cls: type[BlockConfig]
    component_cls: type
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    #: config fields that ``infer`` may take from tensor shapes when not given
    shape_fields: tuple[str, ...] = ()

    # -- configuration --------------------------------------------------------------------------
    def config(self, values=None, tensors=None):
        """The block config from user ``values`` (a dict), filling ``shape_fields`` from the
        tensors when the user did not give them."""
        values = dict(values or {})
        if tensors is not None:
            for key, value in self.infer(tensors).items():
                values.setdefault(key, value)
        return self.config_cls.from_dict(values)

    def infer(self, tensors):
        return {}

    def component(self, cfg):
        return self.component_cls(cfg)

    # -- tensors --------------------------------------------------------------------------------
    def prepare(self, cfg, tensors):
        """Check and normalise input tensors; raise :class:`TensorError` naming the problem."""
        raise NotImplementedError

    def drive(self, cfg, tensors) -> Drive:
        raise NotImplementedError

    def collect(self, cfg, tensors, beats):
        """Output beats (``{port: [int, ...]}``) → output tensors."""
        raise NotImplementedError

    def golden(self, cfg, tensors):
        """The bit-exact golden model's outputs for the same tensors."""
        raise NotImplementedError

    def macs(self, cfg, tensors):
        return 0

    def shape_args(self, cfg, tensors):
        """Arguments after ``cfg`` of the block's cycle prediction in ``perf.cycles``."""
        return ()

    def peak_macs_per_cycle(self, cfg):
        return 0

    # -- shared checks ------------------------------------------------------------------------
    @staticmethod
    def require_int(tensors, name, itype, shape):
        """``tensors[name]`` as int64, checked to be an integer array of ``shape`` (``None``
        entries are free) of a dtype no wider than ``itype``'s container, with values in
        range."""
        if name not in tensors:
            raise TensorError(f"missing input tensor {name!r}")
        x = np.asarray(tensors[name])
        container = 8 * itype.dtype.itemsize   # int4 travels in int8 arrays, int24 in int32
        if not np.issubdtype(x.dtype, np.integer) or x.dtype.itemsize * 8 > container:
            raise TensorError(f"tensor {name!r} has dtype {x.dtype}; expected {itype.name}")
        if not itype.contains(x):
            raise TensorError(f"tensor {name!r} has values outside {itype.name} "
                              f"({itype.min}..{itype.max})")
        if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(
                shape, x.shape, strict=False)):
            want = "×".join("?" if s is None else str(s) for s in shape)
            raise TensorError(f"tensor {name!r} has shape {'×'.join(map(str, x.shape))}; "
                              f"expected {want}")
        return x.astype(np.int64)


HARNESSES: dict[str, BlockHarness] = {}


def register(harness_cls):
    HARNESSES[harness_cls.name] = harness_cls()
    return harness_cls


def get_harness(name):
    load_harnesses()
    if name not in HARNESSES:
        raise ConfigError(f"unknown block {name!r}; known: {', '.join(sorted(HARNESSES))}")
    return HARNESSES[name]


def load_harnesses():
    """Import every harness module in :mod:`llmloom.sim.blocks` (each registers itself), so
    that :data:`HARNESSES` holds every block; :func:`get_harness` calls it, code that walks
    :data:`HARNESSES` directly calls it first."""
    import importlib
    import pkgutil

    from . import blocks
    for info in pkgutil.iter_modules(blocks.__path__):
        importlib.import_module(f"{blocks.__name__}.{info.name}")


class ControlStreams(wiring.Component):
    """``inner`` with its plain control inputs driven from streams, for the testbenches (which
    drive streams only; an undriven top-level input is X on Icarus).

    Every stream port of ``inner`` appears under its own name. Each plain input named in
    ``held`` becomes an input stream of the same name (``row_layout(shape, 1)``, always
    ready) whose latest beat's value is held on the port (from the cycle after the transfer);
    the other plain inputs stay at 0 (their reset value: a strobe never fires). Plain outputs
    pass through.
    """

    def __init__(self, inner, held=()):
        self._MustUse__silence = True
        self.inner = inner
        self._held = tuple(held)
        members = {}
        for name, member in inner.signature.members.items():
            if member.is_signature:
                members[name] = member
            elif member.flow == In and name in self._held:
                members[name] = In(stream.Signature(row_layout(member.shape, 1)))
            elif member.flow == Out:
                members[name] = member
        missing = set(self._held) - set(members)
        if missing:
            raise ValueError(f"no plain input {sorted(missing)} on {type(inner).__name__}")
        self._MustUse__silence = False
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self.inner
        for name, member in inner.signature.members.items():
            port = getattr(inner, name)
            if member.is_signature:
                if member.flow == In:
                    wiring.connect(m, wiring.flipped(getattr(self, name)), port)
                else:
                    wiring.connect(m, port, wiring.flipped(getattr(self, name)))
            elif name in self._held:
                src = getattr(self, name)
                value = Signal(member.shape, name=f"{name}_held")
                m.d.comb += [src.ready.eq(1), port.eq(value)]
                with m.If(src.valid):
                    m.d.sync += value.eq(src.payload.data[0])
            elif member.flow == Out:
                m.d.comb += getattr(self, name).eq(port)
        return m

    def structure(self):
        """``inner``'s ``structure()`` (``None`` when it has none: its Verilog depends on more
        than its structure) with the held inputs and this module's code, which writes the
        wrapper's part of the Verilog."""
        inner = getattr(self.inner, "structure", None)
        if inner is None:
            return None
        self._MustUse__used = True      # keyed by it, a cached build never elaborates it
        code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
        return json.dumps({"block": type(self).__qualname__, "held": self._held, "code": code,
                           "inner": inner()}, sort_keys=True)
