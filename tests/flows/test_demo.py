"""The README's main job, on its quick setting (Amaranth's simulator, a smaller problem)."""

from __future__ import annotations

import re

from llmloom.flows.cli import main


def test_quick_demo_is_bit_exact_and_predicted(capsys):
    """Through the command, as a person runs it: one run checks the command and the demo."""
    assert main(["demo", "--blocks", "--quick", "--sim", "amaranth"]) == 0
    text = capsys.readouterr().out
    assert "utilization" in text
    assert "bit-exact against the golden model on every array" in text
    rows = [line.split() for line in text.splitlines() if line.strip().startswith(("4×4", "8×8"))]
    assert len(rows) == 2
    for row in rows:
        assert row[1] == row[2]          # measured cycles == predicted cycles
        assert row[5] == "yes"
    # the block on both engines: bit-exact, close to float
    engines = [line.split() for line in text.splitlines()
               if line.strip().startswith(("gemm ", "gemv "))]
    assert [e[0] for e in engines] == ["gemm", "gemv"]
    for e in engines:
        assert e[2] == "yes" and float(e[3]) >= 0.99
    # every tensor (the prefill, then each decode step) measured == predicted on both
    tensors = [line.split() for line in text.splitlines()
               if re.match(r"\s*(prefill|decode \d+)\s", line)]
    assert [t[0] for t in tensors] == ["prefill", "decode", "decode"]
    for t in tensors:
        row = t[1:] if t[0] == "prefill" else t[2:]      # "decode 1" is two words
        assert row[1] == row[2] and row[5] == row[6]
        assert row[4].endswith("%") and row[8].endswith("%")
    gain = float(text.split("decode on the GEMV: ")[1].split("×")[0])
    assert gain > 1
    assert "ms/token" in text

