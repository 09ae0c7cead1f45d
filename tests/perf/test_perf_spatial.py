import pytest

from llmloom.perf import (
    ConfigError,
    ConstraintError,
    Design,
    KernelDesign,
    estimate,
    get_fpga,
    get_model,
    get_preset,
    workload,
)
from llmloom.perf.workload import get_quant


def uniform(rows, cols, packing=2, **kw):
    k = KernelDesign(rows=rows, cols=cols, packing=packing)
    return Design(clock_mhz=kw.pop("clock_mhz", 250), kernels={n: k for n in
                  ("q", "k", "v", "qk", "pv", "o", "f1", "f2")}, **kw)


def test_paper_presets_are_in_the_papers_ballpark():
    bert = estimate(None, None, "chen2024-bert-u280")
    assert bert["model"] == "bert-base" and bert["decode"] is None
    assert bert["clock_hz"] == 245e6 and bert["quant"] == "W4A8-channel"
    # equal arrays: the FFN (4x the work) is the bottleneck, compute-bound
    assert bert["prefill"]["bottleneck"] in ("f1", "f2")
    assert bert["prefill"]["bound"] == "compute"
    gpt = estimate(None, None, "chen2024-gpt2-u280")
    stages = {s["name"]: s for s in gpt["prefill"]["stages"]}
    assert stages["q"]["region"] == "SLR0" and stages["qk"]["region"] == "SLR1"
    assert stages["f1"]["region"] == "SLR2"
    # the paper's closed form, (1/f)·N·(l·d²/M + l·d·d_ff/M) with M = 256, within 10%
    n, l, d = 24, 512, 1024
    paper = n * (l * d * d / 256 + l * d * 4 * d / 256) / 250e6
    assert gpt["prefill"]["latency_s"] == pytest.approx(paper, rel=0.10)
    # decode: one HBM channel per weight matrix makes it bandwidth-bound
    assert gpt["decode"]["bound"] == "memory"
    # the arrays, plus the non-linear units as the per-block resource model costs them
    # (perf.resources, fitted to our synthesis): softmax 8 lanes, two norms 8, GELU 16
    from llmloom.perf.spatial import unit_cost
    units = sum(lanes * unit_cost(u)["lane"]["dsp"] + unit_cost(u)["fixed"]["dsp"]
                for u, lanes in (("softmax", 8), ("norm", 8), ("norm", 8), ("act", 16)))
    assert units > 0
    assert gpt["resources"]["dsp"] == 6 * 128 + 2 * 64 + units


@pytest.mark.parametrize("model, design", [
    ("gpt2-medium", "chen2024-gpt2-u280"),
    ("gpt2-medium", None),
    ("llama-2-7b", None),
])
def test_decode_is_never_faster_than_weight_bytes_over_bandwidth(model, design):
    doc = estimate(model, "u280", design, mode="decode", seq=256, progress=False)
    if doc["weights"] == "stream":
        m = get_model(model)
        bw = get_fpga("u280").memory.bandwidth
        floor = workload(m, "decode", context=256, quant=doc["quant"]).weight_bytes / bw
        assert doc["decode"]["latency_s_per_token"] >= floor
        assert doc["decode"]["latency_s_per_token"] >= doc["decode"]["bandwidth_floor_s"]


def test_broken_constraints_name_the_constraint_and_by_how_much():
    with pytest.raises(ConstraintError,
                       match=r"design needs [\d,]+ DSP, device xc7a100t has 240 \(\d+\.\d% over\)"):
        estimate("gpt2", "artix7-100t", uniform(8, 16), mode="prefill", seq=64)
    with pytest.raises(ConstraintError, match=r"DSP, device xcu280 SLR\d has 3,008"):
        estimate("gpt2", "u280", uniform(32, 32, packing=2).replace(layers_on_chip=2),
                 mode="prefill", seq=64)
    with pytest.raises(ConstraintError, match="MACs per DSP .packing. for W8A8") as e:
        estimate("gpt2", "u280", uniform(4, 4, packing=4), mode="prefill", seq=64)
    assert e.value.need == 4 and e.value.have == 2
    with pytest.raises(ConstraintError, match="GB of off-chip"):
        estimate("llama-2-70b", "u280", uniform(4, 4), mode="decode", seq=64)
    with pytest.raises(ConstraintError, match="BRAM36 blocks|URAM288 blocks"):
        estimate("gpt2-xl", "u280", uniform(4, 4).replace(weights="on_chip"), mode="prefill",
                 seq=64)


def test_weights_go_on_chip_when_they_fit_and_that_is_not_slower():
    # GPT-2 small (85 MB at 8 bits) does not fit one U280 (~43 MB on chip); two layers per
    # board over six boards do
    auto = estimate("gpt2", "u280", uniform(4, 8, weights="auto"), mode="decode", seq=64,
                    devices=6)
    stream = estimate("gpt2", "u280", uniform(4, 8, weights="stream"), mode="decode", seq=64,
                      devices=6)
    one = estimate("gpt2", "u280", uniform(4, 8, weights="auto"), mode="decode", seq=64)
    assert one["weights"] == "stream"
    assert auto["weights"] == "on_chip" and stream["weights"] == "stream"
    assert auto["decode"]["latency_s_per_token"] <= stream["decode"]["latency_s_per_token"]
    assert auto["decode"]["offchip_bytes"] < stream["decode"]["offchip_bytes"]
    assert auto["resources"]["uram"] > stream["resources"]["uram"]


def test_bigger_arrays_and_more_layers_on_chip_speed_up_prefill():
    small = estimate("gpt2", "u280", uniform(4, 8), mode="prefill", seq=256)
    big = estimate("gpt2", "u280", uniform(8, 16), mode="prefill", seq=256)
    two = estimate("gpt2", "u280", uniform(8, 16, layers_on_chip=2), mode="prefill", seq=256)
    assert big["prefill"]["latency_s"] < small["prefill"]["latency_s"] / 3
    assert two["prefill"]["latency_s"] < big["prefill"]["latency_s"]
    assert two["resources"]["dsp"] > big["resources"]["dsp"]


def test_gemv_decode_beats_the_hw_gemm_at_one_token():
    gemv = estimate("gpt2", "u280", uniform(8, 16, weights="on_chip"), mode="decode", seq=64,
                    devices=6)
    gemm = estimate("gpt2", "u280", uniform(8, 16, weights="on_chip", decode_kernel="gemm"),
                    mode="decode", seq=64, devices=6)
    # the output-stationary GEMM uses one row of 8 for a single token
    assert gemm["decode"]["latency_s_per_token"] > 4 * gemv["decode"]["latency_s_per_token"]


def test_multi_fpga_pipeline_and_tensor_parallelism():
    d = uniform(8, 16)
    one = estimate("gpt2-xl", "u280", d, mode="prefill", seq=256)
    tp = estimate("gpt2-xl", "u280", d, mode="prefill", seq=256, devices=5, parallel="tp")
    pp = estimate("gpt2-xl", "u280", d, mode="prefill", seq=256, devices=4, parallel="pp")
    assert tp["parallel"] == {"tp": 5, "pp": 1} and pp["parallel"] == {"tp": 1, "pp": 4}
    assert tp["prefill"]["latency_s"] < one["prefill"]["latency_s"] / 2
    assert pp["prefill"]["latency_s"] < one["prefill"]["latency_s"]
    assert any(s["bound"] == "link" or s["name"] == "ar1" for s in tp["prefill"]["stages"])
    best = estimate("gpt2-xl", "u280", d, mode="prefill", seq=256, devices=4, parallel="best")
    for split in ("tp", "pp"):
        other = estimate("gpt2-xl", "u280", d, mode="prefill", seq=256, devices=4,
                         parallel=split) if split == "pp" else None
        if other:
            assert best["prefill"]["latency_s"] <= other["prefill"]["latency_s"]
    # pipeline parallelism lets a model that cannot stream from one board's HBM fit
    with pytest.raises(ConstraintError):
        estimate("llama-2-13b", "u280", uniform(4, 4), mode="decode", seq=64)
    ok = estimate("llama-2-13b", "u280", uniform(4, 4), mode="decode", seq=64, devices=4)
    assert ok["decode"]["latency_s_per_token"] > 0
    with pytest.raises(ConfigError, match="tp=5 does not divide"):
        estimate("gpt2", "u280", d, mode="prefill", seq=64, devices=5, parallel="tp")
    with pytest.raises(ConfigError, match="no inter-FPGA link"):
        estimate("gpt2", "ecp5-85f", uniform(1, 1, packing=1), mode="prefill", seq=8,
                 devices=2)


def test_design_json_roundtrip_and_bad_designs(tmp_path):
    from llmloom.perf import load_design, save_design
    d = get_preset("chen2024-gpt2-u280").design
    path = tmp_path / "d.json"
    save_design(d, path)
    assert load_design(path) == d
    bad = d.to_dict()
    bad["kernels"]["q"] = {"rows": 0, "cols": 16}
    with pytest.raises(ConfigError, match=r"kernels.q.rows=0 is out of range; allowed: 1..64"):
        Design.from_dict(bad)
    bad = d.to_dict()
    bad["colour"] = 1
    with pytest.raises(ConfigError, match="unknown design field 'colour'"):
        Design.from_dict(bad)
    bad = d.to_dict()
    del bad["kernels"]["f2"]
    with pytest.raises(ConfigError, match="design lacks kernels f2"):
        Design.from_dict(bad)


def test_decode_streams_every_kernels_weights_at_once_from_a_layer_deep_buffer():
    """Decode as a spatial pipeline: with a FIFO one layer deep per kernel, each kernel's
    channel fetches its next matrix while the others compute, so a token takes the busiest
    stream (f1's, N times), not the chain of every kernel's stream one after the other."""
    from llmloom.perf.spatial import PORT_EFFICIENCY
    one = KernelDesign(rows=8, cols=16, packing=2, channels=1)
    kernels = {n: one for n in ("q", "k", "v", "qk", "pv", "o", "f1", "f2")}
    tile = Design(clock_mhz=250, kernels=kernels, weights="stream")
    layer = tile.replace(weight_buffer="layer")
    m = get_model("gpt2-medium")
    mem = get_fpga("u280").memory
    # f1's bytes: a byte a weight and its Q8_0 group's share (the design's W8A8)
    f1_bytes = m.d_model * m.d_ff * get_quant(tile.quant).weight_bits / 8
    f1_stream = f1_bytes / (mem.gbps_per_channel * 1e9 * mem.efficiency * PORT_EFFICIENCY)
    got = {}
    for d in (tile, layer):
        got[d.weight_buffer] = estimate(m, "u280", d, mode="decode", seq=256)["decode"]
    assert got["layer"]["latency_s_per_token"] == pytest.approx(m.n_layers * f1_stream,
                                                                rel=1e-3)
    assert got["layer"]["bottleneck"] in ("f1", "f2") and got["layer"]["bound"] == "memory"
    # tile buffers: q/k/v's streams, then o's, then the FFN's, one after the other
    assert got["tile"]["latency_s_per_token"] > 1.5 * got["layer"]["latency_s_per_token"]
    for g in got.values():
        assert g["latency_s_per_token"] >= g["bandwidth_floor_s"]


def test_a_layer_deep_weight_buffer_takes_bulk_memory():
    base = uniform(8, 16, weights="stream")
    small = estimate("gpt2-medium", "u280", base, mode="decode", seq=256)["resources"]
    big = estimate("gpt2-medium", "u280", base.replace(weight_buffer="layer"), mode="decode",
                   seq=256)["resources"]
    # 12.6 MB of int8 weights per layer: at least 12.6e6·8 / 288 Kib URAMs more
    assert big["uram"] - small["uram"] >= 12.5e6 * 8 / (288 * 1024)
    with pytest.raises(ConfigError, match="weight_buffer='deep' is not allowed"):
        base.replace(weight_buffer="deep")


def test_the_layer_chain_walks_the_hw_layer_description():
    from llmloom.hw.blocks.activation import GeluConfig
    from llmloom.hw.layers.config import DESCRIPTIONS
    from llmloom.perf.spatial import activation_latency, layer_plan
    gpt2, bert = layer_plan("gpt2-medium"), layer_plan("bert-base")
    # GPT-2 is pre-norm: its first norm comes before the projections; BERT post-norm
    assert gpt2.head == ("norm1",) and bert.head == ()
    assert gpt2.sync == bert.sync == ("q", "k", "v")
    assert bert.chain[-1] == "norm2" and gpt2.chain[-1] == "ar2"
    for arch, plan in (("gpt2", gpt2), ("bert", bert)):
        names = plan.head + plan.sync + plan.chain
        for st in DESCRIPTIONS[arch].stages:
            want = {"attention": "qk", "residual": None, "act": "gelu"}.get(st.kind, st.name)
            want = "ffn_in" if st.name == "f1" else want
            assert want is None or want in names, (arch, st.name)
    assert layer_plan("llama-2-7b").chain.count("silu") == 1
    assert activation_latency("gelu") == GeluConfig.LATENCY


def test_prefill_reuses_a_layer_deep_buffer_and_a_host_sync_adds_per_layer():
    m = get_model("gpt2-medium")
    base = uniform(8, 16, weights="stream")
    tile = estimate(m, "u280", base, mode="prefill", seq=256)["prefill"]
    layer = estimate(m, "u280", base.replace(weight_buffer="layer"), mode="prefill",
                     seq=256)["prefill"]
    weights = workload(m, "prefill", seq=256, quant="W8A8").weight_bytes
    # every token tile (256 / 8 rows) streams the matrices again; a layer-deep FIFO once
    assert tile["offchip_bytes"] == pytest.approx(256 / 8 * weights)
    assert layer["offchip_bytes"] == pytest.approx(weights)
    assert layer["latency_s"] <= tile["latency_s"]
    synced = estimate(m, "u280", base.replace(host_sync_us=50), mode="prefill",
                      seq=256)["prefill"]
    assert synced["latency_s"] - tile["latency_s"] == pytest.approx(m.n_layers * 50e-6)


def test_a_causal_prefill_starting_attention_per_tile_skips_the_kv_synchronisation():
    """kv_sync "tile": a decoder's query tile needs the K/V tiles up to it only, so Q/K/V
    stream into attention as one stage (no wait for the whole prompt's K and V); an encoder
    attends to every key and waits regardless; decode is unchanged; the choice round-trips
    through the design JSON and a bad value is one clear error."""
    base = uniform(8, 16, weights="stream", weight_buffer="layer")
    tile = base.replace(kv_sync="tile")
    for m in ("gpt2-medium", "bert-base"):
        a = estimate(m, "u280", base, mode="prefill", seq=128)["prefill"]
        b = estimate(m, "u280", tile, mode="prefill", seq=128)["prefill"]
        if m == "bert-base":
            assert b["latency_s"] == a["latency_s"]
        else:
            # the synchronisation was the whole prompt's K/V (a projection's time, here a
            # quarter of the FFN's, which paces the chain); Q/K/V's first tile is left of it
            assert b["latency_s"] < 0.9 * a["latency_s"]
    da = estimate("gpt2-medium", "u280", base, mode="decode", seq=128)["decode"]
    db = estimate("gpt2-medium", "u280", tile, mode="decode", seq=128)["decode"]
    assert da["latency_s_per_token"] == db["latency_s_per_token"]
    assert Design.from_dict(tile.to_dict()).kv_sync == "tile"
    assert "kv_sync" not in base.to_dict()
    with pytest.raises(ConfigError, match="kv_sync='early' is not allowed; allowed: layer | tile"):
        base.replace(kv_sync="early")


def test_kernels_reading_streams_in_production_order_drop_the_chains_fill():
    """stream_order "production": a linear kernel works on each input beat as its producer
    writes it, so only its last beat's share of the first tile is on the layer's chain (the
    tile order waits for a whole pass over the producer's weights). The prefill gets faster
    by a fixed part, the same at every prompt length (the kernels' fills no longer add up;
    the bottleneck's steady state is unchanged), with or without the K/V synchronisation;
    the accumulators of a token tile's outputs cost on-chip memory; decode is unchanged; the
    choice round-trips through the design JSON and a bad value is one clear error."""
    base = uniform(8, 16, weights="stream", weight_buffer="layer")
    for kv in ("layer", "tile"):
        tile = base.replace(kv_sync=kv)
        prod = tile.replace(stream_order="production")
        saved = []
        for seq in (16, 64, 256):
            a = estimate("gpt2", "u280", tile, mode="prefill", seq=seq)
            b = estimate("gpt2", "u280", prod, mode="prefill", seq=seq)
            assert b["prefill"]["latency_s"] < a["prefill"]["latency_s"]
            saved.append(a["prefill"]["latency_s"] - b["prefill"]["latency_s"])
            fa = {s["name"]: s["fill_cycles"] for s in a["prefill"]["stages"]}
            fb = {s["name"]: s["fill_cycles"] for s in b["prefill"]["stages"]}
            for k in ("q", "k", "v", "o", "f1", "f2"):
                assert fb[k] < fa[k] / 50, k
            assert b["resources"]["uram"] + b["resources"]["bram36"] \
                > a["resources"]["uram"] + a["resources"]["bram36"]
        assert saved[0] == pytest.approx(saved[1], rel=1e-6) == pytest.approx(saved[2],
                                                                               rel=1e-6)
    prod = base.replace(stream_order="production")
    da = estimate("gpt2-medium", "u280", base, mode="decode", seq=128)["decode"]
    db = estimate("gpt2-medium", "u280", prod, mode="decode", seq=128)["decode"]
    assert da["latency_s_per_token"] == db["latency_s_per_token"]
    assert Design.from_dict(prod.to_dict()).stream_order == "production"
    assert "stream_order" not in base.to_dict()
    with pytest.raises(ConfigError, match="stream_order='random' is not allowed; allowed: "
                                          "tile | production"):
        base.replace(stream_order="random")


def test_only_streamtensors_preset_reads_streams_in_production_order():
    """The paper's presets keep the hw GEMM's tile order (their rows do not move);
    StreamTensor's, whose compiler matches every producer-consumer stream order, reads in
    production order, with its attention still waiting for the whole K and V."""
    assert get_preset("chen2024-bert-u280").design.stream_order == "tile"
    assert get_preset("chen2024-gpt2-u280").design.stream_order == "tile"
    st = get_preset("streamtensor-gpt2-u55c").design
    assert st.stream_order == "production" and st.kv_sync == "layer"


def test_a_kernels_stream_is_limited_by_its_axi_ports_and_the_ports_by_the_hbm():
    """On HBM (32 AXI ports, one per pseudo-channel) an automatic kernel streams only through
    its own ports: the ports of a layer copy go to its matrices by bytes (FFN matrices 4x the
    projections'), their sum never exceeds the device's, and each kernel's decode stream
    takes its bytes over its ports' channels; more layer copies share the same 32 ports."""
    import numpy as np

    from llmloom.perf.design import linear_shapes
    from llmloom.perf.spatial import PORT_EFFICIENCY, DesignBatch, make_context, port_plan
    from llmloom.perf.workload import LINEAR
    m = get_model("gpt2-medium")
    mem = get_fpga("u280").memory
    assert mem.max_ports == 32 and get_fpga("u55c").memory.max_ports == 32
    ctx = make_context(m, "u280", "W8A8", seq=128)
    base = uniform(8, 16, weights="stream", weight_buffer="layer")
    lin = [k for k in LINEAR if k != "fg"]
    for C in (1, 2):
        db = DesignBatch.from_designs([base.replace(layers_on_chip=C)])
        ports, total, limited = port_plan(ctx, db, lin, linear_shapes(m, 1), np.zeros(1, bool))
        assert limited and total[0] <= 32
        assert ports["qk"][0] == ports["pv"][0] == 1
        assert ports["f1"][0] >= 2 * ports["q"][0] >= 2
        if C == 1:
            assert total[0] == 32 and ports["f1"][0] == 3 * ports["q"][0]
            one = ports
    assert ports["f1"][0] < one["f1"][0]
    doc = estimate(m, "u280", base, mode="decode", seq=128)
    ch = mem.gbps_per_channel * 1e9 * mem.efficiency * PORT_EFFICIENCY
    slowest = max(m.d_model * m.d_ff / (one["f1"][0] * ch), m.d_model ** 2 / (one["q"][0] * ch))
    assert doc["decode"]["latency_s_per_token"] >= m.n_layers * slowest * (1 - 1e-6)
    assert doc["decode"]["latency_s_per_token"] >= doc["decode"]["bandwidth_floor_s"]
    # explicit channels beyond the HBM's ports are refused, naming the ports
    wide = base.replace(kernels={n: KernelDesign(rows=8, cols=16, packing=2, channels=5)
                                 for n in base.kernels})
    with pytest.raises(ConstraintError, match=r"needs 40 off-chip HBM2 channels \(AXI ports\)"):
        estimate(m, "u280", wide, mode="decode", seq=128)


def test_each_axi_port_costs_fabric():
    from llmloom.perf.spatial import COST
    one = KernelDesign(rows=8, cols=16, packing=2, channels=1)
    two = KernelDesign(rows=8, cols=16, packing=2, channels=2)
    names = ("q", "k", "v", "qk", "pv", "o", "f1", "f2")
    a = Design(clock_mhz=250, kernels={n: one for n in names})
    b = a.replace(kernels={**{n: one for n in names}, "f1": two, "f2": two})
    ra = estimate("gpt2-medium", "u280", a, mode="decode", seq=128)["resources"]
    rb = estimate("gpt2-medium", "u280", b, mode="decode", seq=128)["resources"]
    assert rb["lut"] - ra["lut"] == 2 * COST["lut_port"]


def test_a_norm_sits_with_the_stage_it_normalises():
    """GPT-2 is pre-norm: its first norm feeds Q/K/V (the paper's SLR0), its second follows
    the output projection (SLR1); BERT is post-norm: after o (SLR1) and after the FFN."""
    gpt2 = estimate("gpt2-medium", "u280", "chen2024-gpt2-u280", mode="prefill", seq=64)
    bert = estimate("bert-base", "u280", "chen2024-bert-u280", mode="prefill", seq=64)
    region = {d: {s["name"]: s["region"] for s in doc["prefill"]["stages"]}
              for d, doc in (("gpt2", gpt2), ("bert", bert))}
    assert region["gpt2"]["norm1"] == region["gpt2"]["q"] == "SLR0"
    assert region["gpt2"]["norm2"] == region["gpt2"]["o"] == "SLR1"
    assert region["bert"]["norm1"] == region["bert"]["o"] == "SLR1"
    assert region["bert"]["norm2"] == region["bert"]["f2"] == "SLR2"


def test_grouped_kernels_pay_for_their_group_scaling():
    """W4A8 linear kernels are the W4 GEMM: their PEs multiply 4-bit codes (one DSP, or two
    codes' products in one with packing 2, as int8) and each logical column scales its groups'
    partial sums after the array (``perf.resources.gemm_group_cost``: two multipliers); the
    same design at W8A8-channel has the PEs only, and at W8A8 (Q8_0 groups) the PEs and the
    W8 GEMM's group scaling. Packing stops at 2: what ``hw`` builds."""
    from llmloom.perf.resources import gemm_group_cost
    from llmloom.perf.spatial import COST

    assert COST["dsp_group_col"][4] == gemm_group_cost("xcup")["dsp"] == 2
    assert COST["lut_group_col"][8] == gemm_group_cost("xcup", 8)["lut"]
    assert get_fpga("u280").max_packing["W4A8"] == 2
    w4 = estimate(None, None, "chen2024-bert-u280", quant="W4A8")
    w4c = estimate(None, None, "chen2024-bert-u280")
    w8 = estimate(None, None, "chen2024-bert-u280", quant="W8A8")
    w8c = estimate(None, None, "chen2024-bert-u280", quant="W8A8-channel")
    assert w4["quant"] == "W4A8" and w4c["quant"] == "W4A8-channel"
    # six linear kernels of 16 columns packed two per DSP: 32 logical columns each
    for grouped, plain, bits in ((w4, w4c, 4), (w8, w8c, 8)):
        assert grouped["resources"]["dsp"] - plain["resources"]["dsp"] == \
            6 * 32 * gemm_group_cost("xcup", bits)["dsp"]
        assert grouped["resources"]["lut"] > plain["resources"]["lut"]
