#!/usr/bin/env bash
# The whole test suite: unit/integration tests (Release), the same suite under
# AddressSanitizer + UndefinedBehaviorSanitizer, and bounded libFuzzer runs of every fuzz target
# (scripts/fuzz.sh: the GGUF reader, request parser, chat templates, tokenizers, model config,
# schedule specs).
# Usage: bash scripts/test.sh     (after scripts/setup.sh; LAZYLLM_SHARED_DIR overrides ../shared)
# Set LAZYLLM_SKIP_ASAN=1 or LAZYLLM_SKIP_FUZZ=1 to leave out a stage locally; FUZZ_SECONDS is
# the fuzz budget of each target (default 45). In CI (CI=1) an arm64 stage follows
# (scripts/check-arm64.sh; LAZYLLM_SKIP_ARM64=1 leaves it out).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
# Seconds each stage took, printed at the end (CI has a time limit; this says where it went).
TIMES=""
stage_start=$SECONDS
stage_done() {
  TIMES="$TIMES${TIMES:+, }$1 $((SECONDS - stage_start)) s"
  stage_start=$SECONDS
}

# CI also installs the tools-only SentencePiece module, so the tokenizer export test
# (codemodel_tokenizer_tiny) runs there instead of skipping.
case "${CI:-}" in "" | 0 | false) ;; *) bash tools/codemodel/setup.sh ;; esac

echo "== build (Release) =="
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
ninja -C build
stage_done "set-up and build"
echo "== tests (Release) =="
ctest --test-dir build --output-on-failure -j "$JOBS" | tee -a "$LOG"
stage_done tests

if [ "${LAZYLLM_SKIP_ASAN:-0}" != 1 ]; then
  echo "== build (ASan + UBSan) =="
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLAZYLLM_SANITIZE=ON > /dev/null
  ninja -C build-asan
  stage_done "ASan build"
  echo "== tests (ASan + UBSan) =="
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$JOBS" | tee -a "$LOG"
  stage_done "ASan tests"
fi

if [ "${LAZYLLM_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz (bounded: ${FUZZ_SECONDS:-45}s per target) =="
  bash scripts/fuzz.sh "${FUZZ_SECONDS:-45}"
  stage_done fuzz
fi

# arm64, in CI only (CI set to anything but "", 0 or false): the cross build and the tests under
# qemu-user (scripts/check-arm64.sh: Debian's :arm64 packages in a private sysroot, nothing
# installed). The cross compiler is installed here, by this stage, not by scripts/setup.sh: users
# do not need it. About 10 minutes from nothing on 2 cores (the build 4-5 of them, the tests under
# 6 under emulation, as shards on both cores); bounded by ARM64_TEST_TIMEOUT (default 900 s a
# test run) and ARM64_STAGE_TIMEOUT (default 1500 s).
case "${CI:-}" in "" | 0 | false) arm64=0 ;; *) arm64=1 ;; esac
if [ "$arm64" = 1 ] && [ "${LAZYLLM_SKIP_ARM64:-0}" != 1 ]; then
  echo "== arm64 (cross build, tests under qemu-aarch64) =="
  if ! command -v aarch64-linux-gnu-g++ > /dev/null; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends g++-aarch64-linux-gnu
  fi
  ARM64_SVE_VL=${ARM64_SVE_VL:-32,64} ARM64_TEST_TIMEOUT=${ARM64_TEST_TIMEOUT:-900} timeout --kill-after=30 "${ARM64_STAGE_TIMEOUT:-1500}" \
    bash scripts/check-arm64.sh | tee -a "$LOG"
  stage_done arm64
fi

# One closing line over every ctest stage (each "N% tests passed, F tests failed out of T") and
# the arm64 stage ("arm64 (qemu): N passed, F failed, S skipped").
total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$LOG" | awk '{s += $1} END {print s + 0}')
failed=$(sed -n 's/.* \([0-9]*\) tests failed out of.*/\1/p' "$LOG" | awk '{s += $1} END {print s + 0}')
arm_passed=$(sed -n 's/^arm64 (qemu): \([0-9]*\) passed, \([0-9]*\) failed.*/\1/p' "$LOG" | awk '{s += $1} END {print s + 0}')
arm_failed=$(sed -n 's/^arm64 (qemu): \([0-9]*\) passed, \([0-9]*\) failed.*/\2/p' "$LOG" | awk '{s += $1} END {print s + 0}')
total=$((total + arm_passed + arm_failed))
failed=$((failed + arm_failed))
echo "all test stages passed"
echo "times: $TIMES"
echo "tests: $((total - failed)) passed, $failed failed"
