#!/usr/bin/env bash
# GPU session A, run on the GPU box from the repo root (bench/RESULTS.md records what it printed):
#   the CUDA test suite, eldr trace on checkpoints the tests have not seen (goldens made here by
#   transformers in float64), eldr ppl on the GPU vs reference.json and vs transformers on the same
#   device, and an exported pruned checkpoint reloaded by transformers.
# Expects: .gpu/env.sh + .gpu/app (framework-dependent build with tests and eldr), .gpu/extra/*.xz
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source .gpu/env.sh
E="dotnet .gpu/app/eldr.dll"
export PYTHONUNBUFFERED=1
for f in .gpu/extra/*.tar.xz; do tar xJf "$f" -C /tmp; done
[ -d .gpu/app ] || tar xJf .gpu/app.tar.xz -C .gpu
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)" | tee -a "$OUT/device.txt"

echo "== 1. CUDA test suite"
dotnet .gpu/app/ElderCuda.Tests.dll -namespace ElderCuda.Tests.Cuda > "$OUT/gpu-tests.log" 2>&1; echo "rc=$?" >> "$OUT/gpu-tests.log"
grep -E "FAIL|Total:|rc=" "$OUT/gpu-tests.log" | head -20

echo "== 2. eldr trace vs transformers goldens of unseen checkpoints"
python3 bench/gpu/extra_goldens.py /tmp/extra > /dev/null
for m in /tmp/extra/*/; do
  n=$(basename "$m"); g="$m/golden.safetensors"
  $E trace "$m" --tokens "$g" --out /tmp/t-cpu.st --device cpu > /dev/null && python3 bench/gpu/compare_trace.py "$g" /tmp/t-cpu.st --label "$n cpu" --tol 1e-5 --grad-tol 1e-4
  $E trace "$m" --tokens "$g" --out /tmp/t-f32.st --device cuda --fp32 > /dev/null && python3 bench/gpu/compare_trace.py "$g" /tmp/t-f32.st --label "$n cuda fp32" --tol 1e-4 --grad-tol 1e-4
  $E trace "$m" --tokens "$g" --out /tmp/t-bf16.st --device cuda > /dev/null && python3 bench/gpu/compare_trace.py "$g" /tmp/t-bf16.st --label "$n cuda bf16" --tol 1e-2 --grad-tol 3e-2
done 2>&1 | tee "$OUT/trace-unseen.txt"
tar czf "$OUT/extra-goldens.tgz" -C /tmp extra

echo "== 3. perplexity on the GPU (ours) and with transformers on the same GPU"
for m in models/llama-12L /tmp/opt-12L /tmp/phi-12L; do
  [ -d "$m" ] || continue
  for d in data/corpus-heldout.txt /tmp/wiki.test.raw; do
    [ -f "$d" ] || continue
    for mode in "" "--fp32"; do
      echo "$(basename $m) $(basename $d) ${mode:---bf16} $($E ppl $m --data $d --device cuda $mode --json 2>/dev/null)"
    done
    echo "$(basename $m) $(basename $d) transformers-fp32 $(python3 bench/gpu/hf_ppl.py $m --data $d --seqlen 512 --batch 8 2>/dev/null)"
    echo "$(basename $m) $(basename $d) transformers-bf16 $(python3 bench/gpu/hf_ppl.py $m --data $d --seqlen 512 --batch 8 --dtype bfloat16 2>/dev/null)"
  done
done 2>&1 | tee "$OUT/ppl-gpu.txt"

echo "== 4. prune on the GPU, export, reload in transformers"
$E prune models/llama-12L --method shortgpt --calib data/calib-train-sample.txt --seqlen 512 --samples 32 --heldback 8 --out /tmp/p-sg --device cuda > "$OUT/prune-sg.log" 2>&1; echo "prune rc=$?"
$E ppl /tmp/p-sg --data data/corpus-heldout.txt --device cuda --fp32 --json 2>/dev/null | tee "$OUT/export-check.txt"
python3 bench/gpu/hf_ppl.py /tmp/p-sg --data data/corpus-heldout.txt --seqlen 512 2>&1 | tail -1 | tee -a "$OUT/export-check.txt"
python3 -c "import json; print(json.load(open('/tmp/p-sg/config.json'))['num_hidden_layers'], 'layers in the exported config')" | tee -a "$OUT/export-check.txt"
