"""Simulation models of the vendor primitives that blocks use on some device families.

A block elaborated with a :class:`~llmloom.hw.emit.FamilyHint` may instantiate a primitive
(``hw/blocks/gemm.py``: the ECP5 MULT18X18D with its own registers) that Amaranth's simulator
cannot run and Yosys ships no model of. The models here cover the modes the blocks use, from
the ECP5 sysDSP usage guide (FPGA-TN-02205): registers on ``CLK0``/``CE0``/``RST0`` where a
``REG_*_CLK`` parameter names ``CLK0``, synchronous reset taking precedence over the clock
enable, ``SIGNEDA``/``SIGNEDB`` choosing two's complement operands. Icarus and Verilator
simulate a family's RTL with them (``run_block(..., family=...)``); a model that disagreed with
the silicon would go unnoticed here, so they stay small and follow the guide's tables.
"""

from __future__ import annotations

__all__ = ["FAMILY_MODELS", "family_sources"]


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
        "  always @(posedge CLK0) begin",
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
