#!/usr/bin/env bash
# The GPU check, run on a machine with an NVIDIA GPU (Hopper first): build with CUDA, run the
# whole test suite including the GPU tests, then the speed benchmark against PyTorch +
# transformers on a random llama2-7b-shaped bf16 model; prints a short table last.
#
# Usage: bash scripts/gpu-check.sh
#   LAZYLLM_PREBUILT=DIR  use DIR/bin/{lazyllm,lazyllm_tests} (and DIR/lib on LD_LIBRARY_PATH)
#                         instead of building, for machines without the Debian build packages
#   OUT=DIR               where logs and JSON go (default /tmp/lazyllm-gpu-check)
#   LAZYLLM_BENCH_LENS / LAZYLLM_DECODE_LENS  prompt lengths (default 4096,8192,16384,32768 / 4096,16384)
#   LAZYLLM_TEST_FILTER=PATTERN  run only these tests (gtest filter, e.g. 'Cuda*:Device*')
#   LAZYLLM_BENCH_REPS (3), LAZYLLM_TORCH_REPS (5), LAZYLLM_TORCH_WARMUP (2)  repetitions
#   LAZYLLM_KERNELS_ARGS  arguments of lazyllm_bench_cuda (e.g. --quick)
#   LAZYLLM_SKIP_TESTS=1, LAZYLLM_SKIP_KERNELS=1, LAZYLLM_SKIP_BENCH=1, LAZYLLM_SKIP_TORCH=1  leave out a stage
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/lazyllm-gpu-check}
mkdir -p "$OUT"
LENS=${LAZYLLM_BENCH_LENS:-4096,8192,16384,32768}
DECODE_LENS=${LAZYLLM_DECODE_LENS:-4096,16384}
MODEL=${LAZYLLM_BENCH_MODEL:-/tmp/llama2-7b-bf16.gguf}
status=0

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

if [ -n "${LAZYLLM_PREBUILT:-}" ]; then
  BIN=$LAZYLLM_PREBUILT/bin
  TESTS=$BIN/lazyllm_tests
  export LD_LIBRARY_PATH=$LAZYLLM_PREBUILT/lib:${LD_LIBRARY_PATH:-}
else
  echo "== build (Release, CUDA) =="
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DLAZYLLM_CUDA=ON > /dev/null
  ninja -C build-gpu
  BIN=build-gpu
  TESTS=build-gpu/tests/lazyllm_tests
fi
export LAZYLLM_CLI=$BIN/lazyllm

if [ "${LAZYLLM_SKIP_TESTS:-0}" != 1 ]; then
  echo "== tests (CPU and GPU) =="
  "$TESTS" ${LAZYLLM_TEST_FILTER:+--gtest_filter="$LAZYLLM_TEST_FILTER"} 2>&1 | tee "$OUT/tests.log" | grep -E "^\[ cuda \]|^\[  FAILED|Failure|tests? ran" || true
  if grep -q "^\[  PASSED  \]" "$OUT/tests.log" && ! grep -q "^\[  FAILED  \]" "$OUT/tests.log"; then
    grep -E "^\[  (PASSED|SKIPPED) +\] [0-9]+ test" "$OUT/tests.log"
  else
    echo "TESTS FAILED (see $OUT/tests.log); the benchmark still runs"
    status=1
  fi
fi

if [ "${LAZYLLM_SKIP_KERNELS:-0}" != 1 ] && [ -x "$BIN/lazyllm_bench_cuda" ]; then
  echo "== kernels (llama2-7b shapes) =="
  "$BIN/lazyllm_bench_cuda" ${LAZYLLM_KERNELS_ARGS:-} | tee "$OUT/kernels.log"
fi

if [ "${LAZYLLM_SKIP_BENCH:-0}" != 1 ]; then
  echo "== benchmark: lazyllm (cuda) =="
  [ -f "$MODEL" ] || "$BIN/lazyllm" gen-model --shape llama2-7b --dtype bf16 -o "$MODEL"
  "$BIN/lazyllm" bench -m "$MODEL" --device cuda --prompt-len "$LENS" --gen-len 32 --reps "${LAZYLLM_BENCH_REPS:-3}" --warmup 1 --lazy --json \
    | tee "$OUT/bench_lazyllm.jsonl"
  if [ "${LAZYLLM_SKIP_TORCH:-0}" != 1 ]; then
    echo "== benchmark: PyTorch + transformers =="
    python3 scripts/bench_transformers.py --prompt-len "$LENS" --decode-ctx "$DECODE_LENS" \
      --reps "${LAZYLLM_TORCH_REPS:-5}" --warmup "${LAZYLLM_TORCH_WARMUP:-2}" | tee "$OUT/bench_torch.jsonl"
  fi
  python3 scripts/gpu_bench_table.py "$OUT/bench_lazyllm.jsonl" "$OUT/bench_torch.jsonl" "$DECODE_LENS" | tee "$OUT/table.md"
fi
exit $status
