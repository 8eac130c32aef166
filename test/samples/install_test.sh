#!/usr/bin/env bash
# Installs the build into a scratch prefix and builds against it the way a
# user would: a program through pkg-config, shared and static; then the
# route_guide sample as a meson project of its own, with exactly the
# meson.build its README shows, finding protoc-gen-uvgrpc on PATH; its
# client then calls its server.
#   install_test.sh BUILD_DIR SOURCE_ROOT
set -euo pipefail
build=$1
root=$2
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --destdir "$dest" --no-rebuild --quiet
pc=$(dirname "$(find "$dest" -name uvgrpc.pc | head -1)")
export PKG_CONFIG_PATH=$pc PKG_CONFIG_SYSROOT_DIR=$dest
cat > "$dest/use.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <uvgrpc.h>
int main(void) {
  uvg_server_t *s;
  uv_loop_t *loop = uv_default_loop();
  if (uvg_server_new(loop, NULL, &s) != 0) return 1;
  uvg_server_close(s, NULL, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  printf("%s\n", uvg_strerror(UVG_ENOCREDS));
  return strcmp(uvg_strerror(UVG_ENOCREDS), "credentials are required") != 0;
}
C
libdir=$(pkg-config --variable=libdir uvgrpc)
cc -o "$dest/use-shared" "$dest/use.c" $(pkg-config --cflags --libs uvgrpc)
LD_LIBRARY_PATH=$libdir "$dest/use-shared"
# the archive, then what it needs (Libs.private: mbedtls, zlib, ...)
static_libs=$(pkg-config --libs --static uvgrpc | sed 's/ *-luvgrpc\b//')
cc -o "$dest/use-static" "$dest/use.c" $(pkg-config --cflags uvgrpc) \
  "$libdir/libuvgrpc.a" $static_libs
"$dest/use-static"
echo "installed library works through pkg-config (shared and static)"

sample=$root/samples/route_guide
proj=$dest/route_guide
mkdir -p "$proj"
cp "$sample/route_guide.proto" "$sample/route_guide_server.c" \
  "$sample/route_guide_client.c" "$proj/"
awk '/<!-- standalone meson.build -->/ { f = 1; next }
     f && /^```meson/ { p = 1; next }
     p && /^```/ { exit }
     p' "$sample/README.md" >"$proj/meson.build"
grep -q "dependency('uvgrpc')" "$proj/meson.build" || {
  echo "no standalone meson.build in $sample/README.md"; exit 1; }
bindir=$(dirname "$(find "$dest" -name protoc-gen-uvgrpc -type f | head -1)")
export PATH=$bindir:$PATH LD_LIBRARY_PATH=$libdir
(cd "$proj" && meson setup build >/dev/null && ninja -C build >/dev/null) || {
  echo "the standalone project does not build:"; cat "$proj/build/meson-logs/meson-log.txt" | tail -30; ninja -C "$proj/build" | tail -30; exit 1; }
"$proj/build/route_guide_server" --port 0 >"$proj/server.out" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$dest"' EXIT
for _ in $(seq 200); do grep -q "listening on port" "$proj/server.out" && break; sleep 0.05; done
port=$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$proj/server.out")
"$proj/build/route_guide_client" --port "$port" | tee "$proj/client.out"
grep -qx "RouteChat: done" "$proj/client.out"
kill -TERM $server
wait $server
echo "a project of its own builds against the installed uvgrpc and runs"
