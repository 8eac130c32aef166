#!/usr/bin/env bash
# Rewrites test/codegen/golden/ from the current plugin: run it after a
# change to codegen/ that is meant to change the generated code, and
# review the diff before committing.
#   bash test/codegen/regen.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
[ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null
ninja -C "$build" codegen/protoc-gen-uvgrpc >/dev/null
bash test/codegen/golden.sh "$build/codegen/protoc-gen-uvgrpc" \
  "$(meson introspect "$build" --buildoptions |
     /usr/bin/python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="protobuf_include_dir"))')" \
  --update
