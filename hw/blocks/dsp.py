"""The hard multiplier as the GEMM uses it: vendor primitives and the DSP packing arithmetic.

* :func:`operand_product_registers`: a product registered on both sides (operands, product),
  portable or, where the device catalogue's rule says the product sits in one hard multiplier
  with its own registers (``hw.devices.multiplier_registers``, which ``perf``'s resource model
  reads as well), the ECP5 MULT18X18D (:func:`mult18x18d`).
* The packing of two products into one multiplier, ``a·(w_hi·2^PACK_SHIFT + w_lo)``
  (:func:`pack_weight_pair`, :func:`packed_operand`, :func:`unpack_products`): where it saves a
  DSP is the catalogue's rule too (``hw.devices.products_per_dsp``).
"""

from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Instance, ResetSignal, Signal, signed

from .. import devices

__all__ = ["ECP5_MULT_WIDTH", "mult18x18d", "operand_product_registers", "PACK_SHIFT",
           "pack_weight_pair", "packed_operand", "unpack_products"]

#: Operand width of the ECP5 sysDSP multiplier (MULT18X18D), from the device catalogue.
ECP5_MULT_WIDTH = devices.FAMILIES["ecp5"].mult.a

#: Where the high weight sits in a packed multiplier operand (the catalogue's).
PACK_SHIFT = devices.PACK_SHIFT


def operand_product_registers(m, en, a, w, operand=None, platform=None):
    """``a·w`` two enabled steps after its operands (operand registers, then the product's),
    as a signed value. ``operand`` makes the multiplier's weight operand from the registered
    ``w`` (wiring only: the packed form).

    Portable form: the operand registers copy ``a``/``w`` as a PE's pass-through registers
    do; they have no reset, which keeps Yosys from merging them with those (a merged copy would
    serve the neighbour too, and could not sit by the multiplier). What they hold after a reset
    is flushed before any result is read: the next tile's flag restarts the accumulator.

    On ECP5 (``platform.family == "ecp5"``) the operand and product registers are the
    MULT18X18D's own input and output registers, which Yosys does not infer: the multiplier's
    delay then stays inside the hard block, between registers, wherever the placer puts it.
    """
    family = getattr(platform, "family", None)
    if devices.multiplier_registers(family, len(a), len(w), packed=operand is not None):
        return mult18x18d(m, en, a, w)
    a_m = Signal.like(a, name="a_mul", reset_less=True)
    w_m = Signal.like(w, name="w_mul", reset_less=True)
    w_op = w_m if operand is None else operand(w_m)
    product = Signal(signed(len(a_m) + len(w_op)), name="product0")
    with m.If(en):
        m.d.sync += [a_m.eq(a), w_m.eq(w), product.eq(a_m * w_op)]
    return product


def mult18x18d(m, en, a, w, name="mult"):
    """A MULT18X18D with input and output registers (clock enable ``en``, synchronous reset
    from the domain's, none in a reset-less domain such as a board's: what they hold is
    flushed like the portable form's operand registers), added to ``m`` as ``name``:
    ``a·w`` two enabled steps after its operands, as the portable form's ``product0``."""
    a_ext = Signal(signed(ECP5_MULT_WIDTH), name=f"{name}_a")
    w_ext = Signal(signed(ECP5_MULT_WIDTH), name=f"{name}_b")
    p = Signal(signed(2 * ECP5_MULT_WIDTH), name=f"{name}_p")
    m.d.comb += [a_ext.eq(a), w_ext.eq(w)]
    ports = {f"i_A{k}": a_ext[k] for k in range(ECP5_MULT_WIDTH)}
    ports |= {f"i_B{k}": w_ext[k] for k in range(ECP5_MULT_WIDTH)}
    ports |= {f"i_C{k}": 0 for k in range(ECP5_MULT_WIDTH)}
    ports |= {f"o_P{k}": p[k] for k in range(2 * ECP5_MULT_WIDTH)}
    regs = {}
    for reg, clk in (("INPUTA", "CLK0"), ("INPUTB", "CLK0"), ("PIPELINE", "NONE"),
                     ("OUTPUT", "CLK0"), ("INPUTC", "NONE")):
        regs |= {f"p_REG_{reg}_CLK": clk, f"p_REG_{reg}_CE": "CE0", f"p_REG_{reg}_RST": "RST0"}
    # SOURCEB_MODE is one of B_SHIFT, C_SHIFT, B_C_DYNAMIC, HIGHSPEED (Lattice FPGA-TN-02205;
    # the enum prjtrellis fuzzed and ecppack packs, nothing else). B_SHIFT with SOURCEB low takes
    # the B operand from the B pins, as Yosys's own MULT18X18D mapping does; SOURCEB high would
    # take it from the neighbour's shift chain (SRIB).
    m.submodules[name] = Instance(
        "MULT18X18D", **regs,
        p_GSR="DISABLED", p_RESETMODE="SYNC", p_SOURCEB_MODE="B_SHIFT",
        p_MULT_BYPASS="DISABLED", p_CAS_MATCH_REG="FALSE",
        i_SIGNEDA=1, i_SIGNEDB=1, i_SOURCEA=0, i_SOURCEB=0,
        i_CLK0=ClockSignal(), i_CE0=en, i_RST0=ResetSignal(allow_reset_less=True),
        **ports)
    return p[:len(a) + len(w)].as_signed()


# ---- two products in one multiplier ------------------------------------------------------------
def pack_weight_pair(w_lo, w_hi):
    """The weights of two output columns as the packed multiplier takes them: ``w_lo`` and
    ``w_hi − sign(w_lo)`` side by side (``2·w_width + 1`` bits).

    Taking the low weight's sign off the high one here, once per column pair, is what lets each
    multiplier build its operand ``w_hi·2^PACK_SHIFT + w_lo`` by wiring alone
    (:func:`packed_operand`).
    """
    return Cat(w_lo, (w_hi - w_lo[-1])[:len(w_hi) + 1])


def packed_operand(pair, w_width):
    """The multiplier's weight operand ``w_hi·2^S + w_lo`` (``S = PACK_SHIFT``) of a pair from
    :func:`pack_weight_pair`: ``Cat(w_lo, sign(w_lo) × (S − w_width), w_hi − sign(w_lo))``,
    pure wiring."""
    w_lo = pair[:w_width]
    return Cat(w_lo, w_lo[-1].replicate(PACK_SHIFT - w_width), pair[w_width:]).as_signed()


def unpack_products(product, a_width, w_width):
    """``(a·w_lo, a·w_hi)`` from ``P = a·(w_hi·2^S + w_lo)``, exactly: ``a·w_lo`` is the low
    ``a_width + w_width`` bits of ``P`` read as signed (it is smaller than ``2^(S−1)``, so the
    bits above it up to ``S`` are its sign), and ``a·w_hi`` is ``P >> S`` plus that sign (the
    borrow the negative low product took from the high field)."""
    lo = product[:a_width + w_width].as_signed()
    hi = product[PACK_SHIFT:].as_signed() + product[PACK_SHIFT - 1]
    return lo, hi
