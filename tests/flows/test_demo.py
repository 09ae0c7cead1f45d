"""The README's main job, on its quick setting (Amaranth's simulator, a smaller problem)."""

from __future__ import annotations

import io

from llmloom.flows.cli import main
from llmloom.flows.demo import run_demo


def test_quick_demo_is_bit_exact_and_predicted():
    out = io.StringIO()
    assert run_demo(sim="amaranth", quick=True, out=out) == 0
    text = out.getvalue()
    assert "bit-exact against the golden model on every array" in text
    rows = [line.split() for line in text.splitlines() if line.strip().startswith(("4×4", "8×8"))]
    assert len(rows) == 2
    for row in rows:
        assert row[1] == row[2]          # measured cycles == predicted cycles
        assert row[5] == "yes"
    assert "bit-exact with the layer golden: yes" in text
    cosine = float(text.split("cosine vs float64 ")[1].split()[0])
    assert cosine >= 0.99
    assert "ms/token" in text


def test_demo_command(capsys):
    assert main(["demo", "--quick", "--sim", "amaranth"]) == 0
    assert "utilization" in capsys.readouterr().out
