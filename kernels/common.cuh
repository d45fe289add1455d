// common.cuh: the only header our kernels include. No CUDA toolkit headers: NVRTC gets this file by
// name from the loader, so a host with only libnvrtc can compile every kernel.
//
// Storage types: float, bf16 and f16 (16-bit payloads in a struct so templates can tell them apart).
// All arithmetic happens in fp32 registers: load -> to_f32 -> compute -> from_f32<T> -> store.
#pragma once

struct bf16 { unsigned short bits; };
struct f16 { unsigned short bits; };

#define ELDR_INF __int_as_float(0x7f800000)
#define ELDR_NAN __int_as_float(0x7fffffff)

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(bf16 v) { return __uint_as_float(((unsigned int)v.bits) << 16); }
__device__ __forceinline__ float to_f32(f16 v) {
    float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits)); return f;
}

template <typename T> __device__ __forceinline__ T from_f32(float f);
template <> __device__ __forceinline__ float from_f32<float>(float f) { return f; }
// Round to nearest even, NaN stays NaN (a quiet NaN with the sign kept), as torch does.
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float f) {
    unsigned int u = __float_as_uint(f);
    bf16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) { r.bits = (unsigned short)((u >> 16) | 0x40u); return r; }
    u += 0x7fffu + ((u >> 16) & 1u);
    r.bits = (unsigned short)(u >> 16);
    return r;
}
template <> __device__ __forceinline__ f16 from_f32<f16>(float f) {
    f16 r; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.bits) : "f"(f)); return r;
}

template <typename T> __device__ __forceinline__ float ld(const T* p, long long i) { return to_f32(p[i]); }
template <typename T> __device__ __forceinline__ void st(T* p, long long i, float v) { p[i] = from_f32<T>(v); }

// Warp and block reductions for one associative op (Sum or Max) over float or double.
struct Sum { template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; } };
struct Max { __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); } };

template <typename T, typename Op> __device__ __forceinline__ T warp_reduce(T v, Op op) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) { return warp_reduce(v, Sum()); }
__device__ __forceinline__ float warp_max(float v) { return warp_reduce(v, Max()); }
__device__ __forceinline__ double warp_sum_d(double v) { return warp_reduce(v, Sum()); }

// Over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// identity fills the lanes past the last warp.
template <typename T, typename Op> __device__ __forceinline__ T block_reduce(T v, Op op, T identity) {
    __shared__ T sh[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_reduce(v, op);
    __syncthreads();                       // sh may still be read by a previous call
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : identity;
    return warp_reduce(v, op);
}
__device__ __forceinline__ float block_sum(float v) { return block_reduce(v, Sum(), 0.f); }
__device__ __forceinline__ float block_max(float v) { return block_reduce(v, Max(), -ELDR_INF); }
__device__ __forceinline__ double block_sum_d(double v) { return block_reduce(v, Sum(), 0.0); }

// Grid-stride loop over n elements (64-bit index: 7B-model tensors exceed 2^31 elements).
#define GRID_STRIDE(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)blockDim.x * gridDim.x)
