// AdamW on an fp32 master copy, as torch.optim.AdamW (decoupled weight decay):
//   master ← master·(1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//   master ← master − (lr/bc1) · m / (sqrt(v)/sqrt(bc2) + eps),   bc_k = 1 − β_k^step (host computes).
// param (f32 or bf16, may be the master itself) receives the updated value.
#include "common.cuh"

template <typename T>
__device__ void adamw(T* param, float* master, const float* grad, float* m, float* v, long long n,
                      float lr, float beta1, float beta2, float eps, float weightDecay, float bc1, float bc2) {
    float sbc2 = sqrtf(bc2);
    GRID_STRIDE(i, n) {
        float g = grad[i];
        float p = master[i] * (1.f - lr * weightDecay);
        float mi = beta1 * m[i] + (1.f - beta1) * g;
        float vi = beta2 * v[i] + (1.f - beta2) * g * g;
        p -= (lr / bc1) * mi / (sqrtf(vi) / sbc2 + eps);
        m[i] = mi; v[i] = vi; master[i] = p;
        st(param, i, p);
    }
}

#define ADAM(S, T) \
extern "C" __global__ void adamw_##S(T* param, float* master, const float* grad, float* m, float* v, long long n, \
    float lr, float b1, float b2, float eps, float wd, float bc1, float bc2) \
{ adamw<T>(param, master, grad, m, v, n, lr, b1, b2, eps, wd, bc1, bc2); }
ADAM(f32, float)
ADAM(bf16, bf16)
