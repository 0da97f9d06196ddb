#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for LMKV_FUZZ_SECONDS
# seconds (default 60) from the seed corpus in tests/fuzz/corpus. New inputs found go to a scratch
# copy of the corpus, not into the repository.
#   scripts/fuzz.sh [target...]
# Targets: value_decoder landmark_decoder key_decoder (the on-disk decoders, compiled alone), and
# experiment_args capi (argument parsing, C API call sequences: the whole library, built with
# CMake in $LMKV_FUZZ_DIR/lib).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${LMKV_FUZZ_SECONDS:-60}
out=${LMKV_FUZZ_DIR:-build-fuzz}
mkdir -p "$out"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(value_decoder landmark_decoder key_decoder experiment_args capi)
library_targets=(experiment_args capi)
sources="kvstore/status.cc kvstore/block.cc kvstore/key_codec.cc kvstore/value_codec.cc"
flags="-std=c++17 -O1 -g -I. -Iinclude -Itests/fuzz -DFMT_HEADER_ONLY"
needs_library=0
for t in "${targets[@]}"; do
  [[ " ${library_targets[*]} " == *" $t "* ]] && needs_library=1
done
if [ $needs_library = 1 ]; then
  generator=()
  command -v ninja > /dev/null && [ ! -f "$out/lib/CMakeCache.txt" ] && generator=(-G Ninja)
  CC=clang CXX=clang++ cmake -S . -B "$out/lib" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DLMKV_SANITIZER=address -DLMKV_BUILD_FUZZERS=ON -DLMKV_ENABLE_CUDA=OFF \
    -DLMKV_BUILD_TESTS=OFF -DLMKV_BUILD_BENCHMARKS=OFF > "$out/lib-configure.log"
  cmake --build "$out/lib" -j"$(nproc)" --target experiment_args_fuzz capi_fuzz > "$out/lib-build.log"
fi
# Known false leak reports (the file says why).
export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
for t in "${targets[@]}"; do
  if [[ " ${library_targets[*]} " == *" $t "* ]]; then
    cp "$out/lib/${t}_fuzz" "$out/${t}_fuzz"
  else
    clang++ $flags -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
      "tests/fuzz/${t}_fuzz.cc" $sources -o "$out/${t}_fuzz"
  fi
  rm -rf "$out/corpus-$t"
  cp -r "tests/fuzz/corpus/$t" "$out/corpus-$t"
  echo "fuzzing $t for ${seconds}s"
  rc=0
  "$out/${t}_fuzz" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$out/$t-" \
    "$out/corpus-$t" > "$out/$t.log" 2>&1 || rc=$?
  grep -E '^stat::number_of_executed_units' "$out/$t.log" || true
  if [ $rc -ne 0 ]; then
    echo "fuzz target $t failed (exit $rc); the input is in $out/$t-*:"
    tail -30 "$out/$t.log"
    exit $rc
  fi
done
