// Bundles the TypeScript sources into dist/ with esbuild: plain ES modules that start fast and need no loader
// thread at run time. bin/stackwatch.mjs calls it whenever a source file is newer than the bundle, so there is
// no build step to forget; `npm ci` runs it once through the "prepare" script.
import { build } from 'esbuild';

export const ENTRY = new URL('../cli/index.ts', import.meta.url).pathname;
export const OUTDIR = new URL('../dist/', import.meta.url).pathname;

export async function buildDist() {
  await build({
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
  });
}

if (import.meta.url === `file://${process.argv[1]}`) await buildDist();
