#!/usr/bin/env node
'use strict';
// Records real sofa-rpc-node bolt frames as golden hex fixtures for ferrymesh's codec tests.
//
//   node capture.js [--out DIR] [--check]
//
// Starts server.js (name "bolt-12200", late replies on, --no-stacks) and a tiny TCP relay in this process that
// keeps every chunk in each direction, then runs client.js through the relay four times:
// bolt v1 (library default), --bolt2, --crc and --ver2, each with --concurrency 1 --message hello, i.e.
// echo, fail, slow (300 ms timeout, late answer), echo, echo, heartbeat, echo. Each direction's
// byte stream is cut into frames by the bolt length fields, every frame is decoded again by
// sofa-bolt-node as a check, and the first frame of each kind is written as lowercase hex
// (128 chars per line) to DIR (default ../fixtures/bolt), together with a generated README.md.
// --check writes nothing and exits 1 if a fresh capture differs from the files in DIR.

const fs = require('fs');
const net = require('net');
const path = require('path');
const { spawn } = require('child_process');
const boltWire = require('sofa-bolt-node/lib/protocol');

const args = process.argv.slice(2);
const check = args.includes('--check');
const outIdx = args.indexOf('--out');
const outDir = path.resolve(outIdx >= 0 ? args[outIdx + 1] : path.join(__dirname, '..', 'fixtures', 'bolt'));
const SERVER_NAME = 'bolt-12200';
const RUNS = [
  { prefix: '', flags: [], title: 'bolt v1 (library default)' },
  { prefix: 'v2_', flags: [ '--bolt2' ], title: 'bolt v2 (proto 0x02, ver1 1, switch 0)' },
  { prefix: 'v2crc_', flags: [ '--crc' ], title: 'bolt v2 with CRC32 (ver1 2, switch 1, 4-byte CRC32 trailer)' },
  { prefix: 'v2ver2_', flags: [ '--ver2' ], title: 'bolt v2 with ver1 2 and the CRC off (switch 0, no trailer)' },
];

setTimeout(() => { console.error('capture: overall deadline (60 s) passed'); process.exit(3); }, 60000).unref();

// ---- bolt framing ------------------------------------------------------------------------------
// Returns the total length of the frame at the start of buf, or 0 if the header is incomplete.
function frameLength(buf) {
  if (buf.length < 2) return 0;
  const proto = buf[0];
  if (proto === 1) {
    const isResp = buf[1] === 0; // type: 1 request, 2 oneway, 0 response
    const hdr = isResp ? 20 : 22;
    if (buf.length < hdr) return 0;
    return isResp ?
      hdr + buf.readUInt16BE(12) + buf.readUInt16BE(14) + buf.readUInt32BE(16) :
      hdr + buf.readUInt16BE(14) + buf.readUInt16BE(16) + buf.readUInt32BE(18);
  }
  if (proto === 2) {
    const isResp = buf[2] === 0; // v2: proto, ver1, type, ...
    const hdr = isResp ? 22 : 24;
    if (buf.length < hdr) return 0;
    const len = isResp ?
      hdr + buf.readUInt16BE(14) + buf.readUInt16BE(16) + buf.readUInt32BE(18) :
      hdr + buf.readUInt16BE(16) + buf.readUInt16BE(18) + buf.readUInt32BE(20);
    return len + (buf[11] & 1 ? 4 : 0); // switch bit 0: CRC32 trailer
  }
  throw new Error('unknown bolt proto byte 0x' + proto.toString(16));
}

function cutFrames(stream) {
  const frames = [];
  let off = 0;
  while (off < stream.length) {
    const len = frameLength(stream.subarray(off));
    if (!len || off + len > stream.length) throw new Error('truncated frame at offset ' + off + ' of ' + stream.length);
    frames.push(stream.subarray(off, off + len));
    off += len;
  }
  return frames;
}

// Header fields, by the offsets in shared/protocols/bolt.md.
function header(f) {
  const v2 = f[0] === 2;
  const b = v2 ? 1 : 0; // v2 inserts ver1 after proto, and switch after codec
  const h = { proto: f[0] };
  if (v2) h.ver1 = f[1];
  const type = f[1 + b];
  Object.assign(h, { type, cmdcode: f.readUInt16BE(2 + b), ver2: f[4 + b], id: f.readUInt32BE(5 + b), codec: f[9 + b] });
  if (v2) h.switch = f[11];
  const o = 10 + b * 2;
  if (type === 0) {
    Object.assign(h, { status: f.readUInt16BE(o), classLen: f.readUInt16BE(o + 2), headerLen: f.readUInt16BE(o + 4), contentLen: f.readUInt32BE(o + 6) });
  } else {
    Object.assign(h, { timeout: f.readInt32BE(o), classLen: f.readUInt16BE(o + 4), headerLen: f.readUInt16BE(o + 6), contentLen: f.readUInt32BE(o + 8) });
  }
  return h;
}

// ---- processes and relay -------------------------------------------------------------------------
function startServer() {
  return new Promise((resolve, reject) => {
    const srv = spawn(process.execPath, [ path.join(__dirname, 'server.js'), '--port', '0', '--name', SERVER_NAME, '--no-stacks' ],
      { stdio: [ 'ignore', 'pipe', 'inherit' ] });
    const timer = setTimeout(() => { srv.kill('SIGKILL'); reject(new Error('server: no READY in 10 s')); }, 10000);
    let out = '';
    srv.stdout.on('data', d => {
      out += d;
      const m = /READY (\d+)/.exec(out);
      if (m) { clearTimeout(timer); resolve({ srv, port: Number(m[1]) }); }
    });
    srv.once('exit', code => { clearTimeout(timer); reject(new Error('server exited early: ' + code)); });
  });
}

function startRelay(upstreamPort, conns) {
  const relay = net.createServer(down => {
    const rec = { c2s: [], s2c: [] };
    conns.push(rec);
    const up = net.connect(upstreamPort, '127.0.0.1');
    down.on('data', d => { rec.c2s.push(Buffer.from(d)); up.write(d); });
    up.on('data', d => { rec.s2c.push(Buffer.from(d)); down.write(d); });
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
    down.on('error', () => {});
    up.on('error', () => {});
  });
  return new Promise(resolve => relay.listen(0, '127.0.0.1', () => resolve(relay)));
}

function runClient(port, flags) {
  return new Promise((resolve, reject) => {
    const cli = spawn(process.execPath,
      [ path.join(__dirname, 'client.js'), '127.0.0.1:' + port, '--concurrency', '1', '--message', 'hello', ...flags ],
      { stdio: [ 'ignore', 'pipe', 'pipe' ] });
    let out = '';
    let err = '';
    cli.stdout.on('data', d => { out += d; });
    cli.stderr.on('data', d => { err += d; });
    const timer = setTimeout(() => cli.kill('SIGKILL'), 20000);
    cli.once('exit', code => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error('client ' + flags.join(' ') + ' exited ' + code + '\n' + out + err));
    });
  });
}

// ---- naming ----------------------------------------------------------------------------------------
// Requests are named by their decoded method; responses by the request with the same id on the
// same connection (a response that arrives after the client gave up on slow() is "slow_late").
function nameFrames(rec, prefix) {
  const named = [];
  const methodById = new Map();
  for (const [ dir, chunks ] of [ [ 'c2s', rec.c2s ], [ 's2c', rec.s2c ] ]) {
    for (const f of cutFrames(Buffer.concat(chunks))) {
      const h = header(f);
      const dec = boltWire.decode(Buffer.from(f), {}); // library decode as a round-trip check
      let name;
      if (h.cmdcode === 0) name = h.type === 0 ? 'heartbeat_ack' : 'heartbeat_request';
      else if (h.type !== 0) {
        methodById.set(h.id, dec.data.methodName);
        name = dec.data.methodName + '_request';
      } else {
        const m = methodById.get(h.id) || 'unknown';
        name = (m === 'slow' ? 'slow_late' : m) + '_response';
      }
      named.push({ file: prefix + name + '.hex', dir, frame: f, h, dec });
    }
  }
  return named;
}

const toHex = buf => buf.toString('hex').replace(/(.{128})/g, '$1\n').replace(/\n?$/, '\n');

function summary(n) {
  if (n.dec.packetType === 'request') {
    const d = n.dec.data;
    return `${d.methodName}(${d.args.map(a => JSON.stringify(a)).join(', ')}) on ${d.serverSignature}`;
  }
  if (n.dec.packetType === 'response') {
    const d = n.dec.data;
    return d.error ? 'error: ' + d.error.message : 'appResponse ' + JSON.stringify(d.appResponse);
  }
  return n.dec.packetType;
}

async function main() {
  const { srv, port } = await startServer();
  const conns = [];
  const relay = await startRelay(port, conns);
  const relayPort = relay.address().port;
  const picked = new Map(); // file -> named frame (first occurrence)
  try {
    for (const run of RUNS) {
      const before = conns.length;
      await runClient(relayPort, run.flags);
      await new Promise(r => setTimeout(r, 200)); // let the relay see the last chunks and the close
      const mine = conns.slice(before);
      if (mine.length !== 1) throw new Error(`expected 1 connection for "${run.title}", got ${mine.length}`);
      for (const n of nameFrames(mine[0], run.prefix)) {
        n.run = run;
        if (!picked.has(n.file)) picked.set(n.file, n);
      }
    }
  } finally {
    relay.close();
    srv.kill('SIGTERM');
    await new Promise(r => { const t = setTimeout(r, 2000); srv.once('exit', () => { clearTimeout(t); r(); }); });
  }

  // The late answer must really be a late answer, and fail must really be respStatus 2.
  for (const p of RUNS.map(r => r.prefix)) {
    for (const f of [ 'echo_request', 'echo_response', 'fail_response', 'slow_request', 'slow_late_response', 'heartbeat_request', 'heartbeat_ack' ]) {
      if (!picked.has(p + f + '.hex')) throw new Error('missing frame ' + p + f);
    }
    if (picked.get(p + 'fail_response.hex').h.status !== 2) throw new Error('fail_response status is not 2');
  }

  if (check) {
    let bad = 0;
    for (const [ file, n ] of picked) {
      const fp = path.join(outDir, file);
      const have = fs.existsSync(fp) ? fs.readFileSync(fp, 'utf8') : null;
      if (have !== toHex(n.frame)) { bad++; console.error('differs: ' + fp); }
    }
    console.log(bad ? `capture --check: ${bad} fixture(s) differ` : `capture --check: ${picked.size} fixtures match`);
    process.exit(bad ? 1 : 0);
  }

  fs.mkdirSync(outDir, { recursive: true });
  for (const [ file, n ] of picked) fs.writeFileSync(path.join(outDir, file), toHex(n.frame));
  fs.writeFileSync(path.join(outDir, 'README.md'), readme(picked));
  console.log(`capture: wrote ${picked.size} frames + README.md to ${outDir}`);
  for (const [ file, n ] of picked) console.log(`  ${file.padEnd(28)} ${String(n.frame.length).padStart(4)} B  ${JSON.stringify(n.h)}`);
}

function readme(picked) {
  const pkg = name => require(require.resolve(name + '/package.json', { paths: [ __dirname ] })).version;
  const lines = [
    '# bolt golden frames',
    '',
    '<!-- generated by tests/interop/capture.js; do not edit by hand -->',
    '',
    `Real frames put on the wire by npm \`sofa-rpc-node\` ${pkg('sofa-rpc-node')} (with \`sofa-bolt-node\` ${pkg('sofa-bolt-node')}, hessian2 codec),`,
    'recorded on 127.0.0.1 by a TCP relay between `tests/interop/client.js` and `tests/interop/server.js`.',
    '',
    'Regenerate (from the repository root):',
    '',
    '```sh',
    'npm ci --prefix tests/interop',
    'node tests/interop/capture.js            # writes tests/fixtures/bolt/*.hex and this README',
    'node tests/interop/capture.js --check    # exits 1 if a fresh capture differs from these files',
    '```',
    '',
    'The relay keeps every chunk per direction; the byte stream is cut into frames by the bolt length',
    'fields (v1 request: 22-byte header, classLen@14 u16, headerLen@16 u16, contentLen@18 u32; v1 response:',
    '20-byte header, classLen@12, headerLen@14, contentLen@16; v2 adds `ver1` after `proto` and `switch` after',
    '`codec`, so its headers are 24/22 bytes, plus a 4-byte CRC32 trailer when switch bit 0 is set). Every frame',
    'was decoded again by sofa-bolt-node. The first frame of each kind is kept.',
    '',
    'Format: the frame as lowercase hex, no spaces, wrapped at 128 characters per line (strip newlines before',
    'decoding). Everything is big-endian.',
    '',
    'Client scenario per run (one TCP connection, request ids from 1): `echo("hello")`, `fail("hello")`,',
    '`slow("hello", 1500)` with a 300 ms timeout (the client gives up; the server still answers at 1500 ms:',
    '`slow_late_response`, an answer for an id nobody waits for), `echo`, `echo`, an explicit heartbeat,',
    '`echo`. Server name `' + SERVER_NAME + '`, service `com.example.EchoService:1.0`. The server runs with',
    '`--no-stacks` (`Error.stackTraceLimit = 0`), so the SERVER_EXCEPTION content has an empty stackTrace',
    'instead of node_modules file paths, which would make it depend on the checkout location.',
    '',
  ];
  for (const run of RUNS) {
    lines.push(`## ${run.title}${run.flags.length ? ' — client ' + run.flags.join(' ') : ''}`, '');
    lines.push('| file | dir | bytes | header | content |', '|---|---|---|---|---|');
    for (const [ file, n ] of picked) {
      if (n.run !== run) continue;
      const h = Object.entries(n.h).map(([ k, v ]) => k + '=' + v).join(' ');
      lines.push(`| \`${file}\` | ${n.dir === 'c2s' ? 'client→server' : 'server→client'} | ${n.frame.length} | ${h} | ${summary(n).replace(/\|/g, '\\|')} |`);
    }
    lines.push('');
  }
  lines.push(
    'Field notes: `type` 1 = request, 0 = response; `cmdcode` 1 = RPC request, 2 = RPC response, 0 = heartbeat;',
    '`codec` 1 = hessian2; `status` 2 = SERVER_EXCEPTION (content is a hessian',
    '`com.alipay.remoting.rpc.exception.RpcServerException`). Requests carry one header, `service` =',
    '`com.example.EchoService:1.0` (responses carry none). Class names are',
    '`com.alipay.sofa.rpc.core.request.SofaRequest` / `com.alipay.sofa.rpc.core.response.SofaResponse`;',
    'heartbeats and their acks have empty class, header and content.',
    '',
  );
  return lines.join('\n');
}

main().catch(err => {
  console.error('capture: ' + (err && err.stack || err));
  process.exit(1);
});
