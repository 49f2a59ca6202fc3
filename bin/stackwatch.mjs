#!/usr/bin/env node
// Entry point of the `stackwatch` command. It runs the esbuild bundle in dist/, rebuilt here (in about a
// tenth of a second) whenever a source file is newer than it, so `npm ci` is all it takes and a stale bundle
// never runs.
import { readdirSync, statSync } from 'node:fs';

const root = new URL('../', import.meta.url);
const bundle = new URL('dist/index.js', root);

function newestSource() {
  let newest = 0;
  for (const dir of ['cli', 'core', 'collectors', 'processors']) {
    for (const f of readdirSync(new URL(`${dir}/`, root))) {
      if (f.endsWith('.ts')) newest = Math.max(newest, statSync(new URL(`${dir}/${f}`, root)).mtimeMs);
    }
  }
  return newest;
}

let built = 0;
try {
  built = statSync(bundle).mtimeMs;
} catch {}
if (built < newestSource()) await (await import('../scripts/build.mjs')).buildDist();
const { main } = await import(bundle.href);
process.exitCode = await main(process.argv.slice(2));
