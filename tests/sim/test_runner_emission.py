"""One design's Verilog is emitted once, whichever HDL simulators run it: the runner keeps the
emission by component and family, and gives each simulator its own text from it (Icarus's
re-fired initialisers), so each simulator's build stays keyed by its own text."""

from __future__ import annotations

import numpy as np

from llmloom.hw.blocks.activation import GeluConfig
from llmloom.hw.emit import split_memory_init
from llmloom.sim import runner
from llmloom.sim.harness import get_harness


def _counting(monkeypatch):
    emitted = []
    real = runner.emit_verilog

    def emit(component, **kwargs):
        emitted.append(component)
        return real(component, **kwargs)

    monkeypatch.setattr(runner, "emit_verilog", emit)
    monkeypatch.setattr(runner, "_EMITTED", type(runner._EMITTED)())
    return emitted


def test_one_emission_serves_both_simulators(monkeypatch):
    """A GELU (a table in memory, time-zero initialisers): each simulator's text and images
    equal those of its own emission, from one emission."""
    h, cfg = get_harness("gelu"), GeluConfig(length=8, lanes=4, x_scale=1 / 32)
    comp = h.component(cfg)
    own = {sim: split_memory_init(runner.verilog_for_sim(comp, sim))
           for sim in ("icarus", "verilator")}
    assert own["icarus"][0] != own["verilator"][0]          # Icarus's text is its own
    emitted = _counting(monkeypatch)
    for sim in ("icarus", "verilator", "icarus"):
        text, images = runner._split_verilog(comp, sim, None)
        assert text == own[sim][0]
        assert [(i.file, i.text()) for i in images] == \
            [(i.file, i.text()) for i in own[sim][1]]
    assert emitted == [comp]
    runner._split_verilog(h.component(cfg), "verilator", None)    # another design object
    assert len(emitted) == 2


def test_a_design_run_on_icarus_then_verilator_is_emitted_once(icarus_sim, verilator_sim,
                                                               monkeypatch, rng):
    """run_block with one component on both simulators: one emission, the same outputs."""
    h, cfg = get_harness("gelu"), GeluConfig(length=8, lanes=4, x_scale=3 / 64)
    comp = h.component(cfg)
    x = rng.integers(-128, 128, (3, 8)).astype(np.int8)
    emitted = _counting(monkeypatch)
    want = h.golden(cfg, h.prepare(cfg, {"x": x}))["y"]
    for sim in (icarus_sim, verilator_sim):
        res = runner.run_block(h, cfg, {"x": x}, sim=sim, component=comp)
        np.testing.assert_array_equal(res.outputs["y"], want)
    assert emitted == [comp]
