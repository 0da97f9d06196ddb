#!/usr/bin/env bash
# Installs lmkv to a temporary prefix, builds the examples out of tree against it (the C engine
# with find_package(lmkv) and again with pkg-config, the C++ example with find_package), and runs
# them.   install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" > "$work/install.log"
test -f "$prefix/include/lmkv/lmkv.h"
test -f "$prefix/lib/cmake/lmkv/lmkvConfig.cmake"
test -f "$prefix/lib/pkgconfig/lmkv.pc"
# A versioned SONAME.
readelf -d "$prefix"/lib/liblmkv.so | grep -q 'SONAME.*liblmkv.so.0'
# Only the API's symbols: C functions lmkv_*, C++ symbols of namespace lmkv; no FAISS.
if nm -D --defined-only "$prefix/lib/liblmkv.so" | awk '{print $3}' | grep -v -E '^(lmkv_|_Z.*4lmkv|_init$|_fini$)' | grep -q .; then
  echo "symbols outside the API are exported:"; nm -D --defined-only "$prefix/lib/liblmkv.so" | awk '{print $3}' | grep -v -E '^(lmkv_|_Z.*4lmkv)' | head
  exit 1
fi
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
for example in c_engine cpp_api; do
  cmake -S "$source/examples/$example" -B "$work/$example" "${generator[@]}" \
    -DCMAKE_PREFIX_PATH="$prefix" > "$work/$example.log"
  cmake --build "$work/$example" >> "$work/$example.log"
done
"$work/c_engine/c_engine" "$work/data-cmake" 600
"$work/cpp_api/cpp_api" "$work/data-cpp"
# The C engine again, compiled by hand from pkg-config's flags.
flags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs lmkv)
# shellcheck disable=SC2086  # flags is a list
cc -O2 -o "$work/c_engine_pkgconfig" "$source/examples/c_engine/main.c" $flags -lm \
  -Wl,-rpath,"$prefix/lib"
"$work/c_engine_pkgconfig" "$work/data-pkgconfig" 600
echo "install test passed"
