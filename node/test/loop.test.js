'use strict';
// Event-loop discipline: the addon runs on Node's own loop and its own
// threads are none; callbacks enter JavaScript in their async context; a
// handler that throws reaches process.on('uncaughtException').
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const crypto = require('crypto');
const dns = require('dns');
const { spawnSync } = require('child_process');
const { AsyncLocalStorage } = require('async_hooks');
const c = require('./common.js');

const threads = () => fs.readdirSync('/proc/self/task').length;

function rpcsOfAllKinds(client) {
  const unary = c.unary(client, { message: 'u' }).then((r) => assert.ifError(r.err));
  const sstream = (async () => {
    let n = 0;
    for await (const m of client.ServerStream({ message: 's', count: 3 })) n += m ? 1 : 0;
    assert.strictEqual(n, 3);
  })();
  const cstream = new Promise((resolve, reject) => {
    const call = client.ClientStream((err, r) => (err ? reject(err) : resolve(r)));
    call.write({ message: 'a' });
    call.write({ message: 'b' });
    call.end();
  }).then((r) => assert.strictEqual(r.message, 'a,b'));
  const bidi = new Promise((resolve, reject) => {
    const call = client.Bidi();
    let n = 0;
    call.on('data', () => n++);
    call.on('end', () => resolve(n));
    call.on('error', reject);
    call.write({ message: 'x' });
    call.end();
  }).then((n) => assert.strictEqual(n, 1));
  return Promise.all([unary, sstream, cstream, bidi]);
}

test('the addon brings no libuv of its own', () => {
  // In a fresh process: the libuv mappings before and after loading the
  // addon are the same (none when node carries libuv inside, as Node's
  // own builds do; Debian's node maps its libuv.so.1 itself).
  const script = `
    const fs = require('fs');
    const uv = () => [...new Set(fs.readFileSync('/proc/self/maps', 'utf8')
      .split('\\n').filter((l) => /libuv/.test(l)).map((l) => l.split(/\\s+/).pop()))];
    const before = uv();
    require(${JSON.stringify(require.resolve('..'))});
    const loaded = fs.readFileSync('/proc/self/maps', 'utf8').includes('uvgrpc.node');
    console.log(JSON.stringify({ before, after: uv(), loaded }));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000 });
  assert.strictEqual(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim());
  assert.ok(out.loaded, 'the addon is loaded');
  assert.deepStrictEqual(out.after, out.before, 'no libuv is mapped by the addon');
});

test('no thread of its own: the thread count is the same after 400 RPCs', async () => {
  // Warm Node's threadpool (4 threads) and the resolver first.
  await Promise.all([1, 2, 3, 4].map(() => new Promise((resolve) =>
    crypto.pbkdf2('x', 'y', 20000, 32, 'sha256', resolve))));
  await dns.promises.lookup('localhost');
  const { server, port } = await c.startServer(c.uvgrpc);
  const client = c.makeClient(c.uvgrpc, port);
  await rpcsOfAllKinds(client);
  const before = threads();
  for (let i = 0; i < 100; i++) await rpcsOfAllKinds(client);
  const after = threads();
  client.close();
  await c.stopServer(server);
  assert.strictEqual(after, before);
  assert.strictEqual(threads(), before);
});

test('AsyncLocalStorage and promises work in handlers and client callbacks', async () => {
  const als = new AsyncLocalStorage();
  const server = new c.uvgrpc.Server();
  server.addService(c.service, {
    async Unary(call, callback) {
      await new Promise((resolve) => setImmediate(resolve));
      als.run({ inHandler: true }, () => {
        setTimeout(() => callback(null, { message: String(als.getStore().inHandler) }), 1);
      });
    },
  });
  const port = await new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', c.uvgrpc.ServerCredentials.createInsecure(),
                     (err, p) => (err ? reject(err) : resolve(p))));
  const client = c.makeClient(c.uvgrpc, port);
  const store = { id: 42 };
  const seen = await new Promise((resolve) => {
    als.run(store, () => {
      client.Unary({ message: 'x' }, (err, reply) => resolve({ err, reply, store: als.getStore() }));
    });
  });
  assert.ifError(seen.err);
  assert.strictEqual(seen.reply.message, 'true');
  assert.strictEqual(seen.store, store, 'the callback runs in the caller\'s async context');
  client.close();
  await c.stopServer(server);
});

test('a handler that throws reaches process.on(\'uncaughtException\')', () => {
  // In a child process, so that node:test's own handlers stay out of it.
  const script = `
    const c = require(${JSON.stringify(require.resolve('./common.js'))});
    const server = new c.uvgrpc.Server();
    let uncaught = null;
    process.on('uncaughtException', (e) => { uncaught = e.message; });
    server.addService(c.service, { Unary() { throw new Error('boom'); } });
    server.bindAsync('127.0.0.1:0', c.uvgrpc.ServerCredentials.createInsecure(), (err, port) => {
      const client = c.makeClient(c.uvgrpc, port);
      client.Unary({ message: 'x' }, (err) => {
        client.close();
        server.tryShutdown(() => {
          console.log(JSON.stringify({ code: err && err.code, uncaught }));
        });
      });
    });`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000 });
  assert.strictEqual(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim());
  assert.deepStrictEqual(out, { code: c.grpcJs.status.UNKNOWN, uncaught: 'boom' });
});
