"""The leaf blocks' estimators: per block, its parts — the multipliers its RTL writes, its
memories as Yosys maps them (:mod:`.mapping`), its fitted logic (:mod:`.logic`) — and the
stream plumbing (gearboxes, queues, forks) the composites add. Each estimator registers itself
in :data:`BLOCKS` under the ``sim`` harness names it models."""

from __future__ import annotations

from ...hw import devices as _dev
from .logic import logic_bill
from .mapping import (
    Bill,
    const_multiplier_dsps,
    counter_bits,
    map_memory,
    multiplier_dsps,
    packed,
    rom_width,
)

__all__ = ["BLOCKS", "estimator", "gemm_parts", "gemv_parts", "requant_parts",
           "residual_parts", "activation_parts", "softmax_parts", "norm_parts", "dynquant_parts",
           "kvcache_parts", "gearbox_bill", "queue_bill", "fork_bill"]


#: ``{block name: estimator(cfg, family) -> {part: Bill}}`` of every modelled block (the
#: composites' too, :mod:`.composites`).
BLOCKS = {}


def estimator(*names):
    """Register the decorated ``fn(cfg, family)`` as the estimator of blocks ``names``."""
    def register(fn):
        for n in names:
            BLOCKS[n] = fn
        return fn
    return register


def _addr_mul(fam, counter_range, const):
    """Multipliers of an address ``counter × const`` (a constant that is not a power of two
    is a real product, and Yosys maps it like any other)."""
    return const_multiplier_dsps(fam, counter_bits(counter_range), False, const)


def _gemm_registers(cfg, fam):
    """Flip-flops the GEMM's RTL declares outside its memories: per PE the passed-on
    activation, weight and flag, the multiplier's operand and product registers, the flag
    through the multiplier's stages, the accumulator(s) and result(s); the input skews (row
    lane i and its flag delayed i + 1 steps, column lane j j + 1 steps); the array's
    registered inputs and step; the tile descriptors of the readout schedule
    (``readout_step + rows − 1`` stages, the previous one, stage 1, the due and the write
    one); the counters and flags of the loader, writer, feeder, readout and drain. On ECP5
    the multiplier's operand and first product registers are the MULT18X18D's own, not FFs;
    elsewhere Yosys may pull some into the hard multiplier, which the fitted coefficient
    (below 1 on iCE40) takes up. With ``weight_groups`` the PEs multiply codes
    (``mul_w_width`` bits) into one group's sums (``pe_acc_width``), ``pe_stages`` deep, each
    row has a row-sum column (its activation through the stages, an accumulator and a
    result), the array's step registers a group's scales and minima for its queue, the
    scaling after the array registers its two products per column, and the group tables'
    loader and queue have their counters."""
    from ...hw.blocks.gemm_config import GROUP_SCALE_BITS
    R, C, a, w, acc = cfg.rows, cfg.cols, cfg.a_width, cfg.mul_w_width, cfg.pe_acc_width
    NT, K, KB, LN = cfg.n_tiles, cfg.k, cfg.k_beats, cfg.lanes
    stages = cfg.pe_stages
    if cfg.dsp_packing:
        wp = 2 * w + 1                                    # a column pair's weights
        pw = a + _dev.packed_weight_bits(w)               # the packed product
        pes, pcols = R * (C // 2), C // 2
        pe = (a + wp + 1) + pw + stages + 4 * acc
        mult = a + wp + pw
    else:
        wp, pes, pcols = w, R * C, C
        pe = (a + w + 1) + (a + w) + stages + 2 * acc
        mult = 2 * (a + w)
    # the rule hw.blocks.gemm follows: unpacked products that fit the MULT18X18D
    in_dsp = _dev.multiplier_registers(fam.name, a, w, packed=cfg.dsp_packing)
    skews = R * (R + 1) // 2 * (a + 1) + pcols * (pcols + 1) // 2 * wp
    inputs = R * a + C * w + 2                                       # x_a, x_w, flag, step
    meta = 4 + counter_bits(NT) + counter_bits(R)
    groups = 0
    if cfg.weight_groups:
        gsum, T = cfg.group_sum_width, len(cfg.group_tables)
        meta += 2                                                    # first, last group
        groups = (R * (stages * (a + 1) + 2 * gsum) * cfg.group_minimum   # row sums (W4)
                  + T * C * GROUP_SCALE_BITS + 1                     # the step's (D[, M])
                  + T * C * (GROUP_SCALE_BITS + gsum)                # D·Σaq[, M·Σa]
                  + 2 * counter_bits(R) + 2 + 2 * 3)                 # readout tap, queue
    sched = (cfg.write_step + R + 3) * meta
    readout = 2 + 2 * counter_bits(R)                                          # due, wr_en and rows
    w_ = counter_bits
    counters = (w_(K) + w_(NT) + 1                                          # loader
                + 6 + 3 * w_(R) + w_(KB)                                    # writer
                + 4 + w_(cfg.tile_steps) + w_(KB) + 2 * w_(LN) + w_(NT) + w_(NT * K)
                + w_(cfg.flush_steps)                                       # feeder, stage 1
                + 7 + 3 * w_(R) + 1 + w_(NT) + 3)                           # banks, drain
    if cfg.weight_groups:
        counters += w_(cfg.groups) + w_(NT) + 1                             # group loader
    return (pes * (pe + (0 if in_dsp else mult)) + skews + inputs + sched + readout + counters
            + groups)


def gemm_parts(cfg, fam, *, rom_weights=False, weight_banks=1):
    """``weight_banks=2``: the double-buffered GEMM (loaded weights), its weight memory (and
    with ``weight_groups`` its group memory) twice as deep."""
    R, C, LN = cfg.rows, cfg.cols, cfg.lanes
    KB, NT, K = cfg.k_beats, cfg.n_tiles, cfg.k
    pair = cfg.k_per_word        # W4: a weight word holds two k's codes
    w = cfg.mul_w_width          # with weight_groups the codes, a signed 5-bit operand
    if cfg.dsp_packing:
        # column pairs sharing an activation, one a × packed-weight product each (AMD WP486):
        # one DSP48E2, but split in two on 18×18 / 16×16 multipliers (hw.devices' packing rule)
        per_mac = multiplier_dsps(fam, cfg.a_width, True, _dev.packed_weight_bits(w), True)
        macs = R * -(-C // 2)
    else:
        per_mac = multiplier_dsps(fam, cfg.a_width, True, w, True)
        macs = R * C
    # addresses: weight loader nt·K, output bank rows (bank·R + row)·NT (twice)
    addr = (0 if rom_weights else _addr_mul(fam, NT, K)) + \
        2 * const_multiplier_dsps(fam, counter_bits(2 * R), False, NT)
    scaling, group_bits, group_readout = 0, 0, 0
    if cfg.weight_groups:
        from ...hw.blocks.gemm_config import GROUP_SCALE_BITS
        # after the array, per column: D·Σa·q and M·Σa (int16 × a group's sum,
        # group_multipliers of them), and the group loader's nt·G
        gsum = cfg.group_sum_width
        per = multiplier_dsps(fam, GROUP_SCALE_BITS, True, gsum, True)
        scaling = cfg.group_multipliers * per + \
            (0 if rom_weights else _addr_mul(fam, NT, cfg.groups))
        # counted as PE bits (an adder a bit, as the accumulators: not fitted on their own):
        # the row-sum column's accumulators and the scaling's two adders a bit of each
        # column's sum; a product left in fabric adds its partial-product adders
        T = len(cfg.group_tables)
        group_bits = R * gsum * cfg.group_minimum + T * C * cfg.acc_width + \
            (0 if per else cfg.group_multipliers * GROUP_SCALE_BITS * gsum // 2)
        group_readout = (R - 1) * gsum * cfg.group_minimum   # the row sums' rows:1 mux (W4)
    parts = {
        # LUTs: the PEs' accumulators (adder and first-step mux per bit), the readout (a
        # rows:1 mux of each column's accumulator), the feeder's lane select (an LN:1 mux of
        # each array row's activation); FFs: the registers the RTL writes (_gemm_registers)
        "logic": logic_bill("gemm", fam,
                        lut_features={"pe_bits": R * C * cfg.pe_acc_width + group_bits,
                                      "readout_bits": (R - 1) * C * cfg.pe_acc_width
                                      + group_readout,
                                      "lane_sel": R * (LN - 1) * cfg.a_width},
                        ff_features={"registers": _gemm_registers(cfg, fam)}),
        "array": Bill(dsp=macs * per_mac + addr),
        "abuf": map_memory(fam, R * LN * cfg.a_width, 2 * KB,
                           granularity=LN * cfg.a_width).bill(),
        "wmem": map_memory(fam, pair * C * cfg.w_width, weight_banks * NT * K // pair,
                           rom=rom_weights).bill(),
        "obuf": map_memory(fam, C * cfg.obuf_width, 2 * R * NT).bill(),
    }
    if cfg.weight_groups:
        # the group tables: each column's D (and at W4 M) per (feature tile, group); the queue
        # of the groups in the array; each row's running sums between groups
        parts["scaling"] = Bill(dsp=scaling)
        parts["gmem"] = map_memory(fam, T * C * GROUP_SCALE_BITS,
                                   weight_banks * NT * cfg.groups, rom=rom_weights).bill()
        parts["gqueue"] = map_memory(fam, T * C * GROUP_SCALE_BITS, cfg.group_queue_depth,
                                     async_read=True).bill()
        parts["gacc"] = map_memory(fam, C * cfg.acc_width, R).bill()
    return parts


@estimator("gemm")
def _gemm(cfg, fam):
    return gemm_parts(cfg, fam)


def gemv_parts(cfg, fam, *, rom_weights=False):
    R, C, LN = cfg.rows, cfg.cols, cfg.lanes
    KT, NT = cfg.k_words, cfg.n_tiles
    macs = R * C * multiplier_dsps(fam, cfg.a_width, True, cfg.w_width, True)
    addr = (0 if rom_weights else _addr_mul(fam, NT, KT)) + _addr_mul(fam, NT, KT)
    return {
        # the adder trees (rows − 1 adders per column) and the accumulators grow with the
        # accumulator width
        "logic": logic_bill("gemv", fam, tree_bits=(R - 1) * C * cfg.acc_width,
                        col_bits=C * cfg.acc_width),
        "products": Bill(dsp=macs + addr),
        "xbuf": map_memory(fam, R * cfg.a_width, 2 * KT, granularity=LN * cfg.a_width).bill(),
        "wmem": map_memory(fam, R * C * cfg.w_width, NT * KT, rom=rom_weights,
                           granularity=None if rom_weights else C * cfg.w_width).bill(),
    }


@estimator("gemv")
def _gemv(cfg, fam):
    return gemv_parts(cfg, fam)


@estimator("requant")
def requant_parts(cfg, fam, in_bits=None):
    """The calibrated numbers are the hardware's data, not its logic (one word of
    ``hw.blocks.requant.constant_word``, a channel table): each lane multiplies its sum by a
    registered multiplier word of the config's ``mult_width_value`` bits, a variable product
    whatever the calibrated values, and rounds the ``product_width``-bit product by the loaded
    shift. Yosys folds the word's constant shift once the arithmetic's widths are fixed, so
    the logic grows with the widths: a product split over several hard multipliers is summed
    again in fabric, an adder of the product's width per extra piece (``split_bits``), the
    registers grow with the multiplier's and the product's bits (``reg_bits``); with a row
    exponent the final shift ``s − e`` is a barrel shifter (``requant_wide``).

    ``in_bits``: the significant bits of the int32 input when it comes from an engine whose
    accumulator is narrower (a composed layer or attention): where the synthesis flattens the
    design, Yosys sees the copies of the sign bit (merged registers) and narrows the product,
    which can need fewer multipliers (two in a lane of a 2×2 layer on iCE40)."""
    mults, _shift = cfg.multipliers
    mwv, ln = cfg.mult_width_value, cfg.lanes
    table, per_channel, bias = cfg.channel_table, cfg.per_channel, cfg.bias is not None
    a_bits = cfg.sum_width if in_bits is None or not fam.flattens else \
        min(cfg.sum_width, in_bits + bias)
    pieces = multiplier_dsps(fam, a_bits, True, mwv, False)
    dsp = ln * pieces
    # with a channel table a stage more (the accumulators wait a cycle for the table word);
    # a bias is an adder per lane
    own = {"lane": ln, "table_lane": ln if table else 0, "bias_lane": ln if bias else 0}
    split = ln * max(0, pieces - 1) * cfg.product_width
    parts = {"logic": logic_bill("requant", fam,
                                 lut_features={**own, "split_bits": split},
                                 ff_features={**own, "reg_bits": ln * (mwv + cfg.product_width)}),
             "multiply": Bill(dsp=dsp)}
    if cfg.row_exponent or cfg.out_width != 8:
        # the widened requant (the dynamic scheme): per lane, with a row exponent, the bias's
        # barrel shift by e (ACC bits, log2(e_max + 1) levels of 2:1 muxes) and the final
        # shift s − e (product bits, log2(shift_max + 1) levels); with an int16 output a wider
        # clamp and output register
        shifter = (cfg.product_width * counter_bits(cfg.shift_max + 1)
                   + (cfg.ACC.width * counter_bits(cfg.e_max + 1) if bias else 0))
        parts["wide_logic"] = logic_bill(
            "requant_wide", fam,
            shift_bits=ln * shifter if cfg.row_exponent else 0,
            wide_lane=ln * (cfg.out_width - 8) // 8)
    if table:
        # one word per beat: each lane's bias (if any) and multiplier (if per channel); the
        # columns that vary (Yosys drops the constant ones)
        beats = cfg.beats
        word = 0
        for j in range(ln):
            if bias:
                word += rom_width(packed((cfg.channel_bias[b * ln + j] for b in range(beats)),
                                          32))
            if per_channel:
                word += rom_width(mults[b * ln + j] for b in range(beats))
        parts["channels"] = map_memory(fam, word, beats, rom=True).bill()
    return parts


@estimator("residual")
def residual_parts(cfg, fam):
    """Each lane's two products by the loaded multiplier words (``mult_width_value`` bits:
    Yosys splits them by that width, whatever the calibrated values), their
    ``sum_width``-bit sum rounded by the loaded shift (``sum_bits``); with row exponents
    (``e_max`` > 0) the skip's product aligned by ``<< r_e``, a barrel shifter of the
    product's bits over log2(e_max + 1) levels (``align_bits``). int16 streams widen the
    products and the sum, which these features count (no term of their own)."""
    mwv, ln = cfg.mult_width_value, cfg.lanes
    dsp = (multiplier_dsps(fam, cfg.x_width, True, mwv, False)
           + multiplier_dsps(fam, cfg.r_width, True, mwv, False))
    align = cfg.product_width * counter_bits(cfg.e_max + 1) if cfg.e_max else 0
    parts = {"logic": logic_bill("residual", fam,
                                 lut_features={"lane": ln, "sum_bits": ln * cfg.sum_width,
                                               "align_bits": ln * align},
                                 ff_features={"lane": ln, "reg_bits": ln * (
                                     2 * cfg.product_width + cfg.out_width),
                                              "exp": cfg.e_width if cfg.e_max else 0}),
             "multiply": Bill(dsp=ln * dsp)}
    return parts


@estimator("gelu", "silu")
def activation_parts(cfg, fam):
    table = map_memory(fam, rom_width(packed(cfg.lut, cfg.out_width)), cfg.entries, rom=True,
                       read_ports=cfg.lanes)
    # a table left in logic is the bulk of the block (its LUTs depend on its contents): its
    # lanes have their own coefficient
    soft = table.kind == "logic"
    name = "silu" if type(cfg).__name__ == "SiluConfig" else "gelu"
    parts = {"logic": logic_bill(name, fam, soft_lane=cfg.lanes if soft else 0,
                                 block_lane=0 if soft else cfg.lanes),
             "table": Bill(bram=table.bram, lut=table.lut if table.kind != "logic" else 0)}
    if cfg.out_width != 8:
        # int16 entries (the dynamic scheme): a table in logic twice as wide, wider outputs
        parts["wide_logic"] = logic_bill(f"{name}_wide", fam,
                                         soft_lane=cfg.lanes if soft else 0,
                                         block_lane=0 if soft else cfg.lanes)
    if cfg.entries > 256 and soft:
        # a wider input (LLaMA's int10 SiLU input): the fits are of 256-entry tables, so a
        # soft table's further entries are the mapping's LUTs beyond a 256-entry one's
        small = map_memory(fam, rom_width(packed(cfg.lut[:256], cfg.out_width)), 256, rom=True,
                           read_ports=cfg.lanes)
        parts["wide_input_table"] = Bill(lut=max(0.0, table.lut - small.lut))
    return parts


def _records(fam, cfg, bits):
    """The row kernels' record queue: an Amaranth ``SyncFIFO`` (asynchronous read) of
    ``record_depth`` records."""
    return map_memory(fam, bits, cfg.record_depth, async_read=True).bill()


def _row_buffer(fam, cfg):
    return map_memory(fam, cfg.lanes * cfg.IN.width, cfg.buffer_depth).bill()


def _keep_mults(fam, cfg):
    """The causal mask's ``beat·lanes + n``: a product unless ``lanes`` is a power of two."""
    return cfg.lanes * _addr_mul(fam, cfg.beats, cfg.lanes) if cfg.causal else 0


@estimator("softmax")
def softmax_parts(cfg, fam):
    from ...hw.blocks.softmax import MANT_BITS, OUT_LEVELS, R_BITS, RECIP_FRAC, RECIP_TABLE
    F, ln = cfg.exp_frac, cfg.lanes
    dsp = (ln * multiplier_dsps(fam, F + 1, False, R_BITS, False)          # p = e·R
           + multiplier_dsps(fam, cfg.sum_width, False, F + 1, False)      # S·exp rescale
           + multiplier_dsps(fam, MANT_BITS, False, RECIP_FRAC + 2, False)   # m·y0
           + multiplier_dsps(fam, RECIP_FRAC + 2, False, RECIP_FRAC + 4, False)  # y0·(2−t)
           + const_multiplier_dsps(fam, RECIP_FRAC + 2, False, OUT_LEVELS)  # 1023·y1
           + 2 * _keep_mults(fam, cfg))
    rec_bits = 8 + R_BITS + counter_bits(cfg.length) + 1
    exp_bits = rom_width(cfg.exp_table)
    exp = map_memory(fam, exp_bits, 256, rom=True, read_ports=2)
    return {
        # per lane, and per lane and bit of the row length (the widths of the sums grow with
        # it), and the per-row unit's widths with the length
        "logic": logic_bill("softmax", fam, lane=ln, lane_log=ln * counter_bits(cfg.length),
                        log_length=counter_bits(cfg.length)),
        "multiply": Bill(dsp=dsp),
        "exp": exp.bill() * ln,
        "rescale": map_memory(fam, exp_bits, 256, rom=True).bill(),
        "recip": map_memory(fam, rom_width(RECIP_TABLE), len(RECIP_TABLE), rom=True).bill(),
        "buffer": _row_buffer(fam, cfg),
        "records": _records(fam, cfg, rec_bits),
    }


@estimator("layernorm", "rmsnorm")
def norm_parts(cfg, fam):
    rs = cfg.rsqrt                      # the rsqrt unit and gamma width of the output's width
    ln, L, w = cfg.lanes, cfg.length, cfg.in_width
    s2_width = cfg.s2_width
    g_t = 2 * (rs.frac + 2) - (2 * rs.frac - rs.t_frac)
    # c = L·x − S1 (layernorm); rmsnorm's c = L·x is x itself when L is a power of two (Yosys
    # drops the constant low bits and the sign copies), which can leave the top slice of
    # c·y1 below the family's minimum product width
    if cfg.CENTERED:
        c_bits = cfg.c_width
    else:
        c_bits = w if L & (L - 1) == 0 else (2 ** (w - 1) * L).bit_length() + 1
    lane = (multiplier_dsps(fam, w, True, w, True)                          # x²
            + const_multiplier_dsps(fam, w, True, L)                        # L·x
            + multiplier_dsps(fam, c_bits, True, rs.y_bits, False)          # c·y1
            + multiplier_dsps(fam, cfg.n_bits_value, True, rs.g_bits, True))  # n·G
    fixed = (const_multiplier_dsps(fam, s2_width, False, L)                 # L·S2
             + (multiplier_dsps(fam, cfg.s1_width, True, cfg.s1_width, True)
                if cfg.CENTERED else 0)                                     # S1²
             + multiplier_dsps(fam, rs.frac + 2, False, rs.frac + 2, False)  # y0²
             + multiplier_dsps(fam, g_t, False, rs.mant_bits, False)        # m·y0²
             + multiplier_dsps(fam, rs.frac + 2, False, g_t + 2, True))     # y0·(3 − t)
    B = cfg.beats
    rec_bits = cfg.s1_width + rs.y_bits + counter_bits(cfg.v_width // 2 + 1) + 1
    parts = {
        "logic": logic_bill(cfg.KIND, fam, lane=ln, lane_log=ln * counter_bits(L),
                            log_length=counter_bits(L)),
        "multiply": Bill(dsp=ln * lane + fixed),
        "rsqrt": map_memory(fam, rom_width(rs.table), len(rs.table), rom=True).bill(),
        "buffer": _row_buffer(fam, cfg),
        "records": _records(fam, cfg, rec_bits),
    }
    # gamma and beta tables, one word of lanes per beat: only their varying columns count (a
    # constant table, no gamma or no beta, is no memory at all)
    if cfg.in_width != 8 or cfg.out_width != 8:
        # int16 rows (the dynamic scheme): the sums, the centring and the output stages widen
        parts["wide_logic"] = logic_bill(
            f"{cfg.KIND}_wide", fam, lane_bits=ln * (cfg.in_width + cfg.out_width - 16) // 8)
    for name, values, bits in (("gamma", cfg.gamma_q, rs.g_bits),
                               ("beta", cfg.beta_q, cfg.beta_bits_value)):
        width = sum(rom_width(packed((values[b * ln + j] for b in range(B)), bits))
                    for j in range(ln))
        if width:
            parts[name] = map_memory(fam, width, B, rom=True).bill()
    return parts


@estimator("dynquant")
def dynquant_parts(cfg, fam):
    """Per-row quantisation (no multiplier): per lane a magnitude and a round-shift by the row
    exponent, a max tree over the lanes, the running max and the exponent's comparators (the
    fitted logic); the row buffer, the record queue and the exponent queue (two records of
    the exponent and its row's flags, an Amaranth ``SyncFIFO``)."""
    from ...hw.blocks.dynquant import EXP_QUEUE
    ln, L = cfg.lanes, cfg.length
    return {
        "logic": logic_bill("dynquant", fam, lane_bits=ln * cfg.in_width,
                            log_length=counter_bits(L)),
        "buffer": _row_buffer(fam, cfg),
        "records": _records(fam, cfg, cfg.e_width + 1),
        "exponents": map_memory(fam, cfg.e_width + 2, EXP_QUEUE, async_read=True).bill(),
    }


@estimator("kvcache")
def kvcache_parts(cfg, fam):
    LN, C, PC = cfg.lanes, cfg.qk_cols, cfg.pv_cols
    PT, DB, DT = cfg.pos_tiles, cfg.beats, cfg.head_tiles
    WPP = cfg.heads * DT
    dsp = (_addr_mul(fam, PT, DB) + _addr_mul(fam, PT, C)
           + const_multiplier_dsps(fam, cfg.head_bits, False, cfg.d_head // LN)
           + const_multiplier_dsps(fam, cfg.head_bits, False, DT))
    return {
        "logic": logic_bill("kvcache", fam, col=C + PC, sel=C * max(0, LN - 1)),
        "address": Bill(dsp=dsp),
        "k_banks": map_memory(fam, LN * 8, PT * DB).bill() * C,
        "v_mem": map_memory(fam, PC * 8, cfg.seq * WPP, granularity=8).bill(),
    }


# ---- stream plumbing (structural: registers, and muxes of the lanes) ----------------------------
def gearbox_bill(fam, width, in_lanes, out_lanes):
    """``hw.stream.Gearbox`` of ``width``-bit lanes: widening collects ``ratio − 1`` beats and
    fills an output register; narrowing holds a beat and muxes its pieces into the output
    register; equal lanes are wires."""
    if in_lanes == out_lanes:
        return Bill()
    mux_per_lut = fam.lut_inputs - 2
    if out_lanes > in_lanes:
        ratio = out_lanes // in_lanes
        ff = (ratio - 1) * in_lanes * width + out_lanes * width + 3 + counter_bits(ratio)
        return Bill(ff=ff, lut=out_lanes * width / mux_per_lut + 8)
    ratio = in_lanes // out_lanes
    ff = in_lanes * width + 3 + out_lanes * width + 2 + counter_bits(ratio)
    return Bill(ff=ff, lut=out_lanes * width * max(1, ratio - 1) / mux_per_lut + 8)


def queue_bill(fam, width, depth):
    """``hw.stream.Queue``: Amaranth's ``SyncFIFOBuffered`` — a memory of ``depth − 1`` words
    and an output register, with pointers and a level counter."""
    ctrl = 3 * counter_bits(depth + 1) + 2
    base = Bill(ff=width + ctrl, lut=2 * ctrl)
    if depth <= 1:
        return base
    return base + map_memory(fam, width, depth - 1).bill()


def fork_bill(n):
    """``hw.stream.Fork``: one taken-flag per output."""
    return Bill(ff=n, lut=2 * n + 2)
