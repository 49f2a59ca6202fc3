// @ts-check
// Bundles the TypeScript sources into dist/ with esbuild: plain ES modules that start fast and need no loader
// or build tool at run time. `npm ci` builds it once through the "prepare" script (`npm run build` by hand);
// bin/stackwatch.mjs builds it again when a source is newer than it, if esbuild is installed (a development
// checkout), so a stale bundle never runs.
//
// Several stackwatch processes may start at once after a source changed (a collector and a processor, a test
// suite): one builds while the others wait for its lock, and the files are written chunks first, each by an
// atomic rename, the entry next and the list of inputs last, so no process ever loads half a bundle or takes a
// half-written one for up to date.
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, relative } from 'node:path';

const ROOT = new URL('../', import.meta.url).pathname;
export const ENTRY = new URL('../cli/index.ts', import.meta.url).pathname;
export const OUTDIR = new URL('../dist/', import.meta.url).pathname;
/** The sources the bundle was built from (relative to the repository) and when their reading began. */
const INPUTS = `${OUTDIR}inputs.json`;
const LOCK = new URL('../dist.lock', import.meta.url).pathname;
const STALE_LOCK_MS = 60_000; // a builder that died holding the lock

/** Why a stale bundle cannot be built here: esbuild, a development dependency, is not installed. */
export class NoBuildTool extends Error {}

/** Whether the bundle must be built again: it is missing, or one of the sources it was built from changed (a
 * source added or moved changes a file that imports it). */
export function bundleIsStale() {
  /** @type {{ startedAt: number, inputs: string[] }} */
  let built;
  try {
    built = JSON.parse(readFileSync(INPUTS, 'utf8'));
    statSync(`${OUTDIR}index.js`);
  } catch {
    return true; // never built, or built before the list of inputs was kept
  }
  for (const file of built.inputs) {
    try {
      if (statSync(ROOT + file).mtimeMs > built.startedAt) return true;
    } catch {
      return true; // deleted or moved
    }
  }
  return false;
}

/** Builds the bundle; with `onlyIfStale`, only if it is still stale once the lock is ours (another process may
 * have built it while we waited). Throws NoBuildTool when esbuild is not installed. */
export async function buildDist({ onlyIfStale = false } = {}) {
  /** @type {typeof import('esbuild')} */
  let esbuild;
  try {
    esbuild = await import('esbuild'); // not loaded by a stackwatch start that needs no build
  } catch {
    throw new NoBuildTool(
      'dist/ is missing or older than the sources, and esbuild (a development dependency) is not installed: run `npm run build` in a checkout with its development dependencies (npm ci)',
    );
  }
  await lock();
  try {
    if (onlyIfStale && !bundleIsStale()) return;
    const startedAt = Date.now();
    const { outputFiles, metafile } = await esbuild.build({
      entryPoints: [ENTRY],
      absWorkingDir: ROOT,
      bundle: true,
      splitting: true, // each command stays a separate chunk, loaded when it runs
      format: 'esm',
      platform: 'node',
      target: 'node20',
      packages: 'external',
      outdir: OUTDIR,
      sourcemap: 'linked',
      logLevel: 'warning',
      metafile: true,
      write: false,
      plugins: [sourceLocations],
    });
    const entry = `${OUTDIR}index.js`;
    const ordered = [...outputFiles.filter((f) => !f.path.startsWith(entry)), ...outputFiles.filter((f) => f.path.startsWith(entry))];
    for (const f of ordered) write(f.path, f.contents);
    write(INPUTS, JSON.stringify({ startedAt, inputs: Object.keys(metafile.inputs).sort() }, null, 2) + '\n');
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

/** In the bundle every module is a chunk directly in dist/, one folder below the repository, wherever its source
 * lies: each module's `import.meta.url` is made its source file's URL again, so that paths it resolves against it
 * (`new URL('../rules/', import.meta.url)`, `createRequire(import.meta.url)`) mean in dist/ what they mean when
 * the sources run (vitest, tsx), for a module in a subfolder as for one at the top.
 * @type {import('esbuild').Plugin} */
const sourceLocations = {
  name: 'source-locations',
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      if (!text.includes('import.meta.url')) return undefined; // loaded as usual
      const url = `new URL(${JSON.stringify(relative(OUTDIR, args.path))}, import.meta.url).href`;
      return { contents: text.replace(/\bimport\.meta\.url\b/g, url), loader: 'ts' };
    });
  },
};

/** @param {string} path @param {string | Uint8Array} contents */
function write(path, contents) {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, contents);
  renameSync(tmp, path);
}

async function lock() {
  for (;;) {
    try {
      mkdirSync(LOCK);
      return;
    } catch (err) {
      if (/** @type {NodeJS.ErrnoException} */ (err).code !== 'EEXIST') throw err;
    }
    let age;
    try {
      age = Date.now() - statSync(LOCK).mtimeMs;
    } catch {
      continue; // released just now
    }
    if (age > STALE_LOCK_MS) rmSync(LOCK, { recursive: true, force: true });
    else await new Promise((r) => setTimeout(r, 50));
  }
}

// `node scripts/build.mjs` (npm run build, and prepare on `npm ci`). Where esbuild is not installed (`npm ci
// --omit=dev`) an up-to-date bundle is enough; a stale one is an error.
if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    await buildDist();
  } catch (err) {
    if (!(err instanceof NoBuildTool)) throw err;
    if (bundleIsStale()) {
      process.stderr.write(`build: ${err.message}\n`);
      process.exitCode = 1;
    }
  }
}
