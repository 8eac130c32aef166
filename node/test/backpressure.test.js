'use strict';
// Backpressure as Node's streams have it, both ways through our server: a
// server stream's write() returns false while the client does not read and
// 'drain' follows once it does; a client stream's write() returns false
// while the handler does not read, and every message arrives once it does.
const test = require('node:test');
const assert = require('node:assert');
const c = require('./common.js');

const BIG = 'x'.repeat(64 * 1024);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function serve(impl) {
  const server = new c.uvgrpc.Server();
  server.addService(c.service, impl);
  const port = await new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', c.uvgrpc.ServerCredentials.createInsecure(),
                     (err, p) => (err ? reject(err) : resolve(p))));
  return { server, port };
}

for (const [clientName, clientLib] of [['uvgrpc', c.uvgrpc], ['grpc-js', c.grpcJs]]) {
  test(`server stream to a ${clientName} client that does not read yet`, async () => {
    const seen = { written: 0, full: false, drained: false };
    const { server, port } = await serve({
      ServerStream(call) {
        const fill = () => {
          while (call.write({ message: BIG })) seen.written++;
          seen.written++;
          seen.full = true;
        };
        fill();
        call.once('drain', () => { seen.drained = true; call.end(); });
      },
    });
    const client = c.makeClient(clientLib, port);
    const call = client.ServerStream({ message: 'x' });
    await sleep(300);
    assert.ok(seen.full, 'write() returned false');
    if (clientLib === c.uvgrpc) {
      // ours reads a message only when the stream wants one; grpc-js
      // buffers some (its HTTP/2 stream's own window) before it pauses
      assert.ok(!seen.drained, 'no drain while the client reads nothing');
    }
    let n = 0;
    for await (const m of call) { assert.strictEqual(m.message.length, BIG.length); n++; }
    assert.ok(seen.drained);
    assert.strictEqual(n, seen.written);
    client.close();
    await c.stopServer(server);
  });

  test(`client stream from a ${clientName} client to a handler that does not read yet`, async () => {
    let reading = false;
    const { server, port } = await serve({
      ClientStream(call, callback) {
        setTimeout(() => {
          reading = true;
          let n = 0;
          call.on('data', () => n++);
          call.on('end', () => callback(null, { message: String(n) }));
        }, 300);
      },
    });
    const client = c.makeClient(clientLib, port);
    let written = 0;
    let fullBeforeReading = false;
    const reply = await new Promise((resolve, reject) => {
      const call = client.ClientStream((err, r) => (err ? reject(err) : resolve(r)));
      const fill = () => {
        while (written < 2000 && call.write({ message: BIG })) written++;
        written++;
        if (!reading) fullBeforeReading = true;
        call.once('drain', () => call.end());
      };
      fill();
    });
    assert.ok(fullBeforeReading, 'write() returned false before the handler read');
    assert.ok(written < 2000);
    assert.strictEqual(reply.message, String(written));
    client.close();
    await c.stopServer(server);
  });
}
