#!/usr/bin/env bash
# Installs the Debian packages multiflow needs to build and test (Debian 12). Needs root (or sudo).
set -euo pipefail
pkgs=(build-essential cmake pkg-config
      libopenblas-pthread-dev libjansson-dev libpng-dev libjpeg62-turbo-dev libutf8proc-dev
      libcmocka-dev jq valgrind
      clang libclang-rt-dev) # clang + libFuzzer runtime: scripts/fuzz.sh, run by scripts/test.sh
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
