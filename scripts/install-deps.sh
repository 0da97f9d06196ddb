#!/usr/bin/env bash
# Installs the Debian packages lmkv builds against, only those missing (apt-get; sudo when not root).
set -euo pipefail
packages=(
  cmake ninja-build g++ pkg-config clang libclang-rt-dev
  librocksdb-dev libfaiss-dev libopenblas-dev libomp-dev libxxhash-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libfmt-dev libspdlog-dev libcli11-dev nlohmann-json3-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
