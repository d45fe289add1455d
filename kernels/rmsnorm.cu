// RMSNorm (Llama): out = x * rsqrt(mean(x^2) + eps) * w, all in fp32; rstd[N] saved for backward.
#include "common.cuh"

// One block per row.
template <typename T>
__device__ void rmsnorm_fwd(T* out, float* rstd, const T* x, const T* w, int N, int C, float eps) {
    int n = blockIdx.x;
    const T* xr = x + (long long)n * C;
    float ss = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) { float v = ld(xr, c); ss += v * v; }
    ss = block_sum(ss);
    float r = rsqrtf(ss / C + eps);
    if (threadIdx.x == 0) rstd[n] = r;
    T* o = out + (long long)n * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) st(o, c, ld(xr, c) * r * ld(w, c));
}

// dx += r*w*dy - x * r^3/C * sum_c(w*dy*x);  dw += sum_n dy*x*r.
// A grid of a few blocks per SM walks the rows; each block sums its share of dw in shared memory
// (C floats, dynamic) and adds it to dw with one atomicAdd per column at the end.
template <typename T>
__device__ void rmsnorm_bwd(T* dx, float* dw, const T* dOut, const T* x, const T* w, const float* rstd, int N, int C) {
    extern __shared__ float dwp[];
    for (int c = threadIdx.x; c < C; c += blockDim.x) dwp[c] = 0.f;
    __syncthreads();
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const T* xr = x + (long long)n * C;
        const T* gr = dOut + (long long)n * C;
        float r = rstd[n];
        float dot = 0.f;
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            float xv = ld(xr, c), g = ld(gr, c);
            dot += ld(w, c) * g * xv;
            dwp[c] += g * xv * r;                 // column c is always touched by the same thread
        }
        dot = block_sum(dot);
        float k = r * r * r * dot / C;
        T* dr = dx + (long long)n * C;
        for (int c = threadIdx.x; c < C; c += blockDim.x)
            st(dr, c, ld(dr, c) + r * ld(w, c) * ld(gr, c) - ld(xr, c) * k);
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) atomicAdd(dw + c, dwp[c]);
}

#define RMS(S, T) \
extern "C" __global__ void __launch_bounds__(1024) rmsnorm_fwd_##S(T* out, float* rstd, const T* x, const T* w, int N, int C, float eps) \
{ rmsnorm_fwd<T>(out, rstd, x, w, N, C, eps); } \
extern "C" __global__ void __launch_bounds__(1024) rmsnorm_bwd_##S(T* dx, float* dw, const T* dOut, const T* x, const T* w, const float* rstd, int N, int C) \
{ rmsnorm_bwd<T>(dx, dw, dOut, x, w, rstd, N, C); }
RMS(f32, float)
RMS(bf16, bf16)
