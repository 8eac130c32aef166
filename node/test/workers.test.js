'use strict';
// worker_threads: the addon loaded in the main thread and in two workers at
// once, each environment with its own server and client; workers
// terminated in the middle of a streaming call leave no thread behind and
// the process exits by itself.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const { Worker } = require('worker_threads');
const { spawnSync } = require('child_process');
const c = require('./common.js');

const WORKER = path.join(__dirname, 'worker.js');
const threads = () => fs.readdirSync('/proc/self/task').length;

function runWorker(mode) {
  const w = new Worker(WORKER, { workerData: { mode } });
  const exited = new Promise((resolve) => w.once('exit', resolve));
  const first = new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
    exited.then((code) => reject(new Error(`worker exited ${code} early`)));
  });
  return { w, first, exited };
}

test('main thread and two workers, each with its own server and client', async () => {
  const a = runWorker('serve');
  const b = runWorker('serve');
  const { server, port } = await c.startServer(c.uvgrpc);
  const client = c.makeClient(c.uvgrpc, port);
  for (let i = 0; i < 20; i++) {
    const r = await c.unary(client, { message: `m${i}` });
    assert.ifError(r.err);
  }
  assert.strictEqual(await a.first, 'ok');
  assert.strictEqual(await b.first, 'ok');
  assert.deepStrictEqual(await Promise.all([a.exited, b.exited]), [0, 0]);
  client.close();
  await c.stopServer(server);
});

test('terminate() during a streaming call, 20 times: threads and objects back at baseline', async () => {
  // one worker first, so that what Node starts once per process is started
  const warm = runWorker('stream');
  await warm.first;
  await warm.w.terminate();
  await new Promise((resolve) => setTimeout(resolve, 100));
  const before = threads();
  const objectsBefore = c.uvgrpc._liveObjects();
  for (let i = 0; i < 20; i++) {
    const { w, first } = runWorker('stream');
    assert.strictEqual(await first, 'streaming');
    await w.terminate();
  }
  let after = threads();
  for (let i = 0; i < 50 && after !== before; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    after = threads();
  }
  assert.strictEqual(after, before);
  // every struct of the terminated workers' addons was freed (the main
  // thread's count can only have dropped meanwhile, by GC)
  assert.ok(c.uvgrpc._liveObjects() <= objectsBefore,
            `${c.uvgrpc._liveObjects()} objects alive, ${objectsBefore} before`);
});

test('terminate() while call credentials have not answered, 5 times: objects back at baseline',
     { skip: !c.tls.have && `no ${c.tls.dir}` }, async () => {
  const objectsBefore = c.uvgrpc._liveObjects();
  for (let i = 0; i < 5; i++) {
    const { w, first } = runWorker('creds');
    assert.strictEqual(await first, 'waiting');
    // an unanswered request held its call and the channel's close: the
    // environment never finished going
    const ended = await Promise.race([w.terminate().then(() => true),
                                      new Promise((resolve) => setTimeout(resolve, 5000, false))]);
    assert.ok(ended, 'terminate() finished');
  }
  assert.ok(c.uvgrpc._liveObjects() <= objectsBefore,
            `${c.uvgrpc._liveObjects()} objects alive, ${objectsBefore} before`);
});

// A graceful shutdown waits for a call that never ends; terminate() still
// ends the worker (and with it the call), with either library's server.
for (const name of ['grpc-js', 'uvgrpc']) {
  test(`${name} server: terminate() after tryShutdown() with a call that never ends`, async () => {
    const next = (w) => new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    const before = threads();
    const w = new Worker(WORKER, { workerData: { mode: 'tryShutdown', lib: name } });
    const { port } = await next(w);
    const client = c.makeClient(c.grpcJs, port);
    const call = client.Bidi();
    const ended = new Promise((resolve) => call.on('error', resolve));
    call.write({ message: 'a' });
    assert.strictEqual(await next(w), 'call');
    w.postMessage('shutdown');
    assert.strictEqual(await next(w), 'shutting down');
    await new Promise((resolve) => setTimeout(resolve, 100)); // still waiting
    const t0 = Date.now();
    const done = await Promise.race([w.terminate().then(() => true),
                                     new Promise((resolve) => setTimeout(resolve, 5000, false))]);
    assert.ok(done, 'terminate() finished');
    assert.ok(Date.now() - t0 < 3000, `terminate() took ${Date.now() - t0} ms`);
    const err = await Promise.race([ended, new Promise((resolve) => setTimeout(resolve, 3000, null))]);
    assert.ok(err, 'the client call ended');
    assert.strictEqual(err.code, c.grpcJs.status.UNAVAILABLE);
    client.close();
    let after = threads();
    for (let i = 0; i < 100 && after !== before; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      after = threads();
    }
    assert.strictEqual(after, before);
  });
}

test('a process whose workers were terminated mid-call exits by itself', () => {
  const script = `
    const { Worker } = require('worker_threads');
    (async () => {
      for (let i = 0; i < 5; i++) {
        const w = new Worker(${JSON.stringify(WORKER)}, { workerData: { mode: 'stream' } });
        await new Promise((resolve) => w.once('message', resolve));
        await w.terminate();
      }
      console.log('done');
    })();`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30000 });
  assert.strictEqual(r.signal, null, 'exited by itself');
  assert.strictEqual(r.status, 0, r.stderr);
  assert.strictEqual(r.stdout.trim(), 'done');
});
