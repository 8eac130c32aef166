'use strict';
// What the tests share: the Echo service's definition (loaded by
// @grpc/proto-loader) and one implementation object that both grpc-js's
// Server and ours serve.
const fs = require('fs');
const path = require('path');
const protoLoader = require('@grpc/proto-loader');
const grpcJs = require('@grpc/grpc-js');
const uvgrpc = require('..');

const packageDefinition = protoLoader.loadSync(path.join(__dirname, 'echo.proto'), {
  keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
});
const service = packageDefinition['uvgrpc.test.Echo'];

const DETAILS = Buffer.from([0x08, 0x05, 0x12, 0x04, 0x6e, 0x6f, 0x70, 0x65]);

// `lib` is the library whose Metadata and status the handlers use: the
// same object serves through both servers, each given its own library's
// classes as grpc-js code would import them.
function makeImpl(lib) {
  const seen = { cancelled: 0, deadlines: [] };
  const answer = (call, req, callback) => {
    const echo = call.metadata.get('x-echo');
    if (echo.length > 0) {
      const md = new lib.Metadata();
      md.set('x-echo', echo[0]);
      call.sendMetadata(md);
    }
    if (req.code) {
      const md = new lib.Metadata();
      md.set('x-trailer', 'bad');
      md.set('grpc-status-details-bin', DETAILS);
      callback({ code: req.code, details: req.details, metadata: md });
      return;
    }
    const trailer = new lib.Metadata();
    trailer.set('x-trailer', 'good');
    callback(null, { message: req.message }, trailer);
  };
  const impl = {
    Unary(call, callback) {
      const req = call.request;
      const deadline = call.getDeadline();
      seen.deadlines.push(deadline instanceof Date ? deadline.getTime() : deadline);
      call.on('cancelled', () => { seen.cancelled++; });
      if (req.delay_ms) {
        setTimeout(() => { if (!call.cancelled) answer(call, req, callback); },
                   req.delay_ms);
      } else {
        answer(call, req, callback);
      }
    },
    ServerStream(call) {
      const n = call.request.count;
      for (let i = 0; i < n; i++) call.write({ message: `${call.request.message} ${i}` });
      if (call.request.code) {
        call.emit('error', { code: call.request.code, details: call.request.details });
        return;
      }
      call.end();
    },
    ClientStream(call, callback) {
      const got = [];
      call.on('data', (m) => got.push(m.message));
      call.on('end', () => callback(null, { message: got.join(',') }));
    },
    Bidi(call) {
      call.on('cancelled', () => { seen.cancelled++; });
      call.on('data', (m) => call.write({ message: m.message.toUpperCase() }));
      call.on('end', () => call.end());
    },
  };
  return { impl, seen };
}

// Starts `lib`'s server with the shared implementation on 127.0.0.1.
function startServer(lib) {
  const { impl, seen } = makeImpl(lib);
  const server = new lib.Server();
  server.addService(service, impl);
  return new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', lib.ServerCredentials.createInsecure(), (err, port) => {
      if (err) return reject(err);
      if (lib === grpcJs && server.start && !grpcJs.Server.prototype.tryShutdown) server.start();
      resolve({ server, port, seen });
    });
  });
}

function stopServer(server) {
  return new Promise((resolve) => server.tryShutdown(() => resolve()));
}

function makeClient(lib, port) {
  const Echo = lib.makeClientConstructor(service, 'Echo');
  return new Echo(`127.0.0.1:${port}`, lib.credentials.createInsecure());
}

function unary(client, req, metadata, options) {
  return new Promise((resolve) => {
    const events = {};
    const call = client.Unary(req, metadata || new (client instanceof grpcJs.Client ? grpcJs : uvgrpc).Metadata(),
                              options || {}, (err, reply) => resolve({ err, reply, events }));
    call.on('metadata', (md) => { events.metadata = md; });
    call.on('status', (st) => { events.status = st; });
  });
}

// gRPC's test certificates (server1.pem for *.test.google.fr, signed by
// ca.pem); `have` is false where they are not installed.
const tlsDir = process.env.GRPC_TESTDATA || '/usr/share/gocode/src/google.golang.org/grpc/testdata';
const tls = {
  dir: tlsDir,
  read: (f) => fs.readFileSync(path.join(tlsDir, f)),
  have: fs.existsSync(path.join(tlsDir, 'server1.pem')),
  clientOptions: { 'grpc.ssl_target_name_override': 'foo.test.google.fr' },
};

module.exports = { grpcJs, uvgrpc, service, packageDefinition, DETAILS, makeImpl,
                   startServer, stopServer, makeClient, unary, tls };
