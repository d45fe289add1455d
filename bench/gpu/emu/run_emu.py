"""Runs one kernel family (kernels/<family>.cu) on the CPU emulator in emu.h, with the harness <family>_main.cpp.

The kernel sources are used as they are, except that the helpers written in inline PTX (mma.sync, ldmatrix,
cp.async, the shared-window address, and the f16 conversions) are swapped for emu.h's versions, and dynamic
shared memory points at the emulator's buffer. Needs g++ 12 (C++20).

Usage: python3 bench/gpu/emu/run_emu.py attention [tc2]   (tc2: only the pipelined kernels)
       python3 bench/gpu/emu/run_emu.py argmax
"""
import os, subprocess, sys
from emu_source import here, common_source, family_source

family = sys.argv[1] if len(sys.argv) > 1 else "attention"
common = common_source()
att = family_source(family)

out_dir = os.environ.get("ELDR_EMU_DIR", "/tmp/eldr-emu")
os.makedirs(out_dir, exist_ok=True)
src = os.path.join(out_dir, family + "_emu.cpp")
with open(src, "w") as f:
    f.write('#include "%s"\n' % os.path.join(here, "emu.h"))
    f.write(common)
    f.write(att)
    f.write(open(os.path.join(here, family + "_main.cpp")).read())
exe = os.path.join(out_dir, family + "_emu")
subprocess.run(["g++", "-std=c++20", "-O2", "-pthread", "-w", "-o", exe, src], check=True)
sys.exit(subprocess.run([exe] + sys.argv[2:]).returncode)
