#!/usr/bin/env node
// Entry point of the `stackwatch` command. The sources are TypeScript, loaded through tsx's
// on-the-fly transform, so a fresh `npm ci` is all it takes to run (no build step to forget).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../cli/index.ts');
process.exitCode = await main(process.argv.slice(2));
