'use strict';
// TLS both ways with gRPC's test certificates (server1.pem for
// *.test.google.fr, signed by ca.pem; x509/client1_cert.pem for mTLS):
// grpc-js and uvgrpc clients against grpc-js and uvgrpc servers.
const test = require('node:test');
const assert = require('node:assert');
const c = require('./common.js');

const { dir, read, have, clientOptions: opts } = c.tls;
const libs = { 'grpc-js': c.grpcJs, uvgrpc: c.uvgrpc };

async function startTls(lib, mtls) {
  const { impl } = c.makeImpl(lib);
  const server = new lib.Server();
  server.addService(c.service, impl);
  const creds = lib.ServerCredentials.createSsl(
    mtls ? read('x509/client_ca_cert.pem') : null,
    [{ private_key: read('server1.key'), cert_chain: read('server1.pem') }], mtls);
  const port = await new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))));
  return { server, port };
}

for (const [serverName, serverLib] of Object.entries(libs)) {
  for (const [clientName, clientLib] of Object.entries(libs)) {
    test(`TLS: ${clientName} client -> ${serverName} server`, { skip: !have && `no ${dir}` }, async () => {
      const { server, port } = await startTls(serverLib, false);
      const Echo = clientLib.makeClientConstructor(c.service, 'Echo');
      const client = new Echo(`127.0.0.1:${port}`, clientLib.credentials.createSsl(read('ca.pem')), opts);
      const r = await c.unary(client, { message: 'secret' });
      assert.ifError(r.err);
      assert.strictEqual(r.reply.message, 'secret');
      const got = [];
      for await (const m of client.ServerStream({ message: 's', count: 2 })) got.push(m.message);
      assert.deepStrictEqual(got, ['s 0', 's 1']);
      client.close();
      await c.stopServer(server);
    });

    test(`mTLS: ${clientName} client -> ${serverName} server`, { skip: !have && `no ${dir}` }, async () => {
      const { server, port } = await startTls(serverLib, true);
      const Echo = clientLib.makeClientConstructor(c.service, 'Echo');
      const withCert = new Echo(`127.0.0.1:${port}`, clientLib.credentials.createSsl(
        read('ca.pem'), read('x509/client1_key.pem'), read('x509/client1_cert.pem')), opts);
      const r = await c.unary(withCert, { message: 'me' });
      assert.ifError(r.err);
      assert.strictEqual(r.reply.message, 'me');
      const without = new Echo(`127.0.0.1:${port}`, clientLib.credentials.createSsl(read('ca.pem')), opts);
      const r2 = await c.unary(without, { message: 'anon' }, undefined, { deadline: Date.now() + 3000 });
      assert.ok(r2.err, 'a client without a certificate is refused');
      assert.strictEqual(r2.err.code, c.grpcJs.status.UNAVAILABLE);
      withCert.close();
      without.close();
      await c.stopServer(server);
    });
  }
}
