"""``llmloom validate``: the model against measured boards (perf/data/measured.json)."""

import json

import pytest

from llmloom.flows.cli import main
from llmloom.perf import ConfigError, estimate, gpu_estimate
from llmloom.perf.validate import TARGET, TARGET_HELD_OUT, load_measured, predict, validate


@pytest.fixture(scope="module")
def doc():
    return validate()


# the rows the issue asks for, each within its target (20 %; held out of any fitting: 25 %)
ISSUE_ROWS = ("chen2024-bert-layer", "allo-gpt2-medium-w4a8-decode",
              "allo-gpt2-medium-w4a8-ttft", "a100-gpt2-medium-decode",
              "chen2024-gpt2-decode-vs-a100", "streamtensor-gpt2-medium-u55c-decode")


# StreamTensor's own tables (Ye and Chen, MICRO 2025): its decode at both ends of Table 4, the
# A100's TTFT and the decode speedup of Table 5, and Allo's 32-token TTFT as Table 4 reprints it
PUBLISHED_ROWS = ("streamtensor-gpt2-medium-u55c-decode-256", "a100-gpt2-medium-ttft",
                  "streamtensor-gpt2-decode-vs-a100", "allo-gpt2-medium-w4a8-ttft-32",
                  "streamtensor-gpt2-medium-u55c-ttft", "streamtensor-gpt2-medium-u55c-ttft-256")


@pytest.mark.parametrize("name", ISSUE_ROWS + PUBLISHED_ROWS)
def test_the_measured_rows_are_explained(doc, name):
    row = next(r for r in doc["rows"] if r["name"] == name)
    assert row["target"] == (TARGET_HELD_OUT if row["held_out"] else TARGET)
    assert abs(row["error"]) <= row["target"], row


def test_every_predicted_row_meets_its_target(doc):
    """The issue's target: every measured row within 20 %, held-out rows within 25 %."""
    summary = doc["summary"]
    assert summary["within_target"] == summary["predicted"], [
        (r["name"], r["error"]) for r in doc["rows"] if r["within"] is False]


def test_rows_that_set_a_constant_are_not_held_out(doc):
    rows = {r["name"]: r for r in doc["rows"]}
    assert not rows["allo-gpt2-medium-w4a8-decode"]["held_out"]   # spatial.PORT_EFFICIENCY
    assert not rows["a100-gpt2-medium-decode"]["held_out"]        # eager dispatch
    assert rows["chen2024-gpt2-decode-vs-a100"]["held_out"]
    assert rows["chen2024-bert-layer"]["held_out"]
    # reference rows have no prediction
    dfx = rows["dfx-gpt2-medium-fp16-decode"]
    assert dfx["predicted"] is None and dfx["error"] is None and dfx["reason"]


def test_the_ratios_to_dfx_are_the_groups_measurements_over_dfxs():
    """Chen et al.'s 1.10x DFX decode and 2.16x prefill rest on DFX as StreamTensor's Table 4
    reprints it (one U280, FP16): the group's 204.05 tok/s and 81.50 ms over DFX's 185.19
    tok/s and 177.20 ms, so the rows that predict them are the group's W4A8 rows."""
    rows = {r["name"]: r for r in load_measured()["rows"]}
    dfx = rows["dfx-gpt2-medium-fp16-decode"]["measured"]
    assert rows["allo-gpt2-medium-w4a8-decode"]["measured"] / dfx == pytest.approx(
        rows["chen2024-gpt2-decode-vs-dfx"]["measured"], abs=0.005)
    assert 177.20 / rows["allo-gpt2-medium-w4a8-ttft-32"]["measured"] == pytest.approx(
        rows["chen2024-gpt2-prefill-vs-dfx"]["measured"], abs=0.02)


def test_the_publications_verdicts_are_reproduced(doc):
    assert doc["verdicts"]
    for v in doc["verdicts"]:
        assert v["reproduced"], v
    assert {(v["phase"], v["winner"]) for v in doc["verdicts"]} == {("decode", "fpga"),
                                                                     ("prefill", "gpu")}
    # StreamTensor's: its U55C decodes faster than the A100, the A100 reaches the first
    # token sooner
    st = {v["phase"]: v for v in doc["verdicts"] if v["publication"].startswith("StreamTensor")}
    assert st["decode"]["winner"] == "fpga" and st["prefill"]["winner"] == "gpu"


def test_streamtensors_ttft_with_its_mac_total_fitted_to_one_row(doc):
    """StreamTensor's TTFT with its design as published (kernels reading streams in
    production order) and its one unpublished number, the MAC total, fitted to the 256-token
    row: that row names the constant and is not held out; the 32-token row is held out and
    within 25 %; its decode rows stay within target; and re-running the fit gives the
    preset's value (the constant is held to its row)."""
    from llmloom.perf.presets import (
        STREAMTENSOR_FIT_ROW,
        STREAMTENSOR_LINEAR_COLS,
        streamtensor_design,
    )
    from llmloom.perf.validate import fit
    rows = {r["name"]: r for r in doc["rows"]}
    fitted = rows[STREAMTENSOR_FIT_ROW]
    assert fitted["name"] == "streamtensor-gpt2-medium-u55c-ttft-256"
    assert not fitted["held_out"] and fitted["fits"] == ["presets.STREAMTENSOR_LINEAR_COLS"]
    assert abs(fitted["error"]) <= TARGET
    held = rows["streamtensor-gpt2-medium-u55c-ttft"]
    assert held["held_out"] and held["fits"] == [] and held["target"] == TARGET_HELD_OUT
    assert held["within"] and "held out" in held["assumptions"]
    for name in ("streamtensor-gpt2-medium-u55c-decode",
                 "streamtensor-gpt2-medium-u55c-decode-256"):
        assert rows[name]["within"], rows[name]
    best, errors = fit(STREAMTENSOR_FIT_ROW, range(1, 17), streamtensor_design)
    assert best == STREAMTENSOR_LINEAR_COLS
    assert errors[best] == pytest.approx(fitted["error"])
    # more MACs, a shorter prefill: the fit is a crossing, not an edge of the range
    assert errors[best - 1] > 0 > errors[best + 1]


def test_fit_names_a_bad_row():
    from llmloom.perf.presets import streamtensor_design
    from llmloom.perf.validate import fit
    with pytest.raises(ConfigError, match="unknown measured row 'nope'"):
        fit("nope", [8], streamtensor_design)
    with pytest.raises(ConfigError, match="fit needs an fpga row"):
        fit("a100-gpt2-medium-decode", [8], streamtensor_design)


def test_predictions_are_the_models_for_the_described_design():
    rows = {r["name"]: r for r in load_measured()["rows"]}
    w4 = rows["allo-gpt2-medium-w4a8-decode"]
    doc = estimate("gpt2-medium", "u280", "chen2024-gpt2-u280", mode="decode", seq=128,
                   quant="W4A8-channel")
    assert predict(w4) == pytest.approx(doc["decode"]["tokens_per_s"])
    # another quantisation, another prediction: nothing is stored but the measurement
    assert predict({**w4, "quant": "W8A8-channel"}) < 0.6 * predict(w4)
    a100 = rows["a100-gpt2-medium-decode"]
    assert predict(a100) == pytest.approx(
        1 / gpu_estimate("gpt2-medium", "a100", "decode", seq=128)["latency_s"])


def test_validate_cli_json_and_table(capsys):
    assert main(["validate", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["schema"] == "llmloom.perf.validate/1"
    for r in out["rows"]:
        assert {"name", "predicted", "measured", "error", "held_out"} <= set(r)
    assert main(["validate"]) == 0
    text = capsys.readouterr().out
    assert "chen2024-bert-layer" in text and "verdicts reproduced" in text


@pytest.mark.parametrize("content, message", [
    ("{", "not valid JSON"),
    ('{"rows": [{"name": "x"}]}', "row 0: needs a non-empty string 'source'"),
    ('{"rows": [{"name": "x", "source": "s", "conditions": "c", "kind": "fpga", "unit": "u", '
     '"measured": 1, "metric": "tokens_per_s", "model": "gpt2", "device": "u280", '
     '"design": "chen2024-gpt2-u280", "mode": "decode", "seq": 64, "colour": 1}]}',
     "unknown field 'colour'"),
    ('{"rows": [{"name": "x", "source": "s", "conditions": "c", "kind": "guess", "unit": "u", '
     '"measured": 1}]}', "kind 'guess' is not allowed"),
])
def test_bad_measured_data_is_one_error_line(tmp_path, capsys, content, message):
    path = tmp_path / "m.json"
    path.write_text(content)
    assert main(["validate", "--data", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
