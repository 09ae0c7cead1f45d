"""``llmloom generate``: SmolLM2 cut to two layers, a short chat prompt, three new tokens through
the bit-exact layers; its JSON, logits file and report; bad input; a run in a terminal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmloom.flows.cli import main
from llmloom.flows.model_cli import weight_fetch
from llmloom.sim.checkpoint import chat_prompt
from llmloom.sim.llm import tokenizer_of

from .test_cli_terminal import llmloom, run_in_terminal

QUICK = ["generate", "--prompt", "What is the capital of France?", "--num-layers", "2",
         "--max-new-tokens", "3"]


@pytest.fixture(scope="module")
def quick_json(smollm2, tmp_path_factory):
    """The quick run with --json, --logits and --report: (stdout doc, logits npz, report)."""
    d = tmp_path_factory.mktemp("gen")
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main([*QUICK, "--json", "--logits", str(d / "l.npz"), "--report",
                     str(d / "r.json")])
    assert code == 0
    with np.load(d / "l.npz") as f:
        logits = {k: f[k] for k in f.files}
    return json.loads(buf.getvalue()), logits, json.loads((d / "r.json").read_text())


def test_json_holds_the_new_tokens_and_their_text(quick_json):
    doc, _, _ = quick_json
    assert set(doc) == {"tokens", "text"}
    assert len(doc["tokens"]) == 3 and all(isinstance(t, int) for t in doc["tokens"])
    assert doc["text"] == tokenizer_of().decode(doc["tokens"], skip_special=True)


def test_logits_have_a_row_per_position_and_the_tokens(quick_json):
    doc, f, _ = quick_json
    prompt = tokenizer_of().encode(chat_prompt("What is the capital of France?"))
    assert set(f) == {"logits", "tokens"}
    np.testing.assert_array_equal(f["tokens"], prompt + doc["tokens"])
    assert f["logits"].shape == (len(prompt) + 3, 49152) and f["logits"].dtype == np.float32
    # greedy: each new token is the argmax of the row before its position
    np.testing.assert_array_equal(np.argmax(f["logits"][len(prompt) - 1:-1], 1), doc["tokens"])


def test_report_counts_weights_and_projects_tokens_per_s(quick_json):
    _, f, r = quick_json
    assert r["num_layers"] == 2 and r["sim"] == "golden" and r["quant"] == "W8A8"
    assert r["passes"] == [r["prompt_tokens"], 1, 1, 1]
    assert r["layer"]["seq"] == r["prompt_tokens"] + 3
    # q, o: d×d; k, v: d×192; gate, up, down: d×d_ff — one int8 byte each, and each group
    # of 32's int16 scale (Q8_0's groups, no minimum)
    weights = 2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536
    per_layer = weights + weights // 32 * 2
    assert r["weight_bytes_per_layer"] == per_layer
    assert r["weight_bytes_fetched"] == per_layer * 2 * 4      # every layer on every pass
    assert r["layer"]["weight_bits"] == 8 and r["layer"]["weight_groups"] is True   # Q8_0
    assert r["cycles"] is None                  # measured: nothing runs RTL under golden
    if r["predicted_cycles"] is not None:
        assert r["predicted_cycles"] == 2 * sum(r["predicted_cycles_per_pass"])
        assert r["weight_wait_cycles"] >= 0
    p = r["projection"]
    assert p["device"] == "u280" and p["clock_hz"] > 0
    assert p["decode_tokens_per_s"] > 0 and p["prefill_tokens_per_s"] > 0
    assert 0 <= p["decode_weight_stream_share"] <= 1
    # the projection reads the bytes the layer's image holds, groups' tables included
    from llmloom.perf.workload import layer_ops
    assert p["quant"] == "W8A8"
    assert sum(o.weight_bytes for o in layer_ops("smollm2-135m", "decode", context=1,
                                                 quant=p["quant"])) == per_layer


def test_w4a8_keeps_the_gguf_codes_on_the_bit_exact_model(smollm2, tmp_path, capsys):
    """--quant W4A8: the 4-bit codes with their groups' scales and minima; the report counts
    half a byte a weight and 4 bytes a group of 32, and projects at W4A8."""
    assert main([*QUICK, "--quant", "W4A8", "--json", "--report", str(tmp_path / "r.json")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["tokens"]) == 3
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["quant"] == "W4A8" and r["projection"]["quant"] == "W4A8"
    # W4 weights are always in groups: the weight_groups field is W8's choice
    assert r["layer"]["weight_bits"] == 4 and r["layer"]["weight_groups"] is False
    weights = 2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536
    assert r["weight_bytes_per_layer"] == weights // 2 + weights // 32 * 4


def test_text_is_printed_as_it_is_generated(smollm2, capsys, quick_json):
    doc, _, _ = quick_json
    assert main(QUICK) == 0
    captured = capsys.readouterr()
    assert captured.out == doc["text"] + "\n"


def test_weight_fetch_is_double_buffered():
    # 640 bytes at 64 a cycle: 10 cycles a fetch; the first waits 10, then each layer waits
    # for what its predecessor's run (4 or 20 cycles) leaves
    assert weight_fetch(640, [4, 20], layers=2) == (640 * 4, 10 + 6 + 6 + 0)
    assert weight_fetch(640, [None], layers=3) == (640 * 3, None)


def _non_llama_gguf(path):
    import gguf
    w = gguf.GGUFWriter(str(path), "gpt2")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("extra, words", [
    (["--gguf", "{tmp}/none.gguf"], "does not exist"),
    (["--gguf", "{tmp}/junk.gguf"], "not a readable GGUF"),
    (["--gguf", "{tmp}/gpt2.gguf"], "allowed: llama"),
    (["--num-layers", "0"], "allowed: 1..30"),
    (["--num-layers", "31"], "allowed: 1..30"),
    (["--max-new-tokens", "9000"], "context is 8192"),
    (["--max-new-tokens", "0"], "allowed: >= 1"),
    (["--context", "8"], "--context 8 is not allowed; allowed: "),        # < prompt + new
    (["--context", "9000"], "--context 9000 is not allowed; allowed: "),
    (["--prompt", "  "], "--prompt is empty"),
    (["--logits", "{tmp}/no/dir/l.npz"], "output directory"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(smollm2, tmp_path, capsys, extra, words):
    (tmp_path / "junk.gguf").write_bytes(b"GGUF\x03\x00\x00\x00 not really")
    _non_llama_gguf(tmp_path / "gpt2.gguf")
    before = set(tmp_path.iterdir())
    args = [a.format(tmp=tmp_path) for a in extra]
    assert main([*QUICK, *args, "--logits" if "--logits" not in args else "--json",
                 *([str(tmp_path / "l.npz")] if "--logits" not in args else []),
                 "--report", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("llmloom: error: ") and words in err, err
    assert set(tmp_path.iterdir()) == before


def test_generate_in_a_terminal(smollm2, tmp_path):
    code, out = run_in_terminal(llmloom(*QUICK), tmp_path, timeout=600)
    assert code == 0, out[-3000:]
    assert "Traceback" not in out
    assert "prefill of" in out              # the progress line was drawn


@pytest.mark.parametrize("sim, case", [
    pytest.param(sim, case, marks=[pytest.mark.slow] if (sim, case) == ("icarus", "rows_scaled")
                 else []) for case in ("static", "rows_scaled", "w4")
    for sim in ("icarus", "verilator")])
def test_rtl_runner_runs_a_layers_decode_steps_on_its_tensors_so_far(sim, case, rng):
    """``generate --sim`` runs each layer's RTL (here on a tiny LLaMA block): on Icarus (as
    on Amaranth's simulator: every simulator but Verilator, one code path) a decode step
    replays the layer's prefill and earlier steps; on Verilator the layer's model stays alive
    and takes the new row only. Either way the new row is checked against and equals the
    bit-exact model's, and each tensor's cycles are predicted. With row exponents on the
    residual stream (``rows_scaled``: a first row 1000× the others, as ``generate`` calibrates
    SmolLM2) the rows' exponents go in and come out checked too; ``w4``: the same at W4A8
    (``generate --quant W4A8``: the GEMMs' grouped 4-bit weights), one short conversation
    (replays are slow). The replays run on Icarus, not Amaranth's simulator: one emission of
    the layer's Verilog, then each replay in about half of Amaranth's time. Icarus's
    ``rows_scaled`` case is slow: its replays of row exponents are also ``w4``'s, and its
    numbers Verilator's."""
    from llmloom.flows.model_cli import RtlLayers
    from llmloom.perf.cycles import layer_timing
    from llmloom.sim.golden.layers import RowScaled, layer_bitexact
    from llmloom.sim.quantize import quantize_input
    from llmloom.sim.tools import ToolMissing, require

    from ..hw.test_llama_block import llama_case
    from ..hw.test_llama_row_exponents import row_exponent_case
    try:
        require("iverilog" if sim == "icarus" else "verilator")
    except ToolMissing:
        pytest.skip(f"{sim} is not installed")
    rows_scaled = case != "static"
    h, cfg, t = (row_exponent_case(rng, weight_bits=4 if case == "w4" else 8) if rows_scaled
                 else llama_case(rng, "static"))
    assert cfg.weight_bits == (4 if case == "w4" else 8)
    q = h.quantized(cfg)
    cfg, w = q.config, q.weights
    x = quantize_input(t["x"], q.input_scale, cfg.width("x"), cfg.stream_exponent)
    assert isinstance(x, RowScaled) == rows_scaled and (not rows_scaled or x.e.max() > 0)
    with RtlLayers(sim) as rtl:
        assert rtl.replays == (sim != "verilator")
        # a second, shorter prefill starts the layer over (the replays and the live model
        # alike forget the first conversation)
        for prompt, steps in ((2, 1),) if case == "w4" else ((4, 2), (2, 1)):
            ys, cache = [], None
            splits = [(slice(0, prompt), "prefill")] + [
                (slice(prompt + i, prompt + i + 1), "decode") for i in range(steps)]
            for rows, mode in splits:
                y, cache = rtl.step(0, cfg, w, x[rows], mode, cache)
                ys.append(y)
            n = prompt + steps
            want = layer_bitexact(cfg, w, x[:n])[0]
            if rows_scaled:
                np.testing.assert_array_equal(np.concatenate([y.e for y in ys]), want.e)
                ys, want = [y.values for y in ys], want.values
            np.testing.assert_array_equal(np.concatenate(ys), want)
            assert len(cache) == n
            assert rtl.cycles[0] == layer_timing(cfg, (prompt,) + (1,) * steps).tensor_cycles
        sessions = list(rtl._sessions.values())
        assert len(sessions) == (sim == "verilator")
    assert all(s.closed for s in sessions)
    if sim == "verilator":                        # a closed layer has no KV cache to go on
        with pytest.raises(RuntimeError, match="layer 0's simulation has ended"):
            rtl.step(0, cfg, w, x[5:6], "decode", cache)


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["W8A8", "W4A8"])
def test_generate_on_verilator_gives_the_golden_tokens_and_logits(smollm2, tmp_path, capsys,
                                                                  quant):
    """Issue 14's check on SmolLM2: two layers, a short prompt, three new tokens, every
    layer's RTL on Verilator (each run checked bit for bit as it goes) gives the tokens and
    logits of ``--sim golden``, W8A8 and W4A8 alike on one fetched layer build for both
    layers (at W4A8 the images hold the GGUF's codes and group tables). The tiny model's run
    above is its default-run equivalent."""
    runs = {}
    for sim in ("golden", "verilator"):
        assert main([*QUICK, "--quant", quant, "--sim", sim, "--json", "--logits",
                     str(tmp_path / f"{sim}.npz")]) == 0
        runs[sim] = json.loads(capsys.readouterr().out)
    assert runs["verilator"] == runs["golden"]
    with np.load(tmp_path / "golden.npz") as g, np.load(tmp_path / "verilator.npz") as v:
        np.testing.assert_array_equal(v["tokens"], g["tokens"])
        np.testing.assert_array_equal(v["logits"], g["logits"])


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """A 2-layer LLaMA (d 32, 4 heads, 2 KV heads, d_ff 64) in GGUF, tokenizer included,
    whose greedy answer to "Hi" is not one token repeated."""
    from ..sim.test_llama_tiny import write_tiny_gguf
    path = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    write_tiny_gguf(path, np.random.default_rng(2))
    return path


@pytest.fixture(scope="module")
def tiny_ggufs(tiny_gguf, tmp_path_factory):
    """``quant`` → the tiny model for it: at W4A8 every linear weight in Q4_1 (the same
    draw)."""
    from ..sim.test_llama_tiny import write_tiny_gguf
    path = tmp_path_factory.mktemp("tiny") / "tiny_q4_1.gguf"
    write_tiny_gguf(path, np.random.default_rng(2), all_q4_1=True)
    return {"W8A8": tiny_gguf, "W4A8": path}


@pytest.mark.parametrize("quant", ["W8A8", "W4A8"])
def test_generate_on_verilator_runs_every_layer_on_one_fetched_build(verilator_sim, tiny_ggufs,
                                                                     tmp_path, cli_json,
                                                                     opened_sessions, quant):
    """Issue 14's check, in the default run on a tiny model: two layers, a short prompt,
    three new tokens, both layers on one FetchedLayer build on Verilator (one session, every
    layer's image in its AXI memory, each run checked bit for bit as it goes) give exactly
    the tokens and logits of ``--sim golden``; the report's fetch figures are the run's. At
    W4A8 the images hold the GGUF's 4-bit codes and group tables (:func:`fetched_layer_layout`
    of the W4 layer)."""
    from llmloom.hw.layers.weights_image import fetched_layer_layout
    from llmloom.sim.llm import quantize_llama

    tiny_gguf = tiny_ggufs[quant]
    args = ["generate", "--gguf", str(tiny_gguf), "--prompt", "Hi", "--num-layers", "2",
            "--max-new-tokens", "3", "--json", "--quant", quant]
    runs = {sim: cli_json([*args, "--sim", sim, "--logits", str(tmp_path / f"{sim}.npz"),
                           "--report", str(tmp_path / f"{sim}.json")])
            for sim in ("golden", "verilator")}
    assert runs["verilator"] == runs["golden"] and len(set(runs["golden"]["tokens"])) > 1
    with np.load(tmp_path / "golden.npz") as g, np.load(tmp_path / "verilator.npz") as v:
        np.testing.assert_array_equal(v["tokens"], g["tokens"])
        np.testing.assert_array_equal(v["logits"], g["logits"])
    assert len(opened_sessions) == 1            # one model for both layers, all steps
    r = json.loads((tmp_path / "verilator.json").read_text())
    f = r["fetched_layer"]
    assert r["weight_fetch_source"] == "measured" and f["runs"] == 2 * len(r["passes"])
    cfg = quantize_llama(tiny_gguf, 2, quant=quant).with_seq(r["layer"]["seq"]).layers[0][0]
    assert cfg.weight_bits == int(quant[1]) and r["quant"] == quant
    layout, bus = fetched_layer_layout(cfg), f["axi_bytes_per_beat"]
    images = f["runs"] * bus * sum(-(-s.nbytes // bus) for s in layout)
    # each run's image once; the last run's prefetch (of the next step's layer 0, which
    # does not come) as far as it got before that run's end
    ahead = bus * sum(-(-s.nbytes // bus) for s in layout[:-1])
    assert images <= r["weight_bytes_fetched"] <= images + ahead
    assert 0 < r["weight_wait_cycles"] < r["cycles"] == f["cycles"]


@pytest.mark.parametrize("sim, case", [("verilator", "cols"), ("amaranth", "w8")])
def test_a_layer_the_fetched_build_cannot_run_keeps_its_own_build(sim, case, rng):
    """``RtlLayers.fetch`` says why it cannot (the FFN's engines wider than the bus the
    others' columns give; another simulator than Verilator) and the layers keep the per-layer
    path. W4 layers do fetch (their codes and group tables in the image)."""
    from llmloom.flows.model_cli import RtlLayers

    from ..hw.test_llama_row_exponents import row_exponent_case

    h, cfg, _ = row_exponent_case(rng, weight_bits=4)
    q = h.quantized(cfg)
    w4 = RtlLayers("verilator")
    assert w4.fetch([(q.config, q.weights)] * 2) is None and w4.fetched
    if case == "cols":
        layer = (q.config.replace(ffn_cols=2 * q.config.linear_cols), q.weights)
    else:
        h, cfg, _ = row_exponent_case(rng)
        layer = (h.quantized(cfg).config, h.quantized(cfg).weights)
    rtl = RtlLayers(sim)
    why = rtl.fetch([layer] * 2)
    assert ("allowed: data_width=64" if case == "cols" else "verilator only") in why
    assert not rtl.fetched


@pytest.mark.slow
def test_some_layers_on_a_fetched_build_of_their_own(verilator_sim, tiny_gguf,
                                                     opened_sessions):
    """The chat demo's RTL layer: ``RtlLayers.fetch({1: ...})`` builds a fetched layer of
    that one layer (layer 0 stays with the bit-exact model), each step's command prefetching
    its own image again; every run bit-exact (``step`` checks it) and its cycles perf's
    (``fetched_cycles``: ``fetched_layer_runs`` of the commands sent), the tokens those of
    the bit-exact model alone. Slow: its own Verilator build (~4.5 min cold on 2 loaded
    cores); by default the demo's stand-in tests (``test_chat_demo.py``) and one image
    prefetching itself on the real RTL (``test_fetched_verilator.py``) cover it."""
    from llmloom.flows.model_cli import RtlLayers
    from llmloom.sim.llm import LlamaSession, generate, golden_step, quantize_llama

    qm = quantize_llama(tiny_gguf, 2).with_seq(8)
    prompt = tokenizer_of(tiny_gguf).encode("Hi")[:4]
    want = generate(LlamaSession(qm, golden_step), prompt, 3)
    with RtlLayers("verilator") as rtl:
        assert rtl.fetch({1: qm.layers[1][:2]}) is None

        def run_layer(n, *args):
            return (rtl.step if n == 1 else golden_step)(n, *args)
        gen = generate(LlamaSession(qm, run_layer), prompt, 3)
        assert [h.layers for h in opened_sessions] == [1]     # one session, a one-layer build
        assert gen.tokens == want.tokens
        assert list(rtl.cycles) == [1] and len(rtl.cycles[1]) == 1 + 3
        assert rtl.cycles[1] == rtl.fetched_cycles()
        predicted = rtl.fetched_cycles([(1, len(prompt))] + [(1, 1)] * 3)
        assert rtl.cycles[1] == predicted
        waits = [total - compute for _, total, compute in rtl.fetch_runs]
        assert all(w < waits[0] for w in waits[1:])     # the later runs' images prefetched
        with pytest.raises(RuntimeError, match="layer 0 is not a layer given to fetch"):
            rtl.step(0, *qm.layers[0][:2], np.zeros((1, qm.spec.d_model), np.int64),
                     "decode", None)


def test_outputs_depend_on_the_kv_cache_depth_only_by_its_power_of_two(tiny_gguf):
    """A sequence's tokens and logits are the same at every KV cache depth that holds it
    within one power-of-two band (17..32, 33..64; every depth up to 16): the attention masks
    the positions not yet written, and the depth's one other trace is the softmax's exp table,
    of ``max(15, ceil(log2 seq) + 11)`` fraction bits (:class:`~llmloom.hw.blocks.softmax.
    SoftmaxConfig`), a little finer past each power of two. ``kv_positions`` is the one rule
    for the depth."""
    from llmloom.hw.blocks.softmax import SoftmaxConfig
    from llmloom.sim.llm import LlamaSession, generate, kv_positions, quantize_llama

    # one weight scale per output channel: there the finer table at 33 changes this tiny
    # model's logits; in Q8_0 groups (the default) it happens not to, so that quantisation
    # could not show the band's edge (the bands' equalities hold for both)
    qm = quantize_llama(tiny_gguf, 2, weight_groups=False)
    prompt = tokenizer_of(tiny_gguf).encode(chat_prompt("Hi"))
    need, limit = len(prompt) + 3, qm.spec.context
    assert 16 < need <= 32 < limit

    def run(seq):
        return generate(LlamaSession(qm.with_seq(seq)), prompt, 3)
    own = run(kv_positions(need, limit))
    assert own.logits.shape[0] == need
    for seq in (need + 1, 32):
        g = run(kv_positions(need, limit, seq))
        assert g.tokens == own.tokens
        np.testing.assert_array_equal(g.logits, own.logits)
    finer = run(kv_positions(need, limit, 33))
    assert not np.array_equal(finer.logits, own.logits)
    assert [SoftmaxConfig(length=n).exp_frac for n in (need, 32, 33)] == [16, 16, 17]
    assert kv_positions(1, limit) == 2 and kv_positions(need, limit, need) == need
    # auto: the next power of two from 16 (at most the model's context), where the exp table
    # is that of the sequence's own depth
    assert kv_positions(need, limit, "auto") == 32
    assert [kv_positions(n, 40, "auto") for n in (1, 16, 17, 32, 33, 40)] == \
        [16, 16, 32, 32, 40, 40]
    for n in range(1, 8193):               # SmolLM2's context
        auto = kv_positions(n, 8192, "auto")
        assert auto >= n and SoftmaxConfig(length=auto).exp_frac == \
            SoftmaxConfig(length=max(2, n)).exp_frac
    for bad in (need - 1, limit + 1, "32"):
        with pytest.raises(ValueError, match=f"--context {bad} is not allowed; allowed: "
                                             f"{need}..{limit} .*, or auto"):
            kv_positions(need, limit, bad)
    with pytest.raises(ValueError, match=f"{limit + 1} positions are not allowed"):
        kv_positions(limit + 1, limit, "auto")


def test_context_must_be_a_number_or_auto(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--prompt", "Hi", "--context", "lots"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert "--context: 'lots' is not allowed; allowed: a number of positions or auto" in err


def test_one_context_serves_prompts_of_different_lengths_on_one_build(verilator_sim, tiny_gguf,
                                                                       tmp_path, capsys,
                                                                       monkeypatch):
    """``--context 24``: prompts of 21 and 22 tokens (the chat template's included), two new
    tokens each, run on one fetched layer build (the depth, not the prompt, is in its
    structure): once it is built (here or by an earlier run of that structure: the W8A8 run
    of ``..._on_one_fetched_build``, "Hi" and three new tokens, is the same build) the other
    prompt emits no Verilog and builds no Verilator model, with the in-process emissions
    dropped as a new process has them; each gives the tokens and logits of ``--sim golden``
    at that depth, which are those of its own depth (the same power-of-two band)."""
    from llmloom.sim import runner, verilated

    def run(prompt, sim, *extra):
        tag = f"{prompt}-{sim}{'-c' if extra else ''}"
        assert main(["generate", "--gguf", str(tiny_gguf), "--prompt", prompt, "--num-layers",
                     "2", "--max-new-tokens", "2", "--json", "--sim", sim, *extra,
                     "--logits", str(tmp_path / f"{tag}.npz"),
                     "--report", str(tmp_path / f"{tag}.json")]) == 0
        assert "note:" not in capsys.readouterr().err
        report = json.loads((tmp_path / f"{tag}.json").read_text())
        with np.load(tmp_path / f"{tag}.npz") as f:
            return report, f["tokens"], f["logits"]

    prompts = ["Hi", "Hey"]
    lengths = [len(tokenizer_of(tiny_gguf).encode(chat_prompt(p))) for p in prompts]
    assert lengths[0] != lengths[1] and max(lengths) + 2 <= 24
    emitted, built, keys, real = [], [], [], runner.structure_of

    def keyed(*a, **kw):
        keys.append(real(*a, **kw))
        return keys[-1]
    monkeypatch.setattr(runner, "structure_of", keyed)
    for k, prompt in enumerate(prompts):
        if k == 1:                  # the first prompt's build made (or found): count from here
            monkeypatch.setattr(runner, "_EMITTED", type(runner._EMITTED)())
            monkeypatch.setattr(runner, "emit_verilog", lambda *a, **kw: emitted.append(a))
            monkeypatch.setattr(verilated, "build", lambda *a, **kw: built.append(a))
        own = run(prompt, "golden")
        want = run(prompt, "golden", "--context", "24")
        got = run(prompt, "verilator", "--context", "24")
        assert got[0]["layer"]["seq"] == want[0]["layer"]["seq"] == 24
        assert own[0]["layer"]["seq"] == lengths[k] + 2
        for x in (want, own):       # own: a depth of the same power-of-two band
            np.testing.assert_array_equal(got[1], x[1])
            np.testing.assert_array_equal(got[2], x[2])
        r = got[0]          # perf's cycles of a 24-position layer, the runs' compute
        assert r["cycles"] - r["weight_wait_cycles"] == r["predicted_cycles"] > 0
    assert emitted == [] and built == []
    assert len(keys) == 2 and keys[0] is not None and keys[0] == keys[1]     # one structure


def test_generate_with_the_kv_cache_in_axi_memory(verilator_sim, tiny_ggufs, tmp_path, cli_json):
    """``--kv axi`` on Verilator: both layers on one fetched build with every layer's KV cache
    in its AXI memory (one working cache on chip) give exactly the golden tokens and logits;
    the report says where the cache was and what the run wrote (each new row of each layer
    once); ``--kv auto`` keeps the tiny model's cache on chip (it fits, perf's rule)."""
    from llmloom.hw.layers.fetched import kv_cache_config
    from llmloom.sim.llm import quantize_llama

    args = ["generate", "--gguf", str(tiny_ggufs["W8A8"]), "--prompt", "Hi", "--num-layers",
            "2", "--max-new-tokens", "3", "--json"]
    runs = {name: cli_json([*args, *extra, "--logits", str(tmp_path / f"{name}.npz"),
                            "--report", str(tmp_path / f"{name}.json")])
            for name, extra in (("golden", ["--sim", "golden"]),
                                ("axi", ["--sim", "verilator", "--kv", "axi"]))}
    assert runs["axi"] == runs["golden"]
    with np.load(tmp_path / "golden.npz") as g, np.load(tmp_path / "axi.npz") as v:
        np.testing.assert_array_equal(v["logits"], g["logits"])
    r = json.loads((tmp_path / "axi.json").read_text())
    assert r["kv"] == "axi" == r["fetched_layer"]["kv"] == r["projection"]["kv"]["placement"]
    cfg = quantize_llama(tiny_ggufs["W8A8"], 2).with_seq(r["layer"]["seq"]).layers[0][0]
    rows = sum(r["passes"])
    assert r["fetched_layer"]["kv_bytes_written"] == 2 * rows * kv_cache_config(cfg).spill_bytes
    golden = json.loads((tmp_path / "golden.json").read_text())
    assert golden["kv"] == "chip" == golden["projection"]["kv"]["placement"]


def test_bad_kv_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--prompt", "Hi", "--kv", "disk"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--kv" in err[0] and "disk" in err[0]
