#!/usr/bin/env python3
"""Calls helloworld.Greeter/SayHello once and prints the reply.

    greeter_client.py --port N [--host 127.0.0.1] [--name world] [--pb_dir DIR]

DIR holds helloworld_pb2.py (directly or under grpc/examples/); without
--pb_dir the module is generated with protoc into a temporary directory.
"""

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

import grpc

PROTO_DIR = '/usr/share/grpc-proto/grpc/examples'
RPC_TIMEOUT = 10.0


def load_module(path):
    spec = importlib.util.spec_from_file_location('helloworld_pb2', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_helloworld(pb_dir):
    if pb_dir is None:
        protoc = shutil.which('protoc') or '/usr/bin/protoc'
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([protoc, f'--python_out={tmp}', f'-I{PROTO_DIR}',
                            'helloworld.proto'], check=True)
            # Once executed, the module no longer needs its file.
            return load_module(os.path.join(tmp, 'helloworld_pb2.py'))
    # By path rather than by import: protoc run with -I/usr/share/grpc-proto
    # writes grpc/examples/helloworld_pb2.py, and the grpcio package owns the
    # name "grpc".
    for subdir in ('', 'grpc/examples'):
        path = os.path.join(pb_dir, subdir, 'helloworld_pb2.py')
        if os.path.isfile(path):
            return load_module(path)
    sys.exit(f'greeter_client: helloworld_pb2.py not found in {pb_dir}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--name', default='world')
    parser.add_argument('--pb_dir')
    args = parser.parse_args()

    try:
        helloworld = load_helloworld(args.pb_dir)
    except (OSError, subprocess.CalledProcessError) as err:
        sys.exit(f'greeter_client: cannot generate helloworld_pb2: {err}')

    host = args.host
    if ':' in host and not host.startswith('['):
        host = f'[{host}]'  # IPv6 literal
    with grpc.insecure_channel(f'{host}:{args.port}') as channel:
        say_hello = channel.unary_unary(
            '/helloworld.Greeter/SayHello',
            request_serializer=helloworld.HelloRequest.SerializeToString,
            response_deserializer=helloworld.HelloReply.FromString)
        try:
            reply = say_hello(helloworld.HelloRequest(name=args.name),
                              timeout=RPC_TIMEOUT)
        except grpc.RpcError as err:
            print(f'greeter_client: SayHello failed: {err.code().name}: '
                  f'{err.details()}', file=sys.stderr)
            return 1
    print(f'Greeter client received: {reply.message}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
