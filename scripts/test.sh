#!/usr/bin/env bash
# The whole test suite: unit/integration tests (Release), the same suite under
# AddressSanitizer + UndefinedBehaviorSanitizer, and bounded libFuzzer runs of every fuzz target
# (scripts/fuzz.sh: the GGUF reader, request parser, chat templates, tokenizers, model config).
# Usage: bash scripts/test.sh     (after scripts/setup.sh; LAZYLLM_SHARED_DIR overrides ../shared)
# Set LAZYLLM_SKIP_ASAN=1 or LAZYLLM_SKIP_FUZZ=1 to leave out a stage locally; FUZZ_SECONDS is
# the fuzz budget of each target (default 45).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

echo "== build (Release) =="
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
ninja -C build
echo "== tests (Release) =="
ctest --test-dir build --output-on-failure -j "$JOBS" | tee -a "$LOG"

if [ "${LAZYLLM_SKIP_ASAN:-0}" != 1 ]; then
  echo "== build (ASan + UBSan) =="
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLAZYLLM_SANITIZE=ON > /dev/null
  ninja -C build-asan
  echo "== tests (ASan + UBSan) =="
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$JOBS" | tee -a "$LOG"
fi

if [ "${LAZYLLM_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz (bounded: ${FUZZ_SECONDS:-45}s per target) =="
  bash scripts/fuzz.sh "${FUZZ_SECONDS:-45}"
fi
# One closing line over every ctest stage (each "N% tests passed, F tests failed out of T").
total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$LOG" | awk '{s += $1} END {print s + 0}')
failed=$(sed -n 's/.* \([0-9]*\) tests failed out of.*/\1/p' "$LOG" | awk '{s += $1} END {print s + 0}')
echo "all test stages passed"
echo "tests: $((total - failed)) passed, $failed failed"
