#!/usr/bin/env node
'use strict';
// A real Tars client (npm @tars/rpc Communicator + ObjectProxy, TARS protocol) that connects
// directly to HOST:PORT — a ferrymesh tars listener or server.js — with no registry (the
// endpoint is given in the proxy string: "<servant>@tcp -h HOST -p PORT"), makes COUNT calls of
// one method and checks each outcome.
//
//   node client.js HOST:PORT [--method echo|slow] [--count N] [--concurrency C] [--connections K]
//        [--message M] [--slow-ms MS] [--timeout-ms MS] [--servant S] [--first-id ID]
//        [--expect-ret N] [--expect-server NAME] [--then-echo] [--dump-hex] [--deadline-ms MS]
//
//   --method M          echo (default) or slow (argument --slow-ms, default 1500)
//   --count N           calls (default 1); --concurrency C of them in flight at once (default 1)
//   --connections K     spread the calls round-robin over K clients (default 1), each its own
//                       @tars/rpc Communicator with its own TCP connection and request id
//                       counter, so concurrent calls on different connections carry equal ids
//   --message M         echo argument (default "hello"); with N > 1 call i sends M-i
//   --timeout-ms MS     the library's own invoke timeout (default 3000)
//   --servant S         servant name (default Test.HelloServer.HelloObj)
//   --first-id ID       the first request id each connection uses (the library counts up from
//                       its ObjectProxy._requestId + 1; default: the library's own start, 2)
//   --expect-ret N      every call must be answered with a ResponsePacket whose iRet is N (an
//                       error answer from the wire, not a local timeout); default 0 = success
//   --expect-server S   every successful answer must name server S (default: any name)
//   --then-echo         afterwards, one echo per connection must succeed; after slow calls it
//                       also waits until the late answers are due and echoes once more (proves
//                       the connection survived, and shows whether late answers arrived)
//   --dump-hex          write every frame sent and received to stderr as hex
//
// Prints one JSON line per call on stdout ({"event":"call",...}: the call's request id, the
// upstream id the server saw when it reports one, the iRet, ...), one per follow-up echo
// ({"event":"then_echo",...}), then {"event":"summary","ok":...}. Exit 0 if every outcome was
// the expected one; 1 otherwise (reason on stderr and in the JSON lines); 2 on usage error;
// 3 if the overall deadline passed.

const { Communicator } = require('@tars/rpc');
const TarsError = require('@tars/rpc').error;
// Internals, used only to observe the wire: every ResponsePacket the library decodes, and
// (with --dump-hex) the raw frames.
const RequestF = require('@tars/rpc/core/rpc-tars/RequestF.js').tars;
const TarsClientStream = require('@tars/rpc/core/rpc-tars/tars-client.js');
const Test = require('./Hello.js').Test;

function parseArgs(argv) {
  const o = { method: 'echo', count: 1, concurrency: 1, connections: 1, message: 'hello', slowMs: 1500,
    timeoutMs: 3000, servant: 'Test.HelloServer.HelloObj', firstId: null, expectRet: 0, expectServer: null,
    thenEcho: false, dumpHex: false, deadlineMs: 0, addr: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) throw new Error(a + ' needs a value'); return argv[++i]; };
    if (a === '--method') o.method = val();
    else if (a === '--count') o.count = Number(val());
    else if (a === '--concurrency') o.concurrency = Number(val());
    else if (a === '--connections') o.connections = Number(val());
    else if (a === '--message') o.message = val();
    else if (a === '--slow-ms') o.slowMs = Number(val());
    else if (a === '--timeout-ms') o.timeoutMs = Number(val());
    else if (a === '--servant') o.servant = val();
    else if (a === '--first-id') o.firstId = Number(val());
    else if (a === '--expect-ret') o.expectRet = Number(val());
    else if (a === '--expect-server') o.expectServer = val();
    else if (a === '--then-echo') o.thenEcho = true;
    else if (a === '--dump-hex') o.dumpHex = true;
    else if (a === '--deadline-ms') o.deadlineMs = Number(val());
    else if (a.startsWith('--')) throw new Error('unknown flag ' + a);
    else if (!o.addr) o.addr = a;
    else throw new Error('unexpected argument ' + a);
  }
  if (!o.addr || !/^[^:]+:\d+$/.test(o.addr)) throw new Error('need HOST:PORT');
  if (![ 'echo', 'slow' ].includes(o.method)) throw new Error('unknown --method ' + o.method);
  if (!(o.count >= 1) || !(o.concurrency >= 1) || !(o.connections >= 1)) {
    throw new Error('--count / --concurrency / --connections must be >= 1');
  }
  if (!(o.timeoutMs >= 1)) throw new Error('--timeout-ms must be >= 1');
  if (o.firstId !== null && !(Number.isInteger(o.firstId) && o.firstId >= -2147483648 && o.firstId + o.count <= 2147483647)) {
    throw new Error('--first-id must leave every id within int32');
  }
  if (!Number.isInteger(o.expectRet)) throw new Error('--expect-ret must be an integer');
  if (!o.deadlineMs) o.deadlineMs = 10000 + o.count * (o.timeoutMs + (o.method === 'slow' ? o.slowMs : 0));
  return o;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  console.error('client: ' + e.message + '\nusage: node client.js HOST:PORT [--method echo|slow] [--count N] ' +
    '[--concurrency C] [--connections K] [--message M] [--slow-ms MS] [--timeout-ms MS] [--servant S] ' +
    '[--first-id ID] [--expect-ret N] [--expect-server NAME] [--then-echo] [--dump-hex] [--deadline-ms MS]');
  process.exit(2);
}

// Hard upper bound on the whole run.
setTimeout(() => {
  console.error('FAIL: overall deadline of ' + opts.deadlineMs + ' ms passed');
  process.stdout.write(JSON.stringify({ event: 'summary', ok: false, error: 'deadline' }) + '\n');
  process.exit(3);
}, opts.deadlineMs);

// ---- wire hooks ------------------------------------------------------------------------------
// The library's client stream decodes each response frame with ResponsePacket._readFrom.
// Wrapping it records every answer that reached the client, including ones the library then
// drops (for ids it no longer waits for). Nothing is changed.
const wire = []; // { t, conn, id, ret }
let feeding = null; // the stream (one per TCP connection) whose feed() is running
let streams = 0;
const origReadFrom = RequestF.ResponsePacket._readFrom;
RequestF.ResponsePacket._readFrom = function (is) {
  const p = origReadFrom.call(this, is);
  wire.push({ t: Date.now(), conn: feeding ? feeding._hookConn : -1, id: p.iRequestId, ret: p.iRet });
  return p;
};
const origFeed = TarsClientStream.prototype.feed;
TarsClientStream.prototype.feed = function (data) {
  if (this._hookConn === undefined) this._hookConn = streams++;
  if (opts.dumpHex) console.error('[hex] recv conn=' + this._hookConn + ' ' + data.toString('hex'));
  feeding = this;
  try {
    return origFeed.call(this, data);
  } finally {
    feeding = null;
  }
};
if (opts.dumpHex) {
  const origCompose = TarsClientStream.prototype.compose;
  TarsClientStream.prototype.compose = function (m) {
    const buf = origCompose.call(this, m);
    console.error('[hex] send id=' + m.iRequestId + ' ' + buf.toString('hex'));
    return buf;
  };
}

let failures = 0;
function emit(line, ok) {
  line.ok = ok;
  process.stdout.write(JSON.stringify(line) + '\n');
  if (!ok) {
    failures++;
    console.error('FAIL: ' + JSON.stringify(line));
  }
}
const sleep = ms => new Promise(r => setTimeout(r, ms));
function withTimeout(p, ms, what) {
  let timer;
  return Promise.race([
    p,
    new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(what + ': no result in ' + ms + ' ms')), ms); }),
  ]).finally(() => clearTimeout(timer));
}
const errText = e => (e && e.response && e.response.error && ('code ' + e.response.error.code + ': ' + e.response.error.message)) ||
  (e && e.stack) || String(e);

// The server name in an answer, or what is wrong with it.
function checkAnswer(prefix, ans) {
  prefix += '|server=';
  if (typeof ans !== 'string' || !ans.startsWith(prefix) || ans.length === prefix.length) {
    return { bad: 'answered ' + JSON.stringify(ans) + ', expected ' + JSON.stringify(prefix + '<name>') };
  }
  const server = ans.slice(prefix.length);
  if (opts.expectServer && server !== opts.expectServer) return { bad: 'answered by ' + server + ', expected ' + opts.expectServer };
  return { server };
}

// The id the server saw, from the response context server.js fills in.
function upstreamId(packet) {
  const ctx = packet && packet.context && packet.context.toObject ? packet.context.toObject() : {};
  return ctx.upstream_id !== undefined ? Number(ctx.upstream_id) : undefined;
}

async function main() {
  const [ host, port ] = opts.addr.split(':');
  const endpoint = opts.servant + '@tcp -h ' + host + ' -p ' + port + ' -t 60000';
  const proxies = [];
  for (let k = 0; k < opts.connections; k++) {
    const comm = Communicator.New();
    comm.setProperty('timeout', opts.timeoutMs);
    const prx = comm.stringToProxy(Test.HelloProxy, endpoint);
    prx.setTimeout(opts.timeoutMs);
    if (opts.firstId !== null) prx._worker._requestId = opts.firstId - 1; // genRequestId() is ++_requestId
    proxies.push({ comm, prx });
  }

  const call = async i => {
    const conn = i % opts.connections;
    const prx = proxies[conn].prx;
    const msg = opts.count === 1 ? opts.message : opts.message + '-' + i;
    const line = { event: 'call', call: i, conn, method: opts.method };
    if (opts.method === 'echo') line.message = msg;
    else line.slow_ms = opts.slowMs;
    const start = Date.now();
    const p = opts.method === 'echo' ? prx.echo(msg) : prx.slow(opts.slowMs);
    try {
      const r = await withTimeout(p, opts.timeoutMs + 2000, opts.method + '()');
      line.ms = Date.now() - start;
      line.id = r.request.request.iRequestId;
      line.resp_id = r.response.packet.iRequestId;
      line.upstream_id = upstreamId(r.response.packet);
      line.ret = r.response.packet.iRet;
      line.result = r.response.return;
      if (line.resp_id !== line.id) { line.error = 'answer id ' + line.resp_id + ' != request id ' + line.id; return emit(line, false); }
      if (opts.expectRet !== 0) { line.error = 'expected iRet ' + opts.expectRet + ', got an answer'; return emit(line, false); }
      const chk = checkAnswer(opts.method === 'echo' ? msg : 'slow:' + opts.slowMs, line.result);
      if (chk.bad) { line.error = chk.bad; return emit(line, false); }
      line.server = chk.server;
      return emit(line, true);
    } catch (e) {
      line.ms = Date.now() - start;
      if (e && e.request && e.request.request) line.id = e.request.request.iRequestId;
      const err = (e && e.response && e.response.error) || {};
      line.code = err.code;
      line.error = err.message !== undefined ? err.message : errText(e);
      const packet = e && e.response && e.response.packet;
      if (packet && packet.iRet !== undefined) {
        // An error answer from the wire: a ResponsePacket with a non-zero iRet.
        line.ret = packet.iRet;
        line.resp_id = packet.iRequestId;
        line.desc = packet.sResultDesc;
      } else if (err.code === TarsError.CLIENT.REQUEST_TIMEOUT) {
        line.timeout = true;
      }
      if (opts.expectRet === 0) return emit(line, false);
      if (line.ret === undefined) { line.why = 'no ResponsePacket: not an error answer from the wire'; return emit(line, false); }
      if (line.resp_id !== line.id) { line.why = 'answer id ' + line.resp_id + ' != request id ' + line.id; return emit(line, false); }
      if (line.ret !== opts.expectRet) { line.why = 'iRet ' + line.ret + ' != ' + opts.expectRet; return emit(line, false); }
      return emit(line, true);
    }
  };

  const t0 = Date.now();
  for (let i = 0; i < opts.count; i += opts.concurrency) {
    const batch = [];
    for (let j = i; j < Math.min(opts.count, i + opts.concurrency); j++) batch.push(call(j));
    await Promise.all(batch);
  }

  if (opts.thenEcho) {
    const echo = async (tag, conn) => {
      const msg = opts.message + '-' + tag;
      const line = { event: 'then_echo', after: tag, conn };
      const start = Date.now();
      try {
        const r = await withTimeout(proxies[conn].prx.echo(msg), 5000, 'echo()');
        line.ms = Date.now() - start;
        line.id = r.request.request.iRequestId;
        line.upstream_id = upstreamId(r.response.packet);
        line.result = r.response.return;
        const chk = checkAnswer(msg, line.result);
        if (chk.bad) { line.error = chk.bad; return emit(line, false); }
        line.server = chk.server;
        return emit(line, true);
      } catch (e) {
        line.error = errText(e);
        return emit(line, false);
      }
    };
    for (let k = 0; k < opts.connections; k++) await echo('after-calls', k);
    if (opts.method === 'slow') {
      // Let the late answers come (to ferrymesh, for ids it gave up on), then use the
      // connections again.
      await sleep(Math.max(0, t0 + opts.slowMs + 300 - Date.now()));
      for (let k = 0; k < opts.connections; k++) await echo('after-late', k);
    }
  }

  // Answers that arrived for calls already finished: late or duplicate answers.
  const answered = new Map();
  const key = f => f.conn + '/' + f.id;
  for (const f of wire) answered.set(key(f), (answered.get(key(f)) || 0) + 1);
  const extra = wire.filter(f => answered.get(key(f)) > 1);
  process.stdout.write(JSON.stringify({ event: 'summary', ok: failures === 0, failures, calls: opts.count,
    connections: opts.connections, frames_seen: wire.length,
    duplicate_answers: extra.map(f => ({ conn: f.conn, id: f.id, ret: f.ret })), ms: Date.now() - t0 }) + '\n');
  for (const { comm } of proxies) comm.destroy();
  return failures === 0;
}

main().then(ok => process.exit(ok ? 0 : 1), err => {
  console.error('FAIL: ' + errText(err));
  process.stdout.write(JSON.stringify({ event: 'summary', ok: false, error: errText(err) }) + '\n');
  process.exit(1);
});
