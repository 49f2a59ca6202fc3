#!/usr/bin/env node
// A stand-in for the `ceph` CLI that answers from this folder: the real output of a 2022 Octopus cluster's
// `ceph status`, `ceph health detail` and `ceph df` (-f json). The demo points the real Ceph collector at it
// (collectors.ceph.command: [node, samples/ceph-octopus-2022/ceph-replay.mjs]).
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2).filter((a) => a !== '-f' && a !== 'json' && a !== '--format=json');
const file = { status: 'status.json', 'health detail': 'health-detail.json', df: 'df.json' }[args.join(' ')];
if (!file) {
  process.stderr.write(`ceph-replay: no recorded answer for "ceph ${args.join(' ')}"\n`);
  process.exit(22);
}
process.stdout.write(readFileSync(new URL(file, import.meta.url)));
