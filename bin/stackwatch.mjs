#!/usr/bin/env -S node --max-old-space-size=512
// Entry point of the `stackwatch` command. It runs the bundle in dist/ (built by `npm ci`), which needs no build
// tool. In a development checkout a source newer than the bundle makes it build again here (in about a tenth of
// a second), so a stale bundle never runs; where esbuild is not installed, that is a one-line error instead.
//
// --max-old-space-size=512 (first line) bounds the heap, and more: V8 grows the heap by a factor that rises
// with its limit (4 at the default limit, a quarter of the machine's memory, about 1.5 at 512 MiB). A processor
// draining a backlog keeps 30-60 MiB of live objects; with the default it peaked at 276-286 MiB RSS, with 512 at
// 162-172 MiB, for about the same CPU time (bench/README.md, the lab notebook). `node --max-old-space-size=N
// bin/stackwatch.mjs ...` sets another limit.
// @ts-check
import { buildDist, bundleIsStale, NoBuildTool } from '../scripts/build.mjs';

if (bundleIsStale()) {
  try {
    await buildDist({ onlyIfStale: true });
  } catch (err) {
    if (!(err instanceof NoBuildTool)) throw err;
    process.stderr.write(`stackwatch: ${err.message}\n`);
    process.exit(1);
  }
}
const bundle = new URL('../dist/index.js', import.meta.url);
const { main } = await import(bundle.href);
process.exitCode = await main(process.argv.slice(2));
