"""A LLaMA-class model as the accelerator runs it: the host embeds the tokens, applies the final
RMSNorm and the (tied) LM head in NumPy, and one layer's hardware runs every layer in turn —
a prefill of the prompt, then one decode step per new token — each layer with its own region
of the KV cache.

Between layers the host dequantises a layer's output at its output scale and quantises it at
the next layer's input scale, as :func:`llmloom.sim.model.run_layers` does for BERT.

* :func:`quantize_llama` calibrates each layer of a GGUF model (:mod:`llmloom.sim.checkpoint`)
  on the float inputs a calibration text gives it through the float model
  (:class:`~llmloom.sim.golden.llama.LlamaFloat`), W8A8 (int8 weights per group of 32, Q8_0),
  in the numerics ``scheme``; the result is kept in memory per (file, num_layers, quant,
  scheme), so a second run in the same process does not calibrate again.
* :class:`LlamaSession` runs token ids through the calibrated layers: each layer by
  ``run_layer(n, cfg, weights, x_int, mode, cache) → (y_int, cache)`` — the bit-exact model by
  default (:func:`golden_step`), or each layer's RTL on a simulator (``llmloom.flows``) —
  and gives the vocabulary logits of every row.
* :func:`generate` is greedy decoding on a session; :func:`teacher_forced` the logits of a
  whole text in one prefill (next-token agreement and perplexity against float).

W4A8 keeps the GGUF's 4-bit codes exactly, with each group of 32's scale and minimum as
16-bit integers (``LayerConfig.weight_bits`` 4; in the layer's RTL each linear stage's GEMM
holds the codes and the groups' tables); W8A8 quantises the weights the codes stand for to
int8 codes with a scale per group of 32 inputs, as GGUF's Q8_0 (``LayerConfig.weight_groups``,
:func:`~llmloom.sim.quantize.q8_0_of`; ``weight_groups=False``: one scale per output channel).
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import numpy as np

from ..hw.blocks.softmax import EXP_FRAC_MARGIN, MIN_EXP_FRAC
from ..hw.layers.description import TRAINED_SCHEME
from ..hw.layers.weights_image import image_layout
from .accuracy import DEFAULT_CALIB_TEXT
from .checkpoint import LAYER_TENSORS, CheckpointError, GgufModel, chat_prompt, smollm2_path
from .golden.layers import dequantize, layer_bitexact
from .golden.llama import LlamaFloat, rms_norm
from .quantize import quantize_input, quantize_layer

__all__ = ["QUANTS", "CALIB_TEXT", "STREAM_EXPONENT", "QuantizedLlama",
           "quantize_llama", "float_llama", "golden_step", "host_logits", "tokenizer_of",
           "stop_ids", "LlamaSession", "generate", "Generation", "teacher_forced",
           "layer_weight_bytes", "clear_cache", "kv_positions",
           "AUTO_CONTEXT_MIN"]

#: The quantisations ``llmloom generate --quant`` names (perf's names).
QUANTS = ("W8A8", "W4A8")

#: Calibration text: one chat turn (the template's special tokens, whose rows carry the
#: largest activations, included) around plain English prose, none of the judged or prompted
#: text.
CALIB_TEXT = chat_prompt("Tell me about the lighthouse keeper.") + DEFAULT_CALIB_TEXT + \
    "<|im_end|>\n"

#: The residual stream's row exponents (``LayerConfig.stream_exponent``) of the layers
#: :func:`quantize_llama` calibrates, unless told: block floating point per token, 0..15, for
#: the first token's massive activation. The layer's RTL has them too (its ``i_e`` and ``o_e``
#: streams), so ``generate`` and the demo calibrate with them on every simulator.
STREAM_EXPONENT = 15

#: The layer's hardware shape, when not given: the layer config's defaults (the parallelism
#: shapes the cycles, not the numbers).
_LAYER_ARCH = "llama"

_GGUF = {}          # (path, mtime) → GgufModel
_TOKENIZER = {}     # (path, mtime) → GgufTokenizer
_FLOAT = {}         # (path, mtime, num_layers) → LlamaFloat
_QUANT = {}         # (path, mtime, num_layers, quant, scheme, calib, fields) → QuantizedLlama


def clear_cache():
    """Forget every model kept in memory."""
    for cache in (_GGUF, _TOKENIZER, _FLOAT, _QUANT):
        cache.clear()


def _file_key(path):
    path = Path(path).resolve()
    return str(path), path.stat().st_mtime_ns


def _num_layers(spec, num_layers):
    n = spec.layers if num_layers is None else num_layers
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= spec.layers:
        raise CheckpointError(f"--num-layers {num_layers} is out of range; allowed: "
                              f"1..{spec.layers} (the model's layers)")
    return n


def _open(path):
    """The GgufModel of ``path`` (default SmolLM2), opened once per file: reading a GGUF's
    vocabulary takes seconds."""
    path = smollm2_path() if path is None else Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file {path} does not exist")
    key = _file_key(path)
    model = _GGUF.get(key)
    if model is None:
        model = _GGUF[key] = GgufModel(path)
    return key, model


def float_llama(path=None, num_layers=None):
    """``(GgufModel, LlamaFloat)`` of the GGUF file ``path`` (default SmolLM2) with its first
    ``num_layers`` layers, float32, kept in memory per (file, num_layers)."""
    key, model = _open(path)
    n = _num_layers(model.spec, num_layers)
    fm = _FLOAT.get((*key, n))
    if fm is None:
        fm = _FLOAT[(*key, n)] = LlamaFloat(model, np.float32, num_layers=n)
    return model, fm


def tokenizer_of(path=None):
    """The tokenizer of the GGUF file ``path`` (default SmolLM2), built once per file."""
    key, model = _open(path)
    tok = _TOKENIZER.get(key)
    if tok is None:
        tok = _TOKENIZER[key] = model.tokenizer()
    return tok


def stop_ids(path=None):
    """The ids that end an answer: the model's end-of-sequence token and ChatML's
    ``<|im_end|>`` (where the vocabulary has it)."""
    _, model = _open(path)
    ids = set()
    eos = model.metadata("tokenizer.ggml.eos_token_id", None)
    if eos is not None:
        ids.add(int(eos))
    with contextlib.suppress(CheckpointError):
        ids.add(tokenizer_of(path).token_id("<|im_end|>"))
    return tuple(sorted(ids))


def host_logits(host, x):
    """The host's end of the model: the final RMSNorm of the last layer's rows ``x`` (in
    float64), then the LM head in float32 (the head's weights stay float32: casting them
    would copy vocab × d on every call)."""
    n = rms_norm(np.asarray(x, np.float64), host.norm_g, host.spec.rms_eps)
    return n.astype(np.float32) @ host.lm_head


@dataclasses.dataclass(frozen=True, eq=False)
class QuantizedLlama:
    """A LLaMA-class model with its layers quantised for the accelerator.

    Attributes
    ----------
    host : LlamaFloat
        The float model: the host's embedding, final norm and LM head, and the float layers
        (the reference).
    layers : tuple of (LayerConfig, LayerWeights, float)
        Each layer's calibrated config, int8 weights and input scale.
    tokenizer : GgufTokenizer
    quant, scheme : str
    calib_tokens : int
    path : Path
    """

    host: LlamaFloat
    layers: tuple
    tokenizer: object
    quant: str
    scheme: str
    calib_tokens: int
    path: Path

    @property
    def spec(self):
        return self.host.spec

    @property
    def num_layers(self):
        return len(self.layers)

    def with_seq(self, seq):
        """The same layers with a KV cache (and RoPE tables) of ``seq`` positions: the
        calibrated numbers do not depend on it."""
        if not 2 <= seq <= self.spec.context:
            raise CheckpointError(f"{seq} positions are not allowed; allowed: 2.."
                                  f"{self.spec.context} (the model's context)")
        return dataclasses.replace(self, layers=tuple((cfg.replace(seq=seq), w, s)
                                                      for cfg, w, s in self.layers))


#: ``--context auto``: the depths it rounds up to are powers of two from this one, the
#: bounds of the softmax's exp-table precision (every depth up to 16 shares one), so a
#: sequence's outputs there are those of its own depth
AUTO_CONTEXT_MIN = 1 << (MIN_EXP_FRAC - EXP_FRAC_MARGIN)


def kv_positions(need, limit, context=None):
    """The KV cache depth (each layer's ``seq``, part of a fetched layer build's structure)
    a sequence of ``need`` positions (prompt and new tokens) runs with on a model of
    ``limit`` positions of context.

    ``context``: ``None``, ``need`` (at least 2), the fewest cycles; an int, that depth, a
    fixed size as llama.cpp's ``-c``: one build serves every sequence that fits; ``"auto"``,
    the smallest power of two from :data:`AUTO_CONTEXT_MIN` holding ``need`` (at most
    ``limit``): one build per power of two, and the outputs of depth ``need``.

    A sequence's tokens and logits depend on the depth only through the softmax's exp table,
    of ``max(15, ceil(log2 seq) + 11)`` fraction bits (:attr:`~llmloom.hw.blocks.softmax.
    SoftmaxConfig.exp_frac`; the attention masks the positions not yet written): the same at
    every depth of one power-of-two band (17..32, 33..64, ...; every depth up to 16), a little
    finer past each. The cycles depend on it throughout, so the default is ``need``: the
    attention's arrays span every position of the cache whatever the sequence's length
    (:func:`llmloom.perf.pipeline.attention`: Q·Kᵀ over ``seq`` keys, the softmax over
    ``seq`` scores, P·V over ``seq`` rows) and the image's RoPE tables have ``seq`` rows.
    SmolLM2's layer, a 16-token prompt and 8 new tokens: 6,526,566 cycles at 24 positions,
    6,561,504 at 32 (+0.5 %), 6,701,256 at 64 (+2.7 %) (perf's figures, exact for the RTL).
    A ValueError (naming ``--context``) when ``context`` is outside ``max(2, need)..limit``
    or ``"auto"``."""
    low = max(2, need)
    if context is None:
        return low
    if context == "auto":
        if low > limit:
            raise ValueError(f"{need} positions are not allowed; allowed: 2..{limit} (the "
                             "model's context)")
        return min(limit, max(AUTO_CONTEXT_MIN, 1 << (low - 1).bit_length()))
    if not (isinstance(context, int) and low <= context <= limit):
        raise ValueError(f"--context {context} is not allowed; allowed: {low}..{limit} ({need} "
                         f"positions needed: the prompt and the new tokens; {limit}: the "
                         f"model's context), or auto")
    return context


def quantize_llama(path=None, num_layers=None, quant="W8A8", scheme=TRAINED_SCHEME,
                   calib_text=None, progress=None, stream_exponent=STREAM_EXPONENT,
                   **layer_fields):
    """The GGUF model ``path`` (default SmolLM2) with its first ``num_layers`` layers
    quantised ``quant`` in numerics ``scheme``, each layer calibrated on the float input that
    ``calib_text`` (default :data:`CALIB_TEXT`) gives it. ``layer_fields``: the layer's
    parallelism (:class:`~llmloom.hw.layers.config.LayerConfig` fields). Kept in memory per
    (file, num_layers, quant, scheme, calibration text, fields). ``progress(n)`` after each
    layer calibrated. ``stream_exponent``: the layers' residual stream in block floating point
    per token, exponents 0..E (:data:`STREAM_EXPONENT`; 0: one static scale
    per tensor; the RTL has both). Returns a :class:`QuantizedLlama` (KV cache of the
    calibration's length: :meth:`QuantizedLlama.with_seq` sizes it)."""
    layer_fields = {**layer_fields, "stream_exponent": stream_exponent}
    if quant not in QUANTS:
        raise CheckpointError(f"quant={quant!r} is not allowed; allowed: {' | '.join(QUANTS)}")
    if quant == "W4A8":
        layer_fields["weight_bits"] = 4
    else:
        layer_fields.setdefault("weight_groups", True)
    model, fm = float_llama(path, num_layers)
    calib = CALIB_TEXT if calib_text is None else calib_text
    key = (*_file_key(model.path), fm.num_layers, quant, scheme, calib,
           tuple(sorted(layer_fields.items())))
    qm = _QUANT.get(key)
    if qm is not None:
        return qm
    tokenizer = tokenizer_of(model.path)
    ids = tokenizer.encode(calib)
    if len(ids) < 2:
        raise CheckpointError("the calibration text must give at least two tokens")
    s = fm.spec
    # each layer calibrated on the float input the calibration text gives it
    x, cache, layers = fm.embed(ids), fm.new_cache(), []
    for n in range(fm.num_layers):
        q4 = None if quant == "W8A8" else {
            name: model.q4_1(f"blk.{n}.{tensor}.weight")
            for tensor, (name, matrix) in LAYER_TENSORS.items() if matrix}
        layers.append(quantize_layer(fm.layers[n], x, _LAYER_ARCH, s.heads, seq=len(ids),
                                     eps=s.rms_eps, kv_heads=s.kv_heads,
                                     rope_base=s.rope_base, scheme=scheme, q4_weights=q4,
                                     **layer_fields))
        x = fm.layer(n, x, 0, cache)
        if progress is not None:
            progress(n + 1)
    qm = _QUANT[key] = QuantizedLlama(host=fm, layers=tuple(layers), tokenizer=tokenizer,
                                      quant=quant, scheme=scheme, calib_tokens=len(ids),
                                      path=model.path)
    return qm


def golden_step(n, cfg, weights, x_int, mode, cache):
    """Layer ``n`` by the bit-exact model: ``(y_int, cache)`` (the ``run_layer`` of
    :class:`LlamaSession`)."""
    return layer_bitexact(cfg, weights, x_int, mode, cache)


class LlamaSession:
    """One sequence through a :class:`QuantizedLlama`: its KV cache, a region per layer, and
    the tensors run so far.

    Parameters
    ----------
    qmodel : QuantizedLlama
        Sized for the sequence (:meth:`QuantizedLlama.with_seq`).
    run_layer : callable
        ``run_layer(n, cfg, weights, x_int, mode, cache) → (y_int, cache)``: layer ``n`` on
        its input rows ``x_int`` (``mode`` ``"prefill"`` for the first tensor, then
        ``"decode"``, one row), given and returning that layer's KV cache.

    Members
    -------
    caches : list
        Each layer's KV cache (its positions × kv_heads·d_head K and V rows).
    sizes : list of int
        The rows of each tensor run (a prefill, then decode steps of one).
    tokens : list of int
        The token ids run, in order.
    """

    def __init__(self, qmodel, run_layer=golden_step):
        self.qmodel, self.run_layer = qmodel, run_layer
        self.caches = [None] * qmodel.num_layers
        self.sizes, self.tokens = [], []

    @property
    def position(self):
        return len(self.tokens)

    def forward(self, ids, progress=None):
        """The logits (rows × vocab, float64) of token ``ids`` after the positions run so far:
        the first call is the prefill, each later one a decode step of one token.
        ``progress(n)`` after each layer."""
        ids = [int(i) for i in ids]
        spec, layers = self.qmodel.spec, self.qmodel.layers
        if not ids or min(ids) < 0 or max(ids) >= spec.vocab:
            raise ValueError(f"token ids must be in 0..{spec.vocab - 1} (at least one)")
        mode = "prefill" if not self.tokens else "decode"
        if mode == "decode" and len(ids) != 1:
            raise ValueError(f"a decode step takes one token; got {len(ids)}")
        seq = layers[0][0].seq
        if self.position + len(ids) > seq:
            raise ValueError(f"{self.position + len(ids)} positions exceed the KV cache of "
                             f"{seq}")
        x = self.qmodel.host.embed(ids).astype(np.float64)
        for n, (cfg, weights, x_scale) in enumerate(layers):
            x_int = quantize_input(x, x_scale, cfg.width("x"), cfg.stream_exponent)
            y, self.caches[n] = self.run_layer(n, cfg, weights, x_int, mode, self.caches[n])
            x = dequantize(y, cfg.y_scale)
            if progress is not None:
                progress(n + 1)
        self.sizes.append(len(ids))
        self.tokens.extend(ids)
        return host_logits(self.qmodel.host, x)


@dataclasses.dataclass
class Generation:
    """What :func:`generate` gives: the prompt's and the new token ids, and the logits of
    every position run (one row per token of ``prompt + new``)."""

    prompt: list
    new: list
    logits: np.ndarray
    stopped: bool           # ended on a stop token

    @property
    def tokens(self):
        return self.prompt + self.new


def generate(session, prompt, max_new_tokens, stop=(), on_token=None, on_prefill=None):
    """Greedy decoding on ``session`` (fresh): the prompt's ids in one prefill, then one
    decode step per new token, until ``max_new_tokens`` or a token of ``stop`` (included).
    Every new token is run through the layers too, so the logits have a row per position.
    ``on_token(id)`` as each new token is chosen; ``on_prefill(n)`` after each layer of the
    prefill. Returns a :class:`Generation`."""
    if session.tokens:
        raise ValueError("generate starts a sequence: the session has run tokens already")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} is not allowed; allowed: >= 1")
    rows = [session.forward(prompt, on_prefill)]
    new, stopped = [], False
    while True:
        nxt = int(np.argmax(rows[-1][-1]))
        new.append(nxt)
        if on_token is not None:
            on_token(nxt)
        rows.append(session.forward([nxt]))
        stopped = nxt in stop
        if stopped or len(new) == max_new_tokens:
            break
    return Generation(prompt=list(prompt), new=new, logits=np.concatenate(rows), stopped=stopped)


def teacher_forced(qmodel, ids, run_layer=golden_step, progress=None):
    """``(logits, float_logits)`` of token ``ids`` in one prefill through the quantised layers
    and through the float model (rows × vocab, float64 and float32)."""
    qm = qmodel.with_seq(kv_positions(len(ids), qmodel.spec.context))
    logits = LlamaSession(qm, run_layer).forward(ids, progress)
    host = qmodel.host
    cache, x = host.new_cache(), host.embed(ids)
    for n in range(host.num_layers):
        x = host.layer(n, x, 0, cache)
    return logits, host_logits(host, x)


def layer_weight_bytes(cfg):
    """Bytes of one layer's weight matrices as the engines read them: the ``weights`` and
    (grouped weights) ``groups`` sections of its image
    (:func:`~llmloom.hw.layers.weights_image.image_layout`, the one home of that layout: int8
    one a weight, W4 half a byte a weight, and with groups, W4 or W8 ``weight_groups``, each
    group's 16-bit scale and (W4) minimum, padded to the engines' tiles). The re-quantiser
    constants, well under 1 % of them, are not counted: the shapes alone decide."""
    return sum(sec.nbytes for sec in image_layout(cfg) if sec.part in ("weights", "groups"))
