// client-ip-masked: behind a Kubernetes service or Docker NAT, every API request reaches the service from the
// container network's gateway and, without X-Forwarded-For, the real client address is lost (audit logs and
// rate limits break). Read from API access lines (oslo wsgi: `10.0.0.1 "GET /v2/… HTTP/1.1" status: 200 …`,
// with a forwarded chain `client,proxy "GET …`; Apache combined: `172.17.0.1 - - [ts] "GET /v3 …`): per service
// and fixed window, when nearly all requests come from one address of a container network and almost none
// carries a forwarded address, the alert fires; a window where that is no longer so resolves it.
import { z } from 'zod';
import type { Alert, LogDocument } from '../core/events.ts';
import { alertTransition, ruleParams, type Detector, type Rule } from './detect.ts';

const Params = z.strictObject({
  window_s: z.number().positive().default(600),
  /** Fewer requests in a window say nothing. */
  min_requests: z.number().int().positive().default(50),
  /** Share of a window's requests from the one address. */
  share: z.number().gt(0).max(1).default(0.95),
  /** Container networks whose addresses are gateways, not clients (docker0, podman, Kubernetes pod/service CIDRs). */
  gateway_cidrs: z.array(z.string().regex(/^\d{1,3}(?:\.\d{1,3}){3}\/\d{1,2}$/, { error: 'expected an IPv4 CIDR like 172.17.0.0/16' })).default([
    '172.16.0.0/12',
    '10.88.0.0/16',
    '10.244.0.0/16',
    '10.42.0.0/16',
    '10.96.0.0/12',
  ]),
});

const ACCESS = /^(?<chain>\d{1,3}(?:\.\d{1,3}){3}(?:, ?\d{1,3}(?:\.\d{1,3}){3})*) (?:\S+ \S+ \[[^\]]+\] )?"[A-Z]+ \S+ HTTP\/\d/;

function ipv4(addr: string): number {
  return addr.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
}

function cidrMatcher(cidrs: string[]): (addr: string) => boolean {
  const nets = cidrs.map((c) => {
    const [base, bits] = c.split('/');
    const size = 2 ** (32 - Number(bits));
    const start = ipv4(base) - (ipv4(base) % size);
    return { start, end: start + size };
  });
  return (addr) => {
    const n = ipv4(addr);
    return nets.some((net) => n >= net.start && n < net.end);
  };
}

interface Window {
  start: number;
  total: number;
  forwarded: number;
  byPeer: Map<string, number>;
  evidence: string[];
}

interface Service {
  window?: Window;
  firing?: { startedAt: string; peer: string; evidence: string[] };
}

export function createDetector(rule: Rule): Detector {
  const p = ruleParams(rule, Params);
  const isGateway = cidrMatcher(p.gateway_cidrs);
  const services = new Map<string, Service>();
  const windowMs = p.window_s * 1000;

  function close(w: Window, s: Service, doc: LogDocument, at: string): Alert[] {
    if (w.total < p.min_requests) return [];
    let peer = '';
    let most = 0;
    for (const [addr, n] of w.byPeer) {
      if (n > most) {
        peer = addr;
        most = n;
      }
    }
    const masked = most / w.total >= p.share && isGateway(peer) && w.forwarded / w.total < 1 - p.share;
    const group = { 'host.name': doc.host.name, 'service.name': doc.service.name };
    const common = { group, at, host: doc.host.name, service: doc.service.name };
    if (masked && !s.firing) {
      s.firing = { startedAt: new Date(w.start).toISOString(), peer, evidence: w.evidence };
      const pct = Math.round((100 * most) / w.total);
      return [
        alertTransition(rule, {
          ...common,
          status: 'firing',
          startedAt: s.firing.startedAt,
          message: `${doc.service.name} on ${doc.host.name}: ${pct}% of ${w.total} requests in ${p.window_s / 60} min came from ${peer}, a container network address, with no X-Forwarded-For: client addresses are masked`,
          evidence: w.evidence,
        }),
      ];
    }
    if (!masked && s.firing) {
      const f = s.firing;
      s.firing = undefined;
      return [alertTransition(rule, { ...common, status: 'resolved', startedAt: f.startedAt, message: `${doc.service.name} on ${doc.host.name}: requests no longer all come from ${f.peer}`, evidence: f.evidence })];
    }
    return [];
  }

  return {
    literals: [' HTTP/1.', ' HTTP/2'],
    onLog(doc) {
      const m = ACCESS.exec(doc.message);
      if (!m) return [];
      const now = Date.parse(doc['@timestamp']);
      const key = `${doc.host.name}\0${doc.service.name}`;
      let s = services.get(key);
      if (!s) services.set(key, (s = {}));
      const out: Alert[] = [];
      if (s.window && now >= s.window.start + windowMs) {
        out.push(...close(s.window, s, doc, new Date(s.window.start + windowMs).toISOString()));
        s.window = undefined;
      }
      const w = (s.window ??= { start: now - (now % windowMs), total: 0, forwarded: 0, byPeer: new Map(), evidence: [] as string[] });
      const chain = m.groups!.chain.split(',');
      const peer = chain[chain.length - 1].trim();
      w.total++;
      if (chain.length > 1) w.forwarded++;
      w.byPeer.set(peer, (w.byPeer.get(peer) ?? 0) + 1);
      if (w.evidence.length < 20) w.evidence.push(doc.event.id);
      return out;
    },
  };
}
