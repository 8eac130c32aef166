#!/usr/bin/env python3
"""Runs one interop test case against a freshly started interop server.

    run_case.py --server=PATH [--server_arg=ARG ...]
                --client=PATH [--client_arg=ARG ...] --test_case=NAME

Starts `SERVER --port=0 ARG...`, reads the port from its "listening on
port N" stdout line, runs `CLIENT --server_host=127.0.0.1
--server_port=N --test_case=NAME ARG...` against it, then stops the server
with SIGTERM.  A PATH ending in ".py" runs under this interpreter.  Exits
with the client's exit code, or 1 if the server failed to start, crashed,
or exited with an error.  The server's stderr goes straight to ours; its
stdout is echoed with a "[server]" prefix.
"""

import argparse
import queue
import re
import signal
import subprocess
import sys
import threading

STARTUP_TIMEOUT = 10  # seconds to wait for the "listening on port" line
CLIENT_TIMEOUT = 60   # seconds for the whole client run
SHUTDOWN_TIMEOUT = 5  # seconds between SIGTERM and SIGKILL

LISTENING_RE = re.compile(rb'listening on port (\d+)')


def command(path, args):
    """The command line that runs `path` with `args`."""
    if path.endswith('.py'):
        return [sys.executable, path] + args
    return [path] + args


def log(message):
    print(f'run_case: {message}', flush=True)


def read_server_stdout(stream, port_queue):
    """Reports the listening port once, then keeps draining stdout.

    Draining matters: a server blocked on a full stdout pipe would look hung.
    Puts None on port_queue if stdout closes before the port line.
    """
    port_reported = False
    for line in stream:
        sys.stdout.buffer.write(b'[server] ' + line)
        sys.stdout.buffer.flush()
        match = LISTENING_RE.search(line)
        if match and not port_reported:
            port_queue.put(int(match.group(1)))
            port_reported = True
    if not port_reported:
        port_queue.put(None)


def describe_exit(returncode):
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f'signal {-returncode}'
        return f'was killed by {name}'
    return f'exited with code {returncode}'


def stop_server(server):
    """Stops the server; returns False if it did not end cleanly."""
    if server.poll() is not None:
        sent_sigterm = False
        log(f'server {describe_exit(server.returncode)} before it was stopped')
    else:
        sent_sigterm = True
        server.terminate()
        try:
            server.wait(timeout=SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            log(f'FAIL: server did not exit within {SHUTDOWN_TIMEOUT} s of '
                'SIGTERM; killed it')
            return False
    code = server.returncode
    if code == 0 or (code == -signal.SIGTERM and sent_sigterm):
        return True
    log(f'FAIL: server {describe_exit(code)}')
    return False


def run_client(port, args):
    client = command(args.client, [
        '--server_host=127.0.0.1', f'--server_port={port}',
        f'--test_case={args.test_case}'] + args.client_arg)
    try:
        code = subprocess.run(client, timeout=CLIENT_TIMEOUT,
                              check=False).returncode
    except subprocess.TimeoutExpired:
        log(f'FAIL: client did not finish within {CLIENT_TIMEOUT} s')
        return 1
    if code < 0:
        log(f'FAIL: client {describe_exit(code)}')
        return 1
    return code


def run(args):
    try:
        server = subprocess.Popen(command(args.server,
                                          ['--port=0'] + args.server_arg),
                                  stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE)
    except OSError as err:
        log(f'FAIL: cannot start server: {err}')
        return 1
    try:
        port_queue = queue.Queue()
        threading.Thread(target=read_server_stdout,
                         args=(server.stdout, port_queue),
                         daemon=True).start()
        try:
            port = port_queue.get(timeout=STARTUP_TIMEOUT)
        except queue.Empty:
            port = None
        if port is None:
            log('FAIL: server printed no "listening on port N" line within '
                f'{STARTUP_TIMEOUT} s (is stdout flushed?)')
            stop_server(server)
            return 1
        client_code = run_client(port, args)
        server_ok = stop_server(server)
        return client_code if server_ok else 1
    finally:
        # Whatever happened above, never leave the server running.
        if server.poll() is None:
            server.kill()
            server.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--server', required=True,
                        help='interop server executable or .py script')
    parser.add_argument('--server_arg', action='append', default=[],
                        help='one more argument for the server')
    parser.add_argument('--client', required=True,
                        help='interop client executable or .py script')
    parser.add_argument('--client_arg', action='append', default=[],
                        help='one more argument for the client')
    parser.add_argument('--test_case', required=True)
    args = parser.parse_args()
    # meson stops a test that runs too long with SIGTERM; turn that into an
    # exception so the cleanup in run() still stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit('run_case: terminated'))
    return run(args)


if __name__ == '__main__':
    sys.exit(main())
