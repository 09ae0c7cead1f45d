"""A layer's constants as one off-chip memory image, in the order its engines consume them, so
that :class:`~llmloom.hw.blocks.axi_reader.AxiReader` streaming a section of it is exactly
what an engine's ``weight`` stream loads.

For each linear stage, in the order of the layer's description, four sections (five with
grouped weights, W4 or W8 ``weight_groups``, ``groups`` after ``weights``):

``weights``
    The int8 matrix as the engine's ``weight`` stream carries it (:class:`Gemm` and
    :class:`Gemv` alike): ``k`` rows of ``n_tiles·cols`` bytes, the lanes past ``n`` zero, row
    by row. Read with ``lanes == cols`` (a ``data_width`` of ``8·cols``), beat ``b`` of the
    reader is beat ``b`` of the weight stream. At W4 (GGUF's Q4_1 codes, kept exactly) the
    grouped GEMM's ``weight`` stream (:meth:`Gemm.weight_rows`): ``k/2`` rows of
    ``n_tiles·cols`` bytes, a feature tile's beat its ``cols`` codes of row ``2r`` then of
    row ``2r+1``, two to a byte (code ``2j`` of the beat in byte ``j``'s low nibble), so again
    reader beat ``b`` is weight beat ``b``, half as many. W8 in groups (GGUF's Q8_0,
    ``weight_groups``): the int8 codes, as the int8 matrix.
``groups``
    Grouped weights only: each group's int16 scale ``D`` and, at W4, minimum ``M`` (GGUF's
    float16 ``d`` and ``m`` as the calibration makes them integers; Q8_0 has no ``m``),
    little-endian, as the GEMM's ``group`` stream carries them (:meth:`Gemm.group_rows`,
    ``GemmConfig.group_tables``): ``k/32`` rows of ``n_tiles`` beats of ``T·cols`` int16, a
    feature tile's ``cols`` scales then (W4) its ``cols`` minima, lanes past ``n`` zero;
    ``2·T`` reader beats a ``group`` beat.
``scales``
    The per-output-channel scale in the form the stage's re-quantiser computes with: its
    aligned fixed-point multiplier ``M_c`` (:attr:`RequantConfig.multipliers`; ``M_c·2**-s``
    is ``s_in·w_scale[c]/s_out``), int32 little-endian, channel order, padded to the
    re-quantiser's ``beats·lanes`` channel-table words (a float ``w_scale`` is what calibration
    keeps, not what hardware multiplies by; the common shift ``s`` is a constant of the
    re-quantiser's shifter and stays in the config).
``bias``
    The int32 bias per channel (accumulator units), likewise.
``shift``
    The common shift ``s`` of the multipliers, one int32: calibrations differ in it, and the
    re-quantiser takes it at run time with the rest (``Requant(cfg, load=True)``, whose
    ``load`` stream these last three sections make, :class:`~.fetched.FetchedLinear`).

A whole layer's image (:func:`fetched_layer_layout`, what
:class:`~.fetched.FetchedLayer` fetches) is those sections and one more, ``constants``: the
calibrated memories of every other stage (:func:`~.layer.layer_constants`: norm gains and
constants, RoPE tables, the attention's re-quantisers and exp table, the activation table,
the mul's and residuals' multipliers), each memory word as 32-bit chunks, low bits first
(:meth:`~llmloom.hw.blocks.loadable.Constant.words`), in the list's order.

Every section starts on a multiple of :data:`ALIGN` bytes (a 512-bit bus word), so a reader
of any width starts each one on a word boundary; the gaps are zero. The layout depends on the
config's shapes only (:func:`image_layout`); :func:`pack_layer_image` fills it and
:func:`unpack_layer_image` reads it back.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..blocks.gemm import Gemm
from ..blocks.gemm_config import group_tables
from ..config import ConfigError
from .config import WEIGHT_GROUP
from .layer import layer_constants

__all__ = ["ALIGN", "Section", "LinearImage", "image_layout", "pack_layer_image",
           "unpack_layer_image", "fetched_layer_layout", "pack_fetched_layer"]

#: Section alignment in bytes: the widest AXI data bus the reader supports (512 bits).
ALIGN = 64
PARTS = ("weights", "scales", "bias", "shift")
#: The sections of a grouped stage (W4, or W8 ``weight_groups``): ``groups`` (the GEMM's
#: ``group`` stream) after the codes.
W4_PARTS = ("weights", "groups", "scales", "bias", "shift")


@dataclasses.dataclass(frozen=True)
class Section:
    """One section of the image: ``rows × cols`` values of ``dtype`` at byte ``offset``."""

    stage: str
    part: str
    offset: int
    rows: int
    cols: int
    dtype: str

    @property
    def nbytes(self):
        return self.rows * self.cols * np.dtype(self.dtype).itemsize

    @property
    def end(self):
        return self.offset + self.nbytes


@dataclasses.dataclass(frozen=True, eq=False)
class LinearImage:
    """What a linear stage's sections hold: the k×n int8 weights (W4: the 4-bit codes), the
    re-quantiser's per-channel multipliers and int32 biases (``n`` each) and their common
    shift; grouped, each group's integer scale and (W4) minimum (k/32 × n each; ``None`` where
    there is none)."""

    weights: np.ndarray
    multipliers: np.ndarray
    bias: np.ndarray
    group_scale: np.ndarray | None = None
    group_min: np.ndarray | None = None
    shift: int | None = None


def _linear_stages(cfg):
    return [st.name for st in cfg.description.of_kind("linear")]


def _align(n):
    return -(-n // ALIGN) * ALIGN


def image_layout(cfg):
    """The sections of ``cfg``'s image (a :class:`~llmloom.hw.layers.config.LayerConfig`), in
    memory order; from its shapes alone."""
    out, offset = [], 0
    for name in _linear_stages(cfg):
        eng, rq = cfg.linear(name), cfg.requant(name)
        channels, width = rq.beats * rq.lanes, eng.n_tiles * eng.cols
        parts = (("weights", eng.k // 2, width, "uint8") if cfg.weight_bits == 4 else
                 ("weights", eng.k, width, "int8"),)
        if cfg.grouped:
            parts += (("groups", eng.k // WEIGHT_GROUP, group_tables(eng.w_width) * width,
                       "<i2"),)
        for part, rows, cols, dtype in (*parts, ("scales", 1, channels, "<i4"),
                                        ("bias", 1, channels, "<i4"), ("shift", 1, 1, "<i4")):
            sec = Section(name, part, offset, rows, cols, dtype)
            out.append(sec)
            offset = _align(sec.end)
    return tuple(out)


def pack_layer_image(cfg, weights):
    """The image (``bytes``) of a calibrated layer: ``cfg`` with its numbers, ``weights`` its
    :class:`~llmloom.hw.layers.config.LayerWeights`."""
    if cfg.numbers is None:
        raise ConfigError("a weight image needs a calibrated config (its scales and biases); "
                          "this one is shape-only")
    weights.check(cfg)
    layout = image_layout(cfg)
    buf = bytearray(layout[-1].end if layout else 0)
    for sec in layout:
        arr = np.zeros((sec.rows, sec.cols), dtype=sec.dtype)
        eng = cfg.linear(sec.stage)
        if sec.part == "weights" and cfg.weight_bits == 4:
            codes = Gemm.weight_rows(eng, weights.matrix(sec.stage)).astype(np.uint8)
            arr[:] = codes[:, 0::2] | (codes[:, 1::2] << 4)
        elif sec.part == "weights":
            w = eng.check_codes(weights.matrix(sec.stage)) if eng.weight_groups else \
                eng.check_weights(weights.matrix(sec.stage))
            arr[:, :w.shape[1]] = w
        elif sec.part == "groups":
            p = cfg.numbers.params(sec.stage)
            arr[:] = Gemm.group_rows(eng, **{t: getattr(p, t) for t in eng.group_tables})
        elif sec.part == "shift":
            arr[0, 0] = cfg.requant(sec.stage).multipliers[1]
        else:
            rq = cfg.requant(sec.stage)
            vals = rq.multipliers[0] if sec.part == "scales" else rq.channel_bias
            arr[0, :rq.length] = vals
        buf[sec.offset:sec.end] = arr.tobytes()
    return bytes(buf)


def unpack_layer_image(cfg, image):
    """``{stage: LinearImage}`` read back from an image of ``cfg``'s layout (the inverse of
    :func:`pack_layer_image`). Raises ``ValueError`` if the image is too short or a padding
    lane is not zero."""
    layout = image_layout(cfg)
    need = layout[-1].end if layout else 0
    if len(image) < need:
        raise ValueError(f"the image has {len(image)} bytes; the layout needs {need}")
    parts = {}
    for sec in layout:
        arr = np.frombuffer(image, dtype=sec.dtype, count=sec.rows * sec.cols,
                            offset=sec.offset).reshape(sec.rows, sec.cols)
        eng = cfg.linear(sec.stage)
        n = 1 if sec.part == "shift" else eng.n
        if sec.part == "weights" and cfg.weight_bits == 4:
            # the stream's rows (k/2 of n_tiles tiles of two rows' cols codes) back to k×n
            codes = np.stack([arr & 0x0F, arr >> 4], axis=2).reshape(
                sec.rows, eng.n_tiles, 2, eng.cols)
            arr = codes.transpose(0, 2, 1, 3).reshape(eng.k, eng.n_tiles * eng.cols)
        elif sec.part == "groups":
            tables = eng.group_tables
            pair = arr.reshape(sec.rows, eng.n_tiles, len(tables), eng.cols) \
                .transpose(2, 0, 1, 3)
            for part, table in zip(tables, pair, strict=True):
                table = table.reshape(sec.rows, eng.n_tiles * eng.cols)
                if np.any(table[:, n:]):
                    raise ValueError(f"{sec.stage} {part}: padding past channel {n} is not "
                                     "zero")
                parts[sec.stage, part] = table[:, :n].astype(np.int64)
            continue
        if np.any(arr[:, n:]):
            raise ValueError(f"{sec.stage} {sec.part}: padding past channel {n} is not zero")
        parts[sec.stage, sec.part] = arr[:, :n].astype(np.int8 if sec.part == "weights"
                                                       else np.int64)
    return {name: LinearImage(weights=parts[name, "weights"],
                              multipliers=parts[name, "scales"][0], bias=parts[name, "bias"][0],
                              group_scale=parts.get((name, "group_scale")),
                              group_min=parts.get((name, "group_min")),
                              shift=int(parts[name, "shift"][0, 0]))
            for name in _linear_stages(cfg)}


def fetched_layer_layout(cfg):
    """The sections of a whole layer's image (a calibrated ``cfg``: its stages' memories have
    the config's shapes whatever the calibration): :func:`image_layout`'s, then
    ``constants`` (stage ``"layer"``, one row of uint32)."""
    layout = image_layout(cfg)
    words = sum(c.depth * c.chunks for _, c in layer_constants(cfg))
    start = _align(layout[-1].end) if layout else 0
    return layout + (Section("layer", "constants", start, 1, words, "<u4"),)


def pack_fetched_layer(cfg, weights):
    """The whole image (``bytes``) of a calibrated layer, :func:`fetched_layer_layout`'s."""
    linear = pack_layer_image(cfg, weights)
    sec = fetched_layer_layout(cfg)[-1]
    words = np.concatenate([c.words() for _, c in layer_constants(cfg)]).astype("<u4")
    buf = bytearray(sec.end)
    buf[:len(linear)] = linear
    buf[sec.offset:sec.end] = words.tobytes()
    return bytes(buf)
