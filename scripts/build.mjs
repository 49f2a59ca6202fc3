// Bundles the TypeScript sources into dist/ with esbuild: plain ES modules that start fast and need no loader
// thread at run time. bin/stackwatch.mjs calls it whenever a source file is newer than the bundle, so there is
// no build step to forget; `npm ci` runs it once through the "prepare" script.
//
// Several stackwatch processes may start at once after a source changed (a collector and a processor, a test
// suite): one builds while the others wait for its lock, and the files are written chunks first, each by an
// atomic rename, the entry last, so no process ever loads half a bundle.
import { mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export const ENTRY = new URL('../cli/index.ts', import.meta.url).pathname;
export const OUTDIR = new URL('../dist/', import.meta.url).pathname;
const LOCK = new URL('../dist.lock', import.meta.url).pathname;
const STALE_LOCK_MS = 60_000; // a builder that died holding the lock

/** The sources the bundle is made of, newer than it: it must be built again. */
export function bundleIsStale() {
  let built = 0;
  try {
    built = statSync(`${OUTDIR}index.js`).mtimeMs;
  } catch {}
  const root = new URL('../', import.meta.url);
  for (const dir of ['cli', 'core', 'collectors', 'processors']) {
    for (const f of readdirSync(new URL(`${dir}/`, root))) {
      if (f.endsWith('.ts') && statSync(new URL(`${dir}/${f}`, root)).mtimeMs > built) return true;
    }
  }
  return false;
}

/** Builds the bundle; with `onlyIfStale`, only if it is still stale once the lock is ours (another process may
 * have built it while we waited). */
export async function buildDist({ onlyIfStale = false } = {}) {
  await lock();
  try {
    if (onlyIfStale && !bundleIsStale()) return;
    const { build } = await import('esbuild'); // not loaded by a stackwatch start that needs no build
    const { outputFiles } = await build({
      entryPoints: [ENTRY],
      bundle: true,
      splitting: true, // commands and detectors stay separate chunks, loaded when used
      format: 'esm',
      platform: 'node',
      target: 'node20',
      packages: 'external',
      outdir: OUTDIR,
      sourcemap: 'linked',
      logLevel: 'warning',
      write: false,
    });
    const entry = `${OUTDIR}index.js`;
    const ordered = [...outputFiles.filter((f) => f.path !== entry), ...outputFiles.filter((f) => f.path === entry)];
    for (const f of ordered) {
      mkdirSync(dirname(f.path), { recursive: true });
      const tmp = `${f.path}.${process.pid}.tmp`;
      writeFileSync(tmp, f.contents);
      renameSync(tmp, f.path);
    }
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

async function lock() {
  for (;;) {
    try {
      mkdirSync(LOCK);
      return;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
    let age = 0;
    try {
      age = Date.now() - statSync(LOCK).mtimeMs;
    } catch {
      continue; // released just now
    }
    if (age > STALE_LOCK_MS) rmSync(LOCK, { recursive: true, force: true });
    else await new Promise((r) => setTimeout(r, 50));
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await buildDist();
