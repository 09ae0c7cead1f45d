// The compiled stream driver: llmloom.sim.engine.StreamEngine's rules, in C++, around a
// Verilated model (llmloom.sim.verilated builds it and writes the files read here).
//
//   Vtop_driver STIMULUS RESULT [PROGRESS]       one run: a stimulus file in, a result file out
//   Vtop_driver --session REPLY_FD [PROGRESS]     a session: runs one after the other on the
//                                                 same model, its state carried over
//
// STIMULUS and RESULT are arrays of little-endian 64-bit words (layout in verilated.py). A
// session reads stimuli from stdin and writes results to REPLY_FD, each message its length in
// words then its words; the first stimulus sets the ports and their stall patterns, each
// later one appends beats to them (its indices counted from its own start), and the clock
// stands still between runs: a session fed tensor by tensor is cycle for cycle the one run of
// all of them in which each tensor waits for the previous one's last output beat. End of
// stdin ends the session.
// Stall decisions come from CPython's random.Random (MT19937 seeded with init_by_array,
// random() from two draws), reproduced here so that both engines see the same stimulus.
// The port table (PORTS) comes from ports.h, generated from the model's own header.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <memory>
#include <string>
#include <sys/resource.h>
#include <unistd.h>
#include <deque>
#include <vector>

#include "Vtop.h"
#include "verilated.h"

struct Port {
    CData *valid;        // set for inputs, read for outputs
    CData *ready;        // read for inputs, set for outputs
    void *payload;       // nullptr for a zero-width payload
    size_t bytes;        // sizeof the payload member
};

// An AXI4 read slave's signals on the model (a port `P` of AxiReadSignature: P__araddr ...);
// each pointer's sizeof in the matching *_bytes (little-endian host: a value is its bytes).
struct AxiPort {
    CData *arvalid, *arready, *arlen, *arsize, *arburst, *rvalid, *rready, *rlast, *rresp;
    void *araddr, *rdata, *rid;
    size_t araddr_bytes, rdata_bytes, rid_bytes;
    // the write channels (AxiWriteSignature), or all null: a read-only port
    CData *awvalid, *awready, *awlen, *awsize, *awburst, *wvalid, *wready, *wlast, *bvalid,
          *bready, *bresp;
    void *awaddr, *wdata, *wstrb, *bid;
    size_t awaddr_bytes, wdata_bytes, wstrb_bytes, bid_bytes;
};

#include "ports.h"       // bind_ports(Vtop*, vector<Port>&), bind_axi(Vtop*, vector<AxiPort>&);
                         // LLMLOOM_PHASES

// The clock. Verilator's eval() starts with its input-combinational ("ico") phase, which
// re-settles all the logic that depends on the top's inputs, unconditionally, then runs the
// active and NBA phases (the clocked logic, and the logic that depends on it). When the inputs
// are those that the last eval() settled, the ico phase recomputes the same values: at every
// rising edge (only clk changed), and in every cycle where the driver offers what it offered
// the cycle before (the block computing, no beat moving, the same ready). clock_to() then runs
// only the active and NBA phases, as eval() does after the ico one; the 8x8 GEMM spent a third
// to a half of its time in those redundant ico phases. It needs the model's phase functions,
// of the Verilator it was built with: verilated.py checks the generated code and defines
// LLMLOOM_PHASES. Otherwise every step is an eval().
#if LLMLOOM_PHASES
#include "Vtop___024root.h"
#include "Vtop__Syms.h"
bool Vtop___024root___eval_phase__act(Vtop___024root *vlSelf);
bool Vtop___024root___eval_phase__nba(Vtop___024root *vlSelf);

static void clock_to(Vtop *top, CData clk) {
    top->clk = clk;
    Vtop___024root *root = top->rootp;
    int rounds = 0;
    do {
        int act = 0;
        while (Vtop___024root___eval_phase__act(root))
            if (++act > 10000) { fprintf(stderr, "active region did not converge\n"); exit(3); }
        if (++rounds > 10000) { fprintf(stderr, "NBA region did not converge\n"); exit(3); }
    } while (Vtop___024root___eval_phase__nba(root));
    Verilated::endOfEval(root->vlSymsp->__Vm_evalMsgQp);
}
#endif

// clk low and the inputs of this cycle settled; `changed`: an input differs from the last eval()
static void settle(Vtop *top, bool changed) {
#if LLMLOOM_PHASES
    if (!changed) { clock_to(top, 0); return; }
#endif
    top->clk = 0;
    top->eval();
}

// the rising edge, with the inputs that settle() settled
static void rising_edge(Vtop *top) {
#if LLMLOOM_PHASES
    clock_to(top, 1);
#else
    top->clk = 1;
    top->eval();
#endif
}

static const uint64_t MAGIC = 0x314d4f4f4c4d4c4cULL;   // "LLMLOOM1"
static const uint64_t AXI_PAGE = 4096;                  // no AXI4 burst crosses a 4 KB page
static const uint64_t NONE = ~0ULL;

// ---- CPython's random.Random --------------------------------------------------------------
struct MT {
    uint32_t mt[624];
    int mti = 625;
    void init_genrand(uint32_t s) {
        mt[0] = s;
        for (mti = 1; mti < 624; mti++)
            mt[mti] = 1812433253U * (mt[mti - 1] ^ (mt[mti - 1] >> 30)) + mti;
    }
    void init_by_array(const std::vector<uint32_t> &key) {
        init_genrand(19650218U);
        size_t i = 1, j = 0, n = key.size();
        for (size_t k = 624 > n ? 624 : n; k; k--) {
            mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1664525U)) + key[j] + (uint32_t)j;
            i++; j++;
            if (i >= 624) { mt[0] = mt[623]; i = 1; }
            if (j >= n) j = 0;
        }
        for (size_t k = 623; k; k--) {
            mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1566083941U)) - (uint32_t)i;
            i++;
            if (i >= 624) { mt[0] = mt[623]; i = 1; }
        }
        mt[0] = 0x80000000U;
    }
    uint32_t genrand() {
        static const uint32_t mag01[2] = {0, 0x9908b0dfU};
        uint32_t y;
        if (mti >= 624) {
            int kk;
            for (kk = 0; kk < 624 - 397; kk++) {
                y = (mt[kk] & 0x80000000U) | (mt[kk + 1] & 0x7fffffffU);
                mt[kk] = mt[kk + 397] ^ (y >> 1) ^ mag01[y & 1];
            }
            for (; kk < 623; kk++) {
                y = (mt[kk] & 0x80000000U) | (mt[kk + 1] & 0x7fffffffU);
                mt[kk] = mt[kk + (397 - 624)] ^ (y >> 1) ^ mag01[y & 1];
            }
            y = (mt[623] & 0x80000000U) | (mt[0] & 0x7fffffffU);
            mt[623] = mt[396] ^ (y >> 1) ^ mag01[y & 1];
            mti = 0;
        }
        y = mt[mti++];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c5680U;
        y ^= (y << 15) & 0xefc60000U;
        y ^= y >> 18;
        return y;
    }
    double random() {
        uint32_t a = genrand() >> 5, b = genrand() >> 6;
        return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
    }
};

// llmloom.sim.streams.Stalls.generator: 0 none, 1 pattern (1, 1, 1, 0), 2 random
struct Gen {
    uint64_t kind = 0;
    double p = 0;
    uint64_t phase = 0;
    MT mt;
    bool next() {
        if (kind == 0) return true;
        if (kind == 1) return (phase++ & 3) != 3;
        return mt.random() >= p;
    }
};

struct Reader {
    const uint64_t *p, *end;
    uint64_t get() {
        if (p >= end) { fprintf(stderr, "stimulus is truncated\n"); exit(3); }
        return *p++;
    }
    Gen gen() {
        Gen g;
        g.kind = get();
        uint64_t bits = get();
        memcpy(&g.p, &bits, sizeof g.p);
        std::vector<uint32_t> key(get());
        for (auto &k : key) k = (uint32_t)get();
        if (g.kind == 2) g.mt.init_by_array(key);
        return g;
    }
};

struct Mark { uint64_t at, slot; };     // word (input) or beat (output) index → a slot

struct In {
    Port *port;
    bool timed;
    uint64_t n = 0, w;        // beats so far (all runs), 64-bit words per beat
    std::vector<uint64_t> words;
    std::vector<Mark> gates;  // at: word; slot: out index; beats in gate_beats
    std::vector<uint64_t> gate_beats;
    std::vector<Mark> marks;  // segment starts
    size_t gate_c = 0, mark_c = 0;
    uint64_t idx = 0, run_base = 0;   // words taken, over all runs and before this one
    bool offered = false;
    Gen gen;
};

struct Out {
    Port *port;
    uint64_t expect = 0, w;       // beats expected so far (all runs)
    uint64_t base = 0;            // beats before this run
    std::vector<uint64_t> got;    // this run's beats
    uint64_t n = 0;
    std::vector<Mark> marks;      // segment ends
    size_t mark_c = 0;
    bool ready = false;
    Gen gen;
};

// llmloom.sim.engine's AXI read slave (harness.AxiMemory): bursts queue in order, each
// offered from `latency` cycles after its AR (drawn per burst), RVALID from the input stall
// pattern (held until taken), ARREADY from the output one.
struct Axi {
    AxiPort *port;
    uint64_t lanes = 0, lo = 1, hi = 1;
    std::vector<uint8_t> image;
    MT rng;
    Gen r_gen, ar_gen;
    struct Burst { uint64_t due, word, beats; };
    std::vector<Burst> bursts;     // in order; head at `head`
    size_t head = 0;
    bool offered = false, ar_ready = false;
    uint64_t beats = 0, ars = 0;   // R beats given, bursts accepted (all runs)
    uint64_t run_beats = 0;        // R beats given before this run
    // the write slave (harness.AxiMemory with write): bursts waiting for data, responses due
    bool write = false;
    Gen aw_gen, w_gen;
    std::deque<std::pair<uint64_t, uint64_t>> aws;   // (word, beats left)
    std::deque<uint64_t> bs;                         // due cycles
    bool aw_ready = false, w_ready = false, b_valid = false;
    uint64_t w_beats = 0, run_w_beats = 0;
    std::vector<uint8_t> word;
    void put_word(uint64_t w) {
        word.assign(port->rdata_bytes, 0);
        uint64_t a = w * lanes;
        for (uint64_t k = 0; k < lanes && k < port->rdata_bytes; k++)
            if (a + k < image.size()) word[k] = image[a + k];
    }
};

static uint64_t read_bytes(const void *p, size_t n) {
    uint64_t v = 0;
    memcpy(&v, p, n < 8 ? n : 8);
    return v;
}

struct Progress {
    int fd = -1;
    std::chrono::steady_clock::time_point last{};
    void write(uint64_t count) {
        if (fd < 0) return;
        char buf[32];
        int len = snprintf(buf, sizeof buf, "%20llu\n", (unsigned long long)count);
        if (pwrite(fd, buf, len, 0) < 0) fd = -1;
    }
};

static double cpu_now() {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

struct Driver {
    Vtop *top;
    std::vector<Port> ports;
    std::vector<In> ins;
    std::vector<Out> outs;
    std::vector<AxiPort> axi_ports;
    std::vector<Axi> axis;
    bool started = false, changed = true;
    uint64_t cycle = 0;                // since reset, over all runs
    Progress progress;

    // one stimulus: the first sets the ports up, later ones append to them; false if the
    // stimulus does not continue the session's ports
    uint64_t max_cycles = 0;
    std::vector<uint64_t> seg_start, seg_end;
    bool load(Reader &r) {
        if (r.get() != MAGIC) { fprintf(stderr, "not a stimulus\n"); return false; }
        max_cycles = r.get();
        uint64_t n_in = r.get(), n_out = r.get();
        seg_start.assign(r.get(), NONE);
        seg_end.assign(seg_start.size(), NONE);
        if (!started) { ins.resize(n_in); outs.resize(n_out); }
        else if (n_in != ins.size() || n_out != outs.size()) {
            fprintf(stderr, "a stimulus with other ports than the session's\n");
            return false;
        }
        std::vector<uint64_t> out_base(outs.size());
        for (size_t k = 0; k < outs.size(); k++) out_base[k] = outs[k].expect;
        for (auto &s : ins) {
            Port *port = &ports.at(r.get());
            bool timed = r.get();
            uint64_t beats = r.get(), w = r.get();
            Gen gen = r.gen();
            if (!started) { s.port = port; s.timed = timed; s.w = w; s.gen = gen; }
            else if (s.port != port || s.timed != timed || s.w != w) {
                fprintf(stderr, "a stimulus with other ports than the session's\n");
                return false;
            }
            uint64_t base = s.n;
            for (uint64_t g = r.get(); g; g--) {
                uint64_t word = r.get(), out = r.get();
                if (out >= outs.size()) { fprintf(stderr, "a gate on no output\n"); return false; }
                s.gates.push_back({base + word, out});
                s.gate_beats.push_back(out_base[out] + r.get());
            }
            for (uint64_t m = r.get(); m; m--) {
                uint64_t word = r.get();
                s.marks.push_back({base + word, r.get()});
            }
            if (r.p + beats * w > r.end) { fprintf(stderr, "stimulus is truncated\n"); return false; }
            s.words.insert(s.words.end(), r.p, r.p + beats * w);
            r.p += beats * w;
            s.n += beats;
        }
        for (size_t k = 0; k < outs.size(); k++) {
            Out &o = outs[k];
            Port *port = &ports.at(r.get());
            uint64_t expect = r.get(), w = r.get();
            Gen gen = r.gen();
            if (!started) { o.port = port; o.w = w; o.gen = gen; }
            else if (o.port != port || o.w != w) {
                fprintf(stderr, "a stimulus with other ports than the session's\n");
                return false;
            }
            for (uint64_t m = r.get(); m; m--) {
                uint64_t beat = r.get();
                o.marks.push_back({out_base[k] + beat, r.get()});
            }
            o.base = o.n;
            o.expect += expect;
            o.got.assign(expect * o.w, 0);
        }
        // AXI memories: port, lanes, latency lo and hi, the latency generator's key, the R
        // and AR stall patterns, the image's bytes (0: the session's stays) and its words
        uint64_t n_axi = r.get();
        if (!started) axis.resize(n_axi);
        else if (n_axi != axis.size()) {
            fprintf(stderr, "a stimulus with other AXI memories than the session's\n");
            return false;
        }
        for (auto &a : axis) {
            AxiPort *port = &axi_ports.at(r.get());
            uint64_t lanes = r.get(), lo = r.get(), hi = r.get();
            std::vector<uint32_t> key(r.get());
            for (auto &k : key) k = (uint32_t)r.get();
            Gen r_gen = r.gen(), ar_gen = r.gen();
            bool write = r.get() != 0;
            Gen aw_gen = r.gen(), w_gen = r.gen();
            if (write && !port->awvalid) {
                fprintf(stderr, "an AXI memory with write on a read-only port\n");
                return false;
            }
            uint64_t nbytes = r.get();
            if (!started) {
                a.port = port; a.lanes = lanes; a.lo = lo; a.hi = hi;
                a.rng.init_by_array(key);
                a.r_gen = r_gen; a.ar_gen = ar_gen;
                a.write = write; a.aw_gen = aw_gen; a.w_gen = w_gen;
            } else if (a.port != port || a.lanes != lanes) {
                fprintf(stderr, "a stimulus with other AXI memories than the session's\n");
                return false;
            }
            uint64_t nwords = (nbytes + 7) / 8;
            if (r.p + nwords > r.end) { fprintf(stderr, "stimulus is truncated\n"); return false; }
            if (nbytes) a.image.assign((const uint8_t *)r.p, (const uint8_t *)r.p + nbytes);
            r.p += nwords;
            a.run_beats = a.beats;
            a.run_w_beats = a.w_beats;
        }
        if (!started) reset();
        started = true;
        return true;
    }

    // reset as the cocotb bench does: two rising edges with rst high, released at a falling one
    void reset() {
        top->clk = 0;
        top->rst = 1;
        for (auto &s : ins) *s.port->valid = 0;
        for (auto &o : outs) *o.port->ready = 0;
        for (auto &a : axis) {
            *a.port->arready = 0; *a.port->rvalid = 0;
            if (a.write) { *a.port->awready = 0; *a.port->wready = 0; *a.port->bvalid = 0; }
        }
        top->eval();
        for (int i = 0; i < 2; i++) {
            top->clk = 1; top->eval();
            top->clk = 0; top->eval();
        }
        top->rst = 0;
        changed = true;                // rst, since the last eval()
    }

    // simulate until the beats loaded so far are all in and out; returns the result (cycles
    // counted from this run's start)
    std::vector<uint64_t> run() {
        const uint64_t c0 = cycle;
        uint64_t first_timed = NONE, last_out = NONE, total = 0;
        uint64_t status = 0, detail = 0;   // 1: timeout; 2: output `detail` gave too many beats;
                                           // 3: AXI memory `detail` refused a burst
        size_t inputs_left = 0, outputs_left = 0, preload_left = 0;
        for (auto &s : ins) {
            s.run_base = s.idx;
            if (s.idx < s.n) { inputs_left++; if (!s.timed) preload_left++; }
        }
        for (auto &o : outs) if (o.n < o.expect) outputs_left++;
        auto t0 = std::chrono::steady_clock::now();
        double cpu0 = cpu_now();
        progress.last = t0;
        progress.write(0);

        while (inputs_left || outputs_left) {
            // drive (StreamEngine.drive)
            bool preloading = preload_left > 0;
            for (auto &s : ins) {
                bool active = s.idx < s.n && (!s.timed || !preloading);
                if (active && !s.offered && !s.gates.empty()) {
                    while (s.gate_c < s.gates.size() && s.gates[s.gate_c].at < s.idx) s.gate_c++;
                    if (s.gate_c < s.gates.size() && s.gates[s.gate_c].at == s.idx
                        && outs[s.gates[s.gate_c].slot].n < s.gate_beats[s.gate_c])
                        active = false;
                }
                if (active && !s.offered) s.offered = s.gen.next();
                if (!active) s.offered = false;
                if (*s.port->valid != s.offered) { *s.port->valid = s.offered; changed = true; }
                if (s.offered && s.port->payload) {
                    const uint64_t *beat = s.words.data() + s.idx * s.w;
                    if (memcmp(s.port->payload, beat, s.port->bytes)) {
                        memcpy(s.port->payload, beat, s.port->bytes);
                        changed = true;
                    }
                }
            }
            for (auto &o : outs) {
                o.ready = o.gen.next();
                if (*o.port->ready != o.ready) { *o.port->ready = o.ready; changed = true; }
            }
            for (auto &a : axis) {
                AxiPort *p = a.port;
                a.ar_ready = a.ar_gen.next();
                if (*p->arready != a.ar_ready) { *p->arready = a.ar_ready; changed = true; }
                bool active = a.head < a.bursts.size() && a.bursts[a.head].due <= cycle;
                if (active && !a.offered) a.offered = a.r_gen.next();
                if (!active) a.offered = false;
                if (*p->rvalid != a.offered) { *p->rvalid = a.offered; changed = true; }
                if (a.offered) {
                    const Axi::Burst &b = a.bursts[a.head];
                    a.put_word(b.word);
                    if (memcmp(p->rdata, a.word.data(), p->rdata_bytes)) {
                        memcpy(p->rdata, a.word.data(), p->rdata_bytes);
                        changed = true;
                    }
                    CData last = b.beats == 1;
                    if (*p->rlast != last) { *p->rlast = last; changed = true; }
                    if (*p->rresp) { *p->rresp = 0; changed = true; }
                }
                if (a.write) {
                    a.aw_ready = a.aw_gen.next();
                    bool w = a.w_gen.next();
                    a.w_ready = w && !a.aws.empty();
                    a.b_valid = !a.bs.empty() && a.bs.front() <= cycle;
                    if (*p->awready != a.aw_ready) { *p->awready = a.aw_ready; changed = true; }
                    if (*p->wready != a.w_ready) { *p->wready = a.w_ready; changed = true; }
                    if (*p->bvalid != a.b_valid) { *p->bvalid = a.b_valid; changed = true; }
                    if (*p->bresp) { *p->bresp = 0; changed = true; }
                }
            }
            settle(top, changed);
            changed = false;
            // observe (StreamEngine.observe)
            for (auto &s : ins) {
                if (s.offered && *s.port->ready) {
                    if (s.timed && first_timed == NONE) first_timed = cycle - c0;
                    while (s.mark_c < s.marks.size() && s.marks[s.mark_c].at == s.idx)
                        seg_start[s.marks[s.mark_c++].slot] = cycle - c0;
                    s.idx++;
                    s.offered = false;
                    if (s.idx == s.n) { inputs_left--; if (!s.timed) preload_left--; }
                }
            }
            for (size_t k = 0; k < outs.size(); k++) {
                Out &o = outs[k];
                if (o.ready && *o.port->valid) {
                    if (o.n >= o.expect) { status = 2; detail = k; goto end; }
                    if (o.port->payload)
                        memcpy(&o.got[(o.n - o.base) * o.w], o.port->payload, o.port->bytes);
                    last_out = cycle - c0;
                    while (o.mark_c < o.marks.size() && o.marks[o.mark_c].at == o.n)
                        seg_end[o.marks[o.mark_c++].slot] = cycle - c0;
                    o.n++;
                    total++;
                    if (o.n == o.expect) outputs_left--;
                }
            }
            for (size_t k = 0; k < axis.size(); k++) {
                Axi &a = axis[k];
                AxiPort *p = a.port;
                if (a.offered && *p->rready) {
                    Axi::Burst &b = a.bursts[a.head];
                    b.word++;
                    if (--b.beats == 0) a.head++;
                    a.offered = false;
                    a.beats++;
                }
                if (a.ar_ready && *p->arvalid) {
                    uint64_t addr = read_bytes(p->araddr, p->araddr_bytes);
                    uint64_t beats = (uint64_t)*p->arlen + 1;
                    if (*p->arburst != 1 || (1ULL << *p->arsize) != a.lanes || addr % a.lanes
                        || addr % AXI_PAGE + beats * a.lanes > AXI_PAGE) {
                        fprintf(stderr, "AXI: a refused burst (araddr 0x%llx, %llu beats, arsize %u, "
                                "arburst %u)\n", (unsigned long long)addr,
                                (unsigned long long)beats, (unsigned)*p->arsize,
                                (unsigned)*p->arburst);
                        status = 3; detail = k; goto end;
                    }
                    uint64_t latency = a.lo + (uint64_t)(a.rng.random() * (double)(a.hi - a.lo + 1));
                    if (a.head == a.bursts.size()) { a.bursts.clear(); a.head = 0; }
                    a.bursts.push_back({cycle + latency, addr / a.lanes, beats});
                    a.ars++;
                }
                if (!a.write) continue;
                if (a.w_ready && *p->wvalid) {       // its bytes by WSTRB at the burst's word
                    auto &b = a.aws.front();
                    const uint8_t *data = (const uint8_t *)p->wdata;
                    const uint8_t *strb = (const uint8_t *)p->wstrb;
                    uint64_t at = b.first * a.lanes;
                    for (uint64_t j = 0; j < a.lanes; j++)
                        if (strb[j / 8] >> (j % 8) & 1) a.image[at + j] = data[j];
                    b.first++;
                    b.second--;
                    if ((*p->wlast != 0) != (b.second == 0)) {
                        fprintf(stderr, "AXI: WLAST %u with %llu beats of the burst left\n",
                                (unsigned)*p->wlast, (unsigned long long)b.second);
                        status = 3; detail = k; goto end;
                    }
                    if (!b.second) {
                        a.aws.pop_front();
                        a.bs.push_back(cycle + a.lo
                                       + (uint64_t)(a.rng.random() * (double)(a.hi - a.lo + 1)));
                    }
                    a.w_beats++;
                }
                if (a.aw_ready && *p->awvalid) {
                    uint64_t addr = read_bytes(p->awaddr, p->awaddr_bytes);
                    uint64_t beats = (uint64_t)*p->awlen + 1;
                    if (*p->awburst != 1 || (1ULL << *p->awsize) != a.lanes || addr % a.lanes
                        || addr % AXI_PAGE + beats * a.lanes > AXI_PAGE
                        || addr + beats * a.lanes > a.image.size()) {
                        fprintf(stderr, "AXI: a refused write burst (awaddr 0x%llx, %llu beats)\n",
                                (unsigned long long)addr, (unsigned long long)beats);
                        status = 3; detail = k; goto end;
                    }
                    a.aws.push_back({addr / a.lanes, beats});
                }
                if (a.b_valid && *p->bready) a.bs.pop_front();
            }
            cycle++;
            if (cycle - c0 > max_cycles && (inputs_left || outputs_left)) { status = 1; goto end; }
            rising_edge(top);
            if (progress.fd >= 0 && (cycle & 4095) == 0) {
                auto now = std::chrono::steady_clock::now();
                if (now - progress.last >= std::chrono::milliseconds(100)) {
                    progress.last = now;
                    progress.write(total);
                }
            }
        }
    end:
        auto wall = std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::chrono::steady_clock::now() - t0).count();
        uint64_t cpu = (uint64_t)((cpu_now() - cpu0) * 1e9);
        progress.write(total);

        std::vector<uint64_t> res = {MAGIC, status, detail, cycle - c0, first_timed, last_out,
                                     (uint64_t)wall, cpu};
        for (auto &s : ins) res.push_back(s.idx - s.run_base);
        for (auto &o : outs) res.push_back(o.n - o.base);
        for (size_t i = 0; i < seg_start.size(); i++) {
            res.push_back(seg_start[i]);
            res.push_back(seg_end[i]);
        }
        for (auto &a : axis) res.push_back(a.beats - a.run_beats);
        for (auto &a : axis) res.push_back(a.w_beats - a.run_w_beats);
        for (auto &o : outs) res.insert(res.end(), o.got.begin(), o.got.begin() + (o.n - o.base) * o.w);
        return res;
    }
};

static bool read_all(int fd, void *buf, size_t len) {
    char *p = (char *)buf;
    while (len) {
        ssize_t got = read(fd, p, len);
        if (got <= 0) return false;
        p += got;
        len -= got;
    }
    return true;
}

static bool write_all(int fd, const void *buf, size_t len) {
    const char *p = (const char *)buf;
    while (len) {
        ssize_t put = write(fd, p, len);
        if (put <= 0) return false;
        p += put;
        len -= put;
    }
    return true;
}

int main(int argc, char **argv) {
    bool session = argc >= 3 && !strcmp(argv[1], "--session");
    if (argc < 3) {
        fprintf(stderr, "usage: %s STIMULUS RESULT [PROGRESS] | --session REPLY_FD [PROGRESS]\n",
                argv[0]);
        return 3;
    }
    auto ctx = std::make_unique<VerilatedContext>();
    ctx->commandArgs(1, argv);
    auto top = std::make_unique<Vtop>(ctx.get());
    Driver d;
    d.top = top.get();
    bind_ports(top.get(), d.ports);
    bind_axi(top.get(), d.axi_ports);
    if (argc > 3) d.progress.fd = open(argv[3], O_WRONLY | O_CREAT, 0644);

    if (!session) {
        std::vector<uint64_t> stim;
        FILE *fh = fopen(argv[1], "rb");
        if (!fh) { perror(argv[1]); return 3; }
        fseek(fh, 0, SEEK_END);
        long size = ftell(fh);
        fseek(fh, 0, SEEK_SET);
        stim.resize(size / 8);
        if (fread(stim.data(), 8, stim.size(), fh) != stim.size()) { perror(argv[1]); return 3; }
        fclose(fh);
        Reader r{stim.data(), stim.data() + stim.size()};
        if (!d.load(r)) { fprintf(stderr, "%s is not a stimulus file\n", argv[1]); return 3; }
        std::vector<uint64_t> res = d.run();
        top->final();
        fh = fopen(argv[2], "wb");
        if (!fh || fwrite(res.data(), 8, res.size(), fh) != res.size() || fclose(fh)) {
            perror(argv[2]);
            return 3;
        }
        return 0;
    }

    int reply = atoi(argv[2]);
    for (;;) {
        uint64_t len;
        if (!read_all(0, &len, sizeof len)) break;            // end of the session
        std::vector<uint64_t> stim(len);
        if (!read_all(0, stim.data(), 8 * len)) { fprintf(stderr, "stimulus is truncated\n"); return 3; }
        Reader r{stim.data(), stim.data() + stim.size()};
        if (!d.load(r)) return 3;
        std::vector<uint64_t> res = d.run();
        uint64_t n = res.size();
        if (!write_all(reply, &n, sizeof n) || !write_all(reply, res.data(), 8 * n)) {
            perror("reply");
            return 3;
        }
        if (res[1] != 0) break;           // a timeout or too many beats: the session is over
    }
    top->final();
    return 0;
}
