"""The emitted Verilog passes ``verilator --lint-only -Wall`` except for warnings we have a
reason to accept, each stated here."""

from __future__ import annotations

import re
import subprocess

import pytest

from llmloom.hw.emit import emit_verilog
from llmloom.sim.harness import HARNESSES, load_harnesses
from llmloom.sim.tools import require, tool_env

load_harnesses()

# Why each accepted warning is not ours to fix:
ACCEPTED = {
    # Amaranth's arithmetic is defined on implicitly extended/truncated operands; Yosys writes
    # them without explicit casts, which is correct Verilog semantics.
    "WIDTHEXPAND", "WIDTHTRUNC",
    # Yosys keeps intermediate wires and the unused bits of ports (e.g. the padding lanes).
    "UNUSEDSIGNAL",
    # Yosys gives combinational process registers an initialiser (`reg x = 0;`).
    "PROCASSINIT",
    # One module per file is a convention for hand-written code, not generated netlists.
    "DECLFILENAME",
}


# Every block at its defaults, plus configs that elaborate different hardware.
CASES = [(name, {}) for name in sorted(HARNESSES)] + [
    ("gemm", {"dsp_packing": True}),      # packed PEs: two products per multiplier
    ("gemm", {"w_width": 4, "weight_groups": True}),    # W4 codes, group tables, scaling
    ("gemm", {"w_width": 4, "weight_groups": True, "dsp_packing": True}),   # two codes a DSP
    ("requant", {"row_exponent": True, "out_width": 16, "length": 13, "acc_scale": 1e-4,
                 "bias": list(range(13))}),  # a row exponent: barrel shifts, two inputs
]


@pytest.mark.parametrize("name, values", CASES,
                         ids=lambda v: v if isinstance(v, str) else
                         "-".join(f"{k}={v}" for k, v in v.items()) or "default")
def test_verilator_lint(name, values, tmp_path):
    harness = HARNESSES[name]
    _lint(harness.component(harness.config_cls(**values)), name, tmp_path)


@pytest.mark.parametrize("values", [{}, {"unaligned": False, "data_width": 512}],
                         ids=["default", "aligned-512"])
def test_verilator_lint_axi_reader(values, tmp_path):
    """The AXI read master (no stream harness: its bench has a bus slave)."""
    from llmloom.hw.blocks.axi_reader import AxiReader, AxiReaderConfig
    _lint(AxiReader(AxiReaderConfig(**values)), "axi_reader", tmp_path)


def _lint(component, name, tmp_path):
    try:
        verilator = require("verilator")
    except Exception as exc:  # noqa: BLE001 - skip where not installed
        pytest.skip(str(exc))
    path = tmp_path / f"{name}.v"
    path.write_text(emit_verilog(component, name=name))
    proc = subprocess.run([verilator, "--lint-only", "-Wall", "--top-module", name, path.name],
                          cwd=tmp_path, env=tool_env(), capture_output=True, text=True)
    kinds = set(re.findall(r"%(?:Warning|Error)-([A-Z0-9_]+)", proc.stderr))
    errors = [e for e in re.findall(r"%Error(?!-)[^\n]*", proc.stderr)
              if "Exiting due to" not in e]
    assert not errors, errors
    assert kinds <= ACCEPTED, f"new lint findings: {sorted(kinds - ACCEPTED)}\n{proc.stderr}"
