// The compiled stream driver: llmloom.sim.engine.StreamEngine's rules, in C++, around a
// Verilated model (llmloom.sim.verilated builds it and writes the files read here).
//
//   Vtop_driver STIMULUS RESULT [PROGRESS]
//
// STIMULUS and RESULT are arrays of little-endian 64-bit words (layout in verilated.py).
// Stall decisions come from CPython's random.Random (MT19937 seeded with init_by_array,
// random() from two draws), reproduced here so that both engines see the same stimulus.
// The port table (PORTS) comes from ports.h, generated from the model's own header.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <unistd.h>
#include <vector>

#include "Vtop.h"
#include "verilated.h"

struct Port {
    CData *valid;        // set for inputs, read for outputs
    CData *ready;        // read for inputs, set for outputs
    void *payload;       // nullptr for a zero-width payload
    size_t bytes;        // sizeof the payload member
};

#include "ports.h"       // void bind_ports(Vtop *top, std::vector<Port> &ports); LLMLOOM_PHASES

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
        if (p >= end) { fprintf(stderr, "stimulus file is truncated\n"); exit(3); }
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
    uint64_t n, w;            // beats, 64-bit words per beat
    const uint64_t *words;
    std::vector<Mark> gates;  // at: word; slot: out index; beats in gate_beats
    std::vector<uint64_t> gate_beats;
    std::vector<Mark> marks;  // segment starts
    size_t gate_c = 0, mark_c = 0;
    uint64_t idx = 0;
    bool offered = false;
    Gen gen;
};

struct Out {
    Port *port;
    uint64_t expect, w;
    std::vector<uint64_t> got;    // expect * w words
    uint64_t n = 0;
    std::vector<Mark> marks;      // segment ends
    size_t mark_c = 0;
    bool ready = false;
    Gen gen;
};

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

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s STIMULUS RESULT [PROGRESS]\n", argv[0]); return 3; }
    std::vector<uint64_t> stim;
    {
        FILE *fh = fopen(argv[1], "rb");
        if (!fh) { perror(argv[1]); return 3; }
        fseek(fh, 0, SEEK_END);
        long size = ftell(fh);
        fseek(fh, 0, SEEK_SET);
        stim.resize(size / 8);
        if (fread(stim.data(), 8, stim.size(), fh) != stim.size()) { perror(argv[1]); return 3; }
        fclose(fh);
    }
    Reader r{stim.data(), stim.data() + stim.size()};
    if (r.get() != MAGIC) { fprintf(stderr, "%s is not a stimulus file\n", argv[1]); return 3; }

    auto ctx = std::make_unique<VerilatedContext>();
    ctx->commandArgs(1, argv);
    auto top = std::make_unique<Vtop>(ctx.get());
    std::vector<Port> ports;
    bind_ports(top.get(), ports);

    uint64_t max_cycles = r.get();
    std::vector<In> ins(r.get());
    std::vector<Out> outs(r.get());
    std::vector<uint64_t> seg_start(r.get(), NONE), seg_end(seg_start.size(), NONE);
    for (auto &s : ins) {
        s.port = &ports.at(r.get());
        s.timed = r.get();
        s.n = r.get();
        s.w = r.get();
        s.gen = r.gen();
        for (uint64_t g = r.get(); g; g--) {
            uint64_t word = r.get(), out = r.get();
            s.gates.push_back({word, out});
            s.gate_beats.push_back(r.get());
        }
        for (uint64_t m = r.get(); m; m--) {
            uint64_t word = r.get();
            s.marks.push_back({word, r.get()});
        }
        s.words = r.p;
        r.p += s.n * s.w;
        if (r.p > r.end) { fprintf(stderr, "stimulus file is truncated\n"); return 3; }
    }
    for (auto &o : outs) {
        o.port = &ports.at(r.get());
        o.expect = r.get();
        o.w = r.get();
        o.gen = r.gen();
        for (uint64_t m = r.get(); m; m--) {
            uint64_t beat = r.get();
            o.marks.push_back({beat, r.get()});
        }
        o.got.assign(o.expect * o.w, 0);
    }

    Progress progress;
    if (argc > 3) progress.fd = open(argv[3], O_WRONLY | O_CREAT, 0644);

    // reset as the cocotb bench does: two rising edges with rst high, released at a falling one
    top->clk = 0;
    top->rst = 1;
    for (auto &s : ins) *s.port->valid = 0;
    for (auto &o : outs) *o.port->ready = 0;
    top->eval();
    for (int i = 0; i < 2; i++) {
        top->clk = 1; top->eval();
        top->clk = 0; top->eval();
    }
    top->rst = 0;
    bool changed = true;               // rst, since the last eval()

    uint64_t cycle = 0, first_timed = NONE, last_out = NONE, total = 0;
    uint64_t status = 0, detail = 0;   // 1: timeout; 2: output `detail` gave too many beats
    size_t inputs_left = 0, outputs_left = 0, preload_left = 0;
    for (auto &s : ins) {
        if (s.idx < s.n) { inputs_left++; if (!s.timed) preload_left++; }
    }
    for (auto &o : outs) if (o.expect > 0) outputs_left++;
    auto t0 = std::chrono::steady_clock::now();
    progress.last = t0;

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
                const uint64_t *beat = s.words + s.idx * s.w;
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
        settle(top.get(), changed);
        changed = false;
        // observe (StreamEngine.observe)
        for (auto &s : ins) {
            if (s.offered && *s.port->ready) {
                if (s.timed && first_timed == NONE) first_timed = cycle;
                while (s.mark_c < s.marks.size() && s.marks[s.mark_c].at == s.idx)
                    seg_start[s.marks[s.mark_c++].slot] = cycle;
                s.idx++;
                s.offered = false;
                if (s.idx == s.n) { inputs_left--; if (!s.timed) preload_left--; }
            }
        }
        for (size_t k = 0; k < outs.size(); k++) {
            Out &o = outs[k];
            if (o.ready && *o.port->valid) {
                if (o.n >= o.expect) { status = 2; detail = k; goto end; }
                if (o.port->payload) memcpy(&o.got[o.n * o.w], o.port->payload, o.port->bytes);
                last_out = cycle;
                while (o.mark_c < o.marks.size() && o.marks[o.mark_c].at == o.n)
                    seg_end[o.marks[o.mark_c++].slot] = cycle;
                o.n++;
                total++;
                if (o.n == o.expect) outputs_left--;
            }
        }
        cycle++;
        if (cycle > max_cycles && (inputs_left || outputs_left)) { status = 1; goto end; }
        rising_edge(top.get());
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
    progress.write(total);
    top->final();

    std::vector<uint64_t> res = {MAGIC, status, detail, cycle, first_timed, last_out,
                                 (uint64_t)wall};
    for (auto &s : ins) res.push_back(s.idx);
    for (auto &o : outs) res.push_back(o.n);
    for (size_t i = 0; i < seg_start.size(); i++) {
        res.push_back(seg_start[i]);
        res.push_back(seg_end[i]);
    }
    for (auto &o : outs) res.insert(res.end(), o.got.begin(), o.got.begin() + o.n * o.w);
    FILE *fh = fopen(argv[2], "wb");
    if (!fh || fwrite(res.data(), 8, res.size(), fh) != res.size() || fclose(fh)) {
        perror(argv[2]);
        return 3;
    }
    return 0;
}
