#!/usr/bin/env bash
# Runs the main job: a generation with and without LazyLLM on MODEL (default: a random
# smollm-135m-shaped model generated on the spot, since no weights can be downloaded here).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/lazyllm
if [ -z "${MODEL:-}" ]; then
  MODEL=models/random-smollm-135m-q8_0.gguf
  if [ ! -f "$MODEL" ]; then
    mkdir -p models
    echo "no MODEL given: generating a random-weight smollm-135m model at $MODEL"
    $BIN gen-model --shape smollm-135m --dtype q8_0 -o "$MODEL"
  fi
fi
PROMPT=${PROMPT:-"Once upon a time, in a land far away, there lived a little robot who loved to read books."}
$BIN info -m "$MODEL"
echo; echo "== baseline =="
$BIN run -m "$MODEL" -p "$PROMPT" -n 32 --temp 0
echo; echo "== LazyLLM (default schedule) =="
$BIN run -m "$MODEL" -p "$PROMPT" -n 32 --temp 0 --lazy
