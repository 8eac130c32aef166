'use strict';
// uvgrpc for Node.js: an API shaped like @grpc/grpc-js on the uvgrpc addon
// (binding.c), which runs on Node's own event loop. Serialization happens
// here, with the serialize/deserialize functions of the service definition
// (@grpc/proto-loader's, or hand-written ones); the addon moves bytes.

const path = require('path');
const { EventEmitter } = require('events');
const { Readable, Writable, Duplex } = require('stream');

function loadBinding() {
  const tried = [];
  const candidates = [
    process.env.UVGRPC_NODE_ADDON,
    path.join(__dirname, 'uvgrpc.node'),
    path.join(__dirname, '..', 'build', 'node', 'uvgrpc.node'),
  ].filter(Boolean);
  for (const file of candidates) {
    try {
      return require(file);
    } catch (e) {
      if (e.code !== 'MODULE_NOT_FOUND') throw e;
      tried.push(file);
    }
  }
  throw new Error('uvgrpc.node not found (build it with meson; tried ' +
                  tried.join(', ') + ')');
}

const binding = loadBinding();

const status = Object.freeze({
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5, ALREADY_EXISTS: 6, PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, ABORTED: 10,
  OUT_OF_RANGE: 11, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14,
  DATA_LOSS: 15, UNAUTHENTICATED: 16,
});
const statusName = Object.fromEntries(
  Object.entries(status).map(([k, v]) => [v, k]));

const DETAILS_KEY = 'grpc-status-details-bin';
// uvgrpc's method kinds (uvg_method_type_t)
const UNARY = 0, CLIENT_STREAMING = 1, SERVER_STREAMING = 2, BIDI = 3;
// the addon's events: server calls, client calls (binding.c)
const SRV_MESSAGE = 0, SRV_HALF_CLOSE = 1, SRV_CANCEL = 2, SRV_DONE = 3;
const CLI_METADATA = 0, CLI_MESSAGES = 1, CLI_STATUS = 2;

// grpc-js's connectivityState (uvg_connectivity_t has the same numbers)
const connectivityState = Object.freeze({
  IDLE: 0, CONNECTING: 1, READY: 2, TRANSIENT_FAILURE: 3, SHUTDOWN: 4,
});

/* ---- Metadata ----------------------------------------------------------- */

const KEY_RE = /^[0-9a-z_.-]+$/;
const VALUE_RE = /^[ -~]*$/; // printable ASCII

class Metadata {
  constructor(options) {
    this.internalRepr = new Map();
    this.options = options || {};
  }

  // grpc-js's checks: what passes goes on the wire as it is
  static _check(key, value) {
    if (!KEY_RE.test(key)) throw new Error(`Metadata key "${key}" contains illegal characters`);
    if (key.endsWith('-bin')) {
      if (!Buffer.isBuffer(value)) throw new Error("keys that end with '-bin' must have Buffer values");
    } else if (typeof value !== 'string') {
      throw new Error("keys that don't end with '-bin' must have String values");
    } else if (!VALUE_RE.test(value)) {
      throw new Error(`Metadata string value "${value}" contains illegal characters`);
    }
  }

  set(key, value) {
    key = key.toLowerCase();
    Metadata._check(key, value);
    this.internalRepr.set(key, [value]);
  }

  add(key, value) {
    key = key.toLowerCase();
    Metadata._check(key, value);
    const list = this.internalRepr.get(key);
    if (list) list.push(value);
    else this.internalRepr.set(key, [value]);
  }

  remove(key) { this.internalRepr.delete(key.toLowerCase()); }

  get(key) { return this.internalRepr.get(key.toLowerCase()) || []; }

  getMap() {
    const out = {};
    for (const [k, v] of this.internalRepr) if (v.length > 0) out[k] = v[0];
    return out;
  }

  clone() {
    const m = new Metadata(this.options);
    for (const [k, v] of this.internalRepr) m.internalRepr.set(k, v.slice());
    return m;
  }

  merge(other) {
    for (const [k, v] of other.internalRepr) {
      this.internalRepr.set(k, (this.internalRepr.get(k) || []).concat(v));
    }
  }

  toJSON() {
    const out = {};
    for (const [k, v] of this.internalRepr) out[k] = v;
    return out;
  }

  // The addon's form: [key, value, key, value, ...]
  _toFlat() {
    const flat = [];
    for (const [k, values] of this.internalRepr) {
      for (const v of values) flat.push(k, v);
    }
    return flat;
  }

  static _fromFlat(flat) {
    const m = new Metadata();
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const list = m.internalRepr.get(flat[i]);
      if (list) list.push(flat[i + 1]);
      else m.internalRepr.set(flat[i], [flat[i + 1]]);
    }
    return m;
  }
}

function flatMetadata(md) {
  return md instanceof Metadata ? md._toFlat() : [];
}

/* ---- errors ------------------------------------------------------------- */

// grpc-js's ServiceError: an Error with code, details and metadata.
function serviceError(st) {
  const err = new Error(`${st.code} ${statusName[st.code] || 'UNKNOWN'}: ${st.details}`);
  err.code = st.code;
  err.details = st.details;
  err.metadata = st.metadata;
  return err;
}

// What a handler's error becomes on the wire, as grpc-js reads it.
function statusFromError(err) {
  let code = status.UNKNOWN;
  if (err && Number.isInteger(err.code) && err.code >= 0 && err.code <= 16 &&
      err.code !== status.OK) {
    code = err.code;
  }
  let details = 'Unknown Error';
  if (err && typeof err.details === 'string') details = err.details;
  else if (err && typeof err.message === 'string') details = err.message;
  const metadata = err && err.metadata instanceof Metadata ? err.metadata : null;
  return { code, details, metadata };
}

/* ---- credentials -------------------------------------------------------- */

function checkPem(v, what) {
  if (v !== null && v !== undefined && !Buffer.isBuffer(v)) {
    throw new TypeError(`${what} must be a Buffer`);
  }
  return v || undefined;
}

// grpc-js's CallCredentials: metadata made in JavaScript before each call
// starts (a token, say), carried by the library's call credentials.
class CallCredentials {
  static createFromMetadataGenerator(generator) { return new SingleCallCredentials(generator); }
  static createEmpty() { return new EmptyCallCredentials(); }

  compose(other) {
    if (other instanceof EmptyCallCredentials) return this;
    return new ComposedCallCredentials(this._list().concat(other._list()));
  }

  _list() { return [this]; }

  // The addon's call credentials, made once; null for none.
  _native() {
    if (this._nat === undefined) {
      this._nat = binding.callCredsNew((url, method, req) => this._answer(url, method, req));
    }
    return this._nat;
  }

  _answer(serviceUrl, methodName, req) {
    const done = (code, details, md) => {
      try {
        binding.metadataRequestDone(req, code, details, md);
      } catch (e) {
        binding.metadataRequestDone(req, status.INTERNAL, e.message, []);
      }
    };
    let generated;
    try {
      generated = this.generateMetadata(grpcJsAuthOptions(serviceUrl, methodName));
    } catch (err) {
      generated = Promise.reject(err);
    }
    generated.then(
      (md) => done(status.OK, null, flatMetadata(md)),
      // grpc-js's words; the library turns the codes gRFC A54 keeps for
      // the control plane into INTERNAL
      (err) => done(err && typeof err.code === 'number' ? err.code : status.UNKNOWN,
                    `Getting metadata from plugin failed with error: ${err && err.message}`, []));
  }
}

// The library names a call as gRPC C++'s plugins see it
// ("https://host:port/pkg.Svc", "Method"); grpc-js drops the port and
// gives the method's whole path ("/pkg.Svc/Method").
function grpcJsAuthOptions(serviceUrl, methodName) {
  const m = /^(https:\/\/)(\[[^\]]*\]|[^/:]*)(?::\d+)?\/(.*)$/.exec(serviceUrl);
  if (!m) return { service_url: serviceUrl, method_name: methodName };
  return { service_url: `${m[1]}${m[2]}/${m[3]}`, method_name: `/${m[3]}/${methodName}` };
}

class SingleCallCredentials extends CallCredentials {
  constructor(generator) { super(); this._generator = generator; }
  generateMetadata(options) {
    return new Promise((resolve, reject) => {
      this._generator(options, (err, metadata) => (metadata !== undefined ? resolve(metadata) : reject(err)));
    });
  }
}

class ComposedCallCredentials extends CallCredentials {
  constructor(list) { super(); this._creds = list; }
  _list() { return this._creds; }
  async generateMetadata(options) {
    const base = new Metadata();
    for (const md of await Promise.all(this._creds.map((c) => c.generateMetadata(options)))) {
      base.merge(md);
    }
    return base;
  }
}

class EmptyCallCredentials extends CallCredentials {
  compose(other) { return other; }
  _list() { return []; }
  generateMetadata() { return Promise.resolve(new Metadata()); }
  _native() { return null; }
}

class ChannelCredentials {
  constructor(tls, callCreds) { this._tls = tls || null; this._callCreds = callCreds || null; }
  _isSecure() { return this._tls !== null; }
  compose(callCreds) {
    if (!this._isSecure()) throw new Error('Cannot compose insecure credentials');
    return new ChannelCredentials(this._tls,
      this._callCreds ? this._callCreds.compose(callCreds) : callCreds);
  }
}

class ServerCredentials {
  constructor(tls) { this._tls = tls || null; }
  static createInsecure() { return new ServerCredentials(); }
  // grpc-js: createSsl(rootCerts, keyCertPairs, checkClientCertificate).
  // The first key/certificate pair is used. With rootCerts, client
  // certificates are asked for, and required with checkClientCertificate.
  static createSsl(rootCerts, keyCertPairs, checkClientCertificate = false) {
    if (!Array.isArray(keyCertPairs) || keyCertPairs.length === 0) {
      throw new TypeError('keyCertPairs must be a non-empty array');
    }
    const ca = checkPem(rootCerts, 'rootCerts');
    return new ServerCredentials({
      cert: checkPem(keyCertPairs[0].cert_chain, 'cert_chain'),
      key: checkPem(keyCertPairs[0].private_key, 'private_key'),
      ca,
      clientCert: ca ? (checkClientCertificate ? 2 : 1) : 0,
    });
  }
  _isSecure() { return this._tls !== null; }
}

const credentials = {
  createInsecure() { return new ChannelCredentials(); },
  createFromMetadataGenerator: CallCredentials.createFromMetadataGenerator,
  createEmpty: CallCredentials.createEmpty,
  combineChannelCredentials(channelCredentials, ...callCredentials) {
    return callCredentials.reduce((acc, other) => acc.compose(other), channelCredentials);
  },
  combineCallCredentials(first, ...additional) {
    return additional.reduce((acc, other) => acc.compose(other), first);
  },
  // grpc-js: createSsl(rootCerts, privateKey, certChain); no rootCerts:
  // the system's roots.
  createSsl(rootCerts, privateKey, certChain) {
    return new ChannelCredentials({
      roots: checkPem(rootCerts, 'rootCerts'),
      key: checkPem(privateKey, 'privateKey'),
      cert: checkPem(certChain, 'certChain'),
    });
  },
};

/* ---- server ------------------------------------------------------------- */

function methodKind(def) {
  if (def.requestStream) return def.responseStream ? BIDI : CLIENT_STREAMING;
  return def.responseStream ? SERVER_STREAMING : UNARY;
}

function deadlineFrom(remainingMs) {
  return remainingMs < 0 ? Infinity : new Date(Date.now() + remainingMs);
}

// What every server call object has (grpc-js's ServerSurfaceCall).
function initServerCall(call, nat, pathName, mdFlat, remaining) {
  call._nat = nat;
  call._path = pathName;
  call._deadline = deadlineFrom(remaining);
  call._finished = false;
  call.cancelled = false;
  call.metadata = Metadata._fromFlat(mdFlat);
}

const serverCallMethods = {
  getDeadline() { return this._deadline; },
  getPath() { return this._path; },
  // grpc-js: the socket's remoteAddress and remotePort ("::1:5000" for
  // IPv6, no brackets), 'unknown' without them (a unix socket)
  getPeer() {
    if (this._peer === undefined) this._peer = serverPeer(binding.callPeer(this._nat));
    return this._peer;
  },
  getHost() { return ''; },
  sendMetadata(md) {
    if (!this._finished) binding.callSendHeaders(this._nat, flatMetadata(md));
  },
  _finish(code, details, trailers) {
    if (this._finished) return;
    this._finished = true;
    let flat = flatMetadata(trailers);
    binding.callFinish(this._nat, code, details, flat, undefined);
  },
  _finishError(err) {
    const st = statusFromError(err);
    this._finish(st.code, st.details, st.metadata);
  },
  _cancel() {
    this.cancelled = true;
    this._finished = true;
    this.emit('cancelled', 'cancelled');
  },
};

function serverPeer(text) {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(text);
  return m ? `${m[1]}:${m[2]}` : 'unknown';
}

class ServerUnaryCall extends EventEmitter {}
Object.assign(ServerUnaryCall.prototype, serverCallMethods);

class ServerReadableStream extends Readable {
  constructor() { super({ objectMode: true }); this._paused = false; }
  _read() { resumeServerReading(this); }
}
Object.assign(ServerReadableStream.prototype, serverCallMethods);

// The writing side of server-streaming and bidi calls.
function initServerWriter(call) {
  call._trailers = null;
  call._paused = false;
  // grpc-js: an 'error' emitted by the handler ends the call with it,
  // after the messages written before it
  call.on('error', (err) => {
    if (call.writableLength === 0) call._finishError(err);
    else call._pendingError = err;
  });
}

const serverWriterMethods = {
  _write(msg, _enc, cb) { writeServerMessages(this, [{ chunk: msg }], cb); },
  _writev(chunks, cb) { writeServerMessages(this, chunks, cb); },
  _final(cb) { this._finish(status.OK, 'OK', this._trailers); cb(); },
  _destroy(err, cb) {
    if (err) this._finishError(err);
    cb(null); // the error went to the client, not to 'error' listeners
  },
};

class ServerWritableStream extends Writable {
  constructor() { super({ objectMode: true }); initServerWriter(this); }
  end(metadata, ...rest) {
    if (metadata instanceof Metadata) { this._trailers = metadata; return super.end(...rest); }
    return super.end(metadata, ...rest);
  }
}
Object.assign(ServerWritableStream.prototype, serverCallMethods, serverWriterMethods);

class ServerDuplexStream extends Duplex {
  constructor() { super({ objectMode: true }); initServerWriter(this); }
  _read() { resumeServerReading(this); }
  end(metadata, ...rest) {
    if (metadata instanceof Metadata) { this._trailers = metadata; return super.end(...rest); }
    return super.end(metadata, ...rest);
  }
}
Object.assign(ServerDuplexStream.prototype, serverCallMethods, serverWriterMethods);

// Messages go out without a copy and a write completes when they reached
// the socket: Writable's buffer fills meanwhile, so write() returns false
// and 'drain' follows, as Node's streams do. What piled up meanwhile goes
// to the addon in one call (_writev).
function writeServerMessages(call, chunks, cb) {
  if (call._finished) return cb();
  const bufs = new Array(chunks.length);
  try {
    for (let i = 0; i < chunks.length; i++) bufs[i] = call._def.responseSerialize(chunks[i].chunk);
  } catch (e) {
    call._finish(status.INTERNAL, 'Error serializing response: ' + e.message);
    return cb();
  }
  const done = () => {
    cb();
    if (call._pendingError && call.writableLength === 0) {
      const err = call._pendingError;
      call._pendingError = null;
      call._finishError(err);
    }
  };
  if (binding.callSend(call._nat, bufs, done) !== 0) done();
}

// Reading of client streams follows the Readable: push() returning false
// pauses the call (HTTP/2 flow control holds the client back), _read()
// resumes it.
function pushServerMessage(call, m) {
  if (!call.push(m) && !call._paused && !call._finished) {
    call._paused = true;
    binding.callPauseReading(call._nat, true);
  }
}

function resumeServerReading(call) {
  if (call._paused) {
    call._paused = false;
    binding.callPauseReading(call._nat, false);
  }
}

// The callback unary and client-streaming handlers answer with.
function unaryCallback(call) {
  return (err, value, trailer) => {
    if (call._finished) return;
    if (err) return call._finishError(err);
    let bytes;
    try {
      bytes = call._def.responseSerialize(value);
    } catch (e) {
      return call._finish(status.INTERNAL, 'Error serializing response: ' + e.message);
    }
    binding.callSend(call._nat, bytes);
    call._finish(status.OK, 'OK', trailer);
  };
}

class Server {
  constructor(options) {
    this.options = options || {};
    this._handlers = new Map();
    this._nat = null;
    this._closed = false;
  }

  _native() {
    if (this._nat === null) this._nat = binding.serverNew(this._onCall.bind(this));
    return this._nat;
  }

  addService(service, implementation) {
    if (service === null || typeof service !== 'object' ||
        implementation === null || typeof implementation !== 'object') {
      throw new Error('addService() requires two objects as arguments');
    }
    for (const [name, def] of Object.entries(service)) {
      let fn = implementation[name];
      if (fn === undefined && def.originalName) fn = implementation[def.originalName];
      // Methods without a handler are left to the library's UNIMPLEMENTED.
      if (typeof fn !== 'function') continue;
      this.register(def.path, fn.bind(implementation), def.responseSerialize,
                    def.requestDeserialize, methodKind(def), def);
    }
  }

  // grpc-js: register(name, handler, serialize, deserialize, type)
  register(name, handler, serialize, deserialize, type, def) {
    if (this._handlers.has(name)) return false;
    const kind = typeof type === 'number' ? type :
      { unary: UNARY, clientStream: CLIENT_STREAMING,
        serverStream: SERVER_STREAMING, bidi: BIDI }[type];
    def = def || { responseSerialize: serialize, requestDeserialize: deserialize };
    binding.serverRegister(this._native(), name, kind);
    this._handlers.set(name, { handler, kind, def });
    return true;
  }

  bindAsync(port, creds, callback) {
    if (!(creds instanceof ServerCredentials)) {
      throw new TypeError('creds must be a ServerCredentials object');
    }
    let addr = String(port);
    if (addr.startsWith('localhost:')) addr = '127.0.0.1:' + addr.slice(10);
    let result;
    try {
      result = binding.serverListen(this._native(), addr, creds._tls);
    } catch (e) {
      process.nextTick(callback, e, -1);
      return;
    }
    process.nextTick(callback, null, result);
  }

  start() {}

  tryShutdown(callback) {
    if (this._nat === null || this._closed) {
      this._closed = true;
      if (callback) process.nextTick(callback);
      return;
    }
    this._closed = true;
    // drain: calls in flight go on; there is no grace limit, as in grpc-js
    binding.serverClose(this._nat, 2 ** 52, () => { if (callback) callback(); });
  }

  forceShutdown() {
    if (this._nat !== null) binding.serverClose(this._nat, -1, null);
    this._closed = true;
  }

  // From the addon: a call of a registered method begins.
  _onCall(pathName, nat, msg, mdFlat, remaining) {
    const h = this._handlers.get(pathName);
    let call;
    switch (h.kind) {
      case UNARY: call = new ServerUnaryCall(); break;
      case CLIENT_STREAMING: call = new ServerReadableStream(); break;
      case SERVER_STREAMING: call = new ServerWritableStream(); break;
      default: call = new ServerDuplexStream(); break;
    }
    initServerCall(call, nat, pathName, mdFlat, remaining);
    call._def = h.def;
    if (h.kind === UNARY || h.kind === SERVER_STREAMING) {
      try {
        call.request = h.def.requestDeserialize(msg);
      } catch (e) {
        call._finish(status.INTERNAL, 'Error deserializing request: ' + e.message);
        return () => {};
      }
    }
    try {
      if (h.kind === UNARY || h.kind === CLIENT_STREAMING) {
        h.handler(call, unaryCallback(call));
      } else {
        h.handler(call);
      }
    } catch (e) {
      // The client learns UNKNOWN; the process learns of the exception.
      call._finish(status.UNKNOWN, 'Handler threw an exception');
      process.nextTick(() => { throw e; });
    }
    return (kind, a) => {
      switch (kind) {
        case SRV_MESSAGE: {
          let m;
          try {
            m = h.def.requestDeserialize(a);
          } catch (e) {
            call._finish(status.INTERNAL, 'Error deserializing request: ' + e.message);
            return;
          }
          pushServerMessage(call, m);
          break;
        }
        case SRV_HALF_CLOSE:
          call.push(null);
          break;
        case SRV_CANCEL:
          call._cancel();
          break;
        case SRV_DONE:
          call._finished = true;
          if (call instanceof EventEmitter && !(call instanceof Readable) &&
              !(call instanceof Writable)) {
            call.emit('finish');
          }
          break;
      }
    };
  }
}

/* ---- client ------------------------------------------------------------- */

function timeoutFrom(options) {
  if (!options || options.deadline === undefined || options.deadline === null) return 0;
  const d = options.deadline instanceof Date ? options.deadline.getTime() : Number(options.deadline);
  if (!Number.isFinite(d)) return 0;
  return Math.max(1, Math.ceil(d - Date.now()));
}

// (arg, [metadata], [options], callback) as grpc-js takes them
function unaryArgs(args) {
  let [metadata, options, callback] = [undefined, undefined, undefined];
  const rest = args.slice();
  if (typeof rest[rest.length - 1] === 'function') callback = rest.pop();
  if (rest[0] instanceof Metadata) metadata = rest.shift();
  if (rest.length > 0 && rest[0] && typeof rest[0] === 'object') options = rest.shift();
  return { metadata: metadata || new Metadata(), options: options || {}, callback };
}

function streamArgs(args) {
  let metadata, options;
  if (args[0] instanceof Metadata) { metadata = args[0]; options = args[1]; }
  else options = args[0];
  return { metadata: metadata || new Metadata(), options: options || {} };
}

// Ends a call for a reason of the client's own: the status it reports is
// `code` and `details`, not the CANCELLED of the cancel that ends it.
function failCall(call, code, details) {
  if (!call._nat) return;
  if (!call._localStatus) call._localStatus = { code, details };
  binding.clientCallCancel(call._nat);
}

const clientCallMethods = {
  cancel() { if (this._nat) binding.clientCallCancel(this._nat); },
  // grpc-js: the address of the server the call went to ("[::1]:5000"),
  // 'unknown' before it had one
  getPeer() {
    if (this._peer) return this._peer;
    const text = this._nat ? binding.callPeer(this._nat) : '';
    if (text) this._peer = clientPeer(this, text);
    return this._peer || 'unknown';
  },
};

function clientPeer(call, text) {
  // a unix socket's peer is named by the socket's path, as in grpc-js
  if (text.startsWith('unix')) return call._target.replace(/^unix:(\/\/)?/, '');
  return text;
}

class ClientUnaryCall extends EventEmitter {}
Object.assign(ClientUnaryCall.prototype, clientCallMethods);

const clientWriterMethods = {
  _write(msg, _enc, cb) { writeClientMessages(this, [{ chunk: msg }], cb); },
  _writev(chunks, cb) { writeClientMessages(this, chunks, cb); },
  _final(cb) { if (this._nat) binding.clientCallHalfClose(this._nat); cb(); },
};

class ClientWritableStream extends Writable {
  constructor() { super({ objectMode: true }); }
}
Object.assign(ClientWritableStream.prototype, clientCallMethods, clientWriterMethods);

class ClientReadableStream extends Readable {
  constructor() { super({ objectMode: true }); this._reading = false; }
  _read() { readClientMessage(this); }
}
Object.assign(ClientReadableStream.prototype, clientCallMethods);

class ClientDuplexStream extends Duplex {
  constructor() { super({ objectMode: true }); this._reading = false; }
  _read() { readClientMessage(this); }
}
Object.assign(ClientDuplexStream.prototype, clientCallMethods, clientWriterMethods);

function writeClientMessages(call, chunks, cb) {
  const bufs = new Array(chunks.length);
  try {
    for (let i = 0; i < chunks.length; i++) bufs[i] = call._serialize(chunks[i].chunk);
  } catch (e) {
    failCall(call, status.INTERNAL, 'Request message serialization failure: ' + e.message);
    return cb();
  }
  if (!call._nat || binding.callSend(call._nat, bufs, () => cb()) !== 0) cb();
}

// Asks for as many messages as the Readable has room for; they come in
// batches (onStreamMessages).
function readClientMessage(call) {
  if (call._reading || !call._nat) return;
  call._reading = true;
  binding.clientCallRead(call._nat,
    Math.max(1, call.readableHighWaterMark - call.readableLength));
}

class Client {
  constructor(address, creds, options) {
    if (!(creds instanceof ChannelCredentials)) {
      throw new TypeError('Channel credentials must be a ChannelCredentials object');
    }
    this._target = address;
    this._options = options || {};
    let tls = creds._tls;
    if (tls && this._options['grpc.ssl_target_name_override']) {
      tls = Object.assign({ serverName: this._options['grpc.ssl_target_name_override'] }, tls);
    }
    this._channel = binding.channelNew(address, tls,
      creds._callCreds ? creds._callCreds._native() : undefined);
    this._chan = new Channel(this._channel, address);
  }

  close() { this._chan.close(); }

  getChannel() { return this._chan; }

  // grpc-js: callback() once the channel is READY (connecting it), or
  // callback(err) when the deadline passes first or the channel closes
  waitForReady(deadline, callback) {
    const check = (err) => {
      if (err) return callback(new Error('Failed to connect before the deadline'));
      const state = this._chan.getConnectivityState(true);
      if (state === connectivityState.READY) return callback();
      try {
        this._chan.watchConnectivityState(state, deadline, check);
      } catch (e) {
        callback(new Error('The channel has been closed'));
      }
    };
    setImmediate(check);
  }

  // Starts a call; `call` gets _nat, and its events come to the handlers:
  // onMessages(batch, reading) with a batch of [u32 length][bytes]...
  _start(call, method, metadata, options, onMessages, onStatus) {
    call._target = this._target;
    call._nat = null;
    call._peer = undefined;
    const ev = (kind, a, b, c, d, peer) => {
      if (kind === CLI_MESSAGES) {
        onMessages(a, b);
      } else if (kind === CLI_METADATA) {
        call.emit('metadata', Metadata._fromFlat(a));
      } else if (kind === CLI_STATUS) {
        call._nat = null;
        if (peer) call._peer = clientPeer(call, peer);
        const md = Metadata._fromFlat(d);
        if (c !== undefined && md.get(DETAILS_KEY).length === 0) md.set(DETAILS_KEY, c);
        if (call._localStatus && a === status.CANCELLED) {
          onStatus({ code: call._localStatus.code, details: call._localStatus.details, metadata: md });
        } else {
          onStatus({ code: a, details: b, metadata: md });
        }
      }
    };
    try {
      const callCreds = options.credentials instanceof CallCredentials
        ? options.credentials._native() : undefined;
      call._nat = binding.clientCallStart(this._channel, method, flatMetadata(metadata),
                                          timeoutFrom(options), ev, callCreds);
    } catch (e) {
      process.nextTick(onStatus, { code: status.UNAVAILABLE, details: e.message,
                                   metadata: new Metadata() });
      return false;
    }
    return true;
  }

  makeUnaryRequest(method, serialize, deserialize, argument, ...args) {
    const { metadata, options, callback } = unaryArgs(args);
    const call = new ClientUnaryCall();
    let reply = null;
    const ok = this._start(call, method, metadata, options,
      (batch) => { reply = unaryReply(call, batch, reply); },
      (st) => finishUnary(call, st, reply, deserialize, callback));
    if (ok && sendRequest(call, serialize, argument)) {
      binding.clientCallHalfClose(call._nat);
      binding.clientCallRead(call._nat, 2); // a second message is an error
    }
    return call;
  }

  makeClientStreamRequest(method, serialize, deserialize, ...args) {
    const { metadata, options, callback } = unaryArgs(args);
    const call = new ClientWritableStream();
    call._serialize = serialize;
    let reply = null;
    const ok = this._start(call, method, metadata, options,
      (batch) => { reply = unaryReply(call, batch, reply); },
      (st) => finishUnary(call, st, reply, deserialize, callback));
    if (ok) binding.clientCallRead(call._nat, 2);
    return call;
  }

  makeServerStreamRequest(method, serialize, deserialize, argument, ...args) {
    const { metadata, options } = streamArgs(args);
    const call = new ClientReadableStream();
    const ok = this._start(call, method, metadata, options,
      (batch, reading) => onStreamMessages(call, batch, reading, deserialize),
      (st) => finishStream(call, st));
    if (ok && sendRequest(call, serialize, argument)) binding.clientCallHalfClose(call._nat);
    return call;
  }

  makeBidiStreamRequest(method, serialize, deserialize, ...args) {
    const { metadata, options } = streamArgs(args);
    const call = new ClientDuplexStream();
    call._serialize = serialize;
    this._start(call, method, metadata, options,
      (batch, reading) => onStreamMessages(call, batch, reading, deserialize),
      (st) => finishStream(call, st));
    return call;
  }
}

// The request of a unary or server-streaming call; false if it could not
// be serialized (the call ends INTERNAL).
function sendRequest(call, serialize, argument) {
  let bytes;
  try {
    bytes = serialize(argument);
  } catch (e) {
    failCall(call, status.INTERNAL, 'Request message serialization failure: ' + e.message);
    return false;
  }
  binding.callSend(call._nat, bytes);
  return true;
}

// The response of a unary or client-streaming call so far: one message;
// a second ends the call, as grpc-js has it.
function unaryReply(call, batch, reply) {
  forEachMessage(batch, (buf) => {
    if (reply !== null) failCall(call, status.UNIMPLEMENTED, 'Too many responses received');
    else reply = buf;
  });
  return reply; // the addon reads on for the status (the credit was 2)
}

function finishUnary(call, st, reply, deserialize, callback) {
  if (st.code === status.OK && reply === null) {
    st = { code: status.UNIMPLEMENTED, details: 'No message received', metadata: st.metadata };
  }
  let value;
  if (st.code === status.OK) {
    try {
      value = deserialize(reply);
    } catch (e) {
      st = { code: status.INTERNAL, details: 'Response message parsing error: ' + e.message,
             metadata: st.metadata };
    }
  }
  // grpc-js: the callback, then 'status'
  if (callback) {
    if (st.code === status.OK) callback(null, value);
    else callback(serviceError(st));
  }
  call.emit('status', st);
}

function forEachMessage(batch, fn) {
  for (let off = 0; off < batch.length;) {
    const len = batch.readUInt32LE(off);
    fn(batch.subarray(off + 4, off + 4 + len));
    off += 4 + len;
  }
}

// A batch of responses into the Readable. A 'data' listener that throws
// loses none of the batch's other messages: the first exception is thrown
// again once all are pushed, and reaches 'uncaughtException' as it would
// have from a single message.
function onStreamMessages(call, batch, reading, deserialize) {
  call._reading = reading;
  let more = true;
  let thrown = null;
  for (let off = 0; off < batch.length;) {
    const len = batch.readUInt32LE(off);
    let m;
    try {
      m = deserialize(batch.subarray(off + 4, off + 4 + len));
    } catch (e) {
      failCall(call, status.INTERNAL, 'Response message parsing error: ' + e.message);
      return;
    }
    off += 4 + len;
    try {
      more = call.push(m);
    } catch (e) {
      if (thrown === null) thrown = { e };
      more = call.readableLength < call.readableHighWaterMark;
    }
  }
  if (more) readClientMessage(call);
  if (thrown !== null) throw thrown.e;
}

// grpc-js's Channel, as far as connectivity goes. Its watchers share one
// watch of the addon's, so that watches whose deadline passed hold nothing
// native (the library's watches cannot be taken back).
class Channel {
  constructor(nat, target) {
    this._nat = nat;
    this._target = target;
    this._closed = false;
    this._watchers = new Set(); // { currentState, callback, timer }
    this._armed = false;
  }

  getTarget() { return this._target; }

  close() { this._closed = true; binding.channelClose(this._nat); }

  getConnectivityState(tryToConnect) {
    return binding.channelState(this._nat, !!tryToConnect);
  }

  // grpc-js: callback() once the state differs from currentState,
  // callback(err) if the deadline passes first; throws once closed.
  watchConnectivityState(currentState, deadline, callback) {
    if (this._closed) throw new Error('Channel has been shut down');
    const w = { currentState, callback, timer: null };
    if (deadline !== Infinity) {
      const ms = (deadline instanceof Date ? deadline.getTime() : Number(deadline)) - Date.now();
      if (!(ms > 0)) {
        process.nextTick(callback, new Error('Deadline passed without connectivity state change'));
        return;
      }
      w.timer = setTimeout(() => {
        this._watchers.delete(w);
        callback(new Error('Deadline passed without connectivity state change'));
      }, ms);
    }
    this._watchers.add(w);
    if (currentState !== this.getConnectivityState(false)) {
      process.nextTick(() => this._fire(this.getConnectivityState(false)));
    }
    this._arm();
  }

  // One watch of the addon's while watchers wait.
  _arm() {
    if (this._armed || this._watchers.size === 0) return;
    const err = binding.channelWatch(this._nat, this.getConnectivityState(false), (state) => {
      this._armed = false;
      this._fire(state);
      this._arm();
    });
    this._armed = err === 0;
  }

  _fire(state) {
    for (const w of this._watchers) {
      if (w.currentState === state) continue;
      this._watchers.delete(w);
      if (w.timer) clearTimeout(w.timer);
      w.callback();
    }
  }
}

// grpc-js: the end of the messages, then 'error' if the status is not OK,
// then 'status'.
function finishStream(call, st) {
  call.push(null);
  if (st.code !== status.OK) call.emit('error', serviceError(st));
  call.emit('status', st);
}

function makeClientConstructor(methods, serviceName) {
  class ServiceClient extends Client {}
  for (const [name, def] of Object.entries(methods)) {
    if (name === '__proto__') continue;
    let fn;
    if (def.requestStream && def.responseStream) {
      fn = function (...args) {
        return this.makeBidiStreamRequest(def.path, def.requestSerialize,
                                          def.responseDeserialize, ...args);
      };
    } else if (def.requestStream) {
      fn = function (...args) {
        return this.makeClientStreamRequest(def.path, def.requestSerialize,
                                            def.responseDeserialize, ...args);
      };
    } else if (def.responseStream) {
      fn = function (arg, ...args) {
        return this.makeServerStreamRequest(def.path, def.requestSerialize,
                                            def.responseDeserialize, arg, ...args);
      };
    } else {
      fn = function (arg, ...args) {
        return this.makeUnaryRequest(def.path, def.requestSerialize,
                                     def.responseDeserialize, arg, ...args);
      };
    }
    ServiceClient.prototype[name] = fn;
    if (def.originalName && !ServiceClient.prototype[def.originalName]) {
      ServiceClient.prototype[def.originalName] = fn;
    }
  }
  ServiceClient.service = methods;
  ServiceClient.serviceName = serviceName;
  return ServiceClient;
}

// @grpc/proto-loader's package definition to nested objects: services
// become client constructors, messages and enums stay as they are.
function loadPackageDefinition(packageDef) {
  const result = {};
  for (const [name, def] of Object.entries(packageDef)) {
    const parts = name.split('.');
    let obj = result;
    for (const p of parts.slice(0, -1)) obj = obj[p] = obj[p] || {};
    const last = parts[parts.length - 1];
    obj[last] = def.format === undefined && Object.values(def).every((m) => m && m.path)
      ? makeClientConstructor(def, last)
      : def;
  }
  return result;
}

module.exports = {
  Server, ServerCredentials, credentials, ChannelCredentials, CallCredentials, Client, Channel,
  connectivityState,
  Metadata, status, makeClientConstructor, makeGenericClientConstructor: makeClientConstructor,
  loadPackageDefinition,
  // the addon's structs alive in the process (tests of teardown)
  _liveObjects: () => binding.liveObjects(),
};
