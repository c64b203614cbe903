#!/usr/bin/env bash
# The whole test suite: unit/integration tests (Release), the same suite under
# AddressSanitizer + UndefinedBehaviorSanitizer, and a bounded libFuzzer run of the GGUF reader.
# Usage: bash scripts/test.sh     (after scripts/setup.sh; LAZYLLM_SHARED_DIR overrides ../shared)
# Set LAZYLLM_SKIP_ASAN=1 or LAZYLLM_SKIP_FUZZ=1 to leave out a stage locally.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}

echo "== build (Release) =="
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
ninja -C build
echo "== tests (Release) =="
ctest --test-dir build --output-on-failure -j "$JOBS"

if [ "${LAZYLLM_SKIP_ASAN:-0}" != 1 ]; then
  echo "== build (ASan + UBSan) =="
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLAZYLLM_SANITIZE=ON > /dev/null
  ninja -C build-asan
  echo "== tests (ASan + UBSan) =="
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$JOBS"
fi

if [ "${LAZYLLM_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz the GGUF reader (bounded) =="
  bash scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
fi
echo "all test stages passed"
