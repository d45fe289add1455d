#!/usr/bin/env bash
# GPU session D, run on the GPU box from the repo root: everything written since the last GPU session.
#   1. the CUDA test suite: new fp32-output attention parity cases, the BF16 per-tensor check against the
#      CPU on the same bf16 weights, host-offloaded AdamW and distillation on the GPU;
#   2. issue 4's scale check: ELDeR with stage 2 on a random Llama-2-7B-shaped model on one GPU, with the
#      time and peak memory per stage (report.json) and nvidia-smi's view.
# Pack first, here: bash bench/gpu/pack_a.sh   (carry .gpu/app.tar.xz, .gpu/dotnet.tar.xz, .gpu/env.sh)
# Then: STEP=tests bash bench/gpu/run_d.sh   and   STEP=7b bash bench/gpu/run_d.sh   (two calls, 10 min each);
# STEP=native builds the ahead-of-time images with nvcc (CMakeLists.txt) and runs the op parity tests on them.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source .gpu/env.sh
E="dotnet .gpu/app/eldr.dll"
[ -d .gpu/app ] || tar xJf .gpu/app.tar.xz -C .gpu
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"

if [ "${STEP:-tests}" = tests ]; then
  echo "== 1. CUDA test suite"
  ELDR_PARITY_LOG="$OUT/parity.tsv" dotnet .gpu/app/ElderCuda.Tests.dll -namespace ElderCuda.Tests.Cuda > "$OUT/gpu-tests.log" 2>&1; echo "rc=$?" >> "$OUT/gpu-tests.log"
  dotnet .gpu/app/ElderCuda.Tests.dll -class ElderCuda.Tests.Model.Bf16PrecisionPolicyTests > "$OUT/bf16-emulation.log" 2>&1
  grep -E "FAIL|Total:|rc=" "$OUT/gpu-tests.log" | head -30
  sort -u "$OUT/parity.tsv" | grep -E "f32out|offload|distill|model .* grads" | head -40
fi

if [ "${STEP:-tests}" = native ]; then
  echo "== 3. ahead-of-time kernels: CMakeLists.txt with the real nvcc, then the op parity tests on those images"
  if command -v cmake >/dev/null; then
    cmake -S . -B /tmp/kb -DELDR_NATIVE_DIR=/tmp/native -DELDR_CUDA_ARCHS=90 > "$OUT/native-build.log" 2>&1 && cmake --build /tmp/kb -j 16 >> "$OUT/native-build.log" 2>&1
  else   # no cmake on the box: the same nvcc line and sidecar by hand
    mkdir -p /tmp/native
    for f in kernels/*.cu; do n=$(basename "$f" .cu)
      /usr/local/cuda/bin/nvcc -cubin -arch=sm_90 -std=c++17 -O3 -DELDR_NVRTC=0 -I kernels -o /tmp/native/$n.sm_90.cubin "$f" >> "$OUT/native-build.log" 2>&1
      echo "$(cat "$f" kernels/*.cuh | sha256sum | cut -d' ' -f1)  $n.cu" > /tmp/native/$n.sm_90.cubin.sha256
    done
  fi
  echo "build rc=$? ; images: $(ls /tmp/native/*.cubin 2>/dev/null | wc -l)"; tail -3 "$OUT/native-build.log"
  ELDR_NATIVE_DIR=/tmp/native ELDR_KERNEL_LOG=1 dotnet .gpu/app/ElderCuda.Tests.dll -class ElderCuda.Tests.Cuda.CudaOpParityTests > "$OUT/native-tests.log" 2>&1
  grep -E "^kernels " "$OUT/native-tests.log" | sort -u; grep -E "FAIL|Total:" "$OUT/native-tests.log" | head
fi

if [ "${STEP:-tests}" = 7b ]; then
  echo "== 2. ELDeR + stage 2 on a Llama-2-7B-shaped model"
  python3 bench/gpu/make_7b.py /tmp/llama7b 2>&1 | tail -1 | tee "$OUT/7b.txt"
  $E info /tmp/llama7b --seqlen 512 --batch 4 2>&1 | tee -a "$OUT/7b.txt"
  nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader -lms 500 > "$OUT/7b-smi.csv" &
  SMI=$!
  /usr/bin/time -v $E prune /tmp/llama7b --method elder --layers 8 --calib data/calib-train-sample.txt --seqlen 512 \
    --samples 16 --heldback 4 --batch 4 --gate-batch 4 --epochs 1 --device cuda --no-plots --out /tmp/p7b --force \
    > "$OUT/7b-prune.log" 2>&1; echo "prune rc=$?" | tee -a "$OUT/7b.txt"
  kill $SMI
  grep -E "elder_stage|Maximum resident|Elapsed|removed|error" "$OUT/7b-prune.log" | tee -a "$OUT/7b.txt"
  python3 - "$OUT" <<'PY' | tee -a "$OUT/7b.txt"
import json, sys, csv
r = json.load(open("/tmp/p7b/report.json"))
print("timings_seconds", json.dumps(r.get("timings_seconds"), indent=None))
print("peak_memory_bytes (GiB)", {k: round(v / 2**30, 2) for k, v in r.get("peak_memory_bytes", {}).items()})
used = [int(row[1].split()[0]) for row in csv.reader(open(sys.argv[1] + "/7b-smi.csv")) if len(row) > 1]
print("nvidia-smi peak memory.used", max(used) if used else "?", "MiB")
PY
  cp /tmp/p7b/report.json "$OUT/7b-report.json" 2>/dev/null
fi
