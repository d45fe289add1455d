// Reductions in fp64 for the gate gradient and the ELDeR/DReSS difference regulariser:
//   dot:       Σ a⊙b                  (dS = Σ dOut ⊙ y)
//   diffnorm:  ‖a−b‖₁ or ‖a−b‖₂
// Each block writes one fp64 partial; the host adds the partials in a fixed order (deterministic).
#include "common.cuh"

template <typename T> __device__ void dot_fwd(double* partial, const T* a, const T* b, long long n) {
    double s = 0.0;
    GRID_STRIDE(i, n) s += (double)ld(a, i) * (double)ld(b, i);
    s = block_sum_d(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
// l1 != 0: Σ|a−b|; else Σ(a−b)² (the host takes the square root).
template <typename T> __device__ void diffnorm_fwd(double* partial, const T* a, const T* b, long long n, int l1) {
    double s = 0.0;
    GRID_STRIDE(i, n) {
        double d = (double)ld(a, i) - (double)(b ? ld(b, i) : 0.f);
        s += l1 ? fabs(d) : d * d;
    }
    s = block_sum_d(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
// dA += f·∂R/∂a, dB −= f·∂R/∂a with ∂R/∂a = sign(a−b) (L1) or (a−b)/R (L2; the host passes
// factor = coef/R, and 0 when R = 0).
template <typename TG, typename TX> __device__ void diffnorm_bwd(TG* dA, TG* dB, const TX* a, const TX* b, long long n, int l1, float factor) {
    GRID_STRIDE(i, n) {
        float d = ld(a, i) - (b ? ld(b, i) : 0.f);
        float g = l1 ? factor * (d > 0.f ? 1.f : (d < 0.f ? -1.f : 0.f)) : factor * d;
        if (dA) st(dA, i, ld(dA, i) + g);
        if (dB) st(dB, i, ld(dB, i) - g);
    }
}

#define RED(S, T) \
extern "C" __global__ void dot_fwd_##S(double* partial, const T* a, const T* b, long long n) { dot_fwd<T>(partial, a, b, n); } \
extern "C" __global__ void diffnorm_fwd_##S(double* partial, const T* a, const T* b, long long n, int l1) { diffnorm_fwd<T>(partial, a, b, n, l1); }
#define REDB(SG, SX, TG, TX) \
extern "C" __global__ void diffnorm_bwd_##SG##_##SX(TG* dA, TG* dB, const TX* a, const TX* b, long long n, int l1, float factor) \
{ diffnorm_bwd<TG, TX>(dA, dB, a, b, n, l1, factor); }
RED(f32, float)
RED(bf16, bf16)
REDB(f32, f32, float, float)
REDB(f32, bf16, float, bf16)
REDB(bf16, bf16, bf16, bf16)
