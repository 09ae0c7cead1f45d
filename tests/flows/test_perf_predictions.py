"""The CLI's use of perf's predictions: a design perf does not time (its UntimedError) gives
``None`` and the reason; any other exception is a bug and surfaces."""

from __future__ import annotations

import pytest

from llmloom.flows.model_cli import layer_cycles
from llmloom.hw.layers.config import LayerConfig
from llmloom.perf.errors import UntimedError


def test_layer_cycles_times_or_says_why(monkeypatch):
    import llmloom.perf.cycles as cycles
    cfg = LayerConfig(arch="llama")
    got, why = layer_cycles(cfg, (4, 1))
    assert why is None and got == cycles.layer_timing(cfg, (4, 1)).tensor_cycles

    def untimed(*args):
        raise UntimedError("lanes=3 is not timed; allowed: 4")

    monkeypatch.setattr(cycles, "layer_timing", untimed)
    assert layer_cycles(cfg, (4, 1)) == \
        (None, "perf cannot time the llama layer yet (UntimedError: lanes=3 is not timed; "
               "allowed: 4)")


def test_a_bad_call_to_layer_cycles_surfaces():
    cfg = LayerConfig(arch="llama")
    with pytest.raises(ValueError, match="more than seq"):
        layer_cycles(cfg, (cfg.seq, 1))
