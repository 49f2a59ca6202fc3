#!/usr/bin/env -S node --max-old-space-size=512
// Entry point of the `stackwatch` command. It runs the esbuild bundle in dist/, rebuilt here (in about a
// tenth of a second) whenever a source file is newer than it, so `npm ci` is all it takes and a stale bundle
// never runs.
//
// --max-old-space-size=512 (first line) bounds the heap, and more: V8 grows the heap by a factor that rises
// with its limit (4 at the default limit, a quarter of the machine's memory, about 1.5 at 512 MiB). A processor
// draining a backlog keeps 30-60 MiB of live objects; with the default it peaked at 276-286 MiB RSS, with 512 at
// 162-172 MiB, for about the same CPU time (README.md, "Speed"). `node --max-old-space-size=N
// bin/stackwatch.mjs ...` sets another limit.
import { buildDist, bundleIsStale } from '../scripts/build.mjs';

if (bundleIsStale()) await buildDist({ onlyIfStale: true });
const bundle = new URL('../dist/index.js', import.meta.url);
const { main } = await import(bundle.href);
process.exitCode = await main(process.argv.slice(2));
