#!/usr/bin/env bash
# The plugin on input it cannot use: a clear message on stderr (or in the
# response, which protoc prints) and a non-zero exit, never a crash or
# broken output.
#   bad_input.sh PLUGIN
set -uo pipefail
plugin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

# expect NAME WANT_EXIT_NONZERO PATTERN -- COMMAND...: runs it, checks exit and stderr
expect() {
  local name=$1 pattern=$2
  shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ $rc -eq 0 ] || [ $rc -ge 128 ] || ! grep -q -- "$pattern" "$tmp/err"; then
    echo "FAIL $name: exit $rc, stderr:"; cat "$tmp/err"
    fails=$((fails + 1))
  else
    echo "ok   $name: exit $rc: $(head -1 "$tmp/err")"
  fi
}

printf 'this is not a protobuf message\377\377' >"$tmp/garbage"
expect garbage "is not a CodeGeneratorRequest" -- sh -c "\"$plugin\" <\"$tmp/garbage\""
expect empty "names no file to generate" -- sh -c "\"$plugin\" </dev/null"
expect argument "a protoc plugin" -- "$plugin" --help

# A request naming a file it does not carry.
/usr/bin/python3 - "$tmp/missing" <<'PY'
import sys
from google.protobuf.compiler import plugin_pb2
req = plugin_pb2.CodeGeneratorRequest(file_to_generate=["absent.proto"])
open(sys.argv[1], "wb").write(req.SerializeToString())
PY
expect missing-file "asks for absent.proto but does not contain it" -- \
  sh -c "\"$plugin\" <\"$tmp/missing\""

cat >"$tmp/ok.proto" <<'P'
syntax = "proto3";
package p;
message M { int32 a = 1; }
service S { rpc Do(M) returns (M); }
P
expect unknown-option 'unknown option "fast"' -- \
  protoc --plugin=protoc-gen-uvgrpc="$plugin" -I"$tmp" --uvgrpc_out=fast:"$tmp" ok.proto

# Two methods that become one struct member.
cat >"$tmp/clash.proto" <<'P'
syntax = "proto3";
package p;
message M { int32 a = 1; }
service S {
  rpc default(M) returns (M);
  rpc default_(M) returns (M);
}
P
expect member-clash "both become the C name default_" -- \
  protoc --plugin=protoc-gen-uvgrpc="$plugin" -I"$tmp" --uvgrpc_out="$tmp" clash.proto

expect no-protoc-gen-c "cannot run /nonexistent/protoc-gen-c" -- \
  protoc --plugin=protoc-gen-uvgrpc="$plugin" -I"$tmp" \
  --uvgrpc_out=pb_c,protoc_gen_c=/nonexistent/protoc-gen-c:"$tmp" ok.proto

[ $fails -eq 0 ] || exit 1
echo "all bad input refused with a message"
