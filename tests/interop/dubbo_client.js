#!/usr/bin/env node
'use strict';
// A real Dubbo 2 consumer (sofa-rpc-node RpcClient with the npm dubbo-remoting protocol) that
// connects directly (no registry) to HOST:PORT — a ferrymesh dubbo listener or a Dubbo provider —
// makes COUNT calls of one method on one connection, and checks each outcome.
//
//   node dubbo_client.js HOST:PORT [--method echo|fail|slow|heartbeat] [--count N] [--concurrency C]
//        [--message M] [--slow-ms MS] [--timeout-ms MS] [--service S] [--version V] [--group G]
//        [--expect-error] [--expect-message TEXT] [--expect-status N] [--expect-timeout]
//        [--expect-server NAME] [--then-echo] [--deadline-ms MS]
//
//   --method M          echo (default), fail, slow (args: message, --slow-ms, default 1500), or
//                       heartbeat (a Dubbo event request; the ack must come back with status 20)
//   --count N           calls (default 1); --concurrency C of them in flight at once (default 1)
//   --message M         argument (default "hello"); with N > 1 call i sends M-i
//   --service/--version/--group
//                       the consumer's interface (default com.example.EchoService), version
//                       (default 1.0) and group (default: sofa-rpc-node's "SOFA"); the group
//                       travels as the `group` attachment
//   --timeout-ms MS     the client's own response timeout per call (default 3000)
//   --expect-error      every call must be answered with a Dubbo error response (not a timeout)
//   --expect-message T  ... whose message contains T (implies --expect-error)
//   --expect-status N   ... and whose wire status byte is N (implies --expect-error unless N = 20)
//   --expect-timeout    every call must be rejected by the client's own timer (no answer in time)
//   --expect-server S   every echo/slow answer must name server S (default: any non-empty name)
//   --then-echo         afterwards, one echo on the same connection must succeed; after a slow
//                       call it also waits until the late answer is due and echoes once more
//                       (proves a timed-out call did not break the connection)
//
// Prints one JSON line per call on stdout ({"event":"call",...}), one per follow-up echo
// ({"event":"then_echo",...}), then {"event":"summary","ok":...}. Exit 0 if every outcome was
// the expected one; 1 otherwise (reason on stderr and in the JSON lines); 2 on usage error;
// 3 if the overall deadline passed.

const util = require('util');
const { RpcClient } = require('sofa-rpc-node').client;
const dubbo = require('dubbo-remoting');
// Internals, used only to observe the wire (see wire hook below) and the id counter.
const dubboWire = require('dubbo-remoting/lib/protocol');
const rpcIds = require('sofa-rpc-node/lib/client/utils');

function parseArgs(argv) {
  const o = { method: 'echo', count: 1, concurrency: 1, message: 'hello', slowMs: 1500, timeoutMs: 3000,
    service: 'com.example.EchoService', version: '1.0', group: undefined, expectError: false,
    expectMessage: null, expectStatus: null, expectTimeout: false, expectServer: null, thenEcho: false,
    deadlineMs: 0, addr: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) throw new Error(a + ' needs a value'); return argv[++i]; };
    if (a === '--method') o.method = val();
    else if (a === '--count') o.count = Number(val());
    else if (a === '--concurrency') o.concurrency = Number(val());
    else if (a === '--message') o.message = val();
    else if (a === '--slow-ms') o.slowMs = Number(val());
    else if (a === '--timeout-ms') o.timeoutMs = Number(val());
    else if (a === '--service') o.service = val();
    else if (a === '--version') o.version = val();
    else if (a === '--group') o.group = val();
    else if (a === '--expect-error') o.expectError = true;
    else if (a === '--expect-message') { o.expectMessage = val(); o.expectError = true; }
    else if (a === '--expect-status') { o.expectStatus = Number(val()); if (o.expectStatus !== 20) o.expectError = true; }
    else if (a === '--expect-timeout') o.expectTimeout = true;
    else if (a === '--expect-server') o.expectServer = val();
    else if (a === '--then-echo') o.thenEcho = true;
    else if (a === '--deadline-ms') o.deadlineMs = Number(val());
    else if (a.startsWith('--')) throw new Error('unknown flag ' + a);
    else if (!o.addr) o.addr = a;
    else throw new Error('unexpected argument ' + a);
  }
  if (!o.addr) o.addr = process.env.DUBBO_ADDR;
  if (!o.addr || !/^[^:]+:\d+$/.test(o.addr)) throw new Error('need HOST:PORT');
  if (![ 'echo', 'fail', 'slow', 'heartbeat' ].includes(o.method)) throw new Error('unknown --method ' + o.method);
  if (!(o.count >= 1) || !(o.concurrency >= 1)) throw new Error('--count / --concurrency must be >= 1');
  if (!(o.timeoutMs >= 1)) throw new Error('--timeout-ms must be >= 1');
  if (o.expectError && o.expectTimeout) throw new Error('--expect-error and --expect-timeout exclude each other');
  if (!o.deadlineMs) o.deadlineMs = 10000 + o.count * (o.timeoutMs + (o.method === 'slow' ? o.slowMs : 0));
  return o;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  console.error('dubbo_client: ' + e.message + '\nusage: node dubbo_client.js HOST:PORT [--method echo|fail|slow|heartbeat] ' +
    '[--count N] [--concurrency C] [--message M] [--slow-ms MS] [--timeout-ms MS] [--service S] [--version V] ' +
    '[--group G] [--expect-error] [--expect-message T] [--expect-status N] [--expect-timeout] [--expect-server S] ' +
    '[--then-echo] [--deadline-ms MS]');
  process.exit(2);
}

// Hard upper bound on the whole run.
setTimeout(() => {
  console.error('FAIL: overall deadline of ' + opts.deadlineMs + ' ms passed');
  process.stdout.write(JSON.stringify({ event: 'summary', ok: false, error: 'deadline' }) + '\n');
  process.exit(3);
}, opts.deadlineMs);

// ---- wire hook -------------------------------------------------------------------------------
// dubbo-remoting's decoder calls protocol.decode(frame) for every complete frame. Wrapping it
// records what the public API hides: the status byte (every non-20 status surfaces as a plain
// Error) and heartbeat acks. Nothing is changed.
const wire = []; // { t, id, kind, flag, status, len }
const origDecode = dubboWire.decode;
dubboWire.decode = (buf, options) => {
  const ret = origDecode(buf, options);
  wire.push({ t: Date.now(), id: ret.packetId, kind: ret.packetType, flag: buf[2], status: buf[3], len: buf.length });
  return ret;
};
const framesFor = id => wire.filter(f => f.id === id);

const logger = {
  debug() {},
  info() {},
  warn(...a) { console.error('[client warn] ' + util.format(...a).slice(0, 300)); },
  error(...a) { console.error('[client error] ' + util.format(...a).slice(0, 300)); },
};

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
const errText = e => (e && (e.name + ': ' + e.message)) || String(e);

// The server name in an echo/slow answer, or an error text.
function checkAnswer(prefix, ans) {
  prefix += '|server=';
  if (typeof ans !== 'string' || !ans.startsWith(prefix) || ans.length === prefix.length) {
    return { bad: 'answered ' + JSON.stringify(ans) + ', expected ' + JSON.stringify(prefix + '<name>') };
  }
  const server = ans.slice(prefix.length);
  if (opts.expectServer && server !== opts.expectServer) return { bad: 'answered by ' + server + ', expected ' + opts.expectServer };
  return { server };
}

async function main() {
  const client = new RpcClient({ logger, protocol: dubbo });
  client.on('error', e => logger.warn('client error event: %s', errText(e)));
  // Middleware: hand each call's Dubbo request id back through the request's `ctx` holder.
  client.use(async (ctx, next) => {
    try {
      await next();
    } finally {
      if (ctx.req.ctx) ctx.req.ctx.id = ctx.req.meta.id;
    }
  });
  const consumerOpts = { interfaceName: opts.service, version: opts.version, serverHost: opts.addr, responseTimeout: opts.timeoutMs };
  if (opts.group !== undefined) consumerOpts.group = opts.group;
  const consumer = client.createConsumer(consumerOpts);
  await withTimeout(consumer.ready(), 5000, 'consumer ready');
  // The library swallows connect errors (the call then fails with "No provider ..."): say it plainly.
  const connected = () => Array.from(client.connectionManager.connections.values()).find(c => c.isConnected);
  if (!connected()) {
    emit({ event: 'connect', error: 'could not connect to ' + opts.addr }, false);
    return false;
  }
  const invoke = (method, args, timeout = opts.timeoutMs, holder = {}) =>
    consumer.invoke(method, args, { responseTimeout: timeout, ctx: holder });
  const timedOut = []; // ids the client gave up on

  // One call, checked against the expectation.
  const call = async i => {
    const msg = opts.count === 1 ? opts.message : opts.message + '-' + i;
    const start = Date.now();
    const line = { event: 'call', call: i, method: opts.method, message: msg };
    if (opts.method === 'heartbeat') return heartbeat(line, start);
    const args = opts.method === 'slow' ? [ msg, opts.slowMs ] : [ msg ];
    const holder = {};
    try {
      const ans = await withTimeout(invoke(opts.method, args, opts.timeoutMs, holder), opts.timeoutMs + 2000, opts.method + '()');
      line.ms = Date.now() - start;
      line.id = holder.id;
      line.result = ans;
      const frames = framesFor(holder.id);
      if (frames.length) line.status = frames[0].status;
      if (opts.expectError || opts.expectTimeout) {
        line.error = 'expected ' + (opts.expectTimeout ? 'a timeout' : 'an error') + ', got an answer';
        return emit(line, false);
      }
      const chk = checkAnswer((opts.method === 'slow' ? 'slow:' : '') + msg, ans);
      if (chk.bad) { line.error = chk.bad; return emit(line, false); }
      line.server = chk.server;
      return emit(line, true);
    } catch (e) {
      line.ms = Date.now() - start;
      line.id = holder.id;
      line.error_name = e.name;
      line.error = e.message;
      const frames = holder.id !== undefined ? framesFor(holder.id) : [];
      if (frames.length) line.status = frames[0].status;
      if (e.name === 'RpcResponseTimeoutError') {
        line.timeout = true;
        timedOut.push(holder.id);
        if (!opts.expectTimeout) return emit(line, false);
        if (line.ms > opts.timeoutMs + 1000) { line.why = 'timeout surfaced late'; return emit(line, false); }
        return emit(line, true);
      }
      if (!opts.expectError) return emit(line, false);
      if (!frames.length) { line.why = 'no response frame: not a Dubbo error answer'; return emit(line, false); }
      if (opts.expectStatus !== null && line.status !== opts.expectStatus) { line.why = 'status ' + line.status + ' != ' + opts.expectStatus; return emit(line, false); }
      if (opts.expectMessage !== null && !String(e.message).includes(opts.expectMessage)) { line.why = 'message lacks ' + JSON.stringify(opts.expectMessage); return emit(line, false); }
      return emit(line, true);
    }
  };

  // A heartbeat on the consumer's connection. RpcConnection#heartbeat() writes only when the
  // connection has been idle > maxIdleTime and never waits for the ack; so mark the connection
  // idle, call it, and observe the ack on the connection's decoder ('heartbeat_ack' event).
  const heartbeat = async (line, start) => {
    const conn = connected();
    if (!conn) { line.error = 'no connected RpcConnection'; return emit(line, false); }
    let gotAck;
    const acked = new Promise(resolve => { gotAck = resolve; });
    const onAck = hb => gotAck(hb);
    conn._decoder.on('heartbeat_ack', onAck);
    try {
      conn._lastActiveTime = 0;
      conn.heartbeat();
      line.id = rpcIds.id; // heartbeat() takes its id from the same counter as requests
      const hb = await withTimeout(acked, opts.timeoutMs, 'heartbeat ack');
      line.ms = Date.now() - start;
      line.ack_id = hb.packetId;
      const f = framesFor(hb.packetId).find(x => x.kind === 'heartbeat_ack');
      line.ack_status = f && f.status;
      line.ack_flag = f && f.flag;
      if (hb.packetId !== line.id) { line.error = 'ack id ' + hb.packetId + ' != request id ' + line.id; return emit(line, false); }
      if (line.ack_status !== 20) { line.error = 'ack status ' + line.ack_status; return emit(line, false); }
      return emit(line, true);
    } catch (e) {
      line.error = errText(e);
      return emit(line, false);
    } finally {
      conn._decoder.removeListener('heartbeat_ack', onAck);
    }
  };

  const t0 = Date.now();
  for (let i = 0; i < opts.count; i += opts.concurrency) {
    const batch = [];
    for (let j = i; j < Math.min(opts.count, i + opts.concurrency); j++) batch.push(call(j));
    await Promise.all(batch);
  }

  if (opts.thenEcho) {
    const echo = async tag => {
      const msg = opts.message + '-' + tag;
      const line = { event: 'then_echo', after: tag };
      const start = Date.now();
      try {
        const ans = await invoke('echo', [ msg ], 3000);
        line.ms = Date.now() - start;
        line.result = ans;
        const chk = checkAnswer(msg, ans);
        if (chk.bad) { line.error = chk.bad; return emit(line, false); }
        line.server = chk.server;
        return emit(line, true);
      } catch (e) {
        line.error = errText(e);
        return emit(line, false);
      }
    };
    await echo('after-calls');
    if (opts.method === 'slow') {
      // Let the late answer arrive (it is for an id the client gave up on), then use the
      // connection again.
      await sleep(Math.max(0, t0 + opts.slowMs + 300 - Date.now()));
      await echo('after-late');
    }
  }

  // Answers that arrived for ids the client had already given up on (dropped by the library).
  const late = wire.filter(f => f.kind === 'response' && timedOut.includes(f.id));
  process.stdout.write(JSON.stringify({ event: 'summary', ok: failures === 0, failures, calls: opts.count,
    timed_out_ids: timedOut, late_replies: late.map(f => ({ id: f.id, status: f.status })),
    frames_seen: wire.length, ms: Date.now() - t0 }) + '\n');
  await withTimeout(client.close(), 1000, 'client close').catch(() => {});
  return failures === 0;
}

main().then(ok => process.exit(ok ? 0 : 1), err => {
  console.error('FAIL: ' + (err && err.stack || err));
  process.stdout.write(JSON.stringify({ event: 'summary', ok: false, error: errText(err) }) + '\n');
  process.exit(1);
});
