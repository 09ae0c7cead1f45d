"""The Verilog a synthesis run reads: the design's own (:func:`design_verilog`) and the
measurement wrapper around it (:func:`wrapper_verilog`).

Place and route needs pins, and a block's ports (hundreds of bits) outnumber a small package's
pins (39 on the iCE40UP5K SG48). The block is therefore placed inside a *measurement wrapper*:
every input bit comes from a flip-flop of a serial-in shift register, every output bit is
captured by a flip-flop of a loadable shift register, so the wrapper needs five pins (``clk``,
``rst``, ``si``, ``ld``, ``so``) and every timing path of the block starts and ends at a
flip-flop, as it would in a real design. The block keeps its own hierarchy
(``keep_hierarchy``, :func:`keep_hierarchy`), so no logic moves across its boundary and the
LUT/FF/DSP/BRAM reported are the block's own cells. The wrapper adds at most one LUT level after
an output, none before an input.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["WRAPPER", "design_verilog", "module_names", "verilog_ports", "wrapper_verilog",
           "reference", "keep_hierarchy"]

#: The measurement wrapper's module name.
WRAPPER = "llmloom_wrap"

_NAME = r"(?:\\\S+|(?!(?:input|output|inout|wire|reg|logic|signed)\b)[A-Za-z_]\w*)"
_PORT_RE = re.compile(
    r"\b(input|output|inout)\s+(?:wire\s+|reg\s+|logic\s+)?(?:signed\s+)?"
    rf"(?:\[\s*(\d+)\s*:\s*(\d+)\s*\]\s*)?({_NAME}(?:\s*,\s*{_NAME})*)")


def module_names(text):
    """The names of the modules Verilog ``text`` defines, in order."""
    return re.findall(r"^\s*module\s+(\\\S+|[A-Za-z_][\w$]*)", text, flags=re.M)


def verilog_ports(text, top):
    """``[(direction, width, name)]`` of module ``top`` in Verilog ``text`` (ANSI or
    non-ANSI declarations; packed ranges ``[msb:lsb]``)."""
    start = re.search(rf"^\s*module\s+{re.escape(top)}\b", text, flags=re.M)
    if start is None:
        raise ValueError(f"module {top!r} not found in the Verilog; modules: "
                         f"{', '.join(module_names(text)) or 'none'}")
    end = text.find("endmodule", start.end())
    body = text[start.start():end if end >= 0 else len(text)]
    ports, seen = [], set()
    for direction, msb, lsb, names in _PORT_RE.findall(body):
        width = abs(int(msb) - int(lsb)) + 1 if msb else 1
        for name in re.split(r"\s*,\s*", names.strip()):
            if name and name not in seen:
                seen.add(name)
                ports.append((direction, width, name))
    if any(d == "inout" for d, _, _ in ports):
        raise ValueError(f"module {top!r} has inout ports; synthesis of a block needs "
                         "inputs and outputs only")
    return ports


def wrapper_verilog(ports, top, wrapper=WRAPPER):
    """The measurement wrapper (see the module docstring) around module ``top``."""
    ins = [(w, n) for d, w, n in ports if d == "input" and n not in ("clk", "rst")]
    outs = [(w, n) for d, w, n in ports if d == "output"]
    n_in = max(1, sum(w for w, _ in ins))
    n_out = max(1, sum(w for w, _ in outs))
    conns, pos = [], 0
    names = {n for _, _, n in ports}
    for extra in ("clk", "rst"):
        if extra in names:
            conns.append(f".{extra}({extra})")
    for w, n in ins:
        conns.append(f".{reference(n)}(in_sr[{pos + w - 1}:{pos}])")
        pos += w
    pos = 0
    for w, n in outs:
        conns.append(f".{reference(n)}(out_w[{pos + w - 1}:{pos}])")
        pos += w
    shift_in = f"{{in_sr[{n_in - 2}:0], si}}" if n_in > 1 else "si"
    shift_out = f"{{out_sr[{n_out - 2}:0], 1'b0}}" if n_out > 1 else "1'b0"
    sep = ",\n    "
    return (
        "// llmloom measurement wrapper: inputs from a shift register, outputs captured into one\n"
        f"module {wrapper}(input clk, input rst, input si, input ld, output so);\n"
        f"  reg [{n_in - 1}:0] in_sr;\n"
        f"  always @(posedge clk) in_sr <= {shift_in};\n"
        f"  wire [{n_out - 1}:0] out_w;\n"
        f"  reg [{n_out - 1}:0] out_sr;\n"
        f"  always @(posedge clk) out_sr <= ld ? out_w : {shift_out};\n"
        f"  assign so = out_sr[{n_out - 1}];\n"
        f"  {reference(top)} core(\n    {sep.join(conns)}\n  );\n"
        "endmodule\n")


def reference(name):
    """A Verilog identifier as written where it is used (a named port connection, an
    instance's module, a Yosys command): an escaped one keeps its backslash and ends in a
    space."""
    return name + " " if name.startswith("\\") else name


def keep_hierarchy(top):
    """The Yosys command that keeps module ``top`` whole inside the wrapper."""
    return f"setattr -mod -set keep_hierarchy 1 {reference(top)}"


def design_verilog(design, top, family=None):
    """``(Verilog text, top module)`` of ``design``: an Amaranth component (emitted with a
    :class:`~llmloom.hw.emit.FamilyHint` of ``family`` as module ``top``, default ``top``),
    Verilog text (top ``top``, else ``top`` if it defines one, else its first module) or the
    path of a Verilog file."""
    if isinstance(design, Path):
        return design.read_text(), top or "top"
    if isinstance(design, str):
        if top is None:
            mods = module_names(design)
            if not mods:
                raise ValueError("no module found in the Verilog text")
            top = "top" if "top" in mods else mods[0]
        return design, top
    from ..hw.emit import FamilyHint, emit_verilog
    platform = FamilyHint(family) if family else None
    return emit_verilog(design, name=top or "top", platform=platform), top or "top"
