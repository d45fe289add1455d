"""Runs one kernel family (kernels/<family>.cu) on the CPU emulator in emu.h, with the harness <family>_main.cpp.

The kernel sources are used as they are, except that the helpers written in inline PTX (mma.sync, ldmatrix,
cp.async, the shared-window address, and the f16 conversions) are swapped for emu.h's versions, and dynamic
shared memory points at the emulator's buffer. Needs g++ 12 (C++20).

Usage: python3 bench/gpu/emu/run_emu.py attention [tc2]   (tc2: only the pipelined kernels)
       python3 bench/gpu/emu/run_emu.py argmax
"""
import os, re, subprocess, sys

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

common = open(os.path.join(root, "kernels", "common.cuh")).read()
common = drop_function(common, "__device__ __forceinline__ float to_f32(f16 v)", "inline float to_f32(f16) { std::abort(); }")
common = drop_function(common, "template <> __device__ __forceinline__ f16 from_f32<f16>(float f)", "template <> inline f16 from_f32<f16>(float) { std::abort(); }")

family = sys.argv[1] if len(sys.argv) > 1 else "attention"
att = open(os.path.join(root, "kernels", family + ".cu")).read()
att = att.replace('#include "common.cuh"', "")
swaps = {
    "__device__ __forceinline__ void mma16816(": "inline void mma16816(float* c, const unsigned* a, unsigned b0, unsigned b1) { emu_mma16816(c, a, b0, b1); }",
    "__device__ __forceinline__ unsigned smem_u32(": "inline unsigned smem_u32(const void* p) { return emu_smem_u32(p); }",
    "__device__ __forceinline__ void cp_async16(": "inline void cp_async16(unsigned dst, const void* src, bool valid) { emu_cp_async16(dst, src, valid); }",
    "__device__ __forceinline__ void cp_async_commit(": "inline void cp_async_commit() { emu_cp_async_commit(); }",
    "template <int N> __device__ __forceinline__ void cp_async_wait(": "template <int N> inline void cp_async_wait() { emu_cp_async_wait(N); }",
    "__device__ __forceinline__ void ldsm_x4(": "inline void ldsm_x4(unsigned* r, unsigned addr) { emu_ldsm(r, addr, 4, false); }",
    "__device__ __forceinline__ void ldsm_x4_t(": "inline void ldsm_x4_t(unsigned* r, unsigned addr) { emu_ldsm(r, addr, 4, true); }",
    "__device__ __forceinline__ void ldsm_x2_t(": "inline void ldsm_x2_t(unsigned* r, unsigned addr) { emu_ldsm(r, addr, 2, true); }",
}
for sig, rep in swaps.items():
    if sig in att: att = drop_function(att, sig, rep)
# dynamic shared memory: the emulator's buffer
att = re.sub(r"extern __shared__ (?:__align__\(\d+\) )?([\w ]+?) (\w+)\[\];", r"\1* \2 = (\1*)emu_dyn_smem;", att)
if "asm" in re.sub(r"//.*", "", att) or "asm" in re.sub(r"//.*", "", common):
    sys.exit("inline PTX left in the sources: emu.h has no stand-in for it")

out_dir = os.environ.get("ELDR_EMU_DIR", "/tmp/eldr-emu")
os.makedirs(out_dir, exist_ok=True)
src = os.path.join(out_dir, family + "_emu.cpp")
with open(src, "w") as f:
    f.write('#include "%s"\n' % os.path.join(here, "emu.h"))
    f.write(common.replace("#pragma once", ""))
    f.write(att)
    f.write(open(os.path.join(here, family + "_main.cpp")).read())
exe = os.path.join(out_dir, family + "_emu")
subprocess.run(["g++", "-std=c++20", "-O2", "-pthread", "-w", "-o", exe, src], check=True)
sys.exit(subprocess.run([exe] + sys.argv[2:]).returncode)
