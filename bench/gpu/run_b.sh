#!/usr/bin/env bash
# GPU session B (run on the GPU box from the repo root): eldr trace on unseen checkpoints (goldens made
# here by transformers), then the pruning quality table of PRUNING.md's protocol (calibration: 128
# windows of 512 from the training split = first 95% of each corpus file; evaluation: the held-out
# split and WikiText-2 test, windows of 512, on the exported bf16 checkpoints in fp32 math).
# Expects .gpu/eldr.tar.xz (trimmed self-contained eldr), .gpu/extra/{llama-24L,corpus,wiki}.tar.xz: bash bench/gpu/pack_b.sh
# The auto rows use auto's current default grid (distill included); one of them may take minutes on the H100.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
t0=$(date +%s)
for f in .gpu/extra/*.tar.xz; do tar xJf "$f" -C /tmp; done
tar xJf .gpu/eldr.tar.xz -C /tmp
E=/tmp/eldr-trim/eldr
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader

echo "== 1. eldr trace vs transformers goldens of unseen checkpoints"
python3 bench/gpu/extra_goldens.py /tmp/extra > /dev/null 2>&1 || echo "extra_goldens.py failed"
for m in /tmp/extra/*/; do
  n=$(basename "$m"); g="$m/golden.safetensors"
  $E trace "$m" --tokens "$g" --out /tmp/t-cpu.st --device cpu > /dev/null 2>&1 && python3 bench/gpu/compare_trace.py "$g" /tmp/t-cpu.st --label "$n cpu" --tol 1e-5 --grad-tol 1e-4
  $E trace "$m" --tokens "$g" --out /tmp/t-f32.st --device cuda --fp32 > /dev/null 2>&1 && python3 bench/gpu/compare_trace.py "$g" /tmp/t-f32.st --label "$n cuda fp32" --tol 1e-4 --grad-tol 1e-4
  $E trace "$m" --tokens "$g" --out /tmp/t-bf16.st --device cuda > /dev/null 2>&1 && python3 bench/gpu/compare_trace.py "$g" /tmp/t-bf16.st --label "$n cuda bf16" --tol 1e-2 --grad-tol 3e-2
done 2>&1 | tee "$OUT/trace-unseen.txt"

echo "== 2. pruning quality"
mkdir -p /tmp/q
common="--ratio 0.25 --calib /tmp/corpus --train-fraction 0.95 --seqlen 512 --samples 128 --heldback 64 --seed 0 --device cuda --no-plots --no-dense-eval --eval data/corpus-heldout.txt --eval-seqlen 512"
summary="$OUT/quality.tsv"; printf "model\tmethod\tremoved\trecipe\theldback_ce\theldout_ppl\twikitext_ppl\tseconds\n" > "$summary"
for model in llama-24L llama-12L; do
  M=/tmp/$model; [ -d "$M" ] || M=models/$model
  h=$($E ppl $M --data data/corpus-heldout.txt --device cuda --fp32 --json 2>/dev/null | python3 -c "import sys,json; print(json.load(sys.stdin)['ppl'])")
  w=$($E ppl $M --data /tmp/wiki.test.raw --device cuda --fp32 --json 2>/dev/null | python3 -c "import sys,json; print(json.load(sys.stdin)['ppl'])")
  printf "$model\tdense\t-\t-\t-\t$h\t$w\t-\n" >> "$summary"
  while read -r name args; do
    [ -z "$name" ] && continue
    if [ $(( $(date +%s) - t0 )) -gt 500 ]; then echo "time guard: skipping $model $name"; continue; fi
    s=$(date +%s); o=/tmp/q/$model-$name
    $E prune $M $common --out $o --force $args > "/tmp/q/$model-$name.log" 2>&1 || { echo "$model $name FAILED"; tail -3 "/tmp/q/$model-$name.log"; continue; }
    h=$($E ppl $o --data data/corpus-heldout.txt --device cuda --fp32 --json 2>/dev/null | python3 -c "import sys,json; print(json.load(sys.stdin)['ppl'])")
    w=$($E ppl $o --data /tmp/wiki.test.raw --device cuda --fp32 --json 2>/dev/null | python3 -c "import sys,json; print(json.load(sys.stdin)['ppl'])")
    read rm rc ce < <(python3 -c "import json; r=json.load(open('$o/report.json')); print(','.join(map(str,sorted(r['removal_order']))), r['recipe'].replace(' ','_')[:60], r.get('held_back_ce_pruned'))")
    printf "$model\t$name\t$rm\t$rc\t$ce\t$h\t$w\t$(( $(date +%s) - s ))\n" | tee -a "$summary"
    cp $o/report.json /tmp/q/$model-$name.report.json
  done <<'RUNS'
auto --method auto
elder --method elder
sleb --method sleb
shortgpt --method shortgpt
angular --method angular
elder-none --method elder --stage2 none
elder-branch-ft --method elder --gate-form branch --lambda1 2e-2 --stage2 finetune
laco --method laco
slm --method slm
RUNS
done
echo "== 3. speed (prefill, SLEB's protocol at the models' window; generation, batch 64, prompt 64, 128 new, KV cache), zero-shot, dense vs auto"
for model in llama-24L llama-12L; do
  M=/tmp/$model; [ -d "$M" ] || M=models/$model; o=/tmp/q/$model-auto
  [ -d "$o" ] || { echo "no $o: skipped"; continue; }
  $E speed $o --baseline $M --device cuda --runs 50 --warmup 5 --generate --json 2>/dev/null | tee -a "$OUT/speed.jsonl"
  for d in $M $o; do python3 bench/gpu/hf_generate_speed.py $d 2>/dev/null; done | tee -a "$OUT/hf-generate-speed.jsonl"
  # the cached decoding kernels against the prefix-recomputing path, same greedy ids expected
  a=$($E generate $M --prompt "The history of the city" --max-new-tokens 64 --ids --device cuda --fp32 2>/dev/null | grep '^ids:')
  b=$($E generate $M --prompt "The history of the city" --max-new-tokens 64 --ids --device cuda --fp32 --no-kv-cache 2>/dev/null | grep '^ids:')
  echo "$model greedy ids, KV cache vs recompute (fp32): $([ -n "$a" ] && [ "$a" = "$b" ] && echo same || echo DIFFERENT)" | tee -a "$OUT/kv-cache-check.txt"
  [ -f /tmp/corpus-cloze.jsonl ] || continue
  for d in $M $o; do
    echo "$model $(basename $d) $($E zeroshot $d --data /tmp/corpus-cloze.jsonl --device cuda --json 2>/dev/null)"
  done | tee -a "$OUT/zeroshot.txt"
done
python3 bench/gpu/hf_ppl.py /tmp/q/llama-24L-auto --data data/corpus-heldout.txt --seqlen 512 2>/dev/null | tee "$OUT/transformers-reload.txt"
tar czf "$OUT/quality-reports.tgz" -C /tmp/q $(cd /tmp/q && ls *.report.json *.log 2>/dev/null)
column -t -s $'\t' "$summary"
