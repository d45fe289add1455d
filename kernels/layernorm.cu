// LayerNorm (OPT, Phi): out = (x - mean) * rstd * w + b, fp32 math; mean[N], rstd[N] saved.
#include "common.cuh"

// One block per row; two passes over the row (mean, then centred variance) for accuracy.
template <typename T>
__device__ void layernorm_fwd(T* out, float* mean, float* rstd, const T* x, const T* w, const T* b, int N, int C, float eps) {
    int n = blockIdx.x;
    const T* xr = x + (long long)n * C;
    float s = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += ld(xr, c);
    float mu = block_sum(s) / C;
    float v = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) { float d = ld(xr, c) - mu; v += d * d; }
    float r = rsqrtf(block_sum(v) / C + eps);
    if (threadIdx.x == 0) { mean[n] = mu; rstd[n] = r; }
    T* o = out + (long long)n * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        st(o, c, (ld(xr, c) - mu) * r * ld(w, c) + ld(b, c));
}

// xhat = (x-mean)*rstd, g = dy*w:  dx += rstd*(g - mean(g) - xhat*mean(g*xhat));  dw += dy*xhat; db += dy.
// Column partial sums of dw, db in shared memory (2·C floats), one atomicAdd per column per block.
template <typename T>
__device__ void layernorm_bwd(T* dx, float* dw, float* db, const T* dOut, const T* x, const T* w,
                              const float* mean, const float* rstd, int N, int C) {
    extern __shared__ float part[];
    float* dwp = part; float* dbp = part + C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) { dwp[c] = 0.f; dbp[c] = 0.f; }
    __syncthreads();
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const T* xr = x + (long long)n * C;
        const T* gr = dOut + (long long)n * C;
        float mu = mean[n], r = rstd[n];
        float sg = 0.f, sgx = 0.f;
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            float xh = (ld(xr, c) - mu) * r, dy = ld(gr, c), g = dy * ld(w, c);
            sg += g; sgx += g * xh;
            dwp[c] += dy * xh; dbp[c] += dy;
        }
        sg = block_sum(sg) / C;
        sgx = block_sum(sgx) / C;
        T* dr = dx + (long long)n * C;
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            float xh = (ld(xr, c) - mu) * r, g = ld(gr, c) * ld(w, c);
            st(dr, c, ld(dr, c) + r * (g - sg - xh * sgx));
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) { atomicAdd(dw + c, dwp[c]); atomicAdd(db + c, dbp[c]); }
}

#define LN(S, T) \
extern "C" __global__ void __launch_bounds__(1024) layernorm_fwd_##S(T* out, float* mean, float* rstd, const T* x, const T* w, const T* b, int N, int C, float eps) \
{ layernorm_fwd<T>(out, mean, rstd, x, w, b, N, C, eps); } \
extern "C" __global__ void __launch_bounds__(1024) layernorm_bwd_##S(T* dx, float* dw, float* db, const T* dOut, const T* x, const T* w, const float* mean, const float* rstd, int N, int C) \
{ layernorm_bwd<T>(dx, dw, db, dOut, x, w, mean, rstd, N, C); }
LN(f32, float)
LN(bf16, bf16)
