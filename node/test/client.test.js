'use strict';
// The client's answers where a call goes wrong on the client's side, as
// grpc-js gives them, each case run with grpc-js's client and ours against
// our server: a request that cannot be serialized or a response that
// cannot be parsed (INTERNAL, the call ends), a unary call answered with
// no message or two (UNIMPLEMENTED), Metadata that refuses what cannot go
// on the wire, and the order of a unary call's callback and 'status'.
const test = require('node:test');
const assert = require('node:assert');
const { spawnSync } = require('child_process');
const c = require('./common.js');

const libs = { 'grpc-js': c.grpcJs, uvgrpc: c.uvgrpc };

// The Echo service with some of its methods' definitions changed.
function serviceWith(changes) {
  const s = {};
  for (const [name, def] of Object.entries(c.service)) s[name] = Object.assign({}, def, changes[name]);
  return s;
}

const boom = () => { throw new Error('boom'); };

test('client errors', async (t) => {
  const { server, port } = await c.startServer(c.uvgrpc);
  for (const [name, lib] of Object.entries(libs)) {
    const client = (service) => {
      const Ctor = lib.makeClientConstructor(service, 'Echo');
      return new Ctor(`127.0.0.1:${port}`, lib.credentials.createInsecure());
    };

    const broken = [
      ['a request that cannot be serialized', 'requestSerialize', /^Request message serialization failure: boom$/],
      ['a response that cannot be parsed', 'responseDeserialize', /^Response message parsing error: boom$/],
    ];
    for (const [what, fn, details] of broken) {
      await t.test(`${name}: ${what}`, async () => {
        const cl = client(serviceWith({ Unary: { [fn]: boom }, ServerStream: { [fn]: boom } }));
        const err = await new Promise((resolve) => cl.Unary({ message: 'x' }, resolve));
        assert.strictEqual(err.code, lib.status.INTERNAL);
        assert.match(err.details, details);
        const serr = await new Promise((resolve) => {
          const call = cl.ServerStream({ message: 'x', count: 3 });
          call.on('data', () => {});
          call.on('error', resolve);
        });
        assert.strictEqual(serr.code, lib.status.INTERNAL);
        assert.match(serr.details, details);
        cl.close();
      });
    }

    await t.test(`${name}: a unary answer with no message or two`, async () => {
      // ServerStream called as if it were unary
      const cl = client(serviceWith({ ServerStream: { responseStream: false } }));
      const none = await new Promise((resolve) => cl.ServerStream({ message: 'x', count: 0 }, resolve));
      assert.strictEqual(none.code, lib.status.UNIMPLEMENTED);
      assert.strictEqual(none.details, 'No message received');
      // grpc-js 1.14.7 means to end such a call UNIMPLEMENTED too, but it
      // reads no further than the first message and waits forever
      if (lib === c.uvgrpc) {
        const two = await new Promise((resolve) => cl.ServerStream({ message: 'x', count: 2 }, resolve));
        assert.strictEqual(two.code, lib.status.UNIMPLEMENTED);
        assert.strictEqual(two.details, 'Too many responses received');
      }
      cl.close();
    });

    await t.test(`${name}: the callback runs before 'status'`, async () => {
      const cl = client(c.service);
      const order = [];
      await new Promise((resolve) => {
        const call = cl.Unary({ message: 'x' }, () => order.push('callback'));
        call.on('status', () => { order.push('status'); resolve(); });
      });
      assert.deepStrictEqual(order, ['callback', 'status']);
      cl.close();
    });

    await t.test(`${name}: Metadata refuses what cannot go on the wire`, () => {
      const md = new lib.Metadata();
      assert.throws(() => md.set('x-text', 'a\nb'), /^Error: Metadata string value "a\nb" contains illegal characters$/);
      assert.throws(() => md.add('x-text', 'é'), /contains illegal characters/);
      assert.throws(() => md.set('x-text', Buffer.from('a')), /must have String values/);
      assert.throws(() => md.set('x-blob-bin', 'a'), /must have Buffer values/);
      assert.throws(() => md.set('x text', 'a'), /Metadata key "x text" contains illegal characters/);
      md.set('x-text', ' printable ~ ASCII ');
      assert.deepStrictEqual(md.get('x-text'), [' printable ~ ASCII ']);
    });
  }
  await c.stopServer(server);
});

test('a \'data\' listener that throws loses no message (uvgrpc)', () => {
  // In a child process, so that node:test's own handlers stay out of it.
  // Enough messages that some arrive together and are handed over at once.
  const script = `
    const c = require(${JSON.stringify(require.resolve('./common.js'))});
    const lib = c.uvgrpc;
    const uncaught = [];
    process.on('uncaughtException', (e) => uncaught.push(e.message));
    const server = new lib.Server();
    server.addService(c.service, {
      ServerStream(call) {
        for (let i = 0; i < 200; i++) call.write({ message: String(i) });
        call.end();
      },
    });
    server.bindAsync('127.0.0.1:0', lib.ServerCredentials.createInsecure(), (err, port) => {
      const client = c.makeClient(lib, port);
      const got = [];
      const call = client.ServerStream({ message: 'x', count: 200 });
      call.on('data', (m) => {
        got.push(Number(m.message));
        if (got.length % 50 === 1) throw new Error('listener ' + got.length);
      });
      call.on('end', () => {
        client.close();
        server.tryShutdown(() => console.log(JSON.stringify({ got, uncaught })));
      });
    });`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000 });
  assert.strictEqual(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim());
  assert.deepStrictEqual(out.got, Array.from({ length: 200 }, (_, i) => i));
  assert.deepStrictEqual(out.uncaught, ['listener 1', 'listener 51', 'listener 101', 'listener 151']);
});

test('large messages in a server stream arrive whole, in order', async () => {
  const { server, port } = await c.startServer(c.uvgrpc);
  for (const lib of [c.grpcJs, c.uvgrpc]) {
    const client = c.makeClient(lib, port);
    const big = 'y'.repeat(1 << 20);
    const got = [];
    for await (const m of client.ServerStream({ message: big, count: 4 })) got.push(m.message);
    assert.deepStrictEqual(got, [0, 1, 2, 3].map((i) => `${big} ${i}`));
    client.close();
  }
  await c.stopServer(server);
});
