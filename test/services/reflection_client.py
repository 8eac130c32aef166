#!/usr/bin/env python3
"""A server reflection client on grpcio, as grpcurl works: it knows no
.proto of the server. It lists the services, fetches their files with
their imports, builds message types from them and calls a method.

    reflection_client.py --server_host=H --server_port=N --test_case=C
                         --pb_dir=DIR

DIR holds reflection_pb2.py and health_pb2.py, compiled from grpc-proto's
grpc/reflection/v1/reflection.proto and grpc/health/v1/health.proto (the
v1alpha service is called with the v1 messages: they are the same on the
wire). Cases:

  services  against services_server: every kind of reflection request,
            both versions, errors, then a call of uvg.test.v1.Kinds/Unary
            and Echo/Say through types built from the served files; the
            health service's Check and Watch.
  interop   against an interop server: finds grpc.testing.TestService and
            calls EmptyCall and UnaryCall through types built from the
            served files.

Prints PASS or FAIL lines; exits 0 only if every check passed.
"""

import argparse
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

V1 = '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo'
V1ALPHA = '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo'
NOT_FOUND = 5

failures = 0


def check(what, ok, detail=''):
    global failures
    if ok:
        print(f'PASS {what}')
    else:
        failures += 1
        print(f'FAIL {what}: {detail}')


class Reflection:
    """One reflection stream: each ask() sends a request and reads its
    response, as a client exploring a server does."""

    def __init__(self, channel, path, pb):
        self.pb = pb
        self.requests = []
        self.stub = channel.stream_stream(
            path,
            request_serializer=pb.ServerReflectionRequest.SerializeToString,
            response_deserializer=pb.ServerReflectionResponse.FromString)

    def ask_all(self, requests):
        """Sends every request on one stream; returns the responses."""
        return list(self.stub(iter(requests), timeout=10))

    def ask(self, **kw):
        return self.ask_all([self.pb.ServerReflectionRequest(host='h', **kw)])[0]

    def files(self, **kw):
        """The FileDescriptorProtos of a file_* request, by name."""
        resp = self.ask(**kw)
        kind = resp.WhichOneof('message_response')
        if kind != 'file_descriptor_response':
            raise LookupError(f'{kw}: {kind} {resp}')
        out = {}
        for raw in resp.file_descriptor_response.file_descriptor_proto:
            fdp = descriptor_pb2.FileDescriptorProto.FromString(raw)
            out[fdp.name] = fdp
        return out

    def services(self):
        resp = self.ask(list_services='')
        return sorted(s.name for s in resp.list_services_response.service)


def build_pool(files):
    """A descriptor pool of `files` (name -> FileDescriptorProto), each
    added after its imports, as a reflection client must."""
    pool = descriptor_pool.DescriptorPool()
    added = set()

    def add(name):
        if name in added:
            return
        for dep in files[name].dependency:
            add(dep)
        pool.Add(files[name])
        added.add(name)

    for name in files:
        add(name)
    return pool


def message_class(pool, full_name):
    desc = pool.FindMessageTypeByName(full_name)
    if hasattr(message_factory, 'GetMessageClass'):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def fetch_service(refl, service):
    """The pool of everything `service` needs, found through reflection."""
    files = refl.files(file_containing_symbol=service)
    return build_pool(files), files


def unary(channel, pool, service, method, **fields):
    """Calls service/method with a request built from the pool's types."""
    m = pool.FindServiceByName(service).FindMethodByName(method)
    req_cls = message_class(pool, m.input_type.full_name)
    resp_cls = message_class(pool, m.output_type.full_name)
    call = channel.unary_unary(f'/{service}/{method}',
                               request_serializer=req_cls.SerializeToString,
                               response_deserializer=resp_cls.FromString)
    return call(req_cls(**fields), timeout=10)


def case_services(channel, pb_dir):
    import health_pb2
    import reflection_pb2 as pb
    refl = Reflection(channel, V1, pb)
    alpha = Reflection(channel, V1ALPHA, pb)
    want = ['Echo', 'grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection',
            'grpc.reflection.v1alpha.ServerReflection', 'uvg.test.v1.Kinds',
            'uvg.test.v1.Other']
    check('list_services (v1)', refl.services() == want, refl.services())
    check('list_services (v1alpha)', alpha.services() == want, alpha.services())

    files = refl.files(file_by_filename='uvg/test/v1/kinds.proto')
    check('file_by_filename with its imports',
          sorted(files) == ['imports/common.proto', 'imports/ext.proto',
                            'uvg/test/v1/kinds.proto'], sorted(files))
    kinds = files.get('uvg/test/v1/kinds.proto')
    check('the file is the descriptor protoc made',
          kinds is not None and kinds.package == 'uvg.test.v1' and
          [s.name for s in kinds.service] == ['Kinds', 'Other'] and
          not kinds.HasField('source_code_info'), kinds)

    for symbol, filename in [('uvg.test.v1.Kinds', 'uvg/test/v1/kinds.proto'),
                             ('uvg.test.v1.Kinds.Chat', 'uvg/test/v1/kinds.proto'),
                             ('uvg.test.v1.Outer.Inner', 'uvg/test/v1/kinds.proto'),
                             ('uvg.test.common.Color', 'imports/common.proto'),
                             ('uvg.test.ext.Holder.ext_b', 'imports/ext.proto'),
                             ('Echo', 'nopkg.proto'),
                             ('Ping', 'nopkg.proto'),
                             ('grpc.health.v1.Health', 'grpc/health/v1/health.proto')]:
        resp = refl.ask(file_containing_symbol=symbol)
        got = [descriptor_pb2.FileDescriptorProto.FromString(b).name
               for b in resp.file_descriptor_response.file_descriptor_proto]
        check(f'file_containing_symbol {symbol}', got[:1] == [filename], got)
    echo_files = refl.files(file_containing_symbol='Echo')
    check('a file without a package, with a google/protobuf import',
          sorted(echo_files) == ['google/protobuf/empty.proto', 'nopkg.proto'],
          sorted(echo_files))

    resp = refl.ask(file_containing_symbol='no.such.Thing')
    check('unknown symbol: NOT_FOUND',
          resp.WhichOneof('message_response') == 'error_response' and
          resp.error_response.error_code == NOT_FOUND, resp)
    resp = refl.ask(file_by_filename='nope.proto')
    check('unknown file: NOT_FOUND',
          resp.error_response.error_code == NOT_FOUND, resp)
    check('original_request and valid_host echoed',
          resp.original_request.file_by_filename == 'nope.proto' and
          resp.valid_host == 'h', resp)

    ext = pb.ExtensionRequest(containing_type='uvg.test.ext.Extendable',
                              extension_number=101)
    files = refl.files(file_containing_extension=ext)
    check('file_containing_extension', list(files)[:1] == ['imports/ext.proto'],
          list(files))
    resp = refl.ask(all_extension_numbers_of_type='uvg.test.ext.Extendable')
    got = resp.all_extension_numbers_response
    check('all_extension_numbers_of_type',
          got.base_type_name == 'uvg.test.ext.Extendable' and
          sorted(got.extension_number) == [100, 101], resp)
    resp = refl.ask(all_extension_numbers_of_type='no.Such')
    check('extension numbers of an unknown type: NOT_FOUND',
          resp.error_response.error_code == NOT_FOUND, resp)
    files = alpha.files(file_containing_symbol='uvg.test.v1.Kinds')
    check('v1alpha file_containing_symbol', 'uvg/test/v1/kinds.proto' in files,
          list(files))

    # Many requests on one stream: one response each, in order.
    many = [pb.ServerReflectionRequest(file_containing_symbol=s)
            for s in ['Echo', 'no.Such', 'uvg.test.v1.Kinds'] * 20]
    resps = refl.ask_all(many)
    check('60 requests on one stream', len(resps) == 60 and all(
        r.original_request.file_containing_symbol == q.file_containing_symbol
        for q, r in zip(many, resps)), len(resps))

    # What grpcurl does: describe and call, knowing nothing in advance.
    pool, _ = fetch_service(refl, 'uvg.test.v1.Kinds')
    svc = pool.FindServiceByName('uvg.test.v1.Kinds')
    shape = [(m.name, m.input_type.full_name, m.output_type.full_name)
             for m in svc.methods]
    check('describe uvg.test.v1.Kinds', shape[0] == (
        'Unary', 'uvg.test.v1.Outer.Inner', 'uvg.test.v1.Outer.Inner') and
        len(shape) == 5, shape)
    reply = unary(channel, pool, 'uvg.test.v1.Kinds', 'Unary', value=21, text='x')
    check('call uvg.test.v1.Kinds/Unary from served types',
          reply.value == 42 and reply.text == 'twice:x', reply)
    pool, _ = fetch_service(refl, 'Echo')
    reply = unary(channel, pool, 'Echo', 'Say', text='hello')
    check('call Echo/Say from served types', reply.text == 'hello', reply)

    def health(service):
        call = channel.unary_unary(
            '/grpc.health.v1.Health/Check',
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        try:
            return call(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        except grpc.RpcError as e:
            return e.code()

    R = health_pb2.HealthCheckResponse
    check('health Check ""', health('') == R.SERVING, health(''))
    check('health Check uvg.test.v1.Other', health('uvg.test.v1.Other') == R.NOT_SERVING)
    check('health Check unknown', health('x.Y') == grpc.StatusCode.NOT_FOUND)
    watch = channel.unary_stream(
        '/grpc.health.v1.Health/Watch',
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString)
    stream = watch(health_pb2.HealthCheckRequest(service='x.Y'), timeout=10)
    first = next(stream)
    check('health Watch unknown: SERVICE_UNKNOWN', first.status == R.SERVICE_UNKNOWN,
          first)
    stream.cancel()


def case_interop(channel, pb_dir):
    import reflection_pb2 as pb
    refl = Reflection(channel, V1, pb)
    services = refl.services()
    check('list_services has grpc.testing.TestService',
          'grpc.testing.TestService' in services, services)
    pool, files = fetch_service(refl, 'grpc.testing.TestService')
    check('test.proto comes with its imports',
          {'grpc/testing/test.proto', 'grpc/testing/empty.proto',
           'grpc/testing/messages.proto'} <= set(files), sorted(files))
    reply = unary(channel, pool, 'grpc.testing.TestService', 'EmptyCall')
    check('call grpc.testing.TestService/EmptyCall', reply.ByteSize() == 0, reply)
    reply = unary(channel, pool, 'grpc.testing.TestService', 'UnaryCall',
                  response_size=10)
    check('call grpc.testing.TestService/UnaryCall',
          len(reply.payload.body) == 10, reply)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--server_host', default='127.0.0.1')
    ap.add_argument('--server_port', type=int, required=True)
    ap.add_argument('--test_case', required=True, choices=['services', 'interop'])
    ap.add_argument('--pb_dir', required=True)
    ap.add_argument('--server_host_override')
    args = ap.parse_args()
    sys.path.insert(0, args.pb_dir)
    with grpc.insecure_channel(f'{args.server_host}:{args.server_port}') as channel:
        try:
            {'services': case_services, 'interop': case_interop}[args.test_case](
                channel, args.pb_dir)
        except (grpc.RpcError, LookupError, KeyError, StopIteration) as e:
            check('no unexpected error', False, repr(e))
    print(f'{failures} failed')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
