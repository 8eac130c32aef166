#!/usr/bin/env bash
# The samples over TLS: greeter_server --tls (gRPC's test certificate) and
# greeter_client --tls (gRPC's test CA, the name foo.test.google.fr) say
# hello; a plaintext client and one that expects another name are refused,
# with the reason in the client's error and in the server's log.
#   greeter_tls.sh GREETER_SERVER GREETER_CLIENT
set -uo pipefail
server_bin=$1
client=$2
out=$(mktemp)
err=$(mktemp)
trap 'kill $srv 2>/dev/null; wait $srv 2>/dev/null; rm -f "$out" "$err"' EXIT
"$server_bin" --tls --port 0 >"$out" 2>"$err" &
srv=$!
for _ in $(seq 100); do grep -q "listening on port" "$out" && break; sleep 0.05; done
port=$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$out")
[ -n "$port" ] || { echo "greeter_server --tls did not start"; cat "$err"; exit 1; }
rc=0
reply=$("$client" --tls --port "$port" --name tls) || rc=1
[ "$reply" = "Greeter client received: Hello tls" ] || { echo "got: $reply"; rc=1; }
# wait-for-ready calls wait out their deadline and then say why
why=$("$client" --timeout 1500 --port "$port" --name plain 2>&1) && rc=1
echo "plaintext client: $why"
grep -q "plaintext HTTP/2 to a TLS port" "$err" || { echo "no server log line"; rc=1; }
why=$("$client" --timeout 1500 --tls --server_name other.example --port "$port" 2>&1) && rc=1
echo "other name: $why"
case $why in
*'is not for "other.example"'*) ;;
*) echo "the reason is missing"; rc=1 ;;
esac
exit $rc
