#!/usr/bin/env node
// A TCP proxy with faults, for one service's path to RabbitMQ or MariaDB (scripts/openstack.sh starts two):
// the failures stackwatch exists for are silent ones (a NAT or firewall that drops a connection's bytes while
// both ends keep their sockets open), which neither `rabbitmqctl close_connection` nor stopping a server can
// produce. Dependency-free, so it runs before `npm ci`.
//
//   node fault-proxy.mjs --name amqp --listen 127.0.0.1:28672 --upstream 127.0.0.1:5672 --control 127.0.0.1:28673
//
// Modes, switched at run time (`curl -X PUT http://CONTROL/mode/blackhole`; `GET /mode` shows the state):
//   pass          bytes flow both ways
//   blackhole     bytes are read and dropped both ways; sockets stay open, so neither end sees an error
//   blackhole-up  only the client's bytes to the upstream are dropped: deliveries still reach the service,
//                 its replies, acks and heartbeats vanish
//   reset         every current connection is closed with a TCP RST on both sides, then the mode is pass
//   refuse        current connections are reset and new ones refused (the listener closes): a server gone
// Logs are JSON lines on stdout.
import net from 'node:net';
import http from 'node:http';

const MODES = ['pass', 'blackhole', 'blackhole-up', 'reset', 'refuse'];

function parseArgs(argv) {
  const opts = { name: 'proxy', listen: '', upstream: '', control: '', mode: 'pass' };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]?.replace(/^--/, '');
    if (!key || !(key in opts) || argv[i + 1] === undefined) usage(`unknown or incomplete option ${argv[i]}`);
    opts[key] = argv[i + 1];
  }
  for (const key of ['listen', 'upstream', 'control']) {
    if (!/^[^:]+:\d{1,5}$/.test(opts[key])) usage(`--${key}: expected host:port, got "${opts[key]}"`);
  }
  if (!MODES.includes(opts.mode) || opts.mode === 'reset') usage(`--mode: one of pass, blackhole, blackhole-up, refuse`);
  return opts;
}

function usage(problem) {
  process.stderr.write(`fault-proxy: ${problem}\nusage: fault-proxy.mjs --name NAME --listen HOST:PORT --upstream HOST:PORT --control HOST:PORT [--mode MODE]\n`);
  process.exit(2);
}

function hostPort(s) {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
}

const opts = parseArgs(process.argv.slice(2));
const listen = hostPort(opts.listen);
const upstream = hostPort(opts.upstream);
const control = hostPort(opts.control);

let mode = opts.mode;
let nextId = 1;
/** @type {Map<number, {client: net.Socket, server: net.Socket, peer: string, droppedUp: number, droppedDown: number}>} */
const conns = new Map();
const totals = { accepted: 0, droppedUp: 0, droppedDown: 0 };

function log(msg, fields = {}) {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), proxy: opts.name, msg, ...fields })}\n`);
}

// RST rather than FIN: the peer learns at once that the connection is gone, as after a middlebox's reset.
function kill(sock) {
  if (sock.destroyed) return;
  if (typeof sock.resetAndDestroy === 'function' && sock.readyState !== 'opening') sock.resetAndDestroy();
  else sock.destroy();
}

function resetAll() {
  const n = conns.size;
  for (const c of conns.values()) {
    kill(c.client);
    kill(c.server);
  }
  conns.clear();
  return n;
}

const proxy = net.createServer((client) => {
  const id = nextId++;
  const peer = `${client.remoteAddress}:${client.remotePort}`;
  const server = net.connect(upstream.port, upstream.host);
  const c = { client, server, peer, droppedUp: 0, droppedDown: 0 };
  conns.set(id, c);
  totals.accepted++;
  log('connection', { id, peer, mode });
  // Forwarding is decided per chunk, so a mode switch applies to open connections at once.
  client.on('data', (chunk) => {
    if (mode === 'blackhole' || mode === 'blackhole-up') {
      c.droppedUp += chunk.length;
      totals.droppedUp += chunk.length;
    } else if (!server.write(chunk)) {
      client.pause();
      server.once('drain', () => client.resume());
    }
  });
  server.on('data', (chunk) => {
    if (mode === 'blackhole') {
      c.droppedDown += chunk.length;
      totals.droppedDown += chunk.length;
    } else if (!client.write(chunk)) {
      server.pause();
      client.once('drain', () => server.resume());
    }
  });
  let closed = false;
  const close = (side, err) => {
    if (closed) return;
    closed = true;
    conns.delete(id);
    log('closed', { id, peer, by: side, error: err?.code, droppedUp: c.droppedUp, droppedDown: c.droppedDown });
    kill(client);
    kill(server);
  };
  client.on('error', (err) => close('client', err));
  server.on('error', (err) => close('upstream', err));
  // A half-close passes on as a half-close while bytes flow; in a black hole nothing passes, not even a FIN.
  client.on('end', () => (mode === 'pass' ? server.end() : undefined));
  server.on('end', () => (mode === 'pass' || mode === 'blackhole-up' ? client.end() : undefined));
  client.on('close', () => close('client'));
  server.on('close', () => close('upstream'));
});
proxy.on('error', (err) => {
  log('listen failed', { listen: opts.listen, error: err.message });
  process.exit(1);
});

// Both resolve once the listener is bound or closed: the control's answer comes after, so a client that connects
// right after `PUT /mode/pass` (following a refuse) is never refused.
let listening = false;
function startListening() {
  if (listening) return Promise.resolve();
  listening = true;
  return new Promise((resolve) =>
    proxy.listen(listen.port, listen.host, () => {
      log('listening', { listen: opts.listen, upstream: opts.upstream, mode });
      resolve();
    }),
  );
}
function stopListening() {
  if (!listening) return Promise.resolve();
  listening = false;
  return new Promise((resolve) => proxy.close(() => resolve()));
}

async function setMode(next) {
  const before = mode;
  let reset = 0;
  if (next === 'reset') {
    reset = resetAll();
    mode = 'pass';
    await startListening();
  } else if (next === 'refuse') {
    reset = resetAll();
    mode = 'refuse';
    await stopListening();
  } else {
    mode = next;
    await startListening();
  }
  log('mode', { from: before, to: next, mode, reset, connections: conns.size });
  return reset;
}

function state(extra = {}) {
  return {
    name: opts.name,
    mode,
    listen: opts.listen,
    upstream: opts.upstream,
    connections: conns.size,
    ...totals,
    ...extra,
  };
}

const controlServer = http.createServer((req, res) => {
  const reply = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify(body)}\n`);
  };
  const url = new URL(req.url ?? '/', 'http://control');
  const m = /^\/mode\/([a-z-]+)$/.exec(url.pathname);
  if ((req.method === 'GET' || req.method === 'HEAD') && (url.pathname === '/mode' || url.pathname === '/')) {
    reply(200, state());
  } else if ((req.method === 'PUT' || req.method === 'POST') && m) {
    if (!MODES.includes(m[1])) {
      reply(400, { error: `mode: expected one of ${MODES.join(', ')}, got "${m[1]}"` });
    } else {
      setMode(m[1]).then((reset) => reply(200, state({ reset })));
    }
  } else {
    reply(404, { error: 'GET /mode, or PUT /mode/{pass|blackhole|blackhole-up|reset|refuse}' });
  }
});
controlServer.on('error', (err) => {
  log('control listen failed', { control: opts.control, error: err.message });
  process.exit(1);
});
controlServer.listen(control.port, control.host, () => log('control', { url: `http://${opts.control}/mode` }));

if (mode !== 'refuse') startListening();

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    log('stopping', { signal: sig, connections: conns.size });
    resetAll();
    process.exit(0);
  });
}
