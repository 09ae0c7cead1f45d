"""What Yosys does with our designs, repeated without running it: the target families (their
multipliers and memory libraries), how a product is split into hard multipliers
(:func:`multiplier_dsps`, as ``mul2dsp`` splits it), and where a memory goes
(:func:`map_memory`, ``memory_libmap``'s choice of block RAM, distributed RAM or soft logic).
The results are :class:`Bill` s, the unit every estimate adds up."""

from __future__ import annotations

import dataclasses

from ...hw import devices as _dev
from ..errors import ConfigError

__all__ = ["RamDef", "Family", "FAMILIES", "family_of", "multiplier_dsps",
           "const_multiplier_dsps", "MemoryMap", "map_memory", "rom_width", "packed", "Bill",
           "counter_bits"]


# ---- memory libraries -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RamDef:
    """One RAM cell of a Yosys memory library (one ``option`` variant of a ``ram`` entry).

    ``groups`` are its port groups as ``(kind, ports)`` with ``kind`` one of ``sw``, ``sr``,
    ``srsw``, ``ar``, ``arsw`` (synchronous/asynchronous, read/write); ``wr_widths`` and
    ``rd_widths`` restrict the widths of the write and read ports (``None``: any of
    ``widths``). ``wrtrans_old``: a read port can return the old word while the other port
    writes it (``wrtrans all old``); without it Yosys emulates read-first behaviour and
    transparency in soft logic (3 + 3 emulation points). ``unit`` is how many family BRAM
    units one cell is (0 for distributed RAM) and ``luts`` how many LUTs it occupies
    (``CELL_MAP`` of the open flow).
    """

    name: str
    abits: int
    widths: tuple
    cost: float
    groups: tuple
    byte: int = 0
    widthscale: float = 0.0
    wr_widths: tuple | None = None
    rd_widths: tuple | None = None
    prune_rom: bool = False
    wrtrans_old: bool = False
    unit: float = 1.0
    luts: float = 0.0


@dataclasses.dataclass(frozen=True)
class Family:
    """What the estimator needs to know of a target family: the device catalogue's family
    (``hw.devices.FAMILIES``: LUT width, multiplier, ROM bit cost, flattening) and the
    family's Yosys memory library (``rams``)."""

    device: _dev.Family
    rams: tuple                 # RamDef, ...

    def __getattr__(self, attr):
        # name, lut_inputs, mult, rom_cost (memory_libmap's cost of a ROM bit in soft logic),
        # flattens (the script optimises across block boundaries: synth_ice40/synth_ecp5 do,
        # synth_xilinx not): the catalogue family's
        if attr == "device":
            raise AttributeError(attr)
        return getattr(self.device, attr)


def _rams_xcup():
    out = []
    # $__XILINX_BLOCKRAM_TDP_ / _SDP_ (brams_xc4v.txt with HAS_SIZE_36, HAS_CASCADE and
    # HAS_MIXWIDTH_SDP, as synth_xilinx -family xcup defines them): HALF is a RAMB18E2.
    for mode, abits, widths, cost, unit in (
            ("HALF", 14, (1, 2, 4, 9, 18), 129, 0.5), ("FULL", 15, (1, 2, 4, 9, 18, 36), 257, 1),
            ("CASCADE", 16, (1, 2, 4, 9), 513, 2)):
        out.append(RamDef(f"RAMB_TDP_{mode}", abits, widths, cost, (("srsw", 2),), byte=9,
                          wrtrans_old=True, unit=unit))
    for mode, abits, widths, cost, unit in (
            ("HALF", 14, (1, 2, 4, 9, 18, 36), 129, 0.5),
            ("FULL", 15, (1, 2, 4, 9, 18, 36, 72), 257, 1)):
        out.append(RamDef(f"RAMB_SDP_{mode}", abits, widths, cost, (("sw", 1), ("sr", 1)),
                          byte=9, wrtrans_old=True, unit=unit))
    # lutrams_xcu.txt: cost 16 and widthscale; the cells are RAM32M16/RAM64M8 (8 LUTs) for the
    # simple dual port ones, RAM32M/RAM64M (4 LUTs) for DP/QP at 5-6 address bits,
    # RAM128X1D/RAM256X1D (2/4 LUTs as CELL_MAP counts them) deeper.
    for abits, w, luts in ((5, 14, 8), (6, 7, 8)):
        out.append(RamDef(f"LUTRAM_SDP_{abits}", abits, (w,), 16, (("sw", 1), ("ar", 1)),
                          widthscale=16, prune_rom=True, unit=0, luts=luts))
    for abits, w, luts in ((5, 8, 4), (6, 4, 4), (7, 2, 2), (8, 1, 4)):
        out.append(RamDef(f"LUTRAM_DP_{abits}", abits, (w,), 16, (("arsw", 1), ("ar", 1)),
                          widthscale=16, prune_rom=True, unit=0, luts=luts))
    for abits, w in ((5, 4), (6, 2)):
        out.append(RamDef(f"LUTRAM_QP_{abits}", abits, (w,), 16, (("arsw", 1), ("ar", 3)),
                          widthscale=16, prune_rom=True, unit=0, luts=4))
    for abits, w in ((5, 2), (6, 1)):
        out.append(RamDef(f"LUTRAM_OP_{abits}", abits, (w,), 16, (("arsw", 1), ("ar", 7)),
                          widthscale=16, prune_rom=True, unit=0, luts=8))
    return tuple(out)


def _family(name, rams):
    return Family(_dev.FAMILIES[name], rams)


#: The families: the catalogue's multiplier splitting, ROM bit cost and flattening
#: (``llmloom.hw.devices``) with the memory libraries named in each entry.
FAMILIES = {
    # ice40/brams.txt: $__ICE40_RAM4K_, 256x16 ... 2048x2, one sw and one sr port, cost 64;
    # option HAS_BE=1 (16-bit write port with per-bit enables) and HAS_BE=0 (2/4/8-bit
    # write port, no enables). No distributed RAM; SPRAM only with -spram (not used).
    "ice40": _family(
        "ice40",
        (RamDef("RAM4K_BE", 11, (2, 4, 8, 16), 64, (("sw", 1), ("sr", 1)), byte=1,
                wr_widths=(16,)),
         RamDef("RAM4K", 11, (2, 4, 8, 16), 64, (("sw", 1), ("sr", 1)),
                wr_widths=(2, 4, 8)))),
    # lattice/brams_16kd.txt: DP16KD (true dual port, 16384x1 ... 1024x18) and PDPW16KD (36-bit
    # write port), byte 9, cost 128; lattice/lutrams_trellis.txt: TRELLIS_DPR16X4 (16x4, one
    # write and one asynchronous read port, cost 4, no ROMs).
    "ecp5": _family(
        "ecp5",
        (RamDef("DP16KD", 14, (1, 2, 4, 9, 18), 128, (("srsw", 2),), byte=9),
         RamDef("PDPW16KD", 14, (1, 2, 4, 9, 18, 36), 128, (("sw", 1), ("sr", 1)), byte=9,
                wr_widths=(36,)),
         RamDef("TRELLIS_DPR16X4", 4, (4,), 4, (("sw", 1), ("ar", 1)), prune_rom=True, unit=0,
                luts=4))),
    "xcup": _family("xcup", _rams_xcup()),
}


def family_of(target):
    """The :class:`Family` of a family name (``ice40``, ``ecp5``, ``xcup``) or of a target name
    of the open flow (``ice40-up5k``, ``ecp5-85f``, ...)."""
    if isinstance(target, Family):
        return target
    fam = _dev.family_name(str(target))
    if fam in FAMILIES:
        return FAMILIES[fam]
    raise ConfigError(f"unknown target family {target!r}; allowed: {', '.join(FAMILIES)} (or "
                      "a target name such as ice40-up5k, ecp5-85f)")


# ---- multipliers ------------------------------------------------------------------------------
def multiplier_dsps(family, a_bits, a_signed, b_bits, b_signed, *, const=None):
    """Hard multipliers Yosys uses for an ``a_bits × b_bits`` product.

    Mixed signedness is made signed the way Amaranth emits it (the unsigned operand gains a
    zero bit). ``const`` is the value of ``b`` when it is a constant: a power of two (or 0, 1)
    is a shift and needs no multiplier.
    """
    fam = family_of(family)
    if const is not None:
        c = abs(int(const))
        if c & (c - 1) == 0:
            return 0
    if a_signed != b_signed:
        if a_signed:
            b_bits += 1
        else:
            a_bits += 1
        a_signed = b_signed = True
    return _dev.multipliers(fam.mult, a_bits, b_bits, a_signed, a_bits + b_bits)


def _const_bits(value):
    """Amaranth's shape of an integer constant: (bits, signed)."""
    v = int(value)
    return (v.bit_length() if v >= 0 else (-v - 1).bit_length() + 1), v < 0


def const_multiplier_dsps(family, x_bits, x_signed, const):
    """Multipliers of ``x × const`` (Amaranth shapes the constant by its value). Yosys takes
    the constant's trailing zeros out as a shift first (×96 is ×3 shifted by 5), which can
    leave a product too narrow for a multiplier."""
    const = int(const)
    if const:
        const >>= (const & -const).bit_length() - 1
    c_bits, c_signed = _const_bits(const)
    return multiplier_dsps(family, x_bits, x_signed, max(c_bits, 1), c_signed, const=const)


# ---- memories ---------------------------------------------------------------------------------
#: memory_libmap's weights of the address decoding it must add in soft logic.
_FACTOR_MUX, _FACTOR_DEMUX, _FACTOR_EMU = 0.5, 0.5, 2


@dataclasses.dataclass(frozen=True)
class MemoryMap:
    """Where a memory goes and what it takes: ``kind`` is ``block``, ``distributed`` or
    ``logic``; ``cell`` the RAM cell (``None`` in logic) and ``cells`` how many."""

    kind: str
    cell: str | None = None
    cells: int = 0
    bram: float = 0.0
    lut: float = 0.0
    ff: float = 0.0
    cost: float = 0.0

    def bill(self):
        return Bill(lut=self.lut, ff=self.ff, bram=self.bram)


def _round_up(x, m):
    return -(-x // m) * m


def _assign_reads(ram, read_ports, writes, async_read):
    """(read ports per port group, emulation score, emulate the read register) for ``ram``,
    or None when its ports cannot serve the memory. The write port takes the first write
    group; each read port (never shared with the write port: our addresses differ) takes a
    read-capable group with room, replicating the cell when there are more reads than ports."""
    groups = list(ram.groups)
    wr_group = None
    if writes:
        for i, (kind, _n) in enumerate(groups):
            if kind in ("sw", "srsw", "arsw"):
                wr_group = i
                break
        if wr_group is None:
            return None
    best = None
    for i, (kind, n) in enumerate(groups):
        space = n - (1 if i == wr_group else 0)
        if space <= 0 or kind == "sw":
            continue
        if async_read and kind in ("sr", "srsw"):
            continue
        repl = -(-read_ports // space)
        emu_sync = kind.startswith("ar") and not async_read
        key = (repl, 0 if not emu_sync else 1)
        if best is None or key < best[0]:
            best = (key, repl, emu_sync)
    if best is None:
        return None
    # a point per read port; a synchronous read next to a write in the same clock domain
    # needs read-first and transparency emulation unless the cell reads the old word
    score = read_ports
    if writes and not async_read and not best[2] and not ram.wrtrans_old:
        score += 3 + 3 * read_ports
    return best[1], score, best[2]


def _ram_cost(ram, width, depth, granule, read_ports, writes, async_read):
    """memory_libmap's best geometry of ``ram``: (cost, cells, emulated read register) or
    None. ``granule`` is the write-enable granularity in bits (the width: one enable)."""
    if not writes and ram.prune_rom:
        return None
    assigned = _assign_reads(ram, read_ports, writes, async_read)
    if assigned is None:
        return None
    repl_port, score_emu, emu_sync = assigned
    widths = ram.widths
    n = len(widths)
    wr_allowed = [i for i, w in enumerate(widths) if ram.wr_widths is None or w in ram.wr_widths]
    rd_allowed = [i for i, w in enumerate(widths) if ram.rd_widths is None or w in ram.rd_widths]
    max_wr, min_wr = max(wr_allowed), min(wr_allowed)
    max_rd = max(rd_allowed)
    if ram.byte == 0:
        byte_log2 = n - 1
    else:
        byte_log2 = max([i for i, w in enumerate(widths) if ram.byte >= w], default=0)
    groups = -(-width // granule)
    wren = groups if writes else 0
    best = None
    for base in range(n):
        unit_idx = min(base, max_wr if writes else n - 1, max_rd)
        if unit_idx != base and best is not None:
            break
        if writes and base < min_wr and base < byte_log2:
            continue                    # a narrow write port it cannot emulate
        unit = widths[unit_idx]
        eff_byte = 1 if not writes else (ram.byte if 0 < ram.byte <= unit else unit)
        if groups > 1:
            swizzle = (groups - 1) * _round_up(granule, eff_byte) + \
                _round_up(width - (groups - 1) * granule, eff_byte)
        else:
            swizzle = _round_up(width, eff_byte)
        addrs = 1 << (ram.abits - base)
        mult_a = -(-depth // addrs)
        repl = -(-(mult_a * swizzle) // unit)
        demux = mult_a * wren if mult_a != 1 else 0
        mux = read_ports * (mult_a - 1) * width
        cost = (ram.cost - ram.widthscale) * repl * repl_port
        cost += ram.widthscale * mult_a * width / unit * repl_port
        cost += _FACTOR_MUX * mux + _FACTOR_DEMUX * demux + _FACTOR_EMU * score_emu
        if best is None or cost < best[0]:
            best = (cost, repl * repl_port, emu_sync, mult_a)
    return best


def map_memory(family, width, depth, *, rom=False, read_ports=1, async_read=False,
               granularity=None):
    """How Yosys maps a ``width × depth`` memory (one write port unless ``rom``, ``read_ports``
    synchronous read ports, or asynchronous ones with ``async_read``) on ``family``: the
    cheapest of the library's RAM cells and soft logic, by ``memory_libmap``'s costs.

    Parameters
    ----------
    rom : bool
        No write port (contents fixed at elaboration): soft logic costs the family's
        ``rom_cost`` per bit, and the distributed RAMs refuse it (``prune_rom``). ``width`` is
        then the bits that vary between words (Yosys drops constant columns first:
        :func:`rom_width`).
    read_ports : int
        Read ports; those a cell lacks are served by replicas of it.
    async_read : bool
        Combinational read (Amaranth's ``SyncFIFO``).
    granularity : int, optional
        Bits per write enable (Amaranth ``granularity``), padded to the cell's byte.

    Returns
    -------
    MemoryMap
        With ``bram`` in family units, ``lut`` for distributed cells (and the read mux of
        stacked ones), soft logic or a soft ROM, ``ff`` for registers the mapping adds.
    """
    fam = family_of(family)
    if width <= 0 or depth <= 0:
        return MemoryMap("logic")
    granule = width if not granularity or granularity >= width else granularity
    bits = width * depth
    logic_cost = int(bits * fam.rom_cost if rom else bits)
    best, best_cost = None, logic_cost
    for ram in fam.rams:
        got = _ram_cost(ram, width, depth, granule, read_ports, not rom, async_read)
        if got is not None and got[0] < best_cost:
            best, best_cost = (ram, got), got[0]
    if best is None:
        return _soft_memory(fam, width, depth, rom, read_ports, async_read, logic_cost)
    ram, (cost, cells, emu_sync, mult_a) = best
    if ram.unit:
        # address blocks beyond the first need a read mux per bit and a write decoder
        lut = read_ports * width * (mult_a - 1) / (fam.lut_inputs - 2) if mult_a > 1 else 0
        return MemoryMap("block", ram.name, cells, bram=cells * ram.unit, lut=lut, cost=cost)
    lut = cells * ram.luts
    if mult_a > 1:
        lut += read_ports * width * (mult_a - 1) / (fam.lut_inputs - 2)
    return MemoryMap("distributed", ram.name, cells, lut=lut,
                     ff=read_ports * width if emu_sync else 0, cost=cost)


def rom_width(words):
    """Bits of a ROM that Yosys keeps: the columns that are not the same in every word
    (``words`` as non-negative ints, e.g. packed structs)."""
    words = [int(w) for w in words]
    if not words:
        return 0
    mask = 0
    for w in words:
        mask |= w ^ words[0]
    return bin(mask).count("1")


def packed(values, bits):
    """Signed or unsigned ints as ``bits``-bit two's complement words."""
    return [int(v) & ((1 << bits) - 1) for v in values]


def _soft_memory(fam, width, depth, rom, read_ports, async_read, cost):
    """A memory left to soft logic: a ROM becomes a function of the address per output bit; a
    RAM becomes flip-flops, a write decoder and a read multiplexer per port."""
    abits = max(1, (depth - 1).bit_length())
    if rom:
        # a LUT per output bit per lut_inputs address bits, more for deeper tables (their
        # contents decide the rest: the blocks with large soft tables fit their own terms)
        per_bit = max(1.0, 2 ** (abits - fam.lut_inputs) * 1.1)
        ff = 0 if async_read else read_ports * width
        return MemoryMap("logic", lut=read_ports * width * per_bit, ff=ff, cost=cost)
    mux = (depth - 1) / (fam.lut_inputs - 2) if depth > 1 else 0
    lut = read_ports * width * mux + depth * max(1, -(-width // 64))
    ff = width * depth + (0 if async_read else read_ports * width)
    return MemoryMap("logic", lut=lut, ff=ff, cost=cost)


# ---- bills ------------------------------------------------------------------------------------
@dataclasses.dataclass
class Bill:
    """Resources of a part of a design."""

    lut: float = 0.0
    ff: float = 0.0
    dsp: float = 0.0
    bram: float = 0.0

    def __add__(self, other):
        return Bill(self.lut + other.lut, self.ff + other.ff, self.dsp + other.dsp,
                    self.bram + other.bram)

    def __mul__(self, k):
        return Bill(self.lut * k, self.ff * k, self.dsp * k, self.bram * k)

    __rmul__ = __mul__

    def rounded(self):
        bram = round(self.bram * 2) / 2
        return {"lut": int(round(self.lut)), "ff": int(round(self.ff)),
                "dsp": int(round(self.dsp)), "bram": int(bram) if bram.is_integer() else bram}


def counter_bits(n):
    """Bits of a counter over ``0..n−1`` (never 0)."""
    return max(1, (max(1, n) - 1).bit_length())
