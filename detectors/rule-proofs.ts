// `stackwatch rules prove`: asks recheck (the ReDoS checker, in automaton mode: a proof, never a fuzzing guess)
// about every regex of the rules and writes those it proves linear to `<rules dir>/regex-proofs.json`. The
// processor reads that file and runs them on irregexp, the fast path (core/regex.ts); the others run on RE2 and
// V8's linear engine, also in linear time, 20-300 times slower per call. recheck is a development tool (a native
// helper of ~100 MB, up to seconds a regex): it runs here, never in a pipeline process.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { z } from 'zod';
import { ConfigError } from '../core/config.ts';
import { proofKey } from '../core/regex.ts';
import { DetectionEngine } from './engine.ts';
import { DEFAULT_RULES_DIR, loadRules, PROOFS_FILE, type ProofsFile } from './rules.ts';

export interface Verdict {
  where: string;
  regex: string;
  status: 'proved' | 'vulnerable' | 'unknown';
  /** Proved: the complexity (constant, linear, safe); vulnerable: polynomial or exponential and an attack; unknown: why. */
  detail: string;
}

interface Recheck {
  check(
    source: string,
    flags: string,
    params?: Record<string, unknown>,
  ): Promise<{
    status: 'safe' | 'vulnerable' | 'unknown';
    checker?: string;
    complexity?: { type: string; summary: string; isFuzz: boolean };
    attack?: { pattern: string };
    error?: { kind: string };
  }>;
}

/** recheck, if installed (a devDependency). */
export async function loadRecheck(): Promise<Recheck> {
  try {
    return (await import('recheck')) as unknown as Recheck;
  } catch {
    throw new ConfigError('rules prove: needs recheck, the ReDoS checker (npm install --save-dev recheck)');
  }
}

/** recheck's verdict on one regex: a proof only from the automaton checker (the fuzz checker can miss an attack). */
export async function prove(recheck: Recheck, source: string, flags: string, timeoutMs = 60_000): Promise<Pick<Verdict, 'status' | 'detail'>> {
  const d = await recheck.check(source, flags, { checker: 'automaton', timeout: timeoutMs });
  if (d.status === 'safe' && d.checker === 'automaton' && !d.complexity!.isFuzz) return { status: 'proved', detail: d.complexity!.type };
  if (d.status === 'vulnerable') return { status: 'vulnerable', detail: `${d.complexity!.type}, e.g. on ${d.attack!.pattern}` };
  return { status: 'unknown', detail: `recheck could not decide (${d.error?.kind ?? d.status})` };
}

/** Every regex of the rules in `dir` with recheck's verdict, and the proofs file that lists the proved ones. */
export async function proveRules(dir: string = DEFAULT_RULES_DIR, recheck?: Recheck): Promise<{ verdicts: Verdict[]; file: z.infer<typeof ProofsFile> }> {
  const engine = await DetectionEngine.create(loadRules(dir));
  const checker = recheck ?? (await loadRecheck());
  const unique = new Set(engine.regexes.map((r) => proofKey(r.regex.source, r.regex.flags)));
  const verdicts = await Promise.all(
    engine.regexes.map(async (r) => ({
      where: `${r.rule.file ?? r.rule.id}: ${r.field}`,
      regex: proofKey(r.regex.source, r.regex.flags),
      ...(await prove(checker, r.regex.source, r.regex.flags)),
    })),
  );
  const proofs = [...unique]
    .map((key) => ({ regex: key, complexity: verdicts.find((v) => v.regex === key && v.status === 'proved')?.detail }))
    .filter((p): p is { regex: string; complexity: string } => p.complexity !== undefined)
    .sort((a, b) => a.regex.localeCompare(b.regex));
  return { verdicts, file: { checker: `recheck ${recheckVersion()} (automaton checker)`, proofs } };
}

function recheckVersion(): string {
  try {
    return (createRequire(import.meta.url)('recheck/package.json') as { version: string }).version;
  } catch {
    return 'unknown version';
  }
}

/** Writes the proofs file of `dir`. */
export function writeProofs(dir: string, file: z.infer<typeof ProofsFile>): string {
  const path = join(dir, PROOFS_FILE);
  writeFileSync(path, JSON.stringify(file, null, 2) + '\n');
  return path;
}
