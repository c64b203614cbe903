#!/usr/bin/env bash
# One short GPU call that compares this build with an older lazyllm binary and with PyTorch +
# transformers on the llama2-7b shape: the GPU tests, the lazyllm benchmark (baseline and the
# default LazyLLM schedule), transformers, the kernel micro-benchmark, then the older binary.
# Later stages are skipped once BUDGET seconds have passed (device time is short). In a
# directory holding bundle.tar.xz (scripts/gpu-bundle.sh) and, optionally, old/lazyllm-main.xz
# (an older `lazyllm`, xz-compressed); logs and JSON go to $OUT:
#   tar xf bundle.tar.xz scripts && BUDGET=280 REPS=2 bash scripts/gpu-compare.sh
# (the settings of docs/benchmarks.md's CUDA run).
set -uo pipefail
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
BUDGET=${BUDGET:-330}
REPS=${REPS:-2}
OUT=${OUT:-/tmp/lazyllm-gpu-compare}
mkdir -p "$OUT"
tar xf bundle.tar.xz
OLD=
if [ -f old/lazyllm-main.xz ]; then xz -dc old/lazyllm-main.xz > old-lazyllm && chmod +x old-lazyllm && OLD=./old-lazyllm; fi
export LD_LIBRARY_PATH=$PWD/prebuilt/lib:${LD_LIBRARY_PATH:-}
export LAZYLLM_SHARED_DIR=$PWD/shared LAZYLLM_CLI=$PWD/prebuilt/bin/lazyllm
B=prebuilt/bin
M=/tmp/llama2-7b-bf16.gguf
( $B/lazyllm gen-model --shape llama2-7b --dtype bf16 -o $M > /tmp/genmodel.log 2>&1 ) &
GEN=$!
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "== gpu tests (t=$(el)) =="
timeout 120 $B/lazyllm_tests --gtest_filter='Cuda*:Device*' > $OUT/tests.log 2>&1; echo "tests rc=$?"
grep -E "^\[ cuda \]|^\[  FAILED|Failure|^\[  PASSED" $OUT/tests.log | head -40
wait $GEN
show() { python3 - "$1" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    if not l.startswith('{'):
        continue
    r = json.loads(l)
    if 'baseline' in r:
        s = '%6d ttft %8.1f dec %6.2f ms' % (r['prompt_len'], r['ttft_ms_baseline'], 1000 / r['baseline']['decode_tok_s']['median'])
        s += ' | lazy ttft %8.1f x%.2f dec %6.2f ms' % (r['ttft_ms_lazy'], r['speedup'], 1000 / r['lazy']['decode_tok_s']['median'])
    else:
        s = '%6d ttft %8.1f dec %6.2f ms' % (r['prompt_len'], r['ttft_ms'], 1000 / r['decode_tok_s'])
    print(s)
PY
}
run() { local name=$1 lim=$2; shift 2; echo "-- $name (t=$(el))"; timeout $lim "$@" > $OUT/bench_$name.jsonl 2>/tmp/bench_$name.err
  echo "rc=$?"; show $OUT/bench_$name.jsonl; }
L=4096,8192,16384,32768
run new 110 $B/lazyllm bench -m $M --device cuda --prompt-len $L --gen-len 32 --reps $REPS --warmup 1 --lazy --json
if [ $(el) -lt $((BUDGET - 100)) ]; then
  echo "== transformers (t=$(el)) =="
  timeout 130 python3 scripts/bench_transformers.py --prompt-len $L --decode-ctx 4096,16384 --reps $((REPS + 1)) \
    --warmup 1 > $OUT/bench_torch.jsonl 2>/tmp/bench_torch.err; echo "rc=$?"
  python3 scripts/gpu_bench_table.py $OUT/bench_new.jsonl $OUT/bench_torch.jsonl 4096,16384 | tee $OUT/table.md
fi
if [ $(el) -lt $((BUDGET - 80)) ]; then
  echo "== kernels (t=$(el)) =="
  timeout 60 $B/lazyllm_bench_cuda > $OUT/kernels.log 2>&1; echo "kernels rc=$?"; cat $OUT/kernels.log
fi
if [ -n "$OLD" ] && [ $(el) -lt $((BUDGET - 40)) ]; then
  run old 70 $OLD bench -m $M --device cuda --prompt-len $L --gen-len 32 --reps 1 --warmup 1 --lazy --json
fi
echo "total $(el) s"
