"""The README's main job (``llmloom demo``: SmolLM2 answers a chat prompt, one layer's RTL
checked at every step) on its quick setting, with a stand-in for the simulator: the flow,
the text, the checks and the report lines, in seconds, piped and in a terminal. The RTL of a
real SmolLM2 layer on Verilator runs in ``test_cli_generate.py``'s slow test and the demo
itself, typed in a terminal, in the stop's note."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest

from .test_cli_terminal import run_in_terminal

ROOT = Path(__file__).resolve().parents[2]


def install_standin(wrong=False, cycles_off=0):
    """Replace the simulator under ``RtlLayers`` (runs, and Verilator's sessions, of a layer
    with its weights baked in or of a fetched layer) by the bit-exact model with the
    predicted cycles (``wrong``: one output integer off; ``cycles_off``: each fetched run that
    many cycles longer). A fetched layer's images are told apart by their bytes, recorded as
    ``pack_fetched_layer`` packs them; its cycles are :func:`fetched_layer_runs`'s."""
    from llmloom.hw.layers import weights_image
    from llmloom.perf.cycles import fetched_layer_runs, layer_timing
    from llmloom.sim import runner
    from llmloom.sim.fetched import FetchedLayerHarness
    from llmloom.sim.golden.layers import RowScaled, layer_bitexact

    packed, pack = {}, weights_image.pack_fetched_layer

    def recorded(cfg, weights):
        image = pack(cfg, weights)
        packed[image] = (cfg, weights)
        return image

    weights_image.pack_fetched_layer = recorded

    def outputs_of(y):
        outputs = {"y_int": np.array(getattr(y, "values", y))}
        if isinstance(y, RowScaled):
            outputs["y_e"] = np.array(y.e)
        if wrong:
            outputs["y_int"][-1, 0] += 1
        return outputs

    def taken(component):
        """``component``, which the stand-in runs without elaborating it (as a cached build
        does: the runner keys it by its structure): no UnusedElaboratable warning."""
        for c in (component, getattr(component, "inner", None)):
            if c is not None:
                c._MustUse__silence = True
        return component

    def run_block(harness, cfg, tensors, *, component, **_):
        taken(component)
        x, sizes = tensors["x_int"], tensors["sizes"]
        if "x_e" in tensors:                    # row exponents on the residual stream
            x = RowScaled(x, tensors["x_e"])
        y = layer_bitexact(cfg, component.inner.weights, x)[0]
        cyc = layer_timing(cfg, tuple(sizes)).tensor_cycles
        return runner.RunResult(outputs=outputs_of(y), cycles=sum(cyc), sim="verilator",
                                wall_s=0.0, sim_cycles=sum(cyc), tensor_cycles=list(cyc))

    class FetchedSession:
        """A fetched layer's session: each command's layer's image looked up in the memory,
        its tensor through that layer's bit-exact model and cache."""
        closed = False

        def __init__(self, harness):
            self.harness, self.memory = harness, harness.memory.image
            self.latency = harness.memory.latency
            self.caches, self.sizes, self.runs = {}, [], []

        def run(self, tensors, **_):
            h, cfg = self.harness, self.harness.cfg
            (base, slot, nxt), = tensors["runs"]
            image = self.memory[base:base + weights_image.fetched_layer_layout(cfg)[-1].end]
            cfg_n, weights = packed[image]
            x = tensors["x_int"]
            if "x_e" in tensors:
                x = RowScaled(x, tensors["x_e"])
            mode = "decode" if slot in self.caches else "prefill"
            y, self.caches[slot] = layer_bitexact(cfg_n, weights, x, mode,
                                                  self.caches.get(slot))
            self.sizes.append(len(tensors["x_int"]))
            self.runs.append((base, slot, nxt))
            total = fetched_layer_runs(cfg, h.reader, self.latency, self.sizes, self.runs)[-1]
            mine = [s for s, r in zip(self.sizes, self.runs, strict=True) if r[1] == slot]
            compute = layer_timing(cfg_n, tuple(mine)).tensor_cycles[-1]
            beats = sum(-(-s.nbytes // h.reader.lanes)
                        for s in weights_image.fetched_layer_layout(cfg))
            return runner.RunResult(outputs=outputs_of(y), cycles=total + cycles_off,
                                    sim="verilator", wall_s=0.0, sim_cycles=total,
                                    tensor_cycles=[total + cycles_off, compute],
                                    axi_beats={"axi": {"read": beats, "write": 0}})

        def close(self):
            self.closed = True

    class Session:
        closed = False

        def __new__(cls, harness, cfg, *, component, **_):
            taken(component)
            if isinstance(harness, FetchedLayerHarness):
                return FetchedSession(harness)
            return super().__new__(cls)

        def __init__(self, harness, cfg, *, component, **_):
            self.harness, self.cfg, self.component = harness, cfg, component
            self.so_far, self.sizes = {}, []

        def run(self, tensors, **_):
            for key in ("x_int", "x_e"):
                if key in tensors:
                    self.so_far[key] = np.concatenate(
                        [self.so_far.get(key, np.zeros((0, *np.shape(tensors[key])[1:]),
                                                       np.int64)), tensors[key]])
            self.sizes += tensors["sizes"]
            whole = run_block(self.harness, self.cfg, {**self.so_far, "sizes": self.sizes},
                              component=self.component)
            rows, tensors_now = len(tensors["x_int"]), len(tensors["sizes"])
            cyc = whole.tensor_cycles[-tensors_now:]
            return runner.RunResult(outputs={k: v[-rows:] for k, v in whole.outputs.items()},
                                    cycles=sum(cyc), sim="verilator", wall_s=0.0,
                                    sim_cycles=sum(cyc), tensor_cycles=cyc)

        def close(self):
            self.closed = True

    runner.run_block = run_block
    runner.open_session = Session


@pytest.fixture
def standin(monkeypatch):
    from llmloom.hw.layers import weights_image
    from llmloom.sim import runner
    monkeypatch.setattr(weights_image, "pack_fetched_layer", weights_image.pack_fetched_layer)
    monkeypatch.setattr(runner, "run_block", runner.run_block)    # restored after the test
    monkeypatch.setattr(runner, "open_session", runner.open_session)
    return install_standin


def test_quick_chat_demo_checks_every_step_and_reports(smollm2, standin, monkeypatch):
    """On Verilator the RTL layer runs on a fetched layer build of that one layer (its
    image in AXI memory, one session), its cycles checked against the fetched layer's
    model (:func:`~llmloom.perf.cycles.fetched_layer_runs`, its image's fetch included)."""
    from llmloom.flows.chat_demo import run_chat_demo
    from llmloom.sim import runner
    from llmloom.sim.fetched import FetchedLayerHarness
    standin()
    opened, session = [], runner.open_session

    def counted(harness, *args, **kw):
        opened.append(harness)
        return session(harness, *args, **kw)

    monkeypatch.setattr(runner, "open_session", counted)
    out, err = io.StringIO(), io.StringIO()
    assert run_chat_demo(quick=True, out=out, err=err) == 0
    text = out.getvalue()
    assert "note:" not in err.getvalue()
    assert [type(h) for h in opened] == [FetchedLayerHarness] and opened[0].layers == 1
    assert text.startswith("llmloom demo: ")
    assert "one fetched layer build" in text and "~2 min to emit" not in text
    assert "user: What is the capital of France?" in text
    assert "3 runs (the prefill, then 2 decode steps), every output row equal" in text
    assert "of them waiting for its weights and tables" in text and "MB read over AXI" in text
    assert "each tensor as many as the analytical model predicts" in text
    assert "accuracy against float over this conversation" in text
    assert "tokens/s" in text and "projected for all 30 layers" in text


def test_fetched_cycles_off_the_model_fail_the_demo(smollm2, standin):
    """A fetched run one cycle longer than ``fetched_layer_runs`` says: the demo says so
    and exits 1 (its check is against the fetched layer's model, not the baked one's)."""
    from llmloom.flows.chat_demo import run_chat_demo
    standin(cycles_off=1)
    out, err = io.StringIO(), io.StringIO()
    assert run_chat_demo(quick=True, out=out, err=err) == 1
    assert "cycles DIFFER from the analytical model's prediction" in out.getvalue()


def test_fetched_runs_perf_cannot_time_say_why(smollm2, standin, monkeypatch):
    """Where perf's fetched-layer model cannot time the runs (its UntimedError), the demo says
    so (the reason, not "cycles DIFFER") and exits 1."""
    import llmloom.perf.cycles as cycles
    from llmloom.flows.chat_demo import run_chat_demo
    from llmloom.perf.errors import UntimedError
    standin()

    def cannot(*args, **kwargs):
        raise UntimedError("data_width=64 is not timed; allowed: 32")

    monkeypatch.setattr(cycles, "fetched_layer_runs", cannot)
    out, err = io.StringIO(), io.StringIO()
    assert run_chat_demo(quick=True, out=out, err=err) == 1
    text = out.getvalue()
    assert "perf cannot time the fetched layer (UntimedError: data_width=64 is not timed" in text
    assert "DIFFER" not in text


@pytest.mark.parametrize("bug", [KeyError("f1"), ValueError("3 commands for 2 tensors"),
                                 NotImplementedError()])
def test_a_bug_in_the_fetched_prediction_surfaces(smollm2, standin, monkeypatch, bug):
    """Any other exception from the prediction is a bug: it is not turned into a note."""
    import llmloom.perf.cycles as cycles
    from llmloom.flows.chat_demo import run_chat_demo
    standin()

    def broken(*args, **kwargs):
        raise bug

    monkeypatch.setattr(cycles, "fetched_layer_runs", broken)
    with pytest.raises(type(bug)):
        run_chat_demo(quick=True, out=io.StringIO(), err=io.StringIO())


def test_a_simulator_without_the_fetched_layer_keeps_the_baked_build(smollm2, standin):
    """Icarus (no fetched layer session): one note line, then the layer's own build, its
    weights baked in, replayed from reset at each step, cycles against ``layer_timing``."""
    from llmloom.flows.chat_demo import run_chat_demo
    standin()
    out, err = io.StringIO(), io.StringIO()
    assert run_chat_demo(sim="icarus", quick=True, out=out, err=err) == 0
    notes = [line for line in err.getvalue().splitlines() if "note:" in line]
    assert notes == ["llmloom: note: layer 1 gets its own build, its weights baked in (a "
                     "fetched layer cannot: a fetched layer runs on verilator only, not "
                     "icarus)"]
    text = out.getvalue()
    assert "~2 min to emit" in text and "read over AXI" not in text
    assert "each tensor as many as the analytical model predicts" in text


def test_a_layer_that_differs_stops_the_demo(smollm2, standin):
    from llmloom.flows.chat_demo import run_chat_demo
    standin(wrong=True)
    out, err = io.StringIO(), io.StringIO()
    assert run_chat_demo(quick=True, out=out, err=err) == 1
    assert "DIFFERS FROM the bit-exact model in 1 elements" in err.getvalue()


def test_a_context_runs_the_demo_at_that_depth(smollm2, standin):
    """``context``: the RTL layer's KV cache depth, whatever the prompt's length (one build
    for any prompt that fits), its cycles still those the model predicts for that depth."""
    from llmloom.flows.chat_demo import run_chat_demo
    standin()
    out, err = io.StringIO(), io.StringIO()
    assert run_chat_demo(quick=True, context=64, out=out, err=err) == 0
    text = out.getvalue()
    assert "KV cache depth, 64 positions" in text
    assert "each tensor as many as the analytical model predicts" in text


def test_a_context_too_small_is_one_line(smollm2, capsys):
    from llmloom.flows.cli import main
    assert main(["demo", "--quick", "--context", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--context 8 is not allowed; allowed: " in err


def test_rtl_layer_out_of_range_is_one_line(smollm2, capsys):
    from llmloom.flows.cli import main
    assert main(["demo", "--quick", "--rtl-layer", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--rtl-layer 2 is not allowed; allowed: 0..1" in err


def test_quick_chat_demo_in_a_terminal(smollm2, tmp_path):
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from tests.flows.test_chat_demo import install_standin\n"
            "install_standin()\n"
            "from llmloom.flows.cli import main\n"
            "sys.exit(main(['demo', '--quick']))\n")
    status, out = run_in_terminal([sys.executable, "-c", code], tmp_path, timeout=600)
    assert status == 0, out[-3000:]
    assert "Traceback" not in out
    assert "every output row equal to the bit-exact model" in out


def test_text_stream_redraws_its_line_after_a_progress_bar(smollm2):
    """In a terminal the RTL's progress bar is drawn and cleared between tokens on the
    answer's line: each token redraws the whole line so far."""
    from llmloom.flows.model_cli import TextStream
    from llmloom.sim.llm import tokenizer_of
    tok = tokenizer_of()
    ids = tok.encode("The capital\nof France")
    out = io.StringIO()
    stream = TextStream(tok, out, redraw=True)
    for i in ids:
        stream(i)
        out.write("\r" + " " * 40 + "\r")            # a bar, cleared
    assert stream.finish() == "The capital\nof France"
    last = out.getvalue().split("\r")[-1]
    assert last == "of France\n"                     # the last line, whole, after the bar
