"""Parts of the composed layers (:mod:`.layer`): a linear stage (the engine ``cfg.engine``
names — the output-stationary GEMM or the decode GEMV — with its weights at elaboration, a
gearbox from the engine's columns to the stream lanes, the re-quantiser), the checks a layer
must pass to be built, and the depth of the queues on its skips."""

from __future__ import annotations

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..blocks.attention import check_rtl as check_attention_rtl
from ..blocks.dynquant import DynQuant
from ..blocks.gemm import Gemm
from ..blocks.gemv import Gemv
from ..blocks.loadable import constants_of
from ..blocks.requant import Requant
from ..blocks.residual import Residual
from ..config import ConfigError
from ..stream import Gearbox, row_layout
from .config import LayerConfig, LayerWeights

__all__ = ["Linear", "RowResidual", "row_exponent_depth", "check_layer_rtl",
           "check_layer_shape", "attention_bypass_depth", "ffn_bypass_depth",
           "ffn_in_flight_rows", "engine_held_rows", "skip_rows", "skip_depth",
           "BRANCH_SLACK_ROWS"]


def check_layer_rtl(cfg, weights):
    """:class:`ConfigError` unless the composed layer can be built: calibrated, weights of the
    right shapes, the ``cols`` of every linear stage's engine (:meth:`LayerConfig.linear`, GEMM
    or GEMV) dividing its output width (the gearboxes carry no padding lanes) and a multiple or
    divisor of ``lanes``, and the attention's own limits; W4 weights (``weight_bits`` 4) on
    the GEMM only (its grouped weights, ``GemmConfig.weight_groups``; the GEMV has none), W8
    weights in groups (``weight_groups``) too.
    (The GEMV's own rule, ``lanes`` dividing its ``rows``, is the config's:
    :class:`LayerConfig` rejects it.)"""
    if not isinstance(cfg, LayerConfig):
        raise TypeError(f"cfg must be a LayerConfig, not {cfg!r}")
    if not isinstance(weights, LayerWeights):
        raise TypeError(f"weights must be LayerWeights, not {weights!r}")
    if not cfg.calibrated:
        raise ConfigError("the layer config is not calibrated (a shape-only config has no "
                          "numbers); calibrate it with llmloom.sim.quantize")
    if cfg.grouped and cfg.engine != "gemm":
        what = "weight_groups=true" if cfg.weight_groups else "weight_bits=4"
        raise ConfigError(f"{what} with engine={cfg.engine}: the layer's RTL has "
                          "weight groups on the GEMM only; allowed: engine=gemm (or "
                          "weight_bits=8 without weight_groups)")
    weights.check(cfg)
    check_layer_shape(cfg)


def check_layer_shape(cfg):
    """:class:`ConfigError` unless the layer's dimensions and parallelism can be built, for a
    calibrated config or a shape-only one (the structural part of :func:`check_layer_rtl`:
    every linear stage's ``cols`` dividing its output width and a multiple or divisor of
    ``lanes``; the attention's gearbox rules)."""
    for name in cfg.linears:
        g = cfg.linear(name)
        if g.n % g.cols:
            raise ConfigError(f"{name}: cols={g.cols} does not divide the output width "
                              f"{g.n}; allowed: a divisor of it (the layer RTL)")
        if max(g.cols, cfg.lanes) % min(g.cols, cfg.lanes):
            raise ConfigError(f"{name}: cols={g.cols} and lanes={cfg.lanes}: allowed: one a "
                              "multiple of the other (the layer RTL)")
    check_attention_rtl(cfg.attention)


def _beats(cfg, width):
    return width // cfg.lanes


#: Rows that the row kernels and register stages of a skip's branch hold besides its engines
#: (layernorm's row buffer, the gearboxes, re-quantisers and the GELU table, each at most a
#: row or two).
BRANCH_SLACK_ROWS = 4


def engine_held_rows(cfg, rows):
    """Most token rows one linear engine of ``rows`` rows (``linear_rows`` or ``ffn_rows``)
    holds at once — rows it has taken input of but not yet emitted all of — for
    ``cfg.engine``.

    * GEMM: two activation banks of a token tile of ``rows`` rows (one being computed, one
      filling) and two output row banks of ``rows`` rows (one draining, one being written):
      ``4·rows``.
    * GEMV: a row sits in one of four places, each holding at most one row: its two activation
      banks (one row being computed or waiting, one filling), the multiply-accumulate stage
      (the last step of a row whose bank was freed as that step issued) and the result
      register (its last beat, waiting for the consumer): ``4``. Rows do not tile: a row
      starts as soon as its own input is in.
    """
    return 4 * rows if cfg.engine == "gemm" else 4


def skip_rows(cfg, stage):
    """Rows the queue on the skip of residual ``stage`` (a :class:`~.description.Stage`)
    must hold: as many as its branch — the stages between the fork and the residual's first
    input (:meth:`~.description.LayerDescription.branch`) — can hold, so that no stall
    pattern can deadlock the fork.

    * A branch through the attention: ``seq`` rows. The attention holds a whole tensor (up to
      ``seq`` rows) before it emits its first row, so every input row of the tensor must have
      passed the fork — and sit in the queue — by then, whichever engine the linear stages use.
    * Otherwise its engines' :func:`engine_held_rows` and :data:`BRANCH_SLACK_ROWS` (a branch
      that forks and joins again, LLaMA's gate and up projections into the ``mul``, counts
      both engines). Deadlock
      freedom needs far less — a GEMM starts a token tile when its ``rows`` rows (or a
      tensor's ``end``) are in, a GEMV a row as soon as it is in — but a queue this deep also
      never throttles the branch.
    """
    branch = cfg.description.branch(stage)
    if any(st.kind == "attention" for st in branch):
        return cfg.seq
    return sum(engine_held_rows(cfg, cfg.linear(st.name).rows)
               for st in branch if st.kind == "linear") + BRANCH_SLACK_ROWS


def exponent_depth(cfg, stage):
    """Beats (one per row) of the queue that carries a quant stage's row exponents to the
    re-quantiser of linear ``stage``: as many rows as its engine can hold
    (:func:`engine_held_rows`) and :data:`BRANCH_SLACK_ROWS`. A row's exponent leaves the
    quant stage with the row, and the re-quantiser takes it with the row's first result; in
    between the row goes through the engine, which starts a token tile only once its rows are
    in, so the queue must hold the exponents of every row the engine holds, or the quant stage
    (whose next row waits for its exponent to be taken) would stall the engine's input."""
    return engine_held_rows(cfg, cfg.linear(stage.name).rows) + BRANCH_SLACK_ROWS


def row_exponent_depth(cfg, stage):
    """Beats (one per row) of the queue that carries a row-exponent tensor's exponents
    (:meth:`~.config.LayerConfig.row_exponent`) to ``stage``: a residual's skip as many rows
    as the skip's own queue holds (:func:`skip_rows`), and 2 more, so that the exponents never
    hold up the fork of the rows; none (0) for a norm, which takes a row's exponent with the
    row's first beat, as the fork offers both (a queue's latency would delay that beat)."""
    if stage.kind == "residual":
        return skip_rows(cfg, stage) + 2
    return 0


def skip_depth(cfg, stage):
    """Beats of the queue on the skip of residual ``stage`` (:func:`skip_rows` rows)."""
    return skip_rows(cfg, stage) * _beats(cfg, cfg.d_model)


def attention_bypass_depth(cfg):
    """Beats of the queue that carries the skip around the attention (``residual1``'s)."""
    return skip_depth(cfg, cfg.description["residual1"])


def ffn_in_flight_rows(cfg):
    """Most rows the FFN branch (norm or not, FFN1, GELU, FFN2 and their re-quantisers) can
    hold between the fork and the residual add (``residual2``'s :func:`skip_rows`)."""
    return skip_rows(cfg, cfg.description["residual2"])


def ffn_bypass_depth(cfg):
    """Beats of the queue that carries the FFN's skip input (see :func:`ffn_in_flight_rows`)."""
    return ffn_in_flight_rows(cfg) * _beats(cfg, cfg.d_model)


class Linear(wiring.Component):
    """One linear stage of a layer: the engine of ``cfg.engine`` (weights held on chip from
    elaboration; at W4 the GEMM's 4-bit codes and group tables) → ``Gearbox(cols → lanes)`` →
    ``Requant``.

    The engine is :class:`~llmloom.hw.blocks.gemm.Gemm` (``engine="gemm"``) or
    :class:`~llmloom.hw.blocks.gemv.Gemv` (``engine="gemv"``), configured by
    ``cfg.linear(name)``. Both frame their output alike — int32 rows of ``n / cols`` beats of
    ``cols`` lanes (no padding lanes: ``cols`` divides ``n``, :func:`check_layer_rtl`),
    ``last`` on each row's last beat, ``end`` on the tensor's last beat (taken from ``end`` on
    the input's last row) — which is what the gearbox and the re-quantiser take, so the wiring
    is the same for both.

    Members
    -------
    i : In(stream.Signature(row_layout(signed(8), lanes)))
        Input rows (``in`` features), ``end`` on the last beat of a tensor (it flushes the
        GEMM's partial token tile; the GEMV needs no flush); int9 or int10 where the description's
        ``narrow`` widens the quant stage feeding it (the engine's ``a_width``).
    o : Out(stream.Signature(row_layout(signed(8), lanes)))
        Output rows at the stage's output scale (int16 where the dynamic scheme widens the
        stage's output).
    e : In(stream.Signature(row_layout(unsigned(e_width), 1)))
        When the input is a quant stage's (the dynamic scheme): one exponent per input row,
        which the re-quantiser undoes (:class:`~llmloom.hw.blocks.requant.Requant`).

    Latency: GEMM, a token tile (``rows`` rows, or fewer at a tensor's end) starts when it is
    all in (:class:`~llmloom.hw.blocks.gemm.Gemm`); GEMV, a row starts when it is in and takes
    ``n_tiles × k_words`` cycles (:class:`~llmloom.hw.blocks.gemv.Gemv`). Backpressure
    propagates to the engine's output registers and from there to its input.
    """

    def __init__(self, cfg: LayerConfig, weights: LayerWeights, name):
        self._cfg, self._w, self._name = cfg, weights, name
        super().__init__(self.stage_members(cfg, name))

    @staticmethod
    def stage_members(cfg: LayerConfig, name):
        """A linear stage's activation ports: ``i`` (its input rows), ``o`` (its output rows)
        and, when its re-quantiser takes row exponents, ``e``."""
        st = cfg.description[name]
        members = {"i": In(stream.Signature(row_layout(signed(cfg.width(st.inputs[0])),
                                                        cfg.lanes))),
                   "o": Out(stream.Signature(row_layout(signed(cfg.width(st.output)),
                                                        cfg.lanes)))}
        req = cfg.requant(name)
        if req.row_exponent:
            members["e"] = In(stream.Signature(row_layout(unsigned(req.e_width), 1)))
        return members

    def elaborate(self, platform):
        cfg, name = self._cfg, self._name
        g = cfg.linear(name)
        m = Module()
        # the submodule is named after the engine (`gemm` or `gemv`); its weight (and group
        # table) streams are left idle (the weights are the memories' initial contents)
        if cfg.engine == "gemv":
            engine = Gemv(g, weights=self._w.matrix(name))
        else:
            # at W4 the codes, with each group's scale and minimum (the stage's numbers)
            p = cfg.numbers.params(name)
            tables = ({name: getattr(p, name) for name in g.group_tables}
                      if g.weight_groups else {})
            engine = Gemm(g, weights=self._w.matrix(name), **tables)
        m.submodules[cfg.engine] = engine
        m.submodules.gear = gear = Gearbox(signed(g.OUT_WIDTH), g.cols, cfg.lanes, g.n)
        m.submodules.requant = req = Requant(cfg.requant(name))
        wiring.connect(m, wiring.flipped(self.i), engine.act)
        wiring.connect(m, engine.o, gear.i)
        if req.cfg.row_exponent:
            wiring.connect(m, gear.o, req.acc)
            wiring.connect(m, wiring.flipped(self.e), req.e)
        else:
            wiring.connect(m, gear.o, req.i)
        wiring.connect(m, req.o, wiring.flipped(self.o))
        return m


class RowResidual(wiring.Component):
    """A residual stage whose output carries row exponents (the layer config's
    ``stream_exponent`` E; :meth:`~.config.LayerConfig.row_exponent`): the
    :class:`~llmloom.hw.blocks.residual.Residual` of ``cfg.stage_config(name)`` (the skip
    aligned by its rows' exponents, the sum at the output's scale on ``out_width + E`` bits)
    → the :class:`~llmloom.hw.blocks.dynquant.DynQuant` of ``cfg.row_quant(name)`` (each
    row's exponent ``0..E`` and the row shifted by it), as
    :func:`llmloom.sim.golden.residual.residual_rows_bitexact` computes them.

    Members
    -------
    x, r : In(stream.Signature(row_layout(signed(width), lanes)))
        The branch and the skip (as :class:`~llmloom.hw.blocks.residual.Residual`'s).
    r_e : In(stream.Signature(row_layout(unsigned(e_width), 1)))
        The skip rows' exponents, one beat per row.
    o : Out(stream.Signature(row_layout(signed(out_width), lanes)))
        The output rows, each at the output scale times ``2**e``.
    o_e : Out(stream.Signature(row_layout(unsigned(e_width), 1)))
        Their exponents, one beat per row (``DynQuant.o_e``: offered before the row leaves).
    """

    def __init__(self, cfg: LayerConfig, name, *, loads=None):
        self._loads = loads
        self._res, self._quant = cfg.stage_config(name), cfg.row_quant(name)
        if self._quant is None:
            raise ValueError(f"stage {name!r}: its output carries no row exponents")
        res, ew = self._res, self._quant.e_width
        super().__init__({
            "x": In(stream.Signature(row_layout(res.X.shape, res.lanes))),
            "r": In(stream.Signature(row_layout(res.R.shape, res.lanes))),
            "r_e": In(stream.Signature(row_layout(unsigned(ew), 1))),
            "o": Out(stream.Signature(row_layout(res.OUT.shape, res.lanes))),
            "o_e": Out(stream.Signature(row_layout(unsigned(ew), 1))),
        })

    def constants(self):
        """The residual's calibrated memories (the row quantiser has none)."""
        return constants_of(Residual(self._res))

    def elaborate(self, platform):
        m = Module()
        m.submodules.add = add = Residual(self._res, loads=self._loads)
        m.submodules.quant = quant = DynQuant(self._quant)
        for port in ("x", "r", "r_e"):
            wiring.connect(m, wiring.flipped(getattr(self, port)), getattr(add, port))
        wiring.connect(m, add.o, quant.i)
        wiring.connect(m, quant.o_y, wiring.flipped(self.o))
        wiring.connect(m, quant.o_e, wiring.flipped(self.o_e))
        return m
