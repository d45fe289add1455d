#!/usr/bin/env bash
# GPU session C: `--method auto` under several stage-2 settings (batch size, epochs, lr grid, which
# parameters train), on PRUNING.md's protocol. The setting to keep is the one with the lowest
# HELD-BACK CE (never the evaluation text); held-out and WikiText-2 perplexity are reported beside it.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
t0=$(date +%s)
for f in .gpu/extra/*.tar.xz; do tar xJf "$f" -C /tmp; done
tar xJf .gpu/eldr.tar.xz -C /tmp
E=/tmp/eldr-trim/eldr
common="--method auto --ratio 0.25 --calib /tmp/corpus --train-fraction 0.95 --seqlen 512 --samples 128 --heldback 64 --seed 0 --device cuda --no-dense-eval --no-plots --auto-recipes none,finetune"
summary="$OUT/auto-variants.tsv"; printf "model\tvariant\tremoved\trecipe\theldback_ce\theldout_ppl\twikitext_ppl\tseconds\n" > "$summary"
for model in llama-24L llama-12L; do
  M=/tmp/$model; [ -d "$M" ] || M=models/$model
  while read -r name args; do
    [ -z "$name" ] && continue
    if [ $(( $(date +%s) - t0 )) -gt 420 ]; then echo "time guard: skipping $model $name"; continue; fi
    s=$(date +%s); o=/tmp/c/$model-$name
    $E prune $M $common --out $o --force $args > "/tmp/c-$model-$name.log" 2>&1 || { echo "$model $name FAILED"; tail -3 "/tmp/c-$model-$name.log"; continue; }
    h=$($E ppl $o --data data/corpus-heldout.txt --device cuda --fp32 --json 2>/dev/null | python3 -c "import sys,json; print(json.load(sys.stdin)['ppl'])")
    w=$($E ppl $o --data /tmp/wiki.test.raw --device cuda --fp32 --json 2>/dev/null | python3 -c "import sys,json; print(json.load(sys.stdin)['ppl'])")
    read rm rc ce < <(python3 -c "import json; r=json.load(open('$o/report.json')); print(','.join(map(str,sorted(r['removal_order']))), r['recipe'].replace(' ','_')[:70], r.get('held_back_ce_pruned'))")
    printf "$model\t$name\t$rm\t$rc\t$ce\t$h\t$w\t$(( $(date +%s) - s ))\n" | tee -a "$summary"
    cp $o/report.json /tmp/c-$model-$name.report.json
  done <<'RUNS'
b8e4 --batch 8 --auto-epochs 4 --auto-ft-lrs 5e-5,1e-4,2e-4
b4e6 --batch 4 --auto-epochs 6 --auto-ft-lrs 5e-5,1e-4,2e-4
b2e6 --batch 2 --auto-epochs 6 --auto-ft-lrs 2e-5,5e-5,1e-4
b4e8-noembed --batch 4 --auto-epochs 8 --auto-ft-lrs 5e-5,1e-4,2e-4 --train-params no-embed
b1e4 --batch 1 --auto-epochs 4 --auto-ft-lrs 1e-5,3e-5,5e-5
RUNS
done
tar czf "$OUT/auto-variant-reports.tgz" -C /tmp $(cd /tmp && ls c-*.report.json c-*.log 2>/dev/null)
cat "$summary"
