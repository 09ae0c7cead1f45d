"""The model against measured boards and GPUs: ``perf/data/measured.json`` (its rows described
in its ``about``), each row's prediction computed from the design or workload it describes,
and the publications' FPGA-versus-GPU verdicts (``llmloom validate``).

A row's ``kind`` says how it is predicted:

- ``fpga``: :func:`~llmloom.perf.estimate.estimate` of ``model`` on ``device`` with ``design``
  (a preset or a design dict), ``quant`` overriding the design's, ``mode``, ``seq``,
  ``context`` (default: ``seq``), ``batch``;
- ``gpu``: :func:`~llmloom.perf.gpu.gpu_estimate` of ``model`` on ``gpu`` with ``runtime``
  and ``quant``;
- ``speedup``: the GPU's time over the FPGA's for ``mode``, from an ``fpga`` and a ``gpu``
  part as above;
- ``reference``: a measurement the model does not describe (its ``reason``), kept because
  other rows are stated relative to it; no prediction.

``metric`` is ``tokens_per_s`` (decode), ``ttft_ms`` (prefill latency), ``ms_per_layer``
(prefill latency over the layers) or ``speedup``. A row whose ``fits`` names constants was
used to set them and is not held out; the targets are 20 % for every row, 25 % for held-out
ones (:data:`TARGET`, :data:`TARGET_HELD_OUT`). :func:`fit` sets a design's unpublished
number from one row (which then names it in ``fits``).
"""

from __future__ import annotations

import json
import pathlib

from .errors import ConfigError, ConstraintError
from .estimate import estimate
from .gpu import gpu_estimate
from .models import get_model

__all__ = ["MEASURED", "VALIDATE_SCHEMA", "TARGET", "TARGET_HELD_OUT", "load_measured",
           "validate", "predict", "fit"]

MEASURED = pathlib.Path(__file__).parent / "data" / "measured.json"
VALIDATE_SCHEMA = "llmloom.perf.validate/1"
TARGET = 0.20
TARGET_HELD_OUT = 0.25
_KINDS = ("fpga", "gpu", "speedup", "reference")
_METRICS = {"fpga": ("tokens_per_s", "ttft_ms", "ms_per_layer"), "gpu": ("tokens_per_s",
                                                                         "ttft_ms"),
            "speedup": ("speedup",), "reference": (None,)}
_FPGA_KEYS = {"model", "device", "design", "quant", "mode", "seq", "context", "batch"}
_GPU_KEYS = {"model", "gpu", "runtime", "quant", "mode", "seq", "context", "batch"}
_ROW_KEYS = {"name", "source", "conditions", "kind", "unit", "measured", "measured_range",
             "metric", "fits", "assumptions", "reason", "mode"}
_KIND_KEYS = {"fpga": _FPGA_KEYS, "gpu": _GPU_KEYS, "speedup": {"fpga", "gpu"},
              "reference": set()}


def load_measured(path=None):
    """The measured rows and verdicts: ``{"rows": [...], "verdicts": [...]}`` of ``path``
    (default :data:`MEASURED`), each row checked (a bad one raises :class:`ConfigError`
    naming it)."""
    path = pathlib.Path(path) if path is not None else MEASURED
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"measured data file {str(path)!r} does not exist") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise ConfigError(f"{path}: needs an object with a list of \"rows\"")
    names = set()
    for i, row in enumerate(doc["rows"]):
        _check_row(row, f"{path}: row {i}")
        if row["name"] in names:
            raise ConfigError(f"{path}: row name {row['name']!r} appears twice")
        names.add(row["name"])
    verdicts = doc.get("verdicts", [])
    if not isinstance(verdicts, list):
        raise ConfigError(f"{path}: \"verdicts\" must be a list")
    for i, v in enumerate(verdicts):
        where = f"{path}: verdict {i}"
        if not isinstance(v, dict) or v.get("winner") not in ("fpga", "gpu") \
                or v.get("phase") not in ("prefill", "decode") or not v.get("publication"):
            raise ConfigError(f"{where}: needs publication, phase (prefill | decode), winner "
                              "(fpga | gpu), fpga and gpu")
        _check_part(v.get("fpga"), _FPGA_KEYS, ("model", "device", "design"), f"{where}.fpga")
        _check_part(v.get("gpu"), _GPU_KEYS, ("model", "gpu"), f"{where}.gpu")
    return {"rows": doc["rows"], "verdicts": verdicts}


def _check_part(part, allowed, required, where):
    if not isinstance(part, dict):
        raise ConfigError(f"{where}: must be an object")
    bad = sorted(set(part) - allowed)
    if bad:
        raise ConfigError(f"{where}: unknown field {bad[0]!r}; allowed: "
                          f"{', '.join(sorted(allowed))}")
    missing = [k for k in required if k not in part]
    if missing:
        raise ConfigError(f"{where}: lacks {', '.join(missing)}")


def _check_row(row, where):
    if not isinstance(row, dict):
        raise ConfigError(f"{where}: must be an object")
    for key in ("name", "source", "conditions", "kind", "unit"):
        if not isinstance(row.get(key), str) or not row[key]:
            raise ConfigError(f"{where}: needs a non-empty string {key!r}")
    where = f"{where} ({row['name']})"
    kind = row["kind"]
    if kind not in _KINDS:
        raise ConfigError(f"{where}: kind {kind!r} is not allowed; allowed: "
                          f"{' | '.join(_KINDS)}")
    allowed = _ROW_KEYS | _KIND_KEYS[kind]
    bad = sorted(set(row) - allowed)
    if bad:
        raise ConfigError(f"{where}: unknown field {bad[0]!r}; allowed for kind {kind}: "
                          f"{', '.join(sorted(allowed))}")
    m = row.get("measured")
    if isinstance(m, bool) or not isinstance(m, int | float) or m <= 0:
        raise ConfigError(f"{where}: measured={m!r} must be a positive number")
    if not isinstance(row.get("fits", []), list):
        raise ConfigError(f"{where}: fits must be a list of constant names")
    if row.get("metric") not in _METRICS[kind]:
        raise ConfigError(f"{where}: metric {row.get('metric')!r} is not allowed for kind "
                          f"{kind}; allowed: {' | '.join(str(x) for x in _METRICS[kind])}")
    if kind == "fpga":
        _check_part({k: row[k] for k in _FPGA_KEYS if k in row}, _FPGA_KEYS,
                    ("model", "device", "design", "mode", "seq"), where)
    elif kind == "gpu":
        _check_part({k: row[k] for k in _GPU_KEYS if k in row}, _GPU_KEYS,
                    ("model", "gpu", "mode", "seq"), where)
    elif kind == "speedup":
        if row.get("mode") not in ("prefill", "decode"):
            raise ConfigError(f"{where}: mode must be prefill | decode")
        _check_part(row.get("fpga"), _FPGA_KEYS, ("model", "device", "design"),
                    f"{where}.fpga")
        _check_part(row.get("gpu"), _GPU_KEYS, ("model", "gpu"), f"{where}.gpu")
    elif not row.get("reason"):
        raise ConfigError(f"{where}: a reference row says why it is not predicted (reason)")


def _fpga_seconds(part, mode):
    """Seconds of one prefill, or per decoded token, of an ``fpga`` part."""
    seq = part.get("seq", 512)
    doc = estimate(part["model"], part["device"], part["design"], mode=mode, seq=seq,
                   context=part.get("context"), batch=part.get("batch", 1),
                   quant=part.get("quant"), progress=False)
    return doc["prefill"]["latency_s"] if mode == "prefill" else \
        doc["decode"]["latency_s_per_token"]


def _gpu_seconds(part, mode):
    seq = part.get("seq", 512)
    g = gpu_estimate(part["model"], part["gpu"], mode, seq=seq, context=part.get("context"),
                     batch=part.get("batch", 1), quant=part.get("quant", "fp16"),
                     runtime=part.get("runtime", "eager"))
    return g["latency_s"]


def predict(row):
    """The model's value of ``row``'s metric (``None`` for a reference row)."""
    kind, metric = row["kind"], row.get("metric")
    if kind == "reference":
        return None
    if kind == "speedup":
        mode = row["mode"]
        return _gpu_seconds(row["gpu"], mode) / _fpga_seconds(row["fpga"], mode)
    mode = row["mode"]
    t = _fpga_seconds(row, mode) if kind == "fpga" else _gpu_seconds(row, mode)
    batch = row.get("batch", 1)
    if metric == "tokens_per_s":
        return batch / t if mode == "decode" else batch * row["seq"] / t
    if metric == "ttft_ms":
        return t * 1e3
    return t * 1e3 / get_model(row["model"]).n_layers      # ms_per_layer


def fit(row_name, candidates, design_of, path=None):
    """Fit one unpublished number of a design to measured row ``row_name`` (an ``fpga`` row):
    the candidate value whose design, ``design_of(value)``, predicts the row with the smallest
    relative error. Candidates whose design breaks a device constraint are skipped.

    Returns ``(best, {value: error})``; raises :class:`ConfigError` for an unknown or
    non-``fpga`` row, or when no candidate is feasible."""
    rows = {r["name"]: r for r in load_measured(path)["rows"]}
    if row_name not in rows:
        raise ConfigError(f"unknown measured row {row_name!r}; allowed: "
                          f"{', '.join(sorted(rows))}")
    row = rows[row_name]
    if row["kind"] != "fpga":
        raise ConfigError(f"row {row_name!r} is of kind {row['kind']}; fit needs an fpga row")
    errors = {}
    for value in candidates:
        try:
            errors[value] = predict({**row, "design": design_of(value)}) / row["measured"] - 1
        except ConstraintError:
            continue
    if not errors:
        raise ConfigError(f"no candidate design is feasible for row {row_name!r}")
    best = min(errors, key=lambda v: abs(errors[v]))
    return best, errors


def validate(path=None):
    """``llmloom.perf.validate/1``: per measured row its prediction, relative error
    (predicted / measured − 1), ``held_out`` and whether it meets its target; per verdict
    the predicted winner."""
    data = load_measured(path)
    rows = []
    for row in data["rows"]:
        pred = predict(row)
        held_out = not row.get("fits")
        target = TARGET_HELD_OUT if held_out else TARGET
        err = None if pred is None else pred / row["measured"] - 1
        rows.append({"name": row["name"], "kind": row["kind"], "source": row["source"],
                     "conditions": row["conditions"], "metric": row.get("metric"),
                     "unit": row["unit"], "predicted": pred, "measured": row["measured"],
                     "error": err, "held_out": held_out, "fits": list(row.get("fits", [])),
                     "target": target, "within": None if err is None else abs(err) <= target,
                     **({"reason": row["reason"]} if "reason" in row else {}),
                     **({"assumptions": row["assumptions"]} if "assumptions" in row else {})})
    verdicts = []
    for v in data["verdicts"]:
        t_fpga = _fpga_seconds(v["fpga"], v["phase"])
        t_gpu = _gpu_seconds(v["gpu"], v["phase"])
        got = "fpga" if t_fpga < t_gpu else "gpu"
        verdicts.append({"publication": v["publication"], "phase": v["phase"],
                         "winner": v["winner"], "predicted_winner": got,
                         "fpga_s": t_fpga, "gpu_s": t_gpu, "speedup": t_gpu / t_fpga,
                         "reproduced": got == v["winner"]})
    judged = [r for r in rows if r["within"] is not None]
    return {"schema": VALIDATE_SCHEMA, "data": str(path or MEASURED), "rows": rows,
            "verdicts": verdicts,
            "summary": {"rows": len(rows), "predicted": len(judged),
                        "within_target": sum(r["within"] for r in judged),
                        "held_out": sum(r["held_out"] for r in judged),
                        "verdicts_reproduced": sum(v["reproduced"] for v in verdicts),
                        "verdicts": len(verdicts)}}
