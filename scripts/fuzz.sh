#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/CMakeLists.txt) with clang (ASan + UBSan) in build-fuzz and
# runs each for a bounded time:
#   gguf_fuzz           the GGUF reader (seeds: small valid GGUF files generated on the spot)
#   request_fuzz        the server's request parser and validator   (seeds: fuzz/corpus/request_fuzz)
#   chat_template_fuzz  chat template detection and rendering         (seeds: fuzz/corpus/chat_template_fuzz)
#   tokenizer_fuzz      both tokenizers on real vocabularies           (seeds: fuzz/corpus/tokenizer_fuzz)
#   config_fuzz         GGUF metadata to tokenizer, config and weights (seeds: fuzz/corpus/config_fuzz)
#   schedule_fuzz       the LazyLLM schedule spec (--prune, a request's lazy.prune) (seeds: fuzz/corpus/schedule_fuzz)
# tokenizer_fuzz reads the vocabularies of the shared test data (../shared beside the repository,
# or $LAZYLLM_SHARED_DIR); without them it is skipped with a message.
#
# Usage: bash scripts/fuzz.sh [SECONDS] [extra libFuzzer flags...]
#   SECONDS is the budget of EACH target (default 45); scripts/test.sh passes $FUZZ_SECONDS.
#   FUZZ_TARGETS="request_fuzz config_fuzz" runs only those targets.
#   FUZZ_JOBS targets run at the same time (default: the number of cores, at most 2).
# Prints the executions of every target. Any crash, hang, leak or sanitizer report fails the
# script (exit 1) and leaves the input in build-fuzz/artifacts/; reproduce it with
#   build-fuzz/fuzz/TARGET build-fuzz/artifacts/TARGET-crash-...
# (tokenizer_fuzz needs LAZYLLM_FUZZ_VOCABS as printed below). New inputs the fuzzers find go to
# a temporary directory; the corpora in the repository are only read.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=${1:-45}
shift || true
ALL_TARGETS="gguf_fuzz request_fuzz chat_template_fuzz tokenizer_fuzz config_fuzz schedule_fuzz"
TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}
NPROC=$(nproc)
JOBS=${FUZZ_JOBS:-$((NPROC < 2 ? NPROC : 2))}
SHARED=${LAZYLLM_SHARED_DIR:-../shared}
SHARED=$(cd "$SHARED" 2>/dev/null && pwd || echo "$SHARED")

cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DLAZYLLM_FUZZ=ON -DLAZYLLM_TESTS=OFF -DLAZYLLM_SANITIZE=OFF -DLAZYLLM_CUDA=OFF > /dev/null
build=()
for t in $TARGETS; do build+=("$t"); [ "$t" = gguf_fuzz ] && build+=(gguf_fuzz_seeds); done
ninja -C build-fuzz "${build[@]}"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p build-fuzz/artifacts

# The vocabularies tokenizer_fuzz runs on: SentencePiece (Llama 2, Phi-3, stories260K) and
# byte-level BPE (GPT-2, DeepSeek LLM with its own pre-tokenizer).
VOCABS=""
for f in vocab/ggml-vocab-llama-spm.gguf vocab/ggml-vocab-gpt-2.gguf vocab/ggml-vocab-phi-3.gguf \
         vocab/ggml-vocab-deepseek-llm.gguf models/stories260K.gguf; do
  [ -f "$SHARED/$f" ] && VOCABS="$VOCABS${VOCABS:+:}$SHARED/$f"
done
export LAZYLLM_FUZZ_VOCABS="$VOCABS"

# run TARGET: one bounded libFuzzer run; its output goes to $WORK/TARGET.log.
run() {
  local t=$1 seeds=fuzz/corpus/$1 flags=()
  shift
  mkdir -p "$WORK/$t.new"
  case $t in
    gguf_fuzz)
      seeds=$WORK/gguf_seeds
      mkdir -p "$seeds"
      ./build-fuzz/fuzz/gguf_fuzz_seeds "$seeds"
      flags=(-max_len=65536) ;;
    tokenizer_fuzz) flags=(-max_len=4096) ;;
    *) flags=(-max_len=8192) ;;
  esac
  [ -f "fuzz/$t.dict" ] && flags+=(-dict="fuzz/$t.dict")
  echo "$t: seed corpus $(ls "$seeds" | wc -l) files, $(cat "$seeds"/* | wc -c) bytes; ${BUDGET}s"
  ./build-fuzz/fuzz/$t -max_total_time="$BUDGET" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/artifacts/$t-" "${flags[@]}" "$@" "$WORK/$t.new" "$seeds"
}

skipped=()
names=()
for t in $TARGETS; do
  if [ "$t" = tokenizer_fuzz ] && [ -z "$VOCABS" ]; then
    skipped+=("tokenizer_fuzz: SKIPPED: no vocabularies under $SHARED (set LAZYLLM_SHARED_DIR to the shared test data)")
    continue
  fi
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  { rc=0; run "$t" "$@" > "$WORK/$t.log" 2>&1 || rc=$?; echo $rc > "$WORK/$t.rc"; } &
  names+=("$t")
done
wait

failed=0
echo "== fuzz results (${BUDGET}s per target) =="
for t in "${names[@]}"; do
  rc=$(cat "$WORK/$t.rc" 2>/dev/null || echo 1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$WORK/$t.log" | tail -n 1)
  if [ $rc -ne 0 ]; then
    failed=1
    echo "---- $t: FAILED (exit $rc); log tail:"
    tail -n 40 "$WORK/$t.log"
    echo "----"
  fi
  printf '%-20s %s  executions: %s\n' "$t" "$([ $rc -eq 0 ] && echo ok || echo FAILED)" "${execs:-?}"
done
for s in "${skipped[@]}"; do echo "$s"; done
case " ${names[*]} " in *" tokenizer_fuzz "*) echo "(tokenizer_fuzz ran with LAZYLLM_FUZZ_VOCABS=$VOCABS)" ;; esac
if [ $failed -ne 0 ]; then
  echo "fuzz: FAILED; inputs in build-fuzz/artifacts/"
  exit 1
fi
echo "fuzz: no crash"
