import argparse
import json

import pytest

from llmloom.flows.perf_cli import add_subcommands


def run(capsys, *argv):
    parser = argparse.ArgumentParser(prog="llmloom")
    add_subcommands(parser.add_subparsers(required=True))
    args = parser.parse_args(list(argv))
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_estimate_json_has_the_documented_fields(capsys, tmp_path):
    png = tmp_path / "e.png"
    doc = json.loads(run(capsys, "estimate", "--design", "chen2024-gpt2-u280", "--json",
                         "--plot", str(png)))
    assert doc["schema"] == "llmloom.perf.estimate/1"
    assert doc["prefill"]["latency_s"] > 0 and doc["clock_hz"] == 250e6
    for s in doc["prefill"]["stages"]:
        assert {"name", "cycles", "latency_s", "region"} <= set(s)
    assert doc["decode"]["tokens_per_s"] == pytest.approx(1 / doc["decode"]
                                                          ["latency_s_per_token"])
    assert {"dsp", "lut", "bram36", "uram"} <= set(doc["resources"])
    assert png.read_bytes()[:4] == b"\x89PNG"
    text = run(capsys, "estimate", "--design", "chen2024-gpt2-u280")
    assert "bottleneck" in text and "resources:" in text


def test_explore_save_then_estimate_reads_it_back(capsys, tmp_path):
    cfg = tmp_path / "best.json"
    doc = json.loads(run(capsys, "explore", "--model", "gpt2", "--device", "u280",
                         "--objective", "decode", "--budget-dsp", "400", "--seq", "128",
                         "--json", "--save", str(cfg), "--plot", str(tmp_path / "f.png")))
    assert doc["schema"] == "llmloom.perf.explore/1"
    assert doc["best"]["resources"]["dsp"] <= 400 and doc["front"]
    again = json.loads(run(capsys, "estimate", "--model", "gpt2", "--device", "u280",
                           "--design", str(cfg), "--seq", "128", "--json"))
    assert again["decode"]["latency_s_per_token"] == pytest.approx(
        doc["best"]["decode"]["latency_s_per_token"])
    assert again["design"] == doc["best"]["design"]


def test_compare_rows(capsys, tmp_path):
    doc = json.loads(run(capsys, "compare", "--design", "chen2024-gpt2-u280", "--gpu", "a100",
                         "--seqs", "128,512", "--json", "--plot", str(tmp_path / "c.png")))
    assert [r["seq"] for r in doc["rows"]] == [128, 512]
    for r in doc["rows"]:
        assert {"seq", "fpga_prefill_s", "gpu_prefill_s", "fpga_decode_s_per_token",
                "gpu_decode_s_per_token"} <= set(r)
    assert (tmp_path / "c.png").exists()


def test_user_errors_are_one_line_value_errors(capsys):
    with pytest.raises(ValueError, match="unknown model 'gpt5'; known: .*gpt2-medium"):
        run(capsys, "estimate", "--model", "gpt5", "--device", "u280", "--design",
            "chen2024-gpt2-u280")
    with pytest.raises(ValueError, match="unknown device 'zynq'; known: .*u280"):
        run(capsys, "estimate", "--model", "gpt2", "--device", "zynq", "--design",
            "chen2024-gpt2-u280")
    with pytest.raises(ValueError, match="--device is required"):
        run(capsys, "estimate", "--model", "gpt2")
    with pytest.raises(ValueError, match=r"design file '/nonexistent.json' does not exist"):
        run(capsys, "estimate", "--model", "gpt2", "--device", "u280", "--design",
            "/nonexistent.json")


def test_quant_overrides_the_designs_on_estimate_compare_and_explore(capsys):
    w8 = json.loads(run(capsys, "estimate", "--design", "chen2024-gpt2-u280", "--mode", "decode",
                        "--seq", "128", "--json"))
    w4 = json.loads(run(capsys, "estimate", "--design", "chen2024-gpt2-u280", "--mode", "decode",
                        "--seq", "128", "--json", "--quant", "w4a8-channel"))
    assert w8["quant"] == "W8A8-channel"
    assert w4["quant"] == w4["design"]["quant"] == "W4A8-channel"
    # the FFN's weight stream paces decode: half the bits, about twice the tokens
    assert w4["decode"]["tokens_per_s"] == pytest.approx(2 * w8["decode"]["tokens_per_s"],
                                                         rel=0.05)
    # Q4_1's groups (a 16-bit scale and minimum per 32 weights) are a bit a weight more
    q4 = json.loads(run(capsys, "estimate", "--design", "chen2024-gpt2-u280", "--mode", "decode",
                        "--seq", "128", "--json", "--quant", "w4a8"))
    assert q4["quant"] == "W4A8"
    assert q4["decode"]["tokens_per_s"] == pytest.approx(0.8 * w4["decode"]["tokens_per_s"],
                                                         rel=0.02)
    c = json.loads(run(capsys, "compare", "--design", "chen2024-gpt2-u280", "--gpu", "h200",
                       "--seqs", "128", "--quant", "W4A8-channel", "--json"))
    assert c["design"]["quant"] == "W4A8-channel"
    assert c["rows"][0]["fpga_decode_s_per_token"] == pytest.approx(
        w4["decode"]["latency_s_per_token"])
    e = json.loads(run(capsys, "explore", "--model", "gpt2", "--device", "u280", "--objective",
                       "decode", "--budget-dsp", "300", "--seq", "64", "--quant", "FP16",
                       "--json"))
    assert e["best"]["quant"] == "fp16"


def test_an_unknown_quant_is_one_error_line(capsys):
    from llmloom.flows.cli import main
    assert main(["estimate", "--design", "chen2024-gpt2-u280", "--quant", "W3A8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown quantisation 'W3A8'" in err[0]
