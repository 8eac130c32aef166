#!/usr/bin/env bash
# Installs the Debian packages uvgrpc builds and tests with, only those that
# are missing, so a second run costs one dpkg query.
set -euo pipefail

packages=(
  gcc g++ pkg-config meson ninja-build valgrind
  libuv1-dev libnghttp2-dev zlib1g-dev libprotobuf-c-dev protobuf-c-compiler
  # the interop tests and the demo's client: Python grpcio and its messages
  grpc-proto python3-grpcio python3-protobuf protobuf-compiler
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
