"""``llmloom accuracy``: a real checkpoint's integer layers against its float maths.

Prints, per layer, the output's cosine against float (each layer fed the float input) and each
tensor's SQNR, the outlier channels found, and the chained result (the layers on their own
integer outputs); ``--json`` prints the whole :class:`~llmloom.sim.accuracy.AccuracyReport`,
``--plot`` draws the error per tensor per layer. See :mod:`llmloom.sim.accuracy`.
"""

from __future__ import annotations

import json
import sys

from tqdm import tqdm

from .userio import Outputs

__all__ = ["add_subcommands", "cmd_accuracy"]


def add_subcommands(subparsers):
    p = subparsers.add_parser(
        "accuracy", help="a real checkpoint's bit-exact integer layers against float, per "
                         "layer and per tensor")
    p.add_argument("--model", required=True, metavar="DIR|FILE|NAME",
                   help="a Hugging Face folder (config.json, model.safetensors, "
                        "tokenizer.json), its .safetensors file, or an installed model "
                        "(all-minilm-l6-v2)")
    p.add_argument("--text", required=True, help="the text judged")
    p.add_argument("--calib-text", metavar="TEXT",
                   help="the text the activation scales are calibrated on (default: a built-in "
                        "paragraph, not the judged text)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="write the error per tensor per layer")
    p.set_defaults(func=cmd_accuracy)


def cmd_accuracy(args):
    from ..sim.accuracy import model_accuracy, plot_accuracy
    from ..sim.hf import load_model

    out = Outputs()
    out.add(args.plot, "--plot")
    fmt = Outputs.plot_format(args.plot) if args.plot else None
    model = load_model(args.model)
    with tqdm(total=model.layers, desc=f"accuracy {model.name}", unit="layer", leave=False,
              disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
        report = model_accuracy(model, args.text, args.calib_text,
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
    print(f"scheme: {report.scheme}")
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
