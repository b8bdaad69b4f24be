#!/usr/bin/env node
'use strict';
// A real sofa-rpc-node RpcClient that connects directly (no registry) to HOST:PORT — a
// ferrymesh bolt listener or server.js itself — and runs the interop scenarios.
//
//   node client.js HOST:PORT [--rounds N] [--concurrency C] [--message M] [--expect-server NAME]
//                            [--bolt2] [--ver2] [--crc] [--no-late] [--deadline-ms MS]
//
//   --rounds N          echo rounds (default 1), each C concurrent calls (default 20): a soak knob
//   --message M         base message (default "hello"); it is sent verbatim when rounds=1 and
//                       concurrency=1, otherwise as M-<round>-<i> so every answer is distinct
//   --expect-server S   every echo must come from server NAME S (default: any non-empty name)
//   --bolt2 / --crc     encode requests as bolt v2 (proto 0x02); --crc adds the CRC32 trailer
//   --ver2              bolt v2 with ver1 = 2 but the CRC off (switch 0: no trailer)
//                       (ver1=2, switch=1). The server answers in the request's version.
//   --no-late           fail if the slow() call's real answer reaches the client after it timed
//                       out (use behind ferrymesh: the proxy must drop it; direct to server.js the
//                       late answer does arrive and the library discards it)
//
// Prints one JSON line per scenario on stdout (echo, service_error, client_timeout, heartbeat),
// then a summary line. Exit 0 if all passed; 1 if a scenario failed (reason on stderr and in its
// JSON line); 2 on usage error; 3 if the overall deadline passed.

const util = require('util');
const { RpcClient } = require('sofa-rpc-node').client;
const bolt = require('sofa-bolt-node');
// Internals, used only to observe the wire (see wire hook below) and the id counter.
const boltWire = require('sofa-bolt-node/lib/protocol');
const rpcIds = require('sofa-rpc-node/lib/client/utils');

const SERVICE = 'com.example.EchoService';

function parseArgs(argv) {
  const o = { rounds: 1, concurrency: 20, message: 'hello', expectServer: null, bolt2: false, ver2: false, crc: false,
    noLate: false, deadlineMs: 0, addr: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) throw new Error(a + ' needs a value'); return argv[++i]; };
    if (a === '--rounds') o.rounds = Number(val());
    else if (a === '--concurrency') o.concurrency = Number(val());
    else if (a === '--message') o.message = val();
    else if (a === '--expect-server') o.expectServer = val();
    else if (a === '--bolt2') o.bolt2 = true;
    else if (a === '--crc') { o.bolt2 = true; o.crc = true; }
    else if (a === '--ver2') { o.bolt2 = true; o.ver2 = true; }
    else if (a === '--no-late') o.noLate = true;
    else if (a === '--deadline-ms') o.deadlineMs = Number(val());
    else if (a.startsWith('--')) throw new Error('unknown flag ' + a);
    else if (!o.addr) o.addr = a;
    else throw new Error('unexpected argument ' + a);
  }
  if (!o.addr) o.addr = process.env.BOLT_ADDR;
  if (!o.addr || !/^[^:]+:\d+$/.test(o.addr)) throw new Error('need HOST:PORT');
  if (!(o.rounds >= 1) || !(o.concurrency >= 1)) throw new Error('--rounds / --concurrency must be >= 1');
  if (!o.deadlineMs) o.deadlineMs = 15000 + o.rounds * 3000;
  return o;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  console.error('client: ' + e.message + '\nusage: node client.js HOST:PORT [--rounds N] [--concurrency C] ' +
    '[--message M] [--expect-server NAME] [--bolt2] [--ver2] [--crc] [--no-late] [--deadline-ms MS]');
  process.exit(2);
}

// Hard upper bound on the whole run.
setTimeout(() => {
  console.error('FAIL: overall deadline of ' + opts.deadlineMs + ' ms passed');
  process.exit(3);
}, opts.deadlineMs);

// ---- wire hook -------------------------------------------------------------------------------
// The library's decoder calls boltWire.decode(frameBuffer) for every complete frame. Wrapping it
// records what the public API hides: the response status (respStatus 2/7 both surface as plain
// Errors), the proto version, and heartbeat acks. Nothing is changed.
const wire = []; // { t, id, kind, proto, status }
const origDecode = boltWire.decode;
boltWire.decode = (buf, options) => {
  const ret = origDecode(buf, options);
  if (ret.packetType === 'response' || ret.packetType === 'heartbeat_ack') {
    const proto = buf[0];
    wire.push({ t: Date.now(), id: ret.packetId, kind: ret.packetType, proto,
      status: buf.readUInt16BE(proto === 2 ? 12 : 10) });
  }
  return ret;
};
const framesFor = id => wire.filter(f => f.id === id);

// ---- protocol: v1 (library default) or v2 ----------------------------------------------------
let protocol = bolt;
if (opts.bolt2) {
  // The encoder has protocolType/boltVersion/crcEnable setters; sofa-rpc-node never sets them,
  // so wrap the protocol's encoder factory and flip them on every new connection.
  protocol = Object.assign(Object.create(bolt), {
    encoder(o) {
      const enc = bolt.encoder(o);
      enc.protocolType = 'bolt2';
      enc.boltVersion = opts.crc || opts.ver2 ? 2 : 1;
      enc.crcEnable = opts.crc;
      return enc;
    },
  });
}

const logger = {
  debug() {},
  info() {},
  warn(...a) { console.error('[client warn] ' + util.format(...a).slice(0, 300)); },
  error(...a) { console.error('[client error] ' + util.format(...a).slice(0, 300)); },
};

const results = [];
function report(scenario, ok, fields) {
  const line = Object.assign({ scenario, ok }, fields);
  results.push(line);
  process.stdout.write(JSON.stringify(line) + '\n');
  if (!ok) console.error('FAIL: ' + scenario + ': ' + fields.error);
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

async function main() {
  const t0 = Date.now();
  const client = new RpcClient({ logger, protocol });
  client.on('error', e => logger.warn('client error event: %s', errText(e)));
  // Middleware: tag every call's error with its bolt request id, and collect ids sent.
  const sentIds = [];
  client.use(async (ctx, next) => {
    try {
      await next();
    } catch (e) {
      if (e && typeof e === 'object') e.boltId = ctx.req.meta.id;
      throw e;
    } finally {
      if (ctx.req.meta.id !== undefined) sentIds.push(ctx.req.meta.id);
    }
    if (ctx.res && ctx.res.error) ctx.res.error.boltId = ctx.req.meta.id;
  });
  const consumer = client.createConsumer({
    interfaceName: SERVICE,
    version: '1.0',
    serverHost: opts.addr,
    responseTimeout: 3000,
  });
  await withTimeout(consumer.ready(), 5000, 'consumer ready');
  // The library swallows connect errors (the call then fails with "No provider ..."): say it plainly.
  if (!Array.from(client.connectionManager.connections.values()).some(c => c.isConnected)) {
    report('connect', false, { error: 'could not connect to ' + opts.addr });
    return false;
  }
  const invoke = (method, args, timeout = 3000) => consumer.invoke(method, args, { responseTimeout: timeout });

  const checkEcho = (msg, ans) => {
    const prefix = msg + '|server=';
    if (typeof ans !== 'string' || !ans.startsWith(prefix) || ans.length === prefix.length) {
      return 'echo(' + JSON.stringify(msg) + ') answered ' + JSON.stringify(ans);
    }
    const server = ans.slice(prefix.length);
    if (opts.expectServer && server !== opts.expectServer) return 'echo answered by ' + server + ', expected ' + opts.expectServer;
    return null;
  };
  const echoOnce = async msg => {
    const ans = await invoke('echo', [ msg ]);
    const bad = checkEcho(msg, ans);
    if (bad) throw new Error(bad);
    return ans;
  };

  // 1. echo: `concurrency` concurrent calls per round, each answer must be its own.
  {
    const start = Date.now();
    const servers = {};
    let calls = 0;
    let error = null;
    const single = opts.rounds === 1 && opts.concurrency === 1;
    for (let r = 0; r < opts.rounds && !error; r++) {
      const msgs = Array.from({ length: opts.concurrency }, (_, i) => (single ? opts.message : `${opts.message}-${r}-${i}`));
      const settled = await Promise.allSettled(msgs.map(m => invoke('echo', [ m ])));
      settled.forEach((s, i) => {
        calls++;
        const bad = s.status === 'rejected' ? 'echo(' + JSON.stringify(msgs[i]) + ') failed: ' + errText(s.reason) : checkEcho(msgs[i], s.value);
        if (bad) { error = error || bad; return; }
        const name = s.value.slice(msgs[i].length + '|server='.length);
        servers[name] = (servers[name] || 0) + 1;
      });
    }
    report('echo', !error, { rounds: opts.rounds, calls, servers, first_id: sentIds.length ? Math.min(...sentIds) : null, last_id: sentIds.length ? Math.max(...sentIds) : null,
      proto: wire.length ? wire[wire.length - 1].proto : null, ms: Date.now() - start, error: error || undefined });
  }

  // 2. service_error: fail() throws on the server => respStatus 2 reaches the client.
  {
    const start = Date.now();
    let error = null;
    let fields = {};
    try {
      const ans = await invoke('fail', [ opts.message ]);
      error = 'fail() resolved with ' + JSON.stringify(ans);
    } catch (e) {
      const status = e.boltId !== undefined ? framesFor(e.boltId).map(f => f.status) : [];
      fields = { id: e.boltId, resp_status: status[0], message: e.message };
      if (!/RpcServerException/.test(e.message) || !e.message.includes('fail:' + opts.message)) {
        error = 'unexpected error ' + errText(e);
      } else if (status[0] !== 2) {
        error = 'expected respStatus 2 on the wire, saw ' + JSON.stringify(status);
      }
    }
    report('service_error', !error, Object.assign(fields, { ms: Date.now() - start, error: error || undefined }));
  }

  // 3. client_timeout: slow(1500 ms) with a 300 ms timeout must reject within ~1 s, the client
  //    must stay usable, and the late answer (if it arrives) must not confuse anything.
  {
    const start = Date.now();
    let error = null;
    const fields = {};
    try {
      const ans = await withTimeout(invoke('slow', [ opts.message, 1500 ], 300), 2000, 'slow() with 300 ms timeout');
      error = 'slow() resolved with ' + JSON.stringify(ans);
    } catch (e) {
      fields.reject_ms = Date.now() - start;
      fields.id = e.boltId;
      const frames = e.boltId !== undefined ? framesFor(e.boltId) : [];
      if (e.name === 'RpcResponseTimeoutError') {
        fields.via = 'client_timer'; // library timer fired; no response frame yet
      } else if (frames.length && frames[0].status === 7) {
        fields.via = 'resp_status_7'; // a proxy answered TIMEOUT first
      } else {
        error = 'expected a timeout, got ' + errText(e) + ' frames=' + JSON.stringify(frames);
      }
      fields.message = e.message;
      if (!error && fields.reject_ms > 1000) error = 'timeout surfaced after ' + fields.reject_ms + ' ms (> 1000)';
    }
    try {
      if (!error) fields.echo_after = await echoOnce(opts.message + '-after-timeout');
      // Let the late answer (1500 ms after the call) arrive, then use the connection again.
      if (!error) await sleep(Math.max(0, start + 1700 - Date.now()));
      if (!error) fields.echo_after_late = await echoOnce(opts.message + '-after-late');
    } catch (e) {
      error = 'echo after timeout failed: ' + errText(e);
    }
    // Frames for the timed-out id other than a proxy's status-7 answer = the upstream's late reply.
    const late = fields.id !== undefined ? framesFor(fields.id).filter(f => f.status !== 7) : [];
    fields.late_reply_reached_client = late.length > 0;
    if (!error && opts.noLate && late.length) error = 'the late slow() answer reached the client (--no-late)';
    report('client_timeout', !error, Object.assign(fields, { ms: Date.now() - start, error: error || undefined }));
  }

  // 4. heartbeat: send a bolt heartbeat (cmdcode 0) on the client's connection and wait for the ack.
  //    RpcConnection#heartbeat() only writes when the connection has been idle > maxIdleTime (30 s)
  //    and never waits for the ack; so mark the connection idle, call it, and observe the ack on the
  //    connection's decoder, which emits 'heartbeat_ack' (RpcConnection itself ignores that event).
  {
    const start = Date.now();
    let error = null;
    const fields = {};
    try {
      const conns = Array.from(client.connectionManager.connections.values());
      fields.connections = conns.length;
      const conn = conns.find(c => c.isConnected);
      if (!conn) throw new Error('no connected RpcConnection');
      let gotAck;
      const acked = new Promise(resolve => { gotAck = resolve; });
      const onAck = hb => gotAck(hb);
      conn._decoder.on('heartbeat_ack', onAck);
      conn._lastActiveTime = 0;
      conn.heartbeat();
      fields.id = rpcIds.id; // heartbeat() takes its id from the same counter as requests
      try {
        const hb = await withTimeout(acked, 1000, 'heartbeat ack');
        fields.ack_id = hb.packetId;
        fields.ack_ms = Date.now() - start;
        const f = framesFor(hb.packetId).find(x => x.kind === 'heartbeat_ack');
        fields.ack_status = f && f.status;
        if (hb.packetId !== fields.id) error = 'heartbeat ack id ' + hb.packetId + ' != request id ' + fields.id;
        else if (fields.ack_status !== 0) error = 'heartbeat ack status ' + fields.ack_status;
      } finally {
        conn._decoder.removeListener('heartbeat_ack', onAck);
      }
      if (!error) fields.echo_after = await echoOnce(opts.message + '-after-heartbeat');
    } catch (e) {
      error = errText(e);
    }
    report('heartbeat', !error, Object.assign(fields, { ms: Date.now() - start, error: error || undefined }));
  }

  const failed = results.filter(r => !r.ok).map(r => r.scenario);
  process.stdout.write(JSON.stringify({ scenario: 'summary', ok: failed.length === 0, failed, ms: Date.now() - t0 }) + '\n');
  await withTimeout(client.close(), 1000, 'client close').catch(() => {});
  return failed.length === 0;
}

main().then(ok => process.exit(ok ? 0 : 1), err => {
  console.error('FAIL: ' + (err && err.stack || err));
  process.stdout.write(JSON.stringify({ scenario: 'summary', ok: false, error: errText(err) }) + '\n');
  process.exit(1);
});
