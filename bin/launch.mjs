// @ts-check
// What both entry points do (bin/stackwatch.mjs, bin/stackwatch-collector.mjs): run the bundle in dist/ (built by
// `npm ci`), which needs no build tool. In a development checkout a source newer than the bundle makes it build
// again here (in about a tenth of a second), so a stale bundle never runs; where esbuild is not installed, that is a
// one-line error instead.
import { buildDist, bundleIsStale, NoBuildTool } from '../scripts/build.mjs';

/** Runs the `stackwatch` command with `args`; its exit code becomes the process's.
 * @param {string[]} args
 */
export async function launch(args) {
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
  process.exitCode = await main(args);
}
