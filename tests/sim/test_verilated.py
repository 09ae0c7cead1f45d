"""The compiled stream driver (``sim="verilator"``'s default) against the cocotb engine: the
same beats, the same cycle counts (whole run, all simulated cycles, per tensor) on every block
and both layers under every stall pattern; its errors are the engine's.

The reference is the cocotb bench on Icarus (a build costs nothing there); one GEMM also runs
both drivers on the same Verilator model. The configs are those of the blocks' own HDL tests,
so the Verilator builds are shared with them through the build cache.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from llmloom.hw.blocks.attention_config import AttentionConfig
from llmloom.hw.blocks.gemm import GemmConfig
from llmloom.hw.blocks.gemv import GemvConfig
from llmloom.hw.blocks.kvcache import KvCacheConfig
from llmloom.sim import verilated
from llmloom.sim.blocks.layers import BertLayerHarness, Gpt2BlockHarness, LlamaBlockHarness
from llmloom.sim.engine import SimTimeout
from llmloom.sim.harness import Drive, get_harness
from llmloom.sim.runner import run_block, simulate
from llmloom.sim.streams import STALL_KINDS, Stalls
from llmloom.sim.tools import ToolMissing, require


@pytest.fixture(autouse=True)
def _simulators():
    """Verilator and Icarus; missing ones fail in CI (which installs them), skip elsewhere."""
    for tool in ("verilator", "iverilog"):
        try:
            require(tool)
        except ToolMissing:
            if os.environ.get("CI"):
                pytest.fail(f"{tool} is not installed; CI must install it")
            pytest.skip(f"{tool} is not installed")


L = 12


def _ints(rng, shape, lo=-128, hi=128, dtype=np.int8):
    return rng.integers(lo, hi, shape).astype(dtype)


def _affine(length):
    g = np.random.default_rng(11)
    return dict(gamma=tuple(g.normal(1.0, 0.3, length)), beta=tuple(g.normal(0.0, 0.2, length)))


def _norm(rng):
    return {"x": _ints(rng, (6, L)), "x_scale": np.float64(1 / 32),
            "gamma": rng.normal(1.0, 0.3, L), "beta": rng.normal(0.0, 0.2, L)}


def _layer_weights(rng, d=8, ff=16):
    def n(*shape, s=0.3):
        return rng.normal(0.0, s, shape)
    w = {name: n(d, d) for name in ("wq", "wk", "wv", "wo")}
    w.update({f"b{c}": n(d, s=0.1) for c in "qkvo"})
    w.update(w1=n(d, ff), b1=n(ff, s=0.1), w2=n(ff, d), b2=n(d, s=0.1))
    for ln in ("ln1", "ln2"):
        w[f"{ln}_g"], w[f"{ln}_b"] = 1 + n(d, s=0.1), n(d, s=0.1)
    return w


LAYER_PAR = dict(heads=2, seq=4, lanes=2, linear_rows=2, linear_cols=2, ffn_rows=2, ffn_cols=2,
                 qk_rows=2, qk_cols=2, pv_rows=2, pv_cols=2)


def _layer(harness):
    def make(rng):
        h = harness.options(weights=_layer_weights(rng), mode=harness.mode)
        x = rng.normal(0.0, 1.0, (4, 8)).astype(np.float32)
        return h, h.config(LAYER_PAR, {"x": x}), {"x": x}
    return make


def _llama(rng):
    from ..hw.test_llama_block import llama_weights

    h = LlamaBlockHarness().options(weights=llama_weights(rng, 8, 16, 2, 1), mode="decode")
    x = rng.normal(0.0, 1.0, (4, 8)).astype(np.float32)
    return h, h.config({**LAYER_PAR, "kv_heads": 1}, {"x": x}), {"x": x}


def _block(name, values_or_cfg, tensors):
    def make(rng):
        h = get_harness(name)
        t = tensors(rng)
        cfg = (values_or_cfg if not isinstance(values_or_cfg, dict)
               else h.config(values_or_cfg, t))
        return h, cfg, t
    return make


_scales = tuple(np.random.default_rng(5).uniform(1e-5, 1e-4, L))

# block → a maker of (harness, config, tensors); every registered block is here
CASES = {
    "gemm": _block("gemm", GemmConfig(rows=2, cols=3, k=6, n=7, lanes=3),
                   lambda r: {"a": _ints(r, (5, 6)), "w": _ints(r, (6, 7))}),
    "gemv": _block("gemv", GemvConfig(rows=4, cols=3, k=10, n=7, lanes=2),
                   lambda r: {"a": _ints(r, (4, 10)), "w": _ints(r, (10, 7))}),
    "attention": _block(
        "attention", AttentionConfig(d_model=8, heads=2, seq=8, lanes=2, qk_rows=2, qk_cols=4,
                                     pv_rows=2, pv_cols=2, causal=True, score_scale=0.05),
        lambda r: {n: _ints(r, (5, 8)) for n in "qkv"}),
    "kvcache": _block(
        "kvcache", KvCacheConfig(d_model=16, heads=4, seq=9, lanes=4, qk_cols=2, pv_cols=3),
        lambda r: {"k": _ints(r, (7, 16)), "v": _ints(r, (7, 16)),
                   "heads": np.array([2, 0, 3, 1, 2])}),
    "softmax": _block("softmax", dict(lanes=3, causal=True, causal_offset=1),
                      lambda r: {"x": _ints(r, (6, L)), "x_scale": np.float64(1 / 8)}),
    "layernorm": _block("layernorm", dict(lanes=4, out_scale=0.03), _norm),
    "rmsnorm": _block("rmsnorm", dict(lanes=2, out_scale=0.03), _norm),
    "requant": _block("requant", dict(lanes=4, acc_scale=_scales, out_scale=0.05,
                                      bias=tuple(range(-600, 600, 100))),
                      lambda r: {"acc": _ints(r, (7, L), -(1 << 21), 1 << 21, np.int32)}),
    "residual": _block("residual", dict(lanes=3, x_scale=0.05, r_scale=0.02, out_scale=0.06),
                       lambda r: {"x": _ints(r, (7, L)), "r": _ints(r, (7, L))}),
    "mul": _block("mul", dict(lanes=3, a_scale=0.05, b_scale=0.02, out_scale=0.004),
                  lambda r: {"a": _ints(r, (7, L)), "b": _ints(r, (7, L))}),
    "gelu": _block("gelu", dict(lanes=4, x_scale=0.04, approximation="erf"),
                   lambda r: {"x": _ints(r, (7, L))}),
    "silu": _block("silu", dict(lanes=6, x_scale=0.05), lambda r: {"x": _ints(r, (7, L))}),
    "dynquant": _block("dynquant", dict(lanes=4),
                       lambda r: {"x": _ints(r, (7, L), -(1 << 15), 1 << 15, np.int16)}),
    "rope": _block("rope", dict(length=L, d_head=6, lanes=2, positions=16, x_scale=0.05),
                   lambda r: {"x": _ints(r, (7, L)), "pos": np.int64(3)}),
    # a prefill, then decode steps gated on the previous output, timed per tensor
    "gpt2-block": _layer(Gpt2BlockHarness().options(mode="decode")),
    "bert-layer": _layer(BertLayerHarness()),
    "llama-block": _llama,
}


def test_every_block_has_a_case():
    from llmloom.sim.harness import HARNESSES, load_harnesses
    load_harnesses()
    assert set(CASES) == set(HARNESSES)


def _same(a, b):
    assert a.outputs.keys() == b.outputs.keys()
    for key in a.outputs:
        np.testing.assert_array_equal(a.outputs[key], b.outputs[key], err_msg=key)
    assert (a.cycles, a.sim_cycles, a.tensor_cycles) == (b.cycles, b.sim_cycles, b.tensor_cycles)


#: Blocks whose three stall patterns run by default (a Verilator build each): a GEMM, a row
#: kernel with two outputs, an element-wise block and a whole layer with gated tensors. The
#: others (a build each) run with --runslow.
DEFAULT_BLOCKS = ("gemm", "dynquant", "requant", "gpt2-block")


@pytest.mark.parametrize("stall", STALL_KINDS)
@pytest.mark.parametrize("block", [b if b in DEFAULT_BLOCKS else
                                   pytest.param(b, marks=pytest.mark.slow)
                                   for b in sorted(CASES)])
def test_compiled_driver_matches_the_cocotb_engine(block, stall, rng):
    h, cfg, tensors = CASES[block](rng)
    seed = int(rng.integers(1 << 30))
    stalls = dict(stalls_in=Stalls(stall, seed), stalls_out=Stalls(stall, seed + 1))
    compiled = run_block(h, cfg, tensors, sim="verilator", **stalls)
    reference = run_block(h, cfg, tensors, sim="icarus", **stalls)
    _same(compiled, reference)
    golden = h.golden(cfg, h.prepare(cfg, tensors))
    for key, want in golden.items():
        np.testing.assert_array_equal(compiled.outputs[key], want, err_msg=key)


@pytest.mark.parametrize("stall", STALL_KINDS)
def test_both_drivers_on_one_verilator_model(stall, rng):
    h, cfg, tensors = CASES["gemm"](rng)
    stalls = dict(stalls_in=Stalls(stall, 3), stalls_out=Stalls(stall, 4))
    compiled = run_block(h, cfg, tensors, sim="verilator", driver="compiled", **stalls)
    cocotb = run_block(h, cfg, tensors, sim="verilator", driver="cocotb", **stalls)
    _same(compiled, cocotb)
    assert compiled.sim == cocotb.sim == "verilator"
    assert compiled.wall_s > 0 and compiled.cycles_per_s > 0


def _gemm_drive(rng):
    h, cfg, tensors = CASES["gemm"](rng)
    return h.component(cfg), h.drive(cfg, h.prepare(cfg, tensors))


def test_too_many_beats_is_the_engines_error(rng):
    comp, drive = _gemm_drive(rng)
    drive.timed = {"act": drive.timed["act"] * 4}   # four tensors in, one expected out
    with pytest.raises(AssertionError, match="produced more than the .* beats expected"):
        simulate(comp, drive, sim="verilator")


def test_timeout_is_the_engines_error(rng):
    comp, drive = _gemm_drive(rng)
    drive.expect = {p: n + 1 for p, n in drive.expect.items()}
    with pytest.raises(SimTimeout, match=r"within 500 cycles \(outputs o: \d+ of \d+ beats; "
                                         r"inputs taken weight: 18 of 18, act: 10 of 10\)"):
        simulate(comp, drive, sim="verilator", max_cycles=500)


def test_bad_drive_is_refused_before_running(rng):
    comp, drive = _gemm_drive(rng)
    with pytest.raises(ValueError, match="no stream port 'nope'"):
        simulate(comp, Drive(preload={}, timed={"nope": [1]}, expect={}), sim="verilator")
    drive.gates = {"act": [(0, "o", 10_000)]}
    with pytest.raises(ValueError, match="would never open"):
        simulate(comp, drive, sim="verilator")


def test_driver_and_threads_are_checked(rng):
    h, cfg, tensors = CASES["gemm"](rng)
    with pytest.raises(ValueError, match="unknown driver 'fast'; allowed: compiled, cocotb"):
        run_block(h, cfg, tensors, sim="verilator", driver="fast")
    with pytest.raises(ValueError, match="applies to sim='verilator' only"):
        run_block(h, cfg, tensors, sim="icarus", driver="compiled")
    with pytest.raises(ValueError, match="threads"):
        run_block(h, cfg, tensors, sim="verilator", driver="cocotb", threads=2)


def test_progress_file_holds_the_beats_so_far(rng, tmp_path):
    from llmloom.sim.runner import _build_compiled

    comp, drive = _gemm_drive(rng)
    build, images = _build_compiled(comp, None, 1)
    for image in images:                            # the memories' contents, read at time 0
        (tmp_path / image.file).write_text(image.text())
    streams = json.loads((build / "ports.json").read_text())
    beats, *_ = verilated.run(build / "obj" / "Vtop_driver", streams, drive, Stalls(),
                              Stalls(), 10_000, tmp_path, progress_path=tmp_path / "progress")
    assert int((tmp_path / "progress").read_text()) == sum(map(len, beats.values())) == sum(
        drive.expect.values())


def test_the_pinned_verilator_gives_the_edge_its_phases(rng):
    # the driver's rising edge skips eval()'s input phase only on a model whose eval() it
    # knows; a Verilator that schedules differently falls back to eval() (slower, as exact)
    from llmloom.sim.runner import _build_compiled

    comp, _ = _gemm_drive(rng)
    build, _ = _build_compiled(comp, None, 1)
    assert verilated.has_phases(build / "obj")
    assert "#define LLMLOOM_PHASES 1" in (build / "ports.h").read_text()


def _eval_cpp(phases):
    calls = "".join(f"    x = Vtop___024root___eval_phase__{p}(vlSelf);\n" for p in phases)
    defs = "".join(f"bool Vtop___024root___eval_phase__{p}(Vtop___024root* vlSelf) {{\n}}\n"
                   for p in phases)
    return defs + f"void Vtop___024root___eval(Vtop___024root* vlSelf) {{\n{calls}}}\n"


def test_an_unknown_schedule_falls_back_to_eval(tmp_path):
    (tmp_path / "Vtop___024root__0.cpp").write_text(_eval_cpp(["ico", "act", "nba"]))
    assert verilated.has_phases(tmp_path)
    # a model with timing has more phases: the driver's edge would skip them
    (tmp_path / "Vtop___024root__0.cpp").write_text(_eval_cpp(["ico", "act", "inact", "nba"]))
    assert not verilated.has_phases(tmp_path)
    (tmp_path / "Vtop___024root__0.cpp").write_text("void f() {}\n")
    assert not verilated.has_phases(tmp_path)


def test_seed_keys_are_cpythons():
    # random.Random(n) seeds MT19937 with |n| cut into 32-bit words, least significant first
    assert verilated._seed_key(Stalls("random", 0), 5) == [5]
    n = 5000 * 1_000_003 + 200
    assert verilated._seed_key(Stalls("random", 5000), 200) == [n & 0xFFFFFFFF, n >> 32]
    assert verilated._seed_key(Stalls("random", -1), 0) == [1_000_003]


def test_build_key_follows_the_design():
    key = verilated.build_key("module top; endmodule", {}, 1)
    assert key == verilated.build_key("module top; endmodule", {}, 1)
    assert key != verilated.build_key("module top; wire a; endmodule", {}, 1)
    assert key != verilated.build_key("module top; endmodule", {}, 2)
    assert key != verilated.build_key("module top; endmodule", {"m.v": "module m; endmodule"}, 1)


def test_build_key_follows_the_flags(monkeypatch):
    key = verilated.build_key("module top; endmodule", {}, 1)
    monkeypatch.setattr(verilated, "VERILATOR_FLAGS", (*verilated.VERILATOR_FLAGS, "-O0"))
    flagged = verilated.build_key("module top; endmodule", {}, 1)
    assert flagged != key
    monkeypatch.setattr(verilated, "MAKE_FLAGS", ("OPT_FAST=-O0",))
    assert verilated.build_key("module top; endmodule", {}, 1) not in (key, flagged)



# ---- sessions: the model kept alive between runs --------------------------------------------
def _layer_session_case(rng):
    h = Gpt2BlockHarness().options(weights=_layer_weights(rng), mode="decode", prefill=2)
    x = rng.normal(0.0, 1.0, (4, 8)).astype(np.float32)
    cfg = h.config(LAYER_PAR, {"x": x})
    return h, cfg, h.prepare(cfg, {"x": x})


def _tensor_by_tensor(tensors):
    start = 0
    for size in tensors["sizes"]:
        yield {"x": tensors["x"][start:start + size],
               "x_int": tensors["x_int"][start:start + size], "sizes": [size]}
        start += size


@pytest.mark.parametrize("stall", STALL_KINDS)
def test_a_session_fed_tensor_by_tensor_is_the_one_run_of_all(stall, rng):
    """A layer's prefill and decode steps sent one by one into one live model (its KV cache
    carried over): the outputs and every tensor's cycles of the one run of all of them, under
    every stall pattern, and the analytical model's cycles."""
    from llmloom.perf.cycles import layer_timing
    from llmloom.sim.runner import open_session

    h, cfg, tensors = _layer_session_case(rng)
    assert tensors["sizes"] == [2, 1, 1]
    stalls = dict(stalls_in=Stalls(stall, 7), stalls_out=Stalls(stall, 8))
    whole = run_block(h, cfg, tensors, sim="verilator", prepared=True, **stalls)
    ys, cycles = [], []
    with open_session(h, cfg, **stalls) as session:
        for part in _tensor_by_tensor(tensors):
            result = session.run(part, prepared=True)
            assert result.cycles == result.tensor_cycles[0] <= result.sim_cycles
            ys.append(result.outputs["y_int"])
            cycles += result.tensor_cycles
        proc = session._session._proc
    assert proc.poll() == 0                                # ended at the close, reaped
    np.testing.assert_array_equal(np.concatenate(ys), whole.outputs["y_int"])
    assert cycles == whole.tensor_cycles
    if stall == "none":
        assert cycles == list(layer_timing(cfg, (2, 1, 1)).tensor_cycles)


def test_a_session_refuses_what_does_not_continue_its_first_run(rng):
    from llmloom.sim.runner import open_session

    h, cfg, tensors = CASES["gemm"](rng)
    with open_session(h, cfg) as session:
        first = session.run(tensors)
        with pytest.raises(ValueError, match="preloads in its first run only"):
            session.run(tensors)
        with pytest.raises(ValueError, match="'nope' is not a timed input of the session's "
                                             "first run; allowed: 'act'"):
            session._session.run(Drive(preload={}, timed={"nope": [1]}, expect={}), 100)
        assert not session.closed                  # refused before anything was sent
    np.testing.assert_array_equal(first.outputs["c"],
                                  h.golden(cfg, h.prepare(cfg, tensors))["c"])


def test_a_session_timeout_ends_it_and_a_closed_session_says_so(rng):
    from llmloom.sim.runner import open_session

    h, cfg, tensors = CASES["gemm"](rng)
    with pytest.raises(ValueError, match="needs sim='verilator' with the compiled driver"):
        open_session(h, cfg, sim="icarus")
    session = open_session(h, cfg)
    with pytest.raises(SimTimeout, match="within 5 cycles"):
        session.run(tensors, max_cycles=5)
    assert session.closed
    with pytest.raises(RuntimeError, match="session is closed"):
        session.run(tensors)
    session.close()


def test_a_model_that_dies_in_a_session_raises_with_its_log(rng):
    from llmloom.sim.runner import open_session

    h, cfg, tensors = CASES["gemm"](rng)
    session = open_session(h, cfg)
    session._session._proc.kill()
    with pytest.raises(RuntimeError, match=r"failed to run \(exit -9\); log tail"):
        session.run(tensors)
    assert session.closed
    session.close()
