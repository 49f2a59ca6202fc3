#!/usr/bin/env -S node --max-old-space-size=512
// Entry point of the `stackwatch` command (bin/launch.mjs runs the bundle). bin/stackwatch-collector.mjs is the
// collector's, with options for less memory.
//
// --max-old-space-size=512 (first line) bounds the heap, and more: V8 grows the heap by a factor that rises
// with its limit (4 at the default limit, a quarter of the machine's memory, about 1.5 at 512 MiB). A processor
// draining a backlog keeps 30-60 MiB of live objects; with the default it peaked at 276-286 MiB RSS, with 512 at
// 162-172 MiB, for about the same CPU time (bench/README.md, the lab notebook). `node --max-old-space-size=N
// bin/stackwatch.mjs ...` sets another limit.
// @ts-check
import { launch } from './launch.mjs';

await launch(process.argv.slice(2));
