"""An AXI4 read master that streams a range of off-chip memory out as row beats: the path by
which a layer's weights (:mod:`llmloom.hw.layers.weights_image`) reach an engine's ``weight``
stream when they do not fit on chip.

Commands arrive on a stream rather than through registers: a layer sequencer (or the host
link) queues "fetch ``bytes`` from ``addr``" like any other beat, under the same valid/ready
rules, and a command waiting in front of the reader is the next layer's fetch; registers
would need a bus of their own and a start/done handshake that a stream already is.
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import spec
from ..stream import row_layout
from .axi import AXI_BOUNDARY, INCR, AxiMasterConfig, bursts, command_layout, issue_bursts

__all__ = ["AxiReaderConfig", "AxiReadSignature", "AxiReader", "AXI_BOUNDARY", "INCR",
           "bursts", "command_layout"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class AxiReaderConfig(AxiMasterConfig):
    """An AXI4 read master (AR and R channels, INCR bursts of full-width beats, one ID) that
    streams ``bytes`` bytes from ``addr`` as beats of ``data_width/8`` byte lanes (the shared
    fields: :class:`~.axi.AxiMasterConfig`)."""

    unaligned: bool = spec(True, None, "start addresses may be any byte (a byte rotator "
                           "realigns them: 8.1k LUT4 at 512 bits on ECP5 under Yosys, against "
                           "0.75k without); false: word-aligned starts only, as a weight "
                           "image's sections are")

    #: Cycles from a command's transfer to its first burst's AR transfer (a ready slave):
    #: the command is registered, then the first AR is computed into the AR registers.
    ISSUE = 2

    def start(self, addr):
        """Where a command at ``addr`` starts reading: ``addr`` itself, or without
        ``unaligned`` the word-aligned address at or below it."""
        return addr if self.unaligned else addr - addr % self.lanes

    def bursts(self, addr, nbytes):
        """The bursts of one command (:func:`bursts` from :meth:`start`)."""
        return bursts(self.start(addr), nbytes, self.lanes, self.max_burst)

    # Timing (one home: perf.cycles calls it) ---------------------------------------------------
    def timeline(self, commands, latency, offered=None):
        """``[(transfer, end)]`` of ``commands`` (``[(addr, nbytes)]``) offered back to back
        (or each from its cycle in ``offered``, if later): the cycle each command is taken and
        the cycle its last output beat leaves (the same for a command of 0 bytes), counted
        from the first command's transfer (or from cycle 0 of ``offered``), with the output
        always ready and a memory that takes every AR at once and returns a burst's first beat
        ``latency`` cycles after its AR transfer (or right after the previous burst's last
        beat, if later: bursts return in order), then one beat per cycle.

        The reader issues an AR per cycle, ``ISSUE`` cycles after a command's transfer for its
        first, while fewer than ``outstanding`` bursts are in flight (a burst's last beat frees
        its slot for an AR the next cycle), and takes the next command once the current one's
        last AR is out: the next command's bursts overlap this one's data. Each word leaves
        the output register the cycle after it arrives; a start that is not word aligned
        realigns through one word of storage, which costs one more cycle when the last output
        beat needs no new word (the next command's words wait for it). Exact under this model
        (the cocotb tests hold the RTL to it against cocotbext-axi's slave); random latency
        and stalls only add cycles."""
        if latency < 1:
            raise ValueError(f"latency={latency} must be >= 1")
        N = self.outstanding
        issue, done, out = [], [], []
        t = 0                   # when the next command can be taken
        r_free = 0              # when the next command's first word can be taken
        for k, (addr, nbytes) in enumerate(commands):
            if offered is not None:
                t = max(t, offered[k])
            if nbytes < 0:
                raise ValueError(f"nbytes={nbytes} must be >= 0")
            if not nbytes:
                out.append((t, t))
                t += 1
                continue
            bl = self.bursts(addr, nbytes)
            for i, (_, beats) in enumerate(bl):
                j = len(issue)
                a = t + self.ISSUE if i == 0 else issue[-1] + 1
                if j >= N:
                    a = max(a, done[j - N] + 1)
                first = a + latency
                if j:
                    first = max(first, r_free if i == 0 else done[-1] + 1)
                issue.append(a)
                done.append(first + beats - 1)
            words = sum(b for _, b in bl)
            flush = int(self.start(addr) % self.lanes != 0 and words == self.out_beats(nbytes))
            out.append((t, done[-1] + 1 + flush))
            r_free = done[-1] + 1 + flush
            t = issue[-1]
        return out

    def cycles(self, addr, nbytes, latency):
        """Cycles of one command alone, from its transfer to its last output beat's, inclusive
        (:meth:`timeline`)."""
        if nbytes <= 0:
            raise ValueError(f"nbytes={nbytes} must be >= 1")
        (start, end), = self.timeline([(addr, nbytes)], latency)
        return end - start + 1

    def sequence_cycles(self, commands, latency):
        """Cycles of ``commands`` offered back to back, from the first one's transfer to the
        last output beat, inclusive (:meth:`timeline`)."""
        tl = self.timeline(commands, latency)
        return max(e for _, e in tl) + 1 if tl else 0

    def bytes_per_cycle(self, latency, burst=None):
        """Sustained bytes per cycle of a long transfer in bursts of ``burst`` beats (default
        ``max_burst``, capped by the 4 KB boundary): a full bus word per cycle when the
        ``outstanding`` bursts in flight cover the latency, else ``outstanding`` bursts per
        round trip of ``latency + burst`` cycles (a burst's last beat frees the slot whose AR
        goes out the next cycle, and that burst's first beat comes ``latency`` later). The
        :meth:`cycles` of a long transfer tend to it (``tests/hw/test_axi_reader.py``)."""
        b = min(burst or self.max_burst, AXI_BOUNDARY // self.lanes)
        period = max(b, (latency + b) / self.outstanding)
        return self.lanes * b / period


def AxiReadSignature(cfg):
    """The AR and R channels of an AXI4 master (directions as seen from the master); ports
    come out as ``axi__araddr``, ``axi__rdata``... (the AXI names, for bus models)."""
    return wiring.Signature({
        "arid": Out(cfg.id_width), "araddr": Out(cfg.addr_width), "arlen": Out(8),
        "arsize": Out(3), "arburst": Out(2), "arvalid": Out(1), "arready": In(1),
        "rid": In(cfg.id_width), "rdata": In(cfg.data_width), "rresp": In(2), "rlast": In(1),
        "rvalid": In(1), "rready": Out(1),
    })


class AxiReader(wiring.Component):
    """Reads byte ranges over AXI4 and streams them out, ``lanes`` bytes per beat.

    Parameters
    ----------
    cfg : AxiReaderConfig

    Members
    -------
    i : In(stream.Signature(command_layout(cfg)))
        Commands, one beat each: ``addr`` (any byte address) and ``bytes`` (0 is taken and does
        nothing). A command is taken once the previous one's last AR is out, so consecutive
        commands' bursts overlap (up to ``outstanding`` in flight in all).
    o : Out(stream.Signature(row_layout(signed(8), lanes)))
        The bytes from ``addr`` on, lane ``j`` of beat ``b`` holding byte ``addr + b·lanes +
        j`` (as an int8: an int8 weight, or a byte of a wider number); the last beat's lanes
        past ``bytes`` are zero; ``last`` and ``end`` on a command's last beat. With
        ``lanes`` equal to an engine's ``cols``, the beats of a weight image's weight section
        are the engine's ``weight`` beats.
    axi : Out(AxiReadSignature(cfg))
        The AXI4 read channels: INCR bursts of full-width beats (ARSIZE = log2 lanes) of at
        most ``max_burst`` beats, none crossing a 4 KB boundary, ID 0, at most
        ``outstanding`` in flight.
    error : Out(1)
        Set by a beat with a non-OKAY RRESP (whose data is passed on as it came), or without
        ``unaligned`` by a command whose ``addr`` is not word aligned (then read from the
        word-aligned address below); held until reset.

    Latency and rate: the first AR transfers ``ISSUE`` cycles after the command (to a ready
    slave); each R beat leaves the output register one cycle after it arrives, one per cycle;
    :meth:`AxiReaderConfig.timeline` gives each command's transfer and end. The read data side
    follows the commands through a queue of ``outstanding + 1`` descriptors (word count, beat
    count, last beat's bytes, offset) and moves to the next command in the cycle it loads the
    last beat of the current one, so back-to-back commands stream without a gap.
    Backpressure: ``RREADY`` is low whenever the output register is full and not taken, so the
    slave holds its data: nothing is buffered, dropped or reordered. An unaligned ``addr`` is
    realigned through one word of storage (a byte rotator of log2(lanes) stages).
    """

    def __init__(self, cfg: AxiReaderConfig):
        if not isinstance(cfg, AxiReaderConfig):
            self._MustUse__silence = True
            raise TypeError(f"cfg must be an AxiReaderConfig, not {cfg!r}")
        self.cfg = cfg
        super().__init__({
            "i": In(stream.Signature(command_layout(cfg))),
            "o": Out(stream.Signature(row_layout(signed(8), cfg.lanes))),
            "axi": Out(AxiReadSignature(cfg)),
            "error": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        B, SZ, N = cfg.lanes, cfg.size, cfg.outstanding
        axi, cmd, o = self.axi, self.i, self.o

        # The read data side's view of each command, queued by the address side: the address
        # side takes the next command once the last AR of this one is out, so the next
        # command's bursts are in flight while this one's data still arrives. A queued command
        # has a burst issued, but for the newest: at most N + 1 wait.
        desc = data.StructLayout({"words": range(cfg.max_words + 1),
                                  "beats": range(cfg.out_beats(cfg.max_bytes) + 1),
                                  "tail": range(B + 1), "start": max(SZ, 1)})
        m.submodules.queue = queue = fifo.SyncFIFO(width=desc.size, depth=N + 1)
        r_left = Signal(range(cfg.max_words + 1))        # words not yet received
        out_left = Signal(range(cfg.out_beats(cfg.max_bytes) + 1))
        offset = Signal(max(SZ, 1))       # byte offset of the start in its word
        from_prev = Signal(B)             # output bytes taken from the previous word
        tail = Signal(range(B + 1))       # bytes of the last output beat
        need_first = Signal()             # unaligned start: the first word only fills prev
        prev = Signal(8 * B)              # the previous word, rotated

        # ---- commands → read address channel ---------------------------------------------------
        r_fire = axi.rvalid & axi.rready
        take = cmd.valid & cmd.ready
        start = cmd.payload.addr[:SZ] if cfg.unaligned else Const(0, max(SZ, 1))
        words = (start + cmd.payload.bytes + (B - 1)) >> SZ
        ar = issue_bursts(m, cfg, axi, "ar", load=take, addr=cmd.payload.addr, words=words,
                          free=r_fire & axi.rlast)
        m.d.comb += cmd.ready.eq((ar.words_left == 0) & queue.w_rdy)
        entry = Signal(desc)
        m.d.comb += [entry.words.eq(words), entry.beats.eq((cmd.payload.bytes + (B - 1)) >> SZ),
                     entry.tail.eq(((cmd.payload.bytes - 1) & (B - 1)) + 1),
                     entry.start.eq(start), queue.w_data.eq(entry)]
        with m.If(take):
            m.d.comb += queue.w_en.eq(cmd.payload.bytes != 0)
            if not cfg.unaligned:
                with m.If(cmd.payload.addr[:SZ] != 0):
                    m.d.sync += self.error.eq(1)

        # ---- read data → output register ------------------------------------------------------
        advance = ~o.valid | o.ready
        flush = ~need_first & (r_left == 0) & (out_left != 0)
        m.d.comb += axi.rready.eq((r_left != 0) & (need_first | advance))
        word = Mux(flush, 0, axi.rdata)
        # Realignment: each word is rotated once by the start's offset (byte k of the rotated
        # word is byte k + offset mod B), and `prev` keeps the rotated previous word; an output
        # beat takes its first B − offset bytes from `prev` and the rest from the new word.
        # One rotator of log2(B) byte-wide stages instead of a shifter across two words.
        rot = word
        for k in range(SZ if cfg.unaligned else 0):
            rot = Mux(offset[k], rot.rotate_right(8 << k), rot)
        rot_now = Signal(8 * B)
        m.d.comb += rot_now.eq(rot)
        aligned = Cat(*(Mux(from_prev[k], prev[8 * k:8 * k + 8], rot_now[8 * k:8 * k + 8])
                        for k in range(B)))
        final = out_left == 1
        keep = Cat(*(Mux(~final | (k < tail), 0xff, Const(0, 8)) for k in range(B)))
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(r_fire):
            m.d.sync += [prev.eq(rot_now), r_left.eq(r_left - 1), need_first.eq(0)]
            with m.If(axi.rresp != 0):
                m.d.sync += self.error.eq(1)
        load = (r_fire & ~need_first) | (flush & advance)
        with m.If(load):
            m.d.sync += [o.payload.data.as_value().eq(aligned & keep), o.valid.eq(1),
                         o.payload.last.eq(final), o.payload.end.eq(final),
                         out_left.eq(out_left - 1)]
        # the next command's view, in the cycle this one's last beat is loaded (or when idle)
        head = Signal(desc)
        m.d.comb += head.eq(queue.r_data)
        with m.If(queue.r_rdy & ((out_left == 0) | (load & final))):
            m.d.comb += queue.r_en.eq(1)
            hs = head.start if cfg.unaligned else Const(0, max(SZ, 1))
            m.d.sync += [r_left.eq(head.words), out_left.eq(head.beats), tail.eq(head.tail),
                         offset.eq(hs), need_first.eq(hs != 0),
                         from_prev.eq(Cat(*((hs != 0) & (k < B - hs) for k in range(B))))]
        return m
