#!/usr/bin/env node
// Tiny HTTP receiver standing in for the pager (Alertmanager's webhook target) in
// local runs and integration tests. Plain Node 20 ESM, no dependencies.
//
//   node scripts/webhook-receiver.mjs [--port 29095] [--host 127.0.0.1] [--max-items 10000]
//
//   POST /<any path>   JSON body -> kept in memory (newest last, bounded) -> 200 {"ok":true}
//                      (a body that is not JSON is kept as a string, flagged "raw": true)
//   GET  /received     -> {"count": n, "items": [{"path", "received_at", "body"}, ...]}
//   DELETE /received   -> clears, 200 {"ok":true,"cleared":n}
//   GET  /healthz      -> 200 {"ok":true}
//
// Started and stopped by scripts/stack.sh (service "webhook").

import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.SW_WEBHOOK_PORT ?? '29095' },
    host: { type: 'string', default: '127.0.0.1' },
    'max-items': { type: 'string', default: '10000' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  process.stdout.write('usage: node scripts/webhook-receiver.mjs [--port N] [--host ADDR] [--max-items N]\n');
  process.exit(0);
}

const port = Number(values.port);
const maxItems = Number(values['max-items']);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`webhook-receiver: invalid --port ${values.port}\n`);
  process.exit(2);
}
if (!Number.isInteger(maxItems) || maxItems < 1) {
  process.stderr.write(`webhook-receiver: invalid --max-items ${values['max-items']}\n`);
  process.exit(2);
}

const MAX_BODY_BYTES = 10 * 1024 * 1024;
/** @type {{path: string, received_at: string, body: unknown, raw?: true}[]} */
let items = [];

function send(res, status, payload) {
  const text = JSON.stringify(payload);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const path = url.pathname;

  if (req.method === 'GET' && path === '/healthz') return send(res, 200, { ok: true });
  if (req.method === 'GET' && path === '/received') {
    return send(res, 200, { count: items.length, items });
  }
  if (req.method === 'DELETE' && path === '/received') {
    const cleared = items.length;
    items = [];
    return send(res, 200, { ok: true, cleared });
  }
  if (req.method !== 'POST') {
    res.setHeader('allow', path === '/received' ? 'GET, DELETE' : 'POST');
    return send(res, 405, { error: `method ${req.method} not allowed on ${path}` });
  }

  const chunks = [];
  let size = 0;
  let tooLarge = false;
  req.on('data', (chunk) => {
    if (tooLarge) return;
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      tooLarge = true;
      send(res, 413, { error: `body larger than ${MAX_BODY_BYTES} bytes` });
      req.resume();
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (tooLarge) return;
    const text = Buffer.concat(chunks).toString('utf8');
    const item = { path, received_at: new Date().toISOString(), body: null };
    if (text.length > 0) {
      try {
        item.body = JSON.parse(text);
      } catch {
        item.body = text;
        item.raw = true;
      }
    }
    items.push(item);
    if (items.length > maxItems) items.splice(0, items.length - maxItems);
    send(res, 200, { ok: true });
  });
  req.on('error', () => {
    if (!res.headersSent) send(res, 400, { error: 'request error' });
  });
});

server.keepAliveTimeout = 5000;
server.on('error', (err) => {
  process.stderr.write(`webhook-receiver: ${err.message}\n`);
  process.exit(1);
});
server.listen(port, values.host, () => {
  const addr = server.address();
  process.stderr.write(`webhook-receiver: listening on http://${values.host}:${addr.port} (max ${maxItems} items)\n`);
});

function shutdown(signal) {
  process.stderr.write(`webhook-receiver: ${signal}, shutting down\n`);
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
