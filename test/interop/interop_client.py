#!/usr/bin/env python3
"""gRPC interop test client.

Runs one test case from grpc/grpc doc/interop-test-descriptions.md against a
grpc.testing.TestService server, using grpcio with no generated stubs.
Prints "PASS <case>" and exits 0 on success; prints "FAIL <case>: <reason>"
and exits 1 otherwise.

    interop_client.py --server_port=N --test_case=NAME --pb_dir=DIR
                      [--use_tls=true|false] [--use_test_ca=true|false]
                      [--server_host_override=NAME] [--ca_file=PEM]
                      [--client_cert_file=PEM --client_key_file=PEM]

Over TLS the server's certificate is checked against gRPC's test CA
(--use_test_ca=true: the ca.pem of grpc-go's testdata, or --ca_file) for
the name --server_host_override gives; --client_cert_file and
--client_key_file present a client certificate (mTLS).
"""

import argparse
import asyncio
import importlib.util
import itertools
import os
import queue
import socket
import ssl
import sys
import threading
import time

import grpc

# Every RPC carries a deadline so that a broken server fails the case instead
# of hanging it.
RPC_TIMEOUT = 10.0

TEST_SERVICE = '/grpc.testing.TestService/'

# Request/response sizes from the test descriptions.
LARGE_REQUEST_SIZE = 271828
LARGE_RESPONSE_SIZE = 314159
CLIENT_STREAM_SIZES = (27182, 8, 1828, 45904)
SERVER_STREAM_SIZES = (31415, 9, 2653, 58979)

ECHO_INITIAL_KEY = 'x-grpc-test-echo-initial'
ECHO_INITIAL_VALUE = 'test_initial_metadata_value'
ECHO_TRAILING_KEY = 'x-grpc-test-echo-trailing-bin'
ECHO_TRAILING_VALUE = b'\xab\xab\xab'

TESTDATA = '/usr/share/gocode/src/google.golang.org/grpc/testdata'

# Generated message modules, loaded by load_protos() from --pb_dir.
messages = None
empty_pb2 = None


class TestFailure(Exception):
    """An assertion required by the test description did not hold."""


def check(condition, message):
    if not condition:
        raise TestFailure(message)


def zeros(size):
    return b'\0' * size


def payload(size):
    return messages.Payload(body=zeros(size))


def check_payload(got, size, what):
    body = got.body
    check(len(body) == size,
          f'{what}: payload body is {len(body)} bytes, expected {size}')
    check(body == zeros(size), f'{what}: payload body is not all zeros')
    check(got.type == messages.COMPRESSABLE,
          f'{what}: payload type is {got.type}, expected COMPRESSABLE')


def expect_status(code, what, fn, *args, **kwargs):
    """Calls fn, which must fail with an RpcError carrying `code`."""
    try:
        fn(*args, **kwargs)
    except grpc.RpcError as err:
        check(err.code() == code,
              f'{what}: expected status {code.name}, got '
              f'{err.code().name} ({err.details()!r})')
        return err
    raise TestFailure(f'{what}: expected status {code.name}, '
                      'but the call succeeded')


def metadata_values(metadata, key):
    return [value for k, value in (metadata or ()) if k == key]


class RequestPipe:
    """Request iterator that is fed one message at a time.

    Lets a streaming call send a request only after it has seen a reply, and
    half-close at a chosen point (close()).
    """

    _CLOSE = object()

    def __init__(self):
        self._queue = queue.Queue()

    def __iter__(self):
        return self

    def __next__(self):
        item = self._queue.get()
        if item is self._CLOSE:
            raise StopIteration
        return item

    def send(self, request):
        self._queue.put(request)

    def close(self):
        self._queue.put(self._CLOSE)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        # Never leave grpcio's request-consuming thread blocked.
        self.close()


class Stub:
    """The TestService methods as grpcio multi-callables."""

    def __init__(self, channel, tap=None):
        self.channel = channel
        # Wire tap for the compression cases (None for the others).
        self.tap = tap
        m = messages
        self.empty_call = self.method(
            'unary_unary', 'EmptyCall', empty_pb2.Empty, empty_pb2.Empty)
        self.unary_call = self.method(
            'unary_unary', 'UnaryCall', m.SimpleRequest, m.SimpleResponse)
        self.streaming_output_call = self.method(
            'unary_stream', 'StreamingOutputCall',
            m.StreamingOutputCallRequest, m.StreamingOutputCallResponse)
        self.streaming_input_call = self.method(
            'stream_unary', 'StreamingInputCall',
            m.StreamingInputCallRequest, m.StreamingInputCallResponse)
        self.full_duplex_call = self.method(
            'stream_stream', 'FullDuplexCall',
            m.StreamingOutputCallRequest, m.StreamingOutputCallResponse)

    def method(self, kind, name, request_type, response_type,
               service=TEST_SERVICE):
        """channel.<kind>(service + name) with protobuf (de)serializers."""
        return getattr(self.channel, kind)(
            service + name,
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString)


# --------------------------------------------------------------------------
# Wire tap for the compression cases.
#
# grpcio decompresses transparently and hides both the grpc-encoding header
# and the per-message "compressed" flag, so the only way to check whether the
# server compressed a response (the point of server_compressed_*) is to look
# at the bytes on the wire.  The channel connects to a local TCP relay that
# forwards everything unchanged and parses the HTTP/2 DATA frames going by.

_HTTP2_PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'
_FRAME_DATA = 0x0
_FLAG_PADDED = 0x8


class _GrpcMessageReader:
    """Incremental HTTP/2 frame parser for one direction of one connection.

    Calls on_message(stream_id, compressed_flag) for every complete
    length-prefixed gRPC message found in DATA frames.
    """

    def __init__(self, on_message, client_side):
        self._on_message = on_message
        self._buf = bytearray()
        # The client starts the connection with a fixed preface, not a frame.
        self._skip = len(_HTTP2_PREFACE) if client_side else 0
        self._streams = {}  # stream id -> gRPC bytes not yet parsed

    def feed(self, data):
        self._buf += data
        if self._skip:
            n = min(self._skip, len(self._buf))
            del self._buf[:n]
            self._skip -= n
        while len(self._buf) >= 9:
            length = int.from_bytes(self._buf[0:3], 'big')
            if len(self._buf) < 9 + length:
                break
            frame_type, flags = self._buf[3], self._buf[4]
            stream_id = int.from_bytes(self._buf[5:9], 'big') & 0x7fffffff
            body = bytes(self._buf[9:9 + length])
            del self._buf[:9 + length]
            if frame_type == _FRAME_DATA:
                if flags & _FLAG_PADDED:
                    body = body[1:len(body) - body[0]]
                self._data(stream_id, body)

    def _data(self, stream_id, data):
        buf = self._streams.setdefault(stream_id, bytearray())
        buf += data
        # gRPC message: 1-byte compressed flag, 4-byte length, message.
        while len(buf) >= 5:
            length = int.from_bytes(buf[1:5], 'big')
            if len(buf) < 5 + length:
                break
            self._on_message(stream_id, buf[0])
            del buf[:5 + length]


class MessageFlagTap:
    """TCP relay to (host, port) that records gRPC message compressed flags."""

    def __init__(self, host, port, start=True):
        self._upstream = (host, port)
        self._lock = threading.Lock()
        self._flags = {}  # (direction, connection, stream id) -> [flag, ...]
        if start:
            self._listener = socket.create_server(('127.0.0.1', 0))
            self.port = self._listener.getsockname()[1]
            threading.Thread(target=self._accept_loop, daemon=True).start()

    def flags(self, direction):
        """Compressed flags per stream, in stream order.

        direction is 'request' or 'response'.  Returns one list of flags
        (one per message) for each stream that carried messages that way.
        """
        with self._lock:
            keys = sorted(k for k in self._flags if k[0] == direction)
            return [list(self._flags[k]) for k in keys]

    def _accept_loop(self):
        for connection in itertools.count():
            downstream, _ = self._listener.accept()
            try:
                upstream = socket.create_connection(self._upstream,
                                                    timeout=RPC_TIMEOUT)
                upstream.settimeout(None)
            except OSError:
                downstream.close()
                continue
            for src, dst, direction in ((downstream, upstream, 'request'),
                                        (upstream, downstream, 'response')):
                reader = _GrpcMessageReader(
                    self._recorder(direction, connection),
                    client_side=direction == 'request')
                threading.Thread(target=self._pump, args=(src, dst, reader),
                                 daemon=True).start()

    def _recorder(self, direction, connection):
        def record(stream_id, flag):
            with self._lock:
                self._flags.setdefault((direction, connection, stream_id),
                                       []).append(flag)
        return record

    @staticmethod
    def _pump(src, dst, reader):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                # Record before forwarding, so a message is on record by the
                # time the other side can act on it.
                reader.feed(data)
                dst.sendall(data)
        except OSError:
            src.close()
            dst.close()


class TlsMessageFlagTap(MessageFlagTap):
    """The tap over TLS: it ends the client's TLS with gRPC's test server
    certificate (which the client trusts through the test CA), reads the
    frames in the clear and speaks TLS again to the server, as the client
    would (ALPN h2, the test CA, the override name, the client
    certificate).  On asyncio in a thread of its own: an SSL socket must not
    be read and written by two threads at once."""

    def __init__(self, host, port, args):
        super().__init__(host, port, start=False)
        self._accept = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._accept.load_cert_chain(f'{args.testdata_dir}/server1.pem',
                                     f'{args.testdata_dir}/server1.key')
        self._accept.set_alpn_protocols(['h2'])
        self._connect = ssl.create_default_context(cafile=args.ca_file)
        self._connect.set_alpn_protocols(['h2'])
        if args.client_cert_file:
            self._connect.load_cert_chain(args.client_cert_file,
                                          args.client_key_file)
        self._name = args.server_host_override or host
        self._count = itertools.count()
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,),
                         daemon=True).start()
        ready.wait()

    def _serve(self, ready):
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(
            self._relay, '127.0.0.1', 0, ssl=self._accept))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self._loop.run_forever()

    async def _relay(self, down_reader, down_writer):
        connection = next(self._count)
        try:
            up_reader, up_writer = await asyncio.open_connection(
                *self._upstream, ssl=self._connect,
                server_hostname=self._name)
        except (OSError, ssl.SSLError):
            down_writer.close()
            return
        await asyncio.gather(
            self._pump(down_reader, up_writer, _GrpcMessageReader(
                self._recorder('request', connection), client_side=True)),
            self._pump(up_reader, down_writer, _GrpcMessageReader(
                self._recorder('response', connection), client_side=False)))

    @staticmethod
    async def _pump(reader, writer, tap_reader):
        try:
            while data := await reader.read(65536):
                tap_reader.feed(data)
                writer.write(data)
                await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.close()


def client_stream_with_write_flags(channel, method, requests, timeout):
    """Gzip client-streaming call where each message has its own write flags.

    requests: (serialized message, compress?) pairs.  Returns
    (grpc.StatusCode, details, serialized response or None).

    grpcio's public API applies one compression setting to every message of
    a call, but client_compressed_streaming needs a compressed and an
    uncompressed message on the same call.  So this drives grpcio's core
    call object (the private cygrpc layer of Debian's grpcio 1.51) directly,
    the same way grpc._channel does for stream-unary calls.
    """
    from grpc._cython import cygrpc  # pylint: disable=import-outside-toplevel

    ops = cygrpc.OperationType
    metadata = ((cygrpc.GRPC_COMPRESSION_REQUEST_ALGORITHM_MD_KEY, 'gzip'),)
    # pylint: disable-next=protected-access
    call = channel._channel.segregated_call(
        cygrpc.PropagationConstants.GRPC_PROPAGATE_DEFAULTS, method.encode(),
        None, time.time() + timeout, metadata, None,
        (((cygrpc.SendInitialMetadataOperation(metadata, 0),
           cygrpc.ReceiveMessageOperation(0),
           cygrpc.ReceiveStatusOnClientOperation(0)), None),
         ((cygrpc.ReceiveInitialMetadataOperation(0),), None)),
        cygrpc.build_census_context())
    outstanding = 2  # batches started and not yet completed
    completed = set()
    result = {'message': None}

    def start(operation):
        nonlocal outstanding
        if call.operate((operation,), None):
            outstanding += 1
            return True
        return False

    def wait_for(op_type):
        # The core completes batches in any order; collect what they carry.
        nonlocal outstanding
        while op_type not in completed and outstanding:
            event = call.next_event()
            outstanding -= 1
            for op in event.batch_operations:
                completed.add(op.type())
                if op.type() == ops.receive_message:
                    result['message'] = op.message()
                elif op.type() == ops.receive_status_on_client:
                    result['code'] = op.code()
                    result['details'] = op.details()

    # The core allows one send_message in flight at a time.
    for message, compress in requests:
        flags = 0 if compress else cygrpc.WriteFlag.no_compress
        completed.discard(ops.send_message)
        if not start(cygrpc.SendMessageOperation(message, flags)):
            break
        wait_for(ops.send_message)
    start(cygrpc.SendCloseFromClientOperation(0))
    wait_for(ops.receive_status_on_client)
    while outstanding:  # let the core finish and release the call
        call.next_event()
        outstanding -= 1

    codes = {status.value[0]: status for status in grpc.StatusCode}
    return (codes.get(result.get('code'), grpc.StatusCode.UNKNOWN),
            result.get('details'), result['message'])


# --------------------------------------------------------------------------
# Test cases, in the order of the descriptions.


def empty_unary(stub):
    response = stub.empty_call(empty_pb2.Empty(), timeout=RPC_TIMEOUT)
    check(isinstance(response, empty_pb2.Empty),
          f'response is {response!r}, expected an Empty message')


def large_unary_request(**fields):
    return messages.SimpleRequest(response_size=LARGE_RESPONSE_SIZE,
                                  payload=payload(LARGE_REQUEST_SIZE),
                                  **fields)


def large_unary(stub):
    response = stub.unary_call(large_unary_request(), timeout=RPC_TIMEOUT)
    check_payload(response.payload, LARGE_RESPONSE_SIZE, 'response')


def client_compressed_unary(stub):
    def request(expect_compressed):
        return large_unary_request(
            expect_compressed=messages.BoolValue(value=expect_compressed))

    # Feature probe: the server must reject an uncompressed request that
    # claims to be compressed, proving it really checks.
    expect_status(grpc.StatusCode.INVALID_ARGUMENT,
                  'feature probe (uncompressed, expect_compressed=true)',
                  stub.unary_call, request(True), timeout=RPC_TIMEOUT,
                  compression=grpc.Compression.NoCompression)
    for expect, compression in ((True, grpc.Compression.Gzip),
                                (False, grpc.Compression.NoCompression)):
        what = ('compressed' if expect else 'uncompressed') + ' call'
        try:
            response = stub.unary_call(request(expect), timeout=RPC_TIMEOUT,
                                       compression=compression)
        except grpc.RpcError as err:
            raise TestFailure(f'{what} failed: {err.code().name} '
                              f'({err.details()!r})') from None
        check_payload(response.payload, LARGE_RESPONSE_SIZE,
                      f'{what} response')
    # Self-check: the requests went out as intended, so a failure above is
    # the server's fault and not grpcio's.
    sent = stub.tap.flags('request')
    check(sent == [[0], [1], [0]],
          f'client self-check: request compressed flags per call were {sent}, '
          'expected [[0], [1], [0]]')


def server_compressed_unary(stub):
    for compressed in (True, False):
        request = large_unary_request(
            response_compressed=messages.BoolValue(value=compressed))
        response = stub.unary_call(request, timeout=RPC_TIMEOUT)
        check_payload(response.payload, LARGE_RESPONSE_SIZE,
                      f'response_compressed={compressed} response')
    got = stub.tap.flags('response')
    check(got == [[1], [0]],
          f'response compressed flags per call were {got}, expected '
          '[[1], [0]] (response_compressed=true, then false)')


def client_streaming(stub):
    requests = [messages.StreamingInputCallRequest(payload=payload(size))
                for size in CLIENT_STREAM_SIZES]
    response = stub.streaming_input_call(iter(requests), timeout=RPC_TIMEOUT)
    check(response.aggregated_payload_size == 74922,
          f'aggregated_payload_size is {response.aggregated_payload_size}, '
          'expected 74922')


def client_compressed_streaming(stub):
    def request(expect_compressed, size):
        return messages.StreamingInputCallRequest(
            expect_compressed=messages.BoolValue(value=expect_compressed),
            payload=payload(size))

    expect_status(grpc.StatusCode.INVALID_ARGUMENT,
                  'feature probe (uncompressed, expect_compressed=true)',
                  stub.streaming_input_call, iter([request(True, 27182)]),
                  timeout=RPC_TIMEOUT)
    # One call: a compressed message, then an uncompressed one.
    code, details, response = client_stream_with_write_flags(
        stub.channel, TEST_SERVICE + 'StreamingInputCall',
        [(request(True, 27182).SerializeToString(), True),
         (request(False, 45904).SerializeToString(), False)],
        timeout=RPC_TIMEOUT)
    check(code == grpc.StatusCode.OK,
          f'compressed streaming call failed: {code.name} ({details!r})')
    check(response is not None, 'compressed streaming call had no response')
    size = messages.StreamingInputCallResponse.FromString(
        response).aggregated_payload_size
    check(size == 73086,
          f'aggregated_payload_size is {size}, expected 73086')
    sent = stub.tap.flags('request')
    check(sent == [[0], [1, 0]],
          f'client self-check: request compressed flags per call were {sent}, '
          'expected [[0], [1, 0]]')


def check_streamed_sizes(responses, sizes):
    check(len(responses) == len(sizes),
          f'got {len(responses)} responses, expected exactly {len(sizes)}')
    for i, (response, size) in enumerate(zip(responses, sizes)):
        check_payload(response.payload, size, f'response {i}')


def server_streaming(stub):
    request = messages.StreamingOutputCallRequest(response_parameters=[
        messages.ResponseParameters(size=size)
        for size in SERVER_STREAM_SIZES])
    call = stub.streaming_output_call(request, timeout=RPC_TIMEOUT)
    check_streamed_sizes(list(call), SERVER_STREAM_SIZES)


def server_compressed_streaming(stub):
    sizes = (31415, 92653)
    request = messages.StreamingOutputCallRequest(response_parameters=[
        messages.ResponseParameters(
            size=sizes[0], compressed=messages.BoolValue(value=True)),
        messages.ResponseParameters(
            size=sizes[1], compressed=messages.BoolValue(value=False)),
    ])
    call = stub.streaming_output_call(request, timeout=RPC_TIMEOUT)
    check_streamed_sizes(list(call), sizes)
    got = stub.tap.flags('response')
    check(got == [[1, 0]],
          f'response compressed flags were {got}, expected [[1, 0]] '
          '(compressed=true, then false)')


def ping_pong(stub):
    with RequestPipe() as pipe:
        call = stub.full_duplex_call(pipe, timeout=RPC_TIMEOUT)
        for i, (request_size, response_size) in enumerate(
                zip(CLIENT_STREAM_SIZES, SERVER_STREAM_SIZES)):
            pipe.send(messages.StreamingOutputCallRequest(
                response_parameters=[
                    messages.ResponseParameters(size=response_size)],
                payload=payload(request_size)))
            response = next(call, None)
            check(response is not None,
                  f'stream ended after {i} responses, expected 4')
            check_payload(response.payload, response_size, f'response {i}')
        pipe.close()
        extra = list(call)
        check(not extra, f'got {4 + len(extra)} responses, expected exactly 4')
    check(call.code() == grpc.StatusCode.OK,
          f'call ended with {call.code().name}, expected OK')


def empty_stream(stub):
    call = stub.full_duplex_call(iter([]), timeout=RPC_TIMEOUT)
    responses = list(call)
    check(not responses, f'got {len(responses)} responses, expected none')
    check(call.code() == grpc.StatusCode.OK,
          f'call ended with {call.code().name}, expected OK')


def custom_metadata(stub):
    metadata = ((ECHO_INITIAL_KEY, ECHO_INITIAL_VALUE),
                (ECHO_TRAILING_KEY, ECHO_TRAILING_VALUE))

    def check_echoed(call, what):
        initial = metadata_values(call.initial_metadata(), ECHO_INITIAL_KEY)
        check(ECHO_INITIAL_VALUE in initial,
              f'{what}: initial metadata has {ECHO_INITIAL_KEY}={initial}, '
              f'expected {ECHO_INITIAL_VALUE!r}')
        trailing = metadata_values(call.trailing_metadata(), ECHO_TRAILING_KEY)
        check(ECHO_TRAILING_VALUE in trailing,
              f'{what}: trailing metadata has {ECHO_TRAILING_KEY}={trailing}, '
              f'expected {ECHO_TRAILING_VALUE!r}')

    response, call = stub.unary_call.with_call(
        large_unary_request(), metadata=metadata, timeout=RPC_TIMEOUT)
    check_payload(response.payload, LARGE_RESPONSE_SIZE, 'UnaryCall response')
    check_echoed(call, 'UnaryCall')

    request = messages.StreamingOutputCallRequest(
        response_parameters=[
            messages.ResponseParameters(size=LARGE_RESPONSE_SIZE)],
        payload=payload(LARGE_REQUEST_SIZE))
    call = stub.full_duplex_call(iter([request]), metadata=metadata,
                                 timeout=RPC_TIMEOUT)
    check_streamed_sizes(list(call), [LARGE_RESPONSE_SIZE])
    check(call.code() == grpc.StatusCode.OK,
          f'FullDuplexCall ended with {call.code().name}, expected OK')
    check_echoed(call, 'FullDuplexCall')


def check_echo_status(stub, message, with_full_duplex):
    code = 2
    expected = grpc.StatusCode.UNKNOWN  # code 2
    status = messages.EchoStatus(code=code, message=message)

    def check_details(err, what):
        check(err.details() == message,
              f'{what}: status message is {err.details()!r}, '
              f'expected {message!r}')

    err = expect_status(expected, 'UnaryCall', stub.unary_call,
                        messages.SimpleRequest(response_status=status),
                        timeout=RPC_TIMEOUT)
    check_details(err, 'UnaryCall')
    if with_full_duplex:
        request = messages.StreamingOutputCallRequest(response_status=status)
        call = stub.full_duplex_call(iter([request]), timeout=RPC_TIMEOUT)
        err = expect_status(expected, 'FullDuplexCall', list, call)
        check_details(err, 'FullDuplexCall')


def status_code_and_message(stub):
    check_echo_status(stub, 'test status message', with_full_duplex=True)


def special_status_message(stub):
    check_echo_status(
        stub,
        '\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP '
        '\U0001f608\t\n',
        with_full_duplex=False)


def unimplemented_method(stub):
    method = stub.method('unary_unary', 'UnimplementedCall',
                         empty_pb2.Empty, empty_pb2.Empty)
    expect_status(grpc.StatusCode.UNIMPLEMENTED, 'UnimplementedCall', method,
                  empty_pb2.Empty(), timeout=RPC_TIMEOUT)


def unimplemented_service(stub):
    method = stub.method('unary_unary', 'UnimplementedCall',
                         empty_pb2.Empty, empty_pb2.Empty,
                         service='/grpc.testing.UnimplementedService/')
    expect_status(grpc.StatusCode.UNIMPLEMENTED, 'UnimplementedCall', method,
                  empty_pb2.Empty(), timeout=RPC_TIMEOUT)


def cancel_after_begin(stub):
    with RequestPipe() as pipe:
        future = stub.streaming_input_call.future(pipe, timeout=RPC_TIMEOUT)
        # The description wants the cancel to come after the request headers
        # went out, and grpcio offers no way to observe that; a short pause
        # makes it near certain, so the server's cancel path is exercised.
        time.sleep(0.05)
        future.cancel()
        check(future.cancelled(), 'call was not cancelled')
        check(future.code() == grpc.StatusCode.CANCELLED,
              f'call ended with {future.code().name}, expected CANCELLED')


def cancel_after_first_response(stub):
    with RequestPipe() as pipe:
        call = stub.full_duplex_call(pipe, timeout=RPC_TIMEOUT)
        pipe.send(messages.StreamingOutputCallRequest(
            response_parameters=[messages.ResponseParameters(size=31415)],
            payload=payload(27182)))
        response = next(call, None)
        check(response is not None, 'stream ended before the first response')
        check_payload(response.payload, 31415, 'first response')
        call.cancel()
        expect_status(grpc.StatusCode.CANCELLED, 'cancelled call', list, call)


def timeout_on_sleeping_server(stub):
    with RequestPipe() as pipe:
        # The request asks for no response and the client never half-closes,
        # so the server keeps waiting until the 1 ms deadline expires.
        call = stub.full_duplex_call(pipe, timeout=0.001)
        pipe.send(messages.StreamingOutputCallRequest(payload=payload(27182)))
        expect_status(grpc.StatusCode.DEADLINE_EXCEEDED, 'FullDuplexCall',
                      list, call)


TEST_CASES = {case.__name__: case for case in (
    empty_unary,
    large_unary,
    client_compressed_unary,
    server_compressed_unary,
    client_streaming,
    client_compressed_streaming,
    server_streaming,
    server_compressed_streaming,
    ping_pong,
    empty_stream,
    custom_metadata,
    status_code_and_message,
    special_status_message,
    unimplemented_method,
    unimplemented_service,
    cancel_after_begin,
    cancel_after_first_response,
    timeout_on_sleeping_server,
)}

# Cases that look at the wire through MessageFlagTap.
TAPPED_CASES = {'client_compressed_unary', 'server_compressed_unary',
                'client_compressed_streaming', 'server_compressed_streaming'}


def load_module(pb_dir, name, subdir):
    """Loads NAME.py from pb_dir/subdir or pb_dir itself.

    protoc run with -I/usr/share/grpc-proto writes grpc/testing/X_pb2.py,
    whose natural import name (grpc.testing.X_pb2) is shadowed by the grpcio
    package itself, so the file is loaded by path instead.  These modules
    import nothing generated, so loading them alone is enough.
    """
    for directory in (os.path.join(pb_dir, subdir), pb_dir):
        path = os.path.join(directory, name + '.py')
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    sys.exit(f'interop_client: {name}.py not found in {pb_dir} '
             f'or {os.path.join(pb_dir, subdir)}')


def load_protos(pb_dir):
    global messages, empty_pb2  # pylint: disable=global-statement
    messages = load_module(pb_dir, 'messages_pb2', 'grpc/testing')
    empty_pb2 = load_module(pb_dir, 'empty_pb2', 'grpc/testing')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--server_host', default='127.0.0.1')
    parser.add_argument('--server_port', type=int, required=True)
    parser.add_argument('--test_case', required=True,
                        choices=sorted(TEST_CASES))
    parser.add_argument('--pb_dir', required=True,
                        help='directory holding the generated '
                             'grpc/testing/*_pb2.py modules')
    parser.add_argument('--use_tls', default='false',
                        choices=['true', 'false'])
    parser.add_argument('--use_test_ca', default='false',
                        choices=['true', 'false'])
    parser.add_argument('--server_host_override', default=None)
    parser.add_argument('--testdata_dir', default=TESTDATA)
    parser.add_argument('--ca_file', default=None,
                        help='the test CA (default: ca.pem of the testdata)')
    parser.add_argument('--client_cert_file', default=None)
    parser.add_argument('--client_key_file', default=None)
    args = parser.parse_args()
    load_protos(args.pb_dir)
    if args.ca_file is None and args.use_test_ca == 'true':
        args.ca_file = f'{args.testdata_dir}/ca.pem'
    if (args.client_cert_file is None) != (args.client_key_file is None):
        sys.exit('interop_client: a client certificate needs its key')

    host, port, case = args.server_host, args.server_port, args.test_case
    tls = args.use_tls == 'true'
    tap = None
    if case in TAPPED_CASES:
        tap = (TlsMessageFlagTap(host, port, args) if tls
               else MessageFlagTap(host, port))
        host, port = '127.0.0.1', tap.port
    if ':' in host and not host.startswith('['):
        host = f'[{host}]'  # IPv6 literal
    if tls:
        def read(path):
            with open(path, 'rb') as f:
                return f.read()
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(args.ca_file) if args.ca_file else None,
            private_key=(read(args.client_key_file)
                         if args.client_key_file else None),
            certificate_chain=(read(args.client_cert_file)
                               if args.client_cert_file else None))
        options = []
        if args.server_host_override:
            options.append(('grpc.ssl_target_name_override',
                            args.server_host_override))
        channel = grpc.secure_channel(f'{host}:{port}', credentials, options)
    else:
        channel = grpc.insecure_channel(f'{host}:{port}')
    with channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=RPC_TIMEOUT)
        except grpc.FutureTimeoutError:
            print(f'FAIL {case}: could not connect to '
                  f'{args.server_host}:{args.server_port} within '
                  f'{RPC_TIMEOUT:g} s')
            return 1
        try:
            TEST_CASES[case](Stub(channel, tap))
        except TestFailure as failure:
            print(f'FAIL {case}: {failure}')
            return 1
        except grpc.RpcError as err:
            print(f'FAIL {case}: unexpected RPC failure: '
                  f'{err.code().name} ({err.details()!r})')
            return 1
    print(f'PASS {case}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
