'use strict';
// Who is on the other end and whether the channel is up, as grpc-js has
// them, each case run with grpc-js's classes and with ours: call.getPeer()
// on the server ("127.0.0.1:port", "::1:port") and on the client
// ("127.0.0.1:port", "[::1]:port"); client.waitForReady(); and the
// channel's getConnectivityState() and watchConnectivityState().
const test = require('node:test');
const assert = require('node:assert');
const net = require('net');
const c = require('./common.js');

const libs = { 'grpc-js': c.grpcJs, uvgrpc: c.uvgrpc };

// A server of `lib` on `host` whose Unary handler records getPeer(); a
// host "unix:path" is that unix socket.
function peerServer(lib, host) {
  const peers = [];
  const server = new lib.Server();
  server.addService(c.service, {
    Unary(call, callback) {
      peers.push(call.getPeer());
      callback(null, { message: call.request.message });
    },
  });
  return new Promise((resolve, reject) => {
    const addr = host.startsWith('unix:') ? host : `${host}:0`;
    server.bindAsync(addr, lib.ServerCredentials.createInsecure(), (err, port) => {
      if (err) return reject(err);
      resolve({ server, port, peers });
    });
  });
}

// A unary call of a `lib` client to `target`: its getPeer() at 'status'.
async function peerOfCall(lib, target) {
  const Echo = lib.makeClientConstructor(c.service, 'Echo');
  const client = new Echo(target, lib.credentials.createInsecure());
  let peer;
  await new Promise((resolve, reject) => {
    const call = client.Unary({ message: 'p' }, (err) => (err ? reject(err) : resolve()));
    call.on('status', () => { peer = call.getPeer(); });
  });
  client.close();
  return peer;
}

function waitForReady(client, ms) {
  return new Promise((resolve) => client.waitForReady(Date.now() + ms, resolve));
}

// A port nothing listens on.
function closedPort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const os = require('os');
const pathMod = require('path');
const v6 = os.networkInterfaces().lo?.some((a) => a.family === 'IPv6') ?? true;

for (const [serverName, serverLib] of Object.entries(libs)) {
  for (const [clientName, clientLib] of Object.entries(libs)) {
    for (const [host, target] of [['127.0.0.1', '127.0.0.1'], ['[::1]', '[::1]']]) {
      test(`getPeer: ${clientName} client -> ${serverName} server on ${host}`,
           { skip: host === '[::1]' && !v6 && 'no IPv6 loopback' }, async () => {
        const { server, port, peers } = await peerServer(serverLib, host);
        const peerAtStatus = await peerOfCall(clientLib, `${target}:${port}`);
        await c.stopServer(server);
        // the server sees the client's address and port, IPv6 unbracketed
        const want = host === '127.0.0.1' ? /^127\.0\.0\.1:\d+$/ : /^::1:\d+$/;
        assert.match(peers[0], want);
        assert.notStrictEqual(Number(peers[0].split(':').pop()), port);
        // the client sees the server's, IPv6 in brackets
        assert.strictEqual(peerAtStatus, `${target}:${port}`);
      });
    }
  }
}

for (const [name, lib] of Object.entries(libs)) {
  test(`connectivity: ${name}`, async (t) => {
    const { server, port } = await peerServer(lib, '127.0.0.1');
    const Echo = lib.makeClientConstructor(c.service, 'Echo');
    const S = lib.connectivityState;

    await t.test('IDLE until asked, then READY through waitForReady', async () => {
      const client = new Echo(`127.0.0.1:${port}`, lib.credentials.createInsecure());
      const ch = client.getChannel();
      assert.strictEqual(ch.getConnectivityState(false), S.IDLE);
      // nothing connects it: the watch's deadline passes
      const err = await new Promise((resolve) => ch.watchConnectivityState(S.IDLE, Date.now() + 150, resolve));
      assert.match(err.message, /Deadline passed without connectivity state change/);
      assert.strictEqual(ch.getConnectivityState(false), S.IDLE);
      assert.strictEqual(await waitForReady(client, 3000), undefined);
      assert.strictEqual(ch.getConnectivityState(false), S.READY);
      client.close();
    });

    await t.test('a watch sees the state leave IDLE once asked to connect', async () => {
      const client = new Echo(`127.0.0.1:${port}`, lib.credentials.createInsecure());
      const ch = client.getChannel();
      const watched = new Promise((resolve) => ch.watchConnectivityState(S.IDLE, Date.now() + 3000, resolve));
      ch.getConnectivityState(true);
      assert.strictEqual(await watched, undefined);
      assert.notStrictEqual(ch.getConnectivityState(false), S.IDLE);
      client.close();
    });

    await t.test('waitForReady fails at the deadline when nothing listens', async () => {
      const client = new Echo(`127.0.0.1:${await closedPort()}`, lib.credentials.createInsecure());
      const t0 = Date.now();
      const err = await waitForReady(client, 300);
      assert.ok(err instanceof Error);
      assert.match(err.message, /Failed to connect before the deadline/);
      assert.ok(Date.now() - t0 >= 250 && Date.now() - t0 < 2500);
      client.close();
    });

    await t.test('a closed channel: SHUTDOWN, watches refused, waitForReady fails', async () => {
      const client = new Echo(`127.0.0.1:${port}`, lib.credentials.createInsecure());
      const ch = client.getChannel();
      // a watch waiting when the channel closes sees the change
      const watched = new Promise((resolve) => ch.watchConnectivityState(S.IDLE, Date.now() + 3000, resolve));
      client.close();
      assert.strictEqual(await watched, undefined);
      assert.strictEqual(ch.getConnectivityState(false), S.SHUTDOWN);
      assert.throws(() => ch.watchConnectivityState(S.SHUTDOWN, Date.now() + 100, () => {}),
                    /Channel has been shut down/);
      // grpc-js means to say 'The channel has been closed' here, but its
      // getConnectivityState(true) reconnects a closed channel (1.14.7)
      if (lib === c.uvgrpc) {
        const err = await waitForReady(client, 1000);
        assert.match(err.message, /The channel has been closed/);
      }
    });

    await c.stopServer(server);
  });
}

test('watches whose deadline passed hold nothing native (uvgrpc)', async () => {
  const lib = c.uvgrpc;
  const Echo = lib.makeClientConstructor(c.service, 'Echo');
  const client = new Echo('127.0.0.1:1', lib.credentials.createInsecure());
  const ch = client.getChannel();
  const before = lib._liveObjects();
  // an IDLE channel nothing connects: every watch ends by its deadline
  const errs = await Promise.all(Array.from({ length: 200 }, () => new Promise((resolve) =>
    ch.watchConnectivityState(lib.connectivityState.IDLE, Date.now() + 20, resolve))));
  assert.ok(errs.every((e) => e instanceof Error));
  assert.ok(lib._liveObjects() - before <= 1, `${lib._liveObjects() - before} structs left`);
  client.close();
  // the one left goes when the channel closes
  for (let i = 0; i < 50 && lib._liveObjects() > before; i++) {
    await new Promise((res) => setTimeout(res, 20));
  }
  assert.strictEqual(lib._liveObjects(), before);
});

// grpc-js 1.14.7 says 'unknown' once the call's stream is gone; ours keeps
// the address
for (const [name, lib] of Object.entries({ uvgrpc: c.uvgrpc })) {
  test(`getPeer after the call ended: ${name} server`, async () => {
    const server = new lib.Server();
    let peer;
    const asked = new Promise((resolve) => {
      server.addService(c.service, {
        Unary(call) {
          // the client gives up; the handler asks who it was later on
          call.on('cancelled', () => setTimeout(() => { peer = call.getPeer(); resolve(); }, 100));
        },
      });
    });
    const port = await new Promise((resolve, reject) => server.bindAsync('127.0.0.1:0',
      lib.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    const client = c.makeClient(c.uvgrpc, port);
    const err = await new Promise((resolve) =>
      client.Unary({ message: 'x' }, new c.uvgrpc.Metadata(), { deadline: Date.now() + 100 }, resolve));
    assert.strictEqual(err.code, lib.status.DEADLINE_EXCEEDED);
    await asked;
    client.close();
    server.forceShutdown();
    assert.match(peer, /^127\.0\.0\.1:\d+$/);
  });
}

for (const [serverName, serverLib] of Object.entries(libs)) {
  for (const [clientName, clientLib] of Object.entries(libs)) {
    test(`getPeer over a unix socket: ${clientName} client -> ${serverName} server`, async () => {
      const sock = pathMod.join(os.tmpdir(), `uvgrpc-peer-${process.pid}-${serverName}-${clientName}.sock`);
      const { server, peers } = await peerServer(serverLib, `unix:${sock}`);
      const peerAtStatus = await peerOfCall(clientLib, `unix:${sock}`);
      await c.stopServer(server);
      // a unix client has no address; the server's is its path
      assert.strictEqual(peers[0], 'unknown');
      assert.strictEqual(peerAtStatus, sock);
    });
  }
}
