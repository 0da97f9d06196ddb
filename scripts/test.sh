#!/usr/bin/env bash
# The test command: installs missing dependencies, builds lmkv (with CUDA when nvcc is found),
# and runs the whole CTest suite. GPU tests report as skipped on machines without a GPU.
#   scripts/test.sh                   # build/ and every test
#   LMKV_BUILD_DIR=b scripts/test.sh -L kvstore   # extra args go to ctest
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build=${LMKV_BUILD_DIR:-build}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
[ -f "$build/CMakeCache.txt" ] && generator=()
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${LMKV_CMAKE_ARGS:-}
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" "$@"
