"""The kernel sources as the CPU emulator (emu.h) compiles them: kernels/common.cuh and kernels/<family>.cu, unchanged
except that the helpers written in inline PTX (mma.sync, ldmatrix, cp.async, the shared-window address, and the f16
conversions) are swapped for emu.h's versions, and dynamic shared memory points at the emulator's buffer.
Used by run_emu.py (one family with its harness) and build_emugpu.py (every family behind a stand-in CUDA driver)."""
import os, re, sys

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.abspath(os.path.join(here, "..", "..", ".."))

def drop_function(src, signature_start, replacement):
    """Replace the definition that starts with signature_start (up to its matching closing brace) with replacement."""
    i = src.index(signature_start)
    j = src.index("{", i)
    depth, k, in_str = 0, j, False
    while True:
        ch = src[k]
        if in_str:
            if ch == "\\": k += 1
            elif ch == '"': in_str = False
        elif ch == '"': in_str = True
        elif ch == "{": depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0: break
        k += 1
    return src[:i] + replacement + src[k + 1:]

SWAPS = {
    "__device__ __forceinline__ void mma16816(": "inline void mma16816(float* c, const unsigned* a, unsigned b0, unsigned b1) { emu_mma16816(c, a, b0, b1); }",
    "__device__ __forceinline__ unsigned smem_u32(": "inline unsigned smem_u32(const void* p) { return emu_smem_u32(p); }",
    "__device__ __forceinline__ void cp_async16(": "inline void cp_async16(unsigned dst, const void* src, bool valid) { emu_cp_async16(dst, src, valid); }",
    "__device__ __forceinline__ void cp_async_commit(": "inline void cp_async_commit() { emu_cp_async_commit(); }",
    "template <int N> __device__ __forceinline__ void cp_async_wait(": "template <int N> inline void cp_async_wait() { emu_cp_async_wait(N); }",
    "__device__ __forceinline__ void ldsm_x4(": "inline void ldsm_x4(unsigned* r, unsigned addr) { emu_ldsm(r, addr, 4, false); }",
    "__device__ __forceinline__ void ldsm_x4_t(": "inline void ldsm_x4_t(unsigned* r, unsigned addr) { emu_ldsm(r, addr, 4, true); }",
    "__device__ __forceinline__ void ldsm_x2_t(": "inline void ldsm_x2_t(unsigned* r, unsigned addr) { emu_ldsm(r, addr, 2, true); }",
}

def common_source():
    common = open(os.path.join(root, "kernels", "common.cuh")).read()
    common = drop_function(common, "__device__ __forceinline__ float to_f32(f16 v)", "inline float to_f32(f16 v) { return emu_f16_to_f32(v.bits); }")
    common = drop_function(common, "template <> __device__ __forceinline__ f16 from_f32<f16>(float f)", "template <> inline f16 from_f32<f16>(float f) { f16 r; r.bits = emu_f32_to_f16(f); return r; }")
    return common.replace("#pragma once", "")

def family_source(family):
    src = open(os.path.join(root, "kernels", family + ".cu")).read()
    src = src.replace('#include "common.cuh"', "")
    for sig, rep in SWAPS.items():
        if sig in src: src = drop_function(src, sig, rep)
    # dynamic shared memory: the emulator's buffer
    src = re.sub(r"extern __shared__ (?:__align__\(\d+\) )?([\w ]+?) (\w+)\[\];", r"\1* \2 = (\1*)emu_dyn_smem;", src)
    if "asm" in re.sub(r"//.*", "", src) or "asm" in re.sub(r"//.*", "", common_source()):
        sys.exit(f"inline PTX left in kernels/{family}.cu: emu.h has no stand-in for it")
    return src
