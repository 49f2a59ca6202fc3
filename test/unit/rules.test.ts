// Every rule's own tests (rules/<id>.test.yaml), run as `stackwatch rules test` runs them; and the group keys their
// alerts carry, against the alerts' and incidents' mappings.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadRules } from '../../detectors/rules.ts';
import { runRuleTests } from '../../processors/rule-tests.ts';

const results = await runRuleTests();

describe('rules/*.test.yaml', () => {
  it('covers every rule with at least one test', () => {
    const tested = new Set(results.map((r) => r.rule));
    expect(
      loadRules()
        .map((r) => r.id)
        .filter((id) => !tested.has(id)),
    ).toEqual([]);
  });

  it.each(results.map((r) => [`${r.rule}: ${r.name}`, r] as const))('%s', (_, r) => {
    expect(r.problems).toEqual([]);
  });

  it("puts no group key where another rule's makes an object: Elasticsearch would refuse the alert and its incident", () => {
    // alert.group (alerts index) and alerts.group (an incident's members, side by side in one document) expand
    // dotted keys into objects: a key `host` beside another rule's `host.name` is a value where the mapping has an
    // object (openstack-service-down's `host` was: every one of its alerts, and the drift incident it joined, went
    // to the dead-letter topic).
    const keys = new Map<string, string>();
    for (const r of results) for (const k of r.groupKeys) keys.set(k, r.rule);
    expect(keys.size).toBeGreaterThan(5);
    const clashes = [...keys].flatMap(([k, rule]) => [...keys].filter(([other]) => other.startsWith(`${k}.`)).map(([other, by]) => `${rule}: ${k} / ${by}: ${other}`));
    expect(clashes).toEqual([]);
    // The alerts template maps some group keys itself: an object there is never a value here, and the reverse.
    const template = JSON.parse(readFileSync(join(import.meta.dirname, '../../sinks/index-templates/stackwatch-alerts.json'), 'utf8'));
    const mapped = (path: string[], m: any = template.template.mappings.properties.alert.properties.group): any =>
      path.length === 0 ? m : m?.properties?.[path[0]] === undefined ? undefined : mapped(path.slice(1), m.properties[path[0]]);
    const wrong = [...keys].flatMap(([k, rule]) => {
      const parts = k.split('.');
      const m = mapped(parts);
      if (m?.properties) return [`${rule}: ${k} is an object in the alerts template`];
      return parts.slice(0, -1).some((_, i) => mapped(parts.slice(0, i + 1))?.type) ? [`${rule}: ${k} is under a value in the alerts template`] : [];
    });
    expect(wrong).toEqual([]);
  });
});
