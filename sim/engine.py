"""The cycle-by-cycle stream driver shared by all simulator back ends.

A back end calls, every cycle: :meth:`StreamEngine.drive` (the values to put on the block's
``valid``/``payload``/``ready`` inputs), then :meth:`StreamEngine.observe` with a function that
reads a port signal after the combinational logic has settled, then advances the clock. The
engine decides stalls, records transfers and counts cycles, so Amaranth's simulator, Icarus and
Verilator see exactly the same stimulus.

Gates (:attr:`~llmloom.sim.harness.Drive.gates`) hold a timed input word back until an output
has produced a number of beats, as autoregressive decode must (the next token needs this one's
output); segments (:attr:`~llmloom.sim.harness.Drive.segments`) are timed per tensor, from the
transfer of a tensor's first input word to that of its last output beat
(:attr:`StreamEngine.segment_cycles`).
"""

from __future__ import annotations

import collections
import dataclasses
import random

from .streams import NO_STALLS

__all__ = ["StreamEngine", "SimTimeout", "AXI_INPUTS", "AXI_OUTPUTS", "AXI_PAGE", "AXI_SALT",
           "AXI_W_INPUTS", "AXI_W_OUTPUTS", "latency_key", "axi_beat_counts"]

#: The AXI read slave's signals the engine drives (``<port>__<name>``), and those it reads.
AXI_INPUTS = ("arready", "rvalid", "rdata", "rlast", "rresp", "rid")
AXI_OUTPUTS = ("arvalid", "araddr", "arlen", "arsize", "arburst", "rready")
#: The AXI write slave's (a memory with ``write``): driven, and read.
AXI_W_INPUTS = ("awready", "wready", "bvalid", "bresp", "bid")
AXI_W_OUTPUTS = ("awvalid", "awaddr", "awlen", "awsize", "awburst", "wvalid", "wdata", "wstrb",
                 "wlast", "bready")
#: No AXI4 burst crosses a 4 KB page (AMBA AXI4 A3.4.1); the slave model checks it.
AXI_PAGE = 4096
#: Salts of the slave's stall generators: RVALID ``AXI_SALT + n`` from the input pattern,
#: ARREADY ``AXI_SALT + 50 + n`` from the output one (``n``: the memory's index); with writes
#: AWREADY ``AXI_SALT + 100 + n`` and WREADY ``AXI_SALT + 150 + n``, from the output one.
AXI_SALT = 300


def latency_key(seed):
    """The 32-bit words ``random.Random(seed)`` seeds its generator with (CPython's
    ``init_by_array`` of ``abs(seed)``), for the compiled driver's copy."""
    n, key = abs(int(seed)), []
    while True:
        key.append(n & 0xFFFFFFFF)
        n >>= 32
        if not n:
            return key


class SimTimeout(RuntimeError):
    """The block did not produce all its output beats before the deadline."""


@dataclasses.dataclass
class _In:
    port: str
    words: list
    gen: object
    timed: bool
    salt: int
    idx: int = 0
    offered: bool = False
    gates: dict = dataclasses.field(default_factory=dict)    # word → (out port, beats)

    @property
    def done(self):
        return self.idx >= len(self.words)


@dataclasses.dataclass
class _Out:
    port: str
    expect: int
    gen: object
    salt: int
    got: list = dataclasses.field(default_factory=list)
    ready: bool = False


@dataclasses.dataclass
class _Axi:
    port: str
    memory: object          # harness.AxiMemory
    r_gen: object
    ar_gen: object
    rng: random.Random
    bursts: collections.deque = dataclasses.field(default_factory=collections.deque)
    offered: bool = False
    ar_ready: bool = False
    beats: int = 0          # R beats transferred
    ars: int = 0            # bursts accepted
    aw_gen: object = None   # the write side (a memory with ``write``)
    w_gen: object = None
    aws: collections.deque = dataclasses.field(default_factory=collections.deque)
    bs: collections.deque = dataclasses.field(default_factory=collections.deque)
    aw_ready: bool = False
    w_ready: bool = False
    b_valid: bool = False
    w_beats: int = 0        # W beats transferred

    def word(self, addr):
        lanes = self.memory.lanes
        chunk = self.memory.image[addr * lanes:(addr + 1) * lanes]
        return int.from_bytes(chunk.ljust(lanes, b"\0"), "little")

    def accept(self, addr, beats, size, burst, cycle):
        """An AR transfer: the burst's checks, then it queues behind the others."""
        lanes = self.memory.lanes
        if burst != 1 or 1 << size != lanes or addr % lanes or \
                addr % AXI_PAGE + beats * lanes > AXI_PAGE:
            raise AssertionError(f"AXI port {self.port!r}: a burst the slave refuses "
                                 f"(araddr={addr:#x}, {beats} beats, arsize={size}, "
                                 f"arburst={burst}); allowed: INCR, full width, word aligned, "
                                 "within a 4 KB page")
        self.bursts.append([cycle + self.latency(), addr // lanes, beats])
        self.ars += 1

    def latency(self):
        lo, hi = self.memory.latency_range
        return lo + int(self.rng.random() * (hi - lo + 1))

    def accept_write(self, addr, beats, size, burst):
        """An AW transfer: the burst's checks (as a read's), then it queues for its data."""
        lanes = self.memory.lanes
        if burst != 1 or 1 << size != lanes or addr % lanes or \
                addr % AXI_PAGE + beats * lanes > AXI_PAGE or \
                addr + beats * lanes > len(self.memory.image):
            raise AssertionError(f"AXI port {self.port!r}: a write burst the slave refuses "
                                 f"(awaddr={addr:#x}, {beats} beats, awsize={size}, "
                                 f"awburst={burst}); allowed: INCR, full width, word aligned, "
                                 "within a 4 KB page and the memory")
        self.aws.append([addr // lanes, beats])

    def write(self, data, strb, last, cycle):
        """A W transfer: its bytes (by WSTRB) into the image at the head burst's word; the
        burst's last beat (WLAST checked) queues its response ``latency`` cycles on."""
        lanes, image = self.memory.lanes, self.memory.image
        burst = self.aws[0]
        at = burst[0] * lanes
        for k in range(lanes):
            if strb >> k & 1:
                image[at + k] = data >> 8 * k & 0xFF
        burst[0] += 1
        burst[1] -= 1
        if bool(last) != (burst[1] == 0):
            raise AssertionError(f"AXI port {self.port!r}: WLAST={last} with {burst[1]} beats "
                                 "of the burst left")
        if not burst[1]:
            self.aws.popleft()
            self.bs.append(cycle + self.latency())
        self.w_beats += 1


class StreamEngine:
    """Drives a :class:`~llmloom.sim.harness.Drive` into a block.

    Inputs follow the rules of ``amaranth.lib.stream``: a beat, once offered, stays offered
    with the same payload until it is taken. ``stalls_in`` decides when a new beat is offered;
    ``stalls_out`` decides, every cycle, whether each output is ready.
    """

    def __init__(self, drive, stalls_in=NO_STALLS, stalls_out=NO_STALLS, max_cycles=1_000_000,
                 on_output=None):
        # each port's stall generator is seeded with its salt (the compiled driver, in
        # llmloom.sim.verilated, seeds its own copy of the generator with the same salts)
        self.inputs = [_In(p, list(w), stalls_in.generator(salt=n), False, n)
                       for n, (p, w) in enumerate(drive.preload.items())]
        self.inputs += [_In(p, list(w), stalls_in.generator(salt=100 + n), True, 100 + n)
                        for n, (p, w) in enumerate(drive.timed.items())]
        self.outputs = [_Out(p, e, stalls_out.generator(salt=200 + n), 200 + n)
                        for n, (p, e) in enumerate(drive.expect.items())]
        self._out = {o.port: o for o in self.outputs}
        by_port = {s.port: s for s in self.inputs if s.timed}
        for port, gates in getattr(drive, "gates", {}).items():
            if port not in by_port:
                raise ValueError(f"gate on {port!r}, which is not a timed input")
            for word, out, beats in gates:
                if out not in self._out:
                    raise ValueError(f"gate on {port!r} waits for {out!r}, not an output")
                if not 0 <= word < len(by_port[port].words):
                    raise ValueError(f"gate on word {word} of {port!r}, which has "
                                     f"{len(by_port[port].words)} words")
                if beats > self._out[out].expect:
                    raise ValueError(f"gate on {port!r} waits for {beats} beats of {out!r}, "
                                     f"which produces {self._out[out].expect}: it would "
                                     "never open")
                if word in by_port[port].gates:
                    raise ValueError(f"word {word} of {port!r} has two gates")
                by_port[port].gates[word] = (out, beats)
        self.segments = [tuple(seg) for seg in getattr(drive, "segments", ())]
        self._in_marks = {(seg[0], seg[1]): None for seg in self.segments}
        self._out_marks = {(seg[2], seg[3] - 1): None for seg in self.segments}
        for port, word, out, beats in self.segments:
            if port not in by_port or not 0 <= word < len(by_port[port].words):
                raise ValueError(f"segment starts at word {word} of {port!r}, which is not a "
                                 "timed input word")
            if out not in self._out or not 1 <= beats <= self._out[out].expect:
                raise ValueError(f"segment ends at beat {beats} of {out!r}, which is not an "
                                 "expected output beat")
        self.axi = [_Axi(p, mem, stalls_in.generator(salt=AXI_SALT + n),
                         stalls_out.generator(salt=AXI_SALT + 50 + n), random.Random(mem.seed),
                         aw_gen=stalls_out.generator(salt=AXI_SALT + 100 + n)
                         if mem.write else None,
                         w_gen=stalls_out.generator(salt=AXI_SALT + 150 + n)
                         if mem.write else None)
                    for n, (p, mem) in enumerate(getattr(drive, "memory", {}).items())]
        self.max_cycles = max_cycles
        self.cycle = 0
        self.first_timed = None
        self.last_out = None
        self.on_output = on_output

    @property
    def preloading(self):
        return any(not s.timed and not s.done for s in self.inputs)

    @property
    def done(self):
        return all(len(o.got) >= o.expect for o in self.outputs) and all(
            s.done for s in self.inputs)

    @property
    def segment_cycles(self):
        """Cycles of each segment, first input transfer to last output transfer inclusive
        (``None`` for a segment that has not finished)."""
        out = []
        for port, word, o, beats in self.segments:
            start, end = self._in_marks[(port, word)], self._out_marks[(o, beats - 1)]
            out.append(None if start is None or end is None else end - start + 1)
        return out

    def gated(self, s):
        """True while the gate of ``s``'s next word (if any) is closed."""
        gate = s.gates.get(s.idx)
        return gate is not None and len(self._out[gate[0]].got) < gate[1]

    @property
    def cycles(self):
        """Cycles from the first timed input transfer to the last output transfer, inclusive."""
        if self.first_timed is None or self.last_out is None:
            return 0
        return self.last_out - self.first_timed + 1

    def drive(self):
        """``[(signal, value)]`` to apply before this cycle's clock edge."""
        sets = []
        preloading = self.preloading
        for s in self.inputs:
            active = not s.done and (not s.timed or not preloading)
            if active and not s.offered and s.gates and self.gated(s):
                active = False
            if active and not s.offered:
                s.offered = next(s.gen)
            if not active:
                s.offered = False
            sets.append((f"{s.port}__valid", int(s.offered)))
            if s.offered:
                sets.append((f"{s.port}__payload", s.words[s.idx]))
        for o in self.outputs:
            o.ready = next(o.gen)
            sets.append((f"{o.port}__ready", int(o.ready)))
        for a in self.axi:
            a.ar_ready = next(a.ar_gen)
            sets.append((f"{a.port}__arready", int(a.ar_ready)))
            active = bool(a.bursts) and a.bursts[0][0] <= self.cycle
            if active and not a.offered:
                a.offered = next(a.r_gen)
            if not active:
                a.offered = False
            sets.append((f"{a.port}__rvalid", int(a.offered)))
            if a.offered:
                _, word, beats = a.bursts[0]
                sets += [(f"{a.port}__rdata", a.word(word)), (f"{a.port}__rlast", int(beats == 1)),
                         (f"{a.port}__rresp", 0), (f"{a.port}__rid", 0)]
            if a.aw_gen is not None:
                a.aw_ready = next(a.aw_gen)
                a.w_ready = next(a.w_gen) and bool(a.aws)
                a.b_valid = bool(a.bs) and a.bs[0] <= self.cycle
                sets += [(f"{a.port}__awready", int(a.aw_ready)),
                         (f"{a.port}__wready", int(a.w_ready)),
                         (f"{a.port}__bvalid", int(a.b_valid)), (f"{a.port}__bresp", 0),
                         (f"{a.port}__bid", 0)]
        return sets

    def observe(self, get):
        """Record the transfers of this cycle; ``get(signal)`` reads a settled value."""
        for s in self.inputs:
            if s.offered and get(f"{s.port}__ready"):
                if s.timed and self.first_timed is None:
                    self.first_timed = self.cycle
                if (s.port, s.idx) in self._in_marks:
                    self._in_marks[(s.port, s.idx)] = self.cycle
                s.idx += 1
                s.offered = False
        for o in self.outputs:
            if o.ready and get(f"{o.port}__valid"):
                if len(o.got) >= o.expect:
                    raise AssertionError(
                        f"output {o.port!r} produced more than the {o.expect} beats expected")
                o.got.append(get(f"{o.port}__payload"))
                self.last_out = self.cycle
                if (o.port, len(o.got) - 1) in self._out_marks:
                    self._out_marks[(o.port, len(o.got) - 1)] = self.cycle
                if self.on_output:
                    self.on_output()
        for a in self.axi:
            if a.offered and get(f"{a.port}__rready"):
                burst = a.bursts[0]
                burst[1] += 1
                burst[2] -= 1
                if not burst[2]:
                    a.bursts.popleft()
                a.offered = False
                a.beats += 1
            if a.ar_ready and get(f"{a.port}__arvalid"):
                a.accept(get(f"{a.port}__araddr"), get(f"{a.port}__arlen") + 1,
                         get(f"{a.port}__arsize"), get(f"{a.port}__arburst"), self.cycle)
            if a.aw_gen is None:
                continue
            if a.w_ready and get(f"{a.port}__wvalid"):
                a.write(get(f"{a.port}__wdata"), get(f"{a.port}__wstrb"),
                        get(f"{a.port}__wlast"), self.cycle)
            if a.aw_ready and get(f"{a.port}__awvalid"):
                a.accept_write(get(f"{a.port}__awaddr"), get(f"{a.port}__awlen") + 1,
                               get(f"{a.port}__awsize"), get(f"{a.port}__awburst"))
            if a.b_valid and get(f"{a.port}__bready"):
                a.bs.popleft()
        self.cycle += 1
        if self.cycle > self.max_cycles and not self.done:
            got = ", ".join(f"{o.port}: {len(o.got)} of {o.expect} beats" for o in self.outputs)
            fed = ", ".join(f"{s.port}: {s.idx} of {len(s.words)}" for s in self.inputs)
            raise SimTimeout(f"simulation did not finish within {self.max_cycles} cycles "
                             f"(outputs {got}; inputs taken {fed})")

    def results(self):
        return {o.port: o.got for o in self.outputs}

    @property
    def axi_beats(self):
        """The beats each AXI memory has given and taken so far (:func:`axi_beat_counts`)."""
        return axi_beat_counts(self.axi, [a.beats for a in self.axi],
                               [a.w_beats for a in self.axi])


def axi_beat_counts(axi, reads, writes):
    """``RunResult.axi_beats``: by port of ``axi`` (the drive's AXI memories, in order),
    ``{"read": R beats it gave, "write": W beats it took}`` (0 without ``write``)."""
    return {a.port: {"read": int(r), "write": int(w)}
            for a, r, w in zip(axi, reads, writes, strict=True)}

