#!/usr/bin/env bash
# Installs NVRTC alone (about 60 MB) so CI can compile every kernel family without a GPU or the
# 2.8 GB CUDA toolkit: Debian 12's non-free libnvrtc11.2 plus libnvrtc-builtins11.8 (which lets
# NVRTC 11.x target sm_90). Idempotent; runs as root in a clean container, or with sudo otherwise.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-nvrtc: not root and no sudo" >&2; exit 1; }
  SUDO="sudo"
fi

if ldconfig -p | grep -q 'libnvrtc\.so\.11\.2'; then
  echo "install-nvrtc: libnvrtc.so.11.2 already present"
  exit 0
fi

# The non-free component is off by default on Debian images; add it in a file of our own.
SRC=/etc/apt/sources.list.d/eldr-nonfree.sources
if [ ! -f "$SRC" ]; then
  $SUDO tee "$SRC" >/dev/null <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends libnvrtc11.2 libnvrtc-builtins11.8
$SUDO ldconfig
ldconfig -p | grep libnvrtc
