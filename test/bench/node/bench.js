'use strict';
// The Node.js addon beside @grpc/grpc-js: each server (ours, grpc-js's) in
// a process of its own, called by each client (ours, grpc-js's) from
// another process, on the Echo service of node/test/echo.proto:
//   unary:  64 calls in flight, 16-byte messages
//   stream: server streaming, 1000 messages of 16 bytes per call, 4 calls
//           in flight (messages/s)
// Each run lasts SECONDS_PER_RUN (3) seconds; KINDS=stream runs one kind.
// Prints a table (markdown): the rate, and the CPU time both processes
// spent per call or message (steadier than the rate on a shared machine).
//   node test/bench/node/bench.js            (build/node/uvgrpc.node built)
const path = require('path');
const fs = require('fs');
const { spawn, execSync } = require('child_process');

const NODE_DIR = path.join(__dirname, '..', '..', '..', 'node');
const c = require(path.join(NODE_DIR, 'test', 'common.js'));
const libs = { 'grpc-js': c.grpcJs, uvgrpc: c.uvgrpc };
const SECONDS = Number(process.env.SECONDS_PER_RUN || 3);

async function serverMain(libName) {
  const lib = libs[libName];
  const server = new lib.Server();
  server.addService(c.service, {
    Unary(call, callback) { callback(null, { message: call.request.message }); },
    ServerStream(call) {
      const n = call.request.count;
      let i = 0;
      const pump = () => {
        while (i < n) {
          i++;
          if (!call.write({ message: call.request.message })) return call.once('drain', pump);
        }
        call.end();
      };
      pump();
    },
  });
  server.bindAsync('127.0.0.1:0', lib.ServerCredentials.createInsecure(), (err, port) => {
    if (err) throw err;
    process.stdout.write(`${port}\n`);
  });
  process.stdin.on('end', () => server.forceShutdown());
  process.stdin.resume();
}

async function clientMain(libName, port, kind) {
  const lib = libs[libName];
  const Echo = lib.makeClientConstructor(c.service, 'Echo');
  const client = new Echo(`127.0.0.1:${port}`, lib.credentials.createInsecure());
  const msg = 'x'.repeat(16);
  let done = 0;
  let stop = false;
  const unaryLoop = () => new Promise((resolve) => {
    const next = () => {
      if (stop) return resolve();
      client.Unary({ message: msg }, (err) => {
        if (err) throw err;
        done++;
        next();
      });
    };
    next();
  });
  const streamLoop = async () => {
    while (!stop) {
      for await (const m of client.ServerStream({ message: msg, count: 1000 })) done += m ? 1 : 0;
    }
  };
  const loop = kind === 'unary' ? unaryLoop : streamLoop;
  const inflight = kind === 'unary' ? 64 : 4;
  // warm-up
  await Promise.race([Promise.all(Array.from({ length: inflight }, loop)),
                      new Promise((r) => setTimeout(r, 500))]);
  stop = true;
  await new Promise((r) => setTimeout(r, 200));
  stop = false;
  done = 0;
  process.stdout.write('start\n');
  const t0 = process.hrtime.bigint();
  const runs = Promise.all(Array.from({ length: inflight }, loop));
  setTimeout(() => { stop = true; }, SECONDS * 1000);
  await runs;
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(`${done} ${secs}\n`);
  client.close();
}

// CPU seconds a process has used (utime + stime), from /proc.
function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}
const CLK_TCK = Number(execSync('getconf CLK_TCK').toString()) || 100;

function run(args, onLine) {
  const p = spawn(process.execPath, [__filename, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  let buf = '';
  p.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) { onLine(buf.slice(0, i)); buf = buf.slice(i + 1); }
  });
  return p;
}

async function main() {
  const rows = [];
  const kinds = (process.env.KINDS || 'unary,stream').split(',');
  for (const kind of kinds) {
    for (const serverName of Object.keys(libs)) {
      for (const clientName of Object.keys(libs)) {
        let server;
        const port = await new Promise((resolve) => { server = run(['server', serverName], resolve); });
        // CPU of both processes over the measured seconds, from the
        // client's 'start' to its result: on a busy machine the CPU time
        // per message is steadier than the rate
        let cpu0 = 0;
        const [rate, cpuUs] = await new Promise((resolve) => {
          const client = run(['client', clientName, port, kind], (line) => {
            const both = () => cpuSeconds(server.pid) + cpuSeconds(client.pid);
            if (line === 'start') { cpu0 = both(); return; }
            const [n, secs] = line.split(' ').map(Number);
            resolve([Math.round(n / secs), Math.round(((both() - cpu0) * 1e6 / n) * 10) / 10]);
          });
        });
        server.stdin.end();
        await new Promise((resolve) => server.on('exit', resolve));
        rows.push([kind, serverName, clientName, rate, cpuUs]);
        console.error(`${kind} ${serverName} server, ${clientName} client: ${rate}/s, ${cpuUs} µs CPU each`);
      }
    }
  }
  console.log('| kind | server | client | calls/s (unary), messages/s (stream) | CPU µs per call or message (both processes) |');
  console.log('|---|---|---|---:|---:|');
  for (const [k, s, cl, r, u] of rows) console.log(`| ${k} | ${s} | ${cl} | ${r} | ${u} |`);
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'server') serverMain(...rest);
else if (mode === 'client') clientMain(...rest);
else main();
