// Rotary position embedding, rotate_half convention: pairs (j, j + rotaryDim/2) within each head.
// The host builds the angle tables cos/sin[T, rotaryDim/2] in fp32 (full, partial or llama3-scaled
// frequencies are the host's business); this kernel only rotates. Backward = rotation by −angle.
#include "common.cuh"

// In place on x[N = B·T, nHeads·headDim]; position of row n is n mod T; dims ≥ rotaryDim pass through.
template <typename T>
__device__ void rope_apply(T* x, const float* cosT, const float* sinT, long long N, int T_, int nHeads, int headDim, int rotaryDim, float sign) {
    int half = rotaryDim / 2;
    long long total = N * nHeads * half;
    GRID_STRIDE(i, total) {
        int j = (int)(i % half);
        long long nh = i / half;
        int h = (int)(nh % nHeads);
        long long n = nh / nHeads;
        int t = (int)(n % T_);
        float c = cosT[(long long)t * half + j], s = sign * sinT[(long long)t * half + j];
        long long base = n * (long long)nHeads * headDim + (long long)h * headDim;
        float x1 = ld(x, base + j), x2 = ld(x, base + j + half);
        st(x, base + j, x1 * c - x2 * s);
        st(x, base + j + half, x2 * c + x1 * s);
    }
}

#define ROPE(S, T) \
extern "C" __global__ void rope_fwd_##S(T* x, const float* cosT, const float* sinT, long long N, int T_, int nH, int hd, int rot) \
{ rope_apply<T>(x, cosT, sinT, N, T_, nH, hd, rot, 1.f); } \
extern "C" __global__ void rope_bwd_##S(T* x, const float* cosT, const float* sinT, long long N, int T_, int nH, int hd, int rot) \
{ rope_apply<T>(x, cosT, sinT, N, T_, nH, hd, rot, -1.f); }
ROPE(f32, float)
ROPE(bf16, bf16)
