"""Where the KV cache lives (``perf.kvcache``, one rule for perf's projection and for
``llmloom generate --kv``): on chip while every layer's K and V at the context fit in the block
RAM the design leaves, else in AXI memory, streamed in decode (as the fetched layer's
``kv="axi"`` reads them); the projection agrees with the RTL's placement."""

from __future__ import annotations

import pytest

from llmloom.hw.config import ConfigError
from llmloom.perf.devices import get_fpga
from llmloom.perf.estimate import estimate
from llmloom.perf.kvcache import kv_cache_bytes, kv_placement, on_chip_bytes
from llmloom.perf.models import get_model

DESIGN = "chen2024-gpt2-u280"


def test_rule():
    assert kv_placement("auto", 10, 10) == "chip"
    assert kv_placement("auto", 11, 10) == "axi"
    assert kv_placement("chip", 11, 10) == "chip" and kv_placement("axi", 1, 10) == "axi"
    assert list(kv_placement("auto", [5, 20], [10, 10])) == ["chip", "axi"]
    with pytest.raises(ConfigError, match="kv='disk'"):
        kv_placement("disk", 1, 1)
    m = get_model("smollm2-135m")
    # K and V: 3 KV heads of 64, 30 layers, int8
    assert kv_cache_bytes(m, 2048) == 2 * 2048 * 192 * 30
    u280 = get_fpga("u280")
    assert on_chip_bytes(u280) == (2016 * 36864 + 960 * 294912) / 8


def test_projection_keeps_the_cache_on_chip_while_it_fits():
    """SmolLM2 at 2048 cached tokens on the U280 design: 23.6 MB of K and V fit the block RAM
    the design leaves, so ``auto`` keeps them on chip and a decode streams weights only;
    forced to ``axi`` a decode also streams every layer's K and V (exactly the cache's bytes
    more per token); a forced ``chip`` that cannot fit is one constraint error."""
    docs = {kv: estimate("smollm2-135m", "u280", DESIGN, mode="both", seq=16, context=2048,
                         kv=kv) for kv in ("auto", "chip", "axi")}
    assert docs["auto"]["kv"]["placement"] == "chip" == docs["chip"]["kv"]["placement"]
    assert docs["axi"]["kv"]["placement"] == "axi"
    kv = docs["auto"]["kv"]["bytes"]
    assert kv == kv_cache_bytes(get_model("smollm2-135m"), 2049)
    assert kv < docs["auto"]["kv"]["free_on_chip_bytes"]
    more = docs["axi"]["decode"]["offchip_bytes"] - docs["auto"]["decode"]["offchip_bytes"]
    assert more == pytest.approx(kv)
    assert docs["axi"]["decode"]["tokens_per_s"] <= docs["auto"]["decode"]["tokens_per_s"]
    from llmloom.perf.errors import ConstraintError
    with pytest.raises(ConstraintError, match="KV cache on chip"):
        estimate("smollm2-135m", "u280", DESIGN, mode="decode", seq=16, context=4096, kv="chip")
