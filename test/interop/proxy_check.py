#!/usr/bin/env python3
"""A grpcio client reaches our interop server through our test proxy.

    proxy_check.py --server=PATH --proxy=PATH --client=interop_client.py
                   --pb_dir=DIR

gRPC C-core (under grpcio) reads grpc_proxy and speaks CONNECT the way
real clients do; this proves that the suite's proxy (connect_proxy), which
the C client's proxy tests rely on, understands it: the request names the
target as written, and a proxy that demands credentials accepts the ones
C-core sends from the URL's userinfo. Runs large_unary once without and
once with credentials. Exits 0 when both pass.
"""

import argparse
import base64
import os
import queue
import re
import signal
import subprocess
import sys
import threading

import run_case

PORT_RE = re.compile(rb'listening on port (\d+)')


class Proc:
    """A program that prints "listening on port N" and then lines."""

    def __init__(self, name, cmd):
        self.name = name
        self.lines = []
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE)
        self.port_queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        reported = False
        for line in self.proc.stdout:
            sys.stdout.buffer.write(f'[{self.name}] '.encode() + line)
            sys.stdout.buffer.flush()
            self.lines.append(line.decode(errors='replace').rstrip('\n'))
            match = PORT_RE.search(line)
            if match and not reported:
                self.port_queue.put(int(match.group(1)))
                reported = True
        if not reported:
            self.port_queue.put(None)

    def port(self):
        try:
            return self.port_queue.get(timeout=run_case.STARTUP_TIMEOUT)
        except queue.Empty:
            return None

    def stop(self):
        return run_case.stop_server(self.proc)


def run_client(args, server_port, proxy_url):
    env = dict(os.environ)
    for var in ('http_proxy', 'https_proxy', 'no_proxy', 'no_grpc_proxy',
                'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY'):
        env.pop(var, None)
    env['grpc_proxy'] = proxy_url
    cmd = run_case.command(args.client, [
        '--server_host=127.0.0.1', f'--server_port={server_port}',
        '--test_case=large_unary', f'--pb_dir={args.pb_dir}'])
    try:
        return subprocess.run(cmd, env=env, timeout=run_case.CLIENT_TIMEOUT,
                              check=False).returncode
    except subprocess.TimeoutExpired:
        print('proxy_check: FAIL: client timed out', flush=True)
        return 1


def check(args, server_port, userinfo):
    """One client run through a fresh proxy; True when all went right."""
    proxy_args = []
    if userinfo:
        token = base64.b64encode(userinfo.encode()).decode()
        proxy_args.append(f'--require_auth=Basic {token}')
    proxy = Proc('proxy', [args.proxy] + proxy_args)
    try:
        proxy_port = proxy.port()
        if proxy_port is None:
            print('proxy_check: FAIL: the proxy did not start', flush=True)
            return False
        at = f'{userinfo}@' if userinfo else ''
        code = run_client(args, server_port, f'http://{at}127.0.0.1:{proxy_port}')
    finally:
        proxy_ok = proxy.stop()
    want = f'proxy: CONNECT 127.0.0.1:{server_port} HTTP/1.'
    seen = any(line.startswith(want) for line in proxy.lines)
    if not seen:
        print(f'proxy_check: FAIL: the proxy saw no "{want}..." request',
              flush=True)
    if code != 0:
        print(f'proxy_check: FAIL: client exited with {code}', flush=True)
    return code == 0 and seen and proxy_ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--server', required=True)
    parser.add_argument('--proxy', required=True)
    parser.add_argument('--client', required=True)
    parser.add_argument('--pb_dir', required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM,
                  lambda *_: sys.exit('proxy_check: terminated'))
    ok = False
    server = Proc('server', run_case.command(args.server, ['--port=0']))
    try:
        server_port = server.port()
        if server_port is None:
            print('proxy_check: FAIL: the server did not start', flush=True)
            return 1
        ok = check(args, server_port, None) and check(args, server_port,
                                                      'grpc:s3cret')
    finally:
        ok = server.stop() and ok
    print(f'proxy_check: {"ok" if ok else "FAIL"}', flush=True)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
