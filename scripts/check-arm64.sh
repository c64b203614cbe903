#!/usr/bin/env bash
# arm64 (aarch64): cross build of the whole project and its kernel and model tests under
# qemu-user, with Debian's cross compiler and Debian's :arm64 library packages unpacked into a
# private sysroot. Changes nothing on the machine: no dpkg --add-architecture, no package
# installed; needs no root.
#
#   scripts/check-arm64.sh                 sysroot, cross build, tests under qemu-aarch64
#   scripts/check-arm64.sh --build-only    sysroot and cross build; no tests
#   scripts/check-arm64.sh --syntax [FILE...]
#                                          only aarch64-linux-gnu-g++ -fsyntax-only over every .cpp
#                                          of src/ and tools/cli (or FILEs), all of Highway's Arm
#                                          targets, against this machine's headers (~70 s a core)
#
# Steps of the full run:
#  1. sysroot: a private apt configuration (state, lists and cache under ARM64_WORK) with arm64 as
#     its architecture, built from this machine's Debian sources, resolves and downloads the
#     :arm64 -dev packages of scripts/setup.sh's set (and their libraries), and dpkg -x unpacks
#     them into ARM64_WORK/sysroot. The C library's headers and startup files come from the
#     cross compiler's /usr/aarch64-linux-gnu, so libc6-dev & co. are downloaded but not unpacked.
#     Kept between runs (a stamp names the package set).
#  2. qemu: qemu-aarch64 or qemu-aarch64-static from PATH, else qemu-user-static's .deb for this
#     machine downloaded through the same private apt and unpacked under ARM64_WORK.
#  3. build: cmake/aarch64-linux-gnu.cmake, Release, -DLAZYLLM_CUDA=OFF, in ARM64_BUILD; every
#     target (library, CLI, server, tests, kernel benchmark).
#  4. tests: the test binary under qemu-aarch64 -L sysroot with ARM64_TEST_FILTER, bounded by
#     ARM64_TEST_TIMEOUT, as JOBS gtest shards at a time (qemu-user runs a process on one core,
#     so 2 cores take about half the time); the tests that run the CLI start the arm64 CLI through qemu too
#     (LAZYLLM_TEST_CLI). The run's CPU is qemu's `max` with 128-bit SVE vectors
#     (ARM64_MAIN_CPU), so Highway dispatches its SVE2_128 kernels, as on Neoverse V2/N2 cores; the
#     CpuDispatch tests cap them at NEON (Apple, Graviton 2, Ampere Altra). ARM64_SVE_VL=32,64
#     (bytes) reruns the kernel tests at those vector lengths (Highway's SVE_256 and SVE2 targets).
#     qemu 7.2 runs SVE code with vectors over 128 bits far slower than at 128 bits (Debian's
#     build on 2 x86-64 cores: the kernel tests 24 s at 128-bit vectors, 515 s at 256), so those
#     reruns leave out the large-shape matmul tests (the same kernels over more rows, 450 of the
#     515 s), and the main run does not take qemu's default 512-bit vectors.
#
# What the default filter leaves out, and why (every run prints it):
#  - EvalModel.*: the trained eval model end to end, about 25 s each natively and over 10 minutes
#    under emulation; CalibrateCli.*: `lazyllm calibrate` over the same model, about 4 s natively
#    and several minutes under emulation (the search itself is covered by Calibrate.*);
#    CodeModel.PredictsCodeItNeverSaw: the code model's likelihood of 320 tokens, 1.5 s natively
#    and 3.5 minutes under emulation (its file and tokenizer stay checked: CodeModel.ShapeAndTokenizer);
#  - ServerAuth.KeyFromEnvironmentOrFileIsEnforcedAndNeverShown: execs the CLI binary itself, which
#    qemu-user cannot do for an arm64 program without a machine-wide binfmt_misc entry;
#  - ServerPrefill.*, ServerLimits.*: wall-clock deadlines and slow-client timeouts, which
#    emulation stretches (HTTP logic, nothing arm64-specific);
#  - SessionBatch.PooledKvIsBitwiseTheSessionsOwnCache: four sequences of up to 1000 tokens, twice
#    over, through a 1024-wide model; 5.5 s natively and over 10 minutes under emulation. On the
#    CPU the KV pool only counts pages (host logic, nothing arm64-specific); the other SessionBatch
#    tests run;
#  - the CUDA tests skip (no GPU, CUDA off); the CTest scripts (server_e2e, the eval set check) and
#    the fuzzers are not run.
#
# Environment:
#   ARM64_WORK          downloads and the sysroot (default: ARM64_BUILD/deps)
#   ARM64_BUILD         the build directory (default: build-arm64)
#   ARM64_TEST_FILTER   gtest filter (default below)
#   ARM64_TEST_TIMEOUT  seconds for each test run (default 1800)
#   ARM64_MAIN_CPU      QEMU_CPU of the main run (default: max,sve-default-vector-length=16)
#   ARM64_SVE_VL        extra SVE vector lengths in bytes for the kernel tests, e.g. 32,64
#                       (default: none)
#   JOBS                build jobs (default nproc); CXX_ARM64 (default aarch64-linux-gnu-g++)
# Needs: g++-aarch64-linux-gnu, cmake, ninja-build, pkg-config, apt-get and dpkg-deb (Debian).
#   apt-get install --no-install-recommends g++-aarch64-linux-gnu
# Exit status: 0 built and every test run passed, 1 a build or test failed, 2 setup error.
set -euo pipefail

cd "$(git rev-parse --show-toplevel)"
CXX=${CXX_ARM64:-aarch64-linux-gnu-g++}
JOBS=${JOBS:-$(nproc)}
start=$SECONDS

need_cross_compiler() {
  if ! command -v "$CXX" >/dev/null; then
    echo "check-arm64.sh: $CXX not found. Install the cross compiler:" >&2
    echo "  apt-get install --no-install-recommends g++-aarch64-linux-gnu" >&2
    exit 2
  fi
}

# ---------------------------------------------------------------------------- --syntax
if [[ ${1:-} == --syntax ]]; then
  shift
  need_cross_compiler
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
  exit
fi

run_tests=1
if [[ ${1:-} == --build-only ]]; then
  run_tests=0
  shift
fi
if (($#)); then
  echo "usage: scripts/check-arm64.sh [--build-only | --syntax [FILE...]]" >&2
  exit 2
fi
need_cross_compiler
for tool in cmake ninja pkg-config apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "check-arm64.sh: $tool not found" >&2; exit 2; }
done

BUILD=${ARM64_BUILD:-build-arm64}
WORK=${ARM64_WORK:-$BUILD/deps}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
SYSROOT=$WORK/sysroot
SKIPPED_TESTS='EvalModel.*:CalibrateCli.*:CodeModel.PredictsCodeItNeverSaw:ServerAuth.KeyFromEnvironmentOrFileIsEnforcedAndNeverShown:ServerPrefill.*:ServerLimits.*:SessionBatch.PooledKvIsBitwiseTheSessionsOwnCache'
MAIN_CPU=${ARM64_MAIN_CPU:-max,sve-default-vector-length=16}
KERNEL_TESTS='Matmul*:Quant*:QuantizeRowQ8.*:CpuDispatch.*:VecOps.*'
LARGE_KERNEL_TESTS='*.LargerShapesAgreeAcrossThreadCounts/*:*.MatchesReferenceOnEveryThreadCount/*_n300'
FILTER=${ARM64_TEST_FILTER:-"-$SKIPPED_TESTS"}
TIMEOUT=${ARM64_TEST_TIMEOUT:-1800}

# The build set of scripts/setup.sh (its -dev libraries), plus the run-time C and C++ libraries
# that qemu's loader takes from the sysroot.
PACKAGES=(libhwy-dev libopenblas-dev libfmt-dev nlohmann-json3-dev libcli11-dev libcpp-httplib-dev
          libgtest-dev libgmock-dev libicu-dev libboost-math-dev libabsl-dev libc6 libgcc-s1 libstdc++6)
# Downloaded as dependencies, not unpacked: the cross compiler brings its own C library headers
# and startup files, and a second copy of them ahead of its C++ headers breaks <cmath> & co.
SKIP_UNPACK='^(libc6-dev|linux-libc-dev|libc-dev-bin|libcrypt-dev|libtirpc-dev|libnsl-dev|rpcsvc-proto)_'

# ---------------------------------------------------------------------------- private apt
APT=$WORK/apt
host_arch=$(dpkg --print-architecture)
apt_opts=(-o "APT::Architecture=arm64" -o "APT::Architectures::=arm64" -o "APT::Architectures::=$host_arch"
          -o "Dir::State=$APT/state" -o "Dir::State::status=$APT/state/status" -o "Dir::Cache=$APT/cache"
          -o "Dir::Etc::SourceList=$APT/sources.list" -o "Dir::Etc::SourceParts=$APT/sources.list.d"
          -o "Dir::Etc::Parts=$APT/apt.conf.d" -o "Dir::Etc::Preferences=$APT/preferences"
          -o "Dir::Etc::PreferencesParts=$APT/preferences.d" -o "Debug::NoLocking=1"
          -o "APT::Sandbox::User=$(id -un)" -o "Acquire::Languages=none")

# This machine's Debian archives (deb822 .sources and one-line .list files), limited to arm64 and
# this machine's architecture (for qemu-user-static).
write_sources() {
  mkdir -p "$APT"/{state/lists/partial,cache/archives/partial,sources.list.d,apt.conf.d,preferences.d}
  : >"$APT/state/status"
  : >"$APT/preferences"
  : >"$APT/sources.list"
  rm -f "$APT"/sources.list.d/*
  local f n=0
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    # Stanzas (blank-line separated) of Debian's own archives; Architectures set to ours.
    awk -v archs="arm64 $host_arch" -v RS= -v ORS='\n\n' '
      /URIs:[^\n]*debian/ && !/Enabled: *no/ {
        gsub(/\nArchitectures:[^\n]*/, "")
        sub(/\n/, "\nArchitectures: " archs "\n")
        print
      }' "$f" >"$APT/sources.list.d/$n.sources"
    n=$((n + 1))
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    grep -E '^deb[[:space:]].*debian' "$f" | grep -v '\[.*arch=' |
      sed -E "s/^deb[[:space:]]+(\[([^]]*)\][[:space:]]+)?/deb [arch=arm64,$host_arch \2] /" >>"$APT/sources.list" || true
  done
  if ! grep -qs . "$APT/sources.list" "$APT"/sources.list.d/*.sources; then
    echo "check-arm64.sh: no Debian archive in /etc/apt/sources.list{,.d} to take arm64 packages from" >&2
    exit 2
  fi
}

stamp="packages: ${PACKAGES[*]} skip: $SKIP_UNPACK"
t0=$SECONDS
if [[ -f $SYSROOT/.stamp && $(cat "$SYSROOT/.stamp") == "$stamp" ]]; then
  echo "== sysroot: $SYSROOT (kept from an earlier run; remove it to fetch again) =="
else
  echo "== sysroot: Debian's :arm64 packages into $SYSROOT =="
  write_sources
  apt-get "${apt_opts[@]}" -qq update
  rm -f "$APT"/cache/archives/*.deb
  # An empty status file: every dependency is downloaded (nothing counts as installed).
  apt-get "${apt_opts[@]}" -qq -y --no-install-recommends --download-only install "${PACKAGES[@]/%/:arm64}" >/dev/null
  rm -rf "$SYSROOT"
  mkdir -p "$SYSROOT"
  n=0
  for deb in "$APT"/cache/archives/*.deb; do
    if [[ $(basename "$deb") =~ $SKIP_UNPACK ]]; then continue; fi
    dpkg-deb -x "$deb" "$SYSROOT"
    n=$((n + 1))
  done
  # What update-alternatives does for OpenBLAS on install: the generic names point at the
  # pthread variant.
  lib=$SYSROOT/usr/lib/aarch64-linux-gnu
  for l in libopenblas.so libopenblas.so.0 libblas.so.3 liblapack.so.3; do
    [[ -e $lib/openblas-pthread/$l ]] && ln -sfn "openblas-pthread/$l" "$lib/$l"
  done
  [[ -e $lib/libopenblas.so.0 && -e $SYSROOT/lib/ld-linux-aarch64.so.1 ]] || {
    echo "check-arm64.sh: the sysroot lacks OpenBLAS or the arm64 loader" >&2
    exit 2
  }
  echo "$stamp" >"$SYSROOT/.stamp"
  echo "unpacked $n packages ($(du -sh "$SYSROOT" | cut -f1))"
fi
t_sysroot=$((SECONDS - t0))

# ---------------------------------------------------------------------------- qemu
t0=$SECONDS
QEMU=
if ((run_tests)); then
  QEMU=$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true)
  if [[ -z $QEMU ]]; then
    QEMU=$WORK/qemu/usr/bin/qemu-aarch64-static
    if [[ ! -x $QEMU ]]; then
      echo "== qemu: qemu-user-static ($host_arch) into $WORK/qemu =="
      [[ -f $APT/sources.list ]] || { write_sources; apt-get "${apt_opts[@]}" -qq update; }
      rm -rf "$WORK/qemu" "$WORK/qemu-deb"
      mkdir -p "$WORK/qemu-deb"
      (cd "$WORK/qemu-deb" && apt-get "${apt_opts[@]}" -qq download "qemu-user-static:$host_arch")
      dpkg-deb -x "$WORK"/qemu-deb/qemu-user-static_*.deb "$WORK/qemu"
      rm -rf "$WORK/qemu-deb"
    fi
  fi
  echo "== qemu: $QEMU ($("$QEMU" --version | head -n 1)) =="
fi
t_qemu=$((SECONDS - t0))

# ---------------------------------------------------------------------------- build
t0=$SECONDS
echo "== build (arm64, Release, $JOBS jobs) in $BUILD =="
# Test discovery at ctest time, not after the link: the build needs no emulator.
mkdir -p "$BUILD"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake" \
  -DLAZYLLM_ARM64_SYSROOT="$SYSROOT" -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_BUILD_TYPE=Release \
  -DLAZYLLM_CUDA=OFF -DCMAKE_GTEST_DISCOVER_TESTS_DISCOVERY_MODE=PRE_TEST >"$BUILD/configure.log" 2>&1 || {
  cat "$BUILD/configure.log"
  exit 1
}
ninja -C "$BUILD" -j "$JOBS"
"${CXX%g++}readelf" -h "$BUILD/tests/lazyllm_tests" | grep -q 'Machine: *AArch64' || {
  echo "check-arm64.sh: $BUILD/tests/lazyllm_tests is not an arm64 binary" >&2
  exit 1
}
t_build=$((SECONDS - t0))

summary() {
  echo "check-arm64.sh: times: sysroot ${t_sysroot} s, qemu ${t_qemu} s, build ${t_build} s, tests ${t_tests:-0} s;" \
       "total $((SECONDS - start)) s"
}
if ((!run_tests)); then
  echo "check-arm64.sh: built for arm64; tests not run (--build-only)"
  summary
  exit 0
fi

# ---------------------------------------------------------------------------- tests
t0=$SECONDS
echo "== tests under qemu-aarch64 (timeout ${TIMEOUT} s a run) =="
echo "filter: $FILTER"
if [[ -z ${ARM64_TEST_FILTER:-} ]]; then
  echo "left out: EvalModel.*, CalibrateCli.*, CodeModel.PredictsCodeItNeverSaw (the trained models end"
  echo "  to end: minutes under emulation);"
  echo "  ServerAuth.KeyFromEnvironmentOrFileIsEnforcedAndNeverShown (execs the arm64 CLI itself, which"
  echo "  qemu-user cannot without a machine-wide binfmt_misc entry); ServerPrefill.*, ServerLimits.*"
  echo "  (wall-clock deadlines that emulation stretches); SessionBatch.PooledKvIsBitwiseTheSessionsOwnCache"
  echo "  (long sequences, minutes under emulation; host-side page counting on the CPU);"
  echo "  CUDA tests skip (no GPU); the CTest scripts"
  echo "  (server_e2e, eval set check) and fuzzers are not run"
fi
# The tests that run the CLI start the arm64 CLI through qemu as well.
LAZYLLM_TEST_CLI="$(printf '%q ' "$QEMU" -L "$SYSROOT")$(printf '%q' "$(cd "$BUILD" && pwd)/lazyllm")"
export LAZYLLM_TEST_CLI
passed=0 failed=0 skipped=0 status=0
RESULTS=$(mktemp -d)
trap 'rm -rf "$RESULTS"' EXIT
# run_suite LABEL QEMU_CPU FILTER SHARD SHARDS: one gtest shard under qemu; its output goes to
# $RESULTS/LABEL-SHARD.log and its counts ("passed failed skipped status") to .counts.
run_suite() {
  local label=$1 cpu=$2 filter=$3 shard=$4 shards=$5 rc=0
  local out="$RESULTS/${label//[^A-Za-z0-9]/_}-$shard"
  QEMU_CPU=$cpu GTEST_SHARD_INDEX=$shard GTEST_TOTAL_SHARDS=$shards timeout --kill-after=30 "$TIMEOUT" \
    "$QEMU" -L "$SYSROOT" "$BUILD/tests/lazyllm_tests" --gtest_filter="$filter" --gtest_brief=1 --gtest_color=no \
    >"$out.log" 2>&1 || rc=$?
  local p f s st=0
  p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out.log" | tail -n 1)
  f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out.log" | tail -n 1)
  s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$out.log" | tail -n 1)
  {
    echo "-- $label (shard $((shard + 1)) of $shards)"
    grep -vE '^(Running main|\[ *(OK|RUN) *\])' "$out.log" | tail -n 60 || true
    if ((rc == 124 || rc == 137)); then
      echo "check-arm64.sh: $label: stopped after ${TIMEOUT} s (ARM64_TEST_TIMEOUT)"
      st=1
    elif ((rc != 0)); then
      echo "check-arm64.sh: $label: exit status $rc"
      st=1
    fi
  } >"$out.report"
  echo "${p:-0} ${f:-0} ${s:-0} $st" >"$out.counts"
}
# The suites run as gtest shards, JOBS of them at a time (qemu-user runs each process on one
# core): the main run in JOBS shards, then each SVE vector length's kernel tests.
jobs_=()
for ((i = 0; i < JOBS; ++i)); do jobs_+=("main run, QEMU_CPU=$MAIN_CPU|$MAIN_CPU|$FILTER|$i|$JOBS"); done
IFS=, read -r -a vls <<<"${ARM64_SVE_VL:-}"
for vl in "${vls[@]}"; do
  filter=$KERNEL_TESTS
  ((vl > 16)) && filter+="-$LARGE_KERNEL_TESTS"
  jobs_+=("SVE vector length $vl bytes (kernel tests)|max,sve-default-vector-length=$vl|$filter|0|1")
done
running=0
for j in "${jobs_[@]}"; do
  IFS='|' read -r label cpu filter shard shards <<<"$j"
  run_suite "$label" "$cpu" "$filter" "$shard" "$shards" &
  if ((++running >= JOBS)); then
    wait -n || true
    running=$((running - 1))
  fi
done
wait
for r in "$RESULTS"/*.report; do cat "$r"; done
for c in "$RESULTS"/*.counts; do
  read -r p f s st <"$c"
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
  if ((st)); then status=1; fi
done
t_tests=$((SECONDS - t0))
echo "arm64 (qemu): $passed passed, $failed failed, $skipped skipped"
summary
exit "$status"
