#!/usr/bin/env bash
# The demo: installs missing dependencies, builds lmkv (Release), and runs `lmkv experiment` with
# its defaults: a 1,000,000-token context through the GPU tier (when a GPU is present), a small
# pinned host tier and RocksDB on disk. Extra arguments go to `lmkv experiment`, e.g.
#   scripts/demo.sh --tokens 10000000 --json report.json
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
generator=()
command -v ninja > /dev/null && [ ! -f build-release/CMakeCache.txt ] && generator=(-G Ninja)
cmake -S . -B build-release "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DLMKV_BUILD_TESTS=OFF -DLMKV_BUILD_BENCHMARKS=OFF > /dev/null
cmake --build build-release -j"$(nproc)" --target lmkv_cli
exec build-release/lmkv experiment "$@"
