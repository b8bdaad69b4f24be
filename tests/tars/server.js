#!/usr/bin/env node
'use strict';
// A real Tars server (npm @tars/rpc HeroServer, TARS protocol) serving the servant
// Test.HelloServer.HelloObj on 127.0.0.1, started without the Tars framework: no tarsnode
// config file, no registry, just an explicit endpoint (the README's "display configuration
// server information" way).
//
//   node server.js [--port P] [--name NAME]
//
//   --port P     port to listen on (default 0: any free port)
//   --name NAME  server name put in every answer (default "tars")
//
// echo(s)  answers s + "|server=" + NAME;
// slow(ms) answers "slow:" + ms + "|server=" + NAME after ms milliseconds.
// Every answer carries the request id the server saw in its response context
// (key "upstream_id"), so a client behind a proxy can see the id the proxy used.
//
// Prints "READY <port>" once listening; stops on SIGTERM/SIGINT.

const TarsServer = require('@tars/rpc').server;
const Test = require('./Hello.js').Test;

const SERVANT = 'Test.HelloServer.HelloObj';

function parseArgs(argv) {
  const o = { port: 0, name: 'tars' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) throw new Error(a + ' needs a value'); return argv[++i]; };
    if (a === '--port') o.port = Number(val());
    else if (a === '--name') o.name = val();
    else throw new Error('unknown argument ' + a);
  }
  if (!(o.port >= 0 && o.port < 65536)) throw new Error('bad --port');
  return o;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  console.error('server: ' + e.message + '\nusage: node server.js [--port P] [--name NAME]');
  process.exit(2);
}

const answer = (current, text) => {
  current.setResponseContext({ upstream_id: String(current.getRequestId()) });
  current.sendResponse(text + '|server=' + opts.name);
};

Test.HelloImp.prototype.echo = function (current, s) {
  answer(current, s);
};

const timers = new Set();
Test.HelloImp.prototype.slow = function (current, ms) {
  const t = setTimeout(() => {
    timers.delete(t);
    answer(current, 'slow:' + ms);
  }, ms);
  timers.add(t);
};

const option = new TarsServer.BindAdapterOption();
option.endpoint = 'tcp -h 127.0.0.1 -p ' + opts.port + ' -t 60000';
option.name = SERVANT + 'Adapter';
option.servant = SERVANT;
option.protocolName = 'tars';
option.handleImp = Test.HelloImp;

const svr = new TarsServer();
svr.start(option);

// The library listens in NetThread#initialize and does not report the bound port: read it
// from its listener (needed for --port 0).
const listener = svr._adapters[0]._netthread._listener;
const ready = () => process.stdout.write('READY ' + listener.address().port + '\n');
if (listener.listening) ready();
else listener.once('listening', ready);
listener.on('error', e => {
  console.error('server: ' + e.message);
  process.exit(1);
});

const stop = () => {
  for (const t of timers) clearTimeout(t);
  try { svr.stop(); } catch (e) { /* already stopping */ }
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
