#!/usr/bin/env bash
# Builds the GGUF reader's libFuzzer target with clang (ASan + UBSan) in build-fuzz and runs it
# for a bounded time over a seed corpus of small valid GGUF files generated on the spot.
# Usage: bash scripts/fuzz.sh [SECONDS] [extra libFuzzer flags...]   (default 60 seconds)
# A crash leaves its input in build-fuzz/artifacts/ and the script exits nonzero;
# reproduce it with: build-fuzz/fuzz/gguf_fuzz build-fuzz/artifacts/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=${1:-60}
shift || true
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DLAZYLLM_FUZZ=ON -DLAZYLLM_TESTS=OFF -DLAZYLLM_SANITIZE=OFF > /dev/null
ninja -C build-fuzz gguf_fuzz gguf_fuzz_seeds
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/corpus" build-fuzz/artifacts
./build-fuzz/fuzz/gguf_fuzz_seeds "$WORK/corpus"
echo "seed corpus: $(ls "$WORK/corpus" | wc -l) files, $(du -sk "$WORK/corpus" | cut -f1) KiB"
set +e
./build-fuzz/fuzz/gguf_fuzz -max_total_time="$BUDGET" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
  -print_final_stats=1 -artifact_prefix=build-fuzz/artifacts/ \
  "$@" "$WORK/corpus" > "$WORK/log" 2>&1
rc=$?
set -e
tail -n 25 "$WORK/log"
if [ $rc -ne 0 ]; then
  echo "fuzz: FAILED (exit $rc); inputs in build-fuzz/artifacts/"
  exit $rc
fi
echo "fuzz: no crash in ${BUDGET}s"
