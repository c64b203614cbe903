#!/usr/bin/env bash
# arm64 (aarch64) syntax check with the cross compiler: every .cpp of src/ and tools/cli (the
# CUDA sources aside) through aarch64-linux-gnu-g++ -fsyntax-only, which instantiates the
# Highway kernels for all of its Arm targets (NEON, SVE, SVE2, SVE_256, SVE2_128). It links and
# runs nothing: headers come from this machine's /usr/include (OpenBLAS's cblas.h from the arm64
# or, failing that, the host's package; they declare the same functions).
#
#   scripts/check-arm64.sh [FILE...]     (default: every .cpp of src/ and tools/cli)
#
# Environment: CXX_ARM64 (default aarch64-linux-gnu-g++), JOBS (default nproc).
# Installs nothing; the cross compiler is not part of scripts/setup.sh:
#   apt-get install --no-install-recommends g++-aarch64-linux-gnu
# Exit status: 0 clean, 1 a file failed, 2 setup error.
set -euo pipefail

cd "$(git rev-parse --show-toplevel)"
CXX=${CXX_ARM64:-aarch64-linux-gnu-g++}
JOBS=${JOBS:-$(nproc)}

if ! command -v "$CXX" >/dev/null; then
  echo "check-arm64.sh: $CXX not found. Install the cross compiler:" >&2
  echo "  apt-get install --no-install-recommends g++-aarch64-linux-gnu" >&2
  exit 2
fi
cblas=
for d in /usr/include/aarch64-linux-gnu/openblas-pthread /usr/include/x86_64-linux-gnu/openblas-pthread \
         /usr/include/openblas; do
  if [[ -f $d/cblas.h ]]; then cblas=$d; break; fi
done
if [[ -z $cblas ]]; then
  echo "check-arm64.sh: no cblas.h (apt-get install libopenblas-dev)" >&2
  exit 2
fi

if (($#)); then
  files=("$@")
else
  mapfile -t files < <(find src tools/cli -name '*.cpp' -not -path '*/cuda/*' | sort)
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
start=$SECONDS
# -Wno-psabi: GCC's notes that Arm's argument passing of some vector types changed in GCC 9.
flags=(-std=c++20 -fsyntax-only -Wall -Wextra -Wno-unused-parameter -Wno-psabi -Isrc -Iinclude -I/usr/include
       "-I$cblas")
export CXX logs
# shellcheck disable=SC2016  # $1 and $logs expand in the inner bash
printf '%s\n' "${files[@]}" | xargs -P "$JOBS" -I{} bash -c '
  log="$logs/$(echo "$1" | tr / _).log"
  if ! "$CXX" "${@:2}" "$1" >"$log" 2>&1; then touch "$log.failed"; fi' _ {} "${flags[@]}"

failed=0
for f in "${files[@]}"; do
  log="$logs/$(echo "$f" | tr / _).log"
  if [[ -e $log.failed ]]; then
    failed=$((failed + 1))
    echo "FAILED: $f"
    head -n 40 "$log"
  elif [[ -s $log ]]; then
    echo "warnings: $f"
    head -n 20 "$log"
  fi
done
echo "check-arm64.sh: ${#files[@]} files, $failed failed ($CXX, $((SECONDS - start)) s, $JOBS jobs)"
((failed == 0))
