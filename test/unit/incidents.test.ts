// Incidents: the correlator's grouping, paging and resolution (incidents/correlator.ts), on the bundled sosreport's
// real alerts and on made-up sequences that pin each rule of its behaviour.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { correlate } from '../../cli/detect.ts';
import type { Alert, Incident } from '../../core/events.ts';
import { IncidentCorrelator, type IncidentChange } from '../../incidents/correlator.ts';
import { IncidentRule, loadIncidentRules } from '../../incidents/rules.ts';
import { alert, at, T0 } from './made-up-alerts.ts';
import { stackwatch } from './run.ts';

const SAMPLES = new URL('../../samples/hotsos-2022/', import.meta.url).pathname;
const SHIPPED = loadIncidentRules();

/** Feeds alerts in order, each at its own time as `now` (as `detect` does), and ticks to `end`. */
function run(alerts: Alert[], opts: { minDurationS?: number; rules?: IncidentRule[]; end?: number } = {}): IncidentChange[] {
  const c = new IncidentCorrelator(opts.rules ?? SHIPPED, { minDurationS: opts.minDurationS ?? 0 });
  const out: IncidentChange[] = [];
  for (const a of alerts) out.push(...c.tick(Date.parse(a['@timestamp'])), ...c.onAlerts([a], Date.parse(a['@timestamp'])));
  if (opts.end !== undefined) out.push(...c.tick(T0 + opts.end * 1000));
  return out;
}

const pages = (changes: IncidentChange[]) => changes.flatMap((c) => (c.page ? [c.page] : []));
const firingPages = (changes: IncidentChange[]) => pages(changes).filter((p) => p.alert.status === 'firing');

describe('incidents on the bundled sosreport (2022, compute4)', () => {
  let alerts: Alert[] = [];
  beforeAll(async () => {
    const r = await stackwatch(['detect', '--host', 'compute4', `${SAMPLES}nova-compute.log.1.gz`, ...['dhcp', 'l3', 'metadata'].map((n) => `${SAMPLES}neutron-${n}-agent.log.1`)]);
    expect(r.status, r.stderr).toBe(0);
    alerts = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Alert);
  }, 120_000);

  const SIGNATURES = ['amqp-connection-lost', 'compute-host-drift'];

  it('pages once per cause: the outage of 4 February with its reply storm, the missing host, the outage of 9 February', () => {
    const firing = alerts.filter((a) => a.alert.status === 'firing');
    // 18: the 9 February outages end when each agent connected (22:41), and the reply timeouts that followed for
    // minutes are each agent's reply-path alert, in the same incident.
    expect(firing.filter((a) => SIGNATURES.includes(a.rule.id))).toHaveLength(18);
    const result = correlate(structuredClone(alerts), new IncidentCorrelator(SHIPPED, { minDurationS: 60 }));
    const pagesSent = result.printed.filter((c) => c.page?.alert.status === 'firing').map((c) => c.incident.incident);
    // The first outage is paged again once, under its own id, when the reply storm raises it to severity page.
    expect(pagesSent.map((i) => [i.id, i.severity]).filter(([id]) => id === pagesSent[0].id)).toEqual([
      [pagesSent[0].id, 'critical'],
      [pagesSent[0].id, 'page'],
    ]);
    const paged = pagesSent.filter((i, n) => pagesSent.findIndex((x) => x.id === i.id) === n);
    expect(result.paged).toBe(3);
    expect(paged.map((i) => [i.rule, i.started_at])).toEqual([
      ['amqp-broker-unreachable', '2022-02-04T09:37:50.159Z'],
      ['compute-host-drift', '2022-02-04T10:23:10.216Z'],
      ['amqp-broker-unreachable', '2022-02-09T22:38:29.946Z'],
    ]);
    // Every alert that fired is listed in exactly one incident; the new error templates of the outages are in them.
    expect(result.final.map((i) => i.incident.id).sort()).toEqual(paged.map((i) => i.id).sort());
    const listed = result.final.flatMap((i) => i.alerts.map((a) => `${a.id} ${a.started_at}`));
    expect(new Set(listed).size).toBe(listed.length);
    expect(listed.sort()).toEqual(firing.map((a) => `${a.alert.id} ${a.alert.started_at}`).sort());
    const first = result.final.find((i) => i.incident.started_at.startsWith('2022-02-04T09'))!;
    expect(first.incident.services.sort()).toEqual(['neutron-dhcp-agent', 'neutron-l3-agent', 'neutron-metadata-agent', 'nova-compute']);
    expect(first.timeline.some((e) => /reply-path-dead\) of neutron-l3-agent on compute4 joined/.test(e.what))).toBe(true);
  });

  it('gives the same incidents whatever the order the files were read in, with the same ids', () => {
    const ids = (list: Alert[]) =>
      correlate(structuredClone(list), new IncidentCorrelator(SHIPPED, { minDurationS: 60 }))
        .printed.map((c) => `${c.incident.incident.id} ${c.incident.incident.status}`)
        .sort();
    expect(ids([...alerts].reverse())).toEqual(ids(alerts));
  });

  it('gives the same incidents through a running processor, the files replayed one after another (a backfill)', () => {
    // The same causes: each paged incident's rule, start and the services of its signatures' alerts (the ids follow
    // the first alert that arrived, which the order decides; so does the incident a new error template joins when
    // two of the host are open).
    const summary = (final: Incident[]) =>
      final
        .map(
          ({ incident: i, alerts: held }) => `${i.rule} ${i.started_at} ${i.paged} ${[...new Set(held.filter((a) => SIGNATURES.includes(a.rule)).map((a) => a.service))].sort().join(',')}`,
        )
        .sort();
    const expected = summary(correlate(structuredClone(alerts), new IncidentCorrelator(SHIPPED, { minDurationS: 60 })).final);
    expect(expected).toHaveLength(3);
    for (const order of [
      ['neutron-dhcp-agent', 'neutron-l3-agent', 'neutron-metadata-agent', 'nova-compute'],
      ['nova-compute', 'neutron-l3-agent', 'neutron-dhcp-agent', 'neutron-metadata-agent'],
    ]) {
      // As the demo: each file's alerts in its own order, the files one after another, the wall clock years on.
      const c = new IncidentCorrelator(SHIPPED, { minDurationS: 60, settleS: 10 });
      let now = Date.parse('2026-12-02T12:00:00Z');
      const changes: IncidentChange[] = [];
      for (const service of order) {
        for (const a of structuredClone(alerts).filter((x) => x.service.name === service)) {
          now += 20;
          changes.push(...c.onAlerts([a], now));
        }
      }
      for (let t = now; t <= now + 15_000; t += 1000) changes.push(...c.tick(t));
      const last = new Map<string, Incident>();
      for (const x of changes) last.set(x.incident.incident.id, x.incident);
      expect(summary([...last.values()].filter((x) => !x.incident.merged_into)), order.join(', ')).toEqual(expected);
      expect(new Set(changes.filter((x) => x.page?.alert.status === 'firing').map((x) => x.incident.incident.id)).size).toBe(3);
    }
  });

  it('the CLI prints incident transitions with the fields a post-mortem needs', async () => {
    const cli = await stackwatch(['detect', '--incidents', '--host', 'compute4', `${SAMPLES}nova-compute.log.1.gz`, `${SAMPLES}neutron-l3-agent.log.1`]);
    expect(cli.status, cli.stderr).toBe(0);
    const lines = cli.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Incident);
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) {
      expect(Object.keys(l.incident)).toEqual(expect.arrayContaining(['id', 'status', 'cause', 'services', 'hosts', 'alert_ids', 'paged']));
    }
    expect(cli.stderr).toMatch(/\d+ incident\(s\): \d+ paged, \d+ shorter than 60 s \(not paged\)/);
  });
});

describe('min_duration_s: what heals itself does not page', () => {
  it('keeps a loss that is back within seconds as a short incident, never paged', () => {
    const changes = run([alert({ s: 0 }), alert({ s: 3, status: 'resolved', since: 0 })], { minDurationS: 60, end: 1000 });
    expect(pages(changes)).toEqual([]);
    const last = changes.at(-1)!.incident.incident;
    expect(last).toMatchObject({ status: 'resolved', paged: false, duration_s: 3 });
  });

  it('pages an outage once it has lasted min_duration_s, dated then, and its resolution', () => {
    const changes = run([alert({ s: 0 }), alert({ s: 30, service: 'other' }), alert({ s: 200, status: 'resolved', since: 0 })], { minDurationS: 60, end: 100 });
    const p = firingPages(changes);
    expect(p).toHaveLength(1);
    expect(p[0]['@timestamp']).toBe(at(60));
    expect(p[0].alert.started_at).toBe(at(0));
    // The page stands for the incident: its id, the incident's severity and both services.
    expect(p[0].alert.id).toBe(p[0].incident!.id);
    expect(p[0].incident!.services).toEqual(['nova-compute', 'other']);
  });

  it('pages an incident that lasted long enough even when it ended between two looks', () => {
    const c = new IncidentCorrelator([], { minDurationS: 60 });
    c.onAlerts([alert({ s: 0 })], T0);
    const changes = c.onAlerts([alert({ s: 90, status: 'resolved', since: 0 })], T0 + 95_000);
    expect(pages(changes).map((p) => p.alert.status)).toEqual(['firing', 'resolved']);
  });
});

describe('grouping by cause', () => {
  it('joins the services of one host that lose the broker together; another host is another incident', () => {
    const changes = run([alert({ s: 0 }), alert({ s: 5, service: 'neutron-l3-agent' }), alert({ s: 6, host: 'compute2' })]);
    expect(firingPages(changes).map((p) => p.host.name)).toEqual(['compute1', 'compute2']);
  });

  it('joins another host that names the same broker', () => {
    const broker = { broker: '10.0.0.5:5672' };
    const changes = run([alert({ s: 0, labels: broker }), alert({ s: 6, host: 'compute2', labels: broker }), alert({ s: 7, host: 'compute3', labels: { broker: '10.0.0.6:5672' } })]);
    const p = firingPages(changes);
    expect(p.map((x) => x.host.name)).toEqual(['compute1', 'compute3']);
    expect(changes.filter((c) => c.incident.incident.hosts.includes('compute1')).at(-1)!.incident.incident.hosts).toEqual(['compute1', 'compute2']);
  });

  it('files the reply storm after an outage into the outage, and a storm without one into its own incident', () => {
    const storm = { kind: 'reply-path-dead' };
    const changes = run([
      alert({ s: 0 }),
      alert({ s: 100, status: 'resolved', since: 0 }),
      alert({ s: 150, group: storm, service: 'neutron-dhcp-agent' }),
      alert({ s: 5000, status: 'resolved', since: 150, group: storm, service: 'neutron-dhcp-agent' }),
      alert({ s: 9000, group: storm, service: 'neutron-dhcp-agent' }),
    ]);
    const p = firingPages(changes);
    expect(p.map((x) => [x.incident!.rule, x.alert.started_at])).toEqual([
      ['amqp-broker-unreachable', at(0)],
      ['amqp-reply-storm', at(9000)],
    ]);
  });

  it('holds an incident open for hold_s: a loss within it is the same cause, a loss after it a new page', () => {
    const changes = run([alert({ s: 0 }), alert({ s: 10, status: 'resolved', since: 0 }), alert({ s: 300 }), alert({ s: 310, status: 'resolved', since: 300 }), alert({ s: 2000 })]);
    const p = firingPages(changes);
    expect(p.map((x) => x.alert.started_at)).toEqual([at(0), at(2000)]);
    // The resolution is dated at the end of the last alert, sent when the hold ran out.
    const resolved = pages(changes).find((x) => x.alert.status === 'resolved')!;
    expect(resolved['@timestamp']).toBe(at(310));
  });

  it('does not let joined alerts hold an outage open for a new outage days later', () => {
    const storm = { kind: 'reply-path-dead' };
    const day = 86_400;
    const changes = run([alert({ s: 0 }), alert({ s: 50, group: storm, service: 'a' }), alert({ s: 100, status: 'resolved', since: 0 }), alert({ s: 5 * day, service: 'b' })]);
    expect(firingPages(changes)).toHaveLength(2);
  });

  it('joins the API side of a renamed compute host to the drift seen on the machine', () => {
    const drift = 'compute-host-drift';
    const changes = run([
      alert({ s: 0, rule: drift, host: 'machine1', group: { kind: 'ephemeral-name', compute_host: '3f2a9c1b7d4e' } }),
      alert({ s: 20, rule: drift, host: 'os-compute-1', service: 'nova-compute', group: { kind: 'renamed', compute_host: '3f2a9c1b7d4e' } }),
      alert({ s: 40, rule: 'openstack-service-down', host: 'os-compute-1', group: { binary: 'nova-compute' } }),
    ]);
    expect(firingPages(changes)).toHaveLength(1);
    expect(changes.at(-1)!.incident.alerts.map((a) => a.rule)).toEqual([drift, drift, 'openstack-service-down']);
  });

  it('makes an alert no rule takes an incident of its own, labelled like the alert', () => {
    const a = alert({ s: 0, rule: 'console-probe-failing', host: 'cloud', group: { probe: 'console' } });
    const [p] = firingPages(run([a]));
    expect(p.rule.id).toBe('console-probe-failing');
    expect(p.alert.group).toEqual(a.alert.group);
    expect(p.incident!.rule).toBeUndefined();
  });
});

describe('settling: data from the past arrives in any order', () => {
  it('waits settle_s without a change before deciding an old incident, so a later stream of the same cause joins it', () => {
    const c = new IncidentCorrelator(SHIPPED, { minDurationS: 60, settleS: 10 });
    const now = T0 + 365 * 86_400_000; // a year later: a backfill
    const first = c.onAlerts([alert({ s: 0, service: 'neutron-dhcp-agent' }), alert({ s: 100, status: 'resolved', since: 0, service: 'neutron-dhcp-agent' })], now);
    expect(pages(first)).toEqual([]);
    const later = c.onAlerts([alert({ s: 5, service: 'nova-compute' }), alert({ s: 200, status: 'resolved', since: 5 })], now + 4000);
    expect(pages(later)).toEqual([]);
    const settled = c.tick(now + 15_000);
    expect(pages(settled).map((p) => p.alert.status)).toEqual(['firing', 'resolved']);
    expect(settled.at(-1)!.incident.incident.services).toEqual(['neutron-dhcp-agent', 'nova-compute']);
  });
});

describe('filing: an incident stays in the index of the day it opened', () => {
  it('keeps filedAt when an earlier alert of the day before moves its start (a backfill), and through a snapshot', () => {
    const c = new IncidentCorrelator(SHIPPED, { minDurationS: 0, settleS: 10 });
    const now = T0 + 365 * 86_400_000;
    const day = 86_400;
    const opened = c.onAlerts([alert({ s: day + 60, service: 'neutron-dhcp-agent' })], now);
    const filed = opened[0].filedAt;
    expect(filed).toBe(at(day + 60));
    // nova-compute's loss of the evening before (the same broker, within the hold) arrives later: the incident now
    // starts the day before, and its document stays where it was filed.
    const moved = c.onAlerts([alert({ s: day - 30, service: 'nova-compute' })], now + 1000);
    const same = moved.filter((x) => x.incident.incident.id === opened[0].incident.incident.id);
    expect(same.length).toBeGreaterThan(0);
    expect(same.map((x) => [x.incident.incident.started_at, x.filedAt])).toEqual(same.map(() => [at(day - 30), filed]));
    const again = new IncidentCorrelator(SHIPPED, { minDurationS: 0, settleS: 10 });
    expect(again.restore(JSON.parse(JSON.stringify(c.snapshot())))).toBeUndefined();
    const later = again.onAlerts([alert({ s: day + 90, status: 'resolved', since: day + 60, service: 'neutron-dhcp-agent' })], now + 2000);
    expect(later.filter((x) => x.incident.incident.id === opened[0].incident.incident.id).map((x) => x.filedAt)).toEqual([filed]);
  });
});

describe('properties', () => {
  const arb = fc.array(
    fc.record({
      host: fc.constantFrom('h1', 'h2', 'h3'),
      service: fc.constantFrom('nova-compute', 'neutron-l3-agent', 'cinder-volume'),
      rule: fc.constantFrom('amqp-connection-lost', 'compute-host-drift', 'ceph-health', 'other'),
      kind: fc.constantFrom(undefined, 'reply-path-dead', 'missing'),
      start: fc.integer({ min: 0, max: 20_000 }),
      length: fc.integer({ min: 0, max: 3_000 }),
    }),
    { maxLength: 40 },
  );

  it('files every occurrence of an alert into exactly one incident, and resolves every incident that paged', () => {
    fc.assert(
      fc.property(arb, fc.integer({ min: 0, max: 120 }), (specs, minDurationS) => {
        // One occurrence per alert identity at a time: the detectors never fire an alert that is firing.
        const seen = new Map<string, number>();
        const transitions: Alert[] = [];
        for (const x of specs) {
          const group = { ...(x.kind ? { kind: x.kind } : {}), compute_host: x.host };
          const a = alert({ s: x.start, rule: x.rule, host: x.host, service: x.service, group });
          if ((seen.get(a.alert.id) ?? -1) >= x.start) continue;
          seen.set(a.alert.id, x.start + x.length);
          transitions.push(a, alert({ s: x.start + x.length, status: 'resolved', since: x.start, rule: x.rule, host: x.host, service: x.service, group }));
        }
        const { printed } = correlate(transitions, new IncidentCorrelator(SHIPPED, { minDurationS }));
        const final = printed.filter((c) => c.incident.incident.status === 'resolved').map((c) => c.incident);
        const listed = final.flatMap((i) => i.alerts.map((a) => `${a.id} ${a.started_at}`));
        expect(new Set(listed).size).toBe(listed.length);
        expect(listed.length).toBe(transitions.length / 2);
        // Every firing page has its resolution, and a page only for an incident at least min_duration_s long.
        const fired = printed.filter((c) => c.page?.alert.status === 'firing').map((c) => c.incident.incident.id);
        const resolved = printed.filter((c) => c.page?.alert.status === 'resolved').map((c) => c.incident.incident.id);
        expect(resolved.sort()).toEqual(fired.sort());
        for (const i of final) expect(i.incident.paged).toBe(i.incident.duration_s! >= minDurationS);
      }),
      { numRuns: 300 },
    );
  });
});

describe('incident rules as data', () => {
  it('ships rules that load, each with a cause and a match', () => {
    expect(SHIPPED.map((r) => r.id)).toEqual(expect.arrayContaining(['amqp-broker-unreachable', 'amqp-reply-storm', 'compute-host-drift', 'ceph-cluster-health']));
  });

  it('names the file and the field of a mistake', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stackwatch-incident-rules-'));
    writeFileSync(join(dir, 'bad.yaml'), 'id: x\ncause: y\nmatch: {}\n');
    expect(() => loadIncidentRules(dir)).toThrow(`${join(dir, 'bad.yaml')}: match: expected at least one field`);
    writeFileSync(join(dir, 'bad.yaml'), 'id: x\ncause: y\nmatch: { rule.id: a }\njoin: { incidents: [nope], on: [host.name] }\n');
    expect(() => loadIncidentRules(dir)).toThrow('join.incidents: no incident rule named nope');
    writeFileSync(join(dir, 'bad.yaml'), 'id: x\ncause: y\nmatch: { rule.id: a }\nhold_s: -1\n');
    expect(() => loadIncidentRules(dir)).toThrow(/bad\.yaml: hold_s: /);
  });
});
