'use strict';
// Call credentials as grpc-js has them (credentials.createFromMetadataGenerator,
// combineChannelCredentials, combineCallCredentials, the per-call
// `credentials` option), over TLS with gRPC's test certificates, grpc-js's
// client and ours against grpc-js's server and ours: the metadata they
// make reaches the handler, the generator sees the same service_url and
// method_name, and a generator's error ends the call as grpc-js ends it.
const test = require('node:test');
const assert = require('node:assert');
const { spawnSync } = require('child_process');
const c = require('./common.js');

const { dir, read, have, clientOptions: opts } = c.tls;
const libs = { 'grpc-js': c.grpcJs, uvgrpc: c.uvgrpc };

// A TLS server whose Unary answers with the request metadata it got.
async function startTls(lib) {
  const server = new lib.Server();
  server.addService(c.service, {
    Unary(call, callback) {
      const md = call.metadata.getMap();
      callback(null, { message: JSON.stringify({ auth: md.authorization, call: md['x-call'] }) });
    },
  });
  const creds = lib.ServerCredentials.createSsl(null,
    [{ private_key: read('server1.key'), cert_chain: read('server1.pem') }]);
  const port = await new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))));
  return { server, port };
}

function unary(client, options) {
  return new Promise((resolve) => client.Unary({ message: 'x' }, new (client instanceof c.grpcJs.Client ? c.grpcJs : c.uvgrpc).Metadata(),
    options || {}, (err, reply) => resolve({ err, reply: reply && JSON.parse(reply.message) })));
}

for (const [serverName, serverLib] of Object.entries(libs)) {
  for (const [clientName, lib] of Object.entries(libs)) {
    test(`call credentials: ${clientName} client -> ${serverName} server`,
         { skip: !have && `no ${dir}` }, async () => {
      const { server, port } = await startTls(serverLib);
      const asked = [];
      const token = lib.credentials.createFromMetadataGenerator((options, cb) => {
        asked.push(options);
        const md = new lib.Metadata();
        md.set('authorization', 'Bearer t0ken');
        setTimeout(() => cb(null, md), 5); // later, as a token fetch is
      });
      const perCall = lib.credentials.createFromMetadataGenerator((options, cb) => {
        const md = new lib.Metadata();
        md.set('x-call', 'yes');
        cb(null, md);
      });
      const Echo = lib.makeClientConstructor(c.service, 'Echo');
      const channelCreds = lib.credentials.combineChannelCredentials(
        lib.credentials.createSsl(read('ca.pem')), token);
      const client = new Echo(`127.0.0.1:${port}`, channelCreds, opts);

      // the channel's credentials on every call, a call's own besides
      let r = await unary(client);
      assert.ifError(r.err);
      assert.deepStrictEqual(r.reply, { auth: 'Bearer t0ken' });
      r = await unary(client, { credentials: perCall });
      assert.ifError(r.err);
      assert.deepStrictEqual(r.reply, { auth: 'Bearer t0ken', call: 'yes' });
      assert.deepStrictEqual(asked[0], { service_url: 'https://127.0.0.1/uvgrpc.test.Echo',
                                         method_name: '/uvgrpc.test.Echo/Unary' });

      // combined call credentials carry the metadata of each
      r = await unary(client, { credentials: lib.credentials.combineCallCredentials(
        perCall, lib.credentials.createEmpty()) });
      assert.deepStrictEqual(r.reply, { auth: 'Bearer t0ken', call: 'yes' });

      // a generator's error ends the call: its code, or UNKNOWN
      const failing = (code) => lib.credentials.createFromMetadataGenerator((options, cb) => {
        const err = new Error('nope');
        if (code !== undefined) err.code = code;
        cb(err);
      });
      r = await unary(client, { credentials: failing(lib.status.UNAUTHENTICATED) });
      assert.strictEqual(r.err.code, lib.status.UNAUTHENTICATED);
      assert.strictEqual(r.err.details, 'Getting metadata from plugin failed with error: nope');
      r = await unary(client, { credentials: failing() });
      assert.strictEqual(r.err.code, lib.status.UNKNOWN);
      assert.strictEqual(r.err.details, 'Getting metadata from plugin failed with error: nope');

      client.close();
      await c.stopServer(server);
    });
  }
}

for (const [name, lib] of Object.entries(libs)) {
  test(`call credentials do not compose with insecure ones: ${name}`, () => {
    const token = lib.credentials.createFromMetadataGenerator((o, cb) => cb(null, new lib.Metadata()));
    assert.throws(() => lib.credentials.combineChannelCredentials(lib.credentials.createInsecure(), token),
                  /Cannot compose insecure credentials/);
  });
}

test('a generator that drops its callback ends the call UNAVAILABLE (uvgrpc)',
     { skip: !have && `no ${dir}` }, () => {
  // In a child process with --expose-gc: the request is answered when the
  // callback that could have answered it is collected, instead of holding
  // the call until its deadline (grpc-js holds it).
  const script = `
    const c = require(${JSON.stringify(require.resolve('./common.js'))});
    const lib = c.uvgrpc;
    (async () => {
      const server = new lib.Server();
      server.addService(c.service, { Unary(call, cb) { cb(null, { message: 'x' }); } });
      const creds = lib.ServerCredentials.createSsl(null,
        [{ private_key: c.tls.read('server1.key'), cert_chain: c.tls.read('server1.pem') }]);
      const port = await new Promise((resolve) => server.bindAsync('127.0.0.1:0', creds, (e, p) => resolve(p)));
      let asked = 0;
      const dropping = lib.credentials.createFromMetadataGenerator(() => { asked++; });
      const Echo = lib.makeClientConstructor(c.service, 'Echo');
      const client = new Echo('127.0.0.1:' + port, lib.credentials.createSsl(c.tls.read('ca.pem')),
                              c.tls.clientOptions);
      const gc = setInterval(() => global.gc(), 50);
      const t0 = Date.now();
      const err = await new Promise((resolve) => client.Unary({ message: 'x' }, new lib.Metadata(),
        { credentials: dropping, deadline: Date.now() + 8000 }, resolve));
      clearInterval(gc);
      console.log(JSON.stringify({ asked, code: err && err.code, details: err && err.details,
                                   ms: Date.now() - t0 }));
      client.close();
      server.forceShutdown();
    })();`;
  const r = spawnSync(process.execPath, ['--expose-gc', '-e', script],
                      { encoding: 'utf8', timeout: 20000 });
  assert.strictEqual(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim());
  assert.strictEqual(out.asked, 1);
  assert.strictEqual(out.code, c.uvgrpc.status.UNAVAILABLE);
  assert.strictEqual(out.details, 'call credentials dropped unanswered');
  assert.ok(out.ms < 4000, `${out.ms} ms`);
});
