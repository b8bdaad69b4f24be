#!/usr/bin/env node
'use strict';
// A real Dubbo 2 provider (sofa-rpc-node RpcServer with the npm dubbo-remoting protocol: dubbo
// header + hessian2), no registry, for ferrymesh interop tests.
//
//   node dubbo_server.js [--port P] [--name NAME] [--host 127.0.0.1]
//
// Port 0 picks a free port. Prints exactly one line on stdout, `READY <port>`, once listening;
// all logging goes to stderr (set DUBBO_VERBOSE=1 for info logs). Exits 0 on SIGTERM / SIGINT.
//
// Publishes com.example.EchoService version 1.0 with
//   echo(s)     -> s + '|server=' + NAME
//   fail(s)     -> throws Error('fail:' + s)  => Dubbo status 80 (SERVER_ERROR), body = the message
//   slow(s, ms) -> answers 'slow:' + s + '|server=' + NAME after ms milliseconds (capped at 60 s)
// Heartbeats (event requests) are answered by the library: flag 0x22, status 20.
//
// dubbo-remoting carries no request timeout on the wire, so sofa-rpc-node's "drop answers that are
// ready after the request's timeout" never applies: a slow() answer is always sent, however late.

const net = require('net');
const util = require('util');
const { RpcServer } = require('sofa-rpc-node').server;
const dubbo = require('dubbo-remoting');

const SERVICE = 'com.example.EchoService';
const VERSION = '1.0';

function parseArgs(argv) {
  const opts = { port: process.env.DUBBO_PORT, name: process.env.DUBBO_NAME, host: process.env.DUBBO_HOST || '127.0.0.1' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) throw new Error(a + ' needs a value'); return argv[++i]; };
    if (a === '--port') opts.port = val();
    else if (a === '--name') opts.name = val();
    else if (a === '--host') opts.host = val();
    else throw new Error('unknown argument ' + a);
  }
  opts.port = Number(opts.port === undefined ? 20880 : opts.port);
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) throw new Error('bad port');
  return opts;
}

// Library logs go to stderr only, so stdout carries nothing but the READY line.
const verbose = !!process.env.DUBBO_VERBOSE;
const logger = {
  debug() {},
  info(...a) { if (verbose) console.error('[dubbo server info] ' + util.format(...a)); },
  warn(...a) { console.error('[dubbo server warn] ' + util.format(...a).slice(0, 500)); },
  error(...a) { console.error('[dubbo server error] ' + util.format(...a).slice(0, 500)); },
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
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error('dubbo_server: ' + e.message + '\nusage: node dubbo_server.js [--port P] [--name NAME] [--host H]');
    process.exit(2);
  }
  const server = new EchoServer({
    logger,
    host: opts.host,
    port: opts.port,
    protocol: dubbo,
    killTimeout: 1000, // `graceful` (uncaughtException handler) would otherwise linger 30 s
  });
  server.on('error', err => console.error('[dubbo server error event]', err && err.message));

  let name = opts.name;
  server.addService({ interfaceName: SERVICE, version: VERSION }, {
    async echo(s) {
      return s + '|server=' + name;
    },
    async fail(s) {
      const err = new Error('fail:' + s);
      err.ignoreLog = true; // expected: keep stderr quiet
      throw err;
    },
    async slow(s, ms) {
      await new Promise(resolve => setTimeout(resolve, Math.max(0, Math.min(Number(ms) || 0, 60000))));
      return 'slow:' + s + '|server=' + name;
    },
  });

  const startTimer = setTimeout(() => {
    console.error('dubbo_server: not listening after 5 s');
    process.exit(2);
  }, 5000);
  await server.start();
  clearTimeout(startTimer);
  const port = server._servers[0].address().port;
  if (!name) name = 'dubbo-' + port;
  process.stdout.write('READY ' + port + '\n');

  let stopping = false;
  const stop = sig => {
    if (stopping) return;
    stopping = true;
    if (verbose) console.error('dubbo_server: %s, closing', sig);
    setTimeout(() => process.exit(0), 1000).unref(); // bounded: do not wait on slow requests
    server.close().then(() => process.exit(0), () => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch(err => {
  console.error('dubbo_server: ' + (err && err.stack || err));
  process.exit(2);
});
