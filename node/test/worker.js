'use strict';
// A worker of workers.test.js: its own uvgrpc server and client on the
// worker's own loop. mode 'serve': RPCs of all four kinds, then a clean
// close; mode 'stream': a bidi call kept busy until the worker is
// terminated.
const { parentPort, workerData } = require('worker_threads');
const c = require('./common.js');

(async () => {
  const { server, port } = await c.startServer(c.uvgrpc);
  const client = c.makeClient(c.uvgrpc, port);
  if (workerData.mode === 'serve') {
    for (let i = 0; i < 20; i++) {
      const r = await c.unary(client, { message: `w${i}` });
      if (r.err || r.reply.message !== `w${i}`) throw r.err || new Error('bad reply');
    }
    const got = [];
    for await (const m of client.ServerStream({ message: 's', count: 3 })) got.push(m.message);
    if (got.length !== 3) throw new Error('bad stream');
    client.close();
    await c.stopServer(server);
    parentPort.postMessage('ok');
  } else {
    const call = client.Bidi();
    let n = 0;
    const pump = () => { if (call.write({ message: `m${n}` })) setImmediate(pump); };
    call.on('data', () => { if (++n === 10) parentPort.postMessage('streaming'); });
    call.on('error', () => {});
    pump();
  }
})();
