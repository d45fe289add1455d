// Activations: SwiGLU (Llama MLP), SiLU, gelu_new (tanh approximation, Phi/GPT-2), ReLU (OPT).
// Backward kernels overwrite dx (the contract), argument order dx, dOut, inputs, n.
#include "common.cuh"

__device__ __forceinline__ float sigmoidf_(float x) { return 1.f / (1.f + __expf(-x)); }
#define GELU_K 0.7978845608028654f   /* sqrt(2/pi) */
#define GELU_A 0.044715f

template <typename T> __device__ void swiglu_fwd(T* out, const T* gate, const T* up, long long n) {
    GRID_STRIDE(i, n) { float g = ld(gate, i); st(out, i, g * sigmoidf_(g) * ld(up, i)); }
}
// d gate = dOut·up·silu'(g), silu'(g) = s·(1 + g·(1 − s));  d up = dOut·silu(g).
template <typename T> __device__ void swiglu_bwd(T* dGate, T* dUp, const T* dOut, const T* gate, const T* up, long long n) {
    GRID_STRIDE(i, n) {
        float g = ld(gate, i), u = ld(up, i), d = ld(dOut, i), s = sigmoidf_(g);
        st(dGate, i, d * u * s * (1.f + g * (1.f - s)));
        st(dUp, i, d * g * s);
    }
}
template <typename T> __device__ void silu_fwd(T* out, const T* x, long long n) {
    GRID_STRIDE(i, n) { float v = ld(x, i); st(out, i, v * sigmoidf_(v)); }
}
template <typename T> __device__ void silu_bwd(T* dx, const T* dOut, const T* x, long long n) {
    GRID_STRIDE(i, n) { float v = ld(x, i), s = sigmoidf_(v); st(dx, i, ld(dOut, i) * s * (1.f + v * (1.f - s))); }
}
template <typename T> __device__ void gelu_new_fwd(T* out, const T* x, long long n) {
    GRID_STRIDE(i, n) { float v = ld(x, i); st(out, i, 0.5f * v * (1.f + tanhf(GELU_K * (v + GELU_A * v * v * v)))); }
}
template <typename T> __device__ void gelu_new_bwd(T* dx, const T* dOut, const T* x, long long n) {
    GRID_STRIDE(i, n) {
        float v = ld(x, i), th = tanhf(GELU_K * (v + GELU_A * v * v * v));
        float d = 0.5f * (1.f + th) + 0.5f * v * (1.f - th * th) * GELU_K * (1.f + 3.f * GELU_A * v * v);
        st(dx, i, ld(dOut, i) * d);
    }
}
template <typename T> __device__ void relu_fwd(T* out, const T* x, long long n) {
    GRID_STRIDE(i, n) { float v = ld(x, i); st(out, i, v > 0.f ? v : 0.f); }
}
template <typename T> __device__ void relu_bwd(T* dx, const T* dOut, const T* x, long long n) {
    GRID_STRIDE(i, n) { st(dx, i, ld(x, i) > 0.f ? ld(dOut, i) : 0.f); }
}

#define ACT(S, T) \
extern "C" __global__ void swiglu_fwd_##S(T* out, const T* gate, const T* up, long long n) { swiglu_fwd<T>(out, gate, up, n); } \
extern "C" __global__ void swiglu_bwd_##S(T* dGate, T* dUp, const T* dOut, const T* gate, const T* up, long long n) { swiglu_bwd<T>(dGate, dUp, dOut, gate, up, n); } \
extern "C" __global__ void silu_fwd_##S(T* out, const T* x, long long n) { silu_fwd<T>(out, x, n); } \
extern "C" __global__ void silu_bwd_##S(T* dx, const T* dOut, const T* x, long long n) { silu_bwd<T>(dx, dOut, x, n); } \
extern "C" __global__ void gelu_new_fwd_##S(T* out, const T* x, long long n) { gelu_new_fwd<T>(out, x, n); } \
extern "C" __global__ void gelu_new_bwd_##S(T* dx, const T* dOut, const T* x, long long n) { gelu_new_bwd<T>(dx, dOut, x, n); } \
extern "C" __global__ void relu_fwd_##S(T* out, const T* x, long long n) { relu_fwd<T>(out, x, n); } \
extern "C" __global__ void relu_bwd_##S(T* dx, const T* dOut, const T* x, long long n) { relu_bwd<T>(dx, dOut, x, n); }
ACT(f32, float)
ACT(bf16, bf16)
