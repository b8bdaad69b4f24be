#!/usr/bin/env node
'use strict';
// A real sofa-rpc-node RpcServer (bolt, hessian2), no registry, for ferrymesh interop tests.
//
//   node server.js [--port P] [--name NAME] [--host 127.0.0.1] [--stock-timeouts] [--no-stacks]
//   node server.js P NAME            (positional form; env BOLT_PORT / BOLT_NAME also work)
//
// Port 0 picks a free port. Prints exactly one line on stdout, `READY <port>`, once listening;
// all logging goes to stderr (set BOLT_VERBOSE=1 for info logs). Exits 0 on SIGTERM / SIGINT.
//
// Publishes com.example.EchoService:1.0 with
//   echo(msg)     -> msg + '|server=' + NAME
//   fail(msg)     -> throws Error('fail:' + msg)  => bolt respStatus 2 (SERVER_EXCEPTION)
//   slow(msg, ms) -> answers 'slow:' + msg + '|server=' + NAME after ms milliseconds
//
// Late replies: stock sofa-rpc-node silently drops an answer that is ready after the request's
// bolt timeout (RpcService#invoke and the encoder both check req.options.timeout). That would
// leave nothing for a proxy to drop, so by default this server answers late anyway (it clears
// the decoded timeout before dispatch; the wire bytes are untouched). --stock-timeouts restores
// the library's behaviour.
//
// --no-stacks sets Error.stackTraceLimit = 0. The SERVER_EXCEPTION content carries the stack of an
// Error that sofa-bolt-node creates inside its encoder (file paths of node_modules), so without
// this the fail() answer depends on where the checkout lives. capture.js uses it for stable fixtures.

const net = require('net');
const util = require('util');
const { RpcServer } = require('sofa-rpc-node').server;

function parseArgs(argv) {
  const opts = {
    port: process.env.BOLT_PORT,
    name: process.env.BOLT_NAME,
    host: process.env.BOLT_HOST || '127.0.0.1',
    lateReplies: true,
  };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--port') opts.port = argv[++i];
    else if (a === '--name') opts.name = argv[++i];
    else if (a === '--host') opts.host = argv[++i];
    else if (a === '--stock-timeouts') opts.lateReplies = false;
    else if (a === '--no-stacks') opts.noStacks = true;
    else if (a.startsWith('--')) throw new Error('unknown flag ' + a);
    else positional.push(a);
  }
  if (positional[0] !== undefined) opts.port = positional[0];
  if (positional[1] !== undefined) opts.name = positional[1];
  opts.port = Number(opts.port === undefined ? 12200 : opts.port);
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) throw new Error('bad port');
  return opts;
}

// Library logs to stderr only, so stdout carries nothing but the READY line.
const verbose = !!process.env.BOLT_VERBOSE;
const logger = {
  debug() {},
  info(...a) { if (verbose) console.error('[server info] ' + util.format(...a)); },
  warn(...a) { console.error('[server warn] ' + util.format(...a)); },
  error(...a) {
    // The fail() method's exception is expected: log it in one line, without the stack.
    const e = a[0];
    if (e instanceof Error && e.expected) return verbose && console.error('[server error]', e.message);
    console.error('[server error] ' + util.format(...a));
  },
};

class EchoServer extends RpcServer {
  // Same as RpcServer#_startServer, but binds to one host instead of all interfaces.
  _startServer(port) {
    const server = net.createServer();
    server.once('error', err => { this.emit('error', err); });
    server.on('connection', socket => { this._handleSocket(socket); });
    server.listen(port, this.options.host, () => {
      if (port === 0) this.publishPort = server.address().port;
    });
    return server;
  }

  async _handleRequest(req, conn) {
    if (this.options.lateReplies && req.options) req.options.timeout = 0;
    return super._handleRequest(req, conn);
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.noStacks) Error.stackTraceLimit = 0;
  const server = new EchoServer({
    logger,
    host: opts.host,
    port: opts.port,
    lateReplies: opts.lateReplies,
    killTimeout: 1000, // `graceful` (uncaughtException handler) would otherwise linger 30 s
  });
  server.on('error', err => console.error('[server error event]', err && err.message));

  let name = opts.name;
  server.addService({ interfaceName: 'com.example.EchoService', version: '1.0' }, {
    async echo(msg) {
      return msg + '|server=' + name;
    },
    async fail(msg) {
      const err = new Error('fail:' + msg);
      err.expected = true; // quiet logging
      throw err;
    },
    async slow(msg, ms) {
      await new Promise(resolve => setTimeout(resolve, Math.max(0, Math.min(Number(ms) || 0, 60000))));
      return 'slow:' + msg + '|server=' + name;
    },
  });

  const startTimer = setTimeout(() => {
    console.error('server: not listening after 5 s');
    process.exit(2);
  }, 5000);
  await server.start();
  clearTimeout(startTimer);
  const port = server._servers[0].address().port;
  if (!name) name = 'bolt-' + port;
  process.stdout.write('READY ' + port + '\n');

  let stopping = false;
  const stop = sig => {
    if (stopping) return;
    stopping = true;
    if (verbose) console.error('server: %s, closing', sig);
    setTimeout(() => process.exit(0), 1000).unref(); // bounded: do not wait on slow requests
    server.close().then(() => process.exit(0), () => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch(err => {
  console.error('server: ' + (err && err.stack || err));
  process.exit(2);
});
