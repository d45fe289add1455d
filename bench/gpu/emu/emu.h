// A CPU emulator for our CUDA kernels, for checking them on a machine without a GPU (bench/gpu/emu/README.md).
// Each block runs as blockDim.x OS threads with a real barrier for __syncthreads; warp-wide instructions
// (shuffles, mma.sync, ldmatrix) exchange their lanes' operands through a per-warp buffer between two warp
// barriers and compute what the PTX ISA says each lane gets. cp.async copies are deferred until the thread's
// cp.async.wait_group retires their group, so a read of shared memory before its wait sees stale data, as it
// may on a GPU. Blocks run one after another, so a function-local static stands in for __shared__.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <condition_variable>
#include <semaphore>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__

struct emu_dim3 { unsigned x = 0, y = 0, z = 0; };
inline thread_local emu_dim3 threadIdx, blockIdx;
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

// ---- block and warp machinery -------------------------------------------------------------------
struct EmuWarp {
    explicit EmuWarp(unsigned lanes = 32) : bar((std::ptrdiff_t)lanes) {}
    std::barrier<> bar;
    uint64_t buf[32][8];
};
inline std::barrier<>* emu_block_bar = nullptr;
inline thread_local EmuWarp* emu_warp = nullptr;
inline thread_local int emu_lane = 0;

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
alignas(16) inline unsigned char emu_dyn_smem[256 << 10];
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

// ---- cp.async: deferred until wait_group retires the group -------------------------------------------
struct EmuCopy { unsigned dst; const void* src; bool valid; };
inline thread_local std::vector<EmuCopy> emu_open_group;
inline thread_local std::deque<std::vector<EmuCopy>> emu_groups;
inline void emu_cp_async16(unsigned dst, const void* src, bool valid) { emu_open_group.push_back({dst, src, valid}); }
inline void emu_cp_async_commit() { emu_groups.push_back(std::move(emu_open_group)); emu_open_group.clear(); }
inline void emu_cp_async_wait(int n) {
    while ((int)emu_groups.size() > n) {
        for (auto& c : emu_groups.front()) {
            if (c.valid) std::memcpy(emu_smem_ptr(c.dst), c.src, 16); else std::memset(emu_smem_ptr(c.dst), 0, 16);
        }
        emu_groups.pop_front();
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
inline void emu_mma16816(float* c, const unsigned* a, unsigned b0, unsigned b1) {
    uint64_t mine[6] = { a[0], a[1], a[2], a[3], b0, b1 };
    float out[4];
    emu_warp_exchange(mine, 6, [&] {
        float A[16][16], B[16][8];
        for (int l = 0; l < 32; l++) {
            int g = l / 4, t = l % 4;
            auto lo = [&](int i) { return emu_bf16((uint16_t)(emu_warp->buf[l][i] & 0xffff)); };
            auto hi = [&](int i) { return emu_bf16((uint16_t)(emu_warp->buf[l][i] >> 16)); };
            A[g][2 * t] = lo(0); A[g][2 * t + 1] = hi(0);
            A[g + 8][2 * t] = lo(1); A[g + 8][2 * t + 1] = hi(1);
            A[g][2 * t + 8] = lo(2); A[g][2 * t + 9] = hi(2);
            A[g + 8][2 * t + 8] = lo(3); A[g + 8][2 * t + 9] = hi(3);
            B[2 * t][g] = lo(4); B[2 * t + 1][g] = hi(4);
            B[2 * t + 8][g] = lo(5); B[2 * t + 9][g] = hi(5);
        }
        int g = emu_lane / 4, t = emu_lane % 4;
        int rows[4] = { g, g, g + 8, g + 8 }, cols[4] = { 2 * t, 2 * t + 1, 2 * t, 2 * t + 1 };
        for (int e = 0; e < 4; e++) {
            float s = 0.f;
            for (int k = 0; k < 16; k++) s += A[rows[e]][k] * B[k][cols[e]];
            out[e] = s;
        }
    });
    for (int e = 0; e < 4; e++) c[e] += out[e];
}

// ---- a pool of host threads, kept between launches (starting hundreds of threads per launch cost more system time
// than the kernels' work); run(n, f) calls f(0) .. f(n-1) on n of them and returns when all have finished
struct EmuPool {
    std::mutex m;
    std::condition_variable done;
    std::vector<std::unique_ptr<std::binary_semaphore>> go;   // one per thread: only the n a launch needs wake up
    unsigned remaining = 0;
    std::function<void(unsigned)> job;
    void run(unsigned n, std::function<void(unsigned)> f) {
        while (go.size() < n) {
            go.push_back(std::make_unique<std::binary_semaphore>(0));
            std::thread([this, id = (unsigned)go.size() - 1, s = go.back().get()] { loop(id, s); }).detach();
        }
        job = std::move(f);
        { std::lock_guard<std::mutex> l(m); remaining = n; }
        for (unsigned i = 0; i < n; i++) go[i]->release();
        std::unique_lock<std::mutex> l(m);
        done.wait(l, [&] { return remaining == 0; });
        job = nullptr;
    }
    void loop(unsigned id, std::binary_semaphore* s) {
        for (;;) {
            s->acquire();
            job(id);
            std::lock_guard<std::mutex> l(m);
            if (--remaining == 0) done.notify_all();
        }
    }
};
inline EmuPool& emu_pool() { static EmuPool* p = new EmuPool; return *p; }   // never destroyed: its threads are detached

// ---- launching: one block at a time, blockDim.x·y·z threads ----------------------------------------------
// The launch starts one OS thread per block thread, and they walk the grid's blocks together: each block gets a fresh
// block barrier and fresh warps (a thread that returns early drops out of its block's barrier, as an exited thread no
// longer counts on a GPU), and no thread starts block b+1 until all have finished block b (the __shared__ statics are
// shared). Warps are threads 32w..32w+31 in x-fastest order; a partial last warp has fewer lanes.
inline void emu_launch(emu_dim3 grid, emu_dim3 block, const std::function<void()>& kernel) {
    gridDim = grid; blockDim = block;
    unsigned threads = block.x * block.y * block.z;
    if (threads == 0 || threads > 1024) { std::fprintf(stderr, "emu_launch: %u threads per block\n", threads); std::abort(); }
    unsigned nwarps = (threads + 31) / 32;
    size_t nblocks = (size_t)grid.x * grid.y * grid.z;
    std::barrier<> between((std::ptrdiff_t)threads);
    std::unique_ptr<std::barrier<>> blockbar;
    std::vector<std::unique_ptr<EmuWarp>> warps(nwarps);
    auto fresh = [&] {
        blockbar = std::make_unique<std::barrier<>>((std::ptrdiff_t)threads);
        for (unsigned w = 0; w < nwarps; w++) warps[w] = std::make_unique<EmuWarp>(std::min(32u, threads - 32 * w));
    };
    fresh();
    emu_pool().run(threads, [&](unsigned i) {
            threadIdx = { i % block.x, i / block.x % block.y, i / (block.x * block.y) };
            emu_lane = (int)(i % 32);
            for (size_t b = 0; b < nblocks; b++) {
                blockIdx = { (unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y), (unsigned)(b / ((size_t)grid.x * grid.y)) };
                emu_block_bar = blockbar.get();
                emu_warp = warps[i / 32].get();
                kernel();
                if (!emu_open_group.empty() || !emu_groups.empty()) { std::fprintf(stderr, "cp.async left in flight at exit\n"); std::abort(); }
                emu_block_bar->arrive_and_drop();
                between.arrive_and_wait();   // every thread is done with block b
                if (i == 0) fresh();
                between.arrive_and_wait();   // block b+1's barriers are ready
            }
        });
}
inline void emu_launch(emu_dim3 grid, unsigned threads, const std::function<void()>& kernel) {
    emu_launch(grid, emu_dim3{ threads, 1, 1 }, kernel);
}
