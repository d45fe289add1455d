#!/usr/bin/env bash
# GPU session E (sixth session), run on the GPU box from the repo root, in two calls that follow each other
# while the machine stays warm. It checks everything CUDA-side written since the first GPU sessions, and runs
# issue 4's scale check and one default `--method auto` end to end.
#
#   STEP=a  carry .gpu/app.tar.xz .gpu/dotnet.tar.xz .gpu/env.sh .gpu/extra/opt-12L.tar.xz .gpu/extra/wiki.tar.xz
#           (bash bench/gpu/pack_a.sh, then bash bench/gpu/pack_b.sh, which leaves wiki.tar.xz with the cloze items)
#     1. the CUDA test suite (op parity incl. the KV-cache decode kernels and fp32-output attention, whole-model
#        goldens, host-offloaded AdamW, distillation); a random Llama-2-7B-shaped checkpoint is written meanwhile;
#     2. eldr trace against transformers' goldens of checkpoints the tests have not seen;
#     3. eldr ppl on the GPU (fp32 and bf16) vs reference.json; greedy decoding with the KV cache vs
#        reference.json's greedy ids and vs the prefix-recomputing path;
#     4. the 7B-shaped ELDeR + stage 2 run is started in its own session (it outlives this call);
#     5. nvcc ahead-of-time kernel images, and the op parity tests on them.
#   STEP=b  carry .gpu/eldr.tar.xz .gpu/extra/llama-24L.tar.xz .gpu/extra/corpus.tar.xz .gpu/extra/wiki.tar.xz
#     6. waits for the 7B run and collects its report (stage 2's time per step is the figure to watch), then times
#        prefill and generation of the pruned 7B against the dense one;
#     7. one default `eldr prune --method auto` on llama-24L (PRUNING.md's protocol), its perplexities, the export
#        reloaded by transformers, generation speed (ours vs transformers, same GPU), the KV-cache check, zero-shot.
#
# Seventh session (no GPU) added, for the next GPU run: the device-side argmax for decoding (CudaOpParityTests.ArgMax,
# and `eldr speed --generate` now uses it), chunked pinned transfers (CudaRuntimeTests.LargeTransfers...), and the
# per-epoch timing line of stage 2 (gradients down / AdamW / weights up), which step 6 prints; the pipelined attention
# forward (ELDR_ATTENTION=tc2: parity in the suite, timings in STEP=k below).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

if [ "${STEP:-a}" = a ]; then
  source .gpu/env.sh
  rm -rf .gpu/app && tar xJf .gpu/app.tar.xz -C .gpu          # the tests find fixtures from .gpu/app upward
  mkdir -p /tmp/g && rm -rf /tmp/g/app && cp -r .gpu/app /tmp/g/ && cp data/calib-train-sample.txt /tmp/g/
  for f in .gpu/extra/*.tar.xz; do tar xJf "$f" -C /tmp; done
  E="dotnet .gpu/app/eldr.dll"
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    /usr/local/cuda/bin/nvcc --version | tail -2
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"; } > "$OUT/device.txt" 2>&1
  cat "$OUT/device.txt"
  setsid nohup python3 bench/gpu/make_7b.py /tmp/llama7b > /tmp/make7b.log 2>&1 < /dev/null &

  el "== 1. CUDA test suite"
  ELDR_PARITY_LOG="$OUT/parity.tsv" timeout 360 dotnet .gpu/app/ElderCuda.Tests.dll -namespace ElderCuda.Tests.Cuda > "$OUT/gpu-tests.log" 2>&1
  echo "rc=$?" >> "$OUT/gpu-tests.log"
  grep -E "\[FAIL\]|Total:|rc=" "$OUT/gpu-tests.log" | head -30

  el "== 2. eldr trace vs transformers goldens of unseen checkpoints"
  python3 bench/gpu/extra_goldens.py /tmp/extra > /dev/null 2>&1 || echo "extra_goldens.py failed"
  for m in /tmp/extra/*/; do
    n=$(basename "$m"); g="$m/golden.safetensors"
    $E trace "$m" --tokens "$g" --out /tmp/t-f32.st --device cuda --fp32 > /dev/null 2>&1 && python3 bench/gpu/compare_trace.py "$g" /tmp/t-f32.st --label "$n cuda fp32" --tol 1e-4 --grad-tol 1e-4
    $E trace "$m" --tokens "$g" --out /tmp/t-bf16.st --device cuda > /dev/null 2>&1 && python3 bench/gpu/compare_trace.py "$g" /tmp/t-bf16.st --label "$n cuda bf16" --tol 1e-2 --grad-tol 3e-2
  done 2>&1 | tee "$OUT/trace-unseen.txt"

  el "== 3. perplexity and greedy decoding on the GPU"
  for m in models/llama-12L /tmp/opt-12L; do
    n=$(basename $m)
    for d in data/corpus-heldout.txt /tmp/wiki.test.raw; do
      for mode in --fp32 ""; do
        echo "$n $(basename $d) ${mode:---bf16} $($E ppl $m --data $d --device cuda $mode --json 2>/dev/null)"
      done
    done
    python3 - "$m/reference.json" <<'PY' > /tmp/ref.txt
import json, sys; r = json.load(open(sys.argv[1])); print(r["greedy_prompt"]); print(r["greedy_ids"] if isinstance(r["greedy_ids"], str) else json.dumps(r["greedy_ids"]))
PY
    p=$(sed -n 1p /tmp/ref.txt); ref=$(sed -n 2p /tmp/ref.txt | tr -d ' ')
    for mode in --fp32 ""; do
      a=$($E generate $m --prompt "$p" --max-new-tokens 64 --ids --device cuda $mode 2>/dev/null | grep '^ids:' | sed 's/^ids: //' | tr -d ' ')
      b=$($E generate $m --prompt "$p" --max-new-tokens 64 --ids --device cuda $mode --no-kv-cache 2>/dev/null | grep '^ids:' | sed 's/^ids: //' | tr -d ' ')
      # reference.json's greedy_ids are the prompt and the first new tokens: ours must start with them
      echo "$n greedy ${mode:---bf16}: KV cache vs reference.json $([ -n "$a" ] && [[ "$a" == "${ref%]},"* ]] && echo SAME || echo DIFFERENT); KV cache vs recompute $([ -n "$a" ] && [ "$a" = "$b" ] && echo SAME || echo DIFFERENT)"
      [[ "$a" == "${ref%]},"* ]] || echo "  ours $a"$'\n'"  ref  $ref"
    done
  done 2>&1 | tee "$OUT/ppl-greedy.txt"

  el "== 4. starting the 7B-shaped ELDeR run in the background"
  for i in $(seq 1 60); do [ -f /tmp/llama7b/config.json ] && ! pgrep -f make_7b.py > /dev/null && break; sleep 5; done
  cat /tmp/make7b.log | tail -2
  cat > /tmp/run7b.sh <<'SH'
source /work/.gpu/env.sh 2>/dev/null
nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader -lms 500 > /tmp/7b-smi.csv &
SMI=$!
dotnet /tmp/g/app/eldr.dll info /tmp/llama7b --seqlen 512 --batch 4 > /tmp/7b-info.txt 2>&1
/usr/bin/time -v dotnet /tmp/g/app/eldr.dll prune /tmp/llama7b --method elder --layers 8 --calib /tmp/g/calib-train-sample.txt \
  --seqlen 512 --samples 16 --heldback 4 --batch 4 --gate-batch 4 --epochs 1 --device cuda --no-plots --out /tmp/p7b --force > /tmp/7b-prune.log 2>&1
echo "prune rc=$?" >> /tmp/7b-prune.log
kill $SMI; touch /tmp/7b.done
SH
  sed -i "s#/work/.gpu/env.sh#$(pwd)/.gpu/env.sh#" /tmp/run7b.sh
  rm -f /tmp/7b.done; setsid nohup bash /tmp/run7b.sh > /tmp/run7b.out 2>&1 < /dev/null &

  el "== 5. ahead-of-time kernels with nvcc, op parity on those images"
  mkdir -p /tmp/native
  for f in kernels/*.cu; do n=$(basename "$f" .cu)
    /usr/local/cuda/bin/nvcc -cubin -arch=sm_90 -std=c++17 -O3 -DELDR_NVRTC=0 -I kernels -o /tmp/native/$n.sm_90.cubin "$f" >> "$OUT/native-build.log" 2>&1
    echo "$(cat "$f" kernels/*.cuh | sha256sum | cut -d' ' -f1)  $n.cu" > /tmp/native/$n.sm_90.cubin.sha256
  done
  echo "images: $(ls /tmp/native/*.cubin 2>/dev/null | wc -l) of $(ls kernels/*.cu | wc -l)"
  ELDR_NATIVE_DIR=/tmp/native ELDR_KERNEL_LOG=1 timeout 150 dotnet .gpu/app/ElderCuda.Tests.dll -class ElderCuda.Tests.Cuda.CudaOpParityTests > "$OUT/native-tests.log" 2>&1
  grep -E "^kernels " "$OUT/native-tests.log" | sort | uniq -c | head -5; grep -E "\[FAIL\]|Total:" "$OUT/native-tests.log" | head
  el "== 7B so far"; tail -5 /tmp/7b-prune.log 2>/dev/null
  el "== summary"
  grep -E "Total:|rc=" "$OUT/gpu-tests.log"; grep -c "\[FAIL\]" "$OUT/gpu-tests.log"
fi

auto_eval() {   # the default auto run's export: perplexities, transformers reload, speed vs transformers
  E=/tmp/eldr-trim/eldr; M=/tmp/llama-24L; o=/tmp/q/llama-24L-auto
  cp /tmp/q/auto.log "$OUT/auto-24L.log"; cp $o/report.json "$OUT/auto-24L-report.json" 2>/dev/null
  grep -E "auto rc=|Elapsed|Maximum resident" /tmp/q/auto.log
  [ -f $o/report.json ] || { echo "no auto report"; return; }
  for d in data/corpus-heldout.txt /tmp/wiki.test.raw; do echo "auto $(basename $d) $($E ppl $o --data $d --device cuda --fp32 --json 2>/dev/null)"; done
  python3 -c "import json; r=json.load(open('$o/report.json')); print('removed', sorted(r['removal_order']), 'recipe', r['recipe'], 'held-back CE', r.get('held_back_ce_pruned'), 'timings', r.get('timings_seconds'))"
  python3 bench/gpu/hf_ppl.py $o --data data/corpus-heldout.txt --seqlen 512 2>/dev/null | sed 's/^/transformers reload: /'
  $E speed $o --baseline $M --device cuda --runs 50 --warmup 5 --generate --json 2>/dev/null | tee -a "$OUT/speed.jsonl"
  for d in $M $o; do python3 bench/gpu/hf_generate_speed.py $d 2>/dev/null; done | tee -a "$OUT/speed.jsonl"
}

if [ "${STEP:-a}" = b ]; then
  for f in .gpu/extra/llama-24L.tar.xz .gpu/extra/corpus.tar.xz .gpu/extra/wiki.tar.xz; do tar xJf "$f" -C /tmp; done
  rm -rf /tmp/eldr-trim && tar xJf .gpu/eldr.tar.xz -C /tmp
  cp data/corpus-heldout.txt /tmp/corpus-heldout.txt
  el "== 7. default auto on llama-24L, started in its own session (the 7B run may still be on: see its timings)"
  mkdir -p /tmp/q; rm -f /tmp/auto.done
  cat > /tmp/runauto.sh <<'SH'
/usr/bin/time -v /tmp/eldr-trim/eldr prune /tmp/llama-24L --ratio 0.25 --calib /tmp/corpus --train-fraction 0.95 --seqlen 512 \
  --samples 128 --heldback 64 --seed 0 --device cuda --no-plots --no-dense-eval --eval /tmp/corpus-heldout.txt --eval-seqlen 512 \
  --method auto --out /tmp/q/llama-24L-auto --force > /tmp/q/auto.log 2>&1
echo "auto rc=$?" >> /tmp/q/auto.log; touch /tmp/auto.done
SH
  setsid nohup bash /tmp/runauto.sh > /dev/null 2>&1 < /dev/null &
  el "== 6. the 7B-shaped run"
  for i in $(seq 1 72); do [ -f /tmp/7b.done ] && break; sleep 5; done
  { tail -1 /tmp/make7b.log; cat /tmp/7b-info.txt; grep -E "elder_stage|timing|Maximum resident|Elapsed|removed|rror|rc=" /tmp/7b-prune.log
    python3 - <<'PY'
import json, csv
try:
    r = json.load(open("/tmp/p7b/report.json"))
    print("timings_seconds", json.dumps(r.get("timings_seconds")))
    print("peak_memory_GiB", {k: round(v / 2**30, 2) for k, v in r.get("peak_memory_bytes", {}).items()})
    print("removal_order", r.get("removal_order"))
except Exception as e:
    print("no report:", e)
used = [int(row[1].split()[0]) for row in csv.reader(open("/tmp/7b-smi.csv")) if len(row) > 1 and row[1].split()[0].isdigit()]
print("nvidia-smi peak memory.used", max(used) if used else "?", "MiB")
PY
  } 2>&1 | tee "$OUT/7b.txt"
  cp /tmp/p7b/report.json "$OUT/7b-report.json" 2>/dev/null; cp /tmp/7b-prune.log "$OUT/7b-prune.log" 2>/dev/null
  el "== waiting for auto"
  while [ ! -f /tmp/auto.done ] && [ $(( $(date +%s) - t0 )) -lt 450 ]; do sleep 5; done
  if [ -f /tmp/auto.done ]; then auto_eval; else echo "auto still running: STEP=c collects it"; tail -3 /tmp/q/auto.log; fi
  if [ -f /tmp/auto.done ] && [ -f /tmp/p7b/config.json ] && [ $(( $(date +%s) - t0 )) -lt 420 ]; then
    el "== 7B shapes: prefill and generation, pruned vs dense"
    timeout 150 /tmp/eldr-trim/eldr speed /tmp/p7b --baseline /tmp/llama7b --device cuda --seqlen 2048 --runs 10 --warmup 2 --generate --gen-runs 3 --json 2>/dev/null | tee "$OUT/speed7b.json"
  fi
  el "== done"
fi

if [ "${STEP:-a}" = c ]; then
  while [ ! -f /tmp/auto.done ] && [ $(( $(date +%s) - t0 )) -lt 480 ]; do sleep 5; done
  auto_eval; el "== done"
fi

# STEP=k (seventh session): kernel timings, ours and torch's in the same call, with the pipelined attention forward
# (tc2) beside the default; OPT-12L with and without the cuBLASLt bias epilogue (eleventh session); then, if STEP=a
# left the 7B checkpoint, its prefill with and without tc2.
#   carry .gpu/app.tar.xz .gpu/dotnet.tar.xz .gpu/env.sh (as STEP=a)
if [ "${STEP:-a}" = k ]; then
  source .gpu/env.sh
  [ -f .gpu/app/ElderCuda.Tests.dll ] || tar xJf .gpu/app.tar.xz -C .gpu
  el "== kernel timings: ours (CudaKernelBenchTests) and torch (torch_ref.py)"
  ELDR_BENCH=1 ELDR_BENCH_OUT="$OUT/bench.tsv" timeout 240 dotnet .gpu/app/ElderCuda.Tests.dll -class ElderCuda.Tests.Cuda.CudaKernelBenchTests > "$OUT/bench.log" 2>&1
  grep -E "\[FAIL\]|Total:" "$OUT/bench.log"
  timeout 120 python3 bench/gpu/torch_ref.py > "$OUT/torch.tsv" 2>&1
  column -t -s $'\t' "$OUT/bench.tsv"; column -t -s $'\t' "$OUT/torch.tsv"
  el "== the whole model with the pipelined attention: golden parity (bf16 and fp32) and bf16 perplexity"
  ELDR_ATTENTION=tc2 timeout 150 dotnet .gpu/app/ElderCuda.Tests.dll -class ElderCuda.Tests.Cuda.CudaGoldenParityTests > "$OUT/tc2-golden.log" 2>&1
  grep -E "\[FAIL\]|Total:" "$OUT/tc2-golden.log"
  for a in tc tc2; do echo "llama-12L held-out bf16, attention $a: $(ELDR_ATTENTION=$a dotnet .gpu/app/eldr.dll ppl models/llama-12L --data data/corpus-heldout.txt --device cuda --json 2>/dev/null)"; done
  # eleventh session: a linear layer's bias in cuBLASLt's epilogue (ELDR_GEMM=lt) against cublasGemmEx + the bias
  # kernel, on OPT (every linear layer has a bias; STEP=a unpacked it): parity is in the suite (CublasGemmTests)
  if [ -f /tmp/opt-12L/config.json ]; then
    for g in gemmex lt; do
      el "== opt-12L prefill 4 x 512 and held-out perplexity, ELDR_GEMM=$g"
      ELDR_GEMM=$g timeout 120 dotnet .gpu/app/eldr.dll speed /tmp/opt-12L --device cuda --seqlen 512 --batch 4 --runs 20 --warmup 3 --json 2>/dev/null | tee -a "$OUT/gemm-lt.jsonl"
      echo "opt-12L held-out bf16, ELDR_GEMM=$g: $(ELDR_GEMM=$g dotnet .gpu/app/eldr.dll ppl /tmp/opt-12L --data data/corpus-heldout.txt --device cuda --json 2>/dev/null)"
    done
  fi
  if [ -f /tmp/llama7b/config.json ] && [ -f /tmp/g/app/eldr.dll ]; then
    for a in tc tc2; do
      el "== 7B prefill 1 x 2048, attention $a"
      ELDR_ATTENTION=$a timeout 120 dotnet /tmp/g/app/eldr.dll speed /tmp/llama7b --device cuda --seqlen 2048 --runs 10 --warmup 2 --json 2>/dev/null | tee -a "$OUT/prefill7b-tc2.jsonl"
    done
  fi
  el "== done"
fi
