// Residual and gate elementwise ops, casts, and the linear layer's bias add / bias gradient.
// Names carry the output dtype first, then the input dtype when they differ (axpy_f32_bf16: y f32, x bf16).
#include "common.cuh"

// out = a + b (out may alias a or b: each element is read before it is written by the same thread).
template <typename T> __device__ void add_fwd(T* out, const T* a, const T* b, long long n) {
    GRID_STRIDE(i, n) st(out, i, ld(a, i) + ld(b, i));
}
// y += alpha·x
template <typename TY, typename TX> __device__ void axpy(TY* y, const TX* x, float alpha, long long n) {
    GRID_STRIDE(i, n) st(y, i, ld(y, i) + alpha * ld(x, i));
}
// out = s·x (the ELDeR layer gate's forward; its backward is the same op with the same s)
template <typename TO, typename TX> __device__ void scale(TO* out, const TX* x, float s, long long n) {
    GRID_STRIDE(i, n) st(out, i, s * ld(x, i));
}
template <typename TO, typename TX> __device__ void cast(TO* out, const TX* x, long long n) {
    GRID_STRIDE(i, n) st(out, i, ld(x, i));
}
// out[n,o] += bias[o] (after the cuBLAS product)
template <typename TO, typename TB> __device__ void bias_add(TO* out, const TB* bias, long long N, int O) {
    GRID_STRIDE(i, N * O) st(out, i, ld(out, i) + ld(bias, i % O));
}
// db[o] += Σ_n dOut[n,o]. Block = 32 columns × 8 row lanes; each block owns its 32 columns for a
// slice of the rows (blockIdx.y), partial sums combined with one atomicAdd per column per block.
template <typename T> __device__ void bias_bwd(float* db, const T* dOut, int N, int O) {
    __shared__ float sh[8][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    int rows = (N + gridDim.y - 1) / gridDim.y;
    int r0 = blockIdx.y * rows, r1 = min(N, r0 + rows);
    float s = 0.f;
    if (col < O) for (int n = r0 + threadIdx.y; n < r1; n += 8) s += ld(dOut, (long long)n * O + col);
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && col < O) {
        float t = 0.f;
        for (int k = 0; k < 8; k++) t += sh[k][threadIdx.x];
        atomicAdd(db + col, t);
    }
}

#define SAME(S, T) \
extern "C" __global__ void add_fwd_##S(T* out, const T* a, const T* b, long long n) { add_fwd<T>(out, a, b, n); } \
extern "C" __global__ void bias_bwd_##S(float* db, const T* dOut, int N, int O) { bias_bwd<T>(db, dOut, N, O); }
#define PAIR(SO, SI, TO, TI) \
extern "C" __global__ void axpy_##SO##_##SI(TO* y, const TI* x, float alpha, long long n) { axpy<TO, TI>(y, x, alpha, n); } \
extern "C" __global__ void scale_##SO##_##SI(TO* out, const TI* x, float s, long long n) { scale<TO, TI>(out, x, s, n); } \
extern "C" __global__ void cast_##SO##_##SI(TO* out, const TI* x, long long n) { cast<TO, TI>(out, x, n); } \
extern "C" __global__ void bias_add_##SO##_##SI(TO* out, const TI* bias, long long N, int O) { bias_add<TO, TI>(out, bias, N, O); }
SAME(f32, float)
SAME(bf16, bf16)
SAME(f16, f16)
PAIR(f32, f32, float, float)
PAIR(f32, bf16, float, bf16)
PAIR(f32, f16, float, f16)
PAIR(bf16, f32, bf16, float)
PAIR(bf16, bf16, bf16, bf16)
PAIR(bf16, f16, bf16, f16)
PAIR(f16, f32, f16, float)
PAIR(f16, bf16, f16, bf16)
PAIR(f16, f16, f16, f16)
