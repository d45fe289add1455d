// Fused softmax cross-entropy over logits[N, V], forward and backward in one kernel (one block per row):
// losses[n] = logsumexp(x_n) − x_n[target];  dLogits = gradScale·(softmax(x_n) − onehot(target)).
// Rows whose target is negative are ignored (loss 0, gradient 0). dLogits may alias logits: each element
// is read and then written by the same thread, and x[target] is read before any write.
#include "common.cuh"

template <typename T>
__device__ void crossentropy_fwdbwd(float* losses, T* dLogits, const T* logits, const int* targets, int N, int V, float gradScale) {
    int n = blockIdx.x;
    const T* x = logits + (long long)n * V;
    int t = targets[n];
    if (t < 0) {
        if (threadIdx.x == 0) losses[n] = 0.f;
        if (dLogits) { T* d = dLogits + (long long)n * V; for (int c = threadIdx.x; c < V; c += blockDim.x) st(d, c, 0.f); }
        return;
    }
    // online max/sum per thread, then combine across the block
    float m = -ELDR_INF, s = 0.f;
    for (int c = threadIdx.x; c < V; c += blockDim.x) {
        float v = ld(x, c);
        if (v > m) { s = s * __expf(m - v) + 1.f; m = v; } else s += __expf(v - m);
    }
    float M = block_max(m);
    s = (m == -ELDR_INF) ? 0.f : s * __expf(m - M);
    float S = block_sum(s);
    float lse = M + logf(S);
    float xt = t < V ? ld(x, t) : ELDR_NAN;    // every thread reads it before the barrier below
    if (threadIdx.x == 0) losses[n] = lse - xt;
    if (!dLogits) return;
    __syncthreads();
    T* d = dLogits + (long long)n * V;
    for (int c = threadIdx.x; c < V; c += blockDim.x) {
        float p = __expf(ld(x, c) - lse);
        st(d, c, gradScale * (p - (c == t ? 1.f : 0.f)));
    }
}

#define CE(S, T) \
extern "C" __global__ void __launch_bounds__(512) crossentropy_fwdbwd_##S(float* losses, T* dLogits, const T* logits, const int* targets, int N, int V, float gradScale) \
{ crossentropy_fwdbwd<T>(losses, dLogits, logits, targets, N, V, gradScale); }
CE(f32, float)
CE(bf16, bf16)

// Cross-entropy with knowledge distillation (Hinton et al. 2015), forward and backward in one kernel per row.
// losses[n] is the hard-target CE as above (what is reported). With q = softmax(x_n), q_T = softmax(x_n / T)
// and p = softmax(teacher_n / T) from the dense teacher's logits (teacher[N, V], fp32; p is never stored),
// dLogits is the gradient of
//   (1 − α)·CE(onehot, q) + α·T²·KL(p ‖ q_T)   scaled by gradScale:
//   dLogits = gradScale·[(1 − α)·(q − onehot) + α·T·(q_T − p)].
// At T = 1 this is gradScale·(q − (1 − α)·onehot − α·p). Rows whose target is negative get loss 0 and
// gradient 0. dLogits may alias logits (each element is read, then written, by one thread).
template <typename T>
__device__ void crossentropy_distill_fwdbwd(float* losses, T* dLogits, const T* logits, const float* teacher, const int* targets,
                                            int N, int V, float gradScale, float alpha, float temperature) {
    int n = blockIdx.x;
    const T* x = logits + (long long)n * V;
    const float* tl = teacher + (long long)n * V;
    T* d = dLogits + (long long)n * V;
    int t = targets[n];
    if (t < 0) {
        if (threadIdx.x == 0) losses[n] = 0.f;
        for (int c = threadIdx.x; c < V; c += blockDim.x) st(d, c, 0.f);
        return;
    }
    float m = -ELDR_INF, mt = -ELDR_INF;
    for (int c = threadIdx.x; c < V; c += blockDim.x) { m = fmaxf(m, ld(x, c)); mt = fmaxf(mt, tl[c]); }
    float M = block_max(m);
    float MT = block_max(mt);
    float invT = 1.f / temperature;
    float s1 = 0.f, sT = 0.f, sP = 0.f;
    for (int c = threadIdx.x; c < V; c += blockDim.x) {
        float z = ld(x, c) - M;
        s1 += __expf(z);
        sT += __expf(z * invT);
        sP += __expf((tl[c] - MT) * invT);
    }
    float S1 = block_sum(s1);
    float ST = block_sum(sT);
    float SP = block_sum(sP);
    float lse = M + logf(S1);
    float xt = t < V ? ld(x, t) : ELDR_NAN;    // every thread reads it before the barrier below
    if (threadIdx.x == 0) losses[n] = lse - xt;
    __syncthreads();
    float hard = gradScale * (1.f - alpha), kd = gradScale * alpha * temperature, invST = 1.f / ST, invSP = 1.f / SP;
    for (int c = threadIdx.x; c < V; c += blockDim.x) {
        float z = ld(x, c);
        float q = __expf(z - lse);
        float qT = __expf((z - M) * invT) * invST;
        float p = __expf((tl[c] - MT) * invT) * invSP;
        st(d, c, hard * (q - (c == t ? 1.f : 0.f)) + kd * (qT - p));
    }
}

#define CE_KD(S, T) \
extern "C" __global__ void __launch_bounds__(512) crossentropy_distill_fwdbwd_##S(float* losses, T* dLogits, const T* logits, const float* teacher, const int* targets, \
    int N, int V, float gradScale, float alpha, float temperature) \
{ crossentropy_distill_fwdbwd<T>(losses, dLogits, logits, teacher, targets, N, V, gradScale, alpha, temperature); }
CE_KD(f32, float)
CE_KD(bf16, bf16)
