#!/usr/bin/env bash
# The test command: installs missing dependencies, builds lmkv (with CUDA when nvcc is found),
# and runs the whole CTest suite. GPU tests report as skipped on machines without a GPU.
#   scripts/test.sh                            # build/ and every test
#   LMKV_BUILD_DIR=b scripts/test.sh -L kvstore   # extra args go to ctest
#   LMKV_SANITIZERS=1 scripts/test.sh          # then: the CPU suite under ASan+UBSan, the
#                                              # concurrency tests under TSan, and the five
#                                              # fuzzers for 45 s each (what CI runs; about 20
#                                              # minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)

# configure_and_build <dir> <targets, or all> [cmake args...]
configure_and_build() {
  local dir=$1 targets=$2
  shift 2
  local generator=()
  command -v ninja > /dev/null && [ ! -f "$dir/CMakeCache.txt" ] && generator=(-G Ninja)
  cmake -S . -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
  # shellcheck disable=SC2086  # a list of targets
  cmake --build "$dir" -j"$jobs" --target $targets
}

build=${LMKV_BUILD_DIR:-build}
# shellcheck disable=SC2086  # LMKV_CMAKE_ARGS is a list of arguments
configure_and_build "$build" all ${LMKV_CMAKE_ARGS:-}
ctest --test-dir "$build" --output-on-failure -j"$jobs" "$@"

if [ "${LMKV_SANITIZERS:-0}" = 1 ]; then
  echo "== AddressSanitizer + UndefinedBehaviorSanitizer: the CPU suite"
  configure_and_build build-asan all -DLMKV_SANITIZER=address -DLMKV_ENABLE_CUDA=OFF \
    -DLMKV_BUILD_BENCHMARKS=OFF
  # (not the install test: its examples would link the instrumented library without the runtime)
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE gpu -E capi_install_and_examples
  echo "== ThreadSanitizer: the concurrency and store tests"
  configure_and_build build-tsan "tiered_store_concurrency_test tiered_store_test store_writer_child" \
    -DLMKV_SANITIZER=thread -DLMKV_ENABLE_CUDA=OFF -DLMKV_BUILD_BENCHMARKS=OFF
  TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp halt_on_error=1" \
    ctest --test-dir build-tsan --output-on-failure -j"$jobs" -R 'Concurrency|TieredStore\.'
  echo "== libFuzzer: the on-disk decoders, lmkv experiment arguments, C API call sequences"
  LMKV_FUZZ_SECONDS=${LMKV_FUZZ_SECONDS:-45} scripts/fuzz.sh
fi
