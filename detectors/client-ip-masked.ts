// client-ip-masked: behind a Kubernetes service or Docker NAT, every API request reaches the service from the
// container network's gateway and, without X-Forwarded-For, the real client address is lost (audit logs and
// rate limits break). Read from API access lines (oslo wsgi: `10.0.0.1 "GET /v2/… HTTP/1.1" status: 200 …`; nova's
// request log under uwsgi or mod_wsgi, without the protocol: `10.0.0.1 "GET /v2.1/servers" status: 200 len: …`;
// with a forwarded chain `client,proxy "GET …`; Apache combined: `172.17.0.1 - - [ts] "GET /v3 …`; the formats
// Kolla and openstack-helm give Apache, which write X-Forwarded-For where the peer would be: `- - - [ts] "GET …` when
// no proxy sent one): per service and fixed window, when nearly all requests come from one address of a container
// network, or carry no address at all ("-": the log writes X-Forwarded-For and none came), and almost none carries
// a forwarded address, the alert fires; a window where that is no longer so resolves it. Windows follow the lines'
// own time (Apache's bracketed time is parsed, core/log-formats.ts).
import { z } from 'zod';
import type { Alert, LogDocument, LogEvent } from '../core/events.ts';
import { alertTransition, defineDetector } from './detector.ts';
import { addEvidence, FiringGroups, restoreState } from './kit.ts';
import { KeyedState, keyedData, Time, time } from './state.ts';

/** The version of the state's shape (snapshot, restore). */
const STATE_VERSION = 1;

const Params = z.strictObject({
  window_s: z.number().positive().default(600),
  /** Fewer requests in a window say nothing. */
  min_requests: z.number().int().positive().default(50),
  /** Share of a window's requests from the one address. */
  share: z.number().gt(0).max(1).default(0.95),
  /** Container networks whose addresses are gateways, not clients (docker0, podman, Kubernetes pod/service CIDRs). */
  gateway_cidrs: z
    .array(z.string().regex(/^\d{1,3}(?:\.\d{1,3}){3}\/\d{1,2}$/, { error: 'expected an IPv4 CIDR like 172.17.0.0/16' }))
    .default(['172.16.0.0/12', '10.88.0.0/16', '10.244.0.0/16', '10.42.0.0/16', '10.96.0.0/12']),
});

// An access line: the address chain, then either the quoted request or, in Apache's combined format, ident, user and
// [time] before it. The address chain is checked address by address (IPV4): written into these regexes, its
// counted repetitions made an automaton too large for recheck to prove them linear. The request's head and its
// target are two regexes for the same reason: as one, recheck's proof took 22 s here and over 300 s on a loaded
// machine; as two, under 1 s.
const ACCESS_HEAD = /^(?<chain>-|[0-9.]+(?:, ?[0-9.]+)*) (?:\S+ \S+ \[[^\]]+\] )?"[A-Z]+ /;
const ACCESS_HEAD_SHORT = /^(?<chain>-|[0-9.]+(?:, ?[0-9.]+)*) "[A-Z]+ /;
const ACCESS_HEADS = [ACCESS_HEAD, ACCESS_HEAD_SHORT];
const REQUEST_TARGET = /^\S+(?: HTTP\/\d|")/;
/** The client a log that writes X-Forwarded-For in its place gives when no proxy sent the header. */
const NO_ADDRESS = '-';
const IPV4 = /^\d{1,3}(?:\.\d{1,3}){3}$/;

/**
 * The address chain of an access line, or undefined if the line is not one. The same lines as the one regex
 * `^(chain) (?:\S+ \S+ \[[^\]]+\] )?"[A-Z]+ \S+(?: HTTP\/\d|")`: its optional part matches in at most one way
 * (each of its fields ends at the first space or `]`), so the request starts at one of two places, and both are tried.
 */
export function accessChain(message: string): string | undefined {
  for (const head of ACCESS_HEADS) {
    const m = head.exec(message);
    if (m && REQUEST_TARGET.test(message.slice(m[0].length))) return m.groups!.chain;
  }
  return undefined;
}

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

/** A service's window and alert, as a checkpoint holds them. */
const ServiceData = z.strictObject({
  window: z
    .strictObject({
      start: Time,
      total: z.number().int().nonnegative(),
      forwarded: z.number().int().nonnegative(),
      /** Requests by peer address, bounded: past the cap the peer heard from least recently goes (an address that
       * carries nearly all requests is heard from all the time, so it is never the one). */
      byPeer: keyedData(z.number().int().positive()),
      evidence: z.array(z.string()),
    })
    .optional(),
  firing: z.strictObject({ startedAt: z.string(), peer: z.string(), evidence: z.array(z.string()), host: z.string(), service: z.string() }).optional(),
});
type ServiceData = z.output<typeof ServiceData>;

/** The window of a service, its peers counted in a KeyedState. */
type Window = Omit<NonNullable<ServiceData['window']>, 'byPeer'> & { byPeer: KeyedState<number> };

interface Service {
  window?: Window;
  firing?: ServiceData['firing'];
}

const State = z.strictObject({ services: keyedData(ServiceData) });

export const detector = defineDetector({
  name: 'client-ip-masked',
  params: Params,
  create(p, { rule }) {
    const isGateway = cidrMatcher(p.gateway_cidrs);
    const services = new FiringGroups<Service>(rule, (s) => s.firing !== undefined);
    const limits = services.limits;
    const windowMs = p.window_s * 1000;

    function close(w: Window, s: Service, doc: LogDocument, at: string): Alert[] {
      if (w.total < p.min_requests) return [];
      let peer = '';
      let most = 0;
      for (const [addr, n] of w.byPeer.entries()) {
        if (n > most) {
          peer = addr;
          most = n;
        }
      }
      const masked = most / w.total >= p.share && (peer === NO_ADDRESS || isGateway(peer)) && w.forwarded / w.total < 1 - p.share;
      const group = { 'host.name': doc.host.name, 'service.name': doc.service.name };
      const common = { group, at, host: doc.host.name, service: doc.service.name };
      if (masked && !s.firing) {
        s.firing = { startedAt: new Date(w.start).toISOString(), peer, evidence: w.evidence, host: doc.host.name, service: doc.service.name };
        const pct = Math.round((100 * most) / w.total);
        return [
          alertTransition(rule, {
            ...common,
            status: 'firing',
            startedAt: s.firing.startedAt,
            message:
              peer === NO_ADDRESS
                ? `${doc.service.name} on ${doc.host.name}: ${pct}% of ${w.total} requests in ${p.window_s / 60} min carried no client address (the log writes X-Forwarded-For and no proxy sent it): client addresses are lost`
                : `${doc.service.name} on ${doc.host.name}: ${pct}% of ${w.total} requests in ${p.window_s / 60} min came from ${peer}, a container network address, with no X-Forwarded-For: client addresses are masked`,
            evidence: w.evidence,
          }),
        ];
      }
      if (!masked && s.firing) {
        const f = s.firing;
        s.firing = undefined;
        return [
          alertTransition(rule, {
            ...common,
            status: 'resolved',
            startedAt: f.startedAt,
            message: `${doc.service.name} on ${doc.host.name}: requests no longer all come from ${f.peer}`,
            evidence: f.evidence,
          }),
        ];
      }
      return [];
    }

    /** A service dropped to stay within state.max_entries while firing: resolved with the reason. */
    function evicted(key: string, s: Service, at: string): Alert {
      const f = s.firing!;
      const [host, service] = key.split('\0');
      return alertTransition(rule, {
        status: 'resolved',
        group: { 'host.name': host, 'service.name': service },
        at,
        startedAt: f.startedAt,
        host: f.host,
        service: f.service,
        message: `${f.service} on ${f.host}: no longer tracked: the rule holds at most ${limits.max_entries} services (state.max_entries), and this was the oldest`,
        evidence: f.evidence,
      });
    }

    return {
      accepts: { kinds: ['log'], literals: [' HTTP/1.', ' HTTP/2', '" status: '] },
      state: () => {
        let n = 0;
        for (const [, s] of services.entries()) n += 1 + (s.window?.byPeer.size ?? 0);
        return n;
      },
      snapshot: () => ({
        v: STATE_VERSION,
        data: {
          services: services.snapshot((s) => ({
            window: s.window && {
              start: time(s.window.start),
              total: s.window.total,
              forwarded: s.window.forwarded,
              byPeer: s.window.byPeer.snapshot((n) => n),
              evidence: [...s.window.evidence],
            },
            firing: s.firing && { startedAt: s.firing.startedAt, peer: s.firing.peer, evidence: [...s.firing.evidence], host: s.firing.host, service: s.firing.service },
          })),
        } satisfies z.input<typeof State>,
      }),
      restore: (state) =>
        restoreState(rule, state, STATE_VERSION, State, (data) => {
          // Services past the rule's cap (a snapshot of a larger one) are not resolved: restore has no transitions
          // to give. They are counted as evictions, and so are peers past it.
          const values = data.services.values.map((s): Service => ({
            firing: s.firing,
            window: s.window && { ...s.window, byPeer: new KeyedState<number>(rule.id, limits) },
          }));
          const dropped = new Set(services.load({ ...data.services, values }).map((e) => e.key));
          data.services.values.forEach((s, i) => s.window && !dropped.has(data.services.keys[i]) && values[i].window!.byPeer.load(s.window.byPeer));
          return undefined;
        }),
      on({ doc }: LogEvent) {
        const chain = accessChain(doc.message)
          ?.split(',')
          .map((a) => a.trim());
        if (!chain || !(chain[0] === NO_ADDRESS || chain.every((a) => IPV4.test(a)))) return [];
        const now = Date.parse(doc['@timestamp']);
        const key = `${doc.host.name}\0${doc.service.name}`;
        const s = services.get(key) ?? {};
        const out: Alert[] = [];
        if (s.window && now >= s.window.start + windowMs) {
          out.push(...close(s.window, s, doc, new Date(s.window.start + windowMs).toISOString()));
          s.window = undefined;
        }
        const w = (s.window ??= { start: now - (now % windowMs), total: 0, forwarded: 0, byPeer: new KeyedState(rule.id, limits), evidence: [] as string[] });
        const peer = chain[chain.length - 1];
        w.total++;
        if (chain.length > 1) w.forwarded++;
        w.byPeer.set(peer, (w.byPeer.get(peer) ?? 0) + 1, now);
        addEvidence(w.evidence, doc.event.id, 20);
        out.push(...services.keep(key, s, now, (k, v) => evicted(k, v, doc['@timestamp'])));
        return out;
      },
    };
  },
});
