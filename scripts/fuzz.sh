#!/usr/bin/env bash
# Builds the GGUF reader's libFuzzer target with clang (ASan + UBSan) and runs it for a bounded
# time over a seed corpus of small valid GGUF files generated on the spot.
# Usage: bash scripts/fuzz.sh [SECONDS]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_BUDGET=${1:-60}
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DLAZYLLM_FUZZ=ON -DLAZYLLM_TESTS=OFF -DLAZYLLM_SANITIZE=ON > /dev/null
ninja -C build-fuzz gguf_fuzz gguf_fuzz_seeds
CORPUS=$(mktemp -d)
trap 'rm -rf "$CORPUS"' EXIT
./build-fuzz/fuzz/gguf_fuzz_seeds "$CORPUS"
./build-fuzz/fuzz/gguf_fuzz -max_total_time="$SECONDS_BUDGET" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
  -print_final_stats=1 "$CORPUS" 2>&1 | tail -n 15
echo "fuzz: no crash in ${SECONDS_BUDGET}s"
