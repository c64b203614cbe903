#!/usr/bin/env bash
# Format (and optionally clang-tidy) check of the lines changed since a base revision, so that
# old code is never mass-reformatted: only what a change touches must follow .clang-format and
# .clang-tidy.
#
#   scripts/lint.sh [--fix] [--tidy] [BASE]
#
#   BASE     revision to diff the working tree against (committed + staged + unstaged changes,
#            renames followed; untracked files are checked whole). Default: origin/main if it
#            exists, else HEAD (i.e. uncommitted changes only). In CI: the PR's base commit.
#   --fix    rewrite the changed lines in place with clang-format instead of checking them.
#   --tidy   also run clang-tidy on the changed .cpp files (and the .cpp files that include a
#            changed header) from $BUILD_DIR/compile_commands.json, reporting warnings on
#            changed lines only. Slow (~10 s of CPU per file); .cu files are skipped.
#
# Environment: CLANG_FORMAT, CLANG_TIDY (default clang-format, clang-tidy), BUILD_DIR (build),
# JOBS (nproc). Exit status: 0 clean, 1 findings, 2 usage/setup error.
set -euo pipefail

cd "$(git rev-parse --show-toplevel)"
CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
CLANG_TIDY=${CLANG_TIDY:-clang-tidy}
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
PATHS=(src tools tests bench fuzz include)
EXT_RE='\.(cpp|cc|h|hpp|cu|cuh)$'

fix=0 tidy=0 base=
for a in "$@"; do
  case $a in
    --fix) fix=1 ;;
    --tidy) tidy=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "lint.sh: unknown option $a" >&2; exit 2 ;;
    *) base=$a ;;
  esac
done
if [[ -z $base ]]; then
  if git rev-parse -q --verify origin/main >/dev/null; then base=origin/main; else base=HEAD; fi
fi
git rev-parse -q --verify "$base^{commit}" >/dev/null || { echo "lint.sh: bad revision $base" >&2; exit 2; }

# Changed line ranges, one "file start end" per line (end = 0: the whole file).
ranges=$(mktemp); trap 'rm -f "$ranges"' EXIT
git diff -M -U0 --no-color --no-ext-diff --src-prefix=a/ --dst-prefix=b/ "$base" -- "${PATHS[@]}" | awk '
  /^\+\+\+ / { f = ($2 == "/dev/null") ? "" : substr($2, 3); next }
  /^@@ / && f != "" {
    split($3, p, ","); s = substr(p[1], 2); n = (2 in p) ? p[2] : 1
    if (n > 0) print f, s, s + n - 1
  }' | grep -E "^[^ ]*${EXT_RE%\$} " >"$ranges" || true
git ls-files --others --exclude-standard -- "${PATHS[@]}" | grep -E "$EXT_RE" | sed 's/$/ 1 0/' >>"$ranges" || true
files=$(cut -d' ' -f1 "$ranges" | sort -u)
[[ -n $files ]] || { echo "lint.sh: no changed C++/CUDA files since $base"; exit 0; }

line_args() {  # clang-format --lines arguments for file $1
  awk -v f="$1" '$1 == f && $3 != 0 { print "--lines=" $2 ":" $3 }' "$ranges"
}

status=0
nfiles=0
for f in $files; do
  [[ -f $f ]] || continue
  nfiles=$((nfiles + 1))
  mapfile -t la < <(line_args "$f")
  if ((fix)); then
    "$CLANG_FORMAT" -i "${la[@]}" "$f"
  elif ! "$CLANG_FORMAT" --dry-run --Werror "${la[@]}" "$f"; then
    status=1
  fi
done
if ((fix)); then echo "lint.sh: formatted changed lines of $nfiles file(s) since $base"
elif ((status)); then echo "lint.sh: format: changed lines need clang-format (scripts/lint.sh --fix $base)" >&2
else echo "lint.sh: format: $nfiles file(s) clean since $base"; fi

if ((tidy)); then
  db=$BUILD_DIR/compile_commands.json
  [[ -f $db ]] || { echo "lint.sh: $db missing (configure the build first)" >&2; exit 2; }
  # Translation units: changed .cpp files, and .cpp files including a changed header.
  tus=$( {
    for f in $files; do
      case $f in
        *.cpp|*.cc) echo "$f" ;;
        *.h|*.hpp) inc=${f#src/}; inc=${inc#include/}
          git grep -l -F "#include \"$inc\"" -- '*.cpp' '*.cc' || true ;;
      esac
    done } | sort -u | while read -r t; do
      [[ -f $t ]] && grep -qF "\"$PWD/$t\"" "$db" && echo "$t"
    done || true)
  if [[ -z $tus ]]; then echo "lint.sh: tidy: no changed translation units"; exit $status; fi
  # Warnings only on changed lines (every changed file, headers included).
  filter=$(awk 'BEGIN { printf "[" }
    { if ($1 != prev) { if (NR > 1) printf "]},"; printf "{\"name\":\"%s\",\"lines\":[", $1; prev = $1; first = 1 }
      if (!first) printf ","; first = 0
      printf "[%d,%d]", $2, ($3 == 0 ? 1000000000 : $3) }
    END { if (NR) printf "]}"; printf "]" }' <(sort -k1,1 -k2,2n "$ranges"))
  rc=0
  out=$(echo "$tus" | xargs -P "$JOBS" -I{} "$CLANG_TIDY" -p "$BUILD_DIR" --quiet \
          --header-filter="^$PWD/(src|include|tools|tests|bench|fuzz)/" --line-filter="$filter" {} 2>&1) || rc=$?
  found=$(grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error):' <<<"$out" | sort -u || true)
  if ((rc)) && [[ -z $found ]]; then
    tail -n 30 <<<"$out" >&2
    echo "lint.sh: tidy: clang-tidy failed (status $rc; stale $BUILD_DIR?)" >&2
    status=1
  elif [[ -n $found ]]; then
    grep -vE '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$' <<<"$out" >&2
    echo "lint.sh: tidy: $(wc -l <<<"$found") finding(s) on changed lines of $(wc -l <<<"$tus") file(s)" >&2
    status=1
  else
    echo "lint.sh: tidy: $(wc -l <<<"$tus") file(s) clean on changed lines"
  fi
fi
exit $status
