// Causal self-attention with grouped-query heads, flash-attention style (Dao et al., FlashAttention-2):
// tiles of queries × keys in shared memory, online softmax, no T×T matrix in global memory; fp32 math.
//
// Layout: q, out [B·T, nH·hd]; k, v [B·T, nKv·hd]; lse, D [B, nH, T] (F32). Query head h reads kv head
// h / (nH/nKv). S = scale·q·kᵀ, masked where key > query; lse = m + log l saved for backward.
//
// Tiles: BR query rows × BC keys per step, 256 threads as a 16×16 grid (ty, tx). Thread (ty, tx) owns
// S rows ty·RM..+RM and columns tx + 16·j, and output rows ty·RM..+RM, dims tx + 16·j. Shared rows are
// padded to hd + 1 floats so column walks hit distinct banks. HD is the compile-time bound on hd.
#include "common.cuh"

#define ATT_THREADS 256

template <typename T>
__device__ __forceinline__ void load_tile(float* dst, int LD, const T* src, long long rowStride, long long colOff,
                                          int b, int T_, int t0, int rows, int hd) {
    for (int e = threadIdx.x; e < rows * hd; e += ATT_THREADS) {
        int r = e / hd, d = e - r * hd, t = t0 + r;
        dst[r * LD + d] = t < T_ ? ld(src, ((long long)b * T_ + t) * rowStride + colOff + d) : 0.f;
    }
}

template <typename T, int HD, int BR, int BC>
__device__ void attention_fwd(T* out, float* lse, const T* q, const T* k, const T* v,
                              int B, int T_, int nH, int nKv, int hd, float scale) {
    constexpr int RM = BR / 16, CN = BC / 16, DJ = HD / 16;
    extern __shared__ float smem[];
    const int LD = hd + 1, LP = BC + 1;
    float* Qs = smem;            // [BR][LD]
    float* KV = Qs + BR * LD;    // [BC][LD]: K, then V, of the current key tile
    float* Ps = KV + BC * LD;    // [BR][LP]: probabilities of the current tile
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    const int qt = gridDim.x - 1 - blockIdx.x;     // longest (latest) query tiles start first
    const int h = blockIdx.y, b = blockIdx.z, g = h / (nH / nKv);
    const long long qs = (long long)nH * hd, ks = (long long)nKv * hd;
    const int q0 = qt * BR;

    load_tile(Qs, LD, q, qs, (long long)h * hd, b, T_, q0, BR, hd);

    float o[RM][DJ], mrow[RM], lrow[RM];
#pragma unroll
    for (int i = 0; i < RM; i++) {
        mrow[i] = -ELDR_INF; lrow[i] = 0.f;
#pragma unroll
        for (int j = 0; j < DJ; j++) o[i][j] = 0.f;
    }

    const int kEnd = min(T_, q0 + BR);
    const int nkt = (kEnd + BC - 1) / BC;
    for (int kt = 0; kt < nkt; kt++) {
        const int k0 = kt * BC;
        __syncthreads();                                   // last tile's P·V is done with KV and Ps
        load_tile(KV, LD, k, ks, (long long)g * hd, b, T_, k0, BC, hd);
        __syncthreads();

        float s[RM][CN];
#pragma unroll
        for (int i = 0; i < RM; i++)
#pragma unroll
            for (int j = 0; j < CN; j++) s[i][j] = 0.f;
#pragma unroll 4
        for (int d = 0; d < hd; d++) {
            float qv[RM], kv[CN];
#pragma unroll
            for (int i = 0; i < RM; i++) qv[i] = Qs[(ty * RM + i) * LD + d];
#pragma unroll
            for (int j = 0; j < CN; j++) kv[j] = KV[(tx + 16 * j) * LD + d];
#pragma unroll
            for (int i = 0; i < RM; i++)
#pragma unroll
                for (int j = 0; j < CN; j++) s[i][j] += qv[i] * kv[j];
        }

        // online softmax; the 16 threads sharing a row are 16 consecutive lanes of one warp
#pragma unroll
        for (int i = 0; i < RM; i++) {
            const int qi = q0 + ty * RM + i;
            float mx = -ELDR_INF;
#pragma unroll
            for (int j = 0; j < CN; j++) {
                const int kj = k0 + tx + 16 * j;
                s[i][j] = (kj <= qi && kj < T_) ? s[i][j] * scale : -ELDR_INF;
                mx = fmaxf(mx, s[i][j]);
            }
#pragma unroll
            for (int off = 8; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            // key 0 is visible to every row, so after the first tile mnew is finite
            const float mnew = fmaxf(mrow[i], mx);
            const float alpha = __expf(mrow[i] - mnew);
            float rs = 0.f;
#pragma unroll
            for (int j = 0; j < CN; j++) {
                const float p = __expf(s[i][j] - mnew);
                Ps[(ty * RM + i) * LP + tx + 16 * j] = p;
                rs += p;
            }
#pragma unroll
            for (int off = 8; off > 0; off >>= 1) rs += __shfl_xor_sync(0xffffffffu, rs, off);
            lrow[i] = lrow[i] * alpha + rs;
            mrow[i] = mnew;
#pragma unroll
            for (int j = 0; j < DJ; j++) o[i][j] *= alpha;
        }
        __syncthreads();                                   // K no longer needed; P complete
        load_tile(KV, LD, v, ks, (long long)g * hd, b, T_, k0, BC, hd);
        __syncthreads();
#pragma unroll 4
        for (int c = 0; c < BC; c++) {
            float pv[RM];
#pragma unroll
            for (int i = 0; i < RM; i++) pv[i] = Ps[(ty * RM + i) * LP + c];
#pragma unroll
            for (int j = 0; j < DJ; j++) {
                const int d = tx + 16 * j;
                if (d < hd) {
                    const float vv = KV[c * LD + d];
#pragma unroll
                    for (int i = 0; i < RM; i++) o[i][j] += pv[i] * vv;
                }
            }
        }
    }

#pragma unroll
    for (int i = 0; i < RM; i++) {
        const int qi = q0 + ty * RM + i;
        if (qi >= T_) continue;
        const float inv = 1.f / lrow[i];
        const long long row = ((long long)b * T_ + qi) * qs + (long long)h * hd;
#pragma unroll
        for (int j = 0; j < DJ; j++) {
            const int d = tx + 16 * j;
            if (d < hd) st(out, row + d, o[i][j] * inv);
        }
        if (tx == 0) lse[((long long)b * nH + h) * T_ + qi] = mrow[i] + logf(lrow[i]);
    }
}

// D[b,h,t] = Σ_d dOut·out (the rowsum term of the softmax backward). One warp per (b, t, h).
template <typename T>
__device__ void attention_bwd_prep(float* Dv, const T* dOut, const T* out, int B, int T_, int nH, int hd) {
    const long long w = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (w >= (long long)B * T_ * nH) return;
    const int h = (int)(w % nH);
    const long long bt = w / nH;
    const int t = (int)(bt % T_), b = (int)(bt / T_);
    const long long base = bt * nH * hd + (long long)h * hd;
    float s = 0.f;
    for (int d = lane; d < hd; d += 32) s += ld(dOut, base + d) * ld(out, base + d);
    s = warp_sum(s);
    if (lane == 0) Dv[((long long)b * nH + h) * T_ + t] = s;
}

// One block per (key tile, kv head, batch): it keeps K, V and the dK, dV accumulators on chip and
// walks every query head of its group and every query tile at or after the key tile. dQ is summed
// across key tiles with fp32 atomicAdd into dqAcc (zeroed by the host; order nondeterministic).
//   P = exp(scale·q·kᵀ − lse), dP = dO·vᵀ, dS = P ⊙ (dP − D)
//   dV += Pᵀ·dO, dK += scale·dSᵀ·Q, dQ += scale·dS·K
template <typename T, int HD, int BR, int BC>
__device__ void attention_bwd(float* dqAcc, T* dk, T* dv, const T* dOut, const T* q, const T* k, const T* v,
                              const float* lse, const float* Dv, int B, int T_, int nH, int nKv, int hd, float scale) {
    constexpr int RM = BR / 16, CN = BC / 16, CM = BC / 16, DJ = HD / 16;
    extern __shared__ float smem[];
    const int LD = hd + 1, LP = BC + 1;
    float* Ks = smem;              // [BC][LD]
    float* Vs = Ks + BC * LD;      // [BC][LD]
    float* Qs = Vs + BC * LD;      // [BR][LD]
    float* dOs = Qs + BR * LD;     // [BR][LD]
    float* Ps = dOs + BR * LD;     // [BR][LP]
    float* dSs = Ps + BR * LP;     // [BR][LP]
    float* Ls = dSs + BR * LP;     // [BR]
    float* Ds = Ls + BR;           // [BR]
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    const int kt = blockIdx.x, g = blockIdx.y, b = blockIdx.z;
    const int k0 = kt * BC;
    const int group = nH / nKv;
    const long long qs = (long long)nH * hd, ks = (long long)nKv * hd;

    load_tile(Ks, LD, k, ks, (long long)g * hd, b, T_, k0, BC, hd);
    load_tile(Vs, LD, v, ks, (long long)g * hd, b, T_, k0, BC, hd);

    float dkA[CM][DJ], dvA[CM][DJ];
#pragma unroll
    for (int i = 0; i < CM; i++)
#pragma unroll
        for (int j = 0; j < DJ; j++) { dkA[i][j] = 0.f; dvA[i][j] = 0.f; }

    const int nqt = (T_ + BR - 1) / BR;
    for (int hh = 0; hh < group; hh++) {
        const int h = g * group + hh;
        for (int qt = k0 / BR; qt < nqt; qt++) {
            const int q0 = qt * BR;
            __syncthreads();                               // previous tile is done with Qs, dOs, Ps, dSs
            load_tile(Qs, LD, q, qs, (long long)h * hd, b, T_, q0, BR, hd);
            load_tile(dOs, LD, dOut, qs, (long long)h * hd, b, T_, q0, BR, hd);
            for (int r = threadIdx.x; r < BR; r += ATT_THREADS) {
                const int t = q0 + r;
                Ls[r] = t < T_ ? lse[((long long)b * nH + h) * T_ + t] : 0.f;
                Ds[r] = t < T_ ? Dv[((long long)b * nH + h) * T_ + t] : 0.f;
            }
            __syncthreads();

            {
                float s[RM][CN], dp[RM][CN];
#pragma unroll
                for (int i = 0; i < RM; i++)
#pragma unroll
                    for (int j = 0; j < CN; j++) { s[i][j] = 0.f; dp[i][j] = 0.f; }
#pragma unroll 2
                for (int d = 0; d < hd; d++) {
                    float qv[RM], ov[RM], kv[CN], vv[CN];
#pragma unroll
                    for (int i = 0; i < RM; i++) { qv[i] = Qs[(ty * RM + i) * LD + d]; ov[i] = dOs[(ty * RM + i) * LD + d]; }
#pragma unroll
                    for (int j = 0; j < CN; j++) { kv[j] = Ks[(tx + 16 * j) * LD + d]; vv[j] = Vs[(tx + 16 * j) * LD + d]; }
#pragma unroll
                    for (int i = 0; i < RM; i++)
#pragma unroll
                        for (int j = 0; j < CN; j++) { s[i][j] += qv[i] * kv[j]; dp[i][j] += ov[i] * vv[j]; }
                }
#pragma unroll
                for (int i = 0; i < RM; i++) {
                    const int r = ty * RM + i, qi = q0 + r;
#pragma unroll
                    for (int j = 0; j < CN; j++) {
                        const int c = tx + 16 * j, kj = k0 + c;
                        const bool ok = kj <= qi && qi < T_ && kj < T_;
                        const float p = ok ? __expf(s[i][j] * scale - Ls[r]) : 0.f;
                        Ps[r * LP + c] = p;
                        dSs[r * LP + c] = p * (dp[i][j] - Ds[r]);
                    }
                }
            }
            __syncthreads();

            // dV, dK: rows c = ty·CM + i of this key tile, dims tx + 16·j
#pragma unroll 2
            for (int r = 0; r < BR; r++) {
                float pc[CM], sc[CM];
#pragma unroll
                for (int i = 0; i < CM; i++) { pc[i] = Ps[r * LP + ty * CM + i]; sc[i] = dSs[r * LP + ty * CM + i]; }
#pragma unroll
                for (int j = 0; j < DJ; j++) {
                    const int d = tx + 16 * j;
                    if (d < hd) {
                        const float o = dOs[r * LD + d], qq = Qs[r * LD + d];
#pragma unroll
                        for (int i = 0; i < CM; i++) { dvA[i][j] += pc[i] * o; dkA[i][j] += sc[i] * qq; }
                    }
                }
            }
            // dQ for rows ty·RM + i, dims tx + 16·j
            {
                float dq[RM][DJ];
#pragma unroll
                for (int i = 0; i < RM; i++)
#pragma unroll
                    for (int j = 0; j < DJ; j++) dq[i][j] = 0.f;
#pragma unroll 2
                for (int c = 0; c < BC; c++) {
                    float sr[RM];
#pragma unroll
                    for (int i = 0; i < RM; i++) sr[i] = dSs[(ty * RM + i) * LP + c];
#pragma unroll
                    for (int j = 0; j < DJ; j++) {
                        const int d = tx + 16 * j;
                        if (d < hd) {
                            const float kk = Ks[c * LD + d];
#pragma unroll
                            for (int i = 0; i < RM; i++) dq[i][j] += sr[i] * kk;
                        }
                    }
                }
#pragma unroll
                for (int i = 0; i < RM; i++) {
                    const int qi = q0 + ty * RM + i;
                    if (qi >= T_) continue;
                    float* dst = dqAcc + ((long long)b * T_ + qi) * qs + (long long)h * hd;
#pragma unroll
                    for (int j = 0; j < DJ; j++) {
                        const int d = tx + 16 * j;
                        if (d < hd) atomicAdd(dst + d, dq[i][j] * scale);
                    }
                }
            }
        }
    }

#pragma unroll
    for (int i = 0; i < CM; i++) {
        const int kj = k0 + ty * CM + i;
        if (kj >= T_) continue;
        const long long row = ((long long)b * T_ + kj) * ks + (long long)g * hd;
#pragma unroll
        for (int j = 0; j < DJ; j++) {
            const int d = tx + 16 * j;
            if (d < hd) { st(dk, row + d, dkA[i][j] * scale); st(dv, row + d, dvA[i][j]); }
        }
    }
}

#define ATT(S, T, HD, BR, BC) \
extern "C" __global__ void __launch_bounds__(ATT_THREADS) attention_fwd_##S##_hd##HD( \
    T* out, float* lse, const T* q, const T* k, const T* v, int B, int T_, int nH, int nKv, int hd, float scale) \
{ attention_fwd<T, HD, BR, BC>(out, lse, q, k, v, B, T_, nH, nKv, hd, scale); } \
extern "C" __global__ void __launch_bounds__(ATT_THREADS) attention_bwd_##S##_hd##HD( \
    float* dqAcc, T* dk, T* dv, const T* dOut, const T* q, const T* k, const T* v, const float* lse, const float* Dv, \
    int B, int T_, int nH, int nKv, int hd, float scale) \
{ attention_bwd<T, HD, BR, BC>(dqAcc, dk, dv, dOut, q, k, v, lse, Dv, B, T_, nH, nKv, hd, scale); }

#define ATT_ALL(S, T) \
ATT(S, T, 64, 64, 64) \
ATT(S, T, 128, 64, 64) \
ATT(S, T, 256, 32, 32) \
extern "C" __global__ void attention_bwd_prep_##S(float* Dv, const T* dOut, const T* out, int B, int T_, int nH, int hd) \
{ attention_bwd_prep<T>(Dv, dOut, out, B, T_, nH, hd); }
ATT_ALL(f32, float)
ATT_ALL(bf16, bf16)
