#!/usr/bin/env bash
# Packs a CUDA build for a GPU machine that lacks the Debian build packages: the binaries, the
# non-system shared libraries they load (Highway, OpenBLAS and its Fortran runtime), the scripts,
# and the test data from ../shared, as DEST/bundle.tar.xz. There:
#   tar xf bundle.tar.xz && LAZYLLM_PREBUILT=$PWD/prebuilt LAZYLLM_SHARED_DIR=$PWD/shared \
#     bash scripts/gpu-check.sh
# Usage: bash scripts/gpu-bundle.sh BUILD_DIR DEST
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:?build dir}
DEST=${2:?destination dir}
SHARED=${LAZYLLM_SHARED_DIR:-../shared}
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/prebuilt/bin" "$STAGE/prebuilt/lib" "$STAGE/shared" "$DEST"
cp "$BUILD/lazyllm" "$BUILD/tests/lazyllm_tests" "$STAGE/prebuilt/bin/"
[ -f "$BUILD/lazyllm_bench_cuda" ] && cp "$BUILD/lazyllm_bench_cuda" "$STAGE/prebuilt/bin/"
strip "$STAGE/prebuilt/bin/"*
# Libraries outside glibc/libstdc++ and CUDA (the GPU machine has its own CUDA 13).
ldd "$BUILD/lazyllm" "$BUILD/tests/lazyllm_tests" | awk '/=>/ {print $3}' | sort -u |
  grep -Ev 'libc\.so|libm\.so|libstdc\+\+|libgcc_s|libpthread|libdl|librt|ld-linux|/cuda' |
  while read -r lib; do cp -L "$lib" "$STAGE/prebuilt/lib/"; done
cp -r scripts "$STAGE/"
cp -r "$SHARED/models" "$SHARED/golden" "$SHARED/vocab" "$STAGE/shared/" 2>/dev/null || echo "note: no ../shared test data"
tar -C "$STAGE" -cJf "$DEST/bundle.tar.xz" prebuilt scripts shared
ls -la "$DEST/bundle.tar.xz"
