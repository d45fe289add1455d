#!/usr/bin/env bash
# Packs .gpu/ for run_b.sh and run_c.sh (run here, from the repo root): a trimmed self-contained eldr, so that
# no .NET runtime has to travel, plus llama-24L, the corpus, WikiText-2 test and the zero-shot items, compressed. Carry:
#   .gpu/eldr.tar.xz .gpu/extra/llama-24L.tar.xz .gpu/extra/corpus.tar.xz .gpu/extra/wiki.tar.xz
# Tracked files plus these must stay under 64 MiB, so the plotting natives (SkiaSharp) stay behind: pass
# --no-plots on the GPU box. Trimming keeps reflection-based JSON (report.json, --json) switched on; the linked
# output in obj/ is cached, so a changed switch needs the linux-x64 obj folders removed, as done here.
set -euo pipefail
S=${SHARED:-../shared}
T=/tmp/eldr-trim
rm -rf "$T" src/Eldr.Cli/obj/Release/net10.0/linux-x64 src/ElderCuda/obj/Release/net10.0/linux-x64
dotnet publish src/Eldr.Cli -c Release -r linux-x64 --self-contained -p:PublishTrimmed=true -p:TrimMode=partial \
  -p:JsonSerializerIsReflectionEnabledByDefault=true -o "$T" > /tmp/pack_b.log 2>&1 || { tail -20 /tmp/pack_b.log; exit 1; }
rm -f "$T"/libSkiaSharp.so "$T"/libHarfBuzzSharp.so "$T"/*.pdb "$T"/createdump
# the trimmed binary must still write JSON (a trimmed build without the switch fails here, not on the GPU box)
"$T/eldr" ppl models/llama-12L --data data/corpus-heldout.txt --seqlen 128 --max-windows 1 --device cpu --json > /dev/null
mkdir -p .gpu/extra /tmp/pack && rm -rf /tmp/pack/*
tar cJf .gpu/eldr.tar.xz -C /tmp eldr-trim
cp -r "$S/models/llama-24L" "$S/data/corpus" /tmp/pack/ && cp "$S/data/wikitext-2/wiki.test.raw" "$S/data/zeroshot/corpus-cloze.jsonl" /tmp/pack/
tar cJf .gpu/extra/llama-24L.tar.xz -C /tmp/pack llama-24L
tar cJf .gpu/extra/corpus.tar.xz -C /tmp/pack corpus
tar cJf .gpu/extra/wiki.tar.xz -C /tmp/pack wiki.test.raw corpus-cloze.jsonl   # run_b's step 3 reads the zero-shot items
du -cb .gpu/eldr.tar.xz .gpu/extra/llama-24L.tar.xz .gpu/extra/corpus.tar.xz .gpu/extra/wiki.tar.xz | tail -1 | awk '{printf "carry: %.1f MiB\n", $1/1048576}'
git ls-files -z | xargs -0 du -cb | tail -1 | awk '{printf "tracked: %.1f MiB\n", $1/1048576}'
