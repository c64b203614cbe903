#!/usr/bin/env bash
# Installs every build and test dependency from Debian 12 packages, then builds lazyllm.
# Usage: bash scripts/setup.sh            (needs root or sudo for apt-get)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config git ccache
  libhwy-dev libopenblas-dev libfmt-dev nlohmann-json3-dev libcli11-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libicu-dev                        # Unicode regexes (byte-level BPE pre-tokenizers)
  libboost-math-dev                 # Student's t quantiles (lazyllm calibrate's loss bound)
  libabsl-dev                       # flat_hash_map (the tokenizer's vocabulary index)
  clang libclang-rt-14-dev          # libFuzzer target
  gnuplot-nox                       # lazyllm eval's score-vs-speedup plot
  python3
  nodejs npm curl                   # server tests: the official openai npm client, curl checks
)
missing=()
for p in "${PACKAGES[@]}"; do
  # NodeSource's nodejs package bundles npm (and conflicts with Debian's): take the command as enough.
  [ "$p" = npm ] && command -v npm > /dev/null && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The server tests' Node packages, exactly as locked in tests/server/package-lock.json.
(cd tests/server && npm ci --no-audit --no-fund)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
ninja -C build
echo "built: build/lazyllm"
