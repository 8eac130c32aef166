#!/usr/bin/env bash
# Installs the build into a scratch prefix and builds a program against it
# the way a user would: through pkg-config, shared and static.
#   install_test.sh BUILD_DIR
set -euo pipefail
build=$1
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
