// The process's own HTTP endpoint: /metrics (Prometheus text format, every component's counters and the stage
// figures), /healthz (the process is alive: 200), /readyz (every component says it is working: 200, else 503
// with the reasons, one per line).
import { createServer, type Server } from 'node:http';
import type { Config } from './config.ts';
import { logger } from './log.ts';
import { registry } from './metrics.ts';

/** A component's readiness: undefined when ready, else why not (one line). */
export type ReadinessProbe = () => string | undefined;
const probes = new Map<string, ReadinessProbe>();

export function registerReadiness(component: string, probe: ReadinessProbe): void {
  probes.set(component, probe);
}

export function notReady(): string[] {
  const out: string[] = [];
  for (const [component, probe] of probes) {
    const why = probe();
    if (why !== undefined) out.push(`${component}: ${why}`);
  }
  return out;
}

export interface StatusServer {
  port: number;
  close(): Promise<void>;
}

export async function startStatusServer(cfg: Config['status_server']): Promise<StatusServer | undefined> {
  if (!cfg.enabled) return undefined;
  const log = logger('status-server');
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'GET only\n');
    if (path === '/healthz') return reply(200, 'ok\n');
    if (path === '/readyz') {
      const why = notReady();
      return why.length === 0 ? reply(200, 'ready\n') : reply(503, why.join('\n') + '\n');
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => reply(200, text, registry.contentType),
        (err) => reply(500, `cannot collect metrics: ${(err as Error).message}\n`),
      );
      return;
    }
    reply(404, 'not found: /metrics, /healthz, /readyz\n');
  });
  const sep = cfg.listen.lastIndexOf(':');
  const host = cfg.listen.slice(0, sep).replace(/^\[|\]$/g, '');
  const port = Number(cfg.listen.slice(sep + 1));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new Error(`status_server.listen: cannot listen on ${cfg.listen}: ${err.code === 'EADDRINUSE' ? 'the port is in use' : err.message} (set status_server.listen, or enabled: false)`),
      ),
    );
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as { port: number }).port;
  log.info('status server listening', { url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}/metrics` });
  return {
    port: bound,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
