"""Latency never falls as the context (decode) or the prompt (prefill) grows (issue 11, point 6).

The decode model used to pick P·V's input lanes among the divisors of the current key count,
so the time of ``pv`` (P·V) followed the count's divisibility: on the explored GPT-2-medium design
below, 372 cycles per layer at context 511, 8,227 at 512, 4,131 at 513 (0.96, 1.59, 1.27 ms per
token). The stream width is fixed by the design; keys are padded to whole beats of it.
"""

import numpy as np
import pytest

from llmloom.perf import Design, estimate, get_preset
from llmloom.perf.kernels import gemm_cycles_np, gemv_cycles_np, pad_to, pv_lanes_np
from llmloom.perf.spatial import DesignBatch, evaluate, make_context

# `llmloom explore --model gpt2-medium --device u280 --objective decode --context 511` before
# the fix (it chose 32-row attention arrays because 512 keys divide by 32)
ISSUE_DESIGN = {
    "name": "explored-decode-gpt2-medium-u280", "clock_mhz": 300.0, "quant": "W8A8",
    "token_tile": 64,
    "kernels": {**{k: {"rows": 64, "cols": 12, "packing": 2} for k in ("q", "k", "v", "o")},
                **{k: {"rows": 32, "cols": 32, "packing": 2} for k in ("qk", "pv")},
                **{k: {"rows": 64, "cols": 8, "packing": 2} for k in ("f1", "fg", "f2")}},
    "lanes": {"softmax": 32, "norm": 4, "act": 2}, "layers_on_chip": 1, "weights": "stream",
    "decode_kernel": "gemv", "double_buffer": True}
# the same explorer at the default context (512): 24-row attention arrays
EXPLORED_512 = {**ISSUE_DESIGN, "kernels": {
    **ISSUE_DESIGN["kernels"], **{k: {"rows": 24, "cols": 32, "packing": 2} for k in ("qk", "pv")}}}


def _designs():
    gpt2 = get_preset("chen2024-gpt2-u280").design
    return [Design.from_dict(ISSUE_DESIGN), Design.from_dict(EXPLORED_512), gpt2,
            gpt2.replace(decode_kernel="gemm"),
            Design.from_dict({**ISSUE_DESIGN, "decode_kernel": "gemm"})]


def _sweep(model, mode, lengths, designs, **kw):
    """``{"total" | stage: array (lengths × designs)}`` of cycles per token (decode) or per
    prompt (prefill)."""
    groups = {}                         # a batch shares one region map
    for d in designs:
        groups.setdefault(repr(d.regions), []).append(d)
    parts = [_sweep_batch(model, mode, lengths, g, **kw) for g in groups.values()]
    return {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}


def _sweep_batch(model, mode, lengths, designs, **kw):
    db = DesignBatch.from_designs(designs)
    rows = []
    for n in lengths:
        if mode == "decode":
            ctx = make_context(model, "u280", designs[0].quant, seq=512, context=n, **kw)
        else:
            ctx = make_context(model, "u280", designs[0].quant, seq=n, **kw)
        r = evaluate(ctx, db, modes=(mode,))[mode]
        rows.append({"total": r["cycles"], **{k: v[0] for k, v in r["stages"].items()}})
    return {k: np.stack([row[k] for row in rows]) for k in rows[0]}


def _assert_never_falls(cycles, lengths, what):
    for name, c in cycles.items():
        falls = np.argwhere(np.diff(c, axis=0) < -1e-9 * np.abs(c[1:]))
        if len(falls):
            i, j = falls[0]
            pytest.fail(f"{what}: {name} of design {j} falls from {c[i, j]:.1f} cycles at "
                        f"{lengths[i]} to {c[i + 1, j]:.1f} at {lengths[i + 1]} "
                        f"({len(falls)} falls)")


def test_the_issues_case_is_continuous_at_512():
    got = {}
    for s in (511, 512, 513):
        d = estimate("gpt2-medium", "u280", ISSUE_DESIGN, mode="decode", context=s)["decode"]
        pv = next(st for st in d["stages"] if st["name"] == "pv")
        got[s] = (d["latency_s_per_token"], pv["cycles"], pv["bound"])
    # pv is its compute, 16 heads of ceil(keys/32) steps on 32×64 MACs fed 32 keys a beat
    # (274 cycles at 512 keys, 291 from 513: never 8,227 at 513 keys as with lanes chosen
    # among the key count's divisors); its KV stream was fetched into the second half of the
    # double-buffered K/V buffer while the previous layer computed, so it waits for none
    assert [round(got[s][1]) for s in (511, 512, 513)] == [274, 291, 291]
    assert all(got[s][2] == "compute" for s in got)
    # the token is Q/K/V's, o's and the FFN's weight streams one after the other (the norms
    # between need whole rows) plus the chain's fill; each kernel streams through its own AXI
    # ports only (3 for each projection, 9 for each FFN matrix, one each for K/V: the HBM's
    # 32), each at PORT_EFFICIENCY of a channel (fitted to the group's GPT-2 W4A8 decode row)
    # and a weight 8.5 bits, its int8 code and its share of its Q8_0 group's scale (W8A8)
    assert [round(got[s][0] * 1e6, 2) for s in (511, 512, 513)] == [3074.26, 3078.42, 3078.42]


def test_p_v_lanes_are_fixed_by_the_design_and_its_cycles_grow_with_the_keys():
    keys = np.arange(1, 1100)[:, None]
    rows, cols = np.meshgrid([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64], np.arange(1, 65))
    rows, cols = rows.ravel()[None, :], cols.ravel()[None, :]
    for gemv in (True, False):
        lanes = pv_lanes_np(rows, cols, 64, gemv)
        assert (64 % lanes == 0).all() if not gemv else (lanes == rows).all()
        k = pad_to(keys, lanes)
        if gemv:
            t, _ = gemv_cycles_np(rows, cols, k, 64, 16, lanes)
            # never input-bound: the input beats of a vector are at most its steps
            assert (k // lanes <= -(-k // rows) * -(-64 // cols)).all()
        else:
            t = gemm_cycles_np(rows, cols, k, 64, lanes, 1)
        assert (np.diff(t, axis=0) >= 0).all()


def test_decode_never_gets_faster_with_a_longer_context():
    contexts = list(range(1, 1024))          # GPT-2 medium holds 1,024 positions
    cycles = _sweep("gpt2-medium", "decode", contexts, _designs())
    _assert_never_falls(cycles, contexts, "decode")
    # and with several sequences at once
    contexts = list(range(1, 1024, 7)) + [511, 512, 513]
    contexts.sort()
    _assert_never_falls(_sweep("gpt2-medium", "decode", contexts, _designs(), batch=3),
                        contexts, "decode, batch 3")


def _lengths(limit, full):
    """1..limit, or (fast) every length up to 130, then every fifth and every length within 2
    of a multiple of 32 (where array and lane sizes divide)."""
    if full:
        return list(range(1, limit + 1))
    return sorted(n for n in range(1, limit + 1)
                  if n <= 130 or n % 5 == 0 or min(n % 32, -n % 32) <= 2)


@pytest.mark.parametrize("full", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["sampled", "every-length"])
def test_prefill_never_gets_faster_with_a_longer_prompt(full):
    lengths = _lengths(1024, full)
    _assert_never_falls(_sweep("gpt2-medium", "prefill", lengths, _designs()[:3]), lengths,
                        "prefill")
    lengths = _lengths(512, full)
    _assert_never_falls(_sweep("bert-base", "prefill", lengths,
                               [get_preset("chen2024-bert-u280").design]), lengths,
                        "bert prefill")
