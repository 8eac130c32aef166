#!/usr/bin/env python3
"""gRPC interop test server (grpc.testing.TestService) on grpcio.

Serves the "Server" features of grpc/grpc doc/interop-test-descriptions.md
on 127.0.0.1, with no generated service code: the methods are grpcio generic
handlers over the messages_pb2/empty_pb2 classes that protoc generates into
--pb_dir.

    interop_server.py --port=N --pb_dir=DIR [--use_tls=true|false]
                      [--require_client_cert[=true|false]]
                      [--tls_cert_file=PEM] [--tls_key_file=PEM]
                      [--client_ca_file=PEM]

With --use_tls=true it serves gRPC's test certificate (server1.pem and
server1.key of grpc-go's testdata, from Debian's golang-google-grpc-dev);
--require_client_cert requires a client certificate signed by
--client_ca_file (the testdata's x509/client_ca_cert.pem), and every call
must then come with the client's identity.

Prints "listening on port N" once bound (N is the bound port, so --port=0
works) and exits with status 0 on SIGTERM or SIGINT.

Compressed requests (the CompressedRequest feature).  grpc/grpc's own
Python interop server (src/python/grpcio_tests/tests/interop/service.py)
ignores expect_compressed and response_compressed, and its
run_interop_tests.py lists the four compression cases among the Python
server's unimplemented ones: grpcio decompresses a request before the
handler sees it and shows neither the request's grpc-encoding nor the
message's compressed flag.  This server implements the feature instead, so
that clients can run all 18 cases against it: it turns grpc core's
per-message decompression off (channel argument
"grpc.per_message_decompression" = 0), so each request reaches the
deserializer as it came on the wire, and decompresses here.  A compressed
message is recognised by its content: a gzip member starts with 1f 8b,
which no protobuf message can start with (field 3 with wire type 7); a
zlib stream ("deflate", RFC 1950) starts with a header whose check bits
make (CMF * 256 + FLG) divisible by 31, and counts as compressed only if it
also inflates.  None of the request messages has a field that would make a
serialized message begin with such a header and inflate.
"""

import argparse
import importlib.util
import os
import signal
import sys
import threading
import time
import zlib
from concurrent import futures

import grpc

SERVICE = 'grpc.testing.TestService'
ECHO_INITIAL_KEY = 'x-grpc-test-echo-initial'
ECHO_TRAILING_KEY = 'x-grpc-test-echo-trailing-bin'
GZIP_MAGIC = b'\x1f\x8b'
TESTDATA = '/usr/share/gocode/src/google.golang.org/grpc/testdata'

# Set by main(): with --require_client_cert every call must show its peer.
require_peer = False

# Generated message modules, loaded by load_protos() from --pb_dir.
messages = None
empty_pb2 = None

STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


class Received:
    """A request message and whether it arrived compressed."""

    __slots__ = ('message', 'compressed')

    def __init__(self, message, compressed):
        self.message = message
        self.compressed = compressed


def _is_zlib_header(data):
    """RFC 1950 2.2: CM 8 (deflate), CINFO <= 7, FCHECK makes it 31n."""
    return (len(data) >= 2 and data[0] & 0x0f == 8 and data[0] >> 4 <= 7
            and ((data[0] << 8) | data[1]) % 31 == 0)


def request_parser(message_class):
    """A request deserializer: the message and whether it was compressed."""

    def parse(data):
        compressed = False
        if data[:2] == GZIP_MAGIC:
            data = zlib.decompress(data, 16 + zlib.MAX_WBITS)
            compressed = True
        elif _is_zlib_header(data):
            try:
                data = zlib.decompress(data)
                compressed = True
            except zlib.error:
                pass  # a serialized message after all
        return Received(message_class.FromString(data), compressed)

    return parse


def payload(size):
    return messages.Payload(type=messages.COMPRESSABLE, body=bytes(size))


def admit(context):
    """mTLS: a call without the client's certified identity is refused (the
    handshake requires the certificate, so this checks what the handler
    sees)."""
    if require_peer and not context.peer_identities():
        context.abort(grpc.StatusCode.UNAUTHENTICATED,
                      'no client certificate identity')


def echo_metadata(context):
    """Echo Metadata: the initial key as initial metadata (sent now), the
    trailing one as trailing metadata.  Every method starts here, so it
    admits the call first."""
    admit(context)
    received = context.invocation_metadata()
    initial = [(k, v) for k, v in received if k == ECHO_INITIAL_KEY]
    if initial:
        context.send_initial_metadata(initial[:1])
    trailing = [(k, v) for k, v in received if k == ECHO_TRAILING_KEY]
    if trailing:
        context.set_trailing_metadata(trailing[:1])


def check_compression(context, request):
    """CompressedRequest: a request must arrive compressed exactly when its
    expect_compressed says so (as the C++ interop server checks it)."""
    message = request.message
    expected = (message.HasField('expect_compressed')
                and message.expect_compressed.value)
    if expected != request.compressed:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      'request compression not as expected: expect_compressed '
                      f'is {expected}, the message was '
                      f'{"" if request.compressed else "not "}compressed')


def echo_status(context, message):
    """Echo Status: ends the call with the requested status (aborts)."""
    if message.HasField('response_status') and message.response_status.code:
        status = message.response_status
        context.abort(STATUS_CODES.get(status.code, grpc.StatusCode.UNKNOWN),
                      status.message)


def compress_responses(context, message):
    """Gzip for the call if a response asks to be compressed.  It is
    announced in the response headers, so it has effect until they are
    sent.  Returns whether it asked for it."""
    compressing = any(p.compressed.value for p in message.response_parameters)
    if compressing:
        context.set_compression(grpc.Compression.Gzip)
    return compressing


def streamed_responses(context, message):
    """One response per ResponseParameters: interval_us as a sleep before
    it, compressed per message (CompressedResponse)."""
    compressing = compress_responses(context, message)
    for p in message.response_parameters:
        if p.interval_us > 0:
            time.sleep(p.interval_us / 1e6)
        if compressing and not p.compressed.value:
            context.disable_next_message_compression()
        yield messages.StreamingOutputCallResponse(payload=payload(p.size))


# ---- the methods ----


def empty_call(request, context):
    echo_metadata(context)
    return empty_pb2.Empty()


def unary_call(request, context):
    message = request.message
    if message.response_compressed.value:
        context.set_compression(grpc.Compression.Gzip)
    echo_metadata(context)
    check_compression(context, request)
    echo_status(context, message)
    return messages.SimpleResponse(payload=payload(message.response_size))


def streaming_output_call(request, context):
    compress_responses(context, request.message)  # before the headers
    echo_metadata(context)
    yield from streamed_responses(context, request.message)
    echo_status(context, request.message)


def streaming_input_call(request_iterator, context):
    echo_metadata(context)
    aggregated = 0
    for request in request_iterator:
        check_compression(context, request)
        aggregated += len(request.message.payload.body)
    return messages.StreamingInputCallResponse(
        aggregated_payload_size=aggregated)


def full_duplex_call(request_iterator, context):
    """Answers each request as it comes; a request with a response_status
    ends the call with it after its responses."""
    echo_metadata(context)
    for request in request_iterator:
        yield from streamed_responses(context, request.message)
        echo_status(context, request.message)


def half_duplex_call(request_iterator, context):
    """Holds the requests until the client half-closes, then answers."""
    echo_metadata(context)
    held = [request.message for request in request_iterator]
    for message in held:
        yield from streamed_responses(context, message)
        echo_status(context, message)


def handlers():
    m = messages
    serialize = lambda response: response.SerializeToString()  # noqa: E731
    unary = grpc.unary_unary_rpc_method_handler
    return grpc.method_handlers_generic_handler(SERVICE, {
        'EmptyCall': unary(empty_call, request_parser(empty_pb2.Empty),
                           serialize),
        'UnaryCall': unary(unary_call, request_parser(m.SimpleRequest),
                           serialize),
        'CacheableUnaryCall': unary(unary_call,
                                    request_parser(m.SimpleRequest),
                                    serialize),
        'StreamingOutputCall': grpc.unary_stream_rpc_method_handler(
            streaming_output_call,
            request_parser(m.StreamingOutputCallRequest), serialize),
        'StreamingInputCall': grpc.stream_unary_rpc_method_handler(
            streaming_input_call,
            request_parser(m.StreamingInputCallRequest), serialize),
        'FullDuplexCall': grpc.stream_stream_rpc_method_handler(
            full_duplex_call,
            request_parser(m.StreamingOutputCallRequest), serialize),
        'HalfDuplexCall': grpc.stream_stream_rpc_method_handler(
            half_duplex_call,
            request_parser(m.StreamingOutputCallRequest), serialize),
    })


# ---- running ----


def load_module(pb_dir, name):
    """Loads pb_dir/NAME.py by path: its natural import name would be
    shadowed by the grpc package itself."""
    path = os.path.join(pb_dir, name + '.py')
    if not os.path.isfile(path):
        sys.exit(f'interop_server: {path} not found')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_protos(pb_dir):
    global messages, empty_pb2  # pylint: disable=global-statement
    messages = load_module(pb_dir, 'messages_pb2')
    empty_pb2 = load_module(pb_dir, 'empty_pb2')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--port', type=int, default=10000)
    parser.add_argument('--pb_dir', required=True,
                        help='directory with the generated *_pb2.py modules')
    parser.add_argument('--use_tls', default='false',
                        choices=['true', 'false'])
    parser.add_argument('--require_client_cert', nargs='?', const='true',
                        default='false', choices=['true', 'false'])
    parser.add_argument('--tls_cert_file', default=f'{TESTDATA}/server1.pem')
    parser.add_argument('--tls_key_file', default=f'{TESTDATA}/server1.key')
    parser.add_argument('--client_ca_file',
                        default=f'{TESTDATA}/x509/client_ca_cert.pem')
    args = parser.parse_args()
    load_protos(args.pb_dir)
    global require_peer  # pylint: disable=global-statement
    require_peer = args.require_client_cert == 'true'
    if require_peer and args.use_tls != 'true':
        sys.exit('interop_server: --require_client_cert needs --use_tls=true')

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        options=[('grpc.per_message_decompression', 0)])
    server.add_generic_rpc_handlers((handlers(),))
    address = f'127.0.0.1:{args.port}'
    if args.use_tls == 'true':
        with open(args.tls_key_file, 'rb') as key, \
                open(args.tls_cert_file, 'rb') as cert:
            pair = (key.read(), cert.read())
        client_ca = None
        if require_peer:
            with open(args.client_ca_file, 'rb') as f:
                client_ca = f.read()
        port = server.add_secure_port(address, grpc.ssl_server_credentials(
            [pair], root_certificates=client_ca,
            require_client_auth=require_peer))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        sys.exit(f'interop_server: cannot listen on 127.0.0.1:{args.port}')
    server.start()
    print(f'listening on port {port}', flush=True)
    while not stop.wait(3600):
        pass
    server.stop(grace=1).wait()
    return 0


if __name__ == '__main__':
    sys.exit(main())
