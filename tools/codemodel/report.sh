#!/usr/bin/env bash
# The code model's numbers in docs/quality.md, in one go: held-out scores for the baseline, the
# paper's default schedule, a calibrated one (calibrated here on the calib600 pool unless
# SCHEDULE is given; scores on DEVICE, TTFT timed on the CPU) and its static and random
# ablations, the cut-prompt baseline, and CPU TTFT on 30 test samples. Scores run on DEVICE
# (cuda is minutes; cpu is hours on 2 cores).
# Usage: bash tools/codemodel/report.sh OUT_DIR
#   env: LAZYLLM (build/lazyllm), MODEL (eval/models/code-llama-12l-384d.gguf),
#        TASKS (/tmp/lazyllm-corpus/tasks), CALIB (calib600, a folder of TASKS),
#        DEVICE (cuda), SCHEDULE (calibrate when empty), CALIB_SAMPLES (600),
#        CONFIDENCE (0.9), CALIB_THREADS (12, the calibration's CPU timing),
#        THREADS (2, the CPU TTFT run)
set -euo pipefail
OUT=${1:?output directory}
L=${LAZYLLM:-build/lazyllm}
MODEL=${MODEL:-eval/models/code-llama-12l-384d.gguf}
TASKS=${TASKS:-/tmp/lazyllm-corpus/tasks}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
CALIB=${CALIB:-calib600}
for split in test "$CALIB"; do
  [ -f "$TASKS/$split/mixed.jsonl" ] && continue
  # The three sets interleaved line by line, so any prefix of the file mixes them.
  paste -d '\n' "$TASKS/$split/code_lcc.jsonl" "$TASKS/$split/code_repobench.jsonl" \
    "$TASKS/$split/header_define_qa.jsonl" | grep -v '^$' > "$TASKS/$split/mixed.jsonl"
done
SCHEDULE=${SCHEDULE:-}
if [ -z "$SCHEDULE" ]; then
  "$L" calibrate -m "$MODEL" --data "$TASKS/$CALIB/mixed.jsonl" --config "$TASKS/$CALIB/config.json" \
    --device "$DEVICE" --time-device cpu --time-samples 8 -t "${CALIB_THREADS:-12}" \
    --max-samples "${CALIB_SAMPLES:-600}" --max-candidates 40 \
    --confidence "${CONFIDENCE:-0.9}" --json --out "$OUT/calibrate" > "$OUT/calibrate.json"
  SCHEDULE=$(python3 -c "import json,sys; c=json.load(open(sys.argv[1]))['chosen']; print(c['spec'] if c else '')" \
    "$OUT/calibrate.json")
  [ -n "$SCHEDULE" ] || { echo "calibrate chose nothing: $OUT/calibrate.json"; exit 1; }
fi
echo "schedule: $SCHEDULE"
for set in code_lcc code_repobench header_define_qa; do
  "$L" eval -m "$MODEL" --data "$TASKS/test/$set.jsonl" --config "$TASKS/test/config.json" --device "$DEVICE" \
    --prune 0.3:0.5,0.6:0.5,0.9:0.5 --prune "$SCHEDULE" --prune "static:$SCHEDULE" --prune "random:$SCHEDULE" \
    --json --out "$OUT/$set" > "$OUT/$set.json"
  "$L" eval -m "$MODEL" --data "$TASKS/test/$set.last256.jsonl" --config "$TASKS/test/config.json" \
    --device "$DEVICE" --json --out "$OUT/$set.last256" > "$OUT/$set.last256.json"
done
"$L" eval -m "$MODEL" --data "$TASKS/test/mixed.jsonl" --config "$TASKS/test/config.json" --device cpu \
  -t "${THREADS:-2}" --limit 30 --prune 0.3:0.5,0.6:0.5,0.9:0.5 --prune "$SCHEDULE" \
  --prune "static:$SCHEDULE" --prune "random:$SCHEDULE" --json --out "$OUT/cpu-ttft" > "$OUT/cpu-ttft.json"
echo "wrote $OUT"
