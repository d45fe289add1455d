# Lane-level check, in plain Python, of the ldmatrix addressing in kernels/attention.cu attention_fwd_tc2 against the
# PTX ISA fragment layouts (ldmatrix m8n8.x4 with and without .trans; mma.m16n8k16 row.col A/B/C). It runs without a
# GPU: python3 bench/gpu/check_tc2_fragments.py. It checks the index math only; the GPU parity tests check the kernel.
import random
random.seed(0)
def rnd(r, c): return [[random.randint(-4, 4) for _ in range(c)] for _ in range(r)]
def matmul(A, B): return [[sum(A[i][k] * B[k][j] for k in range(len(B))) for j in range(len(B[0]))] for i in range(len(A))]
def T(A): return [list(x) for x in zip(*A)]

def ldsm_n(smem, addr_of_lane, trans, count):
    """ldmatrix .x{count}: addr_of_lane(l) is the element offset of the row lane l points at; returns r[lane][i] = (lo, hi)."""
    out = []
    for l in range(32):
        regs = []
        for i in range(count):
            M = [smem[addr_of_lane(8 * i + r): addr_of_lane(8 * i + r) + 8] for r in range(8)]   # 8x8, M[row][col]
            regs.append((M[l // 4][2 * (l % 4)], M[l // 4][2 * (l % 4) + 1]) if not trans else (M[2 * (l % 4)][l // 4], M[2 * (l % 4) + 1][l // 4]))
        out.append(regs)
    return out

def mma(c, a, b0, b1):
    """mma.m16n8k16: c[lane] 4 accumulators += A·B, with A (16x16) and B (16x8) rebuilt from a[lane] (4 pairs), b0/b1[lane] (pairs)."""
    A = [[None] * 16 for _ in range(16)]; B = [[None] * 8 for _ in range(16)]
    for l in range(32):
        g, t = l // 4, l % 4
        for (r, c0), pr in zip(((g, 2*t), (g+8, 2*t), (g, 2*t+8), (g+8, 2*t+8)), a[l]):
            A[r][c0], A[r][c0+1] = pr
        B[2*t][g], B[2*t+1][g] = b0[l]; B[2*t+8][g], B[2*t+9][g] = b1[l]
    assert all(x is not None for row in A for x in row) and all(x is not None for row in B for x in row)
    C = matmul(A, B)
    for l in range(32):
        g, t = l // 4, l % 4
        c[l][0] += C[g][2*t]; c[l][1] += C[g][2*t+1]; c[l][2] += C[g+8][2*t]; c[l][3] += C[g+8][2*t+1]

def cfrag_check(acc, Mref, row0, col0, what):
    for l in range(32):
        g, t = l // 4, l % 4
        got = tuple(acc[l]); want = (Mref[row0 + g][col0 + 2*t], Mref[row0 + g][col0 + 2*t + 1], Mref[row0 + g + 8][col0 + 2*t], Mref[row0 + g + 8][col0 + 2*t + 1])
        assert got == want, (what, l, got, want)

for HD in (16, 32, 64, 80, 96, 128):
    KS, DN, LD = HD // 16, HD // 8, HD + 8
    Q = rnd(16, HD); K = rnd(64, HD); V = rnd(64, HD); P = rnd(16, 64)
    Ks = [0] * (64 * LD); Vs = [0] * (64 * LD)
    for r in range(64): Ks[r * LD:r * LD + HD] = K[r]; Vs[r * LD:r * LD + HD] = V[r]
    # S = Q Kᵀ
    qa = [[(tuple(Q[l//4][kk*16+2*(l%4):kk*16+2*(l%4)+2]), tuple(Q[l//4+8][kk*16+2*(l%4):kk*16+2*(l%4)+2]),
            tuple(Q[l//4][kk*16+8+2*(l%4):kk*16+8+2*(l%4)+2]), tuple(Q[l//4+8][kk*16+8+2*(l%4):kk*16+8+2*(l%4)+2])) for l in range(32)] for kk in range(KS)]
    s = [[[0] * 4 for _ in range(32)] for _ in range(8)]
    for j in range(0, 8, 2):
        for kk in range(KS):
            bf = ldsm_n(Ks, lambda l: (j * 8 + ((l >> 3) >> 1) * 8 + (l & 7)) * LD + kk * 16 + ((l >> 3) & 1) * 8, False, 4)
            mma(s[j], qa[kk], [x[0] for x in bf], [x[1] for x in bf])
            mma(s[j + 1], qa[kk], [x[2] for x in bf], [x[3] for x in bf])
    S = matmul(Q, T(K))
    for j in range(8): cfrag_check(s[j], S, 0, j * 8, ("S", HD, j))
    # O = P V, with P given as the C-layout accumulators of 16 rows × 64 keys
    sp = [[(P[l//4][j*8+2*(l%4)], P[l//4][j*8+2*(l%4)+1], P[l//4+8][j*8+2*(l%4)], P[l//4+8][j*8+2*(l%4)+1]) for l in range(32)] for j in range(8)]
    o = [[[0] * 4 for _ in range(32)] for _ in range(DN)]
    for kk in range(4):
        pa = [((sp[2*kk][l][0], sp[2*kk][l][1]), (sp[2*kk][l][2], sp[2*kk][l][3]), (sp[2*kk+1][l][0], sp[2*kk+1][l][1]), (sp[2*kk+1][l][2], sp[2*kk+1][l][3])) for l in range(32)]
        for dn in range(0, DN, 2):
            bf = ldsm_n(Vs, lambda l: (kk * 16 + ((l >> 3) & 1) * 8 + (l & 7)) * LD + (dn + ((l >> 3) >> 1)) * 8, True, 4)
            mma(o[dn], pa, [x[0] for x in bf], [x[1] for x in bf])
            mma(o[dn + 1], pa, [x[2] for x in bf], [x[3] for x in bf])
    O = matmul(P, V)
    for dn in range(DN): cfrag_check(o[dn], O, 0, dn * 8, ("O", HD, dn))
    # bank check: the 8 row addresses of one ldmatrix phase (rows LD apart, 16 bytes each) cover 32 distinct banks
    banks = {((r * LD * 2) // 4 + w) % 32 for r in range(8) for w in range(4)}
    assert len(banks) == 32, (HD, banks)
    print("HD", HD, "S and O fragments match; ldmatrix rows conflict-free")

# ---- attention_bwd_tc2: the same check for the backward's products (4 warps, 64 keys, 32 queries) ----
for HD in (16, 32, 64, 80, 96, 128):
    BR, BC, KS, DN, LD, LQ = 32, 64, HD // 16, HD // 8, HD + 8, 32 + 8
    K = rnd(BC, HD); V = rnd(BC, HD); Qm = rnd(BR, HD); dO = rnd(BR, HD); dS = rnd(BR, BC)   # dS[query][key]
    Ks = [0] * (BC * LD); Vs = [0] * (BC * LD); Qs = [0] * (BR * LD); dOs = [0] * (BR * LD)
    for r in range(BC): Ks[r*LD:r*LD+HD] = K[r]; Vs[r*LD:r*LD+HD] = V[r]
    for r in range(BR): Qs[r*LD:r*LD+HD] = Qm[r]; dOs[r*LD:r*LD+HD] = dO[r]
    St = matmul(K, T(Qm)); dPt = matmul(V, T(dO))                  # [key][query]
    dSt_ref = T(dS)                                                  # [key][query]
    dV = matmul(dSt_ref, dO); dK = matmul(dSt_ref, Qm)               # (P stands in for dS in dV: the same A path)
    dQ = matmul(dS, K)
    dSt = [0] * (BC * LQ)
    for warp in range(4):
        st = [[[0]*4 for _ in range(32)] for _ in range(BR // 8)]; dpt = [[[0]*4 for _ in range(32)] for _ in range(BR // 8)]
        for kk in range(KS):
            af = lambda l: (warp * 16 + ((l >> 3) & 1) * 8 + (l & 7)) * LD + kk * 16 + ((l >> 3) >> 1) * 8
            ka = ldsm_n(Ks, af, False, 4); va = ldsm_n(Vs, af, False, 4)
            for n in range(0, BR // 8, 2):
                bf = lambda l: ((n + ((l >> 3) >> 1)) * 8 + (l & 7)) * LD + kk * 16 + ((l >> 3) & 1) * 8
                bq = ldsm_n(Qs, bf, False, 4); bo = ldsm_n(dOs, bf, False, 4)
                mma(st[n], ka, [x[0] for x in bq], [x[1] for x in bq]); mma(st[n + 1], ka, [x[2] for x in bq], [x[3] for x in bq])
                mma(dpt[n], va, [x[0] for x in bo], [x[1] for x in bo]); mma(dpt[n + 1], va, [x[2] for x in bo], [x[3] for x in bo])
        for n in range(BR // 8):
            cfrag_check(st[n], St, warp * 16, n * 8, ("S^T", HD, warp, n)); cfrag_check(dpt[n], dPt, warp * 16, n * 8, ("dP^T", HD, warp, n))
        # dS^T of this warp's keys, in the accumulator layout, stored as pairs at (key row, query col)
        sfr = [[(dSt_ref[warp*16 + l//4][n*8 + 2*(l%4)], dSt_ref[warp*16 + l//4][n*8 + 2*(l%4) + 1], dSt_ref[warp*16 + l//4 + 8][n*8 + 2*(l%4)], dSt_ref[warp*16 + l//4 + 8][n*8 + 2*(l%4) + 1]) for l in range(32)] for n in range(BR // 8)]
        for n in range(BR // 8):
            for l in range(32):
                g, t = l // 4, l % 4; kr0 = warp * 16 + g; kr1 = kr0 + 8
                dSt[kr0 * LQ + n*8 + 2*t: kr0 * LQ + n*8 + 2*t + 2] = sfr[n][l][0:2]
                dSt[kr1 * LQ + n*8 + 2*t: kr1 * LQ + n*8 + 2*t + 2] = sfr[n][l][2:4]
        dva = [[[0]*4 for _ in range(32)] for _ in range(DN)]; dka = [[[0]*4 for _ in range(32)] for _ in range(DN)]
        for kk in range(BR // 16):
            sa = [((sfr[2*kk][l][0], sfr[2*kk][l][1]), (sfr[2*kk][l][2], sfr[2*kk][l][3]), (sfr[2*kk+1][l][0], sfr[2*kk+1][l][1]), (sfr[2*kk+1][l][2], sfr[2*kk+1][l][3])) for l in range(32)]
            for dn in range(0, DN, 2):
                of = lambda l: (kk * 16 + ((l >> 3) & 1) * 8 + (l & 7)) * LD + (dn + ((l >> 3) >> 1)) * 8
                bo = ldsm_n(dOs, of, True, 4); bq = ldsm_n(Qs, of, True, 4)
                mma(dva[dn], sa, [x[0] for x in bo], [x[1] for x in bo]); mma(dva[dn + 1], sa, [x[2] for x in bo], [x[3] for x in bo])
                mma(dka[dn], sa, [x[0] for x in bq], [x[1] for x in bq]); mma(dka[dn + 1], sa, [x[2] for x in bq], [x[3] for x in bq])
        for dn in range(DN):
            cfrag_check(dva[dn], dV, warp * 16, dn * 8, ("dV", HD, warp, dn)); cfrag_check(dka[dn], dK, warp * 16, dn * 8, ("dK", HD, warp, dn))
    for warp in range(4):
        rb, dn0 = (warp & 1) * 16, (warp >> 1) * (DN // 2)
        dq = [[[0]*4 for _ in range(32)] for _ in range(DN // 2)]
        for kk in range(BC // 16):
            da = ldsm_n(dSt, lambda l: (kk * 16 + ((l >> 3) >> 1) * 8 + (l & 7)) * LQ + rb + ((l >> 3) & 1) * 8, True, 4)
            for i in range(DN // 2):
                # .x2: lanes 0-15 give the addresses (matrix l/8); the formula is evaluated as the kernel does
                bk = ldsm_n(Ks, lambda l: (kk * 16 + ((l >> 3) & 1) * 8 + (l & 7)) * LD + (dn0 + i) * 8, True, 2)
                mma(dq[i], da, [x[0] for x in bk], [x[1] for x in bk])
        for i in range(DN // 2):
            cfrag_check(dq[i], dQ, rb, (dn0 + i) * 8, ("dQ", HD, warp, i))
    print("HD", HD, "backward: S^T, dP^T, dV, dK, dQ fragments match")
