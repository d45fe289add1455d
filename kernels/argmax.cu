// Row-wise argmax for greedy decoding: out[n] = the index of the largest value in row n of x[N, V].
// Decoding then brings back N ints per step instead of N·V logits (at batch 64 and V = 32000, 8 MB of
// fp32 per token).
//
// The order is TensorPrimitives.IndexOfMax's (the CPU reference): a NaN beats every number and the first
// NaN wins; +0 beats −0; among equal values the lowest index wins. Argmax has no gradient, so this family
// has no backward.
#include "common.cuh"

// Whether (va, ia) comes before (vb, ib) in that order.
__device__ __forceinline__ bool argmax_better(float va, int ia, float vb, int ib) {
    bool na = va != va, nb = vb != vb;
    if (na != nb) return na;
    if (!na && va != vb) return va > vb;
    if (!na && va == 0.f) {                  // equal zeros: the sign decides
        bool sa = __float_as_uint(va) >> 31, sb = __float_as_uint(vb) >> 31;
        if (sa != sb) return !sa;
    }
    return ia < ib;
}

// every lane of the warp ends with the warp's best (value, index) pair
__device__ __forceinline__ void argmax_warp(float& best, int& bi) {
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (argmax_better(ov, oi, best, bi)) { best = ov; bi = oi; }
    }
}

// One block per row; each thread scans a strided slice, then the warp and the block reduce (value, index) pairs.
// An empty slice holds (−inf, INT_MAX), which every real candidate beats (−inf at a lower index included).
template <typename T>
__device__ void argmax_fwd(int* out, const T* x, int V) {
    const T* row = x + (long long)blockIdx.x * V;
    float best = -ELDR_INF; int bi = 0x7fffffff;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float v = ld(row, j);
        if (argmax_better(v, j, best, bi)) { best = v; bi = j; }
    }
    argmax_warp(best, bi);
    __shared__ float sv[32];
    __shared__ int si[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    if (lane == 0) { sv[wid] = best; si[wid] = bi; }
    __syncthreads();
    if (wid == 0) {
        best = lane < nw ? sv[lane] : -ELDR_INF;
        bi = lane < nw ? si[lane] : 0x7fffffff;
        argmax_warp(best, bi);
        if (lane == 0) out[blockIdx.x] = bi;
    }
}

#define ARGMAX(S, T) \
extern "C" __global__ void __launch_bounds__(1024) argmax_fwd_##S(int* out, const T* x, int V) { argmax_fwd<T>(out, x, V); }
ARGMAX(f32, float)
ARGMAX(bf16, bf16)
