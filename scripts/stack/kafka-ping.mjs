#!/usr/bin/env node
// Readiness probe for the local Kafka broker, used by scripts/stack.sh.
//   node scripts/stack/kafka-ping.mjs HOST PORT [TIMEOUT_MS]
// Sends one ApiVersions v0 request (the one every Kafka version answers) and exits 0
// if the broker replies with error_code 0 and a non-empty API list, 1 otherwise.
// A KRaft broker only serves its PLAINTEXT listener once it has caught up with the
// metadata log and been unfenced, so an answer here means clients can use it.
// With SW_PING_CA=FILE it connects over TLS and verifies the broker's certificate with that CA
// (a SASL_SSL listener answers ApiVersions before authentication).

import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

const [host = '127.0.0.1', portArg = '29092', timeoutArg = '2000'] = process.argv.slice(2);
const port = Number(portArg);
const timeoutMs = Number(timeoutArg);

const clientId = Buffer.from('stackwatch-ping');
const header = Buffer.alloc(2 + 2 + 4 + 2);
header.writeInt16BE(18, 0); // api_key = ApiVersions
header.writeInt16BE(0, 2); // api_version = 0
header.writeInt32BE(0x5743, 4); // correlation_id
header.writeInt16BE(clientId.length, 8);
const payload = Buffer.concat([header, clientId]);
const size = Buffer.alloc(4);
size.writeInt32BE(payload.length, 0);

let received = Buffer.alloc(0);
let done = false;
const finish = (ok, why) => {
  if (done) return;
  done = true;
  socket.destroy();
  if (!ok && process.env.SW_DEBUG) process.stderr.write(`kafka-ping: ${why}\n`);
  process.exit(ok ? 0 : 1);
};

const send = () => socket.write(Buffer.concat([size, payload]));
const socket = process.env.SW_PING_CA ? tls.connect({ host, port, ca: readFileSync(process.env.SW_PING_CA) }, send) : net.connect({ host, port }, send);
socket.setTimeout(timeoutMs, () => finish(false, 'timeout'));
socket.on('error', (err) => finish(false, err.message));
socket.on('close', () => finish(false, 'connection closed before a full response'));
socket.on('data', (chunk) => {
  received = Buffer.concat([received, chunk]);
  if (received.length < 4) return;
  const len = received.readInt32BE(0);
  if (received.length < 4 + len) return;
  const body = received.subarray(4, 4 + len);
  if (body.length < 10) return finish(false, 'short response');
  const correlationId = body.readInt32BE(0);
  const errorCode = body.readInt16BE(4);
  const apiCount = body.readInt32BE(6);
  if (correlationId !== 0x5743) return finish(false, `correlation id ${correlationId}`);
  if (errorCode !== 0) return finish(false, `error_code ${errorCode}`);
  if (apiCount <= 0) return finish(false, 'empty API list');
  finish(true);
});
