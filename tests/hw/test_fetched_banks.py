"""The fetched layer's banks (:func:`~llmloom.hw.layers.fetched.layer_banks`): double-buffered
on the GEMM by default, its command then naming the image to prefetch; bad values and a
prefetch out of turn are one ConfigError line each."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from llmloom.hw.config import ConfigError
from llmloom.hw.layers.fetched import (
    FetchedLayer,
    FetchedLinear,
    check_fetched,
    command_fields,
    command_layout,
    layer_banks,
    prefetched_runs,
)

from ..sim.test_fetched_layer_hdl import calibrations, reader_for


def gemv(cfg):
    return dataclasses.replace(cfg, engine="gemv", linear_rows=cfg.lanes, ffn_rows=cfg.lanes)


@pytest.fixture(scope="module")
def cfg():
    (q, _, _), = calibrations(np.random.default_rng(7), "static", 1)
    return q.config


def test_two_banks_on_the_gemm_by_default_and_the_command_says_what_to_prefetch(cfg):
    assert cfg.engine == "gemm" and layer_banks(cfg) == 2
    assert layer_banks(gemv(cfg)) == 1
    fields = {b: set(command_layout(reader_for(cfg), 2, layer_banks(cfg, b)).members)
              for b in (1, 2, None)}
    assert fields[1] == {"addr", "layer"}
    assert fields[2] == fields[None] == {"addr", "layer", "next", "prefetch"}
    # a run's values fill exactly its fields (the fetched harnesses drive the layer's cmd
    # port with them: their bit-exact runs hold that port to this layout)
    assert command_fields(2, (64, 1, None)) == {"addr": 64, "layer": 1, "next": 0, "prefetch": 0}
    assert command_fields(2, (64, 1, 128))["next"] == 128
    assert command_fields(1, (64, 1, None)) == {"addr": 64, "layer": 1}


@pytest.mark.parametrize("banks, match", [
    (3, r"^banks=3; allowed: 1 \(fetch, then compute\) or 2 \(double-buffered\)$"),
    (0, r"^banks=0; allowed: 1"), (True, r"^banks=True; allowed: 1"),
    ("2", r"^banks='2'; allowed: 1")])
def test_bad_banks_are_one_config_error(cfg, banks, match):
    with pytest.raises(ConfigError, match=match):
        FetchedLayer(cfg, reader_for(cfg), banks=banks)


def test_two_banks_on_the_gemv_is_a_config_error(cfg):
    with pytest.raises(ConfigError, match=r"^banks=2 with engine='gemv': .*allowed: banks=1, "
                                          r"or engine='gemm'$"):
        layer_banks(gemv(cfg), 2)


def test_a_prefetch_must_be_run_next_and_needs_two_banks():
    assert prefetched_runs([(0, 0, 64), (64, 1)], 2) == [(0, 0, 64), (64, 1, None)]
    assert prefetched_runs([(0, 0), (64, 1)], 1) == [(0, 0, None), (64, 1, None)]
    with pytest.raises(ConfigError, match=r"^run 1 is of the image at 0; the run before "
                                          r"prefetched the image at 64; allowed: 64$"):
        prefetched_runs([(0, 0, 64), (0, 0)], 2)
    with pytest.raises(ConfigError, match=r"^run 0 prefetches the image at 64 with banks=1; "
                                          r"allowed: no prefetch, or banks=2$"):
        prefetched_runs([(0, 0, 64), (64, 1)], 1)


@pytest.mark.parametrize("fields, what", [(dict(weight_bits=4), "weight_bits=4"),
                                          (dict(weight_groups=True), "weight_groups=true")])
def test_grouped_weights_fetch_on_the_gemm_of_a_layer_only(fields, what):
    """Grouped weights (W4, or W8 in groups: codes and tables) load into a FetchedLayer's
    GEMMs; a FetchedLinear and the GEMV stay int8 per channel, each a one-line ConfigError."""
    (q, _, _), = calibrations(np.random.default_rng(3), "static", 1, **fields)
    cfg = q.config
    layer = FetchedLayer(cfg, reader_for(cfg), layers=2)
    layer._MustUse__silence = True          # built only to be accepted: its banks are read
    assert layer.banks == 2
    with pytest.raises(ConfigError, match=r"^weight_bits=\d weight_groups=\w+: a FetchedLinear "
                                          r"loads int8 weights per channel .*allowed: "
                                          r"weight_bits=8 without weight_groups$"):
        FetchedLinear(cfg, "q", reader_for(cfg))
    with pytest.raises(ConfigError, match=rf"^{what} with engine='gemv': .*allowed: "
                                          r"weight_bits=8 without weight_groups, or "
                                          r"engine='gemm'$"):
        check_fetched(gemv(cfg), "q", reader_for(cfg))
