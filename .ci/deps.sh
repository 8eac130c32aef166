#!/usr/bin/env bash
# Installs the Debian packages uvgrpc builds and tests with, plus any named
# as arguments (the benchmark's peers), only those that are missing, so a
# second run costs one dpkg query. A package Debian does not have is
# reported and skipped.
#   bash .ci/deps.sh [EXTRA_PACKAGE...]
set -euo pipefail

packages=(
  gcc g++ pkg-config meson ninja-build valgrind
  libuv1-dev libnghttp2-dev zlib1g-dev libprotobuf-c-dev protobuf-c-compiler
  # the interop tests and the demo's client: Python grpcio and its messages
  grpc-proto python3-grpcio python3-protobuf protobuf-compiler
  "$@"
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
  installable=()
  for p in "${missing[@]}"; do
    if apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
      installable+=("$p")
    else
      echo "deps.sh: Debian has no package $p; skipped" >&2
    fi
  done
  [ ${#installable[@]} -eq 0 ] ||
    apt-get install -y -qq --no-install-recommends "${installable[@]}" >/dev/null
fi
