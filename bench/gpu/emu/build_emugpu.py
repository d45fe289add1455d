"""Builds the emulated GPU (emugpu.cpp): one shared library that answers the CUDA driver, cuBLAS and cuBLASLt calls
of our bindings, with every kernel family of kernels/*.cu compiled for the CPU kernel emulator (emu.h) and
registered by name. Prints the library's path. Needs g++ 12 (C++20).

Each family becomes one translation unit, in a namespace of its own: common.cuh and the family's source as
emu_source.py adapts them, then a binder per extern "C" kernel that copies cuLaunchKernel's arguments by the
kernel's own parameter types (read from the preprocessed source) and registers it. The library is rebuilt only
when a source changes (its name carries their hash).

Usage: python3 bench/gpu/emu/build_emugpu.py [OUT_DIR]      (default: $ELDR_EMU_DIR or /tmp/eldr-emu)
Then run the CUDA backend on it: ELDR_CUDA=LIB ELDR_CUBLAS=LIB ELDR_CUBLASLT=LIB (bench/gpu/emu/run_cuda_tests.sh).
"""
import glob, hashlib, os, re, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from emu_source import here, root, common_source, family_source

# ELDR_EMU_ASAN=1: built with AddressSanitizer, so a kernel that reads or writes outside its device allocations is
# reported (run with LD_PRELOAD of libasan; run_cuda_tests.sh does that), and with UBSan's alignment check: a load or
# store through a pointer not aligned for its type (a 4-byte bf16 pair, a float2) faults on a GPU, and aborts here
ASAN = os.environ.get("ELDR_EMU_ASAN") == "1"
CXX = ["g++", "-std=c++20", "-O2", "-pthread", "-w", "-fPIC"] + (["-fsanitize=address,alignment", "-fno-sanitize-recover=alignment", "-fno-omit-frame-pointer", "-g"] if ASAN else [])


def split_params(text):
    """'const float* a, int n' -> [('const float*', 'a'), ('int', 'n')]"""
    out = []
    for p in [p.strip() for p in text.split(",") if p.strip()]:
        m = re.match(r"^(.*?)(\w+)$", p)
        if not m or not m.group(1).strip(): sys.exit(f"cannot read kernel parameter '{p}'")
        out.append((m.group(1).strip(), m.group(2)))
    return out


def family_unit(family, out_dir):
    body = common_source() + family_source(family)
    ns = "emu_family_" + family
    head = '#include "%s"\n#include "%s"\nnamespace %s {\n' % (os.path.join(here, "emu.h"), os.path.join(here, "emugpu.h"), ns)
    marker = "int ELDR_EMU_KERNELS_END_MARKER;\n"
    probe = os.path.join(out_dir, family + "_probe.cpp")
    with open(probe, "w") as f: f.write(head + body + "\n" + marker + "}\n")
    pre = subprocess.run(["g++", "-std=c++20", "-E", "-P", probe], check=True, capture_output=True, text=True).stdout
    # the family's own text: after the last line of emu.h's own namespace-free code, before the marker
    pre = pre[pre.index("namespace " + ns):pre.index("ELDR_EMU_KERNELS_END_MARKER")]
    kernels = re.findall(r'extern\s+"C"\s+void\s+(\w+)\s*\(([^)]*)\)\s*\{', pre)
    if not kernels: sys.exit(f"kernels/{family}.cu: no extern \"C\" kernels found")
    binders = []
    for name, params in kernels:
        ps = split_params(params)
        copies = "".join(f"    auto a{i} = *({t}*)p[{i}];\n" for i, (t, _) in enumerate(ps))
        args = ", ".join(f"a{i}" for i in range(len(ps)))
        binders.append(f"static std::function<void()> bind_{name}(void** p) {{\n{copies}    return [=] {{ {name}({args}); }};\n}}\n")
    reg = "static const bool registered = [] {\n" + "".join(f'    emu_register_kernel("{n}", &bind_{n});\n' for n, _ in kernels) + "    return true;\n}();\n"
    unit = os.path.join(out_dir, family + "_unit.cpp")
    with open(unit, "w") as f: f.write(head + body + "\n" + "".join(binders) + reg + "}\n")
    return unit, len(kernels)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ELDR_EMU_DIR", "/tmp/eldr-emu")
    os.makedirs(out_dir, exist_ok=True)
    families = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(root, "kernels", "*.cu")))
    inputs = sorted(glob.glob(os.path.join(root, "kernels", "*"))) + [os.path.join(here, f) for f in
              ("emu.h", "emugpu.h", "emugpu.cpp", "emu_source.py", "build_emugpu.py")]
    h = hashlib.sha256()
    for p in inputs: h.update(os.path.basename(p).encode()); h.update(open(p, "rb").read())
    lib = os.path.join(out_dir, f"libeldr_emugpu-{h.hexdigest()[:16]}{'-asan' if ASAN else ''}.so")
    if not os.path.exists(lib):
        units = [family_unit(f, out_dir) for f in families]
        for (u, n), fam in zip(units, families): print(f"emugpu: {fam}: {n} kernels", file=sys.stderr)
        sources = [u for u, _ in units] + [os.path.join(here, "emugpu.cpp")]
        def compile_one(src):
            obj = os.path.join(out_dir, os.path.basename(src)[:-4] + ".o")
            subprocess.run(CXX + ["-c", src, "-o", obj], check=True)
            return obj
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            objs = list(pool.map(compile_one, sources))
        tmp = lib + ".tmp"
        subprocess.run(CXX + ["-shared", "-o", tmp] + objs, check=True)
        os.replace(tmp, lib)
    print(lib)


if __name__ == "__main__":
    main()
