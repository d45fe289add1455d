// A CPU emulator for our CUDA kernels, for checking them on a machine without a GPU (bench/gpu/emu/README.md).
// Each thread of a block is a fiber (a user-level context with its own stack) on the launching host thread, and
// __syncthreads is a barrier at which a thread yields to the next; warp-wide instructions (shuffles, mma.sync,
// ldmatrix) exchange their lanes' operands through a per-warp buffer between two warp barriers and compute what the
// PTX ISA says each lane gets. cp.async copies are deferred until the thread's cp.async.wait_group retires their
// group, so a read of shared memory before its wait sees stale data, as it may on a GPU. Blocks run one after
// another, so a function-local static stands in for __shared__.
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <vector>
#include <sys/mman.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__

struct emu_dim3 { unsigned x = 0, y = 0, z = 0; };
inline emu_dim3 blockDim, gridDim;

using std::min;
using std::max;

struct alignas(8) float2 { float x, y; };
inline float2 make_float2(float x, float y) { return { x, y }; }

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline int __float_as_int(float f) { int u; std::memcpy(&u, &f, 4); return u; }
inline float __expf(float x) { return std::exp(x); }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }

// ---- a bug the emulator cannot go on from: the message goes to stderr, then abort (under the emulated GPU a test
// host's stderr is captured to $ELDR_EMU_STDERR, which run_cuda_tests.sh prints)
inline const char* emu_kernel_name = "kernel";   // the launch's kernel, for messages (emugpu sets it)
[[noreturn]] __attribute__((format(printf, 1, 2))) inline void emu_fatal(const char* fmt, ...) {
    char msg[1024];
    va_list ap; va_start(ap, fmt); std::vsnprintf(msg, sizeof msg, fmt, ap); va_end(ap);
    std::fprintf(stderr, "emu: %s\n", msg);
    std::fflush(stderr);
    std::abort();
}

// ---- fibers: every thread of a block is a fiber on the launching host thread -----------------------------
// A kernel thread runs until it waits at a barrier (__syncthreads, or a warp-wide exchange) and then yields to the
// block's scheduler, which resumes the next thread in turn. No OS threads: a barrier costs two user-level context
// switches per thread instead of a futex wake-up, and the state a CUDA thread owns (threadIdx, its lane, its warp,
// its cp.async groups) is switched with it. A block in which every live thread waits and none can go on (a
// __syncthreads some threads never reach) aborts with a message instead of hanging.
struct EmuCopy { unsigned dst; const void* src; bool valid; bool landed = false; };
struct EmuWarp;
struct EmuFiber {
    void* sp = nullptr;                      // the saved stack pointer while switched out
    unsigned char* stack = nullptr;          // kStack bytes, with a guard page below
    emu_dim3 tid;
    int lane = 0;
    EmuWarp* warp = nullptr;
    bool done = false;
    const struct EmuBarrier* waiting_on = nullptr;   // the barrier it waits at (the scheduler skips it until it opens)
    uint64_t waiting_phase = 0;
    std::vector<EmuCopy> open_group;         // cp.async copies issued since the last commit
    std::deque<std::vector<EmuCopy>> groups; // committed, not yet retired
};
inline EmuFiber* emu_cur = nullptr;          // the running thread's fiber
inline uint64_t emu_opened = 0;              // barrier phases completed
inline emu_dim3 threadIdx, blockIdx;         // the running thread's, set at every switch
inline EmuWarp* emu_warp = nullptr;
inline int emu_lane = 0;

#if defined(__SANITIZE_ADDRESS__)
extern "C" void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, size_t size);
extern "C" void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, size_t* size_old);
extern "C" void __asan_unpoison_memory_region(void const volatile* addr, size_t size);
extern "C" void __asan_poison_memory_region(void const volatile* addr, size_t size);
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

#if defined(__x86_64__)
// emu_ctx_switch(save, to): pushes the callee-saved registers, stores the stack pointer in *save, loads `to` and pops
// the same from there (System V x86-64). The x87 and SSE control words are not switched: no kernel changes rounding
// or exception modes, and reloading them made up much of a switch's cost. Weak, so each translation unit may carry it.
extern "C" __attribute__((visibility("hidden"))) void emu_ctx_switch(void** save, void* to);
asm(R"(
    .text
    .weak emu_ctx_switch
    .hidden emu_ctx_switch
    .type emu_ctx_switch, @function
emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_ctx_switch, .-emu_ctx_switch
)");
#else
#error "emu.h: the fiber switch is written for x86-64"
#endif

struct EmuSched {
    static constexpr size_t kStack = 256 << 10, kGuard = 4096;
    std::vector<std::unique_ptr<EmuFiber>> fibers;   // kept between launches, with their stacks
    void* main_sp = nullptr;
    const void* main_bottom = nullptr;               // the scheduler's own stack, for AddressSanitizer
    size_t main_size = 0;
    const std::function<void()>* kernel = nullptr;
    EmuSched() = default;
    EmuSched(const EmuSched&) = delete;
    void reserve(unsigned n) {
        while (fibers.size() < n) {
            auto f = std::make_unique<EmuFiber>();
            void* m = mmap(nullptr, kStack + kGuard, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (m == MAP_FAILED) emu_fatal("cannot map a %zu-byte fiber stack", kStack + kGuard);
            mprotect(m, kGuard, PROT_NONE);   // a thread that overflows its stack faults here
            f->stack = (unsigned char*)m + kGuard;
            fibers.push_back(std::move(f));
        }
    }
};
inline EmuSched& emu_sched() { static EmuSched* s = new EmuSched; return *s; }   // never freed: stacks are reused

inline void emu_enter(EmuFiber* f) {   // from the scheduler into thread f, until it yields or ends
    emu_cur = f; threadIdx = f->tid; emu_lane = f->lane; emu_warp = f->warp;
    auto& s = emu_sched();
#if EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, f->stack, EmuSched::kStack);
    emu_ctx_switch(&s.main_sp, f->sp);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    emu_ctx_switch(&s.main_sp, f->sp);
#endif
    emu_cur = nullptr;
}
inline void emu_yield() {   // from the running thread back to the scheduler
    auto& s = emu_sched();
    EmuFiber* f = emu_cur;
#if EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(f->done ? nullptr : &fake, s.main_bottom, s.main_size);
    emu_ctx_switch(&f->sp, s.main_sp);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    emu_ctx_switch(&f->sp, s.main_sp);
#endif
    emu_cur = f; threadIdx = f->tid; emu_lane = f->lane; emu_warp = f->warp;
}
inline void emu_block_thread_exit();
[[noreturn]] inline void emu_fiber_main() {   // where a fresh fiber starts: run the kernel once, then end
#if EMU_ASAN
    auto& s = emu_sched();
    __sanitizer_finish_switch_fiber(nullptr, &s.main_bottom, &s.main_size);
#endif
    (*emu_sched().kernel)();
    emu_block_thread_exit();
    emu_cur->done = true;
    emu_yield();
    std::abort();   // an ended fiber is never resumed
}
// a fresh start for f: its stack holds what emu_ctx_switch pops, with emu_fiber_main as the return address
inline void emu_fiber_reset(EmuFiber* f) {
#if EMU_ASAN
    __asan_unpoison_memory_region(f->stack, EmuSched::kStack);
#endif
    uint64_t* top = (uint64_t*)(f->stack + EmuSched::kStack);   // 16-byte aligned
    uint64_t* sp = top - 8;
    for (int r = 0; r < 6; r++) sp[r] = 0;                    // r15 r14 r13 r12 rbx rbp
    sp[6] = (uint64_t)(uintptr_t)&emu_fiber_main;             // popped by ret
    sp[7] = 0;                                                 // where a return address would be: rsp ≡ 8 (mod 16) at entry
    f->sp = sp;
    f->done = false;
    f->waiting_on = nullptr;
    f->open_group.clear(); f->groups.clear();
}

// a barrier for fibers: the last of `expected` arrivals opens it; the others yield until it has opened
struct EmuBarrier {
    explicit EmuBarrier(unsigned n = 0) : expected(n) {}
    unsigned expected, arrived = 0;
    uint64_t phase = 0;
    // true for the thread whose arrival opened it: that thread runs on before any other waiter resumes
    bool arrive_and_wait() {
        uint64_t p = phase;
        if (++arrived == expected) { arrived = 0; phase++; emu_opened++; return true; }
        emu_cur->waiting_on = this; emu_cur->waiting_phase = p;
        while (phase == p) emu_yield();
        emu_cur->waiting_on = nullptr;
        return false;
    }
    void arrive_and_drop() {   // a thread that has returned no longer counts
        expected--;
        if (arrived > 0 && arrived == expected) { arrived = 0; phase++; emu_opened++; }
    }
};
struct EmuWarp {
    explicit EmuWarp(unsigned lanes = 32) : bar(lanes) {}
    EmuBarrier bar;
    uint64_t buf[32][8];
    float out[32][4];   // mma.sync: each lane's four results, computed once for the warp
};
inline EmuBarrier* emu_block_bar = nullptr;
inline void emu_block_thread_exit() { emu_block_bar->arrive_and_drop(); }

inline void __syncthreads() { emu_block_bar->arrive_and_wait(); }

// every lane publishes n words, all lanes wait, then f(lane) reads any lane's words; a second wait frees the buffer
template <typename F>
inline void emu_warp_exchange(const uint64_t* mine, int n, F f) {
    for (int i = 0; i < n; i++) emu_warp->buf[emu_lane][i] = mine[i];
    emu_warp->bar.arrive_and_wait();
    f();
    emu_warp->bar.arrive_and_wait();
}

template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int o) {
    static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
    uint64_t w = 0; std::memcpy(&w, &v, sizeof(T));
    T r;
    emu_warp_exchange(&w, 1, [&] { uint64_t x = emu_warp->buf[emu_lane ^ o][0]; std::memcpy(&r, &x, sizeof(T)); });
    return r;
}

// ---- shared memory addresses: 32-bit offsets from an anchor in .bss (every __shared__ static lives there too)
// Dynamic shared memory starts 256 bytes into the arena: under AddressSanitizer the emulated driver poisons those
// bytes and everything past the launch's dynamic size, so a kernel that indexes outside its shared memory is reported.
constexpr size_t emu_dyn_smem_max = 256 << 10;
alignas(256) inline unsigned char emu_smem_arena[256 + emu_dyn_smem_max];
inline unsigned char* const emu_dyn_smem = emu_smem_arena + 256;
inline unsigned emu_smem_u32(const void* p) { return (unsigned)(int32_t)((intptr_t)p - (intptr_t)emu_dyn_smem); }
inline unsigned char* emu_smem_ptr(unsigned a) { return emu_dyn_smem + (int32_t)a; }

inline float emu_bf16(uint16_t b) { return __uint_as_float((unsigned)b << 16); }

// ---- IEEE half conversions (the kernels' f16 helpers are inline PTX cvt instructions) -----------------
inline float emu_f16_to_f32(uint16_t h) {
    unsigned sign = (unsigned)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0) { float v = (float)m * 5.9604644775390625e-8f; return sign ? -v : v; }   // subnormal: m · 2⁻²⁴
    if (e == 31) return __uint_as_float(sign | 0x7f800000u | (m << 13));
    return __uint_as_float(sign | ((e - 15 + 127) << 23) | (m << 13));
}
// cvt.rn.f16.f32: round to nearest even; overflow to ±inf; NaN to the canonical 0x7fff
inline uint16_t emu_f32_to_f16(float f) {
    unsigned x = __float_as_uint(f), sign = (x >> 16) & 0x8000, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return 0x7fff;
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);                          // ≥ 65520 rounds to inf
    if (ax < 0x38800000u) return (uint16_t)(sign | (unsigned)std::nearbyint(__uint_as_float(ax) * 16777216.f)); // < 2⁻¹⁴: units of 2⁻²⁴, exact
    unsigned h = ((((ax >> 23) - 127 + 15) << 10) | ((ax & 0x7fffff) >> 13)), rest = ax & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

// ---- cp.async: deferred until wait_group retires the group, or (ELDR_EMU_CPASYNC=eager) landed at once ---------
// On a GPU the copy lands at some moment between the instruction and the wait_group that retires it. Deferred (the
// default) is the latest moment: a read of the tile before its wait sees stale data. Eager is the earliest: a copy
// issued before every warp is done reading the buffer it overwrites shows, with a priority order (ELDR_EMU_ORDER).
inline bool emu_cp_async_eager() {
    static const bool eager = [] {
        const char* e = std::getenv("ELDR_EMU_CPASYNC");
        if (!e || !*e || !std::strcmp(e, "deferred")) return false;
        if (!std::strcmp(e, "eager")) return true;
        emu_fatal("ELDR_EMU_CPASYNC=%s: expected deferred or eager", e);
    }();
    return eager;
}
inline void emu_cp_async_land(const EmuCopy& c) {
    if (c.valid) std::memcpy(emu_smem_ptr(c.dst), c.src, 16); else std::memset(emu_smem_ptr(c.dst), 0, 16);
}
inline void emu_cp_async16(unsigned dst, const void* src, bool valid) {
    EmuCopy c{ dst, src, valid };
    if (emu_cp_async_eager()) { emu_cp_async_land(c); c.landed = true; }
    emu_cur->open_group.push_back(c);   // kept either way: a thread must still wait for its groups before it exits
}
inline void emu_cp_async_commit() { emu_cur->groups.push_back(std::move(emu_cur->open_group)); emu_cur->open_group.clear(); }
inline void emu_cp_async_wait(int n) {
    auto& groups = emu_cur->groups;
    while ((int)groups.size() > n) {
        for (auto& c : groups.front()) if (!c.landed) emu_cp_async_land(c);
        groups.pop_front();
    }
}

// ---- ldmatrix: lane l addresses row l%8 of matrix l/8 -------------------------------------------------
inline void emu_ldsm(unsigned* r, unsigned addr, int count, bool trans) {
    uint64_t mine = addr;
    emu_warp_exchange(&mine, 1, [&] {
        int l = emu_lane;
        for (int i = 0; i < count; i++) {
            uint16_t lo, hi;
            if (!trans) {   // row l/4, cols 2(l%4), +1
                const uint16_t* row = (const uint16_t*)emu_smem_ptr((unsigned)emu_warp->buf[8 * i + l / 4][0]);
                lo = row[2 * (l % 4)]; hi = row[2 * (l % 4) + 1];
            } else {        // rows 2(l%4), +1, col l/4
                const uint16_t* r0 = (const uint16_t*)emu_smem_ptr((unsigned)emu_warp->buf[8 * i + 2 * (l % 4)][0]);
                const uint16_t* r1 = (const uint16_t*)emu_smem_ptr((unsigned)emu_warp->buf[8 * i + 2 * (l % 4) + 1][0]);
                lo = r0[l / 4]; hi = r1[l / 4];
            }
            r[i] = (unsigned)lo | ((unsigned)hi << 16);
        }
    });
}

// ---- mma.sync.m16n8k16.row.col f32.bf16.bf16.f32 -----------------------------------------------------
// Lanes publish their fragments; the lane whose arrival completes the warp (it runs on before any other lane resumes)
// multiplies the 16×16 by 16×8 tile once and leaves each lane's four results in the warp buffer.
inline void emu_mma16816(float* c, const unsigned* a, unsigned b0, unsigned b1) {
    EmuWarp* w = emu_warp;
    uint64_t mine[6] = { a[0], a[1], a[2], a[3], b0, b1 };
    for (int i = 0; i < 6; i++) w->buf[emu_lane][i] = mine[i];
    if (w->bar.arrive_and_wait()) {
        float A[16][16], B[16][8];
        for (int l = 0; l < 32; l++) {
            int g = l / 4, t = l % 4;
            auto lo = [&](int i) { return emu_bf16((uint16_t)(w->buf[l][i] & 0xffff)); };
            auto hi = [&](int i) { return emu_bf16((uint16_t)(w->buf[l][i] >> 16)); };
            A[g][2 * t] = lo(0); A[g][2 * t + 1] = hi(0);
            A[g + 8][2 * t] = lo(1); A[g + 8][2 * t + 1] = hi(1);
            A[g][2 * t + 8] = lo(2); A[g][2 * t + 9] = hi(2);
            A[g + 8][2 * t + 8] = lo(3); A[g + 8][2 * t + 9] = hi(3);
            B[2 * t][g] = lo(4); B[2 * t + 1][g] = hi(4);
            B[2 * t + 8][g] = lo(5); B[2 * t + 9][g] = hi(5);
        }
        for (int l = 0; l < 32; l++) {
            int g = l / 4, t = l % 4;
            int rows[4] = { g, g, g + 8, g + 8 }, cols[4] = { 2 * t, 2 * t + 1, 2 * t, 2 * t + 1 };
            for (int e = 0; e < 4; e++) {
                float s = 0.f;
                for (int k = 0; k < 16; k++) s += A[rows[e]][k] * B[k][cols[e]];
                w->out[l][e] = s;
            }
        }
    }
    for (int e = 0; e < 4; e++) c[e] += w->out[emu_lane][e];
    w->bar.arrive_and_wait();   // every lane has its results before the buffer is reused
}

// ---- the order in which a block's threads take turns -----------------------------------------------------
// By default ("forward") threads take turns in index order, each running until it waits or ends, so every warp keeps
// in step with the others: a kernel that reads shared memory another thread wrote, or overwrites what another still
// has to read, without a __syncthreads between may still work. ELDR_EMU_ORDER=reverse and =shuffle give each thread
// a priority instead (highest index first; a seeded random order per block, so runs repeat), and the first thread in
// that order that can go on always goes next: the threads in front run as far ahead as the barriers allow and the
// others lag, so a missing barrier shows as a read of the NaN poison, of stale data, or of data overwritten too soon.
// The same modes run a launch's blocks last first, or in a random order.
enum class EmuOrder { forward, reverse, shuffle };
inline EmuOrder emu_order() {
    static const EmuOrder o = [] {
        const char* e = std::getenv("ELDR_EMU_ORDER");
        if (!e || !*e || !std::strcmp(e, "forward")) return EmuOrder::forward;
        if (!std::strcmp(e, "reverse")) return EmuOrder::reverse;
        if (!std::strcmp(e, "shuffle")) return EmuOrder::shuffle;
        emu_fatal("ELDR_EMU_ORDER=%s: expected forward, reverse or shuffle", e);
    }();
    return o;
}

// ---- launching: one block at a time, blockDim.x·y·z threads ----------------------------------------------
// Each block gets fresh fibers, a fresh block barrier and fresh warps (a thread that returns early drops out of its
// block's barrier, as an exited thread no longer counts on a GPU); blocks run one after another, so the __shared__
// statics are the block's. Warps are threads 32w..32w+31 in x-fastest order; a partial last warp has fewer lanes.
inline void emu_launch(emu_dim3 grid, emu_dim3 block, const std::function<void()>& kernel) {
    gridDim = grid; blockDim = block;
    unsigned threads = block.x * block.y * block.z;
    if (threads == 0 || threads > 1024) emu_fatal("%s: %u threads per block", emu_kernel_name, threads);
    unsigned nwarps = (threads + 31) / 32;
    size_t nblocks = (size_t)grid.x * grid.y * grid.z;
    auto& s = emu_sched();
    if (emu_cur) emu_fatal("%s: launched from inside a kernel", emu_kernel_name);
    s.reserve(threads);
    s.kernel = &kernel;
    std::vector<EmuWarp> warps;
    warps.reserve(nwarps);
    EmuOrder mode = emu_order();
    std::vector<unsigned> order(threads);
    static std::minstd_rand rng(12345);   // ELDR_EMU_ORDER=shuffle: the same sequence of orders in every run
    // blocks too run in index order by default, last first under `reverse`, in a random order under `shuffle` (a GPU
    // promises no order between the blocks of a launch)
    std::vector<size_t> blocks;
    if (mode != EmuOrder::forward) {
        blocks.resize(nblocks);
        for (size_t b = 0; b < nblocks; b++) blocks[b] = mode == EmuOrder::reverse ? nblocks - 1 - b : b;
        if (mode == EmuOrder::shuffle) std::shuffle(blocks.begin(), blocks.end(), rng);
    }
    for (size_t n = 0; n < nblocks; n++) {
        size_t b = blocks.empty() ? n : blocks[n];
        blockIdx = { (unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y), (unsigned)(b / ((size_t)grid.x * grid.y)) };
        EmuBarrier blockbar(threads);
        emu_block_bar = &blockbar;
        warps.clear();
        for (unsigned w = 0; w < nwarps; w++) warps.emplace_back(std::min(32u, threads - 32 * w));
        for (unsigned i = 0; i < threads; i++) {
            EmuFiber* f = s.fibers[i].get();
            emu_fiber_reset(f);
            f->tid = { i % block.x, i / block.x % block.y, i / (block.x * block.y) };
            f->lane = (int)(i % 32);
            f->warp = &warps[i / 32];
        }
        auto blocked = [](const EmuFiber* f) { return f->done || (f->waiting_on && f->waiting_on->phase == f->waiting_phase); };
        auto ended = [&](EmuFiber* f, unsigned& live) {
            if (!f->done) return;
            live--;
            if (!f->open_group.empty() || !f->groups.empty()) emu_fatal("%s: a thread exited with cp.async copies in flight", emu_kernel_name);
        };
        auto deadlock = [&](unsigned live) {
            emu_fatal("%s: block (%u,%u,%u): %u threads wait at a barrier that can never open (a __syncthreads or "
                      "warp-wide instruction that not every thread of the block or warp reaches)",
                      emu_kernel_name, blockIdx.x, blockIdx.y, blockIdx.z, live);
        };
        if (mode == EmuOrder::forward) {
            // turns in thread order, each thread once per round until it waits or ends; a thread that can go on always
            // arrives somewhere or ends, so a round in which none could go on is a deadlock
            for (unsigned live = threads; live > 0;) {
                bool ran = false;
                for (unsigned i = 0; i < threads; i++) {
                    EmuFiber* f = s.fibers[i].get();
                    if (blocked(f)) continue;
                    emu_enter(f);
                    ran = true;
                    ended(f, live);
                }
                if (live > 0 && !ran) deadlock(live);
            }
        } else {
            // by priority: the first thread in `order` that can go on always goes next, so the threads at the front run
            // as far ahead as the barriers let them and the ones at the back lag behind
            for (unsigned i = 0; i < threads; i++) order[i] = mode == EmuOrder::reverse ? threads - 1 - i : i;
            if (mode == EmuOrder::shuffle) std::shuffle(order.begin(), order.end(), rng);
            // a thread yields only when it waits or ends, so until some barrier opens, the threads before the one that
            // just ran are still blocked: the search starts over only then
            unsigned k = 0;
            for (unsigned live = threads; live > 0;) {
                while (k < threads && blocked(s.fibers[order[k]].get())) k++;
                if (k == threads) deadlock(live);
                EmuFiber* next = s.fibers[order[k]].get();
                uint64_t opened = emu_opened;
                emu_enter(next);
                ended(next, live);
                if (emu_opened != opened) k = 0;
            }
        }
        emu_block_bar = nullptr;
    }
    s.kernel = nullptr;
}
inline void emu_launch(emu_dim3 grid, unsigned threads, const std::function<void()>& kernel) {
    emu_launch(grid, emu_dim3{ threads, 1, 1 }, kernel);
}
