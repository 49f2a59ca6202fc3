#!/usr/bin/env -S MALLOC_ARENA_MAX=1 node --max-old-space-size=512 --max-semi-space-size=1 --expose-gc
// Entry point of `stackwatch-collector`: `stackwatch run --role collector`, with node options that keep it small on
// the compute and controller hosts it runs on, beside the tenants' VMs (issue 16: peak RSS ≤ 100 MiB). Its options
// are run's (`stackwatch-collector --help`), but for --role.
//
// --max-semi-space-size=1 (MiB; V8's default grows to 16): the young generation stays at a few MiB instead of
// 48. The collector turns lines into JSON and hands it to Kafka; almost nothing it allocates lives long, so a small
// young generation costs more scavenges, not more promotion. --expose-gc lets it ask for a scavenge after a
// Kafka send while more than a few MiB of ArrayBuffers are held (core/memory.ts): kafkajs copies every request
// into new buffers three times, and V8 counts those as external memory, which it collects only when their sum
// crosses its own limit (64 MiB). Together: peak RSS 145 → 99-106 MiB reading the peer benchmark's corpus, CPU
// per line 8.4 → 9.1-10.8 µs (rsyslog's imfile → omkafka: 7.8-9.5; README, Speed).
//
// MALLOC_ARENA_MAX=1 (glibc, read when the process starts, hence here and not in code): one malloc arena instead of
// one per thread that ever allocated (libuv's pool reading the files, V8's helpers), each keeping the memory it freed.
// Peak RSS 99.8-101.8 → 94.6-95.6 MiB on the peer corpus, CPU per line the same (8.9-9.8 against 9.0-10.0 µs; three
// runs each, collector alone). A collector started some other way (`node bin/stackwatch-collector.mjs` in a unit
// file) should set it too.
// @ts-check
import { launch } from './launch.mjs';

const args = process.argv.slice(2);
if (args.some((a) => a === '--role' || a.startsWith('--role='))) {
  process.stderr.write('stackwatch-collector: --role is not an option here: it runs the collector role (stackwatch run --role ... for another)\n');
  process.exit(2);
}
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write("stackwatch-collector [--config FILE]: stackwatch run --role collector, in less memory; run's help:\n\n");
}
await launch(['run', '--role', 'collector', ...args]);
