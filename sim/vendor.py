"""Simulation models of the vendor primitives that blocks use on some device families.

A block elaborated with a :class:`~llmloom.hw.emit.FamilyHint` may instantiate a primitive
(``hw/blocks/dsp.py``: the ECP5 MULT18X18D with its own registers) that Amaranth's simulator
cannot run and Yosys ships no model of. The models here cover the modes the blocks use, from
the ECP5 sysDSP usage guide (FPGA-TN-02205): registers on ``CLK0``/``CE0``/``RST0`` where a
``REG_*_CLK`` parameter names ``CLK0``, synchronous reset taking precedence over the clock
enable, ``SIGNEDA``/``SIGNEDB`` choosing two's complement operands, the operands from the ``A``
and ``B`` pins (``SOURCEB_MODE="B_SHIFT"`` with ``SOURCEA``/``SOURCEB`` low). Icarus and
Verilator simulate a family's RTL with them (``run_block(..., family=...)``); a model that
disagreed with the silicon would go unnoticed here, so they stay small and follow the guide's
tables. A parameter value outside the documented set, or a documented mode the model does not
implement, stops the simulation with ``$fatal`` at time 0 instead of being simulated as
something else (``SOURCEB_MODE="B_INPUT"`` once simulated fine here and then could not be packed
into a bitstream: ``tests/flows/test_build.py``).
"""

from __future__ import annotations

__all__ = ["FAMILY_MODELS", "family_sources"]


#: The ECP5 MULT18X18D's ``SOURCEB_MODE`` values (FPGA-TN-02205; the enum prjtrellis fuzzed,
#: ``fuzzers/ECP5/073-mult18_config``, and ``ecppack`` packs): with ``SOURCEB`` low, ``B_SHIFT``
#: takes the B operand from the B pins, ``C_SHIFT`` from the C pins.
SOURCEB_MODES = ("B_SHIFT", "C_SHIFT", "B_C_DYNAMIC", "HIGHSPEED")


def _mult18x18d():
    pins_in = ([f"A{k}" for k in range(18)] + [f"B{k}" for k in range(18)]
               + [f"C{k}" for k in range(18)]
               + ["SIGNEDA", "SIGNEDB", "SOURCEA", "SOURCEB", "CLK0", "CE0", "RST0"])
    pins_out = [f"P{k}" for k in range(36)]
    params = [f"REG_{r}_{x}" for r in ("INPUTA", "INPUTB", "INPUTC", "PIPELINE", "OUTPUT")
              for x in ("CLK", "CE", "RST")]
    defaults = {p: ('"NONE"' if p.endswith("_CLK") else '"CE0"' if p.endswith("_CE")
                    else '"RST0"') for p in params}
    defaults |= {"GSR": '"ENABLED"', "RESETMODE": '"SYNC"', "SOURCEB_MODE": '"B_SHIFT"',
                 "MULT_BYPASS": '"DISABLED"', "CAS_MATCH_REG": '"FALSE"'}

    def bus(prefix, n):
        return "{" + ", ".join(f"{prefix}{k}" for k in reversed(range(n))) + "}"

    def one_of(name, values):
        return " || ".join(f'{name} == "{v}"' for v in values)

    # (parameter, the values the ECP5 documents, the ones this model implements)
    checks = [(p, ("NONE", "CLK0", "CLK1", "CLK2", "CLK3"), ("NONE", "CLK0"))
              for p in params if p.endswith("_CLK")]
    checks += [(p, ("CE0", "CE1", "CE2", "CE3"), ("CE0",)) for p in params if p.endswith("_CE")]
    checks += [(p, ("RST0", "RST1", "RST2", "RST3"), ("RST0",))
               for p in params if p.endswith("_RST")]
    checks += [("GSR", ("ENABLED", "DISABLED"), ("ENABLED", "DISABLED")),
               ("RESETMODE", ("SYNC", "ASYNC"), ("SYNC",)),
               ("SOURCEB_MODE", SOURCEB_MODES, ("B_SHIFT",)),
               ("MULT_BYPASS", ("DISABLED", "ENABLED"), ("DISABLED",)),
               ("CAS_MATCH_REG", ("FALSE", "TRUE"), ("FALSE", "TRUE"))]
    check_lines = []
    for name, documented, modelled in checks:
        check_lines += [
            f"    if (!({one_of(name, documented)}))",
            f'      $fatal(1, "MULT18X18D: %s is not a documented {name} (one of '
            f'{", ".join(documented)})", {name});',
        ]
        if modelled != documented:
            check_lines += [
                f"    else if (!({one_of(name, modelled)}))",
                f'      $fatal(1, "MULT18X18D: {name}=%s is not modelled (only '
                f'{", ".join(modelled)})", {name});',
            ]

    lines = [
        "// llmloom simulation model of the ECP5 MULT18X18D (sim/vendor.py): the modes llmloom",
        "// uses. Not Lattice's model; see the module docstring of sim/vendor.py.",
        f"module MULT18X18D({', '.join(pins_in + pins_out)});",
        *(f"  parameter {k} = {v};" for k, v in defaults.items()),
        *(f"  input {p};" for p in pins_in),
        *(f"  output {p};" for p in pins_out),
        f"  wire [17:0] a = {bus('A', 18)};",
        f"  wire [17:0] b = {bus('B', 18)};",
        "  reg [17:0] a_r = 18'd0, b_r = 18'd0;",
        "  reg [35:0] pipe_r = 36'd0, out_r = 36'd0;",
        '  wire [17:0] a_m = (REG_INPUTA_CLK == "NONE") ? a : a_r;',
        '  wire [17:0] b_m = (REG_INPUTB_CLK == "NONE") ? b : b_r;',
        "  wire signed [18:0] a_x = {SIGNEDA & a_m[17], a_m};",
        "  wire signed [18:0] b_x = {SIGNEDB & b_m[17], b_m};",
        "  wire signed [37:0] prod_full = a_x * b_x;",
        "  wire [35:0] prod = prod_full[35:0];",
        '  wire [35:0] piped = (REG_PIPELINE_CLK == "NONE") ? prod : pipe_r;',
        '  wire [35:0] result = (REG_OUTPUT_CLK == "NONE") ? piped : out_r;',
        "  initial begin",
        *check_lines,
        "  end",
        "  always @(posedge CLK0) begin",
        "    // the shift-chain operands (SRIA/SRIB) are not modelled",
        "    if (SOURCEA !== 1'b0 || SOURCEB !== 1'b0)",
        '      $fatal(1, "MULT18X18D: SOURCEA/SOURCEB high (shift chain) is not modelled");',
        "    if (RST0) begin a_r <= 18'd0; b_r <= 18'd0; pipe_r <= 36'd0; out_r <= 36'd0; end",
        "    else if (CE0) begin a_r <= a; b_r <= b; pipe_r <= prod; out_r <= piped; end",
        "  end",
        f"  assign {bus('P', 36)} = result;",
        "endmodule",
    ]
    return "\n".join(lines) + "\n"


#: family → {file name: Verilog text} of the models its primitives need
FAMILY_MODELS = {"ecp5": {"ecp5_mult18x18d.v": _mult18x18d()}}


def family_sources(family):
    """``{file name: Verilog}`` of the simulation models for ``family`` (a one-line
    ``ValueError`` naming the families that have them otherwise)."""
    if family not in FAMILY_MODELS:
        raise ValueError(f"no simulation models for family {family!r}; families with "
                         f"models: {', '.join(FAMILY_MODELS)}")
    return FAMILY_MODELS[family]
