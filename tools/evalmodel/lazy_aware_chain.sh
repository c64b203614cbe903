#!/usr/bin/env bash
# The six training stages of runs 10-15 (run 15 J3; count_chain.sh goes on from J3 to the model in eval/models/).
# A device call runs at most 10 minutes, so each stage is one call that starts from the GGUF
# the stage before wrote. Stage 1 trains from scratch with attention supervision; stages 2-6
# fine-tune with LazyLLM's pruning in the loop.
#
# Here:   bash tools/evalmodel/stage_device.sh            # sources and eval sets -> .dev-train
#         cp <previous stage's GGUF> .dev-train/init.gguf  # stages 2-6
# Device: bash .dev-train/evalmodel/lazy_aware_chain.sh N  (carry: [".dev-train"], timeout 600)
# It writes $OUT/N/synth-llama-6l-256d.gguf and $OUT/N/logs.tgz.
#
# The runs behind the model trained three variants at once on one H200 (5 data workers each;
# the other two were the variants the README lists), so a stage alone takes more steps in its
# budget: an equivalent rerun, not a bit-identical one.
set -euo pipefail
stage="${1:?stage 1-6}"
cd "$(dirname "$0")/.."
common=(--eval-dir data --workers 5 --eval-limit 24 --layers 6 --name synth-llama-6l-256d
        --attn-sup-layers 1,2,3,4)
finetune=(--init init.gguf --copy-steps 0 --warmup 100 --lengths 4064,4064,0.01 --prune-from 0 --budget-s 400
          --lr 3e-4 --prune-specs "2:0.5,4:0.5,5:0.5;2:0.5,4:0.5,5:0.5;2:0.3;3:0.5;4:0.5")
kv=(--attn-sup-weight 0.5 --attn-sup-rank-top 0.25 --attn-sup-layer-weights 1=8
    --family-weights synth_kv_retrieval=3)
case "$stage" in
  1) args=(--budget-s 450 --lr 1e-3 --copy-lr 3e-3 --copy-budget-s 90 --attn-sup-weight 0.2) ;;  # run 10 S
  2) args=("${finetune[@]}" --attn-sup-weight 0.2 --prune-frac 0.5) ;;                          # run 11 FA
  3) args=("${finetune[@]}" --attn-sup-weight 0.5 --attn-sup-rank-top 0.25 --prune-frac 0.5) ;;  # run 12 G2
  4 | 5) args=("${finetune[@]}" "${kv[@]}" --prune-frac 0.5) ;;                                 # runs 13 H3, 14 I3
  6) args=("${finetune[@]}" "${kv[@]}" --prune-frac 0.75) ;;                                    # run 15 J3
  *) echo "stage must be 1-6" >&2; exit 2 ;;
esac
out="${OUT:-/tmp/out}/$stage"
mkdir -p "$out" /tmp/o
PYTHONUNBUFFERED=1 timeout 560 python3 evalmodel/train.py --out /tmp/o/$stage "${common[@]}" "${args[@]}" \
  > /tmp/o/$stage.log 2>&1
cp /tmp/o/$stage/synth-llama-6l-256d.gguf "$out/"
tail -8 /tmp/o/$stage/train.log
(cd /tmp/o && tar czf "$out/logs.tgz" $stage.log $stage/train.log $stage/eval_pytorch.json $stage/eval_predictions.jsonl)
