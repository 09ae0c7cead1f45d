"""The numerics schemes of a layer description (`hw/layers/description.py`)."""

import pytest


# ---- numerics schemes of a description -----------------------------------------------------
def test_dynamic_scheme_narrows_each_stream_tensor_once_before_its_linear_readers():
    from llmloom.hw.layers.bert import BERT
    from llmloom.hw.layers.gpt2 import GPT2

    for desc in (GPT2, BERT):
        assert desc.for_scheme("static") is desc
        dyn = desc.for_scheme("dynamic")
        assert dyn.scheme == "dynamic" and dyn.for_scheme("dynamic") is dyn
        for st in dyn.of_kind("linear"):
            t = st.inputs[0]
            # every engine multiplies int8, or the description's narrow width (BERT: int9)
            assert dyn.width(t) == (dyn.narrow if dyn.row_exponent(t) else 8)
            if dyn.row_exponent(t):
                assert dyn.width(dyn.base(t)) == 16 and dyn.producer(t).kind == "quant"
        quants = dyn.of_kind("quant")
        assert len({st.inputs[0] for st in quants}) == len(quants)   # one per wide tensor
        # the residual stream is wide, the attention's tensors and the act's input narrow
        assert {dyn.width(t) for t in ("x", "r1", "r2", "o", "f", "g", desc.output)} == {16}
        assert {dyn.width(t) for t in ("q", "k", "v", "attn", "u")} == {8}
        # the static description is unchanged: all int8, no quant stages
        assert {desc.width(t) for t in desc.tensors} == {8} and not desc.of_kind("quant")
    bert = BERT.for_scheme("dynamic")
    assert [st.name for st in bert.of_kind("quant")] == ["quant_x", "quant_n1", "quant_g"]
    assert bert["q"].inputs == ("x_i8",) and bert["f2"].inputs == ("g_i8",)
    assert bert["residual1"].inputs == ("o", "x")            # the skip stays wide


def test_narrow_width_is_the_quant_outputs_and_the_engines_activation_width():
    import dataclasses

    from llmloom.hw.layers.bert import BERT
    from llmloom.hw.layers.config import LayerConfig
    from llmloom.hw.layers.gpt2 import GPT2

    assert GPT2.narrow == 8 and BERT.narrow == 9
    cfg = LayerConfig(arch="bert", d_model=16, heads=2, d_ff=32, seq=4, scheme="dynamic")
    for name in ("q", "k", "v", "f1", "f2"):
        assert cfg.linear(name).a_width == 9 and cfg.requant(name).e_max == 16 - 9
    assert cfg.linear("o").a_width == 8                    # attn stays int8
    assert cfg.quant("quant_x").out_width == 9
    assert LayerConfig(arch="bert", d_model=16, heads=2, d_ff=32, seq=4).linear("q").a_width == 8
    with pytest.raises(ValueError, match=r"narrow=11 is not allowed; allowed: 8 \| 9 \| 10$"):
        dataclasses.replace(BERT, narrow=11)


def test_unknown_scheme_is_refused():
    from llmloom.hw.layers.gpt2 import GPT2
    with pytest.raises(ValueError, match="scheme='w4' is not allowed; allowed: static | dynamic"):
        GPT2.for_scheme("w4")


def test_row_exponent_tensors_are_read_by_norms_and_skips_only():
    """LLaMA's residual stream proper (x r1 r2) may carry row exponents; a tensor a linear
    stage or a residual's branch reads may not (its readers would need the exponent)."""
    import dataclasses

    from llmloom.hw.layers.description import Stage
    from llmloom.hw.layers.gpt2 import GPT2
    from llmloom.hw.layers.llama import LLAMA
    assert LLAMA.row_exponents == ("x", "r1", "r2") and GPT2.row_exponents == ()
    assert LLAMA.for_scheme("dynamic").row_exponents == LLAMA.row_exponents
    with pytest.raises(ValueError, match="'n1' is not the input or a residual's output"):
        dataclasses.replace(LLAMA, row_exponents=("n1",))
    with pytest.raises(ValueError, match="'r1' is read by a stage other than a norm"):
        dataclasses.replace(LLAMA, stages=(*LLAMA.stages, Stage("extra", "act", ("r1",), "z")))


def test_wide_tensors_are_wider_than_int16_in_the_dynamic_scheme_only():
    """LLaMA's p (mul → down's quantiser) and f (down → residual2's branch) are int24: their
    rows differ in range by more than int16 holds at one static scale (hw/layers/llama.py)."""
    import dataclasses

    from llmloom.hw.layers.config import LayerConfig
    from llmloom.hw.layers.description import Stage
    from llmloom.hw.layers.llama import LLAMA

    assert LLAMA.wide == (("p", 24), ("f", 24))
    dyn = LLAMA.for_scheme("dynamic")
    assert dyn.width("p") == dyn.width("f") == 24 and dyn.width("hu") == dyn.width("r1") == 16
    assert LLAMA.width("p") == LLAMA.width("f") == 8                 # static: all int8
    cfg = LayerConfig(arch="llama", d_model=16, heads=2, kv_heads=1, d_ff=32, seq=4,
                      scheme="dynamic")
    # down reads p's int10 rows with exponents 0..24-10; it writes int24 into residual2's branch
    assert cfg.quant("quant_p").in_width == 24 and cfg.requant("down").e_max == 14
    assert cfg.quant("quant_p").out_width == cfg.linear("down").a_width == 10
    assert cfg.mul("mul").out_width == 24 and cfg.requant("down").out_width == 24
    assert cfg.residual2.x_width == 24 and cfg.residual2.r_width == 16
    with pytest.raises(ValueError, match="wide tensor 'n1' is not a stream tensor written by"):
        dataclasses.replace(LLAMA, wide=(("n1", 24),))
    with pytest.raises(ValueError, match="'p' of 32 bits is not allowed; allowed: 17..24"):
        dataclasses.replace(LLAMA, wide=(("p", 32),))
    with pytest.raises(ValueError, match="'f' is read by a stage other than a per-token"):
        dataclasses.replace(LLAMA, stages=(*LLAMA.stages, Stage("extra", "norm", ("f",), "z")))
    # the activation's input: act_width bits in the dynamic scheme, never a stream tensor's
    with pytest.raises(ValueError, match=r"act_width=13 is not allowed; allowed: 8 \| 9 \| 10"):
        dataclasses.replace(LLAMA, act_width=13)
    from llmloom.hw.layers.gpt2 import GPT2

    with pytest.raises(ValueError, match="act_width=10 on an activation whose input is a"):
        dataclasses.replace(GPT2, stream=(*GPT2.stream, "u"), act_width=10)
