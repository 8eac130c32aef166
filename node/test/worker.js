'use strict';
// A worker of workers.test.js: its own uvgrpc server and client on the
// worker's own loop. mode 'serve': RPCs of all four kinds, then a clean
// close; mode 'stream': a bidi call kept busy until the worker is
// terminated; mode 'creds': a call over TLS whose call credentials never
// answer, and a connectivity watch, both waiting when it is terminated;
// mode 'tryShutdown': a server (workerData.lib's) shutting down gracefully
// while a call never ends.
const { parentPort, workerData } = require('worker_threads');
const c = require('./common.js');

async function waitingForCredentials() {
  const lib = c.uvgrpc;
  const server = new lib.Server();
  server.addService(c.service, { Unary(call, cb) { cb(null, { message: 'x' }); } });
  const creds = lib.ServerCredentials.createSsl(null,
    [{ private_key: c.tls.read('server1.key'), cert_chain: c.tls.read('server1.pem') }]);
  const port = await new Promise((resolve) => server.bindAsync('127.0.0.1:0', creds, (e, p) => resolve(p)));
  const never = lib.credentials.createFromMetadataGenerator(() => parentPort.postMessage('waiting'));
  const Echo = lib.makeClientConstructor(c.service, 'Echo');
  const client = new Echo(`127.0.0.1:${port}`, lib.credentials.combineChannelCredentials(
    lib.credentials.createSsl(c.tls.read('ca.pem')), never), c.tls.clientOptions);
  client.getChannel().watchConnectivityState(lib.connectivityState.READY, Infinity, () => {});
  client.Unary({ message: 'x' }, () => {});
}

// A bidi call that never ends, then tryShutdown() when the main thread says
// so: the shutdown waits for the call until the worker is terminated.
function shutdownWaiting() {
  const lib = workerData.lib === 'grpc-js' ? c.grpcJs : c.uvgrpc;
  const server = new lib.Server();
  server.addService(c.service, {
    Bidi(call) { call.on('data', () => {}); call.on('error', () => {}); parentPort.postMessage('call'); },
  });
  server.bindAsync('127.0.0.1:0', lib.ServerCredentials.createInsecure(), (err, port) => {
    parentPort.postMessage(err ? String(err) : { port });
  });
  parentPort.on('message', () => {
    server.tryShutdown(() => parentPort.postMessage('shut down'));
    parentPort.postMessage('shutting down');
  });
}

(async () => {
  if (workerData.mode === 'creds') return waitingForCredentials();
  if (workerData.mode === 'tryShutdown') return shutdownWaiting();
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
