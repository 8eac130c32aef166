#!/usr/bin/env bash
# Installs the Debian packages uvgrpc builds and tests with, plus any named
# as arguments (the benchmark's peers), only those that are missing, so a
# second run costs one dpkg query. A package that cannot be installed is a
# failure with apt's own message, never a skip. Then checks that the tools
# the build and the tests run are really there.
#   bash .ci/deps.sh [EXTRA_PACKAGE...]
set -euo pipefail

packages=(
  gcc g++ pkg-config meson ninja-build valgrind
  libuv1-dev libnghttp2-dev zlib1g-dev libjansson-dev libprotobuf-c-dev
  protobuf-c-compiler
  # protoc-gen-uvgrpc reads descriptor.proto (libprotobuf-dev) and
  # compiler/plugin.proto (libprotoc-dev) with protobuf-c
  libprotobuf-dev libprotoc-dev
  # TLS: mbedtls 2.28, and gRPC's test certificates (server1.pem, ca.pem,
  # x509/client1_cert.pem, ...) from grpc-go's testdata
  libmbedtls-dev golang-google-grpc-dev
  # the interop tests and the demo's client: Python grpcio and its messages
  grpc-proto python3-grpcio python3-protobuf protobuf-compiler
  "$@"
)

# One query for all packages, read whole (no early-exiting reader in a
# pipeline: under pipefail a reader that stops at its first match kills the
# writer with SIGPIPE and the pipeline reads as false).
installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${packages[@]}" \
  2>/dev/null || true)
missing=()
for p in "${packages[@]}"; do
  [[ $'\n'"$installed" == *$'\n'"$p ii "* ]] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    echo "deps.sh: apt-get could not install: ${missing[*]}" >&2
    exit 1
  fi
fi

# What the build and the tests run, checked after installing.
absent=()
for tool in meson ninja pkg-config protoc-c protoc cc; do
  command -v "$tool" >/dev/null || absent+=("$tool")
done
/usr/bin/python3 -c 'import grpc, google.protobuf' 2>/dev/null ||
  absent+=("/usr/bin/python3 with grpc and google.protobuf")
[ -d /usr/share/grpc-proto/grpc/testing ] || absent+=("/usr/share/grpc-proto")
[ -f /usr/include/google/protobuf/compiler/plugin.proto ] ||
  absent+=("/usr/include/google/protobuf/compiler/plugin.proto")
[ -f /usr/include/mbedtls/ssl.h ] || absent+=("/usr/include/mbedtls/ssl.h")
testdata=/usr/share/gocode/src/google.golang.org/grpc/testdata
[ -f $testdata/server1.pem ] && [ -f $testdata/x509/client1_cert.pem ] ||
  absent+=("$testdata (server1.pem, x509/client1_cert.pem)")
if [ ${#absent[@]} -gt 0 ]; then
  printf 'deps.sh: missing after installing: %s\n' "${absent[@]}" >&2
  exit 1
fi
