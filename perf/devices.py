"""Catalogues of FPGAs and GPUs, each figure with its source.

FPGA figures are the device's data-sheet resources (what the fabric has, not what a vendor shell
leaves free) and the off-chip memory and network of the usual board carrying it. GPU figures are
dense (no sparsity) tensor-core peaks from NVIDIA's data sheets. Figures marked *approximate* in
``source`` are recalled or derived rather than copied from a table; treat them as such.
"""

from __future__ import annotations

import dataclasses

from .errors import unknown

__all__ = ["MemorySpec", "BlockRamSpec", "FpgaSpec", "GpuSpec", "FPGAS", "GPUS", "get_fpga",
           "get_gpu", "fpga_names", "gpu_names"]

# Packing of several narrow multiplications into one DSP multiplier: DSP48E2 (27x18) packs two
# int8 products sharing one operand (AMD WP486) and four int4 x int8 (AMD WP521); DSP58 keeps the
# DSP48E2 modes (AM004); DSP48E1 (25x18) lacks the width for the int8 trick; Lattice 18x18
# multipliers and iCE40 SB_MAC16 split into two 9x9 / 8x8 multipliers (FPGA-TN-02205,
# FPGA-TN-02007), i.e. two int8 (or int4) products, without a shared operand constraint.
_PACK_DSP48E2 = {"W8A8": 2, "W4A8": 4, "W4A16": 1, "fp16": 1}
_PACK_DSP48E1 = {"W8A8": 1, "W4A8": 2, "W4A16": 1, "fp16": 1}
_PACK_SPLIT9 = {"W8A8": 2, "W4A8": 2, "W4A16": 1, "fp16": 1}


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

    @property
    def bandwidth(self):
        """Achievable bytes/s over all channels."""
        return self.channels * self.gbps_per_channel * 1e9 * self.efficiency


@dataclasses.dataclass(frozen=True, kw_only=True)
class BlockRamSpec:
    """One kind of on-chip RAM block: ``count`` blocks of ``bits`` with these port widths."""

    kind: str
    count: int
    bits: int
    widths: tuple          # allowed port widths (bits); depth = bits // width (parity counted)
    ports: int = 2


@dataclasses.dataclass(frozen=True, kw_only=True)
class FpgaSpec:
    """An FPGA (and the board memory and links it is usually used with).

    ``dies`` is the number of super logic regions (SLRs); per-die capacities are the totals
    divided evenly unless the data sheet says otherwise (``die_*`` overrides).
    """

    name: str
    part: str
    dsp: int
    dsp_kind: str
    lut: int
    ff: int
    bram: BlockRamSpec
    uram: BlockRamSpec | None
    dies: int
    clock_mhz: float                 # a typical achieved kernel clock for dataflow designs
    memory: MemorySpec | None        # the memory weights stream from (None: on-chip only)
    link_gbps: float                 # inter-FPGA bandwidth (Gb/s, all ports together)
    max_packing: dict
    static_w: float                  # board power with the fabric idle (approximate)
    max_w: float                     # board power limit
    aie: int = 0                     # Versal AI Engines
    aie_macs_per_cycle: int = 0      # int8 MACs per AI Engine per cycle
    aie_clock_mhz: float = 0.0
    source: str = ""

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


def _hbm2_u280(capacity):
    return MemorySpec(kind="HBM2", channels=32, gbps_per_channel=14.375, capacity_gb=capacity,
                      efficiency=0.92, pj_per_bit=7.0,
                      source="32 pseudo-channels x 14.375 GB/s = 460 GB/s (Alveo data sheet); "
                             "92% achievable per channel measured by Shuhai (Wang et al., "
                             "FCCM 2020); energy approximate")


_QSFP28_X2 = "2 x QSFP28 (100 Gb/s each)"

FPGAS = {f.name: f for f in (
    FpgaSpec(name="u280", part="xcu280", dsp=9024, dsp_kind="DSP48E2", lut=1303680, ff=2607360,
             bram=_bram36(2016), uram=_uram(960), dies=3, clock_mhz=300,
             memory=_hbm2_u280(8), link_gbps=200, max_packing=_PACK_DSP48E2,
             static_w=25, max_w=225,
             source="AMD Alveo U280 data sheet (DS963): 9,024 DSP48E2, 1,303,680 LUT, 2,607,360 "
                    "FF, 2,016 BRAM36, 960 URAM, 3 SLRs (3,008 DSP / 434,560 LUT / 672 BRAM36 / "
                    "320 URAM each), 8 GB HBM2 460 GB/s in 32 pseudo-channels (+2x16 GB DDR4, "
                    "not modelled), " + _QSFP28_X2 + ", 225 W max; clock: Vitis default "
                    "300 MHz; static power approximate"),
    FpgaSpec(name="u250", part="xcu250", dsp=12288, dsp_kind="DSP48E2", lut=1728000, ff=3456000,
             bram=_bram36(2688), uram=_uram(1280), dies=4, clock_mhz=300,
             memory=MemorySpec(kind="DDR4", channels=4, gbps_per_channel=19.2, capacity_gb=64,
                               efficiency=0.85, pj_per_bit=20.0,
                               source="4 x DDR4-2400 72-bit DIMM channels, 16 GB each (Alveo "
                                      "U250 data sheet DS962); efficiency and energy "
                                      "approximate"),
             link_gbps=200, max_packing=_PACK_DSP48E2, static_w=30, max_w=225,
             source="AMD Alveo U250 data sheet (DS962) / UltraScale+ DS890 (XCVU13P-class "
                    "XCU250): 12,288 DSP48E2, 1,728K LUT, 3,456K FF, 2,688 BRAM36, 1,280 URAM, "
                    "4 SLRs (split evenly here: approximate), " + _QSFP28_X2 + ", 225 W max"),
    FpgaSpec(name="u55c", part="xcu55c", dsp=9024, dsp_kind="DSP48E2", lut=1303680, ff=2607360,
             bram=_bram36(2016), uram=_uram(960), dies=3, clock_mhz=300,
             memory=_hbm2_u280(16), link_gbps=200, max_packing=_PACK_DSP48E2,
             static_w=20, max_w=150,
             source="AMD Alveo U55C data sheet (DS978): same fabric as U280 (9,024 DSP48E2, "
                    "1,304K LUT, 2,016 BRAM36, 960 URAM, 3 SLRs), 16 GB HBM2 460 GB/s, "
                    + _QSFP28_X2 + ", 150 W max"),
    FpgaSpec(name="vck190", part="xcvc1902", dsp=1968, dsp_kind="DSP58", lut=899840,
             ff=1799680, bram=_bram36(967), uram=_uram(463), dies=1, clock_mhz=300,
             memory=MemorySpec(kind="DDR4+LPDDR4", channels=3, gbps_per_channel=19.0,
                               capacity_gb=16, efficiency=0.8, pj_per_bit=20.0,
                               source="VCK190 board (UG1366): 8 GB DDR4 DIMM + 2 x 4 GB LPDDR4 "
                                      "behind the NoC; ~57 GB/s in total: approximate"),
             link_gbps=200, max_packing=_PACK_DSP48E2, static_w=15, max_w=180,
             aie=400, aie_macs_per_cycle=128, aie_clock_mhz=1000,
             source="AMD Versal AI Core DS950 / AM004: XCVC1902 1,968 DSP58, 899,840 LUT, "
                    "1,799,680 FF, 967 BRAM36, 463 URAM, 400 AI Engines (128 int8 MACs/cycle, "
                    "~1 GHz, as in the paper's VCK5000 example); 2 x QSFP28; power approximate"),
    FpgaSpec(name="vhk158", part="xcvh1582", dsp=3984, dsp_kind="DSP58", lut=1139200,
             ff=2278400, bram=_bram36(1341), uram=_uram(1301), dies=2, clock_mhz=300,
             memory=MemorySpec(kind="HBM2e", channels=32, gbps_per_channel=25.6,
                               capacity_gb=32, efficiency=0.9, pj_per_bit=6.0,
                               source="2 HBM2e stacks, 32 pseudo-channels, 819 GB/s (AMD PG313 "
                                      "integrated HBM controller); efficiency approximate"),
             link_gbps=200, max_packing=_PACK_DSP48E2, static_w=35, max_w=250,
             source="AMD VHK158 (UG1611), XCVH1582: fabric figures (DSP58, LUT, FF, BRAM36, "
                    "URAM, 2 SLRs) approximate, recalled from the Versal HBM product table "
                    "(DS950) -- verify before relying on them; 32 GB HBM2e 819 GB/s (PG313)"),
    FpgaSpec(name="vu9p", part="xcvu9p", dsp=6840, dsp_kind="DSP48E2", lut=1182240, ff=2364480,
             bram=_bram36(2160), uram=_uram(960), dies=3, clock_mhz=250,
             memory=MemorySpec(kind="DDR4", channels=4, gbps_per_channel=19.2, capacity_gb=64,
                               efficiency=0.85, pj_per_bit=20.0,
                               source="4 x DDR4-2400 channels of 16 GB as on AWS F1 / VCU1525 "
                                      "boards; efficiency and energy approximate"),
             link_gbps=200, max_packing=_PACK_DSP48E2, static_w=20, max_w=225,
             source="AMD UltraScale+ DS890: XCVU9P 6,840 DSP48E2, 1,182,240 LUT, 2,364,480 FF, "
                    "2,160 BRAM36, 960 URAM, 3 SLRs; board (VCU1525-like): 2 x QSFP28; clock "
                    "250 MHz as AWS F1 shells; power approximate"),
    FpgaSpec(name="ecp5-85f", part="LFE5U-85F", dsp=156, dsp_kind="MULT18X18D", lut=83640,
             ff=83640,
             bram=BlockRamSpec(kind="EBR18", count=208, bits=18432, widths=(1, 2, 4, 9, 18, 36)),
             uram=None, dies=1, clock_mhz=100,
             memory=MemorySpec(kind="SDRAM", channels=1, gbps_per_channel=0.33, capacity_gb=0.032,
                               efficiency=0.7, pj_per_bit=60.0,
                               source="ULX3S board: 32 MB SDR SDRAM, 16-bit at ~166 MHz; "
                                      "approximate"),
             link_gbps=0, max_packing=_PACK_SPLIT9, static_w=0.2, max_w=2,
             source="Lattice ECP5 family data sheet (FPGA-DS-02012): LFE5U-85F 84K LUT4 "
                    "(83,640), 156 18x18 multipliers, 208 EBR (18 Kb), one FF per LUT; clock "
                    "and power approximate; no inter-FPGA link on ULX3S"),
    FpgaSpec(name="ice40up5k", part="iCE40UP5K", dsp=8, dsp_kind="SB_MAC16", lut=5280, ff=5280,
             bram=BlockRamSpec(kind="EBR4", count=30, bits=4096, widths=(2, 4, 8, 16)),
             uram=BlockRamSpec(kind="SPRAM256", count=4, bits=262144, widths=(16,), ports=1),
             dies=1, clock_mhz=24,
             memory=MemorySpec(kind="QSPI flash", channels=1, gbps_per_channel=0.025,
                               capacity_gb=0.016, efficiency=0.9, pj_per_bit=100.0,
                               source="iCEBreaker: 16 MB QSPI flash, ~50 MHz x 4 bits; read only; "
                                      "approximate"),
             link_gbps=0, max_packing=_PACK_SPLIT9, static_w=0.001, max_w=0.1,
             source="Lattice iCE40 UltraPlus data sheet (FPGA-DS-02008): 5,280 LUT4, 8 SB_MAC16, "
                    "30 EBR (4 Kb), 4 SPRAM (256 Kb, here in the 'uram' slot); clock approximate"),
    FpgaSpec(name="artix7-100t", part="xc7a100t", dsp=240, dsp_kind="DSP48E1", lut=63400,
             ff=126800, bram=_bram36(135), uram=None, dies=1, clock_mhz=150,
             memory=MemorySpec(kind="DDR3L", channels=1, gbps_per_channel=1.33, capacity_gb=0.256,
                               efficiency=0.75, pj_per_bit=30.0,
                               source="Arty A7-100T: 256 MB DDR3L, 16-bit at 667 MT/s; "
                                      "efficiency approximate"),
             link_gbps=0.1, max_packing=_PACK_DSP48E1, static_w=0.15, max_w=5,
             source="AMD 7 series DS180: XC7A100T 63,400 LUT, 126,800 FF, 240 DSP48E1, 135 "
                    "BRAM36, no URAM; Arty A7 board: 100 Mb/s Ethernet as the only link; clock "
                    "and power approximate"),
)}

_FPGA_ALIASES = {"alveo-u280": "u280", "xcu280": "u280", "alveo-u250": "u250",
                 "xcu250": "u250", "alveo-u55c": "u55c", "xcu55c": "u55c", "xcvc1902": "vck190",
                 "xcvh1582": "vhk158", "xcvu9p": "vu9p", "ecp5": "ecp5-85f",
                 "lfe5u-85f": "ecp5-85f", "up5k": "ice40up5k", "xc7a100t": "artix7-100t",
                 "arty": "artix7-100t", "a7-100t": "artix7-100t"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class GpuSpec:
    """A GPU for the roofline-plus-overhead model (dense tensor-core peaks, no sparsity)."""

    name: str
    fp16_tflops: float
    int8_tops: float
    bandwidth_gbps: float        # GB/s HBM/GDDR
    memory_gb: float
    tdp_w: float
    idle_w: float
    source: str


GPUS = {g.name: g for g in (
    GpuSpec(name="a100-40gb", fp16_tflops=312, int8_tops=624, bandwidth_gbps=1555,
            memory_gb=40, tdp_w=400, idle_w=55,
            source="NVIDIA A100 Tensor Core GPU data sheet (SXM4 40 GB): 312 TFLOPS FP16, 624 "
                   "TOPS INT8 (dense), 1,555 GB/s HBM2, 400 W TDP; idle power approximate"),
    GpuSpec(name="a100-80gb", fp16_tflops=312, int8_tops=624, bandwidth_gbps=2039,
            memory_gb=80, tdp_w=400, idle_w=60,
            source="NVIDIA A100 data sheet (SXM4 80 GB): 312 TFLOPS FP16, 624 TOPS INT8 "
                   "(dense), 2,039 GB/s HBM2e, 400 W; idle power approximate"),
    GpuSpec(name="h100-sxm", fp16_tflops=989, int8_tops=1979, bandwidth_gbps=3350,
            memory_gb=80, tdp_w=700, idle_w=70,
            source="NVIDIA H100 Tensor Core GPU data sheet (SXM5): 989 TFLOPS FP16, 1,979 TOPS "
                   "INT8 (dense; half the sparse figures), 3.35 TB/s HBM3, 700 W; idle "
                   "approximate"),
    GpuSpec(name="rtx-4090", fp16_tflops=165.2, int8_tops=660.6, bandwidth_gbps=1008,
            memory_gb=24, tdp_w=450, idle_w=25,
            source="NVIDIA Ada Lovelace architecture whitepaper (RTX 4090): 165.2 TFLOPS FP16 "
                   "with FP32 accumulate, 660.6 TOPS INT8 (dense), 1,008 GB/s GDDR6X, 450 W; "
                   "idle approximate"),
)}

_GPU_ALIASES = {"a100": "a100-40gb", "h100": "h100-sxm", "4090": "rtx-4090",
                "rtx4090": "rtx-4090"}


def fpga_names():
    return sorted(FPGAS)


def gpu_names():
    return sorted(GPUS)


def get_fpga(name):
    """The FPGA called ``name`` (or an alias such as its part number)."""
    if isinstance(name, FpgaSpec):
        return name
    key = _FPGA_ALIASES.get(name.lower(), name.lower())
    if key not in FPGAS:
        raise unknown("device", name, FPGAS)
    return FPGAS[key]


def get_gpu(name):
    """The GPU called ``name``."""
    if isinstance(name, GpuSpec):
        return name
    key = _GPU_ALIASES.get(name.lower(), name.lower())
    if key not in GPUS:
        raise unknown("gpu", name, GPUS)
    return GPUS[key]
