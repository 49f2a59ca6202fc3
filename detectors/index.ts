// The detectors, by the name a rule's `detector:` gives. A new detector is one file in detectors/ (its params
// schema and its create, detectors/detector.ts) and one line here.
import type { DetectorDefinition } from './detector.ts';
import { detector as amqpConnectionLost } from './amqp-connection-lost.ts';
import { detector as cephHealth } from './ceph-health.ts';
import { detector as clientIpMasked } from './client-ip-masked.ts';
import { detector as computeHostDrift } from './compute-host-drift.ts';
import { detector as consoleProbeFailing } from './console-probe-failing.ts';
import { detector as dbSyncLag } from './db-sync-lag.ts';
import { detector as newErrorPattern } from './new-error-pattern.ts';
import { detector as openstackServiceDown } from './openstack-service-down.ts';
import { detector as pattern } from './pattern.ts';
import { detector as serviceSilent } from './service-silent.ts';
import { detector as zabbixProblem } from './zabbix-problem.ts';

export const DETECTORS: Readonly<Record<string, DetectorDefinition>> = Object.fromEntries(
  [amqpConnectionLost, cephHealth, clientIpMasked, computeHostDrift, consoleProbeFailing, dbSyncLag, newErrorPattern, openstackServiceDown, pattern, serviceSilent, zabbixProblem].map(
    (d) => [d.name, d as DetectorDefinition],
  ),
);
