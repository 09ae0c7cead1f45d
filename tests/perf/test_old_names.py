"""Design files written before the kernels took the ``hw`` stage names (``p``, ``a1``, ``a2`` for
``o``, ``qk``, ``pv``) still load, read as the new names, with one note saying so."""

import argparse
import json
import warnings

import pytest

from llmloom.flows.perf_cli import add_subcommands
from llmloom.perf import ConfigError, Design, load_design
from llmloom.perf.design import OldNamesWarning

LIN = {"rows": 8, "cols": 16, "packing": 2, "channels": 1}
ATT = {"rows": 8, "cols": 8, "packing": 1, "channels": 1}
# as `llmloom explore --save` wrote it before the rename, written out by hand
OLD = {"name": "old-names", "clock_mhz": 250, "quant": "W8A8", "token_tile": 8,
       "kernels": {"q": LIN, "k": LIN, "v": LIN, "a1": ATT, "a2": ATT, "p": LIN, "f1": LIN,
                   "f2": LIN},
       "lanes": {"softmax": 8, "norm": 8, "act": 16}, "layers_on_chip": 1, "weights": "stream",
       "decode_kernel": "gemv", "double_buffer": True,
       "regions": {"q": "SLR0", "k": "SLR0", "v": "SLR0", "a1": "SLR1", "softmax": "SLR1",
                   "a2": "SLR1", "p": "SLR1", "f1": "SLR2", "act": "SLR2", "f2": "SLR2"}}
RENAME = {"p": "o", "a1": "qk", "a2": "pv"}
NEW = {**OLD, "kernels": {RENAME.get(k, k): v for k, v in OLD["kernels"].items()},
       "regions": {RENAME.get(k, k): v for k, v in OLD["regions"].items()}}


def _write(tmp_path, name, values):
    path = tmp_path / name
    path.write_text(json.dumps(values, indent=2))
    return path


def test_old_kernel_names_load_as_the_new_with_a_warning(tmp_path):
    old = _write(tmp_path, "old.json", OLD)
    with pytest.warns(OldNamesWarning) as got:
        design = load_design(old)
    assert [str(w.message) for w in got] == [
        f"design file {old} uses the old kernel names p, a1, a2; read as o, qk, pv"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # the new names: no warning
        assert design == load_design(_write(tmp_path, "new.json", NEW))
    assert set(design.kernels) == {"q", "k", "v", "qk", "pv", "o", "f1", "fg", "f2"}
    assert design.regions["o"] == "SLR1" and design.regions["act"] == "SLR2"
    assert "p" not in design.to_dict()["kernels"]       # saved again: the new names
    one_old = {("a2" if k == "pv" else k): v for k, v in NEW["kernels"].items()}
    with pytest.warns(OldNamesWarning, match="^design uses the old kernel names a2; read as pv$"):
        assert Design.from_dict({**NEW, "kernels": one_old}) == design


def test_old_and_new_name_of_one_kernel_is_an_error():
    with pytest.raises(ConfigError, match="kernels has both 'p' and 'o'"):
        Design.from_dict({**NEW, "kernels": {**NEW["kernels"], "p": LIN}})
    with pytest.raises(ConfigError, match=r"unknown kernel 'a1' \(the old name of 'qk'\)"):
        Design(clock_mhz=250, kernels={**NEW["kernels"], "a1": ATT})


def _run(capsys, *argv):
    parser = argparse.ArgumentParser(prog="llmloom")
    add_subcommands(parser.add_subparsers(required=True))
    args = parser.parse_args(list(argv))
    assert args.func(args) == 0
    return capsys.readouterr()


@pytest.mark.parametrize("command", ["estimate", "compare"])
def test_the_cli_notes_old_names_once_and_estimates_the_same(capsys, tmp_path, command):
    old, new = _write(tmp_path, "old.json", OLD), _write(tmp_path, "new.json", NEW)
    extra = ["--gpu", "a100", "--seqs", "128"] if command == "compare" else ["--seq", "128"]
    argv = [command, "--model", "gpt2", "--device", "u280", "--json", *extra]
    got = _run(capsys, *argv, "--design", str(old))
    assert got.err.splitlines() == [f"llmloom: note: design file {old} uses the old kernel "
                                    "names p, a1, a2; read as o, qk, pv"]
    want = _run(capsys, *argv, "--design", str(new))
    assert want.err == ""
    assert json.loads(got.out) == json.loads(want.out)
