#!/usr/bin/env bash
# Run 16: can the eval model learn counting (never learnt in runs 1-15)? Fine-tunes the model in
# eval/models/ (run 15 J3) in two phases per variant, three variants at once on one GPU:
#   A  counting-heavy mix (counting sampled 8x, kv 2x) on short prompts (64..1024 tokens),
#      where the events get a large share of attention, no pruning;
#   B  the full mix back at long prompts (counting 4x, kv 3x: kv failed beyond ~3200 tokens),
#      LazyLLM pruning in the loop as in stage 6 of lazy_aware_chain.sh.
# Variants differ in phase A only: V1 lr 1e-3 with attention supervision, V2 lr 1e-3 without,
# V3 lr 3e-4 with.
#
# Stage 2 (a second call) runs phase B again, longer, from stage 1's V1 and V3:
#   W1 from V1, W2 from V3, W3 from V1 with counting 6x and lr 5e-4.
#
# Stage 3 runs it once more: X1 from W1, X2 from W2, X3 from W2 with 75% of samples pruned.
# Stage 4, from X2: Y1 on longer prompts (3072..4064 at the top), Y2 the same with counting 6x
# and lr 2e-4, Y3 as stage 3 with lr 1.5e-4 (counting still missed by one beyond ~3000 tokens).
#
# Here:   bash tools/evalmodel/stage_device.sh && cp eval/models/synth-llama-6l-256d.gguf .dev-train/init.gguf
#         (stage 2: cp <stage 1 out>/V1.gguf <stage 1 out>/V3.gguf .dev-train/; stage 3: W1, W2 of stage 2; stage 4: X2 of stage 3)
# Device: bash .dev-train/evalmodel/count_chain.sh 1|2|3|4   (carry: [".dev-train"], timeout 600)
# It writes $OUT/V{1,2,3}.gguf (stage 2: W*, 3: X*, 4: Y*) and $OUT/logs.tgz.
set -euo pipefail
cd "$(dirname "$0")/.."
init="${INIT:-init.gguf}"
common=(--eval-dir data --workers 5 --layers 6 --name synth-llama-6l-256d --copy-steps 0)
sup=(--attn-sup-layers 1,2,3,4 --attn-sup-weight 0.5 --attn-sup-rank-top 0.25 --attn-sup-layer-weights 1=8)
phase_a=(--budget-s "${A_S:-170}" --warmup 50 --lengths 512,1024,0.5 --eval-limit 8
         --family-weights synth_count=8,synth_kv_retrieval=2)
phase_b=(--budget-s "${B_S:-270}" --warmup 50 --lr 3e-4 --lengths 2048,4064,0.3 --eval-limit 24
         --family-weights synth_count=4,synth_kv_retrieval=3 --prune-from 0 --prune-frac 0.5
         --prune-specs "2:0.5,4:0.5,5:0.5;2:0.5,4:0.5,5:0.5;2:0.3;3:0.5;4:0.5")
stage="${1:?stage 1-4}"
continue_b() {  # phase B of variant $1 from GGUF $2, extra arguments last
  local v="$1" from="$2"; shift 2
  PYTHONUNBUFFERED=1 python3 evalmodel/train.py --out /tmp/o/$v/B --init "$from" \
    "${common[@]}" "${phase_b[@]}" "${sup[@]}" "$@" > /tmp/o/$v.B.log 2>&1
}
variant() {  # phase A (extra arguments) from $init, then phase B
  local v="$1"; shift
  PYTHONUNBUFFERED=1 python3 evalmodel/train.py --out /tmp/o/$v/A --init "$init" "${common[@]}" "${phase_a[@]}" "$@" \
    > /tmp/o/$v.A.log 2>&1
  continue_b "$v" /tmp/o/$v/A/synth-llama-6l-256d.gguf
}
mkdir -p /tmp/o
out="${OUT:-/tmp/out}"
mkdir -p "$out"
if [ "$stage" = 1 ]; then
  names=(V1 V2 V3)
  variant V1 --lr 1e-3 "${sup[@]}" &
  variant V2 --lr 1e-3 &
  variant V3 --lr 3e-4 "${sup[@]}" &
elif [ "$stage" = 2 ]; then
  names=(W1 W2 W3)
  phase_b[1]="${B_S:-470}"  # --budget-s
  continue_b W1 V1.gguf &
  continue_b W2 V3.gguf &
  continue_b W3 V1.gguf --lr 5e-4 --family-weights synth_count=6,synth_kv_retrieval=3 &
elif [ "$stage" = 3 ]; then
  names=(X1 X2 X3)
  phase_b[1]="${B_S:-470}"
  continue_b X1 W1.gguf &
  continue_b X2 W2.gguf &
  continue_b X3 W2.gguf --prune-frac 0.75 &
else
  names=(Y1 Y2 Y3)
  phase_b[1]="${B_S:-470}"
  continue_b Y1 X2.gguf --lengths 3072,4064,0.2 &
  continue_b Y2 X2.gguf --lengths 3072,4064,0.2 --lr 2e-4 --family-weights synth_count=6,synth_kv_retrieval=3 &
  continue_b Y3 X2.gguf --lr 1.5e-4 &
fi
wait || true
for v in "${names[@]}"; do
  cp /tmp/o/$v/B/synth-llama-6l-256d.gguf "$out/$v.gguf" 2>/dev/null || true
  grep -h "eval synth" /tmp/o/$v/*/train.log 2>/dev/null | sed "s/^/$v /" || true
done
(cd /tmp/o && tar czf "$out/logs.tgz" ./*.log ./*/*/train.log ./*/*/eval_pytorch.json ./*/*/eval_predictions.jsonl 2>/dev/null || true)
