"""Weight fetch in the cycle model: the AXI reader's timing over a layer's weight image."""

from __future__ import annotations

from llmloom.hw.blocks.axi_reader import AxiReaderConfig
from llmloom.hw.layers.config import LayerConfig
from llmloom.hw.layers.weights_image import image_layout
from llmloom.perf.cycles import axi_read_cycles, layer_fetch_cycles, weight_fetch_cycles


def test_weight_fetch_walks_the_image():
    cfg = LayerConfig(arch="gpt2", d_model=64, heads=4, d_ff=256, seq=8)
    reader = AxiReaderConfig(data_width=512, outstanding=8)
    got = weight_fetch_cycles(cfg, reader, 100)
    assert list(got) == [st.name for st in cfg.description.of_kind("linear")]
    for stage, cycles in got.items():
        secs = [s for s in image_layout(cfg) if s.stage == stage]
        alone = sum(axi_read_cycles(reader, s.offset, s.nbytes, 100) for s in secs)
        # back to back, the next section's bursts overlap this one's data: less than alone,
        # but never below the bus words plus one latency
        words = sum(-(-s.nbytes // reader.lanes) for s in secs)
        assert words + 100 < cycles < alone
    # the FFN matrices are 4x the attention ones: their fetch takes longer
    assert got["f1"] > got["q"] and got["f2"] > got["q"]
    assert weight_fetch_cycles(cfg, reader, 20)["f1"] < got["f1"]


def test_layer_fetch_is_near_the_bus_rate():
    cfg = LayerConfig(arch="gpt2", d_model=64, heads=4, d_ff=256, seq=8)
    reader = AxiReaderConfig(data_width=512, outstanding=8)
    image = image_layout(cfg)[-1].end
    total = layer_fetch_cycles(cfg, reader, 100)
    assert total < sum(weight_fetch_cycles(cfg, reader, 100).values())
    # one latency for the whole image, then close to one bus word per cycle
    assert image / reader.lanes + 100 < total < 1.2 * (image / reader.lanes) + 100 + 50


def test_fetched_layer_runs_overlap_the_next_image_with_two_banks():
    """``fetched_layer_runs``: without prefetches each run is ``fetched_layer_cycles``'s
    (the whole image, then the tensor); prefetching, a run after the first waits for its
    constants alone once the run before computed longer than the linear sections take,
    else for the rest of them too, never longer than with one bank. (The RTL holds the
    model to it: ``tests/sim/test_fetched_verilator.py``.)"""
    import numpy as np
    import pytest

    from llmloom.hw.config import ConfigError
    from llmloom.hw.layers.weights_image import fetched_layer_layout
    from llmloom.perf.cycles import fetched_layer_cycles, fetched_layer_runs
    from llmloom.perf.pipeline import layer_timing

    from ..sim.test_fetched_layer_hdl import calibrations

    (q, _, _), = calibrations(np.random.default_rng(3), "static", 1)
    cfg = q.config
    reader = AxiReaderConfig(data_width=32, max_burst=16, outstanding=2, max_bytes=1 << 14,
                             addr_width=16, unaligned=False)
    sizes, bases = [6, 1, 1], [0, 1 << 14]
    szs = [s for s in sizes for _ in bases]
    runs = [(b, n) for _ in sizes for n, b in enumerate(bases)]
    one = fetched_layer_runs(cfg, reader, 10, szs, runs)
    assert one[0::2] == fetched_layer_cycles(cfg, reader, 10, sizes, bases[0])
    ahead = [(*r, nxt[0]) for r, nxt in zip(runs, [*runs[1:], (None,)], strict=True)]
    two = fetched_layer_runs(cfg, reader, 10, szs, ahead)
    compute = [c for c in layer_timing(cfg, sizes).tensor_cycles for _ in bases]
    layout = fetched_layer_layout(cfg)
    constants = reader.cycles(0, layout[-1].nbytes, 10) + 3
    linear = reader.sequence_cycles([(s.offset, s.nbytes) for s in layout[:-1]], 10)
    assert two[0] == one[0]
    assert compute[0] >= linear > compute[-1]         # the prefill covers a load, a step not
    for k in range(1, len(runs)):
        wait = two[k] - compute[k]
        assert wait == constants if compute[k - 1] >= linear else constants < wait
        assert two[k] < one[k]
    with pytest.raises(ConfigError, match="the run before prefetched"):
        fetched_layer_runs(cfg, reader, 10, szs[:2], [(0, 0, 1 << 14), (0, 1)])
    # what the model does not time is its own error (callers carry on without a prediction),
    # unlike a bad call
    from llmloom.perf.errors import UntimedError
    wide = AxiReaderConfig(data_width=64, max_burst=16, outstanding=2, max_bytes=1 << 14,
                           addr_width=16, unaligned=False)
    with pytest.raises(UntimedError, match=r"data_width=64 is not timed; allowed: 32"):
        fetched_layer_runs(cfg, wide, 10, szs, runs)
    with pytest.raises(ValueError, match="3 commands for 2 tensors") as exc:
        fetched_layer_runs(cfg, reader, 10, szs[:2], runs[:3])
    assert not isinstance(exc.value, UntimedError)
