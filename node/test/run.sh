#!/bin/sh
# Runs one test file of the Node.js addon with `node --test`, after
# installing the devDependencies (@grpc/grpc-js, @grpc/proto-loader) from
# package-lock.json when node_modules is missing.
#   UVGRPC_NODE_ADDON=build/node/uvgrpc.node NODE_DIR=node run.sh FILE
set -eu
cd "$NODE_DIR"
if [ ! -d node_modules/@grpc/grpc-js ] || [ ! -d node_modules/@grpc/proto-loader ]; then
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
exec node --test "$1"
