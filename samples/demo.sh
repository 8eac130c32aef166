#!/usr/bin/env bash
# The main demo: builds uvgrpc, starts the greeter server on a loopback port
# and calls it with the C greeter client, printing the replies.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null

out=$(mktemp)
./build/samples/helloworld/greeter_server --port 0 >"$out" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q "listening on port" "$out" && break; sleep 0.05; done
port=$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$out")
[ -n "$port" ] || { echo "greeter_server did not start" >&2; exit 1; }
echo "greeter_server listening on 127.0.0.1:$port"
for name in world uvgrpc libuv; do
  ./build/samples/helloworld/greeter_client --port "$port" --name "$name"
done
