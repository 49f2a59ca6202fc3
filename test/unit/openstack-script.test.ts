// scripts/openstack.sh's parts that need no cloud: the fault proxy (scripts/openstack/fault-proxy.mjs) against a
// local echo server, mode by mode, as the live tests use it in nova-compute's AMQP path and nova-conductor's
// database path; and the command line's help, which documents every port and setting.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { run } from './run.ts';

const REPO = new URL('../../', import.meta.url).pathname;
const PROXY = `${REPO}scripts/openstack/fault-proxy.mjs`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A free loopback port (the kernel's choice, released at once). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** A client connection that records what comes back and how it ended. */
function client(port: number) {
  const sock = net.connect(port, '127.0.0.1');
  const c = { sock, got: '', error: '', closed: false };
  sock.on('data', (d) => (c.got += d.toString()));
  sock.on('error', (e: NodeJS.ErrnoException) => (c.error = e.code ?? e.message));
  sock.on('close', () => (c.closed = true));
  return c;
}

async function until(what: string, probe: () => boolean, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('fault-proxy.mjs', () => {
  let echo: net.Server;
  let proxy: ChildProcess;
  let listenPort = 0;
  let controlPort = 0;
  const control = async (mode?: string) => {
    const r = await fetch(`http://127.0.0.1:${controlPort}/mode${mode ? `/${mode}` : ''}`, { method: mode ? 'PUT' : 'GET' });
    return { status: r.status, body: (await r.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    echo = net.createServer((s) => {
      s.on('error', () => {});
      s.pipe(s);
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    const upstream = (echo.address() as net.AddressInfo).port;
    listenPort = await freePort();
    controlPort = await freePort();
    proxy = spawn(process.execPath, [PROXY, '--name', 'test', '--listen', `127.0.0.1:${listenPort}`, '--upstream', `127.0.0.1:${upstream}`, '--control', `127.0.0.1:${controlPort}`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    proxy.stdout!.on('data', (d) => (out += d));
    await until('the proxy to listen', () => out.includes('"msg":"listening"'));
  });
  afterAll(() => {
    proxy?.kill('SIGTERM');
    echo?.close();
  });

  it('passes bytes, drops them both ways in blackhole with the socket left open, and passes again', async () => {
    const c = client(listenPort);
    c.sock.write('a');
    await until('the echo', () => c.got === 'a');
    expect((await control('blackhole')).body).toMatchObject({ mode: 'blackhole', connections: 1 });
    c.sock.write('b');
    await sleep(200);
    expect(c.got).toBe('a');
    expect(c.closed).toBe(false);
    expect((await control('pass')).body.mode).toBe('pass');
    c.sock.write('c');
    await until('the echo after pass', () => c.got === 'ac');
    c.sock.destroy();
  });

  it('drops only the client-to-upstream bytes in blackhole-up', async () => {
    const c = client(listenPort);
    c.sock.write('x');
    await until('the echo', () => c.got === 'x');
    await control('blackhole-up');
    c.sock.write('y');
    await sleep(200);
    expect(c.got).toBe('x');
    const state = (await control()).body;
    expect(state.droppedUp).toBeGreaterThan(0);
    await control('pass');
    c.sock.destroy();
  });

  it('resets every open connection, then passes; refuse closes the listener until pass', async () => {
    const c = client(listenPort);
    c.sock.write('r');
    await until('the echo', () => c.got === 'r');
    const reset = await control('reset');
    expect(reset.body).toMatchObject({ mode: 'pass', reset: 1 });
    await until('the reset to reach the client', () => c.closed);
    expect(c.error).toBe('ECONNRESET');

    await control('refuse');
    const refused = client(listenPort);
    await until('the refusal', () => refused.closed);
    expect(refused.error).toBe('ECONNREFUSED');
    await control('pass');
    const again = client(listenPort);
    again.sock.write('p');
    await until('the echo after refuse and pass', () => again.got === 'p');
    again.sock.destroy();
  });

  it('names the valid modes when given another', async () => {
    const r = await control('sideways');
    expect(r.status).toBe(400);
    expect(String(r.body.error)).toContain('blackhole-up');
  });
});

describe('scripts/openstack.sh --help', () => {
  it('documents the verbs, every port variable and the start-time settings', async () => {
    const r = await run('/bin/bash', [`${REPO}scripts/openstack.sh`, '--help'], { env: { PATH: process.env.PATH ?? '', STACKWATCH_HOME: '/nonexistent' } });
    expect(r.status).toBe(0);
    const script = readFileSync(`${REPO}scripts/openstack.sh`, 'utf8').match(/SW_OS_[A-Z_]+/g) ?? [];
    expect(script.length).toBeGreaterThan(5);
    for (const name of new Set(script)) expect(r.stdout, name).toContain(name);
    for (const verb of ['install', 'start', 'restart', 'stop', 'status', 'env', 'fault amqp|db', 'purge']) expect(r.stdout).toContain(`  ${verb}`);
  });
});
