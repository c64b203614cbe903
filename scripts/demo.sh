#!/usr/bin/env bash
# The main job: what LazyLLM does on a model that knows something.
#  1. The trained long-context model eval/models/synth-llama-6l-256d.gguf answers three long-context
#     questions from eval/data/ (2.5K-3.7K tokens each), prompted exactly as `lazyllm eval` does
#     ("{context}\n\n{input}", greedy, 8 new tokens, first line), with the baseline and with LazyLLM.
#  2. One speed-only line on a random-weight smollm-135m-shaped model at a 4096-token prompt.
# Env: LAZYLLM_CLI (binary, default build/lazyllm), THREADS (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${LAZYLLM_CLI:-build/lazyllm}
THREADS=${THREADS:-$(nproc)}
MODEL=eval/models/synth-llama-6l-256d.gguf
RANDOM_MODEL=models/random-smollm-135m-q8_0.gguf
RANDOM_LEN=2048
export BIN THREADS MODEL

echo "LazyLLM demo: $THREADS threads, default schedule (0.3:0.5,0.6:0.5,0.9:0.5: keep half of the"
echo "tokens still alive at 30%, 60% and 90% of depth)."
echo "  TTFT     = time to first token (prefill + choosing the first token), baseline / LazyLLM"
echo "  computed = share of the prompt's (token, layer) pairs LazyLLM computed in prefill"
echo
echo "== 1. trained model $MODEL: long-context questions =="
python3 - <<'EOF'
import json, os, re, subprocess, tempfile

# (dataset, line index) of eval/data/<dataset>.jsonl
SAMPLES = [("synth_passkey", 46), ("synth_kv_retrieval", 36), ("synth_multidoc_qa", 58)]

def run(prompt_file, lazy):
    cmd = [os.environ["BIN"], "run", "-m", os.environ["MODEL"], "-f", prompt_file, "-n", "8",
           "--temp", "0", "--json", "-t", os.environ["THREADS"]] + (["--lazy"] if lazy else [])
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    answer = out["text"].removeprefix(" ").split("\n")[0]  # what eval scores for these sets
    computed = out["lazy"]["prefill_computed_fraction"] if lazy else 1.0
    return answer, out["ttft_ms"], computed, out["prompt_tokens"]

def norm(s):  # eval's qa_f1 normalization, roughly: case and punctuation do not count
    return re.sub(r"[^\w\s]", "", s.lower()).split()

print(f"{'question':<20} {'tokens':>6}  {'expected':<9} {'baseline':<10} {'LazyLLM':<10} "
      f"{'TTFT base':>9} {'TTFT lazy':>9} {'speedup':>7} {'computed':>8}")
right = [0, 0]
for dataset, index in SAMPLES:
    with open(f"eval/data/{dataset}.jsonl") as f:
        sample = json.loads(f.readlines()[index])
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as p:
        p.write(sample["context"] + "\n\n" + sample["input"])  # eval's generic template
        p.flush()
        base, ttft_b, _, n = run(p.name, False)
        lazy, ttft_l, computed, _ = run(p.name, True)
    exp = sample["answers"][0]
    mark = lambda a: a + ("" if norm(a) == norm(exp) else " (wrong)")
    print(f"{dataset.removeprefix('synth_') + ':' + str(index):<20} {n:>6}  {exp:<9} {mark(base):<10} "
          f"{mark(lazy):<10} {ttft_b:>7.0f}ms {ttft_l:>7.0f}ms {ttft_b / ttft_l:>6.2f}x {computed:>8.1%}")
    right[0] += norm(base) == norm(exp)
    right[1] += norm(lazy) == norm(exp)
print(f"correct: baseline {right[0]}/{len(SAMPLES)}, LazyLLM {right[1]}/{len(SAMPLES)}")
EOF

echo
echo "== 2. speed only: RANDOM weights, smollm-135m shape (q8_0, 30 layers), $RANDOM_LEN-token prompt =="
if [ ! -f "$RANDOM_MODEL" ]; then
  mkdir -p "$(dirname "$RANDOM_MODEL")"
  "$BIN" gen-model --shape smollm-135m --dtype q8_0 -t "$THREADS" -o "$RANDOM_MODEL" > /dev/null
fi
"$BIN" bench -m "$RANDOM_MODEL" --prompt-len "$RANDOM_LEN" --gen-len 1 --reps 1 --warmup 0 \
    -t "$THREADS" --lazy --json |
  python3 -c 'import json, sys; d = json.load(sys.stdin)
b, l, c = d["ttft_ms_baseline"], d["ttft_ms_lazy"], d["computed_fraction"]
print(f"TTFT baseline {b:.0f}ms, LazyLLM {l:.0f}ms: {b / l:.2f}x sooner, computed {c:.1%}")'

echo
echo "In short: LazyLLM computes only the tokens that matter at deeper layers (about half of the prompt"
echo "here), so the first token comes ~2x sooner; the answer columns show whether that cost any accuracy."
