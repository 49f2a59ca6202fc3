// compute-host-drift on lines written by the real oslo.log library with nova's own message templates, for a
// nova-compute whose host is its container's ID and changes with every restart (Kolla before `host=` was pinned).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DetectionEngine } from '../../detectors/engine.ts';
import { loadRules } from '../../detectors/rules.ts';
import { alertsFor } from '../../processors/rule-tests.ts';
import { ensureHarnessInstalled } from './amqp-harness.ts';
import { REPO } from './harness.ts';

describe('compute-host-drift on real oslo.log output', () => {
  it('flags container-ID host names and the new compute host each restart creates, naming the old one', async () => {
    ensureHarnessInstalled(); // Debian's oslo.log (with oslo.messaging)
    const file = join(mkdtempSync(join(tmpdir(), 'stackwatch-drift-')), 'nova-compute.log');
    execFileSync('/usr/bin/python3', [join(REPO, 'scripts/oslo-log/nova-compute-registers.py'), file, '3f4e8a9b2c1d', '9c0d7e6f5a4b']);
    const lines = readFileSync(file, 'utf8');
    expect(lines).toMatch(
      /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} \d+ INFO nova\.compute\.resource_tracker \[-\] Compute node record created for 3f4e8a9b2c1d:3f4e8a9b2c1d with uuid: /m,
    );

    const engine = await DetectionEngine.create(loadRules().filter((r) => r.id === 'compute-host-drift'));
    const alerts = alertsFor(engine, 'kolla-compute-1', '/var/log/kolla/nova/nova-compute.log', lines);
    expect(alerts.map((a) => `${a.alert.status} ${a.alert.group.kind} ${a.alert.group.compute_host}`)).toEqual([
      'firing ephemeral-name 3f4e8a9b2c1d',
      'firing ephemeral-name 9c0d7e6f5a4b',
      'firing renamed 9c0d7e6f5a4b',
    ]);
    expect(alerts[2].message).toBe('nova-compute on kolla-compute-1 now runs as 9c0d7e6f5a4b, before as 3f4e8a9b2c1d');
    expect(alerts[2].alert.runbook).toMatch(/host = <stable name>/);
  });
});
