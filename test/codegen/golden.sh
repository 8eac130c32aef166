#!/usr/bin/env bash
# Runs the plugin on the test protos and compares its output with the
# golden files checked in under test/codegen/golden/, byte for byte.
#   golden.sh PLUGIN PROTOBUF_INCLUDE_DIR          compare
#   golden.sh PLUGIN PROTOBUF_INCLUDE_DIR --update rewrite the golden files
# After changing the generator, `bash test/codegen/regen.sh` rewrites them.
set -euo pipefail
plugin=$1
pbinc=$2
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
protos=(uvg/test/v1/kinds.proto imports/common.proto imports/ext.proto
        nopkg.proto keywords.proto same/one.proto same/two.proto)
protoc --plugin=protoc-gen-uvgrpc="$plugin" -I"$here/protos" -I"$pbinc" \
  --uvgrpc_out="$out" "${protos[@]}"
# one with protoc-c's c_package option, which renames protoc-c's types
protoc --plugin=protoc-gen-uvgrpc="$plugin" -I"$here/protos" -I"$pbinc" \
  --uvgrpc_out="$out" c_package.proto
if [ "${3:-}" = --update ]; then
  rm -rf "$here/golden"
  mkdir -p "$here/golden"
  cp -r "$out"/. "$here/golden/"
  echo "golden files rewritten in $here/golden"
  exit 0
fi
if ! diff -r -u "$here/golden" "$out"; then
  echo "generated code differs from test/codegen/golden;" \
       "if the change is meant, run: bash test/codegen/regen.sh" >&2
  exit 1
fi
echo "generated code matches the golden files ($(find "$out" -type f | wc -l) files)"
