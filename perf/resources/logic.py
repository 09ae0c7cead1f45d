"""The fitted part of the resource model: the LUTs and FFs of each block's own logic (what is
left once its memories and multipliers are counted), a linear function of a few features per
block and family. The coefficients are data, ``perf/data/resource_logic.json``: least-squares
fits of our own Yosys runs (``llmloom.flows.resources.fit_logic`` over the stored baselines of
the designs in ``FIT_DESIGNS``), written by ``bench/resources.py --refit --write``
(:func:`write_logic`); ``tests/flows/test_resource_model.py`` holds them to the refit."""

from __future__ import annotations

import json
from pathlib import Path

from .mapping import Bill

__all__ = ["LOGIC", "LOGIC_PATH", "LogicBill", "logic_bill", "load_logic", "write_logic"]

class LogicBill(Bill):
    """The fitted logic of one block: ``coef · features`` from :data:`LOGIC`, with separate
    features for LUTs and FFs. Keeps its block name and features, so that
    ``llmloom.flows.resources.fit_logic`` can refit the coefficients from synthesis results."""

    def __init__(self, block, features, lut, ff):
        super().__init__(lut=lut, ff=ff)
        self.block = block
        self.features = features        # {"lut": {name: value}, "ff": {name: value}}


#: Where the coefficients are stored.
LOGIC_PATH = Path(__file__).resolve().parent.parent / "data" / "resource_logic.json"


def load_logic(path=LOGIC_PATH):
    """``{block: {family: {"lut": {feature: coefficient}, "ff": {...}}}}`` from ``path``."""
    return json.loads(Path(path).read_text())


def write_logic(coefs, path=LOGIC_PATH):
    """Store refitted coefficients (:func:`load_logic`'s form) as the model's, and use them
    from now on in this process too."""
    Path(path).write_text(json.dumps(coefs, indent=1) + "\n")
    LOGIC.clear()
    LOGIC.update(load_logic(path))


#: LUTs and FFs of each block's own logic, per family: ``{"lut": {feature: coefficient},
#: "ff": {...}}`` over the block's features (``one`` is the constant), as
#: :data:`LOGIC_PATH` holds them. Fitted by least squares to the stored Yosys 0.70 baselines
#: (``flows/baselines/<target>.json``) of the designs in ``llmloom.flows.resources.FIT_DESIGNS``.
LOGIC: dict = load_logic()


def logic_bill(block, fam, *, lut_features=None, ff_features=None, **features):
    """The fitted logic of ``block`` on ``fam`` for these features (the same for LUTs and FFs
    unless ``lut_features``/``ff_features`` are given); ``one`` is added to each."""
    feats = {"lut": {"one": 1, **(lut_features if lut_features is not None else features)},
             "ff": {"one": 1, **(ff_features if ff_features is not None else features)}}
    coefs = LOGIC.get(block, {}).get(fam.name)
    if coefs is None:
        return LogicBill(block, feats, 0.0, 0.0)
    val = {r: sum(coefs[r].get(k, 0.0) * v for k, v in feats[r].items()) for r in feats}
    return LogicBill(block, feats, max(0.0, val["lut"]), max(0.0, val["ff"]))
