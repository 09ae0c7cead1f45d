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
