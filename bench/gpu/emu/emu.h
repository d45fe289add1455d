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
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }

// ---- block and warp machinery -------------------------------------------------------------------
struct EmuWarp {
    std::barrier<> bar{32};
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

// ---- launching: one block at a time, blockDim.x threads --------------------------------------------------
inline void emu_launch(emu_dim3 grid, unsigned threads, const std::function<void()>& kernel) {
    gridDim = grid; blockDim = { threads, 1, 1 };
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                std::barrier<> bar((std::ptrdiff_t)threads);
                emu_block_bar = &bar;
                std::vector<EmuWarp> warps((threads + 31) / 32);
                std::vector<std::thread> th;
                for (unsigned i = 0; i < threads; i++)
                    th.emplace_back([&, i] {
                        threadIdx = { i, 0, 0 }; blockIdx = { x, y, z };
                        emu_warp = &warps[i / 32]; emu_lane = (int)(i % 32);
                        kernel();
                        if (!emu_open_group.empty() || !emu_groups.empty()) { std::fprintf(stderr, "cp.async left in flight at exit\n"); std::abort(); }
                    });
                for (auto& t : th) t.join();
            }
}
