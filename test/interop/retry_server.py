#!/usr/bin/env python3
"""A grpcio server for the client's retry and hedging tests: method
/retry.Test/Call takes a request "KEY FAILS CODE PUSHBACK SLOW_MS" (text)
and, per KEY, fails the first FAILS attempts with status CODE (with
grpc-retry-pushback-ms: PUSHBACK unless it is "-"), makes the first
attempt wait SLOW_MS before answering, and answers the others
"attempts=N prev=P1,P2,..." (the grpc-previous-rpc-attempts each attempt
carried, "-" for none). Request "count KEY" answers how many attempts of
KEY arrived and how many were cancelled.

    retry_server.py --port=0
"""
import argparse
import sys
import threading
import time
from concurrent import futures

import grpc

seen = {}       # key -> list of grpc-previous-rpc-attempts values
cancelled = {}  # key -> attempts cancelled while they waited
lock = threading.Lock()


def call(request, context):
    words = request.decode().split()
    if words[0] == 'count':
        with lock:
            return ('attempts=%d cancelled=%d' % (len(seen.get(words[1], [])),
                                                  cancelled.get(words[1], 0))).encode()
    key, fails, code, pushback, slow_ms = words[0], int(words[1]), int(words[2]), \
        words[3], int(words[4])
    prev = dict(context.invocation_metadata()).get('grpc-previous-rpc-attempts', '-')
    with lock:
        attempts = seen.setdefault(key, [])
        attempts.append(prev)
        n = len(attempts)
    if n == 1 and slow_ms > 0:
        deadline = time.monotonic() + slow_ms / 1000
        while time.monotonic() < deadline:
            if not context.is_active():
                with lock:
                    cancelled[key] = cancelled.get(key, 0) + 1
                return b''
            time.sleep(0.005)
    if n <= fails:
        if pushback != '-':
            context.set_trailing_metadata([('grpc-retry-pushback-ms', pushback)])
        context.abort(grpc.StatusCode(next(c for c in grpc.StatusCode
                                           if c.value[0] == code)),
                      'attempt %d fails' % n)
    with lock:
        return ('attempts=%d prev=%s' % (n, ','.join(attempts))).encode()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--port', type=int, default=0)
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handler = grpc.method_handlers_generic_handler('retry.Test', {
        'Call': grpc.unary_unary_rpc_method_handler(call),
    })
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port('127.0.0.1:%d' % args.port)
    server.start()
    print('listening on port %d' % port, flush=True)
    server.wait_for_termination()


if __name__ == '__main__':
    sys.exit(main())
