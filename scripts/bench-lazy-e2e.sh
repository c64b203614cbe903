#!/usr/bin/env bash
# LazyLLM against the baseline end to end, as users feel it: TTFT, decode ms/token and the whole
# answer's time (TTFT + every decode step) at several answer lengths, warm (sessions reused after
# a warm-up) and cold (a fresh session and a prompt length not run before, as `run` and the
# server's first request at a length see it). Writes one JSON line per prompt length and mode
# (`lazyllm bench --json`) and prints a table of the ratios last.
#
# Usage: bash scripts/bench-lazy-e2e.sh MODEL OUT_DIR
#   LAZYLLM_CLI (build/lazyllm)  DEVICE (auto)  THREADS (all cores)  LENS (1024,2048,4096)
#   GEN (256)  E2E_AT (1,64,256)  REPS (2)  MODES (warm cold)  PRUNE (--lazy)
set -euo pipefail
MODEL=${1:?model}
OUT=${2:?output dir}
LAZYLLM=${LAZYLLM_CLI:-build/lazyllm}
LENS=${LENS:-1024,2048,4096}
GEN=${GEN:-256}
E2E_AT=${E2E_AT:-1,64,256}
REPS=${REPS:-2}
MODES=${MODES:-warm cold}
PRUNE=${PRUNE:---lazy}
mkdir -p "$OUT"
args=(-m "$MODEL" --device "${DEVICE:-auto}" --prompt-len "$LENS" --gen-len "$GEN" --e2e-at "$E2E_AT" --reps "$REPS" $PRUNE --json)
[ -n "${THREADS:-}" ] && args+=(-t "$THREADS")
for mode in $MODES; do
  if [ "$mode" = cold ]; then
    "$LAZYLLM" bench "${args[@]}" --warmup 0 --cold > "$OUT/e2e-$mode.jsonl"
  else
    "$LAZYLLM" bench "${args[@]}" --warmup 1 > "$OUT/e2e-$mode.jsonl"
  fi
done
python3 - "$OUT" $MODES <<'PY'
import json, sys
out, modes = sys.argv[1], sys.argv[2:]
print(f"{'prompt':>7} {'mode':>5} {'schedule':>12} {'ttft base':>10} {'ttft lazy':>10} {'speedup':>8} {'dec ms base':>11} {'dec ms lazy':>11}  e2e lazy/base at answer lengths")
for mode in modes:
    for line in open(f"{out}/e2e-{mode}.jsonl"):
        j = json.loads(line)
        at = " ".join(f"{k}:{v:.3f}" for k, v in j.get("e2e_ratio_at", {}).items())
        dec = lambda s: s.get("decode_ms_per_token", {}).get("median", float("nan"))
        print(f"{j['prompt_len']:>7} {mode:>5} {j['schedule_name'][:12]:>12} {j['ttft_ms_baseline']:>10.1f} {j['ttft_ms_lazy']:>10.1f} {j['speedup']:>7.2f}x"
              f" {dec(j['baseline']):>11.2f} {dec(j['lazy']):>11.2f}  {at}  {j['lazy'].get('lazy_decode', '')} pruning {j['lazy'].get('pruning', '')[:40]}")
PY
