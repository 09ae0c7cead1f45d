"""Whole checkpoints from the command line: ``llmloom accuracy`` and ``llmloom embed``.

``accuracy``: a real checkpoint's integer layers against its float maths. Prints, per layer,
the output's cosine against float (each layer fed the float input) and each tensor's SQNR,
the outlier channels found, and the chained result (the layers on their own integer outputs);
``--json`` prints the whole :class:`~llmloom.sim.accuracy.AccuracyReport`, ``--plot`` draws
the error per tensor per layer. See :mod:`llmloom.sim.accuracy`.

``embed``: a BERT sentence embedding (mean over the tokens of the last layer's output,
L2-normalised) through the integer layers: the bit-exact model (``--sim golden``, the default)
or the RTL of every layer on a simulator, each layer's output checked against the bit-exact
model. See :mod:`llmloom.sim.model`.
"""

from __future__ import annotations

import json
import sys

from tqdm import tqdm

from .userio import Outputs

__all__ = ["add_subcommands", "cmd_accuracy", "cmd_embed"]

_MODEL_HELP = ("a Hugging Face folder (config.json, model.safetensors, tokenizer.json), its "
               ".safetensors file, or an installed model (all-minilm-l6-v2)")
_CALIB_HELP = ("the text the activation scales are calibrated on (default: a built-in "
               "paragraph, not the judged text)")


def _model_args(p, text_help, scheme_help, scheme_default=None):
    """The arguments both commands take: the model, the text, the calibration text and the
    numerics scheme."""
    from ..hw.layers.description import SCHEMES
    p.add_argument("--model", required=True, metavar="DIR|FILE|NAME", help=_MODEL_HELP)
    p.add_argument("--text", required=True, help=text_help)
    p.add_argument("--calib-text", metavar="TEXT", help=_CALIB_HELP)
    p.add_argument("--scheme", choices=SCHEMES, default=scheme_default, help=scheme_help)


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
    _model_args(p, "the sentence", "the layers' numerics scheme (default dynamic: the one "
                "that holds on trained weights)", scheme_default="dynamic")
    p.add_argument("--sim", choices=(GOLDEN, *SIMULATORS), default=GOLDEN,
                   help="golden: the bit-exact model (default); else every layer's RTL on "
                        "that simulator, checked against it")
    p.add_argument("--json", action="store_true",
                   help="print embedding, tokens, cosine_vs_float (and cycles) as JSON")
    p.set_defaults(func=cmd_embed)


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
    print(f"chosen: {report.scheme} ({report.scheme_text})")
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


class _Differs(Exception):
    """The RTL of a layer gave other integers than the bit-exact model (a bug, not bad input:
    exit status 1)."""


def _rtl_layer(sim, cycles, progress):
    """``run_layer`` for :func:`~llmloom.sim.model.run_layers`: the layer's RTL on ``sim``,
    checked bit for bit against the bit-exact model; each run's cycles appended to
    ``cycles``."""
    import numpy as np

    from ..hw.layers.layer import Layer
    from ..sim import runner
    from ..sim.harness import ControlStreams, get_harness
    from ..sim.model import golden_layer

    def run(cfg, weights, x_int):
        harness = get_harness("bert-layer" if cfg.arch == "bert" else "gpt2-block")
        prepared = {"x_int": np.asarray(x_int, np.int64), "sizes": [len(x_int)]}
        result = runner.run_block(harness, cfg, prepared, sim=sim, prepared=True,
                                  component=ControlStreams(Layer(cfg, weights)),
                                  progress=progress)
        y = result.outputs["y_int"]
        want = golden_layer(cfg, weights, x_int)
        if not np.array_equal(y, want):
            raise _Differs(f"layer {len(cycles)} on {sim} DIFFERS FROM the bit-exact model in "
                           f"{int(np.count_nonzero(y != want))} elements")
        cycles.append(result.cycles)
        return y
    return run


def cmd_embed(args):
    from ..sim.accuracy import DEFAULT_CALIB_TEXT
    from ..sim.golden.layers import cosine
    from ..sim.hf import ModelError, load_model
    from ..sim.model import golden_layer, quantize_model, run_layers, sentence_embedding
    from .verify import GOLDEN

    model = load_model(args.model)
    if model.arch != "bert":
        raise ModelError(f"model {model.name} is a {model.arch} model; embed takes a BERT "
                         "encoder (a sentence embedding is the mean of its last hidden states)")
    ids = model.tokens(args.text)
    calib = args.calib_text if args.calib_text is not None else DEFAULT_CALIB_TEXT
    qm = quantize_model(model, model.tokens(calib, "calibration text"), seq=len(ids),
                        scheme=args.scheme)
    xs, y_float = model.float_inputs(ids)
    cycles = []
    run_layer = golden_layer if args.sim == GOLDEN else _rtl_layer(
        args.sim, cycles, sys.stderr.isatty())
    try:
        with tqdm(total=model.layers, desc=f"embed on {args.sim}", unit="layer", leave=False,
                  disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
            y = run_layers(qm, xs[0], run_layer, progress=lambda n: bar.update(n - bar.n))
    except _Differs as exc:
        print(f"llmloom: {exc}", file=sys.stderr)
        return 1
    e = sentence_embedding(y)
    doc = {"model": model.name, "sim": args.sim, "scheme": args.scheme, "tokens": len(ids),
           "dim": len(e),
           "cosine_vs_float": cosine(e, sentence_embedding(y_float)),
           "cycles": sum(cycles) if cycles else None, "embedding": [float(v) for v in e]}
    if args.json:
        print(json.dumps(doc))
        return 0
    head = ", ".join(f"{v:+.4f}" for v in e[:6])
    rtl = (f"; {doc['cycles']} cycles over {model.layers} layers, bit-exact with the golden "
           f"model" if cycles else "")
    print(f"{model.name}: {len(ids)} tokens → embedding of {len(e)} ({head}, ...); cosine "
          f"against float {doc['cosine_vs_float']:.4f} on {args.sim}{rtl}")
    return 0
