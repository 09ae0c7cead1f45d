"""Resource estimates of our ``hw`` blocks on the open-synthesis targets, in seconds and without
synthesis: LUT, FF, DSP and BRAM of one block configuration on an iCE40 UltraPlus, an ECP5 or
(as Yosys maps it) an UltraScale+.

:func:`estimate_block` takes a block name (the ``sim`` harness names: ``gemm``, ``gemv``,
``requant``, ``residual``, ``gelu``, ``silu``, ``softmax``, ``layernorm``, ``rmsnorm``,
``kvcache``, ``attention``, ``gpt2-block``, ``bert-layer``), its ``hw`` config and a family
(``ice40``, ``ecp5``, ``xcup``, or an open-flow target name such as ``ecp5-85f``), and returns
``{"lut", "ff", "dsp", "bram"}`` in the units of the open flow's ``SynthResult``
(``llmloom.flows.synth``): LUT4s on iCE40 and ECP5 (an ECP5 carry cell counts two, a
distributed-RAM cell four), LUTs on UltraScale+ (a LUTRAM cell the LUTs it occupies),
flip-flops, multipliers (``SB_MAC16``, ``MULT18X18D``, ``DSP48E2``) and block RAMs
(``SB_RAM40_4K``; ``DP16KD``; ``RAMB36E2`` with a ``RAMB18E2`` as a half).

How each number is formed
-------------------------
* **Multipliers** are counted from the products the RTL writes, with the operand widths and
  signedness Amaranth gives them, split the way Yosys's ``mul2dsp`` splits them
  (:func:`multiplier_dsps`; ``16×16`` on iCE40 with products under 11 bits left in fabric,
  ``18×18`` on ECP5, ``27×18`` signed-only on UltraScale+ with products under 9 bits left in
  fabric); a constant's trailing zeros are a shift, a power of two is no multiplier at all.
  Exact: 38 single products through Yosys (``flows.resources.MEASURED_PRODUCTS``) and every
  stored design agree.
* **Memories** go through :func:`map_memory`, which repeats Yosys's ``memory_libmap`` choice:
  the cost of every block-RAM and distributed-RAM geometry of the family's memory library
  (``ice40/brams.txt``, ``lattice/brams_16kd.txt`` and ``lutrams_trellis.txt``,
  ``xilinx/brams_xc4v.txt`` and ``lutrams_xcu.txt``: aspect ratios, byte enables, replicas for
  read ports, address-decode mux and demux scores, read-first and transparency emulation)
  against soft logic (a RAM bit costs 1, a ROM bit 1/16, or 1/64 on UltraScale+), the cheapest
  winning. A ROM counts only its bit columns that vary (Yosys drops constant ones first). The
  block RAMs or cells of the winner are counted as Yosys emits them.
* **Logic** (the LUTs and FFs outside memories and multipliers) is a linear function of a few
  features per block and family: lanes for the element-wise kernels; lanes, lanes × log2 of the
  row length and log2 of it for the row kernels; PEs × accumulator bits, array edges and lane
  select for the GEMM; adder-tree and accumulator bits for the GEMV (:data:`LOGIC`). The
  coefficients are least-squares fits of our own Yosys runs (the designs of
  ``flows.resources.FIT_DESIGNS``, stored as baselines), and tests hold them equal to a refit.
* **Composite blocks** (attention, the layers) are the sum of their parts (the same functions,
  the layers' weight memories as ROMs since their weights are fixed at elaboration) plus their
  own buffers and stream plumbing, with no constant fitted to them: their synthesis checks
  the sum.

Everything is Yosys's view (``synth_ice40 -dsp``, ``synth_ecp5``, ``synth_xilinx -family
xcup``): the UltraScale+ numbers are the open flow's area estimate, not Vivado's (which would
fold accumulators into the DSP48E2). ``llmloom.flows.resources`` holds these estimates to
synthesis within its stated tolerances, and ``tests/flows/test_resource_model.py`` checks them
against the stored baselines and fresh runs.
"""

from __future__ import annotations

import dataclasses

from ..hw import devices as _dev
from .errors import ConfigError

__all__ = ["FAMILIES", "Family", "RamDef", "family_of", "multiplier_dsps",
           "const_multiplier_dsps", "map_memory", "rom_width", "MemoryMap", "Bill",
           "LogicBill", "estimate_block", "estimate_parts", "BLOCKS", "LOGIC", "gemm_pe_cost"]


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


def _packed(values, bits):
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


def _w(n):
    """Bits of a counter over ``0..n−1`` (never 0)."""
    return max(1, (max(1, n) - 1).bit_length())


# ---- fitted logic -----------------------------------------------------------------------------
class LogicBill(Bill):
    """The fitted logic of one block: ``coef · features`` from :data:`LOGIC`, with separate
    features for LUTs and FFs. Keeps its block name and features, so that
    ``llmloom.flows.resources.fit_logic`` can refit the coefficients from synthesis results."""

    def __init__(self, block, features, lut, ff):
        super().__init__(lut=lut, ff=ff)
        self.block = block
        self.features = features        # {"lut": {name: value}, "ff": {name: value}}


#: LUTs and FFs of each block's own logic (what is left once its memories and multipliers are
#: accounted for), per family: ``{"lut": {feature: coefficient}, "ff": {...}}`` over the
#: block's features (:func:`_features`; ``one`` is the constant). Fitted by least squares to
#: the stored Yosys 0.70 baselines of the designs in ``llmloom.flows.resources.FIT_DESIGNS``
#: (``flows/baselines/<target>.json``); ``bench/resources.py --refit`` recomputes them and
#: ``tests/flows/test_resource_model.py`` holds them to the refit.
LOGIC: dict = {
    "gemm": {
        "ice40": {"lut": {"lane_sel": 2.63, "one": 148.56, "pe_bits": 2.23, "readout_bits": -0.48},
                  "ff": {"one": 265.62, "registers": 0.85}},
        "ecp5": {"lut": {"lane_sel": 2.13, "one": 276.81, "pe_bits": 1.91, "readout_bits": 1.01},
                 "ff": {"one": -3.63, "registers": 1.0}},
        "xcup": {"lut": {"lane_sel": 0.39, "one": 207.37, "pe_bits": 1.16, "readout_bits": 1.39},
                 "ff": {"one": -39.0, "registers": 0.98}},
    },
    "requant": {
        "ice40": {"lut": {"bias_lane": 59.62, "lane": 29, "one": 4, "table_lane": 25.88},
                 "ff": {"bias_lane": 8.63, "lane": 79, "one": 9, "table_lane": 34.87}},
        "ecp5": {"lut": {"bias_lane": 47, "lane": 60, "one": 3, "table_lane": 2.75},
                "ff": {"bias_lane": 8.63, "lane": 79, "one": 9, "table_lane": 34.87}},
        "xcup": {"lut": {"bias_lane": 11.87, "lane": 40, "one": 3, "table_lane": 2.62},
                "ff": {"bias_lane": 8.63, "lane": 79, "one": 9, "table_lane": 34.87}},
    },
    "residual": {
        "ice40": {"lut": {"lane": 45, "one": 4}, "ff": {"lane": 38, "one": 6}},
        "ecp5": {"lut": {"lane": 60, "one": 4}, "ff": {"lane": 38, "one": 6}},
        "xcup": {"lut": {"lane": 33.25, "one": 6}, "ff": {"lane": 38, "one": 6}},
    },
    "gelu": {
        "ice40": {"lut": {"block_lane": 11, "one": -9, "soft_lane": 69.75},
                 "ff": {"block_lane": -0, "one": 3, "soft_lane": 8}},
        "ecp5": {"lut": {"one": 32.23, "soft_lane": 73.72}, "ff": {"one": 3, "soft_lane": 8}},
        "xcup": {"lut": {"one": 2.77, "soft_lane": 33.28}, "ff": {"one": 3, "soft_lane": 8}},
    },
    "silu": {
        "ice40": {"lut": {"one": -7, "soft_lane": 101}, "ff": {"one": 3, "soft_lane": 8}},
        "ecp5": {"lut": {"one": 18, "soft_lane": 86}, "ff": {"one": 3, "soft_lane": 8}},
        "xcup": {"lut": {"one": -6, "soft_lane": 24.75}, "ff": {"one": 3, "soft_lane": 8}},
    },
    "kvcache": {
        "ice40": {"lut": {"col": 31.18, "one": 5.03, "sel": 10.63},
                 "ff": {"col": 34.84, "one": 6.1, "sel": -3.4}},
        "ecp5": {"lut": {"col": 39.28, "one": 6.49, "sel": 8.36},
                "ff": {"col": 34.92, "one": 6.11, "sel": -3.37}},
        "xcup": {"lut": {"col": 21.34, "one": 3.67, "sel": -0.2},
                "ff": {"col": 15.31, "one": 2.72, "sel": -2.85}},
    },
    "gemv": {
        "ice40": {"lut": {"col_bits": 0.62, "one": 117, "tree_bits": 0.12},
                 "ff": {"col_bits": 1.46, "one": 115, "tree_bits": 0.19}},
        "ecp5": {"lut": {"col_bits": -1.46, "one": 79, "tree_bits": 3.11},
                "ff": {"col_bits": 0.91, "one": 44, "tree_bits": 0.37}},
        "xcup": {"lut": {"col_bits": 1.8, "one": 46, "tree_bits": 1.22},
                "ff": {"col_bits": 1.97, "one": 43, "tree_bits": 0.02}},
    },
    "softmax": {
        "ice40": {"lut": {"lane": 128.57, "lane_log": -4.29, "log_length": 83.39, "one": 155.13},
                 "ff": {"lane": 47.84, "lane_log": -0.25, "log_length": 16.01, "one": 343.9}},
        "ecp5": {"lut": {"lane": -37.09, "lane_log": 13.31, "log_length": 61.34, "one": 634.15},
                "ff": {"lane": 34.47, "lane_log": -0.45, "log_length": 16.12, "one": 349.78}},
        "xcup": {"lut": {"lane": -10.53, "lane_log": 15.01, "log_length": 22.47, "one": 198.36},
                "ff": {"lane": 34.47, "lane_log": -0.45, "log_length": 16.12, "one": 349.78}},
    },
    "layernorm": {
        "ice40": {"lut": {"lane": 89.68, "lane_log": 32.28, "log_length": -2.22, "one": 429.56},
                 "ff": {"lane": 93.42, "lane_log": 2.54, "log_length": 13.14, "one": 454.02}},
        "ecp5": {"lut": {"lane": 172.09, "lane_log": 19.77, "log_length": 40.46, "one": 358.51},
                "ff": {"lane": 78.85, "lane_log": 2.47, "log_length": 13.19, "one": 445.66}},
        "xcup": {"lut": {"lane": 66.81, "lane_log": 22.46, "log_length": -4.84, "one": 256.6},
                "ff": {"lane": 78.85, "lane_log": 2.47, "log_length": 13.19, "one": 445.66}},
    },
    "rmsnorm": {
        "ice40": {"lut": {"lane": 198.32, "lane_log": 8.91, "log_length": -9.85, "one": 342.59},
                 "ff": {"lane": 83.48, "lane_log": 1.3, "log_length": 5.57, "one": 344.47}},
        "ecp5": {"lut": {"lane": 12.76, "lane_log": 41.11, "log_length": 57.83, "one": 325.07},
                "ff": {"lane": 108, "lane_log": -4.86, "log_length": 28.41, "one": 255.62}},
        "xcup": {"lut": {"lane": 31.46, "lane_log": 25.92, "log_length": -39.21, "one": 374.78},
                "ff": {"lane": 73.69, "lane_log": 0.95, "log_length": 11.41, "one": 437.64}},
    },
    "hostlink": {
        "ice40": {"lut": {"one": 215.81, "sr_bits": 1.56},
                  "ff": {"one": -182.46, "sr_bits": 3.25}},
        "ecp5": {"lut": {"one": 621.01, "sr_bits": 0.59},
                 "ff": {"one": 366.03, "sr_bits": 1.47}},
    },
}


def _logic(block, fam, *, lut_features=None, ff_features=None, **features):
    """The fitted logic of ``block`` on ``fam`` for these features (the same for LUTs and FFs
    unless ``lut_features``/``ff_features`` are given); ``one`` is added to each."""
    feats = {"lut": {"one": 1, **(lut_features if lut_features is not None else features)},
             "ff": {"one": 1, **(ff_features if ff_features is not None else features)}}
    coefs = LOGIC.get(block, {}).get(fam.name)
    if coefs is None:
        return LogicBill(block, feats, 0.0, 0.0)
    val = {r: sum(coefs[r].get(k, 0.0) * v for k, v in feats[r].items()) for r in feats}
    return LogicBill(block, feats, max(0.0, val["lut"]), max(0.0, val["ff"]))


def gemm_pe_cost(family="xcup"):
    """``{"lut", "ff"}`` of one more int8 processing element of the GEMM on ``family``: the
    slope of the fitted logic from an 8×8 to a 9×9 array (k = 64), i.e. the PE with its share
    of the skews and the readout. The whole-design model's per-PE cost (``perf.spatial.COST``)
    is this on ``xcup``."""
    from ..hw.blocks.gemm_config import GemmConfig
    fam = family_of(family)
    small, big = (_gemm_parts(GemmConfig(rows=n, cols=n), fam)["logic"] for n in (8, 9))
    return {k: round((getattr(big, k) - getattr(small, k)) / (81 - 64), 1)
            for k in ("lut", "ff")}


# ---- leaf blocks ------------------------------------------------------------------------------
BLOCKS = {}


def _block(*names):
    def register(fn):
        for n in names:
            BLOCKS[n] = fn
        return fn
    return register


def _addr_mul(fam, counter_range, const):
    """Multipliers of an address ``counter × const`` (a constant that is not a power of two
    is a real product, and Yosys maps it like any other)."""
    return const_multiplier_dsps(fam, _w(counter_range), False, const)


def _gemm_registers(cfg, fam):
    """Flip-flops the GEMM's RTL declares outside its memories: per PE the passed-on
    activation, weight and flag, the multiplier's operand and product registers, the flag
    through the multiplier's stages, the accumulator(s) and result(s); the input skews (row
    lane i and its flag delayed i + 1 steps, column lane j j + 1 steps); the array's
    registered inputs and step; the tile descriptors of the readout schedule
    (``readout_step + rows − 1`` stages, the previous one, stage 1, the due and the write
    one); the counters and flags of the loader, writer, feeder, readout and drain. On ECP5
    the multiplier's operand and first product registers are the MULT18X18D's own, not FFs;
    elsewhere Yosys may pull some into the hard multiplier, which the fitted coefficient
    (below 1 on iCE40) takes up."""
    from ..hw.blocks.gemm_config import GemmConfig
    R, C, a, w, acc = cfg.rows, cfg.cols, cfg.a_width, cfg.w_width, cfg.acc_width
    NT, K, KB, LN = cfg.n_tiles, cfg.k, cfg.k_beats, cfg.lanes
    stages = GemmConfig.PE_STAGES
    if cfg.dsp_packing:
        wp = 2 * w + 1                                    # a column pair's weights
        pw = a + _dev.packed_weight_bits(w)               # the packed product
        pes, pcols = R * (C // 2), C // 2
        pe = (a + wp + 1) + pw + stages + 4 * acc
        mult = a + wp + pw
    else:
        wp, pes, pcols = w, R * C, C
        pe = (a + w + 1) + (a + w) + stages + 2 * acc
        mult = 2 * (a + w)
    # the rule hw.blocks.gemm follows: unpacked products that fit the MULT18X18D
    in_dsp = _dev.multiplier_registers(fam.name, a, w, packed=cfg.dsp_packing)
    skews = R * (R + 1) // 2 * (a + 1) + pcols * (pcols + 1) // 2 * wp
    inputs = R * a + C * w + 2                                       # x_a, x_w, flag, step
    meta = 4 + _w(NT) + _w(R)
    sched = (cfg.readout_step + R + 3) * meta
    readout = 2 + 2 * _w(R)                                          # due, wr_en and rows
    counters = (_w(K) + _w(NT) + 1                                   # loader
                + 6 + 3 * _w(R) + _w(KB)                             # writer
                + 4 + _w(cfg.tile_steps) + _w(KB) + 2 * _w(LN) + _w(NT) + _w(NT * K)
                + _w(cfg.flush_steps)                                # feeder, stage 1
                + 7 + 3 * _w(R) + 1 + _w(NT) + 3)                    # output banks, drain
    return pes * (pe + (0 if in_dsp else mult)) + skews + inputs + sched + readout + counters


def _gemm_parts(cfg, fam, *, rom_weights=False):
    R, C, LN = cfg.rows, cfg.cols, cfg.lanes
    KB, NT, K = cfg.k_beats, cfg.n_tiles, cfg.k
    if cfg.dsp_packing:
        # column pairs sharing an activation, one a × packed-weight product each (AMD WP486):
        # one DSP48E2, but split in two on 18×18 / 16×16 multipliers (hw.devices' packing rule)
        per_mac = multiplier_dsps(fam, cfg.a_width, True, _dev.packed_weight_bits(cfg.w_width),
                                  True)
        macs = R * -(-C // 2)
    else:
        per_mac = multiplier_dsps(fam, cfg.a_width, True, cfg.w_width, True)
        macs = R * C
    # addresses: weight loader nt·K, output bank rows (bank·R + row)·NT (twice)
    addr = (0 if rom_weights else _addr_mul(fam, NT, K)) + \
        2 * const_multiplier_dsps(fam, _w(2 * R), False, NT)
    return {
        # LUTs: the PEs' accumulators (adder and first-step mux per bit), the readout (a
        # rows:1 mux of each column's accumulator), the feeder's lane select (an LN:1 mux of
        # each array row's activation); FFs: the registers the RTL writes (_gemm_registers)
        "logic": _logic("gemm", fam,
                        lut_features={"pe_bits": R * C * cfg.acc_width,
                                      "readout_bits": (R - 1) * C * cfg.acc_width,
                                      "lane_sel": R * (LN - 1) * cfg.a_width},
                        ff_features={"registers": _gemm_registers(cfg, fam)}),
        "array": Bill(dsp=macs * per_mac + addr),
        "abuf": map_memory(fam, R * LN * cfg.a_width, 2 * KB,
                           granularity=LN * cfg.a_width).bill(),
        "wmem": map_memory(fam, C * cfg.w_width, NT * K, rom=rom_weights).bill(),
        "obuf": map_memory(fam, C * cfg.acc_width, 2 * R * NT).bill(),
    }


@_block("gemm")
def _gemm(cfg, fam):
    return _gemm_parts(cfg, fam)


def _gemv_parts(cfg, fam, *, rom_weights=False):
    R, C, LN = cfg.rows, cfg.cols, cfg.lanes
    KT, NT = cfg.k_words, cfg.n_tiles
    macs = R * C * multiplier_dsps(fam, cfg.a_width, True, cfg.w_width, True)
    addr = (0 if rom_weights else _addr_mul(fam, NT, KT)) + _addr_mul(fam, NT, KT)
    return {
        # the adder trees (rows − 1 adders per column) and the accumulators grow with the
        # accumulator width
        "logic": _logic("gemv", fam, tree_bits=(R - 1) * C * cfg.acc_width,
                        col_bits=C * cfg.acc_width),
        "products": Bill(dsp=macs + addr),
        "xbuf": map_memory(fam, R * cfg.a_width, 2 * KT, granularity=LN * cfg.a_width).bill(),
        "wmem": map_memory(fam, R * C * cfg.w_width, NT * KT, rom=rom_weights,
                           granularity=None if rom_weights else C * cfg.w_width).bill(),
    }


@_block("gemv")
def _gemv(cfg, fam):
    return _gemv_parts(cfg, fam)


@_block("requant")
def _requant(cfg, fam, in_bits=None):
    """``in_bits``: the significant bits of the int32 input when it comes from an engine whose
    accumulator is narrower (a composed layer or attention): where the synthesis flattens the
    design, Yosys sees the copies of the sign bit (merged registers) and narrows the product,
    which can need fewer multipliers (two in a lane of a 2×2 layer on iCE40)."""
    mults, _shift = cfg.multipliers
    mult_width = max(mults).bit_length()
    table, varying = cfg.channel_table, cfg.varying_multipliers
    bias = any(cfg.channel_bias)
    a_bits = cfg.sum_width if in_bits is None or not fam.flattens else \
        min(cfg.sum_width, in_bits + bias)
    if table and varying:
        dsp = cfg.lanes * multiplier_dsps(fam, a_bits, True, mult_width, False)
    else:
        # constants per lane (the same one, or the lane's own when a row is one beat)
        dsp = sum(const_multiplier_dsps(fam, a_bits, True, mults[j])
                  for j in range(cfg.lanes))
    # with a channel table a stage more (the accumulators wait a cycle for the table word);
    # a bias is an adder per lane (a zero bias is optimised away)
    parts = {"logic": _logic("requant", fam, lane=cfg.lanes,
                             table_lane=cfg.lanes if table else 0,
                             bias_lane=cfg.lanes if bias else 0),
             "multiply": Bill(dsp=dsp)}
    if table:
        # one word per beat: each lane's bias (if any) and multiplier (if they vary)
        ln, beats = cfg.lanes, cfg.beats
        word = 0
        for j in range(ln):
            if any(cfg.channel_bias):
                word += rom_width(_packed((cfg.channel_bias[b * ln + j] for b in range(beats)),
                                          32))
            if varying:
                word += rom_width(mults[b * ln + j] for b in range(beats))
        parts["channels"] = map_memory(fam, word, beats, rom=True).bill()
    return parts


@_block("residual")
def _residual(cfg, fam):
    mx, mr, _ = cfg.multipliers
    dsp = const_multiplier_dsps(fam, 8, True, mx) + const_multiplier_dsps(fam, 8, True, mr)
    return {"logic": _logic("residual", fam, lane=cfg.lanes),
            "multiply": Bill(dsp=cfg.lanes * dsp)}


@_block("gelu", "silu")
def _activation(cfg, fam):
    table = map_memory(fam, rom_width(_packed(cfg.lut, 8)), 256, rom=True,
                       read_ports=cfg.lanes)
    # a table left in logic is the bulk of the block (its LUTs depend on its contents): its
    # lanes have their own coefficient
    soft = table.kind == "logic"
    name = "silu" if type(cfg).__name__ == "SiluConfig" else "gelu"
    return {"logic": _logic(name, fam, soft_lane=cfg.lanes if soft else 0,
                            block_lane=0 if soft else cfg.lanes),
            "table": Bill(bram=table.bram, lut=table.lut if table.kind != "logic" else 0)}


def _records(fam, cfg, bits):
    """The row kernels' record queue: an Amaranth ``SyncFIFO`` (asynchronous read) of
    ``record_depth`` records."""
    return map_memory(fam, bits, cfg.record_depth, async_read=True).bill()


def _row_buffer(fam, cfg):
    return map_memory(fam, cfg.lanes * 8, cfg.buffer_depth).bill()


def _keep_mults(fam, cfg):
    """The causal mask's ``beat·lanes + n``: a product unless ``lanes`` is a power of two."""
    return cfg.lanes * _addr_mul(fam, cfg.beats, cfg.lanes) if cfg.causal else 0


@_block("softmax")
def _softmax(cfg, fam):
    from ..hw.blocks.softmax import MANT_BITS, R_BITS, RECIP_FRAC, RECIP_TABLE
    F, ln = cfg.exp_frac, cfg.lanes
    dsp = (ln * multiplier_dsps(fam, F + 1, False, R_BITS, False)          # p = e·R
           + multiplier_dsps(fam, cfg.sum_width, False, F + 1, False)      # S·exp rescale
           + multiplier_dsps(fam, MANT_BITS, False, RECIP_FRAC + 2, False)   # m·y0
           + multiplier_dsps(fam, RECIP_FRAC + 2, False, RECIP_FRAC + 4, False)  # y0·(2−t)
           + const_multiplier_dsps(fam, RECIP_FRAC + 2, False, 255)        # 255·y1
           + 2 * _keep_mults(fam, cfg))
    rec_bits = 8 + R_BITS + _w(cfg.length) + 1
    exp_bits = rom_width(cfg.exp_table)
    exp = map_memory(fam, exp_bits, 256, rom=True, read_ports=2)
    return {
        # per lane, and per lane and bit of the row length (the widths of the sums grow with
        # it), and the per-row unit's widths with the length
        "logic": _logic("softmax", fam, lane=ln, lane_log=ln * _w(cfg.length),
                        log_length=_w(cfg.length)),
        "multiply": Bill(dsp=dsp),
        "exp": exp.bill() * ln,
        "rescale": map_memory(fam, exp_bits, 256, rom=True).bill(),
        "recip": map_memory(fam, rom_width(RECIP_TABLE), len(RECIP_TABLE), rom=True).bill(),
        "buffer": _row_buffer(fam, cfg),
        "records": _records(fam, cfg, rec_bits),
    }


@_block("layernorm", "rmsnorm")
def _norm(cfg, fam):
    from ..hw.blocks.norm import G_BITS, MANT_BITS, RSQRT_FRAC, RSQRT_TABLE, Y_BITS
    ln, L = cfg.lanes, cfg.length
    s2_width = (L * 128 * 128).bit_length()
    g_t = 2 * (RSQRT_FRAC + 2) - (2 * RSQRT_FRAC - 16)
    # c = L·x − S1 (layernorm); rmsnorm's c = L·x is x itself when L is a power of two (Yosys
    # drops the constant low bits and the sign copies), which can leave the top slice of
    # c·y1 below the family's minimum product width
    if cfg.CENTERED:
        c_bits = cfg.c_width
    else:
        c_bits = 8 if L & (L - 1) == 0 else (128 * L).bit_length() + 1
    lane = (multiplier_dsps(fam, 8, True, 8, True)                          # x²
            + const_multiplier_dsps(fam, 8, True, L)                        # L·x
            + multiplier_dsps(fam, c_bits, True, Y_BITS, False)             # c·y1
            + multiplier_dsps(fam, cfg.n_width, True, G_BITS, True))        # n·G
    fixed = (const_multiplier_dsps(fam, s2_width, False, L)                 # L·S2
             + (multiplier_dsps(fam, cfg.s1_width, True, cfg.s1_width, True)
                if cfg.CENTERED else 0)                                     # S1²
             + multiplier_dsps(fam, RSQRT_FRAC + 2, False, RSQRT_FRAC + 2, False)   # y0²
             + multiplier_dsps(fam, g_t, False, MANT_BITS, False)           # m·y0²
             + multiplier_dsps(fam, RSQRT_FRAC + 2, False, g_t + 2, True))  # y0·(3 − t)
    B = cfg.beats
    rec_bits = cfg.s1_width + Y_BITS + _w(cfg.v_width // 2 + 1) + 1
    parts = {
        "logic": _logic(cfg.KIND, fam, lane=ln, lane_log=ln * _w(L), log_length=_w(L)),
        "multiply": Bill(dsp=ln * lane + fixed),
        "rsqrt": map_memory(fam, rom_width(RSQRT_TABLE), len(RSQRT_TABLE), rom=True).bill(),
        "buffer": _row_buffer(fam, cfg),
        "records": _records(fam, cfg, rec_bits),
    }
    # gamma and beta tables, one word of lanes per beat: only their varying columns count (a
    # constant table, no gamma or no beta, is no memory at all)
    for name, values, bits in (("gamma", cfg.gamma_q, G_BITS),
                               ("beta", cfg.beta_q, cfg.beta_width)):
        width = sum(rom_width(_packed((values[b * ln + j] for b in range(B)), bits))
                    for j in range(ln))
        if width:
            parts[name] = map_memory(fam, width, B, rom=True).bill()
    return parts


@_block("kvcache")
def _kvcache(cfg, fam):
    LN, C, PC = cfg.lanes, cfg.qk_cols, cfg.pv_cols
    PT, DB, DT = cfg.pos_tiles, cfg.beats, cfg.head_tiles
    WPP = cfg.heads * DT
    dsp = (_addr_mul(fam, PT, DB) + _addr_mul(fam, PT, C)
           + const_multiplier_dsps(fam, cfg.head_bits, False, cfg.d_head // LN)
           + const_multiplier_dsps(fam, cfg.head_bits, False, DT))
    return {
        "logic": _logic("kvcache", fam, col=C + PC, sel=C * max(0, LN - 1)),
        "address": Bill(dsp=dsp),
        "k_banks": map_memory(fam, LN * 8, PT * DB).bill() * C,
        "v_mem": map_memory(fam, PC * 8, cfg.seq * WPP, granularity=8).bill(),
    }


# ---- stream plumbing (structural: registers, and muxes of the lanes) ----------------------------
def _gearbox(fam, width, in_lanes, out_lanes):
    """``hw.stream.Gearbox`` of ``width``-bit lanes: widening collects ``ratio − 1`` beats and
    fills an output register; narrowing holds a beat and muxes its pieces into the output
    register; equal lanes are wires."""
    if in_lanes == out_lanes:
        return Bill()
    mux_per_lut = fam.lut_inputs - 2
    if out_lanes > in_lanes:
        ratio = out_lanes // in_lanes
        ff = (ratio - 1) * in_lanes * width + out_lanes * width + 3 + _w(ratio)
        return Bill(ff=ff, lut=out_lanes * width / mux_per_lut + 8)
    ratio = in_lanes // out_lanes
    ff = in_lanes * width + 3 + out_lanes * width + 2 + _w(ratio)
    return Bill(ff=ff, lut=out_lanes * width * max(1, ratio - 1) / mux_per_lut + 8)


def _queue(fam, width, depth):
    """``hw.stream.Queue``: Amaranth's ``SyncFIFOBuffered`` — a memory of ``depth − 1`` words
    and an output register, with pointers and a level counter."""
    ctrl = 3 * _w(depth + 1) + 2
    base = Bill(ff=width + ctrl, lut=2 * ctrl)
    if depth <= 1:
        return base
    return base + map_memory(fam, width, depth - 1).bill()


def _fork(n):
    """``hw.stream.Fork``: one taken-flag per output."""
    return Bill(ff=n, lut=2 * n + 2)


# ---- composite blocks -------------------------------------------------------------------------
def _sub(parts, prefix, sub, k=1):
    for key, bill in sub.items():
        parts[f"{prefix}.{key}"] = bill * k if k != 1 else bill
    return parts


def _attention_parts(cfg, fam):
    from ..hw.blocks.kvcache import KvCacheConfig
    LN, S, E = cfg.lanes, cfg.seq, getattr(cfg, "head_engines", 1)
    EB = cfg.d_model // E // LN
    parts = {}
    cache = KvCacheConfig.of(cfg).replace(d_model=cfg.d_model // E, heads=cfg.heads // E)
    engine = {}
    _sub(engine, "cache", _kvcache(cache, fam))
    _sub(engine, "qk", _gemm(cfg.qk_gemm, fam))
    _sub(engine, "pv", _gemm(cfg.pv_gemm, fam))
    engine["score_gear"] = _gearbox(fam, 32, cfg.qk_cols, LN)
    _sub(engine, "score_requant", _requant(cfg.score_requant, fam, cfg.qk_gemm.acc_width))
    smax = cfg.softmax(0)
    if cfg.causal:
        smax = smax.replace(runtime_offset=True)
    _sub(engine, "softmax", _softmax(smax, fam))
    engine["out_gear"] = _gearbox(fam, 32, cfg.pv_cols, LN)
    _sub(engine, "out_requant", _requant(cfg.out_requant, fam, cfg.pv_gemm.acc_width))
    engine["qbuf"] = map_memory(fam, LN * 8, S * EB).bill()
    engine["obuf"] = map_memory(fam, LN * 8, S * EB).bill()
    # (the phase control and the Q/output walks are left out: a few hundred cells, within the
    # tolerance; nothing is fitted to the composite, its synthesis checks the sum)
    _sub(parts, "engine", engine, E)
    return parts


@_block("attention")
def _attention(cfg, fam):
    return _attention_parts(cfg, fam)


def _linear(cfg, name, fam):
    """A layer's linear stage: engine (weights fixed at elaboration, so its weight memory is a
    ROM and its loader is gone) → gearbox → requant."""
    g = cfg.linear(name)
    parts = {}
    if cfg.engine == "gemv":
        _sub(parts, "gemv", _gemv_parts(g, fam, rom_weights=True))
    else:
        _sub(parts, "gemm", _gemm_parts(g, fam, rom_weights=True))
    parts["gear"] = _gearbox(fam, 32, g.cols, cfg.lanes)
    _sub(parts, "requant", _requant(cfg.requant(name), fam, g.acc_width))
    return parts


@_block("gpt2-block", "bert-layer")
def _layer(cfg, fam):
    """The layer as its RTL composes it (:mod:`llmloom.hw.layers.layer`, walking the
    description): a part per stage, a queue per skip, a fork per tensor of several readers."""
    from ..hw.layers.common import skip_depth
    desc = cfg.description
    beat = cfg.lanes * 8 + 2
    parts, queues, forks = {}, {}, Bill()
    for st in desc.stages:
        if st.kind == "linear":
            _sub(parts, st.name, _linear(cfg, st.name, fam))
        else:
            part = {"attention": _attention_parts, "norm": _norm, "act": _activation,
                    "residual": _residual}[st.kind]
            _sub(parts, st.name, part(cfg.stage_config(st.name), fam))
        if st.kind == "residual":
            queues[f"skip_{st.name}"] = _queue(fam, beat, skip_depth(cfg, st))
    for tensor in desc.tensors:
        readers = len(desc.readers(tensor)) + (tensor == desc.output)
        if readers > 1:
            forks = forks + _fork(readers)
    parts |= queues
    parts["forks"] = forks
    return parts


# ---- entry points -----------------------------------------------------------------------------
def _check(block, cfg):
    if block not in BLOCKS:
        raise ConfigError(f"no resource model for block {block!r}; allowed: "
                          f"{', '.join(sorted(BLOCKS))}")
    if block in ("gpt2-block", "bert-layer"):
        want = "gpt2" if block == "gpt2-block" else "bert"
        if cfg.arch != want:
            cfg = cfg.replace(arch=want)
    return cfg


def estimate_parts(block, cfg, family):
    """``{part: Bill}`` of :func:`estimate_block`, unrounded: where the resources go (e.g.
    ``q.gemm.wmem``, the Q projection's weight memory; ``...logic`` the fitted terms)."""
    fam = family_of(family)
    cfg = _check(block, cfg)
    return BLOCKS[block](cfg, fam)


def estimate_block(block, cfg, family):
    """LUT, FF, DSP and BRAM of block ``block`` with config ``cfg`` on ``family`` (a family or
    an open-flow target name), as Yosys would synthesise it.

    Returns
    -------
    dict
        ``{"lut": int, "ff": int, "dsp": int, "bram": int | float}``; BRAM in the family's
        block (``SB_RAM40_4K``, ``DP16KD``, ``RAMB36E2`` with a RAMB18E2 as a half).

    Raises
    ------
    ConfigError
        Unknown block or family.
    """
    total = sum(estimate_parts(block, cfg, family).values(), Bill())
    return total.rounded()


def unit_costs(family="xcup", length=1024):
    """Per-lane and fixed DSP, LUT and FF of the non-linear units of a layer, from this model:
    ``{"softmax" | "norm" | "act": {"lane": {dsp, lut, ff}, "fixed": {dsp, lut, ff}}}`` (the
    ``softmax``, ``layernorm`` and ``gelu`` blocks at rows of ``length``, lanes 1 and 2; block
    RAMs are left out: the whole-design model places tables and row buffers itself). The
    whole-design model (``perf.spatial``) takes its non-linear unit costs from here."""
    from ..hw.blocks.activation import GeluConfig
    from ..hw.blocks.norm import LayerNormConfig
    from ..hw.blocks.softmax import SoftmaxConfig
    out = {}
    for unit, block, cls in (("softmax", "softmax", SoftmaxConfig),
                             ("norm", "layernorm", LayerNormConfig), ("act", "gelu", GeluConfig)):
        one, two = (estimate_block(block, cls(length=length, lanes=n), family) for n in (1, 2))
        lane = {k: two[k] - one[k] for k in ("dsp", "lut", "ff")}
        out[unit] = {"lane": lane, "fixed": {k: max(0, one[k] - lane[k]) for k in lane}}
    return out


# ---- the board core -----------------------------------------------------------------------------
def estimate_hostlink_parts(cfg, max_rows, family):
    """``{part: Bill}`` of ``llmloom.boards.hostlink.HostLink``: the GEMM of ``cfg`` (weights
    loaded through its stream), the on-chip activation and output memories of ``max_rows``
    rows, the UART and the protocol's shift registers (fitted: :data:`LOGIC` ``hostlink``)."""
    fam = family_of(family)
    a_bits = cfg.lanes * cfg.a_width + 2
    w_bits = cfg.cols * cfg.w_width + 2
    o_bits = cfg.cols * 32 + 2
    ab, wb, ob = (-(-b // 8) for b in (a_bits, w_bits, o_bits))
    # the byte shift registers: activation, weight and the transmit one (output beat, 16 bytes
    # of identity or the 4-byte cycle count, the widest)
    sr_bits = 8 * (ab + wb + max(ob, 16, 4))
    parts = {}
    _sub(parts, "gemm", _gemm_parts(cfg, fam))
    parts["amem"] = map_memory(fam, a_bits, max_rows * cfg.k_beats).bill()
    parts["omem"] = map_memory(fam, o_bits, max_rows * cfg.n_tiles).bill()
    parts["control"] = _logic("hostlink", fam, sr_bits=sr_bits)
    return parts


def estimate_hostlink(cfg, max_rows, family):
    """LUT, FF, DSP and BRAM of the board core (:func:`estimate_hostlink_parts`)."""
    return sum(estimate_hostlink_parts(cfg, max_rows, family).values(), Bill()).rounded()
