"""One naming rule for every block's ports, checked by walking the signatures.

Data moves on ``amaranth.lib.stream`` ports. A block with one input and one output calls them
``i`` and ``o``; a block with several inputs names them by role (``act``, ``weight``, ``x``,
``r``...), and its outputs are ``o`` (or ``o_<role>`` when there are several).

Control and status travel on plain (non-stream) ports, named by role (``offset``, ``clear``,
``overflow``...): lower-case identifiers that are not stream names (``i``, ``o``, ``o_*``).
Every block still has at least one input and one output stream. A harness may wrap a block
whose plain inputs a stream testbench cannot drive (``ControlStreams``); the wrapped block is
checked instead.
"""

from __future__ import annotations

import re

import pytest
from amaranth.lib import stream, wiring

from llmloom.sim.harness import HARNESSES, load_harnesses

load_harnesses()

#: (block, config fields): configs with plain control ports or more stream ports, beyond each
#: block's default.
CONTROL_CONFIGS = [("softmax", {"causal": True, "runtime_offset": True}),
                   ("requant", {"row_exponent": True})]


def _check(name, comp):
    comp._MustUse__silence = True        # only its signature is inspected here
    inner = getattr(comp, "inner", None)
    if isinstance(inner, wiring.Component):
        # a testbench adapter (its control streams stand for the block's plain inputs)
        _check(name, inner)
        return
    ins, outs, plain = [], [], []
    for port, member in comp.signature.members.items():
        if not member.is_signature:
            plain.append(port)
            continue
        sig = member.signature
        assert isinstance(sig, stream.Signature), f"{name}.{port} is not a stream port"
        (ins if member.flow == wiring.In else outs).append(port)
    assert ins and outs, f"{name} needs at least one input and one output stream"
    if len(ins) == 1:
        assert ins == ["i"], f"{name}: a single input is called 'i', not {ins[0]!r}"
    else:
        assert "i" not in ins and all(re.fullmatch(r"[a-z][a-z0-9_]*", p) for p in ins), \
            f"{name}: several inputs are named by role: {ins}"
    if len(outs) == 1:
        assert outs == ["o"], f"{name}: a single output is called 'o', not {outs[0]!r}"
    else:
        assert all(re.fullmatch(r"o_[a-z0-9_]+", p) for p in outs), outs
    for port in plain:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", port) and port != "i" and port != "o" and \
            not port.startswith("o_"), f"{name}: control port {port!r} is not named by role"
    for port in ins + outs:
        payload = getattr(comp, port).payload.shape()
        assert {"data", "last", "end"} <= set(dict(payload).keys()), \
            f"{name}.{port} payload is not a row_layout"


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_block_ports_follow_the_naming_rule(name):
    harness = HARNESSES[name]
    _check(name, harness.component(harness.config_cls()))


@pytest.mark.parametrize("name, fields", CONTROL_CONFIGS, ids=lambda v: str(v))
def test_control_ports_follow_the_naming_rule(name, fields):
    harness = HARNESSES[name]
    _check(name, harness.component(harness.config_cls(**fields)))
