"""DSP packing (``GemmConfig.dsp_packing``): two MACs per multiplier, results bit-identical to
the unpacked GEMM.

The arithmetic of the packed multiplier is checked for every activation and weight pair (NumPy,
a few seconds); the RTL PE over the edge values and at random on Amaranth's simulator; the whole
GEMM under stalls against the same golden model and the same cycle count as without packing.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from llmloom.hw.blocks.dsp import pack_weight_pair
from llmloom.hw.blocks.gemm import GemmConfig
from llmloom.hw.blocks.pe import PackedProcessingElement
from llmloom.hw.config import ConfigError
from llmloom.perf.cycles import gemm_cycles
from llmloom.sim.blocks.gemm import GemmHarness
from llmloom.sim.golden.gemm import gemm_bitexact, packed_products
from llmloom.sim.runner import run_block
from llmloom.sim.streams import Stalls

H = GemmHarness()
A_WIDTHS = (8, 9, 10, 11)                       # GemmConfig.a_width's choices


def _operand_widths(allowed):
    """(a_width, multiplier weight operand bits) of every packed GEMM the config allows
    (``allowed``) or refuses: signed int8 and int4 weights, W4's grouped codes (5 bits)."""
    out = set()
    for a, (w, groups) in itertools.product(A_WIDTHS, [(8, False), (4, False), (4, True)]):
        try:
            cfg = GemmConfig(cols=2, k=64, a_width=a, w_width=w, weight_groups=groups,
                             dsp_packing=True)
        except ConfigError:
            if not allowed:
                out.add((a, w + groups))
            continue
        if allowed:
            out.add((a, cfg.mul_w_width))
    return sorted(out)


WIDTHS = _operand_widths(True)


def _range(bits):
    return -(1 << (bits - 1)), (1 << (bits - 1))


@pytest.mark.parametrize("a_width, w_width", WIDTHS)
def test_packed_arithmetic_is_exact_for_every_input(a_width, w_width):
    """All a × w_lo × w_hi (67M triples for 10-bit a and 8-bit w): both products exact."""
    lo, hi = _range(w_width)
    w_lo, w_hi = np.meshgrid(np.arange(lo, hi), np.arange(lo, hi), indexing="ij")
    a_lo, a_hi = _range(a_width)
    chunk = 16
    for start in range(a_lo, a_hi, chunk):
        a = np.arange(start, min(start + chunk, a_hi))[:, None, None]
        got_lo, got_hi = packed_products(a, w_lo, w_hi, a_width, w_width)
        assert np.array_equal(got_lo, a * w_lo), f"low product wrong for a in {start}.."
        assert np.array_equal(got_hi, a * w_hi), f"high product wrong for a in {start}.."


def test_packing_is_refused_where_the_arithmetic_is_wrong():
    """Every width pair the config refuses (11-bit activations with 8-bit weights: P·V's)
    unpacks some product wrongly, the low field spilling into the high one; the allowed ones
    are exact (above), with 10-bit activations at 8-bit weights the widest."""
    refused = _operand_widths(False)
    assert (11, 8) in refused and (10, 8) in WIDTHS
    for a_width, w_width in refused:
        a, w_lo, w_hi = 1, 0, 1            # the high product's bit read as the low one's sign
        assert packed_products(a, w_lo, w_hi, a_width, w_width) != (a * w_lo, a * w_hi)


def test_sign_correction_is_needed():
    """Without the low product's sign added back, the high field is off by one: the check
    above can fail."""
    s = GemmConfig.PACK_SHIFT
    a, w_lo, w_hi = -128, 127, -128
    w = w_hi * (1 << s) + w_lo
    assert (a * w) >> s != a * w_hi
    assert packed_products(a, w_lo, w_hi)[1] == a * w_hi


def _edge_values(bits):
    lo, hi = _range(bits)
    return sorted({lo, lo + 1, -1, 0, 1, hi - 2, hi - 1})


@pytest.mark.parametrize("a_width, w_width", [(8, 8), (9, 8), (10, 8), (8, 4)])
def test_packed_pe_rtl(a_width, w_width, rng):
    """The RTL PE with a flag on every step (tiles of one product): each result pair is one
    packed multiplication, ``PE_STAGES + 2`` steps after its inputs; edge values, then
    random ones."""
    acc = a_width + w_width
    vectors = list(itertools.product(_edge_values(a_width), _edge_values(w_width),
                                     _edge_values(w_width)))
    a_lo, a_hi = _range(a_width)
    w_lo, w_hi = _range(w_width)
    n = 300
    vectors += list(zip(rng.integers(a_lo, a_hi, n).tolist(), rng.integers(w_lo, w_hi, n).tolist(),
                        rng.integers(w_lo, w_hi, n).tolist(), strict=True))

    m = Module()
    m.submodules.pe = pe = PackedProcessingElement(a_width, w_width, acc)
    w_in_lo = Signal(signed(w_width))
    w_in_hi = Signal(signed(w_width))
    packed = Signal(unsigned(2 * w_width + 1))
    m.d.comb += [packed.eq(pack_weight_pair(w_in_lo, w_in_hi)), pe.w_i.eq(packed)]
    got = []

    async def bench(ctx):
        ctx.set(pe.en, 1)
        ctx.set(pe.flag_i, 1)
        # the PE's stages, then the first step of the next tile moves the sum to `result`
        latency = GemmConfig.PE_STAGES + 2
        for t in range(len(vectors) + latency):
            if t < len(vectors):
                a, wl, wh = vectors[t]
                ctx.set(pe.a_i, a)
                ctx.set(w_in_lo, wl)
                ctx.set(w_in_hi, wh)
            await ctx.tick()
            if t >= latency - 1:
                got.append((ctx.get(pe.result_lo), ctx.get(pe.result_hi)))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    want = [(a * wl, a * wh) for a, wl, wh in vectors]
    assert got[:len(want)] == want


STALLS = ["none", "pattern", "random"]
# (M, K, N, rows, cols, lanes, a_width, w_width): remainders, K=1, partial pair in N, N < cols
SHAPES = [
    (5, 6, 7, 2, 4, 3, 8, 8),
    (1, 1, 1, 1, 2, 1, 8, 8),
    (9, 8, 3, 4, 2, 8, 8, 8),
    (13, 20, 9, 4, 4, 4, 8, 8),
    (7, 12, 9, 3, 6, 4, 9, 8),
    (6, 10, 5, 2, 4, 2, 8, 4),
    (7, 12, 9, 3, 6, 4, 10, 8),
    (6, 10, 5, 2, 4, 2, 10, 4),
]


def _tensors(rng, m, k, n, a_width, w_width):
    if a_width == 9:     # uint8 values on 9-bit signed lanes
        a = rng.integers(0, 256, (m, k)).astype(np.uint8)
    elif a_width == 10:  # a quant stage's int10 rows (LLaMA's narrow)
        a = rng.integers(-512, 512, (m, k)).astype(np.int16)
        a[0] = -512
    else:
        a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    lo, hi = _range(w_width)
    return a, rng.integers(lo, hi, (k, n), dtype=np.int8)


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "M{}K{}N{}_{}x{}_l{}_a{}w{}".format(*s))
def test_packed_gemm_equals_golden_and_unpacked_timing(shape, stall, rng):
    m, k, n, r, c, lanes, aw, ww = shape
    cfg = GemmConfig(rows=r, cols=c, k=k, n=n, lanes=lanes, a_width=aw, w_width=ww,
                     dsp_packing=True)
    a, w = _tensors(rng, m, k, n, aw, ww)
    seed = int(rng.integers(1 << 30))
    kw = dict(stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    result = run_block(H, cfg, {"a": a, "w": w}, sim="amaranth", **kw)
    np.testing.assert_array_equal(result.outputs["c"], gemm_bitexact(cfg, a, w))
    plain = run_block(H, cfg.replace(dsp_packing=False), {"a": a, "w": w}, sim="amaranth", **kw)
    assert result.cycles == plain.cycles
    if stall == "none":
        assert result.cycles == gemm_cycles(cfg, m)


@pytest.mark.parametrize("a_width", [8, 10])
@pytest.mark.parametrize("kind", ["all_min", "all_max", "mixed_signs", "zeros"])
def test_packed_gemm_extremes(kind, a_width, rng):
    """Sums of the largest products in both fields of every multiplier, with the low field's
    sign alternating (the borrow into the high field) and zeros; at 10-bit activations the
    low product reaches 2^16 (−512 · −128), the most the 18 bits below the high one hold."""
    m, k, n = 6, 24, 8
    cfg = GemmConfig(rows=3, cols=4, k=k, n=n, lanes=4, a_width=a_width, dsp_packing=True)
    a_lo, a_hi = _range(a_width)
    if kind == "all_min":
        a, w = np.full((m, k), a_lo), np.full((k, n), -128)
    elif kind == "all_max":
        a, w = np.full((m, k), a_hi - 1), np.full((k, n), 127)
    elif kind == "mixed_signs":
        a = np.where(np.indices((m, k)).sum(0) % 2, a_hi - 1, a_lo)
        w = np.where(np.indices((k, n)).sum(0) % 3, -128, 127)
    else:
        a, w = np.zeros((m, k)), rng.integers(-128, 128, (k, n))
    a, w = a.astype(np.int16 if a_width > 8 else np.int8), w.astype(np.int8)
    result = run_block(H, cfg, {"a": a, "w": w}, sim="amaranth",
                       stalls_in=Stalls("pattern"), stalls_out=Stalls("random", 7))
    np.testing.assert_array_equal(result.outputs["c"], gemm_bitexact(cfg, a, w))


def test_packing_config():
    cfg = GemmConfig(rows=8, cols=8, dsp_packing=True)
    assert cfg.multipliers == 32 and cfg.replace(dsp_packing=False).multipliers == 64
    assert cfg.peak_macs_per_cycle == 64
    with pytest.raises(ConfigError, match=r"^cols=5 is odd, but dsp_packing pairs output "
                                          r"columns; allowed: an even cols"):
        GemmConfig(cols=5, dsp_packing=True)
    # attention's P·V (11-bit probabilities) is never packed: its low products would spill
    with pytest.raises(ConfigError, match=r"^a_width=11 with dsp_packing: the low products "
                                          r"must stay within the 18 bits below the high ones; "
                                          r"allowed: a_width <= 10 with dsp_packing=true at "
                                          r"8-bit weight operands$"):
        GemmConfig(cols=4, a_width=11, dsp_packing=True)
    assert GemmConfig(rows=2, cols=4, a_width=10, dsp_packing=True).multipliers == 2 * 4 // 2
    with pytest.raises(ConfigError, match="dsp_packing=1 must be true or false"):
        GemmConfig(dsp_packing=1)
