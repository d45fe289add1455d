#!/usr/bin/env bash
# Fetches a second NVRTC, 12.4 (Debian 13 "trixie" non-free: libnvrtc12 + libnvrtc-builtins12.4, about 18 MB), into a
# folder of its own, without installing it: CI compiles every kernel with it as well as with Debian 12's 11.8
# (.ci/install-nvrtc.sh), so a kernel that only a newer NVRTC refuses (the GPU box has 13) fails CI too.
#
#   bash .ci/fetch-nvrtc12.sh [DIR]     # prints the path of libnvrtc.so.12; use it as ELDR_NVRTC, with its folder
#                                       # on LD_LIBRARY_PATH (NVRTC dlopens its builtins library by name)
#
# The packages come through apt, with a private source list and state under DIR (the host's apt setup is untouched),
# so their signatures are checked against the host's Debian archive keyring (bookworm's has trixie's keys). Nothing
# is installed: the .debs are unpacked with dpkg-deb. libnvrtc12 needs glibc >= 2.34 (bookworm has 2.36). Idempotent.
set -euo pipefail

dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/eldr/nvrtc12}
lib="$dir/root/usr/lib/x86_64-linux-gnu/libnvrtc.so.12"
if [ -e "$lib" ]; then echo "$lib"; exit 0; fi

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || { echo "fetch-nvrtc12: needs apt-get and dpkg-deb (Debian)" >&2; exit 1; }
[ -f "$keyring" ] || { echo "fetch-nvrtc12: no $keyring" >&2; exit 1; }

mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/debs" "$dir/root"
echo "deb [signed-by=$keyring] http://deb.debian.org/debian trixie non-free" > "$dir/sources.list"
apt=(-o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$dir/lists"
     -o "Dir::Cache=$dir/cache" -o APT::Architecture=amd64 -o Acquire::Languages=none -o Debug::NoLocking=true
     -o APT::Sandbox::User=root -qq)
apt-get "${apt[@]}" update >&2
(cd "$dir/debs" && apt-get "${apt[@]}" download libnvrtc12 libnvrtc-builtins12.4 >&2)
for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
[ -e "$lib" ] || { echo "fetch-nvrtc12: $lib missing after unpacking $(ls "$dir/debs")" >&2; exit 1; }
echo "fetch-nvrtc12: $(ls "$dir/debs" | tr '\n' ' ')" >&2
echo "$lib"
