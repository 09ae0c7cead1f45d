"""Resource estimates of our ``hw`` blocks on the open-synthesis targets, in seconds and without
synthesis: LUT, FF, DSP and BRAM of one block configuration on an iCE40 UltraPlus, an ECP5 or
(as Yosys maps it) an UltraScale+.

:func:`estimate_block` takes a block name (the ``sim`` harness names: ``gemm``, ``gemv``,
``requant``, ``residual``, ``gelu``, ``silu``, ``softmax``, ``layernorm``, ``rmsnorm``,
``dynquant``, ``kvcache``, ``attention``, ``gpt2-block``, ``bert-layer``, and ``rope``,
``mul``, ``llama-block`` whose own logic is not fitted yet), its ``hw`` config
and a family (``ice40``, ``ecp5``, ``xcup``, or an open-flow target name such as
``ecp5-85f``), and returns ``{"lut", "ff", "dsp", "bram"}`` in the units of the open flow's
``SynthResult`` (``llmloom.flows.synth``): LUT4s on iCE40 and ECP5 (an ECP5 carry cell counts two, a
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
  stored design agree. The calibrated numbers of requant, residual, mul and the norms are
  loaded from one-word memories (``hw.blocks.requant.constant_word``) at the config's widths,
  so their products are counted at those widths (``mult_width_value`` bits, whatever the
  calibrated value), as Yosys splits them: it folds the word's contents only after the
  arithmetic's widths are fixed.
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
  select for the GEMM; adder-tree and accumulator bits for the GEMV; for the requant and the
  residual the bits of their config-wide products and sums (the rounding by the loaded shift),
  and of the residual's skip alignment by row exponents (a barrel shifter: product bits ×
  log2(e_max + 1) levels) (:data:`LOGIC`). What the
  dynamic scheme's int16 streams and row exponents add to a block is a term of its own
  (``requant_wide``, ``layernorm_wide``, ...: lanes × the mux bits of the
  exponent's shifters, lanes × the extra bits), fitted to int16 designs with the block's own
  terms held, so that its int8 estimates are unchanged; widths other than 8 and 16 are
  refused with one line. The
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

The modules, by concern: :mod:`.mapping` (Yosys's multipliers and memory mapping),
:mod:`.logic` (the fitted coefficients, data in ``perf/data/resource_logic.json``),
:mod:`.blocks` (the leaf blocks' estimators), :mod:`.composites` (attention, layers, board
core); this package's own functions are the entry points.
"""

from __future__ import annotations

from ..errors import ConfigError
from .blocks import BLOCKS, gemm_parts
from .composites import estimate_hostlink_parts, fetched_memory_parts
from .logic import LOGIC, LogicBill
from .mapping import (
    FAMILIES,
    Bill,
    Family,
    MemoryMap,
    RamDef,
    const_multiplier_dsps,
    family_of,
    map_memory,
    multiplier_dsps,
    rom_width,
)

__all__ = ["FAMILIES", "Family", "RamDef", "family_of", "multiplier_dsps",
           "const_multiplier_dsps", "map_memory", "rom_width", "MemoryMap", "Bill",
           "LogicBill", "estimate_block", "estimate_parts", "BLOCKS", "LOGIC", "gemm_pe_cost",
           "gemm_group_cost",
           "unit_costs", "estimate_hostlink_parts", "estimate_hostlink",
           "estimate_fetched_memories"]


def _check(block, cfg):
    if block not in BLOCKS:
        raise ConfigError(f"no resource model for block {block!r}; allowed: "
                          f"{', '.join(sorted(BLOCKS))}")
    if block in ("gpt2-block", "bert-layer", "llama-block"):
        want = {"gpt2-block": "gpt2", "bert-layer": "bert", "llama-block": "llama"}[block]
        if cfg.arch != want:
            cfg = cfg.replace(arch=want)
    unmodelled = _unmodelled(cfg)
    if unmodelled:
        raise ConfigError(f"{block} with {unmodelled} has no resource model yet (the fits are "
                          "of int8 and int16 blocks); measure it with `llmloom synth`")
    return cfg


#: Fields of the block configs that widen a block, with the values the fitted designs cover
#: (int8, and the int16 of the dynamic scheme's residual stream).
_FITTED = {"out_width": (8, 16), "in_width": (8, 16), "x_width": (8, 16), "r_width": (8, 16)}


def _unmodelled(cfg):
    """``"field=value"`` of the first field of ``cfg`` outside the fitted designs, else
    ``""``."""
    for name, fitted in _FITTED.items():
        value = getattr(cfg, name, fitted[0])
        if value not in fitted:
            return f"{name}={value}"
    return ""


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
    from ...hw.blocks.activation import GeluConfig
    from ...hw.blocks.norm import LayerNormConfig
    from ...hw.blocks.softmax import SoftmaxConfig
    out = {}
    for unit, block, cls in (("softmax", "softmax", SoftmaxConfig),
                             ("norm", "layernorm", LayerNormConfig), ("act", "gelu", GeluConfig)):
        one, two = (estimate_block(block, cls(length=length, lanes=n), family) for n in (1, 2))
        lane = {k: two[k] - one[k] for k in ("dsp", "lut", "ff")}
        out[unit] = {"lane": lane, "fixed": {k: max(0, one[k] - lane[k]) for k in lane}}
    return out


def gemm_pe_cost(family="xcup", a_width=8):
    """``{"lut", "ff"}`` of one more processing element of the GEMM on ``family``, of
    ``a_width``-bit activations (``GemmConfig.a_width``) and int8 weights: the slope of the
    fitted logic from an 8×8 to a 9×9 array (k = 64), i.e. the PE with its share of the skews
    and the readout. The whole-design model's per-PE cost (``perf.spatial``) is this on
    ``xcup``, at each kernel's input width (``perf.design.gemm_a_widths``)."""
    from ...hw.blocks.gemm_config import GemmConfig
    fam = family_of(family)
    small, big = (gemm_parts(GemmConfig(rows=n, cols=n, a_width=a_width), fam)["logic"]
                  for n in (8, 9))
    return {k: round((getattr(big, k) - getattr(small, k)) / (81 - 64), 1)
            for k in ("lut", "ff")}


def gemm_group_cost(family="xcup", w_width=4, a_width=8):
    """``{"dsp", "lut", "ff"}`` per output column that the grouped GEMM (``weight_groups``:
    ``w_width``-bit codes into the multipliers, each group's tables applied after the array)
    adds to the int8 GEMM of the same size: its scaling multipliers, their adders, registers
    and the small group memories, net of the PEs' narrower accumulators (W4); the difference
    of the two 8×8 arrays (k = 64) over 8 columns. The whole-design model prices grouped
    kernels (W4A8, W8A8) with it on ``xcup`` (``perf.spatial``); its PE multipliers count as
    the int8 one's (one product, or two packed, per DSP: ``hw.devices.packing_table``).
    ``a_width``: the activations' bits (``GemmConfig.a_width``), which widen the sums."""
    from ...hw.blocks.gemm_config import GemmConfig
    fam = family_of(family)
    plain = GemmConfig(rows=8, cols=8, k=64, a_width=a_width)
    grouped = plain.replace(w_width=w_width, weight_groups=True)
    plain_bill, grouped_bill = (sum(gemm_parts(c, fam).values(), Bill())
                                for c in (plain, grouped))
    return {k: round((getattr(grouped_bill, k) - getattr(plain_bill, k)) / 8, 1)
            for k in ("dsp", "lut", "ff")}


def estimate_fetched_memories(cfg, family, banks=None):
    """LUT, FF, DSP and BRAM of the memories a fetched layer of ``cfg`` loads at run time
    in its linear stages (:func:`~.composites.fetched_memory_parts`), ``banks`` of them
    (:func:`~llmloom.hw.layers.fetched.layer_banks`: ``None`` is the layer's default; a bad
    value is a :class:`ConfigError`)."""
    from ...hw.layers.fetched import layer_banks
    parts = fetched_memory_parts(cfg, family_of(family), layer_banks(cfg, banks))
    return sum(parts.values(), Bill()).rounded()


def estimate_hostlink(cfg, max_rows, family):
    """LUT, FF, DSP and BRAM of the board core (:func:`estimate_hostlink_parts`)."""
    return sum(estimate_hostlink_parts(cfg, max_rows, family).values(), Bill()).rounded()
