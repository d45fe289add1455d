#!/usr/bin/env bash
# Packs .gpu/ for run_a.sh (run here, from the repo root): the .NET runtime, a framework-dependent
# linux-x64 build of the tests and eldr, and the extra models/data compressed. Everything that travels
# (tracked files + .gpu) must stay under 64 MiB.
set -euo pipefail
S=${SHARED:-../shared}
bash "$S/gpu/pack-runtime.sh" >/dev/null
rm -rf .gpu/app .gpu/extra .gpu/cuda; mkdir -p .gpu/extra
dotnet build -c Release tests/ElderCuda.Tests -r linux-x64 --self-contained false -o .gpu/app 2>&1 | grep -E "rror\(s\)"
# the tests read fixtures from the checkout; plots are not needed on the GPU box
rm -rf .gpu/app/fixtures .gpu/app/libSkiaSharp.so .gpu/app/libHarfBuzzSharp.so
tar cJf .gpu/app.tar.xz -C .gpu app
mkdir -p /tmp/pack && rm -rf /tmp/pack/* && cp -r "$S/models/opt-12L" /tmp/pack/ && cp "$S/data/wikitext-2/wiki.test.raw" /tmp/pack/
tar cJf .gpu/extra/opt-12L.tar.xz -C /tmp/pack opt-12L
tar cJf .gpu/extra/wiki.tar.xz -C /tmp/pack wiki.test.raw
du -sb .gpu | cut -f1 | awk '{printf ".gpu: %.1f MiB\n", $1/1048576}'
git ls-files -z | xargs -0 du -cb | tail -1 | awk '{printf "tracked: %.1f MiB\n", $1/1048576}'
