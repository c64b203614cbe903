#!/usr/bin/env bash
# Builds eval/prompts/stories.txt: each hand-written opening in eval/prompts/story-openings.txt,
# continued by stories260K (temperature 0.8, seeded) to a varied length, one prompt per line.
# Usage: bash tools/make_story_prompts.sh [MODEL]   (default ../shared/models/stories260K.gguf)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-../shared/models/stories260K.gguf}
OUT=eval/prompts/stories.txt
: > "$OUT"
i=0
while IFS= read -r opening; do
  for extra in 40 160 300; do
    i=$((i + 1))
    text=$(build/lazyllm run -m "$MODEL" --ctx 512 -p "$opening" -n "$extra" --temp 0.8 --top-k 40 --top-p 0.95 \
             --seed "$i" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["text"])')
    printf '%s%s\n' "$opening" "$text" | tr '\n' ' ' | sed 's/  */ /g; s/ $//' >> "$OUT"
    echo >> "$OUT"
  done
done < eval/prompts/story-openings.txt
echo "wrote $(wc -l < "$OUT") prompts to $OUT"
