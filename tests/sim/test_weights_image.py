"""A layer's weight image: laid out as the engines consume it, read back exactly, and the
AXI reader streaming a weight section gives the engine's ``weight`` beats."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import signed

from llmloom.hw.blocks.axi_reader import AxiReaderConfig
from llmloom.hw.layers.config import LayerConfig
from llmloom.hw.layers.weights_image import (
    ALIGN,
    image_layout,
    pack_layer_image,
    unpack_layer_image,
)
from llmloom.hw.stream import row_layout
from llmloom.sim.axi import run_axi_reader
from llmloom.sim.quantize import quantize_placeholder
from llmloom.sim.streams import pack_rows

# d 24 and d_ff 40 on 8 and 16 columns: the FFN's last feature tiles are partial, so the
# padding lanes show
CFG = LayerConfig(arch="gpt2", d_model=24, heads=2, d_ff=40, seq=4, lanes=4, linear_cols=8,
                  ffn_cols=16)


@pytest.fixture(scope="module")
def layer():
    return quantize_placeholder(CFG)


def test_round_trip(layer):
    cfg, weights = layer.config, layer.weights
    image = pack_layer_image(cfg, weights)
    back = unpack_layer_image(cfg, image)
    stages = [st.name for st in cfg.description.of_kind("linear")]
    assert list(back) == stages
    for name in stages:
        rq = cfg.requant(name)
        np.testing.assert_array_equal(back[name].weights, weights.matrix(name))
        np.testing.assert_array_equal(back[name].multipliers, rq.multipliers[0])
        np.testing.assert_array_equal(back[name].bias, rq.channel_bias)
        assert back[name].shift == rq.multipliers[1]
        # the multipliers are the per-channel scales: M·2^-s = s_in·w_scale/s_out
        s_in = getattr(cfg.numbers.scales, cfg.description.base(cfg.linear_io(name)[0]))
        s_out = getattr(cfg.numbers.scales, cfg.linear_io(name)[1])
        want = np.asarray(cfg.numbers.params(name).w_scale) * s_in / s_out
        np.testing.assert_allclose(back[name].multipliers * 2.0 ** -rq.multipliers[1], want,
                                   rtol=2.0 ** -(rq.mult_bits - 1))
    assert pack_layer_image(cfg, weights) == image                  # deterministic


def test_layout(layer):
    layout = image_layout(CFG)
    assert [s.part for s in layout[:4]] == ["weights", "scales", "bias", "shift"]
    assert all(s.offset % ALIGN == 0 for s in layout)
    assert all(a.end <= b.offset for a, b in zip(layout, layout[1:], strict=False))
    image = pack_layer_image(layer.config, layer.weights)
    gaps = bytearray(image)
    for s in layout:
        gaps[s.offset:s.end] = bytes(s.nbytes)
    assert not any(gaps)                                              # gaps are zero


def test_corrupt_padding_is_refused(layer):
    cfg = layer.config
    image = bytearray(pack_layer_image(cfg, layer.weights))
    sec = image_layout(cfg)[0]                     # q: n = 24 in 3 tiles of 8, no padding
    ffn = next(s for s in image_layout(cfg) if s.stage == "f2" and s.part == "weights")
    image[ffn.offset + ffn.cols - 1] = 1           # f2: n = 24 in 2 tiles of 16: lane 31 pads
    assert sec.cols == 24 and ffn.cols == 32
    with pytest.raises(ValueError, match="padding"):
        unpack_layer_image(cfg, bytes(image))
    with pytest.raises(ValueError, match="bytes"):
        unpack_layer_image(cfg, bytes(image[:10]))


def test_reader_streams_the_engine_weight_beats(layer):
    """The AXI reader (lanes = the engine's cols) streaming a weight section gives the data of
    the very beats the GEMM harness preloads into the engine's ``weight`` port."""
    cfg = layer.config
    image = pack_layer_image(cfg, layer.weights)
    secs = [s for s in image_layout(cfg) if s.part == "weights" and s.stage in ("q", "f2")]
    for sec in secs:
        eng = cfg.linear(sec.stage)
        # the sections are word aligned: the reader without realignment logic will do
        reader = AxiReaderConfig(data_width=8 * eng.cols, max_burst=8, outstanding=2,
                                 max_bytes=1 << 12, unaligned=False)
        run = run_axi_reader(reader, image, [(sec.offset, sec.nbytes)], sim="icarus",
                             latency=(2, 9), out_stall=0.3, seed=7)
        beats = pack_rows(row_layout(signed(8), eng.cols), layer.weights.matrix(sec.stage))
        data_mask = (1 << 8 * eng.cols) - 1
        want = b"".join((w & data_mask).to_bytes(eng.cols, "little") for w in beats)
        assert run.data[0] == want
