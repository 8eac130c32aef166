# Sourced by the benchmark scripts (run.sh, tls_run.sh): builds the peer
# servers, the grpc-go and gRPC C++ greeters, into $OUT/bin when their
# source changed, and sets GO_BIN and CPP_BIN (removed when a build
# fails). Needs OUT, BENCH, PROTO_DIR and log().

# stale TARGET SOURCES...: true when TARGET is missing or older than a source.
stale() {
  local t=$1 s
  shift
  [ -e "$t" ] || return 0
  for s in "$@"; do [ "$s" -nt "$t" ] && return 0; done
  return 1
}

# grpc-go: GOPATH mode against Debian's /usr/share/gocode (no network, no
# module proxy); the generated package lives in build/bench/go/src only.
GO_BIN=$OUT/bin/greeter_go
build_go() {
  local gp=$OUT/go pkg=$OUT/go/src/benchgreeter
  command -v go >/dev/null && command -v protoc-gen-go >/dev/null &&
    command -v protoc-gen-go-grpc >/dev/null || return 1
  mkdir -p "$pkg/helloworld" "$pkg/server"
  cp "$BENCH/go/main.go" "$pkg/server/main.go"
  # helloworld.proto has no go_package: M maps it to our import path.
  local m=Mhelloworld.proto=benchgreeter/helloworld
  protoc -I"$PROTO_DIR" --go_out="paths=source_relative,$m:$pkg/helloworld" \
    --go-grpc_out="paths=source_relative,$m:$pkg/helloworld" helloworld.proto &&
    GO111MODULE=off GOFLAGS= GOPATH="$gp:/usr/share/gocode" GOCACHE="$gp/cache" \
      go build -o "$GO_BIN" benchgreeter/server
}
if stale "$GO_BIN" "$BENCH/go/main.go"; then
  log "building grpc-go greeter"
  build_go >"$OUT/logs/build_go.log" 2>&1 || { cat "$OUT/logs/build_go.log" >&2; rm -f "$GO_BIN"; }
fi

# gRPC C++: callback API (faster than the sync API here; see the source).
CPP_BIN=$OUT/bin/greeter_cpp
build_cpp() {
  local d=$OUT/cpp
  protoc -I"$PROTO_DIR" --cpp_out="$d" --grpc_out="$d" \
    --plugin=protoc-gen-grpc="$(command -v grpc_cpp_plugin)" helloworld.proto &&
    g++ -O2 -std=c++17 -I"$d" -o "$CPP_BIN" "$BENCH/cpp/greeter_server.cc" \
      "$d/helloworld.pb.cc" "$d/helloworld.grpc.pb.cc" \
      $(pkg-config --cflags --libs grpc++ protobuf) -lpthread
}
if stale "$CPP_BIN" "$BENCH/cpp/greeter_server.cc"; then
  log "building gRPC C++ greeter"
  build_cpp >"$OUT/logs/build_cpp.log" 2>&1 || { cat "$OUT/logs/build_cpp.log" >&2; rm -f "$CPP_BIN"; }
fi
