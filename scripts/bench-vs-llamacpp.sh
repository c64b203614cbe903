#!/usr/bin/env bash
# Side-by-side CPU throughput of lazyllm and llama.cpp's llama-bench on the same random-weight
# GGUF files (tinyllama-1.1b shape), alternating the two engines rep by rep.
# llama.cpp is not part of this project: build it yourself outside the repository and pass
#   LLAMA_BENCH=/path/to/llama-bench bash scripts/bench-vs-llamacpp.sh
# Settings: DTYPES (f32 q8_0 q4_0), PROMPTS (512,2048), GEN (64), REPS (3), THREADS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA_BENCH=${LLAMA_BENCH:?set LLAMA_BENCH to a llama-bench binary}
DTYPES=${DTYPES:-"f32 q8_0 q4_0"}
PROMPTS=${PROMPTS:-512,2048}
GEN=${GEN:-64}
REPS=${REPS:-3}
THREADS=${THREADS:-2}
SHAPE=${SHAPE:-tinyllama-1.1b}
DIR=${MODELS_DIR:-/tmp/lazyllm-bench-models}
OUT=${OUT:-/tmp/lazyllm-vs-llamacpp}
mkdir -p "$DIR" "$OUT"
BIN=build/lazyllm

for dt in $DTYPES; do
  m="$DIR/$SHAPE-$dt.gguf"
  [ -f "$m" ] || $BIN gen-model --shape "$SHAPE" --dtype "$dt" -o "$m"
  : > "$OUT/lazyllm-$dt.jsonl"
  : > "$OUT/llamacpp-$dt.jsonl"
  for r in $(seq "$REPS"); do
    echo "[$dt] rep $r/$REPS: lazyllm" >&2
    # prefill at each prompt length, then decode from a 1-token prompt (as llama-bench's tg test)
    $BIN bench -m "$m" --prompt-len "$PROMPTS" --gen-len 1 --reps 1 --warmup 0 -t "$THREADS" --json >> "$OUT/lazyllm-$dt.jsonl"
    $BIN bench -m "$m" --prompt-len 1 --gen-len "$((GEN + 1))" --reps 1 --warmup 0 -t "$THREADS" --json >> "$OUT/lazyllm-$dt.jsonl"
    echo "[$dt] rep $r/$REPS: llama.cpp" >&2
    "$LLAMA_BENCH" -m "$m" -t "$THREADS" -p "$PROMPTS" -n "$GEN" -r 1 -o jsonl >> "$OUT/llamacpp-$dt.jsonl"
  done
done

python3 - "$OUT" "$DTYPES" "$PROMPTS" "$GEN" "$THREADS" <<'PY'
import json, statistics, sys, platform
out, dtypes, prompts, gen, threads = sys.argv[1], sys.argv[2].split(), [int(p) for p in sys.argv[3].split(',')], int(sys.argv[4]), sys.argv[5]
def med(v): return statistics.median(v) if v else float('nan')
cpu = "unknown"
for line in open('/proc/cpuinfo'):
    if line.startswith('model name'): cpu = line.split(':', 1)[1].strip(); break
print(f"CPU: {cpu}, {threads} threads, decode {gen} tokens; medians over alternating runs (tok/s)\n")
print("| dtype | test | lazyllm | llama.cpp | ratio |")
print("| --- | --- | ---: | ---: | ---: |")
for dt in dtypes:
    ours = [json.loads(l) for l in open(f"{out}/lazyllm-{dt}.jsonl") if l.strip()]
    theirs = [json.loads(l) for l in open(f"{out}/llamacpp-{dt}.jsonl") if l.strip()]
    for p in prompts:
        a = med([o['prefill_tok_s'] for o in ours if o['prompt_len'] == p])
        b = med([t['avg_ts'] for t in theirs if t['n_prompt'] == p and t['n_gen'] == 0])
        print(f"| {dt} | pp{p} | {a:.1f} | {b:.1f} | {a/b:.2f} |")
    a = med([o['decode_tok_s'] for o in ours if o['prompt_len'] == 1])
    b = med([t['avg_ts'] for t in theirs if t['n_prompt'] == 0 and t['n_gen'] == gen])
    print(f"| {dt} | tg{gen} | {a:.2f} | {b:.2f} | {a/b:.2f} |")
PY
