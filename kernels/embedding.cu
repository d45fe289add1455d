// Token embedding with optional learned positions (OPT: token t uses position row t + posOffset).
#include "common.cuh"

// out[n,c] = table[ids[n],c] (+ pos[(n mod T) + posOffset, c]). An id outside [0,V) yields NaN so
// that a tokenizer/vocab mismatch is loud rather than silently reading another row.
template <typename T>
__device__ void embedding_fwd(T* out, const int* ids, const T* table, const T* pos,
                              long long N, int C, int V, int T_, int posOffset) {
    GRID_STRIDE(i, N * C) {
        long long n = i / C; int c = (int)(i - n * C);
        int id = ids[n];
        float v = (id >= 0 && id < V) ? ld(table, (long long)id * C + c) : ELDR_NAN;
        if (pos) v += ld(pos, (long long)((int)(n % T_) + posOffset) * C + c);
        st(out, i, v);
    }
}

// dTable[ids[n],c] += dOut[n,c]; dPos[(n mod T)+posOffset, c] += dOut[n,c]. Atomics: several rows may
// share one token id (and every batch shares the positions), so fp32 atomicAdd, order nondeterministic.
template <typename T>
__device__ void embedding_bwd(float* dTable, float* dPos, const T* dOut, const int* ids,
                              long long N, int C, int V, int T_, int posOffset) {
    GRID_STRIDE(i, N * C) {
        long long n = i / C; int c = (int)(i - n * C);
        float g = ld(dOut, i);
        int id = ids[n];
        if (dTable && id >= 0 && id < V) atomicAdd(dTable + (long long)id * C + c, g);
        if (dPos) atomicAdd(dPos + (long long)((int)(n % T_) + posOffset) * C + c, g);
    }
}

#define EMB(S, T) \
extern "C" __global__ void embedding_fwd_##S(T* out, const int* ids, const T* table, const T* pos, long long N, int C, int V, int T_, int off) \
{ embedding_fwd<T>(out, ids, table, pos, N, C, V, T_, off); } \
extern "C" __global__ void embedding_bwd_##S(float* dTable, float* dPos, const T* dOut, const int* ids, long long N, int C, int V, int T_, int off) \
{ embedding_bwd<T>(dTable, dPos, dOut, ids, N, C, V, T_, off); }
EMB(f32, float)
EMB(bf16, bf16)
