'use strict';
// Both ways and both servers: a grpc-js client calls our server, our client
// calls a grpc-js server, and the same implementation object (common.js)
// and the same client code run against either. Unary: echo, metadata both
// ways, status with details and trailers, deadlines, cancellation; and the
// three streaming kinds.
const test = require('node:test');
const assert = require('node:assert');
const c = require('./common.js');

const libs = { 'grpc-js': c.grpcJs, uvgrpc: c.uvgrpc };

for (const [serverName, serverLib] of Object.entries(libs)) {
  for (const [clientName, clientLib] of Object.entries(libs)) {
    test(`${clientName} client -> ${serverName} server`, async (t) => {
      const { server, port, seen } = await c.startServer(serverLib);
      const client = c.makeClient(clientLib, port);
      const Md = clientLib.Metadata;

      await t.test('unary echo', async () => {
        const r = await c.unary(client, { message: 'hello' });
        assert.ifError(r.err);
        assert.strictEqual(r.reply.message, 'hello');
        assert.strictEqual(r.events.status.code, c.grpcJs.status.OK);
        assert.deepStrictEqual(r.events.status.metadata.get('x-trailer'), ['good']);
      });

      await t.test('metadata both ways', async () => {
        const md = new Md();
        md.set('x-echo', 'ping');
        md.set('x-blob-bin', Buffer.from([0, 1, 2, 255]));
        const r = await c.unary(client, { message: 'm' }, md);
        assert.ifError(r.err);
        assert.deepStrictEqual(r.events.metadata.get('x-echo'), ['ping']);
      });

      await t.test('status with details and trailers', async () => {
        const r = await c.unary(client, { message: 'x', code: 5, details: 'no such thing' });
        assert.ok(r.err);
        assert.strictEqual(r.err.code, c.grpcJs.status.NOT_FOUND);
        assert.strictEqual(r.err.details, 'no such thing');
        assert.match(r.err.message, /^5 NOT_FOUND: no such thing$/);
        assert.deepStrictEqual(r.err.metadata.get('x-trailer'), ['bad']);
        assert.deepStrictEqual(r.err.metadata.get('grpc-status-details-bin'), [c.DETAILS]);
      });

      await t.test('deadline', async () => {
        const before = seen.cancelled;
        const t0 = Date.now();
        const r = await c.unary(client, { message: 'slow', delay_ms: 2000 }, new Md(),
                                { deadline: Date.now() + 200 });
        assert.ok(r.err);
        assert.strictEqual(r.err.code, c.grpcJs.status.DEADLINE_EXCEEDED);
        assert.ok(Date.now() - t0 < 1500, 'the deadline ends the call');
        // the handler saw a finite deadline and was told of the cancellation
        const d = seen.deadlines[seen.deadlines.length - 1];
        assert.ok(Number.isFinite(d) && Math.abs(d - (t0 + 200)) < 1000);
        for (let i = 0; i < 50 && seen.cancelled === before; i++) {
          await new Promise((res) => setTimeout(res, 20));
        }
        assert.strictEqual(seen.cancelled, before + 1);
        // no deadline: getDeadline() is Infinity
        await c.unary(client, { message: 'x' });
        assert.strictEqual(seen.deadlines[seen.deadlines.length - 1], Infinity);
      });

      await t.test('cancel', async () => {
        const p = new Promise((resolve) => {
          const call = client.Unary({ message: 'slow', delay_ms: 2000 }, (err) => resolve(err));
          setTimeout(() => call.cancel(), 50);
        });
        const err = await p;
        assert.strictEqual(err.code, c.grpcJs.status.CANCELLED);
      });

      await t.test('server streaming', async () => {
        const call = client.ServerStream({ message: 'n', count: 5 });
        const got = [];
        for await (const m of call) got.push(m.message);
        assert.deepStrictEqual(got, ['n 0', 'n 1', 'n 2', 'n 3', 'n 4']);
      });

      await t.test('server streaming error', async () => {
        const call = client.ServerStream({ message: 'e', count: 2, code: 9, details: 'stop' });
        const got = [];
        const err = await new Promise((resolve) => {
          call.on('data', (m) => got.push(m.message));
          call.on('error', resolve);
        });
        assert.strictEqual(err.code, 9);
        assert.strictEqual(err.details, 'stop');
        assert.deepStrictEqual(got, ['e 0', 'e 1']);
      });

      await t.test('client streaming', async () => {
        const reply = await new Promise((resolve, reject) => {
          const call = client.ClientStream((err, r) => (err ? reject(err) : resolve(r)));
          for (const m of ['a', 'b', 'c']) call.write({ message: m });
          call.end();
        });
        assert.strictEqual(reply.message, 'a,b,c');
      });

      await t.test('bidi streaming', async () => {
        const call = client.Bidi();
        const got = [];
        const done = new Promise((resolve, reject) => {
          call.on('data', (m) => got.push(m.message));
          call.on('end', resolve);
          call.on('error', reject);
        });
        for (const m of ['x', 'y', 'z']) call.write({ message: m });
        call.end();
        await done;
        assert.deepStrictEqual(got, ['X', 'Y', 'Z']);
      });

      await t.test('bidi cancelled by the client', async () => {
        const before = seen.cancelled;
        const call = client.Bidi();
        const err = await new Promise((resolve) => {
          call.once('data', () => call.cancel());
          call.on('error', resolve);
          call.write({ message: 'a' });
        });
        assert.strictEqual(err.code, c.grpcJs.status.CANCELLED);
        for (let i = 0; i < 50 && seen.cancelled === before; i++) {
          await new Promise((res) => setTimeout(res, 20));
        }
        assert.strictEqual(seen.cancelled, before + 1, 'the handler saw \'cancelled\'');
      });

      await t.test('bidi past its deadline', async () => {
        const call = client.Bidi(new Md(), { deadline: Date.now() + 150 });
        const err = await new Promise((resolve) => {
          call.on('data', () => {});
          call.on('error', resolve);
          call.write({ message: 'a' });
        });
        assert.strictEqual(err.code, c.grpcJs.status.DEADLINE_EXCEEDED);
      });

      await t.test('loadPackageDefinition stubs', async () => {
        const pkg = clientLib.loadPackageDefinition(c.packageDefinition);
        const stub = new pkg.uvgrpc.test.Echo(`127.0.0.1:${port}`,
                                              clientLib.credentials.createInsecure());
        const r = await c.unary(stub, { message: 'stub' });
        assert.ifError(r.err);
        assert.strictEqual(r.reply.message, 'stub');
        stub.close();
      });

      client.close();
      await c.stopServer(server);
    });
  }
}

// forceShutdown() after tryShutdown() cancels the calls the graceful
// shutdown waits for, and tryShutdown's callback runs, as in grpc-js.
for (const [serverName, serverLib] of Object.entries(libs)) {
  test(`${serverName} server: tryShutdown() then forceShutdown() with a call that never ends`, async () => {
    const server = new serverLib.Server();
    let cancelled = 0;
    let started;
    const began = new Promise((resolve) => { started = resolve; });
    server.addService(c.service, {
      Bidi(call) {
        call.on('data', () => {});
        call.on('error', () => {});
        call.on('cancelled', () => { cancelled++; });
        started();
      },
    });
    const port = await new Promise((resolve, reject) => server.bindAsync('127.0.0.1:0',
      serverLib.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    const client = c.makeClient(c.grpcJs, port);
    const call = client.Bidi();
    const ended = new Promise((resolve) => call.on('error', resolve));
    call.write({ message: 'a' });
    await began;
    let shut = false;
    const shutDown = new Promise((resolve) => server.tryShutdown(() => { shut = true; resolve(); }));
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.strictEqual(shut, false, 'tryShutdown waits for the call');
    assert.strictEqual(cancelled, 0);
    server.forceShutdown();
    const timeout = (v) => new Promise((resolve) => setTimeout(resolve, 3000, v));
    assert.ok(await Promise.race([shutDown.then(() => true), timeout(false)]),
              "tryShutdown's callback ran");
    const err = await Promise.race([ended, timeout(null)]);
    assert.ok(err, 'the client call ended');
    // grpc-js resets the streams (CANCELLED); ours closes the connections
    // as uvg_server_close() does, like grpc-go's Stop() (UNAVAILABLE)
    assert.strictEqual(err.code, serverLib === c.grpcJs ? c.grpcJs.status.CANCELLED
                                                        : c.grpcJs.status.UNAVAILABLE);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.strictEqual(cancelled, 1, 'the server call was cancelled once');
    client.close();
  });
}
